"""`conda-cache info` and `list` through a real process, as a user runs them."""

from __future__ import annotations

import json
import os

from conftest import populate, requires_conda, run_cli

NO_CONDA = {"CONDA_CACHE_PLUS_NO_CONDA": "1"}


def test_list_table_and_json(cache):
    # an 80-column terminal (piped output is never cut)
    proc = run_cli("list", "--pkgs-dir", str(cache), env={**NO_CONDA, "COLUMNS": "80"}, check=True)
    lines = proc.stdout.splitlines()
    # one heading per cache (as `conda list` has per prefix), no Cache column, 80 columns
    assert lines[0] == f"# packages in cache at {cache}:"
    assert lines[2].split() == ["Name", "Version", "Build", "Channel", "Formats", "Size"]
    assert all(len(line) <= 80 for line in lines if not line.startswith("#"))
    alpha = next(line.split() for line in lines if line.startswith("alpha"))
    assert alpha[:3] == ["alpha", "1.0", "0"] and alpha[4] == "conda,tar.bz2,dir"
    assert alpha[3].startswith("https://")  # elided in the middle only when it must
    assert "3 package(s)" in proc.stdout
    data = json.loads(
        run_cli("list", "--json", "--pkgs-dir", str(cache), env=NO_CONDA, check=True).stdout
    )
    assert [p["name"] for p in data["packages"]] == ["alpha", "beta", "gamma"]
    assert data["packages"][0]["formats"] == [".conda", ".tar.bz2", "dir"]


def test_list_specs_sort_and_paths(cache):
    data = json.loads(
        run_cli(
            "list", "--json", "--sort", "size", "--pkgs-dir", str(cache), env=NO_CONDA, check=True
        ).stdout
    )
    sizes = [sum(p["archives"].values()) or p["size"] for p in data["packages"]]
    assert sizes == sorted(sizes, reverse=True)
    out = run_cli("list", "beta", "--paths", "--pkgs-dir", str(cache), env=NO_CONDA, check=True)
    assert out.stdout.strip() == str(cache / "beta-2.1-h1")
    none = run_cli("list", "nothing*", "--pkgs-dir", str(cache), env=NO_CONDA, check=True)
    assert "No cached packages match nothing*" in none.stdout


def test_bad_spec_is_a_usage_error(cache):
    proc = run_cli("list", ">=2", "--pkgs-dir", str(cache), env=NO_CONDA)
    assert proc.returncode == 2 and "invalid package spec" in proc.stderr


def test_info_counts_sizes_and_problems(cache, tmp_path):
    (cache / "junk-1-0").mkdir()
    (cache / "alpha-1.0-0.conda.partial").write_bytes(b"x" * 100)
    (cache / "beta-2.1-h1" / "info" / "repodata_record.json").write_text("{bad")
    ro = tmp_path / "other"
    populate(ro, [])
    missing = tmp_path / "missing"
    proc = run_cli(
        "info",
        "--json",
        "--pkgs-dir",
        str(cache),
        "--pkgs-dir",
        str(missing),
        env=NO_CONDA,
        check=True,
    )
    data = json.loads(proc.stdout)
    first, second = data["caches"]
    assert first["path"] == str(cache) and first["writable"] is True
    c = first["counts"]
    assert (c["packages"], c["archives"], c["extracted"], c["both"]) == (3, 3, 2, 2)
    assert (c["broken"], c["incomplete"], c["leftovers"]) == (1, 1, 1)
    assert first["sizes"]["disk"] > 0 and first["sizes"]["leftovers"] == 100
    assert second["exists"] is False and second["writable"] is None
    text = run_cli(
        "info", "--pkgs-dir", str(cache), "--pkgs-dir", str(missing), env=NO_CONDA, check=True
    ).stdout
    assert "broken: " in text and "junk-1-0" in text and "does not exist" in text
    assert "(pkgs_dirs from --pkgs-dir)" in text


def test_info_uses_conda_pkgs_dirs(cache):
    proc = run_cli(
        "info",
        "--json",
        "--counts-only",
        env={**NO_CONDA, "CONDA_PKGS_DIRS": f"{cache},/nonexistent/x"},
        check=True,
    )
    data = json.loads(proc.stdout)
    assert data["pkgs_dirs_source"] == "CONDA_PKGS_DIRS"
    assert [c["path"] for c in data["caches"]] == [str(cache), "/nonexistent/x"]
    assert data["caches"][0]["sizes"] is None


def test_nothing_is_modified_by_info_and_list(cache):
    from scan_helpers import snapshot

    (cache / "beta-2.1-h1" / "info" / "repodata_record.json").unlink()
    (cache / "gamma-0.5-0.tar.bz2").write_bytes(b"truncated")
    before = snapshot(cache)
    run_cli("info", "--pkgs-dir", str(cache), env=NO_CONDA, check=True)
    run_cli("list", "--pkgs-dir", str(cache), env=NO_CONDA, check=True)
    assert snapshot(cache) == before


def test_module_and_script_are_the_same_cli(cache):
    import shutil
    import subprocess

    script = shutil.which("conda-cache")
    if script is None:
        return  # not installed as a script in this environment
    a = subprocess.run(
        [script, "list", "--json", "--pkgs-dir", str(cache)],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_CONDA},
    )
    b = run_cli("list", "--json", "--pkgs-dir", str(cache), env=NO_CONDA)
    assert a.returncode == b.returncode == 0 and json.loads(a.stdout) == json.loads(b.stdout)


@requires_conda
def test_conda_cache_list_matches_standalone_and_uses_matchspec(cache):
    import subprocess
    import sys

    env = {**os.environ, "CONDA_PKGS_DIRS": str(cache), "HOME": str(cache.parent)}
    conda = subprocess.run(
        [sys.executable, "-m", "conda", "cache", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert conda.returncode == 0, conda.stderr
    ours = run_cli("list", "--json", "--pkgs-dir", str(cache), env=NO_CONDA, check=True)
    assert json.loads(conda.stdout)["packages"] == json.loads(ours.stdout)["packages"]
    ranged = subprocess.run(
        [sys.executable, "-m", "conda", "cache", "list", "--json", "alpha[version='>=1.0,<2']"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ranged.returncode == 0, ranged.stderr
    assert [p["name"] for p in json.loads(ranged.stdout)["packages"]] == ["alpha"]
    info = subprocess.run(
        [sys.executable, "-m", "conda", "cache", "info"], capture_output=True, text=True, env=env
    )
    assert (
        info.returncode == 0
        and str(cache) in info.stdout
        and "(pkgs_dirs from conda)" in info.stdout
    )


def test_entry_names_and_paths_are_specs(cache):
    """What `list`, `clean` and `verify` print can be pasted back as a spec."""
    want = str(cache / "beta-2.1-h1")
    for spec in ("beta-2.1-h1", "demo::beta-2.1-h1", want, want + ".conda"):
        out = run_cli("list", spec, "--paths", "--pkgs-dir", str(cache), env=NO_CONDA, check=True)
        assert out.stdout.strip() == want, spec


def test_dir_prints_one_path_per_line(cache, tmp_path):
    missing = str(tmp_path / "missing")
    proc = run_cli("dir", "--pkgs-dir", str(cache), "--pkgs-dir", missing, env=NO_CONDA, check=True)
    assert proc.stdout.splitlines() == [str(cache), missing]
    data = json.loads(
        run_cli("dir", "--json", "--pkgs-dir", str(cache), env=NO_CONDA, check=True).stdout
    )
    assert data["dirs"][0]["path"] == str(cache) and data["dirs"][0]["kind"] == "pkgs"
    verbose = run_cli("dir", "-v", "--pkgs-dir", missing, env=NO_CONDA, check=True).stdout
    assert "does not exist" in verbose and "--pkgs-dir" in verbose
    env = dict(NO_CONDA, CONDA_PKGS_DIRS=f"{cache},{missing}")
    assert run_cli("dir", env=env, check=True).stdout.splitlines() == [str(cache), missing]
