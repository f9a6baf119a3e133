"""Layered caches: a read-only shared cache (a read-only mount) under a writable one.

``fetch`` takes what the read-only cache holds before the network (an extracted entry is used
where it is, as conda does; an archive is hard-linked or copied into the writable cache and
checked against its checksum), ``verify`` checks both, ``clean`` never touches the read-only one
and says what cleaning it would free.
"""

from __future__ import annotations

import json
import os
import subprocess

from conftest import run_cli
from fetch_helpers import serve_packages
from scan_helpers import snapshot


def explicit_for(path, srv, pkgs):
    with open(path, "w") as fh:
        fh.write("@EXPLICIT\n")
        for p in pkgs:
            fh.write(f"{srv.url(f'{p.subdir}/{p.fn}')}#sha256:{p.sha256}\n")
    return str(path)


def test_layered_read_only_cache_under_a_writable_one(tmp_path, tmpfs, http_server):
    srv = http_server
    pkgs = serve_packages(
        srv,
        [("shared-a", "1.0", 3), ("shared-b", "1.0", 3), ("bad-b", "1.0", 3), ("new-c", "1.0", 3)],
    )
    a, b, bad, c = pkgs
    [dmg] = serve_packages(srv, [("damaged-d", "1.0", 3)])
    ro = tmpfs / "pkgs"
    rw = tmp_path / "pkgs"
    # The administrator fills the shared cache, then it is mounted read-only.
    run_cli(
        "fetch",
        explicit_for(tmp_path / "admin.txt", srv, [a, b, bad, dmg]),
        "--pkgs-dir",
        str(ro),
        "-q",
        check=True,
    )
    for p in (b, bad):  # b and bad: archives only (e.g. after `conda clean -p`)
        subprocess.run(["rm", "-rf", str(ro / p.dist)], check=True)
    with open(ro / bad.fn, "r+b") as fh:  # damaged on the shared disk: same size, other bytes
        fh.seek(100)
        fh.write(b"\0\1\2\3")
    with open(ro / dmg.dist / "share" / "damaged-d" / "README", "w") as fh:
        fh.write("altered on the shared disk\n")
    proc = subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    before = snapshot(ro)
    srv.requests.clear()

    layered = ["--pkgs-dir", str(rw), "--pkgs-dir", str(ro)]
    proc = run_cli("fetch", explicit_for(tmp_path / "user.txt", srv, pkgs), *layered, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = {p["fn"]: p for p in json.loads(proc.stdout)["packages"]}
    assert out[a.fn]["outcome"] == "reused"  # extracted in the shared cache: used in place
    assert out[a.fn]["pkgs_dir"] == str(ro)
    assert out[b.fn]["outcome"] == "copied"  # taken from the shared cache, not the network
    assert out[bad.fn]["outcome"] == "downloaded"  # the shared copy failed its checksum
    assert out[c.fn]["outcome"] == "downloaded"
    asked = {r["path"].rsplit("/", 1)[-1] for r in srv.requests}
    assert asked == {bad.fn, c.fn}
    for p in (b, bad, c):
        assert (rw / p.dist / "info" / "repodata_record.json").is_file()
    with open(rw / b.fn, "rb") as mine, open(b.path, "rb") as orig:
        assert mine.read() == orig.read()
    assert snapshot(ro) == before

    # verify checks both caches, and names the damaged entry in the read-only one
    proc = run_cli("verify", *layered, "--json", "--full")
    data = json.loads(proc.stdout)
    caches = {c["path"]: c for c in data["caches"]}
    assert caches[str(ro)]["writable"] is False and caches[str(rw)]["writable"] is True
    by_dir = {(e["pkgs_dir"], e["entry"]): e for e in data["entries"]}
    assert (str(ro), a.dist) in by_dir and (str(rw), b.dist) in by_dir
    assert by_dir[(str(ro), dmg.dist)]["status"] == "corrupt"
    assert by_dir[(str(ro), a.dist)]["status"] == "ok"
    assert proc.returncode == 1

    # clean removes unused entries of the writable cache only, and says what the other holds
    proc = run_cli("clean", *layered, "--unused", "--yes", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert {i["pkgs_dir"] for i in data["items"]} == {str(rw)}
    assert data["read_only"] == [str(ro)]
    [would] = data["read_only_would_free"]
    assert would["pkgs_dir"] == str(ro) and would["items"] == 4 and would["freed"] > 0
    assert not (rw / c.dist).exists()
    assert snapshot(ro) == before
    proc = run_cli("clean", *layered, "--unused", "--dry-run")
    assert "read-only cache, left alone; removing its 4 selected item(s) would free" in proc.stdout


def test_fetch_hard_links_from_a_read_only_cache_on_the_same_file_system(tmp_path, http_server):
    """Read-only by permissions (run as a non-root user: root may write anything)."""
    from as_user import World

    srv = http_server
    [a] = serve_packages(srv, [("linked-a", "1.0", 2)])
    world = World()
    try:
        ro = os.path.join(world.path, "shared")
        rw = os.path.join(world.path, "mine")
        run_cli(
            "fetch", explicit_for(tmp_path / "e.txt", srv, [a]), "--pkgs-dir", ro, "-q", check=True
        )
        subprocess.run(["rm", "-rf", os.path.join(ro, a.dist)], check=True)
        explicit = explicit_for(os.path.join(world.path, "u.txt"), srv, [a])
        world.hand_over()
        # read-only for its owner too (a user's own archive cache, or a snapshot); owned by the
        # same user, so the kernel allows the hard link (fs.protected_hardlinks refuses links to
        # other users' files: then the archive is copied, and checked the same way)
        os.chmod(os.path.join(ro, "urls.txt"), 0o444)
        os.chmod(ro, 0o555)
        srv.requests.clear()
        proc = world.cli("fetch", explicit, "--pkgs-dir", rw, "--pkgs-dir", ro, "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [item] = json.loads(proc.stdout)["packages"]
        assert item["outcome"] == "copied"
        assert os.path.samefile(os.path.join(rw, a.fn), os.path.join(ro, a.fn))
        assert not srv.requests_for(f"noarch/{a.fn}")
    finally:
        os.chmod(os.path.join(world.path, "shared"), 0o755)
        world.cleanup()
