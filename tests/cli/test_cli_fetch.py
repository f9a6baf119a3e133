"""``conda cache fetch`` as users run it: real subprocesses, a real server, real conda.

Includes the crash test (kill -9 at random moments, then every entry verified file by file) and
the concurrency test (three processes, one cache, the same packages).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

from conftest import requires_conda, run_cli
from fetch_helpers import entry_problems, serve_packages, write_explicit

from conda_cache_plus import pkgbuild
from conda_cache_plus.layouts.kinds import scan


def tree(root) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def test_fetch_json_and_summary(tmp_path, http_server):
    served = serve_packages(http_server, [("one", "1", 30), ("two", "2", 5)])
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    pkgs = str(tmp_path / "pkgs")
    proc = run_cli("fetch", explicit, "--pkgs-dir", pkgs, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verb"] == "fetch" and data["target"] == pkgs
    assert data["summary"]["counts"]["downloaded"] == 2 and data["summary"]["extractions"] == 2
    assert data["summary"]["bytes_downloaded"] == sum(p.size for p in served)
    assert data["failures"] == []
    assert {p["outcome"] for p in data["packages"]} == {"downloaded"}

    proc = run_cli("fetch", explicit, "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stderr
    assert "2 already cached." in proc.stdout and "downloaded" not in proc.stdout


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path, http_server, build):
    served = serve_packages(http_server, [("one", "1", 3), ("two", "2", 3)])
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    (pkgs / "urls.txt").write_text("")
    with open(pkgs / (served[1].fn + ".partial"), "wb") as fh:
        fh.write(b"x" * 100)
    before = tree(pkgs)
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(pkgs), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "download+extract" in proc.stdout and served[0].fn in proc.stdout
    assert "resuming 100 B" in proc.stdout
    assert "Dry run" in proc.stdout
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(pkgs), "--dry-run", "--json")
    plan = json.loads(proc.stdout)["plan"]
    assert plan["counts"] == {"none": 0, "extract": 0, "copy": 0, "download": 2}
    assert tree(pkgs) == before
    assert http_server.requests == []
    fresh = tmp_path / "fresh"
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(fresh), "-d", "--json")
    assert json.loads(proc.stdout)["plan"]["create_target"] is True
    assert not fresh.exists()


def test_failures_exit_non_zero_and_are_listed(tmp_path, http_server):
    good, gone = serve_packages(http_server, [("good", "1", 3), ("gone", "1", 3)])
    os.unlink(os.path.join(http_server.directory, "noarch", gone.fn))
    explicit = write_explicit(tmp_path / "env.txt", http_server, [good, gone])
    pkgs = str(tmp_path / "pkgs")
    proc = run_cli("fetch", explicit, "--pkgs-dir", pkgs)
    assert proc.returncode == 3
    assert f"FAILED {gone.fn}" in proc.stdout and "404" in proc.stdout
    assert "1 package(s) could not be fetched" in proc.stderr and gone.fn in proc.stderr
    assert entry_problems(pkgs, good.dist) == []
    proc = run_cli("fetch", explicit, "--pkgs-dir", pkgs, "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 3
    assert [f["fn"] for f in data["failures"]] == [gone.fn]
    assert data["summary"]["counts"]["reused"] == 1


def test_urls_paths_and_repodata_inputs(tmp_path, http_server):
    a, b, c = serve_packages(http_server, [("a", "1", 3), ("b", "1", 3), ("c", "1", 3)])
    pkgs = str(tmp_path / "pkgs")
    local = os.path.join(http_server.directory, "noarch", a.fn)
    proc = run_cli(
        "fetch",
        local,
        http_server.url(f"noarch/{b.fn}#{b.md5}"),
        "--pkgs-dir",
        pkgs,
        "--json",
        "--offline",  # the file path needs no network; the URL must fail
    )
    data = json.loads(proc.stdout)
    assert {p["fn"]: p["outcome"] for p in data["packages"]} == {
        a.fn: "downloaded",
        b.fn: "failed",
    }
    assert data["failures"][0]["error_type"] == "OfflineError"
    proc = run_cli(
        "fetch",
        "--repodata",
        http_server.url("noarch/repodata.json"),
        "b",
        "c-1-*",
        "--pkgs-dir",
        pkgs,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert sorted(p["fn"] for p in data["packages"]) == [b.fn, c.fn]
    for pkg in (a, b, c):
        assert entry_problems(pkgs, pkg.dist) == []
    proc = run_cli("fetch", "not-a-thing", "--pkgs-dir", pkgs)
    assert proc.returncode == 2 and "--repodata" in proc.stderr


def test_explicit_file_by_url(tmp_path, http_server):
    served = serve_packages(http_server, [("e", "1", 3)])
    write_explicit(os.path.join(http_server.directory, "env.txt"), http_server, served, "md5")
    pkgs = str(tmp_path / "pkgs")
    proc = run_cli("fetch", http_server.url("env.txt"), "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stderr
    assert entry_problems(pkgs, served[0].dist) == []


# -- crashes and concurrency --------------------------------------------------------------------
def _fetch_cmd(explicit, pkgs, *extra):
    return [sys.executable, "-m", "conda_cache_plus", "fetch", explicit, "--pkgs-dir", pkgs, *extra]


def _check_cache(pkgs_dir, served) -> None:
    """No entry a reader would accept is wrong: every package directory verifies completely,
    every archive matches its checksum, and the scanner sees no half entries."""
    by_dist = {p.dist: p for p in served}
    res = scan(pkgs_dir, use_index=False)
    assert res.broken == []
    for rec in res.records:
        pkg = by_dist[rec.basename]
        if rec.has_dir:
            assert rec.is_extracted and rec.is_complete, rec
            assert entry_problems(pkgs_dir, rec.basename) == []
        if rec.archives:
            from conda_cache_plus.gateways.download import hash_file

            assert hash_file(os.path.join(pkgs_dir, pkg.fn))[1] == pkg.sha256


def test_kill_9_at_random_moments_never_leaves_a_bad_entry(tmp_path, http_server):
    served = serve_packages(
        http_server,
        [(f"crash{i}", "1", n, n * 2500) for i, n in enumerate((400, 300, 200, 120, 60, 20))],
    )
    for p in served:  # slow transfers, one at a time: every run gets a little further
        http_server.behaviour.slow[f"/noarch/{p.fn}"] = 0.001
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    pkgs = str(tmp_path / "pkgs")
    rng = random.Random(20240611)
    for _ in range(5):
        proc = subprocess.Popen(
            _fetch_cmd(explicit, pkgs, "-q", "--download-workers", "1", "--extract-workers", "1"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.25, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if os.path.isdir(pkgs):
            _check_cache(pkgs, served)
    proc = subprocess.run(_fetch_cmd(explicit, pkgs, "--json"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    _check_cache(pkgs, served)
    for p in served:
        assert entry_problems(pkgs, p.dist) == []


def _interrupt_once_downloading(proc, partial: str, said: str | None = None) -> tuple:
    """Ctrl-C ``proc`` once ``partial`` has bytes (and, given ``said``, once its output says
    so: the bytes reach the disk before the progress line, and a loaded machine can deliver the
    signal in between); its output, after it exited with 130."""
    chunks: dict[str, list] = {"out": [], "err": []}
    readers = [
        threading.Thread(target=lambda s=stream, k=key: chunks[k].extend(iter(s.readline, "")))
        for key, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()

    def ready() -> bool:
        if not (os.path.exists(partial) and os.path.getsize(partial) > 0):
            return False
        return said is None or any(said in line for c in chunks.values() for line in list(c))

    deadline = time.monotonic() + 60
    while not ready():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    for reader in readers:
        reader.join(timeout=60)
    assert proc.returncode == 130, "".join(chunks["err"])
    return "".join(chunks["out"]), "".join(chunks["err"])


def test_three_processes_one_cache_do_the_work_once(tmp_path, http_server):
    served = serve_packages(
        http_server, [(f"conc{i}", "1", 40 + 30 * i, 100_000 * i) for i in range(6)]
    )
    for p in served:
        http_server.behaviour.slow[f"/noarch/{p.fn}"] = 0.001
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    pkgs = str(tmp_path / "pkgs")
    procs = [
        subprocess.Popen(
            _fetch_cmd(explicit, pkgs, "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out) for out, _err in outputs]
    assert sum(r["summary"]["extractions"] for r in results) == len(served)
    assert sum(r["summary"]["counts"]["downloaded"] for r in results) == len(served)
    for p in served:
        assert len(http_server.requests_for(f"noarch/{p.fn}")) == 1
        assert entry_problems(pkgs, p.dist) == []
    with open(os.path.join(pkgs, "urls.txt")) as fh:
        lines = fh.read().splitlines()
    assert sorted(lines) == sorted(http_server.url(f"noarch/{p.fn}") for p in served)


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, http_server):
    served = serve_packages(http_server, [("slow", "1", 40, 2_000_000), ("quick", "1", 5)])
    http_server.behaviour.slow[f"/noarch/{served[0].fn}"] = 0.01
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    pkgs = str(tmp_path / "pkgs")
    proc = subprocess.Popen(
        _fetch_cmd(explicit, pkgs, "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = os.path.join(pkgs, served[0].fn + ".partial")
    out, _err = _interrupt_once_downloading(proc, partial)
    data = json.loads(out)
    assert data["summary"]["interrupted"] is True
    assert os.path.getsize(partial) > 0  # kept for the resume
    _check_cache(pkgs, served)
    http_server.behaviour.slow.clear()
    proc = subprocess.run(_fetch_cmd(explicit, pkgs, "--json"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["bytes_resumed"] > 0
    assert http_server.requests_for(f"noarch/{served[0].fn}")[-1]["range"] is not None
    _check_cache(pkgs, served)


# -- under real conda ----------------------------------------------------------------------------
CONDA_PFE = """
import json, sys
from conda.base.context import context, reset_context
from conda.core.package_cache_data import PackageCacheData, ProgressiveFetchExtract
from conda.models.match_spec import MatchSpec

def records(pkgs_dir):
    PackageCacheData._cache_.clear()
    out = {}
    for rec in PackageCacheData(pkgs_dir).iter_records():
        out[rec.fn] = {k: str(getattr(rec, k, None)) for k in sys.argv[3].split(",")}
        out[rec.fn]["channel"] = rec.channel.canonical_name
    return out

if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "fetch":
        specs = []
        for line in open(sys.argv[4]):
            line = line.strip()
            if line and not line.startswith(("#", "@")):
                url, _, sha = line.partition("#")
                specs.append(MatchSpec(url, sha256=sha))
        ProgressiveFetchExtract(specs).execute()
    print(json.dumps(records(target)))
"""

FIELDS = "name,version,build,build_number,subdir,fn,md5,sha256,url,size,is_extracted,is_fetched"


def conda_env(tmp_path, pkgs) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "CONDA_PKGS_DIRS": str(pkgs),
        "CONDA_SOLVER": "classic",
        "CONDA_REGISTER_ENVS": "false",
        "CONDA_ENVS_DIRS": str(tmp_path / "envs"),
        "CONDARC": str(tmp_path / "condarc"),
        "CONDA_CACHE_PLUS_NO_CONDA": "",
    }


def conda_python(args, env, **kw):
    full = dict(os.environ)
    full.update(env)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=full, timeout=300, **kw
    )


@requires_conda
def test_conda_reads_our_records_as_its_own(tmp_path, http_server):
    served = serve_packages(http_server, [("rec", "1", 20)], subdir="linux-64")
    served += serve_packages(http_server, [("noa", "2", 5)], fmt=".tar.bz2")
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    script = tmp_path / "pfe.py"
    script.write_text(CONDA_PFE)
    # Ours through conda itself: `conda cache fetch` (the plugin, conda's session and context).
    proc = conda_python(
        ["-m", "conda", "cache", "fetch", explicit, "--json"], conda_env(tmp_path, ours)
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["summary"]["counts"]["downloaded"] == 2
    proc = conda_python(
        [str(script), "fetch", str(theirs), FIELDS, explicit], conda_env(tmp_path, theirs)
    )
    assert proc.returncode == 0, proc.stderr
    conda_view_of_theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    proc = conda_python([str(script), "read", str(ours), FIELDS], conda_env(tmp_path, ours))
    assert proc.returncode == 0, proc.stderr
    conda_view_of_ours = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(conda_view_of_ours) == {p.fn for p in served}
    assert conda_view_of_ours == conda_view_of_theirs


@requires_conda
def test_conda_create_offline_reuses_our_entries(tmp_path):
    channel = tmp_path / "channel"
    pkgs_built = [
        pkgbuild.build_package(str(channel / "noarch"), "lib", "1.0", "0"),
        pkgbuild.build_package(
            str(channel / "noarch"), "tool", "2.0", "0", depends=["lib"], fmt=".tar.bz2"
        ),
    ]
    url = pkgbuild.write_channel(str(channel), pkgs_built)
    explicit = str(tmp_path / "env.txt")
    pkgbuild.write_explicit(explicit, pkgs_built, url)
    pkgs = tmp_path / "pkgs"
    env = conda_env(tmp_path, pkgs)
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(pkgs), env=env)
    assert proc.returncode == 0, proc.stderr
    before = tree(pkgs)
    urls_before = (pkgs / "urls.txt").read_text()
    prefix = tmp_path / "envs" / "made"
    proc = conda_python(
        [
            "-m",
            "conda",
            "create",
            "--offline",
            "--yes",
            "-p",
            str(prefix),
            "--override-channels",
            "-c",
            url,
            "tool",
        ],
        env,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert (prefix / "share" / "tool" / "README").is_file()
    assert (prefix / "share" / "lib" / "README").is_file()
    assert (pkgs / "urls.txt").read_text() == urls_before  # nothing was downloaded
    after = tree(pkgs)
    for p in pkgs_built:
        for rel in (p.fn, p.dist, os.path.join(p.dist, "info", "repodata_record.json")):
            assert after[rel] == before[rel], rel  # not re-fetched, not re-extracted


def test_runs_without_conda(tmp_path, http_server):
    # Where conda is importable, CONDA_CACHE_PLUS_NO_CONDA makes the CLI ignore it (the
    # standalone path); without conda that is the only path anyway.
    served = serve_packages(http_server, [("plain", "1", 3)])
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    proc = run_cli(
        "fetch",
        explicit,
        "--pkgs-dir",
        str(tmp_path / "pkgs"),
        env={"CONDA_CACHE_PLUS_NO_CONDA": "1"},
    )
    assert proc.returncode == 0, proc.stderr


# -- numbers that are true -------------------------------------------------------------------------
def test_dry_run_says_size_unknown_not_zero(tmp_path, http_server):
    served = serve_packages(http_server, [("one", "1", 3), ("two", "2", 3)])
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)  # URLs: no sizes
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(tmp_path / "pkgs"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "2 to download (size unknown)" in " ".join(proc.stdout.split())
    assert "(0 B)" not in proc.stdout
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(tmp_path / "pkgs"), "-d", "--json")
    plan = json.loads(proc.stdout)["plan"]
    assert (plan["download_bytes"], plan["unknown_sizes"]) == (0, 2)


def test_resumed_only_when_the_server_honours_range(tmp_path, http_server):
    (pkg,) = serve_packages(http_server, [("big", "1", 3, 300_000)])
    explicit = write_explicit(tmp_path / "env.txt", http_server, [pkg])
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    with open(pkgs / (pkg.fn + ".partial"), "wb") as fh, open(pkg.path, "rb") as src:
        fh.write(src.read(100_000))
    http_server.behaviour.no_range.add(f"/noarch/{pkg.fn}")  # answers 200 with everything
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(pkgs), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary["bytes_resumed"] == 0
    assert http_server.requests_for(f"noarch/{pkg.fn}")[0]["range"] == "bytes=100000-"


def test_ctrl_c_plain_progress_counts_only_what_finished(tmp_path, http_server):
    served = serve_packages(http_server, [("slow", "1", 40, 2_000_000), ("quick", "1", 5)])
    http_server.behaviour.slow[f"/noarch/{served[0].fn}"] = 0.01
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    pkgs = str(tmp_path / "pkgs")
    proc = subprocess.Popen(
        _fetch_cmd(explicit, pkgs, "--console", "plain"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = os.path.join(pkgs, served[0].fn + ".partial")
    out, err = _interrupt_once_downloading(proc, partial, said="slow-1-0: started")
    text = out + err
    assert "slow-1-0: stopped at" in text, text
    summaries = [line for line in text.splitlines() if line.startswith("progress: ")]
    assert summaries and all(not line.startswith("progress: 2 of 2 done") for line in summaries)


def test_repodata_fetch_takes_one_format_and_matchspecs_and_stays_put(tmp_path, http_server):
    """Both formats in the channel: the .conda only, one entry each; a second run reuses it
    (no re-extraction flipping between formats)."""
    pkgbuild.demo_channel(http_server.directory)
    pkgs = str(tmp_path / "pkgs")
    cmd = ["fetch", "--repodata", http_server.url("noarch/repodata.json"), "demo-lib>=1.1"]
    proc = run_cli(*cmd, "demo-tool", "--pkgs-dir", pkgs, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert sorted(p["fn"] for p in data["packages"]) == [
        "demo-lib-1.1-0.conda",
        "demo-tool-2.0-0.conda",
    ]
    assert not [n for n in os.listdir(pkgs) if n.endswith(".tar.bz2")]
    proc = run_cli(*cmd, "demo-tool", "--pkgs-dir", pkgs, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["summary"]["counts"]["downloaded"] == 0
    assert data["summary"]["extractions"] == 0
    assert run_cli("verify", "--pkgs-dir", pkgs, "--full").returncode == 0


def test_summary_counts_only_bytes_of_ready_packages_after_a_full_disk(
    tmpfs, http_server, tmp_path
):
    """A package downloaded but not extracted (the disk filled up) is not "downloaded": its
    bytes are said apart, so the count and the size in one phrase describe the same packages."""
    small, big = serve_packages(http_server, [("fits", "1", 3), ("toobig", "1", 3, 9_000_000)])
    explicit = write_explicit(tmp_path / "env.txt", http_server, [small, big])
    proc = run_cli("fetch", explicit, "--pkgs-dir", str(tmpfs / "pkgs"), "--extract-workers", "1")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    head = next(ln for ln in proc.stdout.splitlines() if "package(s) ready" in ln)
    assert head.startswith("1 of 2 package(s) ready"), head
    assert "1 downloaded (" in head and "MiB)" not in head.split("1 downloaded (")[1][:12], head
    assert "for packages not ready" in " ".join(proc.stdout.split()), proc.stdout
