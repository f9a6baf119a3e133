"""Finding environments: root, envs_dirs, environments.txt, condarc, --env."""

from __future__ import annotations

import os

from conda_cache_plus.envs.discovery import envs_dirs, is_environment, known_environments


def mkenv(path, how="history"):
    meta = path / "conda-meta"
    meta.mkdir(parents=True)
    if how == "history":
        (meta / "history").write_text("")
    else:
        (meta / "x-1-0.json").write_text("{}")
    return str(path)


def test_is_environment(tmp_path):
    assert is_environment(mkenv(tmp_path / "a"))
    assert is_environment(mkenv(tmp_path / "b", "json"))
    (tmp_path / "c" / "conda-meta").mkdir(parents=True)
    assert not is_environment(str(tmp_path / "c"))
    assert not is_environment(str(tmp_path / "nope"))


def test_discovery_from_every_source(tmp_path):
    root = mkenv(tmp_path / "root")
    one = mkenv(tmp_path / "envs1" / "one")
    two = mkenv(tmp_path / "envs2" / "two")
    (tmp_path / "envs1" / "not-an-env").mkdir()
    reg = mkenv(tmp_path / "elsewhere" / "reg")
    extra = mkenv(tmp_path / "extra")
    home = tmp_path / "home"
    (home / ".conda").mkdir(parents=True)
    (home / ".conda" / "environments.txt").write_text(f"{reg}\n{one}\n/does/not/exist\n")
    environ = {
        "HOME": str(home),
        "CONDA_ROOT": root,
        "CONDA_ENVS_DIRS": os.pathsep.join([str(tmp_path / "envs1"), str(tmp_path / "envs2")]),
    }
    found = known_environments([extra], environ=environ)
    by = {e.prefix: e.sources for e in found}
    assert by == {
        extra: ["--env"],
        root: ["root"],
        one: ["envs_dirs", "environments.txt"],
        two: ["envs_dirs"],
        reg: ["environments.txt"],
    }
    assert known_environments([extra], environ=environ, discover=False)[0].prefix == extra


def test_envs_dirs_from_condarc_and_defaults(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / ".condarc").write_text(f"envs_dirs:\n  - {tmp_path / 'custom'}\n")
    dirs = envs_dirs(environ={"CONDA_ROOT": str(root), "HOME": str(tmp_path)})
    assert dirs[0] == str(tmp_path / "custom")
    assert str(root / "envs") in dirs
