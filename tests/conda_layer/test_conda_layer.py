"""The conda layer: our hooks as conda's plugin manager sees them, and `conda cache` giving the
same answers as the standalone `conda-cache`. (Start-up safety is in test_conda_startup.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import populate, requires_conda, run_cli

pytestmark = requires_conda


@pytest.fixture
def installed():
    if not any(
        ep.value == "conda_cache_plus.plugin" for ep in metadata.entry_points(group="conda")
    ):
        pytest.skip("conda-cache-plus is not installed (no conda entry point)")


def test_plugin_manager_has_our_subcommand_and_backend(installed):
    from conda.base.context import context

    pm = context.plugin_manager
    assert "cache" in pm.get_subcommands()
    backend = pm.get_reporter_backend("plain")
    assert backend.name == "plain"
    assert backend.renderer.__module__ == "conda_cache_plus.conda_layer.reporter_backend"
    names = {b.name for b in pm.get_hook_results("reporter_backends")}
    assert {"classic", "json", "plain"} <= names


def test_reporter_hook_yields_nothing_without_reporter_backends(monkeypatch):
    """conda < 24.11 has no CondaReporterBackend; the hook must then stay silent."""
    from conda import plugins

    from conda_cache_plus import plugin

    monkeypatch.delattr(plugins.types, "CondaReporterBackend")
    assert list(plugin.conda_reporter_backends()) == []


def _conda(tmp_path, *args):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDA_")}
    env.update(
        HOME=str(home),
        CONDA_PKGS_DIRS=str(tmp_path / "unused-pkgs"),
        CONDA_SOLVER="classic",
        CONDARC=str(tmp_path / "condarc"),
    )
    return subprocess.run(
        [sys.executable, "-m", "conda", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


@pytest.mark.parametrize("verb", ["info", "list"])
def test_conda_cache_json_equals_standalone_json(installed, tmp_path, build, verb):
    pkgs = str(tmp_path / "pkgs")
    populate(pkgs, [build("alpha", "1.0"), build("beta", "2.0", depends=["alpha"])])
    populate(pkgs, [build("gamma", "0.1", fmt=".tar.bz2")], extract=False)
    via_conda = _conda(tmp_path, "cache", verb, "--json", "--pkgs-dir", pkgs)
    standalone = run_cli(verb, "--json", "--pkgs-dir", pkgs)
    assert via_conda.returncode == 0, via_conda.stderr
    assert standalone.returncode == 0, standalone.stderr
    assert json.loads(via_conda.stdout) == json.loads(standalone.stdout)
    assert "Error while loading conda entry point" not in via_conda.stderr


def test_conda_cache_console_json_is_the_same_document(installed, tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    populate(pkgs, [build("alpha", "1.0")])
    flag = _conda(tmp_path, "cache", "list", "--json", "--pkgs-dir", pkgs)
    console = _conda(tmp_path, "cache", "list", "--console", "json", "--pkgs-dir", pkgs)
    assert json.loads(flag.stdout) == json.loads(console.stdout)


def test_conda_cache_list_console_plain_has_no_escapes(installed, tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    populate(pkgs, [build("alpha", "1.0")])
    proc = _conda(tmp_path, "cache", "list", "--console", "plain", "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
    assert proc.stdout.splitlines()[2].split() == [
        "Name",
        "Version",
        "Build",
        "Channel",
        "Formats",
        "Size",
    ]
