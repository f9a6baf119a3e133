"""The package extractor plugin under real conda: on by default, off with the setting, and
``conda create --offline`` from a file:// channel works either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import TESTS, requires_conda_at_least

from conda_cache_plus import pkgbuild
from conda_cache_plus.conda_layer.extractor import EXTRACTOR_NAME, SETTING_NAME

ENV_VAR = f"CONDA_PLUGINS_{SETTING_NAME.upper()}"

pytestmark = requires_conda_at_least((26, 1), "package extractor plugins")


def _env(tmp_path, setting: str | None) -> dict:
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        CONDA_PKGS_DIRS=str(tmp_path / "pkgs"),
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
        CONDA_CACHE_PLUS_NO_CONDA="",
    )
    env.pop(ENV_VAR, None)
    if setting is not None:
        env[ENV_VAR] = setting
    return env


def _conda(tmp_path, setting, *args):
    return subprocess.run(
        [sys.executable, "-m", "conda", *args],
        capture_output=True,
        text=True,
        env=_env(tmp_path, setting),
        timeout=300,
    )


PROBE = (
    "from conda.base.context import context as c; import json; "
    "print(json.dumps({k: v.name for k, v in c.plugin_manager.get_package_extractors().items()}))"
)


@pytest.mark.parametrize(
    "setting,expected", [(None, None), ("false", "conda-package"), ("true", None)]
)
def test_setting_decides_who_extracts(tmp_path, setting, expected):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=_env(tmp_path, setting),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    by_ext = json.loads(proc.stdout)
    assert by_ext == {".conda": expected or EXTRACTOR_NAME, ".tar.bz2": expected or EXTRACTOR_NAME}


@pytest.fixture
def channel(tmp_path):
    ch = tmp_path / "channel"
    pkgs = [
        pkgbuild.build_package(
            str(ch / "noarch"),
            "cpx-alpha",
            files={
                "share/cpx-alpha/a.txt": b"alpha\n",
                "share/cpx-alpha/link": pkgbuild.Symlink("a.txt"),
            },
        ),
        pkgbuild.build_package(
            str(ch / "noarch"), "cpx-beta", "2.0", fmt=".tar.bz2", depends=["cpx-alpha"]
        ),
    ]
    return pkgbuild.write_channel(str(ch), pkgs)


@pytest.mark.parametrize("setting", ["false", "true"])
def test_conda_create_offline_with_and_without_the_plugin(tmp_path, channel, setting):
    prefix = tmp_path / "env"
    proc = _conda(
        tmp_path,
        setting,
        *("create", "-p", str(prefix), "--offline", "--yes", "--override-channels"),
        *("-c", channel, "cpx-beta"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (prefix / "share" / "cpx-alpha" / "a.txt").read_text() == "alpha\n"
    assert os.readlink(prefix / "share" / "cpx-alpha" / "link") == "a.txt"
    assert (prefix / "share" / "cpx-beta" / "README").is_file()
    pkgs = tmp_path / "pkgs"
    for dist in ("cpx-alpha-1.0-0", "cpx-beta-2.0-0"):
        rec = json.loads((pkgs / dist / "info" / "repodata_record.json").read_text())
        assert rec["url"].startswith(channel)
    # either way the install took its entries' locks (issue 27); which extractor ran is
    # test_setting_decides_who_extracts's business
    assert (pkgs / ".conda-cache-plus" / "locks" / "cpx-alpha-1.0-0.lock").is_file()
    assert not [n for n in os.listdir(pkgs) if n.startswith(".cpx-tmp-")]


def test_conda_info_json_is_unaffected(tmp_path):
    proc = _conda(tmp_path, "true", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "conda_version" in json.loads(proc.stdout)
    assert "Error while loading conda entry point" not in proc.stderr


def _hostile(out_dir: str, fmt: str = ".conda"):
    import tarfile

    link = tarfile.TarInfo("share/out")
    link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
    through = tarfile.TarInfo("share/out/cpx-evil-through-link")
    through.size = 1
    return pkgbuild.build_package(
        out_dir, "cpx-evil", fmt=fmt, extra_members=[(link, None), (through, b"x")]
    )


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_a_refused_archive_stays_in_the_cache(tmp_path, fmt):
    """conda's cache scan deletes an archive whose extraction raises OSError or cph's
    InvalidArchiveError; ours warns, keeps it, and says how to use conda's extractor."""
    import shutil

    ch = tmp_path / "channel"
    evil = _hostile(str(ch / "noarch"), fmt)
    good = pkgbuild.build_package(str(ch / "noarch"), "cpx-good")
    channel = pkgbuild.write_channel(str(ch), [evil, good])
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    shutil.copy(evil.path, pkgs / evil.fn)
    create = ("create", "--offline", "--yes", "--override-channels", "-c", channel)
    # the scan (any command listing the cache) meets the archive without its directory
    proc = _conda(tmp_path, "true", *create, "-p", str(tmp_path / "e1"), "cpx-good")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "refused to extract cpx-evil-1.0-0" in proc.stderr
    assert "member 'share/out/cpx-evil-through-link'" in proc.stderr
    assert "conda config --set plugins.cache_plus_extractor false" in proc.stderr
    assert "re-download" not in proc.stderr
    assert (pkgs / evil.fn).is_file()
    # installing it fails with the same message, and still keeps the archive
    proc = _conda(tmp_path, "true", *create, "-p", str(tmp_path / "e2"), "cpx-evil")
    assert proc.returncode != 0
    assert "refused to extract" in proc.stdout + proc.stderr
    assert (pkgs / evil.fn).is_file()
    assert not os.path.lexists("/tmp/cpx-evil-through-link")
    assert not [n for n in os.listdir(pkgs) if n.startswith(".cpx-tmp-")]


def _trees(pkgs) -> list[str]:
    return [n for n in os.listdir(pkgs) if n.startswith(".cpx-tmp-")] if pkgs.exists() else []


def _tree_bytes(pkgs) -> int:
    total = 0
    for n in _trees(pkgs):
        for dirpath, _dirs, files in os.walk(pkgs / n):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
    return total


def _conda_extracting_a_bomb(tmp_path):
    """``conda create`` of a 64 GiB bomb through our extractor, once it is writing."""
    import time

    from builders import bomb

    ch = tmp_path / "channel"
    big = bomb(str(ch / "noarch"), gib=64)
    small = pkgbuild.build_package(str(ch / "noarch"), "cpx-small")
    channel = pkgbuild.write_channel(str(ch), [big, small])
    env = _env(tmp_path, "true")
    # tests/slowdisk: a starved test must not let the bomb fill the disk
    brake = tmp_path / "slow-writes-on"
    env["CPX_TEST_SLOW_WRITES"] = str(brake)
    paths = [os.path.join(TESTS, "slowdisk"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "conda", "create", "-p", str(tmp_path / "e1")),
            *("--offline", "--yes", "--override-channels", "-c", channel, "cpx-bomb"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pkgs = tmp_path / "pkgs"
    deadline = time.monotonic() + 300
    while _tree_bytes(pkgs) < (8 << 20):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "conda never started extracting"
        time.sleep(0.05)
    assert brake.exists(), "the extractor no longer writes through os.write: see tests/slowdisk"
    return proc, pkgs, channel


def test_ctrl_c_stops_conda_extracting_a_bomb(tmp_path):
    import signal
    import time

    proc, pkgs, _channel = _conda_extracting_a_bomb(tmp_path)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    print(f"conda exited {time.monotonic() - sent:.2f}s after SIGINT")
    assert proc.returncode != 0
    assert _trees(pkgs) == [], out
    assert not (pkgs / "cpx-bomb-1.0-0").exists()


def test_kill_9_then_the_next_conda_create_removes_the_dead_tree(tmp_path):
    proc, pkgs, channel = _conda_extracting_a_bomb(tmp_path)
    proc.kill()
    proc.wait()
    assert len(_trees(pkgs)) == 1
    # (otherwise the next command's cache scan extracts the whole bomb, as stock conda would)
    os.unlink(pkgs / "cpx-bomb-1.0-0.conda")
    res = _conda(
        tmp_path,
        "true",
        *("create", "-p", str(tmp_path / "e2"), "--offline", "--yes", "--override-channels"),
        *("-c", channel, "cpx-small"),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert _trees(pkgs) == []


def test_a_full_disk_names_the_package_and_the_directory(tmp_path):
    """ENOSPC through the plugin: conda gets one error naming both, and nothing is left."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    from conda_cache_plus.conda_layer.extractor import extract

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        pkg = pkgbuild.build_package(
            str(tmp_path / "src"), "cpx-large", files={"share/big.bin": os.urandom(3 << 20)}
        )
        with pytest.raises(Exception) as info:
            extract(pkg.path, str(mnt / "cpx-large-1.0-0"))
        msg = str(info.value)
        assert "cpx-large-1.0-0.conda" in msg and str(mnt) in msg and "no space left" in msg
        assert not isinstance(info.value, OSError)  # conda's scan would delete the archive
        assert os.listdir(mnt) == []
        assert os.path.isfile(pkg.path)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_refused_destination_says_where_the_archive_is_only_if_it_is(tmp_path):
    """conda may move the archive aside while we refuse (CacheUrlAction): the message tells."""
    from conda_cache_plus.conda_layer.extractor import extract

    archive = tmp_path / "x-1.0-0.conda"
    archive.write_bytes(b"not read: the destination is refused first")
    with pytest.raises(Exception) as kept:
        extract(str(archive), str(tmp_path / ".."))
    assert f"Nothing was written. The archive was kept at {archive}." in str(kept.value)
    archive.unlink()
    with pytest.raises(Exception) as gone:
        extract(str(archive), str(tmp_path / ".."))
    assert f"The archive is no longer at {archive}." in str(gone.value)
    assert "was kept" not in str(gone.value)
