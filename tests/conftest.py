"""Shared fixtures: real packages built by the tests, real caches, isolated user state.

Nothing here reads ../shared: a fresh clone has to pass on its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import zstandard


def _sandbox_process_environment() -> str:
    """Give the whole test session a world of its own, before conda is first imported.

    conda reads ``~/.condarc``, ``$CONDARC``, every ``CONDA_*`` variable and the caller's
    ``environments.txt`` when its context is built, and our standalone CLI reads the same. A
    developer's shell (``CONDA_REGISTER_ENVS=false``, ``CONDA_CONSOLE=plain``, an active env, a
    ``.condarc`` with ``always_yes``) must not change what a test sees, so the caller's conda,
    mamba, pixi and rattler variables are dropped, and HOME, CONDARC and the default pkgs/envs
    dirs point into a fresh directory. Tests that need a setting set it themselves.
    """
    import atexit
    import tempfile

    root = tempfile.mkdtemp(prefix="ccp-test-world-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    # readable by the other users some tests run the CLI as (conda stats files under HOME and
    # XDG_CONFIG_HOME, and 26.1 fails on a PermissionError there)
    os.chmod(root, 0o755)
    for var in list(os.environ):
        if var.startswith(("CONDA_", "_CE_", "_CONDA", "MAMBA_", "PIXI_", "RATTLER_")) or var in (
            "CONDARC",
            "MAMBARC",
            "XDG_CONFIG_HOME",
            "XDG_CACHE_HOME",
        ):
            del os.environ[var]
    home = os.path.join(root, "home")
    os.makedirs(home)
    condarc = os.path.join(root, "condarc")
    open(condarc, "w").close()
    os.environ.update(
        HOME=home,
        CONDARC=condarc,
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        CONDA_PKGS_DIRS=os.path.join(root, "pkgs"),
        CONDA_ENVS_DIRS=os.path.join(root, "envs"),
    )
    return root


TEST_WORLD = _sandbox_process_environment()

from conda_cache_plus import pkgbuild  # noqa: E402

try:  # conda's fixtures, when conda is importable (the conda-layer tests use them)
    import conda.testing.fixtures  # noqa: F401

    HAVE_CONDA = True
except Exception:
    HAVE_CONDA = False

if HAVE_CONDA:
    pytest_plugins = ("conda.testing.fixtures",)
    # in-process calls below the conda layer see conda as the standalone CLI does: through the
    # host, made (and conda asked) on first use
    from conda_cache_plus.conda_layer.compat import install_host_if_importable

    install_host_if_importable()

# The repository and the tests folder, for tests in sub-folders that need files of either.
TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

requires_conda = pytest.mark.skipif(not HAVE_CONDA, reason="conda is not importable here")


def requires_conda_at_least(version: tuple[int, ...], what: str):
    """Skip, with the reason, on a conda older than ``version`` (the plugin feature-detects these
    features at run time; its tests of them need a conda that has them)."""
    from conda_cache_plus.conda_layer.compat import conda_version, conda_version_tuple

    have = conda_version_tuple() if HAVE_CONDA else ()
    return pytest.mark.skipif(
        not HAVE_CONDA or have < version,
        reason=f"{what} needs conda >= {'.'.join(map(str, version))}"
        + (f" (this is conda {conda_version()})" if HAVE_CONDA else " (conda is not importable)"),
    )


@pytest.fixture(autouse=True)
def _isolated_user_state(tmp_path_factory, monkeypatch):
    """Scan indexes and verify fingerprints go to a per-test cache dir, never ~/.cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("CONDA_PKGS_DIRS", raising=False)
    # Tests build their caches a moment before they clean them: without this, clean's grace
    # period (an install may be using what changed within the last hour) would keep all of it.
    # The tests of the grace period itself say which they want.
    monkeypatch.setenv("CONDA_CACHE_PLUS_GRACE", "0")
    yield


def _extract_tar_bytes(data: bytes, dest: str) -> None:
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="tar")


def extract_by_hand(archive: str, dest: str) -> None:
    """A reference extraction with the standard library (independent of our extractor)."""
    os.makedirs(dest, exist_ok=True)
    if archive.endswith(".conda"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name.endswith(".tar.zst"):
                    raw = zstandard.ZstdDecompressor().decompressobj().decompress(zf.read(name))
                    _extract_tar_bytes(raw, dest)
    else:
        with tarfile.open(archive, "r:bz2") as tar:
            tar.extractall(dest, filter="tar")


def populate(
    pkgs_dir,
    pkgs,
    *,
    channel_url="https://conda.example.org/demo",
    extract=True,
    keep_archive=True,
    record=True,
):
    """Put built packages into a cache the way conda leaves them: archive, extracted dir,
    repodata_record.json, a urls.txt line."""
    pkgs_dir = str(pkgs_dir)
    os.makedirs(pkgs_dir, exist_ok=True)
    with open(os.path.join(pkgs_dir, "urls.txt"), "a") as urls:
        for pkg in pkgs:
            url = f"{channel_url}/{pkg.subdir}/{pkg.fn}"
            target = os.path.join(pkgs_dir, pkg.fn)
            if keep_archive:
                shutil.copyfile(pkg.path, target)
            if extract:
                dest = os.path.join(pkgs_dir, pkg.dist)
                extract_by_hand(pkg.path, dest)
                if record:
                    rec = pkg.repodata_entry()
                    rec.update(fn=pkg.fn, url=url, channel=f"{channel_url}/{pkg.subdir}")
                    with open(os.path.join(dest, "info", "repodata_record.json"), "w") as fh:
                        json.dump(rec, fh, indent=2)
            urls.write(url + "\n")
    return pkgs_dir


@pytest.fixture
def build(tmp_path):
    """build(name, version, ...) → a BuiltPackage in a per-test channel dir."""
    out = tmp_path / "built"

    def _build(name="pkg", version="1.0", build="0", **kw):
        subdir = kw.get("subdir", "noarch")
        return pkgbuild.build_package(str(out / subdir), name, version, build, **kw)

    return _build


@pytest.fixture
def cache(tmp_path, build):
    """A cache with three packages: both formats of one, a .conda-only one, an archive-only one."""
    pkgs_dir = tmp_path / "pkgs"
    a = build("alpha", "1.0", "0", fmt=".conda")
    a2 = build("alpha", "1.0", "0", fmt=".tar.bz2")
    b = build("beta", "2.1", "h1", fmt=".conda", depends=["alpha"])
    c = build("gamma", "0.5", "0", fmt=".tar.bz2")
    populate(pkgs_dir, [a, b])
    populate(pkgs_dir, [a2], extract=False)  # the .tar.bz2 of alpha next to its .conda
    populate(pkgs_dir, [c], extract=False)
    return pkgs_dir


@pytest.fixture
def world(tmp_path, build):
    """A cache with environments built by hand (tests/envtools.py ``World``); modules that need
    another world define their own fixture of this name."""
    from envtools import World

    return World(tmp_path, build, populate)


@pytest.fixture
def no_racy_window(monkeypatch):
    """Remember even what was written a moment ago (tests cannot wait for files to age)."""
    from conda_cache_plus.gateways import statefile

    monkeypatch.setattr(statefile, "RACY_SECONDS", -1.0)


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www`` (see tests/httpserver.py)."""
    from httpserver import HTTPTestServer

    root = tmp_path / "www"
    root.mkdir()
    with HTTPTestServer(str(root)) as srv:
        yield srv


def run_cli(*args, env=None, input=None, check=False, cwd=None):
    """Run ``python -m conda_cache_plus`` as a user would, in a real subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "conda_cache_plus", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        cwd=cwd,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def tmpfs(tmp_path):
    """A real tmpfs mount we can remount read-only (needs root; skipped otherwise)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "none", str(mnt)],
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def pytest_sessionstart(session):
    """Users and groups a killed test session could not remove go now (tests/as_user.py)."""
    import as_user

    as_user.remove_stale()


def pytest_sessionfinish(session, exitstatus):
    """Tests leave nothing behind: the users and groups made to run the CLI as someone else, and
    the copies of the project made for them, go with the session (tests/as_user.py)."""
    import as_user

    left = as_user.remove_created()
    if left:
        sys.stderr.write(f"\nwarning: could not remove test users/groups: {', '.join(left)}\n")
