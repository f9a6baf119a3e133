"""Build real conda environments from cache entries, the way conda links them.

``make_env`` links every file of each entry into the prefix (hard link, symlink or copy, as
conda's ``LinkPathAction`` does), writes ``conda-meta/<dist>.json`` with the fields conda writes
(``fn``, ``url``, ``files``, ``paths_data``, ``link: {source, type}``, ``extracted_package_dir``)
and a ``conda-meta/history`` with one revision per call.
"""

from __future__ import annotations

import json
import os
import shutil
import time

LINK_TYPE = {"hardlink": 1, "softlink": 2, "copy": 3}


def link_entry(prefix: str, extracted: str, mode: str) -> tuple[list[str], list[dict]]:
    with open(os.path.join(extracted, "info", "paths.json")) as fh:
        paths = json.load(fh)["paths"]
    files, paths_data = [], []
    for p in paths:
        rel = p["_path"]
        src = os.path.join(extracted, rel)
        dst = os.path.join(prefix, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if p.get("path_type") == "directory":
            continue
        path_type = p.get("path_type", "hardlink")
        if p.get("prefix_placeholder") or mode == "copy":
            shutil.copy2(src, dst, follow_symlinks=False)
        elif mode == "softlink":
            os.symlink(src, dst)
            path_type = "softlink"
        elif path_type == "softlink":
            shutil.copy2(src, dst, follow_symlinks=False)
        else:
            os.link(src, dst)
        files.append(rel)
        paths_data.append({**p, "path_type": path_type})
    return files, paths_data


def make_env(prefix, entries, *, mode="hardlink", history=True, when=None) -> str:
    """``entries``: cache records (PackageCacheRecord) or extracted dirs to install."""
    prefix = str(prefix)
    meta = os.path.join(prefix, "conda-meta")
    os.makedirs(meta, exist_ok=True)
    added = []
    for entry in entries:
        extracted = getattr(entry, "extracted_package_dir", entry)
        with open(os.path.join(extracted, "info", "repodata_record.json")) as fh:
            rec = json.load(fh)
        files, paths_data = link_entry(prefix, extracted, mode)
        dist = f"{rec['name']}-{rec['version']}-{rec['build']}"
        rec.update(
            files=files,
            paths_data={"paths": paths_data, "paths_version": 1},
            link={"source": extracted, "type": LINK_TYPE[mode]},
            extracted_package_dir=extracted,
            package_tarball_full_path=extracted + ".conda",
            requested_spec=rec["name"],
        )
        target = os.path.join(meta, dist + ".json")
        with open(target, "w") as fh:
            json.dump(rec, fh)
        if when is not None:
            os.utime(target, (when, when))
        channel = (rec.get("channel") or "demo").rsplit("/", 1)[0]
        added.append(f"+{channel}/{rec.get('subdir', 'noarch')}::{dist}")
    if history:
        with open(os.path.join(meta, "history"), "a") as fh:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            fh.write(f"==> {stamp} <==\n# cmd: conda install\n")
            fh.write("".join(line + "\n" for line in added))
    return prefix


def uninstall(prefix, dist: str) -> None:
    """Remove a package from an env (files, record) and log it in history, as conda would."""
    meta = os.path.join(str(prefix), "conda-meta")
    with open(os.path.join(meta, dist + ".json")) as fh:
        rec = json.load(fh)
    for rel in rec["files"]:
        try:
            os.unlink(os.path.join(str(prefix), rel))
        except FileNotFoundError:
            pass
    os.unlink(os.path.join(meta, dist + ".json"))
    with open(os.path.join(meta, "history"), "a") as fh:
        fh.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==\n# cmd: conda remove\n")
        fh.write(f"-demo/noarch::{dist}\n")


class World:
    """A cache and environments using it in every way conda can."""

    def __init__(self, tmp_path, build, populate):
        from conda_cache_plus.layouts.caches import PackageCaches

        self.tmp = tmp_path
        self.pkgs = str(tmp_path / "pkgs")
        built = [
            build("alpha", "1.0", "0"),
            build("alpha", "2.0", "0"),
            build("beta", "1.0", "0"),
            build("gamma", "1.0", "0"),
            build("delta", "1.0", "0"),
            build("eps", "1.0", "0"),
        ]
        populate(self.pkgs, built)
        recs = {r.basename: r for r in PackageCaches([self.pkgs]).records()}
        self.rec = recs
        old = time.time() - 90 * 86400
        self.env_hard = make_env(tmp_path / "envs" / "hard", [recs["alpha-2.0-0"]])
        self.env_soft = make_env(
            tmp_path / "envs" / "soft", [recs["beta-1.0-0"]], mode="softlink", when=old
        )
        self.env_copy = make_env(tmp_path / "envs" / "copy", [recs["gamma-1.0-0"]], mode="copy")
        self.env_hist = make_env(tmp_path / "envs" / "hist", [recs["eps-1.0-0"]])
        uninstall(self.env_hist, "eps-1.0-0")
        self.envs_dir = str(tmp_path / "envs")
        self.home = str(tmp_path / "home")
        os.makedirs(os.path.join(self.home, ".conda"), exist_ok=True)
        # conda keeps a list of the environments it made: this world's is there (and empty)
        with open(os.path.join(self.home, ".conda", "environments.txt"), "a"):
            pass
        # every entry's own time is old, so age depends on environment links
        for r in recs.values():
            for path in [r.extracted_package_dir + "/info/repodata_record.json"] + [
                r.archive_path(ext) for ext in r.archives
            ]:
                os.utime(path, (old, old))

    @property
    def caches(self):
        from conda_cache_plus.layouts.caches import PackageCaches

        return PackageCaches([self.pkgs], use_index=False)

    @property
    def env(self) -> dict:
        """Environment variables that make discovery see exactly this world."""
        return {
            "HOME": self.home,
            "CONDA_ENVS_DIRS": self.envs_dir,
            "CONDA_ROOT": str(self.tmp / "no-root"),
            "CONDA_PKGS_DIRS": self.pkgs,
            "CONDA_CACHE_PLUS_NO_CONDA": "1",
        }

    def environments(self):
        from conda_cache_plus.envs.discovery import known_environments

        return known_environments(environ=self.env)
