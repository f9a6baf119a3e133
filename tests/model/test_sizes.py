"""Byte accounting: hard links counted once on disk, sizes parsed and printed."""

from __future__ import annotations

import os

import pytest

from conda_cache_plus.model.sizes import InodeSet, human_bytes, parse_size, path_size


def test_hardlinks_count_once(tmp_path):
    (tmp_path / "a").mkdir()
    big = tmp_path / "a" / "big"
    big.write_bytes(b"x" * 100_000)
    os.link(big, tmp_path / "a" / "big2")
    os.symlink("big", tmp_path / "a" / "link")
    size = path_size(str(tmp_path / "a"))
    assert size.files == 3
    assert size.apparent >= 200_000  # both names count as seen
    assert 100_000 <= size.disk < 150_000  # one inode on disk
    assert size.shared >= 100_000


def test_inodes_shared_across_trees(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "f").write_bytes(b"y" * 50_000)
    os.link(tmp_path / "one" / "f", tmp_path / "two" / "f")
    inodes = InodeSet()
    first = path_size(str(tmp_path / "one"), inodes)
    second = path_size(str(tmp_path / "two"), inodes)
    assert first.disk >= 50_000 and second.disk < 50_000


def test_missing_path_is_an_error_not_a_crash(tmp_path):
    size = path_size(str(tmp_path / "nope"))
    assert size.errors and size.apparent == 0


@pytest.mark.parametrize(
    "text, value",
    [
        ("1024", 1024),
        ("500M", 500 * 2**20),
        ("20G", 20 * 2**30),
        ("1.5GiB", int(1.5 * 2**30)),
        ("2kb", 2048),
        ("3 T", 3 * 2**40),
        ("0", 0),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-5G", "5X"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_human_bytes():
    assert human_bytes(None) == "-"
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2**30) == "3.0 GiB"
