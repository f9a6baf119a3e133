"""urls.txt: newest first, whole lines under concurrent appends, atomic removal."""

from __future__ import annotations

import subprocess
import sys

from conda_cache_plus.gateways.urls import UrlsData, append_urls, remove_urls
from conda_cache_plus.model.cache_paths import CacheLayout


def test_newest_line_wins(tmp_path):
    (tmp_path / "urls.txt").write_text(
        "https://a/x/noarch/p-1-0.conda\njunk\nhttps://b/y/noarch/p-1-0.conda\n"
        "https://b/y/noarch/q-1-0.tar.bz2#abc\n"
    )
    urls = UrlsData(str(tmp_path))
    assert urls.get_url("p-1-0.conda") == "https://b/y/noarch/p-1-0.conda"
    assert urls.get_url("q-1-0") == "https://b/y/noarch/q-1-0.tar.bz2#abc"
    assert urls.get_url("/some/dir/p-1-0.conda").startswith("https://b/")
    assert urls.junk_lines == 1
    urls.add_url("https://c/z/noarch/p-1-0.conda")
    assert urls.get_url("p-1-0.conda") == "https://c/z/noarch/p-1-0.conda"
    assert UrlsData(str(tmp_path)).get_url("p-1-0.conda") == "https://c/z/noarch/p-1-0.conda"


def test_remove_keeps_everything_else(tmp_path):
    original = b"https://a/x/noarch/p-1-0.conda\n\xff junk\nhttps://a/x/noarch/q-1-0.conda\n"
    (tmp_path / "urls.txt").write_bytes(original)
    assert remove_urls(CacheLayout(str(tmp_path)), ["p-1-0.conda"]) == 1
    assert (tmp_path / "urls.txt").read_bytes() == original.split(b"\n", 1)[1]
    assert remove_urls(CacheLayout(str(tmp_path)), ["nope.conda"]) == 0


def test_parallel_appends_keep_whole_lines(tmp_path):
    (tmp_path / "urls.txt").write_text("")
    code = (
        "import sys; from conda_cache_plus.model.cache_paths import CacheLayout;"
        "from conda_cache_plus.gateways.urls import append_urls;"
        "[append_urls(CacheLayout(sys.argv[1]), [f'https://h/c/noarch/p{sys.argv[2]}-{i}-0.conda'])"
        " for i in range(200)]"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(n)]) for n in range(4)
    ]
    assert all(p.wait() == 0 for p in procs)
    lines = (tmp_path / "urls.txt").read_text().splitlines()
    assert len(lines) == 800
    assert all(
        line.startswith("https://h/c/noarch/p") and line.endswith("-0.conda") for line in lines
    )
    append_urls(CacheLayout(str(tmp_path)), [])
    assert len((tmp_path / "urls.txt").read_text().splitlines()) == 800
