"""read_json: the scan's reader gives json.loads's result or json.loads's error, on every input."""

from __future__ import annotations

import json

import pytest

from conda_cache_plus.layouts.scan_result import read_json

DOCUMENTS = [
    b'{"name": "a", "version": "1"}',
    b'  {"name": "a"}',  # leading white space: json.loads accepts it
    b'{"name": "a"}\n\t \r',
    b'{"name": "a"} x',  # extra data
    b'{"name": "a"} {}',
    b"\xef\xbb\xbf{}",  # a BOM
    b"[1, 2]",
    b"123",
    b"123abc",
    b"NaN",
    b'"text"',
    b"",
    b"   ",
    b'{"a": }',
    b'{"a": 1,}',
    b"[" * 100000 + b"]" * 100000,  # nested too deeply
    b"\xff\xfe",  # not UTF-8
    b'{"a": "\\ud800"}',
]


def _expected(raw: bytes):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not utf-8"
    try:
        return json.loads(text)
    except ValueError as exc:
        return f"({exc.msg} at byte {exc.pos})"
    except RecursionError:
        return "nested too deeply"


@pytest.mark.parametrize("raw", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_read_json_agrees_with_json_loads(tmp_path, raw):
    path = tmp_path / "doc.json"
    path.write_bytes(raw)
    data, st, err = read_json(str(path))
    assert st is not None and st.st_size == len(raw)
    want = _expected(raw)
    if err is None:
        assert data == want or (data != data and want != want)  # NaN is not equal to itself
    else:
        assert data is None
        key = {"not utf-8": "not valid UTF-8", "nested too deeply": "nested too deeply"}
        assert key.get(want, want) in err
