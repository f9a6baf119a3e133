"""Version order and version specs without conda agree with conda's own implementation.

The vectors are the version strings and specs of conda's published tests
(conda/conda tests/models/test_version.py: test_version_order, test_openssl_convention,
test_pep440, test_hexrd, test_ver_eval, test_match, test_not_eq_star, test_compound_versions,
test_compatible_release_versions, test_local_identifier); the corpus is generated from the atoms
those tests exercise. Where conda is importable every pair is compared with conda's
``VersionOrder`` and every (version, spec) with its ``VersionSpec``; without conda the sorted lists
of conda's tests must come out sorted.
"""

from __future__ import annotations

import functools
import itertools
import random

import pytest

from conda_cache_plus.model.versions import (
    InvalidVersion,
    is_valid_version,
    version_compare,
    version_matches,
    version_sort_keys,
    version_spec,
    version_startswith,
)

# conda's test_version_order, in conda's (ascending) order
ORDERED = [
    "0.4", "0.4.0", "0.4.1a.vc11", "0.4.1.rc", "0.4.1.vc11", "0.4.1", "0.5*", "0.5a1", "0.5b3",
    "0.5C1", "0.5z", "0.5za", "0.5", "0.5_5", "0.5-5", "0.9.6", "0.960923", "1.0", "1.0.4a3",
    "1.0.4b1", "1.0.4", "1.1dev1", "1.1_", "1.1a1", "1.1.dev1", "1.1.a1", "1.1", "1.1.post1",
    "1.1.1dev1", "1.1.1rc1", "1.1.1", "1.1.1post1", "1.1post1", "2g6", "2.0b1pr0", "2.2be.ta29",
    "2.2be5ta29", "2.2beta29", "2.2.0.1", "3.1.1.6", "3.2.p.r0", "3.2.pr0", "3.2.pr.1",
    "5.5.kw", "11g", "14.3.1", "14.3.1.post26.g9d75ca2", "1996.07.12", "1!0.4.1", "1!3.1.1.6",
    "2!0.4.1",
]  # fmt: skip
OPENSSL = [
    "1.0.1dev", "1.0.1_", "1.0.1a", "1.0.1b", "1.0.1c", "1.0.1d", "1.0.1r", "1.0.1rc",
    "1.0.1rc1", "1.0.1rc2", "1.0.1s", "1.0.1", "1.0.1post.a", "1.0.1post.b", "1.0.1post.z",
    "1.0.1post.za", "1.0.2",
]  # fmt: skip
_PEP440 = [
    "1.0a1", "1.0a2.dev456", "1.0a12.dev456", "1.0a12", "1.0b1.dev456", "1.0b2",
    "1.0b2.post345.dev456", "1.0b2.post345", "1.0c1.dev456", "1.0c1", "1.0c3", "1.0rc2",
    "1.0.dev456", "1.0", "1.0.post456.dev34", "1.0.post456", "1.1.dev1", "1.2.r32+123456",
    "1.2.rev33+123456", "1.2+abc", "1.2+abc123def", "1.2+abc123", "1.2+123abc", "1.2+123abc456",
    "1.2+1234.abc", "1.2+123456",
]  # fmt: skip
PEP440 = _PEP440 + ["1!" + v for v in _PEP440]
HEXRD = ["0.3.0.dev", "0.3.3"]
EQUAL = [("0.4.1.rc", "  0.4.1.RC  "), ("  0.4.rc  ", "0.4.RC"), ("0.4", "0.4.0"),
         ("0.4.a1", "0.4.0a1")]  # fmt: skip
INVALID = ["", "  ", "3.5&1", "5.5++", "5.5..mw", "!", "a!1.0", "a!b!1.0", "1.2+", "+1.2"]
STARTSWITH = [
    ("0.4.1", "0", True), ("0.4.1", "0.4", True), ("0.4.1p1", "0.4", True),
    ("0.4.1p1", "0.4.1p", True), ("0.4.1p1", "0.4.1q1", False), ("0.4", "0.4.1", False),
    ("0.4.1+1.3", "0.4.1", True), ("0.4.1+1.3", "0.4.1+1", True), ("0.4.1", "0.4.1+1.3", False),
    ("0.4.1+1", "0.4.1+1.3", False),
]  # fmt: skip
# (version, spec, conda's verdict) from test_ver_eval, test_not_eq_star, test_compound_versions,
# test_compatible_release_versions
VER_EVAL = [
    ("1.7.0", "==1.7", True), ("1.7.0", "<=1.7", True), ("1.7.0", "<1.7", False),
    ("1.7.0", ">=1.7", True), ("1.7.0", ">1.7", False), ("1.6.7", ">=1.7", False),
    ("2013a", ">2013b", False), ("2013k", ">2013b", True), ("3.0.0", ">2013b", False),
    ("1.0.0", ">1.0.0a", True), ("1.0.0", ">1.0.0*", True), ("1.0", "1.0*", True),
    ("1.0.0", "1.0*", True), ("1.0", "1.0.0*", True), ("1.0.1", "1.0.0*", False),
    ("2013a", "2013a*", True), ("2013a", "2013b*", False), ("2013ab", "2013a*", True),
    ("1.3.4", "1.2.4*", False), ("1.2.3+4.5.6", "1.2.3*", True),
    ("1.2.3+4.5.6", "1.2.3+4*", True), ("1.2.3+4.5.6", "1.2.3+5*", False),
    ("1.2.3+4.5.6", "1.2.4+5*", False),
    ("3.3.1", "=3.3", True), ("3.3", "=3.3", True), ("3.4", "=3.3", False),
    ("3.3.1", "3.3.*", True), ("3.3", "3.3.*", True), ("3.4", "3.3.*", False),
    ("3.3.1", "=3.3.*", True), ("3.3", "=3.3.*", True), ("3.4", "=3.3.*", False),
    ("3.3.1", "!=3.3.*", False), ("3.4", "!=3.3.*", True), ("3.4.1", "!=3.3.*", True),
    ("3.3.1", "!=3.3", True), ("3.3.0.0", "!=3.3", False), ("3.3.0.0", "!=3.3.*", False),
    ("2.6.8", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*", False),
    ("2.7.2", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*", True),
    ("3.3", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*", False),
    ("3.3.4", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*", False),
    ("3.4", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*", True),
    ("3.4a", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*", True),
    ("1.11.0", "~=1.10", True), ("1.11.0", "~=1.10.0", False), ("3.4.0", "~=3.3.2", False),
    ("3.3.1", "~=3.3.2", False), ("3.3.2.0", "~=3.3.2", True), ("3.3.3", "~=3.3.2", True),
    ("2.2.0", "~=3.3.2|==2.2", True), ("3.3.3", "~=3.3.2|==2.2", True),
    ("2.2.1", "~=3.3.2|==2.2", False),
]  # fmt: skip
# test_match: every spec against 1.7.1
MATCH_171 = [
    ("1.7.*", True), ("1.7.1", True), ("1.7.0", False), ("1.7", False), ("1.5.*", False),
    (">=1.5", True), ("!=1.5", True), ("!=1.7.1", False), ("==1.7.1", True), ("==1.7", False),
    ("==1.7.2", False), ("==1.7.1.0", True), ("1.7.*|1.8.*", True), (">1.7,<1.8", True),
    (">1.7.1,<1.8", False), ("^1.7.1$", True), (r"^1\.7\.1$", True), (r"^1\.7\.[0-9]+$", True),
    (r"^1\.8.*$", False), (r"^1\.[5-8]\.1$", True), (r"^[^1].*$", False),
    (r"^[0-9+]+\.[0-9+]+\.[0-9]+$", True), ("^$", False), ("^.*$", True), ("1.7.*|^0.*$", True),
    ("1.6.*|^0.*$", False), ("1.6.*|^0.*$|1.7.1", True), ("^0.*$|1.7.1", True),
    (r"1.6.*|^.*\.7\.1$|0.7.1", True), ("*", True), ("1.*.1", True), ("1.5.*|>1.7,<1.8", True),
    ("1.5.*|>1.7,<1.7.1", False), ("( (1.5|((1.6|1.7), 1.8), 1.9 |2.0))|2.1", False),
]  # fmt: skip
LOCAL_IDENTIFIER = ["1.7.0", "1.7.0.post123", "1.7.0.post123.gabcdef9", "1.7.0.post123+gabcdef9"]
BAD_SPECS = ["><2.4.5", "!!2.4.5", "!", "(1.5", "1.5)", "1.5||1.6", "~", "1.2+", "+1.2",
             "==", "=", ">=", "<=", "~=3.3.2.*", "===3.3.2"]  # fmt: skip

VECTORS = list(dict.fromkeys(ORDERED + OPENSSL + PEP440 + HEXRD + LOCAL_IDENTIFIER))


def _generated_corpus(n: int = 700, seed: int = 20261207) -> list[str]:
    """Versions built from the pieces conda's tests exercise, in random combinations: numbers
    with leading zeros, pre/post/dev tags, openssl underscores, ``*``, epochs, local parts,
    ``-`` and ``_`` separators, mixed case."""
    rng = random.Random(seed)
    numbers = ["0", "00", "1", "01", "2", "9", "10", "11", "100", "2013"]
    tags = ["a", "b", "c", "rc", "dev", "post", "pre", "alpha", "beta", "g", "p", "r", "z",
            "za", "DEV", "Post", "RC", "_", "*", "vc", "kw"]  # fmt: skip

    def segment() -> str:
        kind = rng.random()
        if kind < 0.55:
            return rng.choice(numbers)
        if kind < 0.75:
            return rng.choice(numbers) + rng.choice(tags) + rng.choice(["", *numbers])
        return rng.choice(tags) + rng.choice(["", *numbers])

    out = set()
    while len(out) < n:
        sep = rng.choice([".", ".", ".", "_", "-"])
        v = sep.join(segment() for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.15:
            v = rng.choice(["1!", "2!", "0!", "x!"]) + v
        if rng.random() < 0.15:
            v += "+" + ".".join(segment() for _ in range(rng.randint(1, 2)))
        if rng.random() < 0.08:
            v += "_"
        out.add(v)
    return sorted(out)


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


# -- without conda: conda's sorted lists stay sorted ----------------------------------------


@pytest.mark.parametrize("ordered", [ORDERED, OPENSSL, PEP440, HEXRD], ids=lambda o: o[0])
def test_conda_sorted_lists_sort_the_same(ordered):
    shuffled = list(ordered)
    random.Random(7).shuffle(shuffled)
    by_cmp = sorted(shuffled, key=functools.cmp_to_key(version_compare))
    keys = version_sort_keys(shuffled)
    by_key = sorted(shuffled, key=keys.__getitem__)
    # "0.5_5" and "0.5-5" are the same version: equal ones may come in either order
    for a, b, c in zip(by_cmp, by_key, ordered, strict=True):
        assert version_compare(a, c) == 0 == version_compare(b, c), (a, b, c)


def test_equal_invalid_startswith_and_specs():
    for a, b in EQUAL:
        assert version_compare(a, b) == 0
    for text in INVALID:
        assert not is_valid_version(text)
    for v, prefix, want in STARTSWITH:
        assert version_startswith(v, prefix) is want, (v, prefix)
    for v, spec, want in VER_EVAL:
        assert version_matches(v, spec) is want, (v, spec)
    for spec, want in MATCH_171:
        assert version_matches("1.7.1", spec) is want, spec
    for v in LOCAL_IDENTIFIER:
        assert version_matches(v, v)
    for spec in BAD_SPECS:
        with pytest.raises(InvalidVersion):
            version_spec(spec)


def test_invalid_versions_sort_first_and_never_raise():
    versions = ["1.0", "not a version!", "0.1", "1.0-beta_1"]
    ordered = sorted(versions, key=functools.cmp_to_key(version_compare))
    assert ordered[2:] == ["0.1", "1.0"]
    keys = version_sort_keys(versions)
    assert sorted(versions, key=keys.__getitem__) == ordered
    assert not version_matches("not a version!", ">=0")


# -- with conda: every pair, the differential ------------------------------------------------


@pytest.fixture(scope="module")
def conda_version():
    pytest.importorskip("conda")
    from conda.models import version

    return version


def _conda_order(conda_version, text):
    try:
        return conda_version.VersionOrder(text)
    except Exception:
        return None


@pytest.mark.conda
@pytest.mark.parametrize("corpus", ["vectors", "generated"])
def test_version_order_agrees_with_conda(conda_version, corpus):
    versions = VECTORS + INVALID if corpus == "vectors" else _generated_corpus()
    conda = {v: _conda_order(conda_version, v) for v in versions}
    assert {v: is_valid_version(v) for v in versions} == {
        v: o is not None for v, o in conda.items()
    }
    valid = [v for v in versions if conda[v] is not None]
    assert len(valid) > (len(versions) // 2)
    disagreements = []
    pairs = 0
    for a, b in itertools.combinations(valid, 2):
        pairs += 1
        theirs = -1 if conda[a] < conda[b] else (1 if conda[b] < conda[a] else 0)
        if _sign(version_compare(a, b)) != theirs:
            disagreements.append((a, b, theirs))
        if conda[a].startswith(conda[b]) != version_startswith(a, b):
            disagreements.append((a, b, "startswith"))
    assert not disagreements, f"{len(disagreements)} of {pairs} pairs: {disagreements[:10]}"
    # the sort keys order the whole corpus as conda does
    keys = version_sort_keys(valid)
    ours = sorted(valid, key=keys.__getitem__)
    assert all(not (conda[b] < conda[a]) for a, b in itertools.pairwise(ours))


@pytest.mark.conda
def test_version_specs_agree_with_conda(conda_version):
    specs = sorted({s for _, s, _ in VER_EVAL} | {s for s, _ in MATCH_171})
    rng = random.Random(3)
    corpus = _generated_corpus(200)
    valid = [v for v in corpus if _conda_order(conda_version, v) is not None]
    for a in rng.sample(valid, 60):
        for op in ("==", "!=", "<", "<=", ">", ">=", "=", "~=", ""):
            specs.append(f"{op}{a}")
        specs.append(f"{a}*")
        specs.append(f"{a}.*")
        specs.append(f"!={a}.*")
    versions = VECTORS + valid
    disagreements = []
    checked = 0
    for spec in dict.fromkeys(specs):
        try:
            theirs = conda_version.VersionSpec(spec)
        except Exception:
            with pytest.raises(InvalidVersion):
                version_spec(spec)
            continue
        mine = version_spec(spec)
        for v in versions:
            checked += 1
            try:
                verdict = bool(theirs.match(v))
            except Exception:  # conda finds out while matching (~=1 has no series)
                verdict = "raises"
            try:
                ours = mine(v)
            except InvalidVersion:
                ours = "raises"
            if verdict != ours:
                disagreements.append((v, spec, verdict, ours))
    assert checked > 10_000
    assert not disagreements, f"{len(disagreements)} of {checked}: {disagreements[:10]}"
    for spec in BAD_SPECS:
        with pytest.raises(Exception):  # noqa: B017 - conda raises its own type
            conda_version.VersionSpec(spec)
    assert mine is not None


@pytest.mark.conda
def test_package_specs_without_conda_match_like_matchspec(conda_version):
    from conda_cache_plus.model.match import SpecMatcher
    from conda_cache_plus.model.records import PackageCacheRecord

    channel = "https://conda.anaconda.org/conda-forge/noarch"
    records = [
        PackageCacheRecord(
            {"name": "numpy", "version": v, "build": b, "build_number": 0, "channel": channel},
            "/p",
            f"numpy-{v}-{b}",
        )
        for v in [*VECTORS[:40], "1.26.4", "2.1.0", "2.1.0.post1", "1!1.0"]
        for b in ("py_0", "h123_1")
    ]
    specs = ["numpy", "num*", "numpy>=2", "numpy<2", "numpy >=1.20,<2", "numpy=1.26",
             "numpy==2.1.0", "numpy=2.1.0=py_0", "numpy 2.1.0 py_0", "numpy 1.1.*",
             "numpy=1.1", "numpy !=1.1.*", "numpy<1|>=2", "numpy ~=1.0", "numpy 0.5*",
             "numpy >0.4.1.rc", "numpy=1.0.4", "conda-forge::numpy<1", "numpy=*=h123*",
             "numpy 1!1.0"]  # fmt: skip
    for spec in specs:
        ours = SpecMatcher(spec, use_conda=False)
        theirs = SpecMatcher(spec, use_conda=True)
        for r in records:
            assert ours.match(r) == theirs.match(r), (spec, r.version, r.build)
