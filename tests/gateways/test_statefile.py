"""Remembered state files: round trip, and anything unexpected reads as empty."""

from __future__ import annotations

import marshal
import os

from conda_cache_plus.gateways import statefile


def test_round_trip_and_forget(tmp_path):
    path = str(tmp_path / "d" / "s.idx")
    assert statefile.write(path, 3, str(tmp_path), {"a": (1, "x")})
    assert statefile.read(path, 3, str(tmp_path)) == {"a": (1, "x")}
    assert [n for n in os.listdir(tmp_path / "d") if n.startswith(".state-")] == []
    statefile.forget(path)
    statefile.forget(path)  # twice is fine
    assert statefile.read(path, 3, str(tmp_path)) == {}


def test_other_owner_format_or_garbage_reads_empty(tmp_path):
    path = str(tmp_path / "s.idx")
    statefile.write(path, 3, str(tmp_path), {"a": 1})
    assert statefile.read(path, 4, str(tmp_path)) == {}
    assert statefile.read(path, 3, str(tmp_path / "other")) == {}
    for junk in (b"", b"\x00\x01garbage", marshal.dumps([1, 2]), marshal.dumps((3, "x", []))):
        with open(path, "wb") as fh:
            fh.write(junk)
        assert statefile.read(path, 3, str(tmp_path)) == {}


def test_unwritable_place_is_not_an_error(tmp_path):
    (tmp_path / "file").write_text("")
    assert statefile.write(str(tmp_path / "file" / "s.idx"), 1, str(tmp_path), {}) is False


def test_user_state_path_is_per_owner(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = statefile.user_state_path("scan", 4, "/a")
    b = statefile.user_state_path("scan", 4, "/b")
    assert a != b and a.startswith(str(tmp_path / "conda-cache-plus" / "scan-v4"))


def test_user_state_path_names_as_hashlib_does(tmp_path, monkeypatch):
    # the name is CPython's own SHA-256 (no OpenSSL at start-up): state written by earlier
    # versions, which named it with hashlib, is still found
    import hashlib

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    owner = str(tmp_path / "pkgs-\udcff-é")
    digest = hashlib.sha256(os.path.realpath(owner).encode("utf-8", "surrogateescape"))
    want = os.path.join(str(tmp_path), "conda-cache-plus", "scan-v4", digest.hexdigest()[:24])
    assert statefile.user_state_path("scan", 4, owner) == want + ".idx"


def test_chunked_round_trip_and_anything_unexpected_reads_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(statefile, "CHUNK_ITEMS", 3)  # several frames from a small dict
    path = str(tmp_path / "d" / "big.idx")
    data = {f"entry{i}": (i, "x" * i, None) for i in range(10)}
    assert statefile.write_chunked(path, 6, str(tmp_path), data)
    assert statefile.read_chunked(path, 6, str(tmp_path)) == data
    assert statefile.read_chunked(path, 5, str(tmp_path)) == {}
    assert statefile.read_chunked(path, 6, str(tmp_path / "other")) == {}
    assert statefile.write_chunked(path, 6, str(tmp_path), {})
    assert statefile.read_chunked(path, 6, str(tmp_path)) == {}
    statefile.write_chunked(path, 6, str(tmp_path), data)
    with open(path, "rb") as fh:
        whole = fh.read()
    # a file cut short (a frame, or whole frames, missing) promises more than it has: empty
    for cut in (len(whole) - 1, len(whole) - 20, 30):
        with open(path, "wb") as fh:
            fh.write(whole[:cut])
        assert statefile.read_chunked(path, 6, str(tmp_path)) == {}
    # the single-frame format, garbage, and a made-up frame length are all read as empty
    head = marshal.dumps((6, os.path.realpath(str(tmp_path)), 1))
    for junk in (
        b"",
        b"\xff\xff\xff\xff",
        marshal.dumps((6, os.path.realpath(str(tmp_path)), data)),
        len(head).to_bytes(4, "little") + head + b"\xff\xff\xff\x7f" + b"x" * 10,
        len(head).to_bytes(4, "little") + head + b"\x03\x00\x00\x00" + marshal.dumps([1]),
    ):
        with open(path, "wb") as fh:
            fh.write(junk)
        assert statefile.read_chunked(path, 6, str(tmp_path)) == {}
