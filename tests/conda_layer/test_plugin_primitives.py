"""Where a platform primitive is missing (fcntl on Windows), every hook yields nothing rather than
fail: conda runs as if the plugin were not installed. Tested with fcntl made unimportable in a
real conda process (``sys.modules["fcntl"] = None`` before conda starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import requires_conda

from conda_cache_plus import pkgbuild

pytestmark = requires_conda

NO_FCNTL = "import sys; sys.modules['fcntl'] = None; "

HOOKS = (
    "import json; import conda.plugins.types; from conda_cache_plus import plugin; "
    "print(json.dumps({n: len(list(getattr(plugin, n)())) for n in ("
    "'conda_subcommands', 'conda_health_checks', 'conda_reporter_backends', 'conda_settings', "
    "'conda_package_extractors', 'conda_post_solves', 'conda_pre_transaction_actions', "
    "'conda_post_transaction_actions', 'conda_post_commands')}))"
)


def _run(tmp_path, code: str, *argv: str):
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        CONDA_PKGS_DIRS=str(tmp_path / "pkgs"),
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
    )
    os.makedirs(tmp_path / "home", exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _conda_main(*args: str) -> str:
    return (
        f"sys.argv = ['conda', *{list(args)!r}]; import runpy; "
        "runpy.run_module('conda', run_name='__main__', alter_sys=True)"
    )


def test_each_hook_yields_nothing_without_fcntl(tmp_path):
    with_fcntl = _run(tmp_path, HOOKS)
    assert with_fcntl.returncode == 0, with_fcntl.stderr
    without = _run(tmp_path, NO_FCNTL + HOOKS)
    assert without.returncode == 0, without.stderr
    counts = json.loads(without.stdout)
    assert counts["conda_subcommands"] == counts["conda_health_checks"] == 0
    assert counts["conda_settings"] == counts["conda_package_extractors"] == 0
    for hook in ("post_solves", "pre_transaction_actions", "post_transaction_actions"):
        assert counts[f"conda_{hook}"] == 0, hook  # the install locks need fcntl too
    assert counts["conda_post_commands"] == 0
    # the plain reporter needs no lock: it stays (where this conda has reporter backends)
    assert (
        counts["conda_reporter_backends"]
        == json.loads(with_fcntl.stdout)["conda_reporter_backends"]
    )
    assert json.loads(with_fcntl.stdout)["conda_subcommands"] == 1


def test_conda_works_as_without_the_plugin(tmp_path):
    ch = tmp_path / "channel"
    pkg = pkgbuild.build_package(str(ch / "noarch"), "cpx-prim", "1.0")
    channel = pkgbuild.write_channel(str(ch), [pkg])
    prefix = tmp_path / "env"
    create = _conda_main(
        *("create", "-p", str(prefix), "--offline", "--yes", "--override-channels"),
        *("-c", channel, "cpx-prim"),
    )
    proc = _run(tmp_path, NO_FCNTL + create)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (prefix / "share" / "cpx-prim" / "README").is_file()
    assert "conda_cache_plus" not in proc.stderr and "Traceback" not in proc.stderr
    # conda's own extractor did the work: ours would have made its private lock dir
    assert not (tmp_path / "pkgs" / ".conda-cache-plus").exists()


@pytest.mark.parametrize("argv", [["doctor", "--help"], ["info", "--json"]])
def test_other_conda_commands_are_untouched(tmp_path, argv):
    proc = _run(tmp_path, NO_FCNTL + _conda_main(*argv))
    assert proc.returncode == 0, proc.stderr
    assert "conda_cache_plus" not in proc.stderr
