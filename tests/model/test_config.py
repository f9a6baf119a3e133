"""Where caches come from without conda: --pkgs-dir, CONDA_PKGS_DIRS, .condarc, defaults."""

from __future__ import annotations

import os

from conda_cache_plus.layouts import caches as config_caches
from conda_cache_plus.model import config


def test_cli_dirs_win(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDA_PKGS_DIRS", str(tmp_path / "env"))
    dirs, origin = config_caches.resolve_pkgs_dirs(
        [str(tmp_path / "a"), str(tmp_path / "a")], use_conda=False
    )
    assert dirs == [str(tmp_path / "a")] and origin == "--pkgs-dir"


def test_conda_pkgs_dirs_is_comma_separated(tmp_path, monkeypatch):
    # Like conda: comma-separated, not os.pathsep ('/a:/b' is one path).
    monkeypatch.setenv("CONDA_PKGS_DIRS", f"{tmp_path}/a,{tmp_path}/b:c, ~/x")
    dirs, origin = config.pkgs_dirs_without_conda()
    assert dirs == [f"{tmp_path}/a", f"{tmp_path}/b:c", os.path.expanduser("~/x")]
    assert origin == "CONDA_PKGS_DIRS"


def test_condarc_block_and_flow_lists(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".conda").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CONDA_PKGS_DIRS", raising=False)
    monkeypatch.setenv("CONDA_ROOT", str(tmp_path / "root"))
    monkeypatch.delenv("CONDARC", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (home / ".condarc").write_text(
        "channels: [x]\npkgs_dirs:\n  - /high/one  # comment\n  - '/high/two'\n"
    )
    (home / ".conda" / ".condarc").write_text('pkgs_dirs: [/low/one, "/low/two"]\n')
    dirs, origin = config.pkgs_dirs_without_conda()
    assert origin == "condarc"
    # ~/.condarc has higher priority than ~/.conda/.condarc: its entries come first.
    assert dirs == ["/high/one", "/high/two", "/low/one", "/low/two"]


def test_condarc_env_var_and_broken_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CONDA_PKGS_DIRS", raising=False)
    monkeypatch.setenv("CONDA_ROOT", str(tmp_path / "root"))
    (tmp_path / ".condarc").write_bytes(b"\xff\xfe not yaml: [")
    rc = tmp_path / "custom.yml"
    rc.write_text("pkgs_dirs: /single/dir\n")
    monkeypatch.setenv("CONDARC", str(rc))
    dirs, origin = config.pkgs_dirs_without_conda()
    assert dirs == ["/single/dir"] and origin == "condarc"


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("CONDA_PKGS_DIRS", "CONDARC", "CONDA_PREFIX", "MAMBA_ROOT_PREFIX", "CONDA_EXE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONDA_ROOT", str(tmp_path / "miniforge"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    dirs, origin = config.pkgs_dirs_without_conda()
    assert origin == "defaults"
    assert dirs == [str(tmp_path / "miniforge" / "pkgs"), str(tmp_path / ".conda" / "pkgs")]


def test_root_prefix_from_conda_exe(monkeypatch):
    for var in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONDA_EXE", "/opt/conda/bin/conda")
    assert config.root_prefix() == "/opt/conda"
