"""conda's version order and version specs, for when conda is not importable.

The rules are conda's ``VersionOrder`` and ``VersionSpec`` (conda/models/version.py), so that
``conda-cache list "numpy>=2"`` picks the same entries with or without conda, and "newest" means
the same thing in ``clean --keep``. tests/test_versions.py checks every pair of conda's own
published version test vectors and of a generated corpus against conda's implementation.

A version is parsed into an epoch, a release and a local part (``1!2.3b1+local``). The release and
the local part are lists of components split at ``.`` and ``_``; each component is a run of
numerals and non-numerals. In comparisons a string is smaller than a number, ``dev`` is smaller
than every other string (conda spells it ``DEV``), ``post`` is greater than every number, and a
missing subcomponent counts as the number 0 (so ``1.1 == 1.1.0``, ``1.1a < 1.1``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from itertools import zip_longest

_CHECK_RE = re.compile(r"^[*.+!_0-9a-z]+$")
_SPLIT_RE = re.compile(r"([0-9]+|[*]+|[^0-9*]+)")

# Atoms are tagged so that plain tuple comparison orders them the way conda does:
# any string < any number < post.
_STR, _NUM, _POST = 0, 1, 2
_FILL = (_NUM, 0)


class InvalidVersion(ValueError):
    """Not a version (or version spec) conda accepts; the message says why."""

    def __init__(self, text: str, reason: str):
        super().__init__(f"invalid version {text!r}: {reason}")
        self.text = text
        self.reason = reason


def _atoms(component: str, original: str) -> tuple:
    runs = _SPLIT_RE.findall(component)
    if not runs:
        raise InvalidVersion(original, "empty version component")
    out = [] if component[0].isdigit() else [_FILL]  # keeps 1.1.a1 == 1.1.0a1
    for run in runs:
        if run.isdigit():
            out.append((_NUM, int(run)))
        elif run == "post":
            out.append((_POST, 0))
        elif run == "dev":
            out.append((_STR, "DEV"))
        else:
            out.append((_STR, run))
    return tuple(out)


@functools.lru_cache(maxsize=16384)
def parse_version(text: str) -> tuple[tuple, tuple]:
    """``(release, local)``: each a tuple of components, each a tuple of tagged atoms; the
    epoch is the release's first component. Raises :class:`InvalidVersion`."""
    version = text.strip().lower()
    if not version:
        raise InvalidVersion(text, "empty version string")
    if not _CHECK_RE.match(version):
        # conda reads 1.0-2 as 1.0_2 when the version has no underscore of its own
        if "-" in version and "_" not in version:
            version = version.replace("-", "_")
        if not _CHECK_RE.match(version):
            raise InvalidVersion(text, "invalid character(s)")
    parts = version.split("!")
    if len(parts) > 2:
        raise InvalidVersion(text, "duplicated epoch separator '!'")
    if len(parts) == 2 and not parts[0].isdigit():
        raise InvalidVersion(text, "epoch must be an integer")
    epoch = parts[0] if len(parts) == 2 else "0"
    main, *local = parts[-1].split("+")
    if len(local) > 1:
        raise InvalidVersion(text, "duplicated local version separator '+'")
    if not main:
        raise InvalidVersion(text, "missing version before local version separator '+'")
    if main.endswith("_"):
        # openssl's convention: 1.0.1_ sorts before 1.0.1a
        components = main[:-1].replace("_", ".").split(".")
        components[-1] += "_"
    else:
        components = main.replace("_", ".").split(".")
    release = tuple(_atoms(c, text) for c in [epoch, *components])
    local_parts = local[0].replace("_", ".").split(".") if local else []
    return release, tuple(_atoms(c, text) for c in local_parts)


def is_valid_version(text: str) -> bool:
    try:
        parse_version(text)
    except InvalidVersion:
        return False
    return True


def _cmp_parts(a: tuple, b: tuple) -> int:
    for ca, cb in zip_longest(a, b, fillvalue=()):
        for x, y in zip_longest(ca, cb, fillvalue=_FILL):
            if x != y:
                return -1 if x < y else 1
    return 0


def _compare_parsed(a: tuple[tuple, tuple], b: tuple[tuple, tuple]) -> int:
    return _cmp_parts(a[0], b[0]) or _cmp_parts(a[1], b[1])


def version_compare(a: str, b: str) -> int:
    """-1, 0 or 1, as conda's ``VersionOrder`` orders ``a`` and ``b``. A version conda rejects
    sorts before every valid one (and by its text among the invalid), so that listing a cache
    with a damaged record never fails."""
    pa, pb = _parsed_or_none(a), _parsed_or_none(b)
    if pa is None or pb is None:
        if pa is None and pb is None:
            return (a > b) - (a < b)
        return -1 if pa is None else 1
    return _compare_parsed(pa, pb)


def _parsed_or_none(text: str):
    try:
        return parse_version(text)
    except InvalidVersion:
        return None


def version_sort_keys(versions: Iterable[str]) -> dict[str, tuple]:
    """A directly comparable key per distinct version, ordered like :func:`version_compare`:
    every component padded to one width, so sorting compares tuples in C, not Python calls."""
    parsed = {v: _parsed_or_none(v) for v in set(versions)}
    valid = [p for p in parsed.values() if p is not None]
    inner = max((len(c) for p in valid for part in p for c in part), default=0)
    n_release = max((len(p[0]) for p in valid), default=0)
    n_local = max((len(p[1]) for p in valid), default=0)

    def pad(part: tuple, n: int) -> tuple:
        padded = tuple(c + (_FILL,) * (inner - len(c)) for c in part)
        return padded + ((_FILL,) * inner,) * (n - len(part))

    keys = {}
    for v, p in parsed.items():
        if p is None:
            keys[v] = (0, v, (), ())
        else:
            keys[v] = (1, "", pad(p[0], n_release), pad(p[1], n_local))
    return keys


def _eq_parts(a: tuple, b: tuple) -> bool:
    return _cmp_parts(a, b) == 0


def version_startswith(text: str, prefix: str) -> bool:
    """conda's ``VersionOrder.startswith``: what ``1.2.*`` and ``=1.2`` mean."""
    return _startswith(parse_version(text), parse_version(prefix))


def _startswith(v: tuple[tuple, tuple], p: tuple[tuple, tuple]) -> bool:
    if p[1]:
        if not _eq_parts(v[0], p[0]):
            return False
        mine, theirs = v[1], p[1]
    else:
        mine, theirs = v[0], p[0]
    last = len(theirs) - 1
    if not _eq_parts(mine[:last], theirs[:last]):
        return False
    comp = mine[last] if len(mine) > last else ()
    want = theirs[last]
    k = len(want) - 1
    if not _eq_parts((comp[:k],), (want[:k],)):
        return False
    have = comp[k] if len(comp) > k else _FILL
    if want[k][0] == _STR:
        return have[0] == _STR and have[1].startswith(want[k][1])
    return have == want[k]


# --- version specs -------------------------------------------------------------------------

_TOKENS_RE = re.compile(r"\s*\^[^$]*[$]|\s*[()|,]|[^()|,]+")
_RELATION_RE = re.compile(r"^(=|==|!=|<=|>=|<|>|~=)(?![=<>!~])(\S+)$")
_NEEDS_TREE_RE = re.compile(r".*[()|,^$]")

Matcher = Callable[[str], bool]


def _tree(spec: str):
    """``"1.2|(>3,<4)"`` -> ``('|', '1.2', (',', '>3', '<4'))``; ``,`` binds tighter than ``|``."""
    output: list = []
    stack: list[str] = []

    def reduce(stop: str) -> None:
        while stack and stack[-1] not in stop:
            if len(output) < 2:
                raise InvalidVersion(spec, "cannot join single expression")
            op = stack.pop()
            right, left = output.pop(), output.pop()
            right = right[1:] if right[0] == op else (right,)
            left = left[1:] if left[0] == op else (left,)
            output.append((op, *left, *right))

    for raw in _TOKENS_RE.findall(f"({spec})"):
        token = raw.strip()
        if token == "|":
            reduce("(")
            stack.append("|")
        elif token == ",":
            reduce("|(")
            stack.append(",")
        elif token == "(":
            stack.append("(")
        elif token == ")":
            reduce("(")
            if not stack or stack[-1] != "(":
                raise InvalidVersion(spec, "expression must start with '('")
            stack.pop()
        else:
            output.append(token)
    if stack:
        raise InvalidVersion(spec, "unbalanced parentheses or operators")
    if not output:
        raise InvalidVersion(spec, "unable to determine version from spec")
    return output[0]


def _relation(op: str, target: tuple[tuple, tuple], target_text: str) -> Matcher:
    def cmp(v: str) -> int:
        return _compare_parsed(parse_version(v), target)

    if op == "==":
        return lambda v: cmp(v) == 0
    if op == "!=":
        return lambda v: cmp(v) != 0
    if op == "<":
        return lambda v: cmp(v) < 0
    if op == "<=":
        return lambda v: cmp(v) <= 0
    if op == ">":
        return lambda v: cmp(v) > 0
    if op == ">=":
        return lambda v: cmp(v) >= 0
    if op == "=":
        return lambda v: _startswith(parse_version(v), target)
    if op == "!=startswith":
        return lambda v: not _startswith(parse_version(v), target)
    # ~=: at least the target, and within its release series
    # (conda, too, only finds out when matching that ~=1 has no series)
    series = ".".join(target_text.split(".")[:-1])
    return lambda v: cmp(v) >= 0 and _startswith(parse_version(v), parse_version(series))


def _leaf(spec: str) -> Matcher:
    text = spec.strip()
    if not text:
        raise InvalidVersion(spec, "empty version spec")
    if text[0] == "^" or text[-1] == "$":
        if text[0] != "^" or text[-1] != "$":
            raise InvalidVersion(text, "regex specs must start with '^' and end with '$'")
        try:
            rx = re.compile(text)
        except re.error as exc:
            raise InvalidVersion(text, f"bad regular expression: {exc}") from None
        return lambda v: bool(rx.match(v))
    if text[0] in "=<>!~":
        m = _RELATION_RE.match(text)
        if m is None:
            raise InvalidVersion(text, "invalid operator")
        op, target = m.groups()
        if target.endswith(".*"):
            if op == "~=":
                raise InvalidVersion(text, "invalid operator with '.*'")
            target = target[:-2]  # conda ignores a .* after <, <=, >, ==, >=
            if op == "!=":
                op = "!=startswith"
        return _relation(op, parse_version(target), target)
    if text == "*":
        return lambda v: True
    if "*" in text.rstrip("*"):
        body = text.replace(".", r"\.").replace("+", r"\+").replace("*", r".*")
        rx = re.compile(rf"^(?:{body})$")
        return lambda v: bool(rx.match(v))
    if text.endswith("*"):
        prefix = text.rstrip("*").rstrip(".")
        return _relation("=", parse_version(prefix), prefix)
    if "@" in text:
        return lambda v: v == text
    return _relation("==", parse_version(text), text)


def _build(node) -> Matcher:
    if isinstance(node, str):
        return _leaf(node)
    parts = [_build(n) for n in node[1:]]
    if node[0] == "|":
        return lambda v: any(p(v) for p in parts)
    return lambda v: all(p(v) for p in parts)


@functools.lru_cache(maxsize=1024)
def version_spec(spec: str) -> Matcher:
    """A predicate on version strings for a conda version spec (``>=1.2,<2|3.*``), as conda's
    ``VersionSpec(spec).match``. Raises :class:`InvalidVersion` for a spec conda rejects; the
    predicate raises it for a version conda could not parse where an order is needed."""
    node = _tree(spec) if _NEEDS_TREE_RE.match(spec) else spec
    return _build(node)


def version_matches(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies ``spec``; a version conda cannot parse matches nothing
    that needs an order."""
    matcher = version_spec(spec)
    try:
        return matcher(version)
    except InvalidVersion:
        return False
