"""``conda cache export``: the cache as a channel that real conda and py-rattler install from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import HAVE_CONDA, populate, requires_conda, run_cli
from envtools import make_env

from conda_cache_plus import pkgbuild
from conda_cache_plus.fetch import export as engine
from conda_cache_plus.layouts.caches import PackageCaches

try:
    import rattler  # noqa: F401

    HAVE_RATTLER = True
except ImportError:
    HAVE_RATTLER = False


def export_json(*args, env=None):
    proc = run_cli("export", *args, "--json", env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def repodata(channel, subdir="noarch"):
    with open(os.path.join(channel, subdir, "repodata.json")) as fh:
        return json.load(fh)


def sandbox_env(tmp_path) -> dict:
    home = tmp_path / "sandbox"
    (home / "home").mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home / "home"),
        "CONDARC": str(home / "condarc"),
        "CONDA_PKGS_DIRS": str(home / "pkgs"),
        "CONDA_ENVS_DIRS": str(home / "envs"),
        "CONDA_SOLVER": "classic",
        "CONDA_REGISTER_ENVS": "false",
        "CONDA_NO_PLUGINS": "false",
    }


RATTLER_SOLVE = textwrap.dedent(
    """
    import asyncio, json, os, sys
    import rattler

    async def main():
        recs = await rattler.solve(
            [rattler.Channel(sys.argv[1])], sys.argv[2:],
            platforms=["linux-64", "noarch"], timestamp_policy="allow-missing",
        )
        return sorted(f"{r.name.normalized}-{r.version}-{r.build}" for r in recs)

    try:
        print(json.dumps(asyncio.run(main())))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    sys.stdout.flush()
    os._exit(0)  # rattler's runtime threads must not hold the interpreter open
    """
)


def rattler_solve(channel_url: str, specs: list[str], env: dict):
    proc = subprocess.run(
        [sys.executable, "-c", RATTLER_SOLVE, channel_url, *specs],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def served(http_server):
    """A channel on 127.0.0.1 (both formats, dependencies) and an @EXPLICIT file for it."""
    out = os.path.join(http_server.directory, "noarch")
    pkgs = []
    for name, version, deps in (
        ("exp-lib", "1.0", []),
        ("exp-lib", "1.1", []),
        ("exp-tool", "2.0", ["exp-lib >=1.1"]),
    ):
        files = {
            f"share/{name}/README": f"{name} {version}\n".encode(),
            f"share/{name}/latest": pkgbuild.Symlink("README"),
        }
        for fmt in (".conda", ".tar.bz2"):
            pkgs.append(
                pkgbuild.build_package(out, name, version, "0", files=files, fmt=fmt, depends=deps)
            )
    pkgbuild.write_channel(http_server.directory, pkgs)
    return http_server, pkgs


def fetch_into(tmp_path, srv, pkgs, pkgs_dir):
    explicit = tmp_path / "explicit.txt"
    with open(explicit, "w") as fh:
        fh.write("@EXPLICIT\n")
        for p in pkgs:
            fh.write(f"{srv.url(f'{p.subdir}/{p.fn}')}#sha256:{p.sha256}\n")
    run_cli("fetch", str(explicit), "--pkgs-dir", str(pkgs_dir), "-q", check=True)


def test_fetched_cache_exports_to_a_channel_conda_and_rattler_install_from(tmp_path, served):
    srv, pkgs = served
    cache = tmp_path / "pkgs"
    conda_pkgs = [p for p in pkgs if p.fn.endswith(".conda")]
    fetch_into(tmp_path, srv, conda_pkgs, cache)
    channel = tmp_path / "channel"
    rc, data = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 0, data["findings"]
    assert data["totals"]["exported"] == 3 and data["totals"]["problems"] == 0
    rd = repodata(channel)
    assert rd["info"]["subdir"] == "noarch" and rd["packages"] == {}
    by_fn = {p.fn: p for p in conda_pkgs}
    assert set(rd["packages.conda"]) == set(by_fn)
    for fn, rec in rd["packages.conda"].items():
        p = by_fn[fn]
        assert (rec["md5"], rec["sha256"], rec["size"]) == (p.md5, p.sha256, p.size)
        assert rec["depends"] == p.index.get("depends", [])
        assert rec["timestamp"] == p.index["timestamp"]
        assert "url" not in rec and "channel" not in rec and "fn" not in rec
        with open(channel / "noarch" / fn, "rb") as fh, open(p.path, "rb") as orig:
            assert fh.read() == orig.read()

    env = sandbox_env(tmp_path)
    if HAVE_CONDA:
        prefix = tmp_path / "sandbox" / "envs" / "fromexport"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "conda",
                "create",
                "--offline",
                "-y",
                "-p",
                str(prefix),
                "-c",
                f"file://{channel}",
                "--override-channels",
                "exp-tool",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        installed = sorted(os.listdir(prefix / "conda-meta"))
        assert "exp-tool-2.0-0.json" in installed and "exp-lib-1.1-0.json" in installed
        assert (prefix / "share" / "exp-tool" / "README").read_text() == "exp-tool 2.0\n"
    if HAVE_RATTLER:
        solved = rattler_solve(f"file://{channel}", ["exp-tool"], env)
        assert solved == ["exp-lib-1.1-0", "exp-tool-2.0-0"], solved
    if not HAVE_CONDA and not HAVE_RATTLER:
        pytest.skip("neither conda nor py-rattler is importable: only the export was checked")


def test_reexport_is_incremental_and_drops_nothing_silently(tmp_path, build):
    a = build("alpha", "1.0", "0", fmt=".conda")
    b = build("beta", "1.0", "0", fmt=".conda")
    c = build("gamma", "1.0", "0", fmt=".conda")
    cache = tmp_path / "pkgs"
    populate(cache, [a, b])
    channel = tmp_path / "ch"
    rc, first = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 0 and first["totals"]["exported"] == 2
    mtime = os.stat(channel / "noarch" / a.fn).st_mtime_ns

    rc, again = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 0 and again["totals"] == {**again["totals"], "exported": 0, "unchanged": 2}
    assert os.stat(channel / "noarch" / a.fn).st_mtime_ns == mtime

    # Another cache, later: earlier exports stay listed while their archive is there.
    other = tmp_path / "other"
    populate(other, [c])
    rc, more = export_json(str(channel), "--pkgs-dir", str(other))
    assert rc == 0 and more["totals"]["exported"] == 1 and more["totals"]["kept"] == 2
    assert set(repodata(channel)["packages.conda"]) == {a.fn, b.fn, c.fn}

    # An archive deleted from the channel: its record goes, and the result says so.
    os.unlink(channel / "noarch" / b.fn)
    rc, after = export_json(str(channel), "--pkgs-dir", str(other))
    assert set(repodata(channel)["packages.conda"]) == {a.fn, c.fn}
    dropped = [f for f in after["findings"] if f["kind"] == "dropped"]
    assert [f["what"] for f in dropped] == [f"noarch/{b.fn}"]


def test_corrupt_archive_and_missing_archive_are_reported_not_exported(tmp_path, build):
    good = build("good", "1.0", "0", fmt=".conda")
    bad = build("bad", "1.0", "0", fmt=".conda")
    gone = build("gone", "1.0", "0", fmt=".conda")
    cache = tmp_path / "pkgs"
    populate(cache, [good, bad, gone])
    with open(cache / bad.fn, "r+b") as fh:  # same size, other bytes
        fh.seek(40)
        fh.write(b"\xff\xfe\xfd")
    os.unlink(cache / gone.fn)
    channel = tmp_path / "ch"
    rc, data = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 1
    kinds = {(f["kind"], os.path.basename(f["what"])) for f in data["findings"]}
    assert ("mismatch", bad.fn) in kinds
    assert ("no_archive", gone.dist) in kinds
    assert set(repodata(channel)["packages.conda"]) == {good.fn}
    assert not os.path.exists(channel / "noarch" / bad.fn)


def test_both_formats_are_exported_and_the_twin_is_checked_by_its_index(tmp_path, cache):
    channel = tmp_path / "ch"
    rc, _data = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 0
    rd = repodata(channel)
    assert "alpha-1.0-0.tar.bz2" in rd["packages"] and "alpha-1.0-0.conda" in rd["packages.conda"]
    assert "gamma-0.5-0.tar.bz2" in rd["packages"]  # archive only: record from its file name
    tb = rd["packages"]["alpha-1.0-0.tar.bz2"]
    from conda_cache_plus.gateways.download import hash_file

    assert (tb["size"], tb["sha256"], tb["md5"]) == hash_file(str(cache / "alpha-1.0-0.tar.bz2"))


def test_twin_archive_of_another_package_is_refused(tmp_path, build):
    a = build("alpha", "1.0", "0", fmt=".conda")
    impostor = build("other", "9.9", "0", fmt=".tar.bz2")
    cache = tmp_path / "pkgs"
    populate(cache, [a])
    os.replace(impostor.path, cache / "alpha-1.0-0.tar.bz2")
    plan = engine.plan_export(PackageCaches([str(cache)]).records(), str(tmp_path / "ch"))
    assert [i.fn for i in plan.items] == [a.fn]
    assert [f.kind for f in plan.problems] == ["mismatch"]
    assert "index.json" in plan.problems[0].reason


def test_link_dry_run_specs_and_conflicts(tmp_path, build):
    a = build("alpha", "1.0", "0", fmt=".conda")
    b = build("beta", "1.0", "0", fmt=".conda")
    cache = tmp_path / "pkgs"
    populate(cache, [a, b])
    channel = tmp_path / "ch"
    rc, data = export_json(str(channel), "alpha", "--pkgs-dir", str(cache), "--dry-run")
    assert rc == 0 and data["dry_run"] and not channel.exists()
    assert [i["fn"] for i in data["items"]] == [a.fn]

    rc, data = export_json(str(channel), "alpha", "--link", "--pkgs-dir", str(cache))
    assert [i["how"] for i in data["items"]] == ["linked"]
    assert os.path.samefile(channel / "noarch" / a.fn, cache / a.fn)

    # Someone else's file under beta's name: left alone, reported, exit 1.
    (channel / "noarch" / b.fn).write_bytes(b"not beta")
    rc, data = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 1
    assert [f["kind"] for f in data["findings"] if f["problem"]] == ["conflict"]
    assert (channel / "noarch" / b.fn).read_bytes() == b"not beta"
    assert b.fn not in repodata(channel)["packages.conda"]


def test_specs_may_follow_options(tmp_path, build):
    """``export DIR --pkgs-dir X SPEC``: the SPEC after an option is a spec, as in conda's verbs;
    an unknown option is still a usage error."""
    a = build("alpha", "1.0", "0", fmt=".conda")
    b = build("beta", "1.0", "0", fmt=".conda")
    cache = tmp_path / "pkgs"
    populate(cache, [a, b])
    channel = tmp_path / "ch"
    rc, data = export_json(str(channel), "--pkgs-dir", str(cache), "alpha", "--dry-run")
    assert rc == 0 and [i["fn"] for i in data["items"]] == [a.fn]
    rc, data = export_json(str(channel), "--dry-run", "alpha", "--pkgs-dir", str(cache), "beta")
    assert rc == 0 and sorted(i["fn"] for i in data["items"]) == sorted([a.fn, b.fn])
    proc = run_cli("export", str(channel), "--pkgs-dir", str(cache), "alpha", "--bogus")
    assert proc.returncode == 2 and "--bogus" in proc.stderr
    assert not channel.exists()
    if HAVE_CONDA:
        argv = ["cache", "export", str(channel), "--pkgs-dir", str(cache), "beta", "--dry-run"]
        proc = subprocess.run(
            [sys.executable, "-m", "conda", *argv, "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, **sandbox_env(tmp_path)},
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [i["fn"] for i in json.loads(proc.stdout)["items"]] == [b.fn]


def test_env_selection_exports_what_the_environment_uses(tmp_path, build):
    a = build("alpha", "1.0", "0", fmt=".conda")
    b = build("beta", "1.0", "0", fmt=".conda")
    cache = tmp_path / "pkgs"
    populate(cache, [a, b])
    env = make_env(tmp_path / "env", [str(cache / a.dist)])
    channel = tmp_path / "ch"
    rc, data = export_json(str(channel), "--env", env, "--pkgs-dir", str(cache))
    assert rc == 0
    assert [i["fn"] for i in data["items"]] == [a.fn]
    assert data["environments"] == [env]


def test_subdir_repodata_and_noarch_stub(tmp_path, build):
    a = build("native", "1.0", "0", fmt=".conda", subdir="linux-64")
    cache = tmp_path / "pkgs"
    populate(cache, [a])
    channel = tmp_path / "ch"
    rc, _ = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 0
    assert set(repodata(channel, "linux-64")["packages.conda"]) == {a.fn}
    assert repodata(channel, "noarch")["packages.conda"] == {}


@requires_conda
def test_export_under_conda(tmp_path, build):
    a = build("alpha", "1.0", "0", fmt=".conda")
    cache = tmp_path / "pkgs"
    populate(cache, [a])
    channel = tmp_path / "ch"
    proc = subprocess.run(
        [sys.executable, "-m", "conda", "cache", "export", str(channel), "--pkgs-dir", str(cache)],
        capture_output=True,
        text=True,
        env={**os.environ, **sandbox_env(tmp_path)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(repodata(channel)["packages.conda"]) == {a.fn}


def test_exported_channel_served_over_http_and_reexported_from_an_environment(tmp_path, build):
    """The channel as a fleet's mirror (any static HTTP server), and back: the packages a real
    environment uses, exported from conda's own cache (--env)."""
    from httpserver import HTTPTestServer

    lib = build("mirror-lib", "1.0", "0", fmt=".conda")
    tool = build("mirror-tool", "1.0", "0", fmt=".conda", depends=["mirror-lib"])
    cache = tmp_path / "pkgs"
    populate(cache, [lib, tool])
    channel = tmp_path / "mirror"
    rc, _ = export_json(str(channel), "--pkgs-dir", str(cache))
    assert rc == 0
    env = sandbox_env(tmp_path)
    with HTTPTestServer(str(channel)) as srv:
        if HAVE_RATTLER:
            assert rattler_solve(srv.base_url, ["mirror-tool"], env) == [
                "mirror-lib-1.0-0",
                "mirror-tool-1.0-0",
            ]
        if not HAVE_CONDA:
            pytest.skip("conda is not importable: the conda half was not run")
        prefix = tmp_path / "sandbox" / "envs" / "frommirror"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "conda",
                "create",
                "-y",
                "-p",
                str(prefix),
                "-c",
                srv.base_url,
                "--override-channels",
                "mirror-tool",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert srv.requests_for(f"noarch/{tool.fn}")
    # conda's cache now holds what the environment uses: export just that
    again = tmp_path / "from-env"
    rc, data = export_json(str(again), "--env", str(prefix), "--pkgs-dir", env["CONDA_PKGS_DIRS"])
    assert rc == 0, data["findings"]
    assert sorted(i["fn"] for i in data["items"]) == [lib.fn, tool.fn]
    assert [i["sha256"] for i in sorted(data["items"], key=lambda i: i["fn"])] == [
        lib.sha256,
        tool.sha256,
    ]
