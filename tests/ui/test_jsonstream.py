"""The streamed JSON writer gives exactly json.dumps(indent=2, ensure_ascii=False)."""

from __future__ import annotations

import json
import random

import pytest

from conda_cache_plus.ui import jsonstream
from conda_cache_plus.ui.output import _json_default


class _Obj:
    def to_json(self):
        return {"kind": "obj", "items": (1, 2.5, None)}


SCALARS = [
    "", "plain", "ünïcödé", "quote\" back\\slash", "ctl\x00\x1f\x7f", "\u2028\u2029", "😀",
    0, -1, 10**40, True, False, None, 0.0, -0.0, 1.5, 1e300, -2.5e-308, float("inf"),
    float("-inf"),
]  # fmt: skip


def _doc(rng: random.Random, depth: int):
    pick = rng.random()
    if depth > 4 or pick < 0.4:
        return rng.choice(SCALARS)
    if pick < 0.55:
        return [_doc(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    if pick < 0.65:
        return tuple(_doc(rng, depth + 1) for _ in range(rng.randrange(0, 3)))
    if pick < 0.7:
        return _Obj()
    if pick < 0.72:
        return {"set"}
    keys = ["a", "ü", "x\ny", 1, 2.5, True, False, None, ""]
    return {rng.choice(keys): _doc(rng, depth + 1) for _ in range(rng.randrange(0, 6))}


def _reference(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)


@pytest.mark.parametrize("seed", range(200))
def test_same_text_as_json_dumps(seed):
    data = _doc(random.Random(seed), 0)
    assert jsonstream.dumps(data, _json_default) == _reference(data)


def test_written_in_chunks_that_join_to_the_document():
    data = {"entries": [{"name": f"pkg{i}", "n": i, "used_by": []} for i in range(5000)]}
    chunks: list[str] = []
    jsonstream.write(data, chunks.append, _json_default)
    assert len(chunks) > 1  # streamed, not built whole
    assert "".join(chunks) == _reference(data)


def test_nan_and_circular_like_json():
    assert jsonstream.dumps([float("nan")], _json_default) == _reference([float("nan")])
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError):
        jsonstream.dumps(loop, _json_default)


def test_rows_are_made_while_written_and_encode_as_a_list():
    made = []

    def make(i):
        made.append(i)
        return {"n": i}

    data = {"rows": jsonstream.Rows(range(3), make), "empty": jsonstream.Rows([], make)}
    as_list = {"rows": [{"n": 0}, {"n": 1}, {"n": 2}], "empty": []}
    chunks: list[str] = []
    jsonstream.write(data, chunks.append, _json_default)
    assert "".join(chunks) == _reference(as_list)
    assert made == [0, 1, 2]
    # what the conda path does: the C encoder, through the default hook
    assert json.loads(json.dumps(data, default=_json_default)) == as_list


@pytest.mark.parametrize(
    "data, plain",
    [
        ({"a": [1, 2.5, None, True, "x", (3, 4)], "b": {"c": []}}, True),
        ([], True),
        ("text", True),
        ({"a": {1: "int key"}}, False),
        ({"a": [{"b": {1, 2}}]}, False),
        ({"a": jsonstream.Rows([1], str)}, False),
        ({"a": [type("Str", (str,), {})("x")]}, False),  # a subclass may encode differently
    ],
)
def test_is_plain(data, plain):
    assert jsonstream.is_plain(data) is plain
    if plain:  # what conda's encoder is given unchanged: the same as the round trip made it
        assert json.dumps(data, indent=2) == json.dumps(json.loads(json.dumps(data)), indent=2)
