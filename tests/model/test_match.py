"""Spec matching without conda (conda's MatchSpec is used when conda is importable)."""

from __future__ import annotations

import pytest

from conda_cache_plus.exceptions import InvalidSpecError
from conda_cache_plus.model.match import SpecMatcher, version_compare
from conda_cache_plus.model.records import PackageCacheRecord


def rec(name, version, build="0", channel="https://conda.anaconda.org/conda-forge/noarch"):
    return PackageCacheRecord(
        {"name": name, "version": version, "build": build, "channel": channel},
        "/p",
        f"{name}-{version}-{build}",
    )


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("1.0", "1.0.0", 0),
        ("1.10", "1.9", 1),
        ("2.0a1", "2.0", -1),
        ("2.0.dev1", "2.0a1", 1),  # conda: 2.0.dev1 is 2.0.0dev1, after 2.0a1
        ("2.0dev1", "2.0a1", -1),
        ("1.0.post1", "1.0", 1),
        ("1!0.1", "2.0", 1),
        ("1.2.3", "1.2.3", 0),
    ],
)
def test_version_order(a, b, expected):
    assert version_compare(a, b) == expected


@pytest.mark.parametrize(
    "spec, hits",
    [
        ("numpy", {"numpy-1.26.4", "numpy-2.1.0"}),
        ("num*", {"numpy-1.26.4", "numpy-2.1.0"}),
        ("numpy>=2", {"numpy-2.1.0"}),
        ("numpy<2", {"numpy-1.26.4"}),
        ("numpy >=1.20,<2", {"numpy-1.26.4"}),
        ("numpy=1.26", {"numpy-1.26.4"}),
        ("numpy==2.1.0", {"numpy-2.1.0"}),
        ("numpy 2.1.0 py_1", set()),
        ("numpy=2.1.0=py_0", {"numpy-2.1.0"}),
        ("conda-forge::numpy<2", {"numpy-1.26.4"}),
        ("defaults::numpy", set()),
        ("zlib", set()),
        ("numpy<1|>=2", {"numpy-2.1.0"}),
    ],
)
def test_specs(spec, hits):
    records = [rec("numpy", "1.26.4", "py_0"), rec("numpy", "2.1.0", "py_0"), rec("scipy", "1.0")]
    m = SpecMatcher(spec, use_conda=False)
    assert {f"{r.name}-{r.version}" for r in records if m.match(r)} == hits


@pytest.mark.parametrize("spec", ["", ">=2", "numpy[version='>=2']"])
def test_invalid_specs(spec):
    with pytest.raises(InvalidSpecError):
        SpecMatcher(spec, use_conda=False)


def test_sort_keys_agree_with_compare():
    import functools

    from conda_cache_plus.model.match import version_sort_keys

    versions = [
        "1.0",
        "1.0.0",
        "2.0a1",
        "2.0",
        "1.10",
        "1.9",
        "2.0.dev1",
        "1!0.1",
        "1.0.post1",
        "0.9.9.9.9",
        "2.0.1",
    ]
    keys = version_sort_keys(versions)
    by_key = sorted(versions, key=keys.__getitem__)
    by_cmp = sorted(versions, key=functools.cmp_to_key(version_compare))
    assert [keys[v] for v in by_key] == [keys[v] for v in by_cmp]
    assert (
        by_key.index("2.0a1") < by_key.index("2.0") < by_key.index("2.0.1") < by_key.index("1!0.1")
    )


@pytest.mark.parametrize("use_conda", [False, None])
def test_entry_names_and_paths_every_verb_prints_are_specs(use_conda, tmp_path):
    r = rec("demo-lib", "1.0", "0", channel="https://conda.anaconda.org/conda-forge")
    r.data["subdir"] = "noarch"
    other = rec("demo-lib", "1.1", "0")
    for spec in (
        "demo-lib-1.0-0",
        "demo-lib-1.0-0.conda",
        "conda-forge::demo-lib-1.0-0",
        "conda-forge/noarch::demo-lib-1.0-0",
        "/p/demo-lib-1.0-0",
        "/p/demo-lib-1.0-0.tar.bz2",
    ):
        m = SpecMatcher(spec, use_conda=use_conda)
        assert m.match(r), spec
        assert not m.match(other), spec
    assert not SpecMatcher("bioconda::demo-lib-1.0-0", use_conda=use_conda).match(r)
    # a plain name is still a name
    assert SpecMatcher("demo-lib", use_conda=use_conda).match(other)


def test_conda_reason_is_said_once():
    from conda_cache_plus.model.match import _innermost

    nested = "Invalid spec '>=2': Invalid spec '>=2': no package name found in '>=2'"
    assert _innermost(nested, ">=2") == "no package name found in '>=2'"
