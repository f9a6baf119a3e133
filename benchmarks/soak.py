"""Soak: kill -9 at many points, and 8 processes at once on one cache (issue 11).

    python benchmarks/soak.py [--kills 60] [--race-rounds 3] [--conda-python PY] [--json OUT]

Two phases, on one machine, real processes only (figures in docs/soak.md):

**kill -9.** Environments hard-linked from the cache are known (``envs_dirs``). Each case starts
one of ``conda-cache fetch`` (over a slow 127.0.0.1 HTTP server), ``clean --unused --grace 0``,
``clean --keep-latest 0 --grace 0`` or ``remove`` and kills it with SIGKILL at a random moment.
After every kill it checks:

- *handled*: the cache is consistent: every extracted entry verifies file by file against its
  ``paths.json`` (sha256), none is half there (scan: no broken entry), ``conda-cache verify
  --full`` agrees, and the next run of the same verb completes (exit 0);
- *lost*: an entry a known environment uses is gone or damaged, or a file of an environment;
- *written outside*: anything changed outside the pkgs dir, the environments and our state
  directory (a snapshot of the rest of the tree, including a decoy directory beside the cache).

**race.** Each round, 8 processes on one fresh cache: 3 real ``conda create --offline`` (conda's
own fetch and link, our extractor plugin on), 3 ``conda-cache fetch`` of overlapping package
sets, and 2 loops of a cleaner, until the creates are done. Three arms, interleaved: our
``clean --unused`` with its default grace period, the same with ``--grace 0``, and conda's own
``conda clean --packages --tarballs -y``. Counted per arm: conda creates that failed, fetches
that failed, entries an environment was installed from that the cleaner removed (lost for
``--offline`` reinstalls and repairs), and whether ``verify --full`` passes at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from fetch_helpers import entry_problems  # noqa: E402
from httpserver import HTTPTestServer  # noqa: E402

from conda_cache_plus import pkgbuild  # noqa: E402

CONDA_PY = "/work/venvs/conda-26.7.1/bin/python"


def build_channel(directory: str, n: int) -> list:
    out = os.path.join(directory, "noarch")
    pkgs = []
    rng = random.Random(11)
    for i in range(n):
        name = f"soak{i:02d}"
        nfiles = rng.choice((20, 60, 150, 300))
        files = {
            f"lib/{name}/f{j:04d}.py": hashlib.sha256(f"{name}{j}".encode()).digest() * (8 + j % 40)
            for j in range(nfiles)
        }
        files[f"share/{name}/README"] = f"{name}\n".encode()
        files[f"share/{name}/blob.bin"] = random.Random(name).randbytes(
            rng.choice((0, 1, 4)) * 100_000
        )
        files[f"share/{name}/link"] = pkgbuild.Symlink("README")
        deps = [f"soak{i - 1:02d}"] if i % 4 else []
        pkgs.append(pkgbuild.build_package(out, name, "1.0", "0", files=files, depends=deps))
    pkgbuild.write_channel(directory, pkgs)
    return pkgs


def write_explicit(path, srv, pkgs):
    """``srv``: the HTTP server, or a ``file://`` channel URL (what conda uses offline)."""
    with open(path, "w") as fh:
        fh.write("@EXPLICIT\n")
        for p in pkgs:
            url = f"{srv}/noarch/{p.fn}" if isinstance(srv, str) else srv.url("noarch/" + p.fn)
            fh.write(f"{url}#{p.sha256}\n")
    return path


def snapshot(top: str, skip: set[str]) -> dict:
    out = {}
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
        for name in dirs + files:
            p = os.path.join(root, name)
            if p in skip:
                continue
            st = os.lstat(p)
            digest = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_size, digest)
    return out


class Soak:
    def __init__(self, root: str):
        self.root = root
        self.pkgs = os.path.join(root, "pkgs")
        self.envs = os.path.join(root, "envs")
        self.home = os.path.join(root, "home")
        self.xdg = os.path.join(root, "xdg")
        os.makedirs(os.path.join(self.home, ".conda"), exist_ok=True)
        open(os.path.join(self.home, ".conda", "environments.txt"), "a").close()
        decoy = os.path.join(root, "decoy")
        os.makedirs(decoy)
        for i in range(5):
            with open(os.path.join(decoy, f"keep{i}.txt"), "w") as fh:
                fh.write("must not change\n" * (i + 1))

    def env(self, **extra) -> dict:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "MAMBA"))}
        e.update(
            PYTHONPATH=ROOT,
            HOME=self.home,
            XDG_CACHE_HOME=self.xdg,
            CONDA_PKGS_DIRS=self.pkgs,
            CONDA_ENVS_DIRS=self.envs,
            CONDA_ROOT=os.path.join(self.root, "no-root"),
            CONDA_CACHE_PLUS_NO_CONDA="1",
            CONDA_SOLVER="classic",
            CONDARC=os.path.join(self.root, "condarc"),
        )
        e.update(extra)
        return e

    def conda_env(self) -> dict:
        e = self.env()
        e.pop("CONDA_CACHE_PLUS_NO_CONDA")
        return e

    def cli(self, *args, **extra) -> list[str]:
        return [sys.executable, "-m", "conda_cache_plus", *args]

    def outside(self) -> dict:
        skip = {self.pkgs, self.envs, self.home, self.xdg}
        return snapshot(self.root, skip)

    def cache_state(self, known: dict[str, str]) -> tuple[list[str], list[str]]:
        """(problems, lost): what is wrong in the cache; what of the environments' is gone."""
        from conda_cache_plus.layouts.kinds import scan

        problems, lost = [], []
        if not os.path.isdir(self.pkgs):
            return problems, list(known)
        res = scan(self.pkgs, use_index=False)
        problems += [f"broken: {b.rel} ({b.reason})" for b in res.broken]
        for rec in res.records:
            if rec.has_dir:
                problems += entry_problems(self.pkgs, rec.entry)
        for dist, prefix in known.items():
            if not os.path.isdir(os.path.join(self.pkgs, dist)) or entry_problems(self.pkgs, dist):
                lost.append(f"entry {dist} used by {prefix}")
            readme = os.path.join(prefix, "share", dist.split("-")[0], "README")
            if not os.path.isfile(readme):
                lost.append(f"{readme} of an environment")
        return problems, lost


def phase_kill(args, work: str) -> dict:
    from envtools import make_env

    from conda_cache_plus.layouts.caches import PackageCaches

    s = Soak(work)
    channel = os.path.join(work, "www")
    pkgs = build_channel(channel, args.packages)
    out: dict = {"cases": 0, "killed": 0, "finished_first": 0, "handled": 0, "bad": [], "lost": []}
    out["written_outside"] = 0
    with HTTPTestServer(channel) as srv:
        for p in pkgs:
            srv.behaviour.slow[f"/noarch/{p.fn}"] = 0.01
        explicit = write_explicit(os.path.join(work, "all.txt"), srv, pkgs)
        # the environments: fetched once, hard-linked in, known through envs_dirs
        subprocess.run(
            s.cli("fetch", explicit, "-q"), env=s.env(), check=True, stdout=subprocess.DEVNULL
        )
        recs = {r.basename: r for r in PackageCaches([s.pkgs], use_index=False).records()}
        known = {}
        for i, dist in enumerate(("soak01-1.0-0", "soak03-1.0-0", "soak05-1.0-0")):
            prefix = make_env(os.path.join(s.envs, f"e{i}"), [recs[dist]])
            known[dist] = prefix
        before = s.outside()
        rng = random.Random(args.seed)
        verbs = {
            "fetch": lambda: s.cli("fetch", explicit, "-q"),
            "clean --unused": lambda: s.cli("clean", "--unused", "--grace", "0", "-y", "-q"),
            "clean --keep-latest 0": lambda: s.cli(
                "clean", "--keep-latest", "0", "--grace", "0", "-y", "-q"
            ),
            "remove": lambda: s.cli("remove", *rng.sample([p.name for p in pkgs], 4), "-y", "-q"),
        }
        weights = {"fetch": 6, "clean --unused": 2, "clean --keep-latest 0": 1, "remove": 2}
        per_verb: dict[str, dict] = {v: {"cases": 0, "killed": 0, "handled": 0} for v in verbs}
        spare = [p.name for p in pkgs if p.dist not in known]
        for case in range(args.kills):
            verb = rng.choices(list(weights), weights=list(weights.values()))[0]
            # give the verb work to be killed in: missing entries to fetch, or entries to remove
            prep = (
                s.cli("remove", *rng.sample(spare, 6), "-y", "-q")
                if verb == "fetch"
                else s.cli("fetch", explicit, "-q")
            )
            subprocess.run(prep, env=s.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proc = subprocess.Popen(
                verbs[verb](), env=s.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.1, 1.5 if verb == "fetch" else 0.8))
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            out["cases"] += 1
            per_verb[verb]["cases"] += 1
            out["killed" if killed else "finished_first"] += 1
            per_verb[verb]["killed"] += killed
            problems, lost = s.cache_state(known)
            # the next run of the same verb completes and the cache verifies
            rerun = subprocess.run(verbs[verb](), env=s.env(), capture_output=True, text=True)
            verify = subprocess.run(
                s.cli("verify", "--full", "-q"), env=s.env(), capture_output=True, text=True
            )
            ok = not problems and rerun.returncode in (0, 1) and verify.returncode == 0
            if rerun.returncode == 1 and verb != "remove":
                ok = False  # remove exits 1 when it kept in-use entries; others must succeed
            if ok:
                out["handled"] += 1
                per_verb[verb]["handled"] += 1
            else:
                out["bad"].append(
                    {
                        "case": case,
                        "verb": verb,
                        "problems": problems[:5],
                        "rerun": rerun.returncode,
                        "rerun_err": rerun.stderr[-300:],
                        "verify": verify.returncode,
                        "verify_out": verify.stdout[-300:],
                    }
                )
            if lost:
                out["lost"].append({"case": case, "verb": verb, "lost": lost})
        after = s.outside()
        out["written_outside"] = sum(
            1 for k in set(before) | set(after) if before.get(k) != after.get(k)
        )
        out["per_verb"] = per_verb
    return out


def _creates_and_fetches(s: Soak, pkgs, url, srv, rng, cleaner, conda_py) -> dict:
    names = [p.name for p in pkgs]
    creates, fetches = [], []
    for _ in range(3):
        prefix = os.path.join(s.root, "made", f"c{rng.randrange(10**9)}")
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        specs = rng.sample(names, 4)
        cmd = [
            conda_py,
            "-m",
            "conda",
            "create",
            "--offline",
            "-y",
            "-q",
            "-p",
            prefix,
            "-c",
            url,
            "--override-channels",
            *specs,
        ]
        creates.append(
            (
                prefix,
                subprocess.Popen(
                    cmd,
                    env=s.conda_env(),
                    # a file, not a pipe: nobody reads until the end, and a full pipe blocks
                    stdout=open(prefix + ".log", "w"),  # noqa: SIM115
                    stderr=subprocess.STDOUT,
                ),
            )
        )
    for i in range(3):
        chosen = rng.sample(pkgs, 8)
        explicit = write_explicit(os.path.join(s.root, f"f{i}.txt"), srv, chosen)
        fetches.append(
            subprocess.Popen(
                s.cli("fetch", explicit, "-q"),
                env=s.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    cleaners = []

    def start_cleaner():
        if cleaner == "conda clean -p -t":
            cmd = [conda_py, "-m", "conda", "clean", "--packages", "--tarballs", "-y", "-q"]
            env = s.conda_env()
        else:
            grace = ["--grace", cleaner.split("--grace ")[1]] if "--grace " in cleaner else []
            cmd = s.cli("clean", "--unused", *grace, "-y", "-q", "--lock-timeout", "120")
            env = s.env()
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    runs = 0
    cleaners = [start_cleaner(), start_cleaner()] if cleaner != "no cleaner" else []
    deadline = time.monotonic() + 600
    while any(p.poll() is None for _pre, p in creates) and time.monotonic() < deadline:
        for i, c in enumerate(cleaners):
            if c.poll() is not None:
                runs += 1
                cleaners[i] = start_cleaner()
        time.sleep(0.05)
    for c in cleaners:
        c.wait()
    result = {
        "creates": 0,
        "create_failed": [],
        "fetches": 0,
        "fetch_failed": 0,
        "cleaner_runs": runs + len(cleaners),
        "used_entries": set(),
    }
    for prefix, p in creates:
        p.wait()
        with open(prefix + ".log") as fh:
            text = fh.read()
        result["creates"] += 1
        if p.returncode != 0:
            result["create_failed"].append(_error_line(text))
            continue
        meta = os.path.join(prefix, "conda-meta")
        if not os.path.isdir(meta):
            result["create_failed"].append("exit 0 but no environment: " + _error_line(text))
            continue
        for name in os.listdir(meta):
            if name.endswith(".json"):
                result["used_entries"].add(name[: -len(".json")])
    for p in fetches:
        p.wait()
        result["fetches"] += 1
        result["fetch_failed"] += p.returncode != 0
    return result


def _error_line(text: str) -> str:
    """The line of conda's output that says what went wrong."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "Error" in ln and not ln.startswith("Example"):
            return ln[:300]
    return (lines[-1] if lines else "?")[:300]


def phase_race(args, work: str) -> dict:
    arms = [
        "ours clean --unused (grace 1h)",
        "ours clean --unused --grace 2s",
        "ours clean --unused --grace 0",
        "conda clean -p -t",
    ]
    arms += ["no cleaner"] if args.no_cleaner_arm else []
    if args.arms:
        arms = [a for a in arms if any(w in a for w in args.arms)]
    if not os.path.exists(args.conda_python):
        return {"skipped": f"no conda at {args.conda_python}"}
    totals = {
        a: {
            "rounds": 0,
            "creates": 0,
            "create_failed": 0,
            "fetches": 0,
            "fetch_failed": 0,
            "cleaner_runs": 0,
            "entries_lost": 0,
            "verify_failed": 0,
            "errors": [],
        }
        for a in arms
    }
    rng = random.Random(args.seed + 1)
    channel = os.path.join(work, "www")
    pkgs = build_channel(channel, args.packages)
    url = "file://" + channel
    for rnd in range(args.race_rounds):
        k = rnd % len(arms)
        for arm in arms[k:] + arms[:k]:  # rotate the order every round
            root = os.path.join(work, f"race-{rnd}-{arms.index(arm)}")
            os.makedirs(root)
            s = Soak(root)
            # every package extracted first, through the channel conda uses: the creates
            # only link (so they do not race each other's downloads, conda#13037), and
            # the cleaners race the linking; 3 s later the entries are older than 2 s
            everything = write_explicit(os.path.join(root, "all.txt"), url, pkgs)
            subprocess.run(
                s.cli("fetch", everything, "-q"),
                env=s.env(),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            time.sleep(3)
            r = _creates_and_fetches(s, pkgs, url, url, rng, arm, args.conda_python)
            t = totals[arm]
            t["rounds"] += 1
            for key in ("creates", "fetches", "fetch_failed", "cleaner_runs"):
                t[key] += r[key]
            t["create_failed"] += len(r["create_failed"])
            t["errors"] += r["create_failed"][:2]
            t["entries_lost"] += sum(
                1 for d in r["used_entries"] if not os.path.isdir(os.path.join(s.pkgs, d))
            )
            v = subprocess.run(
                s.cli("verify", "--full", "-q"), env=s.env(), capture_output=True, text=True
            )
            t["verify_failed"] += v.returncode != 0
            shutil.rmtree(root, ignore_errors=True)
            print(arm, rnd, {key: t[key] for key in t if key != "errors"}, flush=True)
    return totals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--race-rounds", type=int, default=3)
    ap.add_argument("--packages", type=int, default=16)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--conda-python", default=CONDA_PY)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--phase", choices=["kill", "race", "both"], default="both")
    ap.add_argument("--no-cleaner-arm", action="store_true", help="race arm without a cleaner")
    ap.add_argument("--arms", nargs="*", help="only the race arms whose name contains one")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cpx-soak-", dir="/var/tmp")
    report: dict = {"args": vars(args), "load_before": os.getloadavg()}
    start = time.time()
    try:
        if args.phase in ("kill", "both"):
            report["kill"] = phase_kill(args, os.path.join(work, "kill"))
            print(json.dumps({k: v for k, v in report["kill"].items() if k != "bad"}, indent=1))
        if args.phase in ("race", "both"):
            report["race"] = phase_race(args, os.path.join(work, "race"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(time.time() - start, 1)
    report["load_after"] = os.getloadavg()
    text = json.dumps(report, indent=1, default=sorted)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
