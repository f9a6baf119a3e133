"""Text for people: the width to fit, elided cells, aligned tables, wrapped paragraphs, colour."""

from __future__ import annotations

import os
import sys

# The console of the running verb: colour is for people at a terminal, never for plain or json.
_CONSOLE = "classic"

# Default tables and summaries fit in this many columns (a terminal's default width); --json
# carries whatever a cell had to give up.
WIDTH = 80


def set_console(console: str) -> None:
    global _CONSOLE
    _CONSOLE = console


def use_color() -> bool:
    return (
        _CONSOLE not in ("plain", "json")
        and sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )


def width() -> int:
    """The columns to fit: the terminal's when stdout is one (``COLUMNS`` wins), else 80."""
    return fit_width() or WIDTH


def fit_width() -> int | None:
    """The columns a table must fit: ``COLUMNS`` (when set) or the terminal's; None when stdout
    is no terminal (a pipe, a file): piped output is never cut, a reader may need every cell."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) >= 20:
        return int(env)
    try:
        if sys.stdout.isatty():
            return max(20, os.get_terminal_size(sys.stdout.fileno()).columns)
    except (OSError, ValueError, AttributeError):
        pass
    return None


# -- what may reach a terminal ---------------------------------------------------------------------
# Names come from the disk (another tool, or anyone who may write a shared cache, chose them) and
# from channels. A terminal acts on control characters: escape sequences clear, recolour or retitle
# it, a carriage return overwrites the line. Every human-readable line is passed through
# printable(): C0 and C1 controls, DEL, the bidi and invisible format characters (which reorder or
# hide what is shown) and bytes that were not UTF-8 (Python's surrogateescape form, U+DC80-DCFF)
# are shown escaped, as Python writes them: \x1b, \u202e, and \xff for the byte 0xFF. Line ends,
# tabs and the bold on/off of our table headings pass (harmless whoever wrote them).
UNSAFE_CHARS = (
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
_patterns: tuple | None = None


def _compiled() -> tuple:
    """(unsafe, unsafe in a name, our bold codes): compiled when something needs escaping
    (compiling the three costs an empty ``info`` 9 M instructions, a sixth of its run)."""
    global _patterns
    if _patterns is None:
        import re

        _patterns = (
            re.compile(UNSAFE_CHARS),
            re.compile(UNSAFE_CHARS[:-1] + "\t\n]"),
            re.compile("(\x1b\\[[01]m)"),
        )
    return _patterns


def _nothing_to_escape(text: str) -> bool:
    # str.isprintable() is False for every character escaped here (and for line ends, tabs and
    # a few harmless ones, which then go the long way)
    return text.isprintable() or (
        "\n" in text and all(line.isprintable() for line in text.split("\n"))
    )


def _escape(match) -> str:
    o = ord(match.group())
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"  # a byte that was not UTF-8, shown as the byte
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}"


def printable(text: str) -> str:
    """``text`` with everything a terminal would act on escaped, but line ends and tabs."""
    if _nothing_to_escape(text):
        return text
    unsafe, _name, our_codes = _compiled()
    if not unsafe.search(text):
        return text
    parts = our_codes.split(text)
    parts[::2] = [unsafe.sub(_escape, part) for part in parts[::2]]
    return "".join(parts)


def shown(name: str) -> str:
    """A name on one line: as :func:`printable`, line ends and tabs escaped too."""
    if name.isprintable():
        return name
    return _compiled()[1].sub(_escape, name)


def shorten(text: str, n: int) -> str:
    """``text`` in at most ``n`` characters, the middle elided (the ends tell entries apart)."""
    if len(text) <= n:
        return text
    if n <= 1:
        return text[:n]
    head = (n - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (n - 1 - head) :]


def table(
    headers: list[str],
    rows: list[list[str]],
    right: set[int] | None = None,
    *,
    shrink: tuple[int, ...] = (),
    indent: int = 0,
    max_width: int | None = None,
    key: int = 0,
) -> str:
    """Aligned columns; ``right`` holds the indexes of right-aligned (numeric) columns.

    At a terminal narrower than the table (``COLUMNS`` counts as one), the columns in ``shrink``
    give up characters (widest first, down to their heading), their cells elided in the middle;
    if that is not enough, each row becomes a block: its ``key`` cell whole, then one
    ``Heading: cell`` line per other column. Piped output is never cut.
    """
    right = right or set()
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fit = max_width or fit_width()
    if fit is None:
        shrink = ()
        limit = sum(widths) + 2 * len(widths)
    else:
        limit = fit - indent
    excess = sum(widths) + 2 * (len(widths) - 1) - limit
    while excess > 0 and shrink:
        floor = {i: max(len(headers[i]), 8) for i in shrink if i < len(widths)}
        candidates = [i for i in floor if widths[i] > floor[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    if excess > 0:
        return _blocks(headers, rows, key, limit)

    def fmt(row: list[str]) -> str:
        cells = [
            shorten(cell, widths[i]).rjust(widths[i])
            if i in right
            else shorten(cell, widths[i]).ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    head = fmt(headers)
    if use_color():
        head = f"\033[1m{head}\033[0m"
    return "\n".join([head, *(fmt(r) for r in rows)])


def _blocks(headers: list[str], rows: list[list[str]], key: int, limit: int) -> str:
    """A table too wide for the terminal, one block per row: nothing is cut, which row is
    which stays plain (its key cell first, whole), and the other cells wrap under it."""
    out = []
    for row in rows:
        if row[key]:  # a row without one continues the block above
            out.append(row[key])
        for i, cell in enumerate(row):
            if i == key or not cell or not headers[i]:
                continue
            out.append(wrap(f"  {headers[i]}: {cell}", "    ", max_width=max(limit, 20)))
    return "\n".join(out)


def wrap(text: str, indent: str = "", max_width: int | None = None) -> str:
    """A summary sentence broken at ", " / "; " / spaces to fit; continuation lines indented."""
    import textwrap

    return (
        "\n".join(
            textwrap.wrap(
                text,
                width=max_width or width(),
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
        or text
    )
