"""``urls.txt``: our equivalent of conda's ``UrlsData``.

The file is conda's magic file and download log: one URL per line, appended on each download.
Read newest-first (a later line wins), appended under a lock so that parallel writers never
interleave lines (conda appends without one; an ``O_APPEND`` write of one short line plus our
lock keeps every line whole).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..model.cache_paths import CacheLayout
from ..model.filenames import package_extension
from .locks import FileLock


def _basename(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class UrlsData:
    def __init__(self, pkgs_dir: str):
        self.layout = CacheLayout(pkgs_dir)
        self.junk_lines = 0
        self._urls: list[str] | None = None
        self._by_basename: dict[str, str] | None = None

    def _load(self) -> list[str]:
        if self._urls is None:
            urls: list[str] = []
            junk = 0
            try:
                with open(self.layout.urls_txt, "rb") as fh:
                    raw = fh.read()
            except OSError:
                raw = b""
            for line in raw.splitlines():
                line = line.strip()
                if not line:
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    junk += 1
                    continue
                if "://" not in text or not package_extension(_basename(text)):
                    junk += 1
                    continue
                urls.append(text)
            urls.reverse()
            self._urls = urls
            self.junk_lines = junk
        return self._urls

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def get_url(self, name: str) -> str | None:
        """The newest URL whose basename is ``name`` (an archive name; a bare dist name is tried
        as ``.conda`` then ``.tar.bz2``)."""
        if self._by_basename is None:
            index: dict[str, str] = {}
            for url in self._load():
                index.setdefault(_basename(url), url)
            self._by_basename = index
        base = os.path.basename(name)
        if package_extension(base):
            return self._by_basename.get(base)
        return self._by_basename.get(base + ".conda") or self._by_basename.get(base + ".tar.bz2")

    def add_url(self, url: str) -> None:
        append_urls(self.layout, [url])
        if self._urls is not None:
            self._urls.insert(0, url)
            if self._by_basename is not None:
                self._by_basename[_basename(url)] = url


def append_urls(layout: CacheLayout, urls: Iterable[str]) -> None:
    data = "".join(u + "\n" for u in urls).encode("utf-8")
    if not data:
        return
    with FileLock(layout.urls_txt + ".lock-cpx", layout=layout, name="urls"):
        fd = os.open(layout.urls_txt, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def remove_urls(layout: CacheLayout, basenames: Iterable[str]) -> int:
    """Drop every line whose basename is one of ``basenames``; returns how many went.

    Rewritten atomically (temp file + rename) under the urls lock, keeping junk lines as they were.
    """
    drop = set(basenames)
    if not drop:
        return 0
    with FileLock(layout.urls_txt + ".lock-cpx", layout=layout, name="urls"):
        try:
            with open(layout.urls_txt, "rb") as fh:
                lines = fh.read().splitlines(keepends=True)
        except FileNotFoundError:
            return 0
        kept = []
        removed = 0
        for line in lines:
            text = line.strip().decode("utf-8", "replace")
            if text and _basename(text) in drop:
                removed += 1
            else:
                kept.append(line)
        if removed:
            tmp = layout.urls_txt + ".cpx-tmp"
            with open(tmp, "wb") as fh:
                fh.writelines(kept)
            try:
                os.chmod(tmp, os.stat(layout.urls_txt).st_mode & 0o7777)
            except OSError:
                pass
            os.replace(tmp, layout.urls_txt)
        return removed
