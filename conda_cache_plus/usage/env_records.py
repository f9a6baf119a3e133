"""Reading an environment's ``conda-meta`` for the usage scan (graph.py): its records, reduced
to what matching needs, and its history, from the remembered index (env_index.py) while their
fingerprints match the files, else from the files. The verdict mode's shortcut (a record that
names its package consistently is only checked by its names) is decided here; graph.py's
docstring says when it applies."""

from __future__ import annotations

import json
import os
import struct

from ..envs.discovery import Environment
from ..gateways import statefile
from ..model import fsclock
from ..model.filenames import split_dist, strip_package_extension
from ..model.plainclass import FieldsEq
from ..model.records import channel_name
from .samples import sample_paths

LINK_TYPES = {1: "hardlink", 2: "softlink", 3: "copy", 4: "directory"}

O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_O_FILE = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_decode_json = json.JSONDecoder().decode


class EnvPackage(FieldsEq):
    """One ``conda-meta/<dist>.json`` of an environment, reduced to what matching needs.

    Not a dataclass, nor are the other usage/ records: dataclasses (and inspect) were a fifth
    of an empty ``usage`` or ``clean`` (model/plainclass.py)."""

    # memos and slot are not part of the package's identity: not compared, not shown
    FIELDS = (
        "prefix",
        "meta_path",
        "name",
        "version",
        "build",
        "fn",
        "url",
        "channel",
        "source_dir",
        "link_type",
        "samples",
        "mtime",
    )
    __slots__ = (*FIELDS, "memos", "slot")

    def __init__(
        self,
        prefix: str,
        meta_path: str,
        name: str,
        version: str,
        build: str,
        fn: str | None,
        url: str | None,
        channel: str,
        source_dir: str | None,  # link.source, else extracted_package_dir
        link_type: str | None,
        samples: list[str],  # a few relative paths of regular files the package linked
        mtime: float,
        # remembered sample facts (rel -> (fingerprint, symlink target, {entry dir: same
        # inode})) and the index slot to store new ones in
        memos: dict | None = None,
        slot: list | None = None,
    ):
        self.prefix = prefix
        self.meta_path = meta_path
        self.name = name
        self.version = version
        self.build = build
        self.fn = fn
        self.url = url
        self.channel = channel
        self.source_dir = source_dir
        self.link_type = link_type
        self.samples = samples
        self.mtime = mtime
        self.memos = {} if memos is None else memos
        self.slot = slot

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "fn": self.fn,
            "url": self.url,
            "channel": self.channel,
            "linked_from": self.source_dir,
            "link_type": self.link_type,
        }


class EnvState(FieldsEq):
    FIELDS = ("env", "packages", "history_dists", "problems", "unsure", "unsure_all", "named")

    def __init__(
        self,
        env: Environment,
        packages: list[EnvPackage] | None = None,
        history_dists: set[str] | None = None,
        problems: list[str] | None = None,
        # What we could not read, so what the environment MAY use: dist -> why (a record that
        # is unreadable or invalid names its package by its file name), and, when even that is
        # not known (conda-meta unlistable, a record whose name is no dist), why it may use
        # anything.
        unsure: dict[str, str] | None = None,
        unsure_all: str | None = None,
        # verdict mode: (dist, record mtime) of the records matched by their names alone
        named: list[tuple[str, float]] | None = None,
    ):
        self.env = env
        self.packages = [] if packages is None else packages
        self.history_dists = set() if history_dists is None else history_dists
        self.problems = [] if problems is None else problems
        self.unsure = {} if unsure is None else unsure
        self.unsure_all = unsure_all
        self.named = [] if named is None else named


# --- reading environments ------------------------------------------------------------------------
_channels: dict[str | None, str] = {}


def _channel(channel: str | None, url: str | None) -> str:
    # 15,000 records name a handful of channels: parse each once
    if channel:
        name = _channels.get(channel)
        if name is None:
            name = _channels[channel] = channel_name(channel, None)
        return name
    return channel_name(None, url)


def normpath(path: str) -> str:
    # posixpath.normpath is pure Python before 3.12; conda writes normal paths already
    if path[:1] == "/" and "//" not in path and "/." not in path and path[-1:] != "/":
        return path
    return os.path.normpath(path)


def _reduce(dist: str, data) -> tuple | None:
    """The fields matching needs, as a plain tuple (what the remembered index stores)."""
    if not isinstance(data, dict):
        return None
    link = data.get("link")
    link = link if isinstance(link, dict) else {}
    source = link.get("source") or data.get("extracted_package_dir")
    ltype = link.get("type")
    if isinstance(ltype, int):
        ltype = LINK_TYPES.get(ltype, str(ltype))
    url = data.get("url")
    url = url if isinstance(url, str) else None
    fn = data.get("fn")
    fn = fn if isinstance(fn, str) else None
    channel = data.get("channel")
    name, version, build = data.get("name"), data.get("version"), data.get("build")
    if not (name and version and build):
        parts = split_dist(dist) or (dist, "", "")
        name, version, build = name or parts[0], version or parts[1], build or parts[2]
    return (
        str(name),
        str(version),
        str(build),
        fn or (url.rsplit("/", 1)[-1] if url else None),
        url,
        _channel(channel if isinstance(channel, str) else None, url),
        normpath(source) if isinstance(source, str) and source else None,
        ltype if isinstance(ltype, str) else None,
        sample_paths(data),
    )


def _package(prefix: str, meta_path: str, t: tuple, mtime: float) -> EnvPackage:
    return EnvPackage(
        prefix, meta_path, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], mtime
    )


def _read(name: str, dir_fd: int | None, path: str) -> tuple[bytes, os.stat_result]:
    fd = os.open(name, _O_FILE, dir_fd=dir_fd) if dir_fd is not None else os.open(path, _O_FILE)
    try:
        st = os.fstat(fd)
        want = st.st_size + 1
        raw = os.read(fd, want)
        if len(raw) == want:  # grew since fstat: read the rest
            chunks = [raw]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            raw = b"".join(chunks)
    finally:
        os.close(fd)
    return raw, st


def _racy(st: os.stat_result, now: float) -> bool:
    # ctime too: utime() can set an old mtime on a file written just now
    return now - max(st.st_mtime, st.st_ctime) <= statefile.RACY_SECONDS


def read_env_package(prefix: str, meta_path: str) -> EnvPackage | None:
    try:
        raw, st = _read(meta_path, None, meta_path)
        data = _decode_json(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    t = _reduce(os.path.basename(meta_path)[: -len(".json")], data)
    return None if t is None else _package(prefix, meta_path, t, st.st_mtime)


def _parse_history(text: str) -> set[str]:
    out: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if line[:1] not in ("+", "-"):
            continue
        dist = line[1:].rsplit("::", 1)[-1]
        dist, _ = strip_package_extension(dist)
        if split_dist(dist):
            out.add(dist)
    return out


def history_dists(prefix: str) -> set[str]:
    """``name-version-build`` of every package any revision of ``conda-meta/history`` names."""
    try:
        with open(os.path.join(prefix, "conda-meta", "history"), encoding="utf-8") as fh:
            return _parse_history(fh.read())
    except (OSError, UnicodeDecodeError):
        return set()


# Fingerprints are kept as bytes: one object per file in the remembered index, not a tuple of
# four or five ints (loading the index was a fifth of a repeated ``usage``).
_pack_fp = struct.Struct("<Qqqq").pack  # st_ino, st_size, st_mtime_ns, st_ctime_ns
_pack_sample_fp = struct.Struct("<QQIQq").pack  # st_dev, st_ino, st_mode, st_nlink, st_ctime_ns


def record_fp(st: os.stat_result) -> bytes | tuple[int, int, int, int]:
    """A file's fingerprint: it changes with any write (size, mtime, ctime) or replacement."""
    try:
        return _pack_fp(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except struct.error:  # a number beyond 64 bits (inode numbers on some file systems)
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sample_fp(st: os.stat_result) -> bytes | tuple[int, int, int, int, int]:
    """A sampled file's fingerprint: any link, unlink or rename of its inode changes ctime."""
    try:
        return _pack_sample_fp(st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_ctime_ns)
    except struct.error:
        return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_ctime_ns)


def read_environment(
    env: Environment,
    old: dict | None = None,
    new: dict | None = None,
    several: set[str] | frozenset[str] | None = None,
    history: bool = True,
) -> EnvState:
    """An environment's records and history; ``old``/``new``: its remembered index (env_index).

    ``several`` turns on the verdict mode (module docstring): the dists with several cached
    copies, whose records are matched in full; every other record that names itself and its
    package consistently only goes to ``state.named``. ``history=False``: ``conda-meta/history``
    is not read (``state.history_dists`` stays empty; what the index remembers of it is kept,
    it is checked against the file whenever it is used)."""
    old = old or {}
    new = {} if new is None else new
    state = EnvState(env)
    meta = os.path.join(env.prefix, "conda-meta")
    now = fsclock.now(env.prefix)
    try:
        meta_fd = os.open(meta, O_DIR)
    except FileNotFoundError:
        return state  # removed since it was found: it uses nothing any more
    except OSError as exc:
        why = f"cannot list {meta}: {exc.strerror or exc}"
        state.problems.append(why)
        state.unsure_all = why
        return state
    try:
        try:
            names = _listing(meta_fd, old, new, now)
        except OSError as exc:
            why = f"cannot list {meta}: {exc.strerror or exc}"
            state.problems.append(why)
            state.unsure_all = why
            return state
        old_recs = old.get("records") or {}
        new_recs: dict = {}
        new["records"] = new_recs
        packages = state.packages
        named = state.named
        # the racy rule (_racy), as one comparison per record: remembered only when both
        # times are older than this
        settled = now - statefile.RACY_SECONDS
        stat_, read_, open_, fstat, close = os.stat, os.read, os.open, os.fstat, os.close
        for name in names:
            dist = name[:-5]
            quick = several is not None and dist not in several
            cached = old_recs.get(name)
            if cached is not None:
                try:
                    st = stat_(name, dir_fd=meta_fd)
                except OSError:
                    st = None
                if st is not None and record_fp(st) == cached[0]:
                    t = cached[1]
                    if quick and (t is None or names_agree(dist, *t[:5], t[6])):
                        new_recs[name] = cached
                        named.append((dist, st.st_mtime))
                        continue
                    if t is not None:
                        slot = new_recs[name] = [cached[0], t, cached[2]]
                        pkg = _package(env.prefix, meta + "/" + name, t, st.st_mtime)
                        pkg.memos, pkg.slot = cached[2], slot
                        packages.append(pkg)
                        continue
            meta_path = meta + "/" + name
            try:
                if quick:
                    # _read, inline: this is the loop a first clean --unused spends its time in
                    fd = open_(name, _O_FILE, dir_fd=meta_fd)
                    try:
                        st = fstat(fd)
                        want = st.st_size + 1
                        raw = read_(fd, want)
                    finally:
                        close(fd)
                    if len(raw) == want:  # grew since fstat: read it whole
                        raw, st = _read(name, meta_fd, meta_path)
                    data = _decode_json(raw.decode("utf-8"))
                    if type(data) is dict and _data_agrees(dist, data):
                        named.append((dist, st.st_mtime))
                        if st.st_mtime < settled and st.st_ctime < settled:
                            # checked by its names only: a full scan reads it again
                            new_recs[name] = [record_fp(st), None, {}]
                        continue
                else:
                    raw, st = _read(name, meta_fd, meta_path)
                    data = _decode_json(raw.decode("utf-8"))
                t = _reduce(dist, data)
                why = "not a conda-meta record"
            except FileNotFoundError:
                continue  # uninstalled while we read: no longer used
            except OSError as exc:
                t, why = None, f"cannot read it: {exc.strerror or exc}"
            except (ValueError, RecursionError):
                t, why = None, "not valid JSON"
            if t is None:
                state.problems.append(f"{meta_path}: unreadable record, skipped ({why})")
                _unsure_of(state, dist, f"{meta_path}: {why}")
                continue
            pkg = _package(env.prefix, meta_path, t, st.st_mtime)
            if not _racy(st, now):
                pkg.slot = new_recs[name] = [record_fp(st), t, {}]
            packages.append(pkg)
        if history:
            state.history_dists = _history(meta_fd, meta, old, new, now)
        elif "history" in old:
            new["history"] = old["history"]  # unchecked here; checked whenever it is used
    finally:
        os.close(meta_fd)
    return state


def _unsure_of(state: EnvState, dist: str, why: str) -> None:
    """The package a record we cannot read is for, by its file name (conda names each record
    ``<name>-<version>-<build>.json``); when the name says nothing, every package."""
    if split_dist(dist):
        state.unsure[dist] = why
    elif state.unsure_all is None:
        state.unsure_all = why


def names_agree(dist, name, version, build, fn, url, source) -> bool:
    """Whether a package's record names it ``dist`` everywhere matching looks: its own fields,
    its file name, its URL and the directory it was linked from (each absent, or naming it).
    Strict (conda's own spelling, extensions in lower case): what it refuses goes the full way."""
    if [name, version, build] != dist.rsplit("-", 2):
        return False
    if fn and fn != dist + ".conda" and fn != dist + ".tar.bz2":
        return False
    if url:
        if not isinstance(url, str):
            return False
        base = url.split("#", 1)[0].rsplit("/", 1)[-1]
        if base != dist + ".conda" and base != dist + ".tar.bz2":
            return False
    return not source or (isinstance(source, str) and normpath(source).rsplit("/", 1)[-1] == dist)


def _data_agrees(dist: str, data: dict) -> bool:
    link = data.get("link")
    link = link if isinstance(link, dict) else {}
    return names_agree(
        dist,
        data.get("name"),
        data.get("version"),
        data.get("build"),
        data.get("fn"),
        data.get("url"),
        link.get("source") or data.get("extracted_package_dir"),
    )


def _listing(meta_fd: int, old: dict, new: dict, now: float) -> list[str]:
    """The ``*.json`` names of conda-meta; reused while the directory is unchanged (any create,
    delete or rename in it updates its mtime)."""
    st = os.fstat(meta_fd)
    key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    cached = old.get("listing")
    if cached is not None and cached[0] == key:
        names = cached[1]
    else:
        names = sorted(n for n in os.listdir(meta_fd) if n.endswith(".json"))
    if not _racy(st, now):
        new["listing"] = (key, names)
    return names


def _history(meta_fd: int, meta: str, old: dict, new: dict, now: float) -> set[str]:
    cached = old.get("history")
    try:
        st = os.stat("history", dir_fd=meta_fd) if cached is not None else None
        if st is not None and cached[0] == record_fp(st):
            dists = set(cached[1])
        else:
            raw, st = _read("history", meta_fd, meta + "/history")
            dists = _parse_history(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError):
        return set()
    if not _racy(st, now):
        new["history"] = (record_fp(st), sorted(dists))
    return dists
