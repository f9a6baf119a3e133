"""What verify remembers, format 3: each entry's state kept as its own checked bytes; a damaged,
truncated, foreign or older state file never makes a check skip a file, and never fails."""

from __future__ import annotations

import marshal
import os
import time
import zlib
from pathlib import Path

import pytest
from builders import BIG, make_files
from conftest import populate

from conda_cache_plus.gateways import statefile
from conda_cache_plus.integrity import verify_store
from conda_cache_plus.integrity.findings import CORRUPT, FAST, FULL, OK
from conda_cache_plus.integrity.verify import verify_caches
from conda_cache_plus.layouts.caches import PackageCaches

ALPHA, BETA = "alpha-1.0-0", "beta-2.0-0"


@pytest.fixture
def pkgs(tmp_path, build):
    a = build("alpha", "1.0", "0", files=make_files("alpha"), fmt=".conda")
    b = build("beta", "2.0", "0", files=make_files("beta"), fmt=".tar.bz2")
    pkgs = str(populate(tmp_path / "pkgs", [a, b]))
    # an hour old: a file written a moment ago is never remembered as hashed (the racy rule)
    old = time.time() - 3600
    for top, dirs, files in os.walk(pkgs):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (old, old), follow_symlinks=False)
    return pkgs


def run(pkgs_dir, level=FULL, **kw):
    return verify_caches(PackageCaches([pkgs_dir]), None, level, **kw)


def entry(report, name):
    return next(e for e in report.entries if e.entry == name)


def state_file(pkgs_dir) -> str:
    return verify_store.state_path(verify_store.store_dir(pkgs_dir))


def stored(pkgs_dir) -> dict:
    return verify_store.load(verify_store.store_dir(pkgs_dir), pkgs_dir)


def rewrite(pkgs_dir, states: dict) -> None:
    assert verify_store.save(verify_store.store_dir(pkgs_dir), pkgs_dir, states)


def flip_payload_byte(pkgs_dir) -> None:
    with open(os.path.join(pkgs_dir, ALPHA, "share/alpha/data.bin"), "r+b") as fh:
        fh.seek(4321)
        byte = fh.read(1)
        fh.seek(4321)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_each_entry_is_remembered_as_checked_bytes(pkgs):
    run(pkgs)
    states = stored(pkgs)
    assert set(states) == {ALPHA, BETA}
    assert all(isinstance(b, bytes) for b in states.values())
    state = verify_store.decode(states[ALPHA])
    assert state is not None and verify_store.decode(verify_store.encode(state)) == state
    again = run(pkgs)
    assert entry(again, ALPHA).hashed == 0 and entry(again, ALPHA).skipped > 0


def test_an_unchanged_run_does_not_rewrite_the_state(pkgs):
    run(pkgs)
    before = os.stat(state_file(pkgs))
    for level in (FULL, FAST, FULL):
        run(pkgs, level)
    after = os.stat(state_file(pkgs))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:4] + b[4:-1] + bytes([b[-1] ^ 1]),  # one bit of the state
        lambda b: bytes([b[0] ^ 1]) + b[1:],  # one bit of the checksum
        lambda b: b[: len(b) // 2],  # cut short
        lambda b: b"",
        lambda b: 12345,  # not bytes at all
    ],
    ids=["state-bit", "crc-bit", "truncated", "empty", "not-bytes"],
)
def test_a_damaged_entry_state_is_checked_again_in_full(pkgs, damage):
    run(pkgs)
    states = stored(pkgs)
    states[ALPHA] = damage(states[ALPHA])
    rewrite(pkgs, states)
    rep = run(pkgs)
    alpha = entry(rep, ALPHA)  # nothing of it trusted: every file read again
    assert alpha.status == OK and alpha.skipped == 0 and alpha.bytes_hashed >= len(BIG)
    assert entry(rep, BETA).status == OK and entry(rep, BETA).hashed == 0  # its state held
    assert verify_store.decode(stored(pkgs)[ALPHA]) is not None  # remembered anew


def test_states_of_the_wrong_shape_read_as_nothing_remembered(pkgs):
    run(pkgs)
    good = verify_store.decode(stored(pkgs)[ALPHA])
    meta, plan, fps, hashed, links, archives = good
    wrong = [
        (meta, plan, fps, hashed, links),  # an item short
        (meta, plan, fps[:-1], hashed[:-1], links, archives),  # fewer files than the plan
        (meta, plan, fps, hashed[:-1], links, archives),
        (meta, plan[:-1], fps, hashed, links, archives),
        (meta, (1, *plan[1:]), fps, hashed, links, archives),
        (list(meta), plan, fps, hashed, links, archives),
        [meta, plan, fps, hashed, links, archives],
        "a string",
    ]
    for state in wrong:
        blob = marshal.dumps(state)
        assert verify_store.decode(zlib.crc32(blob).to_bytes(4, "little") + blob) is None
    assert verify_store.decode(verify_store.encode(good)) == good
    for state in wrong:
        rewrite(pkgs, {ALPHA: verify_store.encode(state), BETA: stored(pkgs)[BETA]})
        for level in (FAST, FULL):
            alpha = entry(run(pkgs, level, write_store=False), ALPHA)
            assert alpha.status == OK and alpha.skipped == 0


def test_truncated_foreign_or_garbage_state_file(pkgs, tmp_path):
    run(pkgs)
    path = state_file(pkgs)
    whole = Path(path).read_bytes()
    other = str(tmp_path / "other")
    os.makedirs(other)
    foreign = str(tmp_path / "foreign.idx")
    statefile.write_chunked(foreign, verify_store.FORMAT, other, stored(pkgs))
    for content in (
        whole[: len(whole) - 7],  # cut in the last frame
        whole[:20],
        b"\x00garbage",
        Path(foreign).read_bytes(),  # the state of another cache
        marshal.dumps((verify_store.FORMAT, os.path.realpath(pkgs), {ALPHA: 1})),
    ):
        Path(path).write_bytes(content)
        assert stored(pkgs) == {}
        flip_payload_byte(pkgs)
        rep = run(pkgs)
        alpha = entry(rep, ALPHA)
        assert alpha.status == CORRUPT and alpha.skipped == 0
        flip_payload_byte(pkgs)  # back as it was
    assert [e.status for e in run(pkgs).entries] == [OK, OK]


def test_a_format_2_state_is_ignored(pkgs):
    # what the previous version wrote, where it wrote it (the same directory: the findings
    # remembered beside it stay)
    everything = {ALPHA: ((None,), (), [], [], {}, {})}
    statefile.write(state_file(pkgs), 2, pkgs, everything)
    assert stored(pkgs) == {}
    rep = run(pkgs)
    assert [e.status for e in rep.entries] == [OK, OK]
    assert all(e.skipped == 0 and e.hashed > 0 for e in rep.entries)
    assert set(stored(pkgs)) == {ALPHA, BETA}


def test_specs_keep_the_other_entries_states(pkgs):
    from conda_cache_plus.model.match import matchers

    run(pkgs)
    before = stored(pkgs)
    flip_payload_byte(pkgs)
    os.utime(os.path.join(pkgs, ALPHA, "share/alpha/data.bin"))  # a changed fingerprint
    verify_caches(PackageCaches([pkgs]), matchers(["alpha"]), FULL)
    after = stored(pkgs)
    assert after[BETA] == before[BETA] and after.get(ALPHA) != before[ALPHA]


def test_findings_of_a_full_run_survive_a_new_state_format(pkgs, monkeypatch):
    # what --full found is shown by a later fast run while the path is unchanged; a state
    # written in another format (an upgrade) must not lose it
    from conda_cache_plus.integrity.judgement import judge

    def verify(level):
        return judge(run(pkgs, level))

    flip_payload_byte(pkgs)
    old = time.time() - 3600
    os.utime(os.path.join(pkgs, ALPHA, "share/alpha/data.bin"), (old, old))
    assert entry(verify(FULL), ALPHA).status == CORRUPT
    statefile.write(state_file(pkgs), 2, pkgs, {})  # the state as an older version left it
    monkeypatch.setattr(verify_store, "FORMAT", 4)  # or as a newer one will read it
    fast = entry(verify(FAST), ALPHA)
    assert fast.status == CORRUPT and [p.kind for p in fast.problems] == ["wrong_hash"]
