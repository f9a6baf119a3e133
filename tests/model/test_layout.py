"""Names and paths: nothing outside the cache can be named."""

from __future__ import annotations

import pytest

from conda_cache_plus.model.cache_paths import CacheLayout
from conda_cache_plus.model.filenames import (
    leftover_kind,
    package_extension,
    split_dist,
    strip_package_extension,
)
from conda_cache_plus.model.records import channel_name


def test_extensions():
    assert package_extension("a-1-0.conda") == ".conda"
    assert package_extension("a-1-0.TAR.BZ2") == ".tar.bz2"
    assert package_extension("a-1-0.whl") is None
    assert strip_package_extension("a-1-0.tar.bz2") == ("a-1-0", ".tar.bz2")


@pytest.mark.parametrize(
    "name, kind",
    [
        ("a.conda.partial", "partial"),
        ("a-1-0.c~", "hold"),
        ("x.conda_trash", "trash"),
        ("y.mamba_trash", "trash"),
        ("z.lock", "lock"),
        ("a-1-0", None),
    ],
)
def test_leftovers(name, kind):
    assert leftover_kind(name) == kind


def test_split_dist():
    assert split_dist("python-dateutil-2.9.0-pyhd8ed1ab_0") == (
        "python-dateutil",
        "2.9.0",
        "pyhd8ed1ab_0",
    )
    assert split_dist("nodash") is None


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "a\0b", "./a"])
def test_paths_cannot_escape(bad):
    with pytest.raises(ValueError):
        CacheLayout("/pkgs").archive(bad)


def test_paths():
    layout = CacheLayout("/pkgs")
    assert layout.partial("a-1-0.conda") == "/pkgs/a-1-0.conda.partial"
    assert layout.record_json("a-1-0") == "/pkgs/a-1-0/info/repodata_record.json"
    assert layout.entry_lock("https/h/c/noarch/a-1-0").startswith("/pkgs/.conda-cache-plus/locks/")


@pytest.mark.parametrize(
    "channel, url, name",
    [
        ("https://conda.anaconda.org/conda-forge/linux-64", None, "conda-forge"),
        ("conda-forge", None, "conda-forge"),
        (None, "https://conda.anaconda.org/bioconda/noarch/x-1-0.conda", "bioconda"),
        ("https://user:secret@example.com/chan/noarch", None, "https://example.com/chan"),
        ("https://conda.anaconda.org/t/tk-123/private/linux-64", None, "private"),
        (None, None, "<unknown>"),
    ],
)
def test_channel_names(channel, url, name):
    assert channel_name(channel, url) == name
