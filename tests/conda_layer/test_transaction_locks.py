"""Parallel conda installs on one package cache (issue 27), with real conda processes.

The plugin's transaction locks (``conda_layer.transaction_locks``): an install that writes an
entry holds its lock exclusively, one that links from it holds it shared; a second install
waits for the first and then reuses what it completed; a holder killed with SIGKILL releases
at once; a wait is bounded. Nothing here depends on timing: every step waits for an
observable state (a line of output, an exit), with generous deadlines for a busy machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import requires_conda_at_least
from fetch_helpers import entry_problems
from httpserver import HTTPTestServer

from conda_cache_plus import pkgbuild
from conda_cache_plus.gateways.extract import build_repodata_record, extract_archive
from conda_cache_plus.gateways.locks import FileLock
from conda_cache_plus.model.cache_paths import CacheLayout

pytestmark = requires_conda_at_least((24, 11), "the conda_post_solves hook")

DEADLINE = 600.0  # seconds, per conda process, on a loaded machine


def _build_channel(root) -> dict:
    out = os.path.join(root, "noarch")
    pkgs = {}
    for i in range(8):
        name = f"par{i}"
        files = {
            f"lib/{name}/m{j:02d}.py": f"# {name} {j}\n".encode() * (50 + j) for j in range(30)
        }
        files[f"share/{name}/link"] = pkgbuild.Symlink(f"../../lib/{name}/m00.py")
        deps = [f"par{i - 1}"] if i % 4 else []
        fmt = ".conda" if i % 2 == 0 else ".tar.bz2"
        pkgs[name] = pkgbuild.build_package(out, name, files=files, depends=deps, fmt=fmt)
    pkgbuild.write_channel(root, list(pkgs.values()))
    return pkgs


def _closure(names, pkgs) -> set[str]:
    out, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += pkgs[n].index["depends"]
    return out


@pytest.fixture
def world(tmp_path):
    channel = tmp_path / "channel"
    pkgs = _build_channel(str(channel))
    with HTTPTestServer(str(channel)) as srv:
        yield _World(tmp_path, srv, pkgs)


class _World:
    def __init__(self, root, srv, pkgs):
        self.root, self.srv, self.pkgs = root, srv, pkgs
        self.cache = str(root / "pkgs")
        self.envs = root / "envs"
        os.makedirs(root / "home", exist_ok=True)
        (root / "condarc").write_text("channels: []\n")

    def env(self, **extra) -> dict:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "MAMBA"))}
        e.update(
            HOME=str(self.root / "home"),
            CONDARC=str(self.root / "condarc"),
            CONDA_PKGS_DIRS=self.cache,
            CONDA_ENVS_DIRS=str(self.envs),
            CONDA_SOLVER="classic",
            CONDA_REGISTER_ENVS="false",
            CONDA_NOTIFY_OUTDATED_CONDA="false",
            CONDA_SUBDIR="linux-64",
        )
        e.update(extra)
        return e

    def create(self, name: str, specs, **extra) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w+")  # noqa: SIM115 (closed by finish())
        cmd = [sys.executable, "-m", "conda", "create", "-p", str(self.envs / name), "-y", "-q"]
        cmd += ["--override-channels", "-c", self.srv.base_url, *sorted(specs)]
        proc = subprocess.Popen(
            cmd, env=self.env(**extra), stdout=log, stderr=subprocess.STDOUT, text=True
        )
        proc.log = log
        return proc

    def finish(self, proc) -> tuple[int, str]:
        try:
            rc = proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "hung"
        proc.log.seek(0)
        text = proc.log.read()
        proc.log.close()
        return rc, text

    def env_problems(self, name: str, expected: set[str]) -> list[str]:
        prefix = self.envs / name
        meta = prefix / "conda-meta"
        if not (meta / "history").is_file():
            return [f"{name}: no environment"]
        problems, seen = [], set()
        for rec_path in meta.glob("*.json"):
            rec = json.loads(rec_path.read_text())
            seen.add(rec["name"])
            problems += [
                f"{name}: {rel} missing"
                for rel in rec.get("files", [])
                if not os.path.lexists(prefix / rel)
            ]
        return problems + [f"{name}: {n} not installed" for n in sorted(expected - seen)]

    def cache_problems(self) -> list[str]:
        problems = []
        for pkg in self.pkgs.values():
            if os.path.isdir(os.path.join(self.cache, pkg.dist)):
                problems += entry_problems(self.cache, pkg.dist)
        return problems


def _wait_for_line(proc, text: str) -> None:
    """Until ``text`` is in the process's output (or it ended: then the test fails)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with open(proc.log.name) as fh:
            if text in fh.read():
                return
        if proc.poll() is not None:
            with open(proc.log.name) as fh:
                pytest.fail(f"the install ended before saying {text!r}:\n{fh.read()}")
        time.sleep(0.05)
    pytest.fail(f"the install never said {text!r}")


@pytest.mark.parametrize("extractor", ["ours", "conda's"])
def test_parallel_creates_on_one_empty_cache_all_succeed(world, extractor):
    """Several real conda processes at once, overlapping package sets (both formats): every
    install succeeds, every environment has every file its records list, every entry is whole.
    With conda's own extractor (it writes in place) too: no scan runs while one fetches."""
    extra = {} if extractor == "ours" else {"CONDA_PLUGINS_CACHE_PLUS_EXTRACTOR": "false"}
    asks = [
        ["par3", "par5"],
        ["par1", "par7"],
        ["par2", "par6", "par4"],
        ["par3", "par7"],
        ["par0", "par5", "par6"],
    ]
    procs = [(f"e{i}", ask, world.create(f"e{i}", ask, **extra)) for i, ask in enumerate(asks)]
    failures = []
    for name, ask, proc in procs:
        rc, text = world.finish(proc)
        if rc != 0:
            failures.append(f"{name}: exit {rc}\n{text[-3000:]}")
        failures += world.env_problems(name, _closure(ask, world.pkgs))
    assert not failures, "\n".join(failures)
    assert not world.cache_problems()


def _complete_entry_by_hand(world, pkg) -> None:
    """What another installer does: the archive, the extracted entry (renamed into place whole,
    with its record), the URL in urls.txt."""
    url = world.srv.url("noarch/" + pkg.fn)
    shutil.copyfile(pkg.path, os.path.join(world.cache, pkg.fn))
    tmp = os.path.join(world.cache, ".by-hand")
    stats = extract_archive(os.path.join(world.cache, pkg.fn), tmp, hashes=True)
    rec = build_repodata_record(pkg.index, pkg.repodata_entry(), pkg.path, stats, url)
    with open(os.path.join(tmp, "info", "repodata_record.json"), "w") as fh:
        json.dump(rec, fh)
    os.rename(tmp, os.path.join(world.cache, pkg.dist))
    with open(os.path.join(world.cache, "urls.txt"), "a") as fh:
        fh.write(url + "\n")


def _empty_cache(world) -> CacheLayout:
    os.makedirs(world.cache)
    for name in ("urls.txt", "urls"):
        open(os.path.join(world.cache, name), "w").close()
    return CacheLayout(world.cache)


def test_an_install_waits_for_the_writer_of_an_entry_then_reuses_it(world):
    """This test holds par0's entry lock as an installer that is writing it; conda waits for it
    (and says so), and once the entry is complete and the lock released, links from it without
    downloading it again."""
    layout = _empty_cache(world)
    par0 = world.pkgs["par0"]
    lock = FileLock(layout.entry_lock(par0.dist)).acquire()
    try:
        proc = world.create("e", ["par1"])
        _wait_for_line(proc, f"waiting for {par0.dist}")
        _complete_entry_by_hand(world, par0)
    finally:
        lock.release()
    rc, text = world.finish(proc)
    assert rc == 0, text
    assert not world.env_problems("e", {"par0", "par1"})
    assert not world.srv.requests_for("noarch/" + par0.fn), "par0 was downloaded again"
    assert world.srv.requests_for("noarch/" + world.pkgs["par1"].fn)
    assert not world.cache_problems()


HOLDER = """
import sys, time
from conda_cache_plus.gateways.locks import FileLock
FileLock(sys.argv[1], shared=sys.argv[2] == "shared").acquire()
print("held", flush=True)
time.sleep(3600)
"""


def _holder(path: str, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, path, mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_holder_killed_with_sigkill_does_not_block_the_next_install(world):
    layout = _empty_cache(world)
    holder = _holder(layout.entry_lock(world.pkgs["par2"].dist), "exclusive")
    try:
        proc = world.create("e", ["par2"])
        _wait_for_line(proc, "waiting for par2")
        holder.send_signal(signal.SIGKILL)
    finally:
        holder.kill()
        holder.wait()
    rc, text = world.finish(proc)
    assert rc == 0, text
    assert not world.env_problems("e", {"par2"})


def test_a_wait_is_bounded_then_the_install_goes_on_as_conda_would(world):
    layout = _empty_cache(world)
    holder = _holder(layout.entry_lock(world.pkgs["par4"].dist), "exclusive")
    try:
        proc = world.create("e", ["par4"], CONDA_CACHE_PLUS_LOCK_TIMEOUT="1")
        rc, text = world.finish(proc)
    finally:
        holder.kill()
        holder.wait()
    assert rc == 0, text
    assert "gave up waiting for par4" in text
    assert not world.env_problems("e", {"par4"})


def test_a_linking_install_keeps_a_rewriting_one_out(world):
    """A reader (shared) of an incomplete entry: an install that must re-extract it waits; the
    entry is not deleted under the reader."""
    layout = _empty_cache(world)
    par6 = world.pkgs["par6"]
    holder = _holder(layout.entry_lock(par6.dist), "shared")
    try:
        proc = world.create("e", ["par6"])
        _wait_for_line(proc, f"waiting for {par6.dist}")
        assert proc.poll() is None
    finally:
        holder.kill()
        holder.wait()
    rc, text = world.finish(proc)
    assert rc == 0, text
    assert not world.env_problems("e", {"par6"})


def test_a_lone_install_says_nothing_about_locks(world):
    proc = world.create("e", ["par3"])
    rc, text = world.finish(proc)
    assert rc == 0, text
    assert "conda-cache-plus" not in text
    assert not world.env_problems("e", {"par0", "par1", "par2", "par3"})


def test_the_record_written_first_keeps_scans_out_until_conda_rewrites_it(tmp_path, build):
    """The extractor writes the entry's record before the entry appears; conda rewrites it right
    after (truncate, then write). Until it has, cache scans are kept out (the scan lock is held),
    so none reads it half written and writes a record without sha256 of its own."""
    from conda.models.records import PackageRecord

    from conda_cache_plus.conda_layer.transaction_locks import PENDING_MARK, Hold
    from conda_cache_plus.gateways.locks import lock_held

    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    layout = CacheLayout(str(pkgs))
    pkg = build("scanned")
    prec = PackageRecord(**pkg.repodata_entry(), fn=pkg.fn, channel="https://example/noarch")
    tree = str(tmp_path / "tree")
    extract_archive(pkg.path, tree)
    entry = str(pkgs / pkg.dist)
    Hold(None, prec, entry).write_record(tree)
    with open(os.path.join(tree, "info", "repodata_record.json")) as fh:
        assert json.load(fh)[PENDING_MARK] is True
    scan_lock = os.path.join(layout.private, "scan.lock")
    assert _held_elsewhere(scan_lock)
    os.rename(tree, entry)
    with open(os.path.join(entry, "info", "repodata_record.json"), "w") as fh:
        json.dump(prec.dump(), fh)  # what conda's _finish_extract does
    deadline = time.monotonic() + DEADLINE
    while _held_elsewhere(scan_lock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lock_held(scan_lock)


def _held_elsewhere(path: str) -> bool:
    code = (
        "import sys; from conda_cache_plus.gateways.locks import lock_held; "
        "print(lock_held(sys.argv[1]))"
    )
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    return out.stdout.strip() == "True"
