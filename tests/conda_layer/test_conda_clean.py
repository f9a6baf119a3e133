"""Under real conda: environments made by ``conda create --offline`` from a file:// channel, then
``conda cache usage`` / ``conda cache clean --unused`` compared with ``conda clean -p``.

Every difference is asserted and explained here:

1. softlinked install (``always_softlink``): conda's ``clean -p`` only looks at link counts, sees
   none, and would delete the entry the environment's symlinks point into — breaking it
   (conda#3177, #16614). We see the symlinks and the conda-meta record, and keep it.
2. copied install (``always_copy``): conda would delete it (no links). The environment keeps
   working, but the entry is what a re-link, repair or ``--offline`` reinstall needs; its
   conda-meta record names it, so we keep it.
3. package hard-linked to itself (two names for one file inside the entry, conda#7597): conda calls
   it in use forever; no environment uses it, so we remove it.
4. what goes: conda's ``-p`` removes only the extracted directory (archives are ``-t``'s job) and
   sizes it by ``lstat`` of its files; ``clean --unused`` removes the whole entry (archive, dir,
   urls.txt line), ``--extracted`` only the dir. Our byte figures add directories and archives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import requires_conda

from conda_cache_plus import pkgbuild

pytestmark = [requires_conda, pytest.mark.conda, pytest.mark.slow]


def make_conda_world(t):
    """Environments linked each way conda links, one removed; read-only tests share one world."""
    channel = t / "channel"
    pkgs = [
        pkgbuild.build_package(str(channel / "noarch"), name, "1.0", "0", depends=deps)
        for name, deps in (
            ("aa", []),
            ("bb", ["aa"]),
            ("cc", []),
            ("dd", []),
            ("ee", []),
            ("ff", []),
        )
    ]
    url = pkgbuild.write_channel(str(channel), pkgs)
    env = dict(os.environ)
    env.update(
        HOME=str(t / "home"),
        CONDA_PKGS_DIRS=str(t / "pkgs"),
        CONDA_ENVS_DIRS=str(t / "envs"),
        CONDA_SOLVER="classic",
        XDG_CACHE_HOME=str(t / "xdg"),
    )
    for var in ("CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDARC"):
        env.pop(var, None)
    os.makedirs(env["HOME"])

    def conda(*args, extra=None, check=True):
        proc = subprocess.run(
            [sys.executable, "-m", "conda", *args],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"conda {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    flags = ["--offline", "--yes", "-c", url, "--override-channels"]
    prefixes = {k: str(t / k) for k in ("hard", "soft", "copy", "gone")}
    conda("create", "-p", prefixes["hard"], "bb", *flags)  # default: hard links
    conda(
        "create",
        "-p",
        prefixes["soft"],
        "cc",
        *flags,
        extra={"CONDA_ALLOW_SOFTLINKS": "true", "CONDA_ALWAYS_SOFTLINK": "true"},
    )
    conda("create", "-p", prefixes["copy"], "ee", *flags, extra={"CONDA_ALWAYS_COPY": "true"})
    conda("create", "-p", prefixes["gone"], "dd", "ff", *flags)
    conda("remove", "-p", prefixes["gone"], "--all", "--yes")
    # ff: one file hard-linked to another inside the entry (a package linked to itself)
    ff = t / "pkgs" / "ff-1.0-0" / "share" / "ff"
    os.unlink(ff / "README")
    os.link(ff / "data.bin", ff / "README")
    return {"conda": conda, "pkgs": str(t / "pkgs"), "prefixes": prefixes}


@pytest.fixture(scope="module")
def conda_world(tmp_path_factory):
    return make_conda_world(tmp_path_factory.mktemp("realconda"))


@pytest.fixture
def own_conda_world(tmp_path):
    """A world of its own, for a test that removes: tests run in any order."""
    return make_conda_world(tmp_path)


def test_environments_really_link_the_way_we_think(conda_world):
    p = conda_world["prefixes"]
    pkgs = conda_world["pkgs"]
    assert os.path.islink(os.path.join(p["soft"], "share", "cc", "README"))
    assert os.readlink(os.path.join(p["soft"], "share", "cc", "README")).startswith(pkgs)
    assert os.stat(os.path.join(p["hard"], "share", "aa", "README")).st_nlink == 2
    copied = os.path.join(p["copy"], "share", "ee", "README")
    assert not os.path.islink(copied) and os.stat(copied).st_nlink == 1


def test_usage_under_conda(conda_world):
    out = conda_world["conda"]("cache", "usage", "--json").stdout
    data = json.loads(out)
    p = conda_world["prefixes"]
    # conda registered the -p environments in ~/.conda/environments.txt; the removed one is gone
    assert {e["prefix"] for e in data["environments"]} == {p["hard"], p["soft"], p["copy"]}
    by = {e["name"]: e["used_by"] for e in data["entries"]}
    assert by["aa"] == [
        {"prefix": p["hard"], "evidence": ["hardlink", "record"], "link_type": "hardlink"}
    ]
    assert by["cc"] == [
        {"prefix": p["soft"], "evidence": ["record", "symlink"], "link_type": "softlink"}
    ]
    assert by["ee"] == [{"prefix": p["copy"], "evidence": ["record"], "link_type": "copy"}]
    assert by["dd"] == by["ff"] == []
    env_view = json.loads(
        conda_world["conda"]("cache", "usage", "--env", p["soft"], "--json").stdout
    )
    (soft,) = env_view["environments"]
    assert soft["packages"][0]["cache_entries"] == [os.path.join(conda_world["pkgs"], "cc-1.0-0")]


def test_clean_unused_compared_with_conda_clean_p(conda_world):
    conda = conda_world["conda"]
    pkgs = conda_world["pkgs"]
    theirs_proc = conda("clean", "-p", "--dry-run", "--json", check=False)
    theirs = json.loads(theirs_proc.stdout)
    conda_would = set(theirs["packages"]["pkgs_dirs"][pkgs])
    ours = json.loads(
        conda("cache", "clean", "--unused", "--grace", "0", "--dry-run", "--json").stdout
    )
    we_would = {i["name"] for i in ours["items"]}

    assert conda_would == {"cc-1.0-0", "ee-1.0-0", "dd-1.0-0"}
    assert we_would == {"dd-1.0-0", "ff-1.0-0"}
    assert conda_would & we_would == {"dd-1.0-0"}  # the plainly unused package: both agree
    # 1. softlinked env: conda would break it
    assert "cc-1.0-0" in conda_would - we_would
    # 2. copied env: conda would remove what it was installed from
    assert "ee-1.0-0" in conda_would - we_would
    # 3. self-hard-linked package: conda keeps it forever, nobody uses it
    assert "ff-1.0-0" in we_would - conda_would
    # 4. what goes: conda -p sizes only the dir's files; we also remove and count the archive
    dd = next(i for i in ours["items"] if i["name"] == "dd-1.0-0")
    assert dd["paths"] == [os.path.join(pkgs, "dd-1.0-0.conda"), os.path.join(pkgs, "dd-1.0-0")]
    dir_files = theirs["packages"]["pkg_sizes"][pkgs]["dd-1.0-0"]
    assert dd["bytes"]["apparent"] > dir_files + os.path.getsize(dd["paths"][0])
    extracted = json.loads(
        conda(
            "cache", "clean", "--unused", "--extracted", "--grace", "0", "--dry-run", "--json"
        ).stdout
    )
    assert {i["name"] for i in extracted["items"]} == we_would
    assert all(i["paths"] == [os.path.join(pkgs, i["name"])] for i in extracted["items"])


def test_real_clean_keeps_every_environment_working(own_conda_world):
    conda_world = own_conda_world
    conda = conda_world["conda"]
    data = json.loads(conda("cache", "clean", "--unused", "--grace", "0", "--yes", "--json").stdout)
    assert {i["name"] for i in data["items"]} == {"dd-1.0-0", "ff-1.0-0"}
    p = conda_world["prefixes"]
    for env, name in (("hard", "aa"), ("soft", "cc"), ("copy", "ee")):
        with open(os.path.join(p[env], "share", name, "README")) as fh:
            assert fh.read() == f"{name} 1.0\n"
    # conda still sees a consistent cache (and the softlinked env's package is still there)
    listing = conda("clean", "-p", "--dry-run", "--json", check=False).stdout
    assert "dd-1.0-0" not in listing and "ff-1.0-0" not in listing
