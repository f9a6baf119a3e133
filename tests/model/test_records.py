"""The record model: sanitize's fast path (a well-formed record) agrees with its field checks."""

from __future__ import annotations

import sys

import pytest

from conda_cache_plus.model.records import PackageCacheRecord, sanitize, split_core

GOOD = {
    "name": "zlib",
    "version": "1.3",
    "build": "h0_0",
    "build_number": 0,
    "depends": ["libgcc >=12"],
    "constrains": [],
    "channel": "https://conda.anaconda.org/conda-forge",
    "subdir": "linux-64",
    "size": 123,
    "timestamp": None,
    "extra": {"any": ["thing", 1]},
}


@pytest.mark.parametrize(
    "change, problem, value",
    [
        ({}, None, None),
        ({"build_number": True}, "field 'build_number' is bool, expected an integer", None),
        ({"size": "42"}, None, 42),  # digits in a string are read as the number
        ({"size": 4.5}, "field 'size' is float, expected an integer", None),
        ({"depends": ["a", 1]}, "field 'depends' is not a list of strings", None),
        ({"depends": "a"}, "field 'depends' is not a list of strings", None),
        ({"name": 3}, "field 'name' is int, expected a string", None),
    ],
)
@pytest.mark.parametrize("intern_keys", [True, False])
def test_sanitize_after_a_good_record_of_the_same_shape(change, problem, value, intern_keys):
    sanitize(dict(GOOD), intern_keys=intern_keys)  # remembers the good shape
    clean, bad = sanitize(dict(GOOD, **change), intern_keys=intern_keys)
    assert bad == ([problem] if problem else [])
    (key,) = change or {"name": None}
    if problem:
        assert key not in clean
    elif change:
        assert clean[key] == value
    else:
        assert clean == GOOD and list(clean) == list(GOOD)
    if intern_keys or problem:
        assert all(k is sys.intern(k) for k in clean)


def test_not_an_object():
    assert sanitize(["x"]) == ({}, ["metadata is a JSON list, not an object"])


def test_lazy_record_decodes_what_was_split():
    core, blob = split_core(GOOD)
    rec = PackageCacheRecord.lazy(
        "/p", "zlib-1.3-h0_0", {}, core, blob, "repodata_record", (), True, 1.0
    )
    assert rec.name == "zlib" and rec.channel == "conda-forge" and rec.problems == []
    assert rec.data == GOOD
    rec.problems.append("x")  # its own list
    assert PackageCacheRecord.lazy("/p", "e", {}, core, blob, "s", (), True, 1.0).problems == []
