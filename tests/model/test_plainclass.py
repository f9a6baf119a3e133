"""The record classes a verb's start-up imports behave as the dataclasses they replaced."""

from __future__ import annotations

import copy
import pickle

import pytest

from conda_cache_plus.layouts.pixi import CacheDir
from conda_cache_plus.layouts.rattler_cache import Sidecar
from conda_cache_plus.layouts.scan_result import BrokenEntry, Leftover, ScanResult
from conda_cache_plus.model.cache_paths import CacheLayout
from conda_cache_plus.model.sizes import TreeSize
from conda_cache_plus.ui.output import Run

FROZEN = [CacheLayout("/c/pkgs"), CacheDir("/c/rattler", "RATTLER_CACHE_DIR"), Sidecar(3, "ab")]
MUTABLE = [
    TreeSize(apparent=1, disk=4096, files=1),
    Leftover("/c/pkgs/x.partial", "x.partial", "partial", 10),
    BrokenEntry("/c/pkgs/x-1-0", "x-1-0", "no info/index.json"),
    ScanResult("/c/pkgs", layout="flat", problems=["p"]),
    Run(quiet=True, pkgs_dirs=["/c/pkgs"]),
]


@pytest.mark.parametrize("obj", FROZEN + MUTABLE, ids=lambda o: type(o).__name__)
def test_equal_by_fields_and_survive_pickle_and_copy(obj):
    assert pickle.loads(pickle.dumps(obj)) == obj
    assert copy.deepcopy(obj) == obj and copy.copy(obj) == obj
    assert repr(obj).startswith(f"{type(obj).__name__}(")
    assert obj != object()


@pytest.mark.parametrize("obj", FROZEN, ids=lambda o: type(o).__name__)
def test_frozen_ones_are_hashable_and_refuse_assignment(obj):
    twin = pickle.loads(pickle.dumps(obj))
    assert hash(twin) == hash(obj) and len({obj, twin}) == 1
    with pytest.raises(AttributeError):
        obj.root = "/elsewhere"


@pytest.mark.parametrize("obj", MUTABLE, ids=lambda o: type(o).__name__)
def test_mutable_ones_are_not_hashable(obj):
    with pytest.raises(TypeError):
        hash(obj)


def test_fields_differ_means_unequal_and_defaults_are_not_shared():
    assert CacheLayout("/a") != CacheLayout("/b")
    a, b = ScanResult("/p"), ScanResult("/p")
    a.records.append("r")
    assert b.records == [] and a != b
    assert TreeSize().errors is not TreeSize().errors
