"""Damage by verb (issue 24): every verb, with and without ``--json``, on a cache damaged in one
way at a time, run as a user runs it (``python -m conda_cache_plus``, as a non-root user when the
tests run as root, so that permissions mean something).

Each cell asserts what the README promises for every verb: the documented exit code, no
traceback, stdout and stderr valid UTF-8 without a control character (a name is escaped, never
replayed to the terminal), and with ``--json`` one JSON document on stdout.

Cells that do not hold yet are marked ``xfail(strict=True)`` with the reason: when one starts to
pass, the mark must go (and the README's guarantee table is updated with it).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from as_user import World

from conda_cache_plus import pkgbuild

pytestmark = pytest.mark.slow

# -- the verbs ------------------------------------------------------------------------------------
# name -> (argv after the verb's name, with {explicit} and {out} filled in per cell)
VERBS = {
    "dir": ["dir"],
    "info": ["info"],
    "list": ["list"],
    "usage": ["usage"],
    "verify": ["verify"],
    "verify-full": ["verify", "--full"],
    "repair": ["repair", "-y"],
    "fetch": ["fetch", "-y", "{explicit}"],
    "remove": ["remove", "-y", "demo-lib"],
    "clean-all": ["clean", "-y", "--all"],
    "clean-temp": ["clean", "-y", "--temp"],
    "export": ["export", "{out}"],
}
READERS = ("dir", "info", "list", "usage")


# -- the damage -----------------------------------------------------------------------------------
# Each kind gets the cache (a copy of a healthy one, owned by whoever runs the CLI) and returns
# the --pkgs-dir to pass (usually the cache itself).
def _copy_entry(pkgs: str, dist: str, as_name: bytes) -> None:
    src = os.fsencode(os.path.join(pkgs, dist))
    shutil.copytree(src, os.path.join(os.fsencode(pkgs), as_name), symlinks=True)


def _copy_archive(pkgs: str, fn: str, as_name: bytes) -> None:
    shutil.copyfile(os.path.join(pkgs, fn), os.path.join(os.fsencode(pkgs), as_name))


def _edit_json(path: str, change) -> None:
    with open(path) as fh:
        data = json.load(fh)
    data = change(data)
    with open(path, "w") as fh:
        fh.write(data if isinstance(data, str) else json.dumps(data))


def entry_non_utf8(pkgs):
    _copy_entry(pkgs, "demo-lib-1.1-0", b"p\xff-1.0-0")
    return pkgs


def archive_non_utf8(pkgs):
    _copy_archive(pkgs, "demo-lib-1.1-0.conda", b"q\xfe-1.0-0.conda")
    return pkgs


def entry_escapes(pkgs):
    _copy_entry(pkgs, "demo-lib-1.1-0", b"\x1b[2J\x1b[31mevil-1.0-0")
    return pkgs


def archive_escapes(pkgs):
    _copy_archive(pkgs, "demo-lib-1.1-0.conda", b"\x1b]0;owned\x07x-1.0-0.conda")
    return pkgs


def record_odd_types(pkgs):
    def odd(rec):
        rec.update(url=5, fn=["x"], channel={"a": 1}, sha256=7.5, size="big", depends="a b")
        return rec

    _edit_json(os.path.join(pkgs, "demo-lib-1.1-0", "info", "repodata_record.json"), odd)
    return pkgs


def record_not_an_object(pkgs):
    path = os.path.join(pkgs, "demo-lib-1.1-0", "info", "repodata_record.json")
    _edit_json(path, lambda _rec: [1, "two", None])
    deep = os.path.join(pkgs, "demo-tool-2.0-0", "info", "repodata_record.json")
    with open(deep, "w") as fh:
        fh.write("[" * 100_000 + "]" * 100_000)
    return pkgs


def index_odd_types(pkgs):
    def odd(idx):
        idx.update(name=["demo-lib"], version=1.1, build=None, depends="x", subdir=3)
        return idx

    _edit_json(os.path.join(pkgs, "demo-lib-1.1-0", "info", "index.json"), odd)
    os.unlink(os.path.join(pkgs, "demo-lib-1.1-0", "info", "repodata_record.json"))
    return pkgs


def paths_odd_types(pkgs):
    _edit_json(
        os.path.join(pkgs, "demo-lib-1.1-0", "info", "paths.json"),
        lambda p: {"paths_version": "one", "paths": "share/x"},
    )

    def odd_entries(p):
        for entry in p["paths"]:
            entry.update(size_in_bytes="12", sha256=None, _path=entry["_path"].encode().hex())
        p["paths"].append({"_path": 5})
        p["paths"].append(["not", "a", "dict"])
        return p

    _edit_json(os.path.join(pkgs, "demo-tool-2.0-0", "info", "paths.json"), odd_entries)
    return pkgs


def urls_txt_damaged(pkgs):
    with open(os.path.join(pkgs, "urls.txt"), "ab") as fh:
        fh.write(
            b"\xff\xfe not utf-8\nhttp://x/\x1b[2J-1.0-0.conda\n\x00\n" + b"a" * 70_000 + b"\n"
        )
    return pkgs


def state_files_damaged(pkgs):
    # our remembered verify state and lock files, as another version or a crash may leave them
    private = os.path.join(pkgs, ".conda-cache-plus")
    os.makedirs(os.path.join(private, "verify-v2"), exist_ok=True)
    with open(os.path.join(private, "verify-v2", "state.marshal"), "wb") as fh:
        fh.write(b"\xe9\x00\x00\x00\x00garbage" + os.urandom(64))
    with open(os.path.join(private, "cache.lock"), "wb") as fh:
        fh.write(b"\xff" * 10)
    return pkgs


def unreadable(pkgs):
    os.chmod(os.path.join(pkgs, "demo-tool-2.0-0", "share", "demo-tool", "payload.bin"), 0)
    os.chmod(os.path.join(pkgs, "demo-data-0.3-0.conda"), 0)
    os.chmod(os.path.join(pkgs, "demo-data-0.3-0", "info", "repodata_record.json"), 0)
    return pkgs


def hostile_dotdot(pkgs):
    # the case the hardening wave closed, kept next to the new ones as the reference
    _copy_archive(pkgs, "demo-lib-1.1-0.conda", b"..conda")
    return pkgs


def pkgs_dir_is_a_file(pkgs):
    path = pkgs + "-file"
    with open(path, "w") as fh:
        fh.write("not a cache\n")
    return path


def pkgs_dir_missing(pkgs):
    return pkgs + "-mistyped"


def pkgs_dir_through_a_file(pkgs):
    return pkgs_dir_is_a_file(pkgs) + "/pkgs"


def others_cache_opened_by_hand(pkgs):
    """Marker: the cache stays owned by its first user (root here), who ran ``chmod 777`` on its
    directories and files by hand; the lock files are left as they were."""
    return pkgs


DAMAGE = {
    f.__name__.replace("_", "-"): f
    for f in (
        entry_non_utf8,
        archive_non_utf8,
        entry_escapes,
        archive_escapes,
        record_odd_types,
        record_not_an_object,
        index_odd_types,
        paths_odd_types,
        urls_txt_damaged,
        state_files_damaged,
        unreadable,
        hostile_dotdot,
        pkgs_dir_is_a_file,
        pkgs_dir_missing,
        pkgs_dir_through_a_file,
        others_cache_opened_by_hand,
    )
}
BAD_PATHS = ("pkgs-dir-is-a-file", "pkgs-dir-missing", "pkgs-dir-through-a-file")
HOSTILE = (
    "entry-non-utf8",
    "archive-non-utf8",
    "entry-escapes",
    "archive-escapes",
    "hostile-dotdot",
)
METADATA = (
    "record-odd-types",
    "record-not-an-object",
    "index-odd-types",
    "paths-odd-types",
    "urls-txt-damaged",
    "state-files-damaged",
)


def expected(damage: str, verb: str) -> set[int]:
    """The exit codes the README allows for ``verb`` on this damage."""
    if damage in BAD_PATHS:
        # a --pkgs-dir that is not a directory: dir and info show it as such; fetch creates a
        # missing cache and cannot use the others (a package could not be fetched); every verb
        # that acts on the cache has nothing to act on, which is not success ("nothing checked")
        if verb in ("dir", "info"):
            return {0}
        if verb == "fetch":
            return {0} if damage == "pkgs-dir-missing" else {3}
        return {1}
    if damage in HOSTILE:
        # reported by verify (a hostile entry, exit 1), worked around by every other verb
        return {1} if verb.startswith("verify") else {0}
    if damage in METADATA:
        # "the entry is reported; every verb still runs and processes the rest": 0 or 1
        return {0} if verb == "dir" else {0, 1}
    if damage == "unreadable":
        if verb.startswith("verify"):
            return {1}
        if verb == "fetch":  # the entry must be fetched again, from an archive it cannot read
            return {0, 3}
        return {0} if verb in READERS else {0, 1}
    if damage == "others-cache-opened-by-hand":
        # remove and clean cannot take the cache's lock: exit 3 with each item listed
        if verb in ("remove", "clean-all", "clean-temp"):
            return {3}
        return {0}
    raise AssertionError(damage)


# Cells that do not hold yet (issue 24), by id; each group says what goes wrong today. A
# cell that starts to pass fails (strict): take it out of here.
KNOWN: dict[str, str] = {}


def _cell_id(damage: str, verb: str, js: bool) -> str:
    return f"{damage}-{verb}{'-json' if js else ''}"


CELLS = [
    pytest.param(
        d,
        v,
        js,
        id=_cell_id(d, v, js),
        marks=[pytest.mark.xfail(reason=KNOWN[_cell_id(d, v, js)], strict=True)]
        if _cell_id(d, v, js) in KNOWN
        else [],
    )
    for d in DAMAGE
    for v in VERBS
    for js in (False, True)
]


# -- the cache ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def user():
    w = World()  # a non-root user when we are root; skips, with the reason, when there is none
    yield w
    w.cleanup()


@pytest.fixture(scope="module")
def healthy(user):
    """A healthy cache (four packages from the demo channel) and the @EXPLICIT file of them."""
    top = os.path.join(user.path, "healthy")  # readable by the user (the channel is file://)
    channel = os.path.join(top, "channel")
    pkgs = pkgbuild.demo_channel(channel)
    explicit = os.path.join(top, "demo.txt")
    pkgbuild.write_explicit(
        explicit, [p for p in pkgs if p.fn.endswith(".conda")], "file://" + channel
    )
    cache = os.path.join(top, "pkgs")
    proc = subprocess.run(
        [sys.executable, "-m", "conda_cache_plus", "fetch", "-q", "--pkgs-dir", cache, explicit],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return cache, explicit, channel


def _give_to(path: str, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(os.fsencode(path)):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _open_by_hand(pkgs: str) -> None:
    """``chmod 777`` everything but the lock files, as a user opening a cache to others does."""
    for root, dirs, files in os.walk(pkgs):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777)
        for name in files:
            p = os.path.join(root, name)
            if not name.endswith(".lock") and not os.path.islink(p):
                os.chmod(p, 0o777 if os.stat(p).st_mode & stat.S_IXUSR else 0o666)
    os.chmod(pkgs, 0o777)


def _check_output(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        around = raw[max(0, exc.start - 300) : exc.start + 100]
        raise AssertionError(f"{what} is not valid UTF-8 ({exc}): ...{around!r}...") from None
    bad = sorted({c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0})
    if bad:
        at = text.index(bad[0])
        raise AssertionError(
            f"{what} has control characters {bad!r}: ...{text[at - 300 : at + 100]!r}"
        )
    return text


@pytest.mark.parametrize("damage,verb,js", CELLS)
def test_damage_verb(damage, verb, js, healthy, user, tmp_path):
    source, explicit, _channel = healthy
    cell = os.path.join(user.path, f"{damage}-{verb}-{int(js)}")
    os.mkdir(cell)
    pkgs = os.path.join(cell, "pkgs")
    shutil.copytree(source, pkgs, symlinks=True)
    shutil.copyfile(explicit, os.path.join(cell, "demo.txt"))
    theirs = damage == "others-cache-opened-by-hand"
    if theirs:
        if os.geteuid() != 0:
            pytest.skip("a cache owned by another user needs root to make")
        _open_by_hand(pkgs)
        _give_to(os.path.join(cell, "demo.txt"), *user.ids)
        os.chown(cell, *user.ids)
    target = DAMAGE[damage](pkgs)
    if not theirs:
        _give_to(cell, *user.ids)
    argv = [
        a.format(explicit=os.path.join(cell, "demo.txt"), out=os.path.join(cell, "out"))
        for a in VERBS[verb]
    ]
    argv += ["--pkgs-dir", target] + (["--json"] if js else [])
    proc = subprocess.run(
        [*user.python, "-m", "conda_cache_plus", *argv],
        capture_output=True,
        # strict, as on a terminal with a UTF-8 locale (C.UTF-8 would let surrogates through)
        env=user.environ({"PYTHONIOENCODING": "utf-8:strict"}),
        cwd=cell,
        timeout=300,
    )
    out = _check_output(proc.stdout, "stdout")
    err = _check_output(proc.stderr, "stderr")
    assert "Traceback" not in err, err
    assert proc.returncode in expected(damage, verb), (proc.returncode, out[-2000:], err[-2000:])
    if js:
        assert out.strip(), f"--json printed nothing (exit {proc.returncode}): {err}"
        json.loads(out)
    if proc.returncode not in (0, 1):
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert errors, err
