"""``json.dumps(data, indent=2, ensure_ascii=False, default=...)``, written as it is produced.

The standard library encodes with ``indent`` in pure Python, one generator step per token, and
builds the whole document in memory before a byte is written. Every verb's ``--json`` is
indented, and ``list``/``usage``/``verify`` at 10⁵ entries make documents of hundreds of MB.
:func:`write` produces exactly the same text (tests/ui/test_jsonstream.py compares it with
``json.dumps`` on generated documents) about twice as fast, and hands it to ``write`` in chunks
of about 64 KiB, so memory holds the data but never the whole text.

One difference, on purpose: the output is always valid UTF-8. A name or path that is not UTF-8
(bytes another tool wrote) is read as Python's surrogateescape form, each undecodable byte 0xNN
as the lone surrogate U+DCNN, which json.dumps(ensure_ascii=False) would write raw. Here it is
the escape ``\\udcNN``, as conda's own JSON writer (ensure_ascii) writes it, and the bytes come
back exactly (Python: ``os.fsencode(json.loads(text)[...])``).
"""

from __future__ import annotations

try:  # CPython's C encoder, without importing the json package (its decoder, its patterns)
    from _json import encode_basestring
except ImportError:
    from json.encoder import encode_basestring

TYPE_CHECKING = False  # typing costs a start-up more than this whole module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_INF = float("inf")
_float_repr = float.__repr__
_int_repr = int.__repr__
CHUNK = 1 << 16


def _escape_surrogate(m) -> str:
    return f"\\u{ord(m.group()):04x}"


def _string(s: str) -> str:
    """``s`` as a JSON string that is valid UTF-8 (see the module doc)."""
    out = encode_basestring(s)
    if s.isascii():
        return out
    try:
        out.encode("utf-8")  # fails on a lone surrogate, as the writer would
    except UnicodeEncodeError:
        import re  # only a name that was not UTF-8 needs it

        return re.sub("[\ud800-\udfff]", _escape_surrogate, out)
    return out


def _float(o: float) -> str:
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return _float_repr(o)


def _key(k: Any) -> str:
    # the conversions json.dumps applies to non-str keys (sort_keys=False, skipkeys=False)
    if isinstance(k, str):
        return k
    if isinstance(k, float):
        return _float(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return _int_repr(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")


class Rows:
    """A list in a ``--json`` document whose items are made one at a time as they are written
    (a ``list --json`` row per cache entry), so the document never holds them all. Anything
    else that encodes it (``json.dumps(default=...)``) gets the list from :meth:`to_json`."""

    __slots__ = ("items", "make")

    def __init__(self, items, make: Callable[[Any], Any]):
        self.items = items
        self.make = make

    def __iter__(self):
        return map(self.make, self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_json(self) -> list:
        return list(self)


def write(data: Any, out: Callable[[str], object], default: Callable[[Any], Any]) -> None:
    """Write ``data`` as ``json.dumps(data, indent=2, ensure_ascii=False, default=default)``
    would, through ``out`` (e.g. ``sys.stdout.write``), in chunks."""
    parts: list[str] = []
    append = parts.append
    size = 0
    markers: set[int] = set()

    def flush() -> None:
        nonlocal size
        if parts:
            out("".join(parts))
            parts.clear()
        size = 0

    def enter(o: Any) -> int:
        mark = id(o)
        if mark in markers:  # as json.dumps(check_circular=True)
            raise ValueError("Circular reference detected")
        markers.add(mark)
        return mark

    def enc(o: Any, level: int) -> None:
        nonlocal size
        t = type(o)
        if t is str:
            append(_string(o))
        elif o is None:
            append("null")
        elif o is True:
            append("true")
        elif o is False:
            append("false")
        elif t is int:
            append(_int_repr(o))
        elif t is float:
            append(_float(o))
        elif t is list or t is tuple or t is Rows:
            if not len(o):
                append("[]")
                return
            mark = enter(o)
            nl = "\n" + "  " * (level + 1)
            append("[" + nl)
            first = True
            for v in o:
                if first:
                    first = False
                else:
                    append("," + nl)
                enc(v, level + 1)
                size += 1
                if size >= 512:
                    flush()
            append("\n" + "  " * level + "]")
            markers.discard(mark)
        elif t is dict:
            if not o:
                append("{}")
                return
            mark = enter(o)
            nl = "\n" + "  " * (level + 1)
            append("{" + nl)
            first = True
            for k, v in o.items():
                if first:
                    first = False
                else:
                    append("," + nl)
                append(_string(k if type(k) is str else _key(k)) + ": ")
                enc(v, level + 1)
            append("\n" + "  " * level + "}")
            markers.discard(mark)
        elif isinstance(o, str):
            append(_string(o))
        elif isinstance(o, int):  # bool is handled above by identity
            append(_int_repr(o))
        elif isinstance(o, float):
            append(_float(o))
        elif isinstance(o, (list, tuple)):
            enc(list(o), level)
        elif isinstance(o, dict):
            enc(dict(o), level)
        else:
            mark = enter(o)
            enc(default(o), level)
            markers.discard(mark)

    enc(data, 0)
    flush()


_SCALARS = frozenset((str, int, float, bool, type(None)))


def is_plain(o: Any) -> bool:
    """Whether ``o`` holds only what json encodes without a ``default``: dicts with str keys,
    lists, tuples, str, int, float, bool and None (subclasses excepted). Such data needs no
    conversion before another JSON encoder (conda's reporter) sees it."""
    t = type(o)
    if t is dict:
        for k in o:
            if type(k) is not str:
                return False
        values = o.values()
    elif t is list or t is tuple:
        values = o
    else:
        return t in _SCALARS
    scalars = _SCALARS
    for v in values:  # noqa: SIM110 -- all() over a generator takes twice as long here
        if type(v) not in scalars and not is_plain(v):
            return False
    return True


def dumps(data: Any, default: Callable[[Any], Any]) -> str:
    parts: list[str] = []
    write(data, parts.append, default)
    return "".join(parts)
