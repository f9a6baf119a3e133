"""Concurrent installs on one shared cache (issue 27): N real ``conda create`` at once.

    python benchmarks/soak_concurrent.py [--rounds 5] [--procs 8] [--modes plugin stock]
        [--work /var/tmp] [--json OUT] [--kill]

Run it with the Python that has conda and conda-cache-plus installed. A channel of 16 packages
(half ``.conda``, half ``.tar.bz2``, a few hundred KB and 40-250 files each, some depending on
others) is built with ``conda_cache_plus.pkgbuild`` and served over HTTP on 127.0.0.1. Each round,
for each mode (the order alternates every round), ``--procs`` processes ``python -m conda create``
start at once on one empty pkgs dir, each with its own environment and an overlapping package set.

Modes: ``plugin`` (conda-cache-plus installed, defaults), ``extractor-off`` (installed, with
``CONDA_PLUGINS_CACHE_PLUS_EXTRACTOR=false``: conda's own extractor, our hooks still on), ``stock``
(``CONDA_NO_PLUGINS=true``: conda exactly as shipped; nothing of ours runs).

After each round it checks, and counts as a failed install:

- a process that exited non-zero, or ran out of ``--timeout`` (a hang; killed);
- a process that exited 0 without a complete environment: ``conda-meta/history`` missing, a
  package of its solution missing from ``conda-meta``, or a file a ``conda-meta/*.json`` record
  lists missing from the prefix.

and, for the cache: every extracted entry and every archive is compared with a quiet
one-process reference (one ``conda create`` of all 16 packages, same mode, same channel URL):
the same files, symlinks and contents (sha256), the same executable bits and the same
``info/repodata_record.json`` (parsed); archives byte-identical to the channel's. Leftovers
(``*.c~``, ``*.partial``, ``*.conda_trash``) are counted apart.

``--kill`` adds, per round and mode, one more install that is killed with SIGKILL while it holds
entries (mid-fetch), and checks that an install of the same packages started right after it
completes within ``--timeout`` (no lock outlives its holder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from httpserver import HTTPTestServer  # noqa: E402

from conda_cache_plus import pkgbuild  # noqa: E402

NPKGS = 16
MODES = ("plugin", "extractor-off", "stock")
KEEP_LOGS = ""  # --keep-logs DIR: outputs of the failed installs
LEFTOVER = re.compile(r"(\.c~|\.partial|\.conda_trash.*)$")


def build_channel(directory: str, seed: int = 27) -> dict[str, pkgbuild.BuiltPackage]:
    """16 packages in ``noarch``: even ones ``.conda``, odd ones ``.tar.bz2``; chains of four
    (``c01`` depends on ``c00``, ...) so that package sets overlap beyond what is asked."""
    rng = random.Random(seed)
    out = os.path.join(directory, "noarch")
    pkgs = {}
    for i in range(NPKGS):
        name = f"cc{i:02d}"
        nfiles = rng.choice((40, 120, 250))
        files: dict = {
            f"lib/{name}/m{j:03d}.py": (
                f"# {name} {j}\n".encode() + hashlib.sha256(f"{name}{j}".encode()).digest() * 40
            )
            for j in range(nfiles)
        }
        files[f"share/{name}/README"] = f"{name}\n".encode()
        files[f"share/{name}/blob.bin"] = random.Random(name).randbytes(
            rng.choice((1, 2, 3)) * 100_000
        )
        files[f"share/{name}/link"] = pkgbuild.Symlink("README")
        files[f"bin/{name}-tool"] = b"#!/bin/sh\necho " + name.encode() + b"\n"
        deps = [f"cc{i - 1:02d}"] if i % 4 else []
        fmt = ".conda" if i % 2 == 0 else ".tar.bz2"
        pkgs[name] = pkgbuild.build_package(
            out, name, "1.0", "0", files=files, depends=deps, fmt=fmt
        )
    pkgbuild.write_channel(directory, list(pkgs.values()))
    return pkgs


def closure(names, pkgs) -> set[str]:
    out, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += [d.split()[0] for d in pkgs[n].index.get("depends", [])]
    return out


def mode_env(base: dict, mode: str) -> dict:
    env = dict(base)
    if mode == "stock":
        env["CONDA_NO_PLUGINS"] = "true"
    elif mode == "extractor-off":
        env["CONDA_PLUGINS_CACHE_PLUS_EXTRACTOR"] = "false"
    return env


class Arena:
    """One cache and its environments, with conda's user state kept inside."""

    def __init__(self, root: str, url: str, mode: str):
        self.root, self.url, self.mode = root, url, mode
        self.pkgs = os.path.join(root, "pkgs")
        self.envs = os.path.join(root, "envs")
        home = os.path.join(root, "home")
        os.makedirs(os.path.join(home, ".conda"), exist_ok=True)
        condarc = os.path.join(root, "condarc")
        with open(condarc, "w") as fh:
            fh.write("channels: []\n")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "MAMBA"))}
        base.update(
            HOME=home,
            XDG_CACHE_HOME=os.path.join(root, "xdg"),
            CONDARC=condarc,
            CONDA_PKGS_DIRS=self.pkgs,
            CONDA_ENVS_DIRS=self.envs,
            CONDA_SOLVER="classic",
            CONDA_REGISTER_ENVS="false",
            CONDA_NOTIFY_OUTDATED_CONDA="false",
            CONDA_SUBDIR="linux-64",
            CONDA_LOCAL_REPODATA_TTL="0",
        )
        self.env = mode_env(base, mode)

    def create(self, prefix: str, names, out) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "conda", "create", "-p", prefix, "--yes", "-q"]
        cmd += ["--override-channels", "-c", self.url, *sorted(names)]
        return subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)


# -- checks ---------------------------------------------------------------------------------------


def env_problems(prefix: str, expected: set[str]) -> list[str]:
    meta = os.path.join(prefix, "conda-meta")
    if not os.path.isfile(os.path.join(meta, "history")):
        return ["no environment (conda-meta/history missing)"]
    problems = []
    seen = set()
    for fn in sorted(os.listdir(meta)):
        if not fn.endswith(".json"):
            continue
        try:
            with open(os.path.join(meta, fn)) as fh:
                rec = json.load(fh)
        except (OSError, ValueError) as exc:
            problems.append(f"{fn} unreadable ({exc})")
            continue
        seen.add(rec.get("name"))
        for rel in rec.get("files", []):
            if not os.path.lexists(os.path.join(prefix, rel)):
                problems.append(f"{rec.get('name')}: {rel} missing")
    for name in sorted(expected - seen):
        problems.append(f"{name} not installed")
    return problems


def tree_digest(path: str) -> dict:
    """rel path -> (kind, content digest or link target, exec bit)."""
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, path)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p), 0)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", "", 0)
            elif rel == os.path.join("info", "repodata_record.json"):
                with open(p) as fh:
                    try:
                        out[rel] = ("r", json.dumps(json.load(fh), sort_keys=True), 0)
                    except ValueError:
                        out[rel] = ("r", "unparsable", 0)
            else:
                with open(p, "rb") as fh:
                    out[rel] = ("f", hashlib.sha256(fh.read()).hexdigest(), st.st_mode & 0o111)
    return out


def cache_digest(pkgs: str) -> tuple[dict, list[str]]:
    """Entries and archives of a pkgs dir, and its leftovers."""
    entries, leftovers = {}, []
    for name in sorted(os.listdir(pkgs)):
        p = os.path.join(pkgs, name)
        if LEFTOVER.search(name):
            leftovers.append(name)
        elif name.endswith((".conda", ".tar.bz2")):
            with open(p, "rb") as fh:
                entries[name] = hashlib.sha256(fh.read()).hexdigest()
        elif os.path.isdir(p) and os.path.isdir(os.path.join(p, "info")):
            entries[name] = tree_digest(p)
    return entries, leftovers


def compare_cache(got: dict, ref: dict) -> list[str]:
    bad = []
    for name, digest in sorted(got.items()):
        want = ref.get(name)
        if want is None:
            bad.append(f"{name}: not in the reference")
        elif digest != want:
            if isinstance(digest, dict):
                diff = sorted({d[0] for d in set(digest.items()) ^ set(want.items())})
                rec = os.path.join("info", "repodata_record.json")
                detail = ""
                if rec in diff and rec in digest and rec in want:
                    a, b = json.loads(digest[rec][1]), json.loads(want[rec][1])
                    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                    detail = " record keys: " + ", ".join(
                        f"{k}={a.get(k)!r:.40} (ref {b.get(k)!r:.40})" for k in keys[:4]
                    )
                bad.append(f"{name}: differs ({', '.join(diff[:4])}){detail}")
            else:
                bad.append(f"{name}: archive differs")
    return bad


def error_line(text: str) -> str:
    """The line that says what went wrong (conda's error report: its exception line)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("# >>>")]
    if "ERROR REPORT" in text:
        for ln in reversed(lines):
            if re.match(r"^`?\$? ?[A-Za-z_.]+(Error|Exception)\b", ln) or "Error:" in ln:
                return ln[:240]
    for ln in lines:
        if any(w in ln for w in ("Error", "ERROR", "error:", "corrupted")):
            return ln[:240]
    return (lines[-1] if lines else "(no output)")[:240]


def signature(line: str) -> str:
    line = re.sub(r"/\S+", "<path>", line)
    line = re.sub(r"\b\d+\b", "N", line)
    return line[:120]


# -- rounds ---------------------------------------------------------------------------------------


def reference(work: str, url: str, mode: str, pkgs) -> dict:
    arena = Arena(os.path.join(work, f"ref-{mode}"), url, mode)
    with open(os.path.join(arena.root, "out.txt"), "w+") as out:
        proc = arena.create(os.path.join(arena.envs, "all"), list(pkgs), out)
        rc = proc.wait()
        out.seek(0)
        text = out.read()
    if rc != 0:
        raise SystemExit(f"the quiet reference install failed ({mode}):\n{text}")
    ref, _ = cache_digest(arena.pkgs)
    for pkg in pkgs.values():  # archives: the channel's bytes
        ref[pkg.fn] = pkg.sha256
    shutil.rmtree(arena.root, ignore_errors=True)
    return ref


def one_round(work, url, mode, pkgs, rnd, nprocs, timeout, ref, seed) -> dict:
    arena = Arena(os.path.join(work, f"r{rnd}-{mode}"), url, mode)
    rng = random.Random(seed * 1000 + rnd)
    jobs = []
    start = time.monotonic()
    for i in range(nprocs):
        ask = rng.sample(sorted(pkgs), 4)
        prefix = os.path.join(arena.envs, f"e{i}")
        out = open(os.path.join(arena.root, f"out{i}.txt"), "w+")  # noqa: SIM115 (closed below)
        jobs.append((prefix, closure(ask, pkgs), out, arena.create(prefix, ask, out)))
    res = {"installs": nprocs, "failed": 0, "exit0_incomplete": 0, "hung": 0, "errors": []}
    for prefix, expected, out, proc in jobs:
        rc, text = finish(proc, out, max(1.0, timeout - (time.monotonic() - start)))
        out.close()
        if rc is None:
            res["hung"] += 1
            rc = "killed after the timeout"
        problems = env_problems(prefix, expected)
        if (rc != 0 or problems) and KEEP_LOGS:
            os.makedirs(KEEP_LOGS, exist_ok=True)
            log = os.path.join(KEEP_LOGS, f"{mode}-r{rnd}-{os.path.basename(prefix)}.txt")
            with open(log, "w") as fh:
                fh.write(text)
        if rc != 0 or problems:
            res["failed"] += 1
            if rc == 0:
                res["exit0_incomplete"] += 1
            why = error_line(text) if rc != 0 else f"exit 0: {problems[0]}"
            res["errors"].append(why)
    res["seconds"] = round(time.monotonic() - start, 1)
    got, leftovers = cache_digest(arena.pkgs) if os.path.isdir(arena.pkgs) else ({}, [])
    res["entries"] = len(got)
    res["cache_bad"] = compare_cache(got, ref)
    res["leftovers"] = leftovers
    shutil.rmtree(arena.root, ignore_errors=True)
    return res


def finish(proc, out, timeout: float) -> tuple[int | None, str]:
    """The exit code (None: killed after ``timeout``, a hang) and the output of ``proc``."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    out.seek(0)
    return rc, out.read()


def kill_round(work, url, mode, pkgs, rnd, timeout, seed) -> dict:
    """One install killed with SIGKILL while three others run beside it, at a random moment
    after it started fetching (it holds entry locks then); the three, and one more install of
    the victim's packages started right after the kill, must all finish."""
    arena = Arena(os.path.join(work, f"k{rnd}-{mode}"), url, mode)
    rng = random.Random(seed * 7 + rnd)
    ask = rng.sample(sorted(pkgs), 6)
    outs, others = [], []
    for i in range(3):
        out = open(os.path.join(arena.root, f"by{i}.txt"), "w+")  # noqa: SIM115 (closed below)
        mine = rng.sample(sorted(pkgs), 4)
        others.append((f"by{i}", mine, arena.create(os.path.join(arena.envs, f"by{i}"), mine, out)))
        outs.append(out)
    with open(os.path.join(arena.root, "victim.txt"), "w+") as out:
        victim = arena.create(os.path.join(arena.envs, "victim"), ask, out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and victim.poll() is None:
            if os.path.isdir(arena.pkgs) and any(
                n.endswith((".conda", ".tar.bz2", ".partial")) for n in os.listdir(arena.pkgs)
            ):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 1.0))
        killed = victim.poll() is None
        locks_dir = os.path.join(arena.pkgs, ".conda-cache-plus", "locks")
        held = 0
        if os.path.isdir(locks_dir):
            from conda_cache_plus.gateways.locks import lock_held

            held = sum(lock_held(os.path.join(locks_dir, n)) for n in os.listdir(locks_dir))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    start = time.monotonic()
    prefix = os.path.join(arena.envs, "next")
    with open(os.path.join(arena.root, "next.txt"), "w+") as out:
        rc, text = finish(arena.create(prefix, ask, out), out, timeout)
    problems = env_problems(prefix, closure(ask, pkgs)) if rc == 0 else [error_line(text)]
    next_ok = rc == 0 and not problems
    bystanders_failed = 0
    for (name, mine, p), out in zip(others, outs, strict=True):
        brc, btext = finish(p, out, timeout)
        out.close()
        bad = env_problems(os.path.join(arena.envs, name), closure(mine, pkgs))
        if brc != 0 or bad:
            bystanders_failed += 1
            problems.append(f"{name}: " + (bad[0] if brc == 0 and bad else error_line(btext)))
    res = {
        "killed_mid_install": killed,
        "locks_held_at_kill": held,
        "next_ok": next_ok,
        "next_hung": rc is None,
        "next_seconds": round(time.monotonic() - start, 1),
        "bystanders_failed": bystanders_failed,
        "problem": problems[0] if problems else None,
    }
    shutil.rmtree(arena.root, ignore_errors=True)
    return res


def summarize(rounds: list[dict]) -> dict:
    total = {
        "rounds": len(rounds),
        "installs": sum(r["installs"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "exit0_incomplete": sum(r["exit0_incomplete"] for r in rounds),
        "hung": sum(r["hung"] for r in rounds),
        "cache_bad": sum(len(r["cache_bad"]) for r in rounds),
        "leftovers": sum(len(r["leftovers"]) for r in rounds),
        "median_round_s": sorted(r["seconds"] for r in rounds)[len(rounds) // 2] if rounds else 0,
    }
    sigs: dict[str, int] = {}
    for r in rounds:
        for e in r["errors"]:
            sigs[signature(e)] = sigs.get(signature(e), 0) + 1
    total["error_kinds"] = dict(sorted(sigs.items(), key=lambda kv: -kv[1]))
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=["plugin", "stock"])
    ap.add_argument("--timeout", type=float, default=900.0, help="per round, seconds")
    ap.add_argument("--seed", type=int, default=27)
    ap.add_argument("--work", default="/var/tmp")
    ap.add_argument("--kill", action="store_true", help="add a kill -9 case per round and mode")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--keep-logs", default="", help="write failed installs' output here")
    args = ap.parse_args(argv)
    global KEEP_LOGS
    KEEP_LOGS = args.keep_logs
    work = tempfile.mkdtemp(prefix="cpx-soak27-", dir=args.work)
    import conda

    report: dict = {
        "args": vars(args),
        "conda": conda.__version__,
        "python": sys.executable,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    started = time.time()
    try:
        pkgs = build_channel(os.path.join(work, "www"))
        report["packages"] = {
            "count": len(pkgs),
            "formats": sorted({p.fn.rsplit("-", 1)[1].split(".", 1)[1] for p in pkgs.values()}),
            "kb": [round(p.size / 1024) for p in pkgs.values()],
        }
        with HTTPTestServer(os.path.join(work, "www")) as srv:
            url = srv.base_url
            refs = {m: reference(work, url, m, pkgs) for m in args.modes}
            per_mode: dict[str, list] = {m: [] for m in args.modes}
            kills: dict[str, list] = {m: [] for m in args.modes}
            for rnd in range(args.rounds):
                order = args.modes if rnd % 2 == 0 else list(reversed(args.modes))
                for mode in order:
                    r = one_round(
                        work, url, mode, pkgs, rnd, args.procs, args.timeout, refs[mode], args.seed
                    )
                    per_mode[mode].append(r)
                    print(
                        f"round {rnd} {mode:14s} failed {r['failed']}/{r['installs']} "
                        f"(exit 0 incomplete {r['exit0_incomplete']}, hung {r['hung']}) "
                        f"cache bad {len(r['cache_bad'])} leftovers {len(r['leftovers'])} "
                        f"{r['seconds']}s load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    for e in r["errors"]:
                        print("    ", e, flush=True)
                    for b in r["cache_bad"][:5]:
                        print("     cache:", b, flush=True)
                    if args.kill:
                        k = kill_round(work, url, mode, pkgs, rnd, args.timeout, args.seed)
                        kills[mode].append(k)
                        print(f"   kill -9 {mode}: {k}", flush=True)
        report["rounds"] = per_mode
        report["summary"] = {m: summarize(per_mode[m]) for m in args.modes}
        if args.kill:
            report["kill"] = {
                m: {
                    "cases": len(ks),
                    "killed_mid_install": sum(k["killed_mid_install"] for k in ks),
                    "locks_held_at_kill": sum(k["locks_held_at_kill"] > 0 for k in ks),
                    "next_ok": sum(k["next_ok"] for k in ks),
                    "bystanders_failed": sum(k["bystanders_failed"] for k in ks),
                    "next_hung": sum(k["next_hung"] for k in ks),
                    "max_next_seconds": max((k["next_seconds"] for k in ks), default=0),
                }
                for m, ks in kills.items()
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(time.time() - started, 1)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({k: report[k] for k in report if k != "rounds"}, indent=1))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
