"""ui/text's escaping: the shortcut that skips the patterns never lets an unsafe character by."""

from __future__ import annotations

import re
import sys

from conda_cache_plus.ui import text


def unsafe_characters():
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    return re.findall(text.UNSAFE_CHARS, every)


def test_every_unsafe_character_is_not_printable():
    # printable() and shown() return their text untouched when str.isprintable() says so
    unsafe = unsafe_characters()
    assert len(unsafe) > 2000  # the class as written: controls, bidi, invisible, surrogates
    assert not [c for c in unsafe if c.isprintable()]


def test_escaping_with_and_without_the_shortcut():
    assert text.printable("zlib-1.3.1-h4ab18f5_1") == "zlib-1.3.1-h4ab18f5_1"
    assert text.printable("two\nlines\tand a tab") == "two\nlines\tand a tab"
    assert text.printable("a\x1b[2Jb\u202ec\udcff") == "a\\x1b[2Jb\\u202ec\\xff"
    assert text.printable("\x1b[1mhead\x1b[0m\nrow\x07") == "\x1b[1mhead\x1b[0m\nrow\\x07"
    assert text.printable("caf\u00e9 \u00a0nbsp") == "caf\u00e9 \u00a0nbsp"  # not printable, safe
    assert text.shown("name") == "name"
    assert text.shown("two\nlines\tx\x1b") == "two\\x0alines\\x09x\\x1b"
