"""Reading environments for the usage scan: the fingerprints the remembered index keys on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conda_cache_plus.usage.env_records import record_fp, sample_fp

BASE = dict(
    st_dev=2049,
    st_ino=123456,
    st_mode=0o100644,
    st_nlink=2,
    st_size=1007,
    st_mtime_ns=1_796_683_222_679_391_847,
    st_ctime_ns=1_796_683_222_679_391_847,
)


def st(**changes):
    return SimpleNamespace(**{**BASE, **changes})


@pytest.mark.parametrize(
    "field, value",
    [
        ("st_ino", 123457),
        ("st_size", 1008),
        ("st_mtime_ns", BASE["st_mtime_ns"] + 1),  # the same second: nanoseconds tell
        ("st_ctime_ns", BASE["st_ctime_ns"] + 1),  # rewritten, then utime() put mtime back
    ],
)
def test_a_record_fingerprint_changes_with_each_field(field, value):
    assert record_fp(st()) == record_fp(st())
    assert record_fp(st(**{field: value})) != record_fp(st())


@pytest.mark.parametrize(
    "field, value",
    [
        ("st_dev", 2050),
        ("st_ino", 123457),
        ("st_mode", 0o120777),  # replaced by a symlink
        ("st_nlink", 1),  # the entry's link went away
        ("st_ctime_ns", BASE["st_ctime_ns"] + 1),  # linked, unlinked or renamed since
    ],
)
def test_a_sample_fingerprint_changes_with_each_field(field, value):
    assert sample_fp(st()) == sample_fp(st())
    assert sample_fp(st(**{field: value})) != sample_fp(st())


def test_numbers_beyond_64_bits_still_fingerprint():
    """Some file systems have 128-bit inode numbers: they are kept whole (as a tuple), equal
    only to the same file's."""
    big = st(st_ino=1 << 100)
    assert record_fp(big) == record_fp(st(st_ino=1 << 100))
    assert record_fp(big) != record_fp(st(st_ino=(1 << 100) + 1))
    assert record_fp(big) != record_fp(st())
    assert sample_fp(big) == sample_fp(st(st_ino=1 << 100))
    assert sample_fp(big) != sample_fp(st())
    assert record_fp(st(st_mtime_ns=-(10**18))) != record_fp(st())  # before 1970
