"""Installing the plugin never breaks conda's start-up.

conda imports every plugin's entry point on every command; an import error there only becomes a
WARNING, but a bad hook result (a clashing name, a wrong type) aborts conda for everyone. These
run real conda in a subprocess, with a throwaway HOME and package cache, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import requires_conda

pytestmark = requires_conda

# What conda logs when a plugin fails to load or misbehaves (conda/plugins/manager.py).
PLUGIN_TROUBLE = (
    "Error while loading conda entry point",
    "Error while loading conda plugin",
    "PluginError",
    "Conflicting plugins",
    "Invalid plugin",
    "Traceback",
    "conda_cache_plus",
    "conda-cache-plus",
)


def _our_entry_point_installed() -> bool:
    eps = metadata.entry_points(group="conda")
    return any(ep.value == "conda_cache_plus.plugin" for ep in eps)


@pytest.fixture
def conda(tmp_path):
    if not _our_entry_point_installed():
        pytest.skip("conda-cache-plus is not installed here (its conda entry point is absent)")
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        CONDA_PKGS_DIRS=str(tmp_path / "pkgs"),
        CONDA_ENVS_DIRS=str(tmp_path / "envs"),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
    )
    (tmp_path / "home").mkdir()

    def run(*args, python_code=None):
        argv = ["-c", python_code] if python_code else ["-m", "conda", *args]
        return subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    return run


def _no_plugin_trouble(proc):
    for marker in PLUGIN_TROUBLE:
        assert marker not in proc.stderr, proc.stderr


def test_info_json_still_works(conda):
    proc = conda("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["conda_version"]
    _no_plugin_trouble(proc)


def test_help_lists_cache(conda):
    proc = conda("--help")
    assert proc.returncode == 0, proc.stderr
    assert "cache" in proc.stdout.split()
    _no_plugin_trouble(proc)


def test_cache_help_and_info_run(conda):
    proc = conda("cache", "--help")
    assert proc.returncode == 0, proc.stderr
    for verb in ("info", "list", "fetch", "verify", "repair", "usage", "remove", "clean"):
        assert verb in proc.stdout
    _no_plugin_trouble(proc)
    proc = conda("cache", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_no_plugins_hides_the_subcommand(conda):
    proc = conda("--no-plugins", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "cache" not in proc.stdout.split()


def conda_python(conda, code):
    return conda(python_code=code)


def test_plugins_list_shows_us_active(conda):
    proc = conda("plugins", "list", "--json")
    if proc.returncode != 0 and "invalid choice" in proc.stderr:
        # `conda plugins` is newer than every release we test (24.11.3 - 26.7.1): ask conda's
        # plugin manager directly, the way that command does.
        code = (
            "import json; from conda.base.context import context; pm = context.plugin_manager; "
            "print(json.dumps([{'name': pm.get_canonical_name(p), "
            "'status': 'disabled' if pm.is_blocked(pm.get_canonical_name(p)) else 'active'} "
            "for p in pm.get_plugins()]))"
        )
        proc = conda_python(conda, code)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    ours = [p for p in listed if "conda_cache_plus" in json.dumps(p)]
    assert ours, listed
    assert all(p.get("status", "active") == "active" for p in ours)


def test_doctor_lists_the_package_cache_check(conda):
    proc = conda("doctor", "--list")
    if proc.returncode != 0 and "unrecognized arguments" in proc.stderr:
        pytest.skip("`conda doctor --list` needs conda 26.1 or later")
    assert proc.returncode == 0, proc.stderr
    assert "package-cache" in proc.stdout
    _no_plugin_trouble(proc)


def test_plugin_module_is_light():
    """conda imports plugin.py on every command: it must not pull in the rest of the package."""
    code = (
        "import sys, conda_cache_plus.plugin as p; "
        "print('\\n'.join(m for m in sys.modules if m.startswith('conda_cache_plus')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert loaded <= {
        "conda_cache_plus",
        "conda_cache_plus.plugin",
        "conda_cache_plus.conda_layer.compat",
    }
