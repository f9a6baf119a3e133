"""The sampling rule of the usage scan (graph.py's docstring): which one file of a package tells
how it was linked, and the pass that finds entries hard-linked from environments nobody named."""

from __future__ import annotations

import json
import os
import stat

# One linked file tells how a package was linked (hard link, symlink, copy): conda links a whole
# package one way. More samples only cost stats (the usage scan is dominated by them).
SAMPLE_FILES = 1

# A file of the entry has more hard links than the entry itself explains: an environment nobody
# named links it (caches whose kind says so: rattler's, whose tool records no environments).
EVIDENCE_NLINK = "nlink"
UNNAMED_ENVIRONMENT = "<an environment not named (hard links)>"

_decode_json = json.JSONDecoder().decode


def sample_paths(data: dict) -> list[str]:
    """Relative paths of a few files conda linked as-is (the sampling rule, module docstring)."""
    paths = data.get("paths_data")
    paths = paths.get("paths") if isinstance(paths, dict) else None
    if isinstance(paths, list):
        hard: list[str] = []
        soft: list[str] = []
        for p in paths:
            if not isinstance(p, dict) or p.get("prefix_placeholder"):
                continue
            rel = p.get("_path") or p.get("path")
            if not isinstance(rel, str) or rel.endswith((".pyc", ".pyo")):
                continue
            kind = p.get("path_type", "hardlink")
            if kind == "hardlink":
                hard.append(rel)
                if len(hard) >= SAMPLE_FILES:
                    break
            elif kind == "softlink" and len(soft) < SAMPLE_FILES:
                soft.append(rel)
        if hard or soft:
            return (hard + soft)[:SAMPLE_FILES]
    files = data.get("files")
    if isinstance(files, list):
        return [f for f in files if isinstance(f, str)][:SAMPLE_FILES]
    return []


def mark_unnamed_links(report) -> None:
    """Mark entries no known environment uses but whose sampled file is hard-linked from
    outside the entry (the sampling rule of the module docstring, applied to the entry's own
    ``info/paths.json``). Every cache kind: clean and remove keep such an entry, so usage must
    say so too (one answer, issue 23): in use in a rattler cache (no registry of environments
    there, the links are the evidence), maybe in use in conda's (an environment conda did not
    register). Links from the same package in another cache are no environment. A reflinked or
    copied environment leaves no such trace."""
    from ..layouts.kinds import detect as kind_of

    same_dist: dict[str, list[str]] | None = None  # built when a file with links is found
    for root, usage in report.entries.items():
        # an environment we could not read fully is already "maybe" (and says why)
        if usage.users or usage.maybe:
            continue
        rec = usage.record
        if not rec.is_extracted:
            continue
        try:
            with open(root + "/info/paths.json", "rb") as fh:
                data = _decode_json(fh.read().decode("utf-8"))
        except (OSError, ValueError):
            continue
        paths = data.get("paths") if isinstance(data, dict) else None
        samples = sample_paths({"paths_data": {"paths": paths}}) if paths else []
        for rel in samples:
            try:
                st = os.lstat(os.path.join(root, rel))
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_nlink < 2:
                continue
            if same_dist is None:
                same_dist = {}
                for path, other in report.entries.items():
                    if other.record.is_extracted:
                        same_dist.setdefault(other.record.basename, []).append(path)
            # the same package in another cache (cp -al, a mirror) is no environment
            siblings = [d for d in same_dist.get(rec.basename, ()) if d != root]
            if st.st_nlink <= _links_within(root, st) + _links_at(siblings, rel, st):
                continue
            if kind_of(rec.pkgs_dir).unnamed_links_in_use:
                # rattler's caches: no registry of environments, the links are the evidence
                usage.users.setdefault(UNNAMED_ENVIRONMENT, set()).add(EVIDENCE_NLINK)
            else:
                # an environment conda did not register: "maybe in use", which clean and
                # remove keep unless forced, and usage shows
                usage.maybe[UNNAMED_ENVIRONMENT] = (
                    f"linked from outside the known environments: {rel} has hard links no "
                    "known environment accounts for"
                )
            break


def _links_at(dirs: list[str], rel: str, st: os.stat_result) -> int:
    """How many of ``dirs`` hold the same inode at ``rel``."""
    count = 0
    for d in dirs:
        try:
            other = os.lstat(os.path.join(d, rel))
        except OSError:
            continue
        count += (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
    return count


def _links_within(root: str, st: os.stat_result) -> int:
    """How many names the inode has inside ``root`` (a package may hard-link its own files)."""
    if st.st_nlink < 2:
        return 1
    key = (st.st_dev, st.st_ino)
    count = 0
    for base, _dirs, files in os.walk(root):
        for name in files:
            try:
                fst = os.lstat(os.path.join(base, name))
            except OSError:
                continue
            if (fst.st_dev, fst.st_ino) == key:
                count += 1
    return max(count, 1)
