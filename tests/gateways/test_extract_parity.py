"""Differential tests: ours against conda's own extractor (conda-package-handling) on a corpus of
legitimate but unusual packages (tests/unusual_corpus.py), in both formats, under three umasks;
and through real conda, ``conda create`` with our extractor on and off gives the same
environment. What differs on purpose is listed once (unusual_corpus.DELIBERATE_DIFFERENCES),
in the README too, and nothing else may differ."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import unusual_corpus as corpus
from conftest import REPO, TESTS, requires_conda_at_least

HERE = TESTS
ROOT = REPO


EXTRACT_BOTH = """
import json, os, sys
os.umask(int(sys.argv[3], 8))  # before cph is imported: it reads the umask at import
import conda_package_handling.api as cph
from conda_cache_plus.gateways.extract import extract_atomic
from conda_cache_plus.exceptions import ArchiveError
channel, out = sys.argv[1], sys.argv[2]
result = {}
for fn in sorted(os.listdir(channel)):
    if not fn.endswith((".conda", ".tar.bz2")):
        continue
    src = os.path.join(channel, fn)
    row = {}
    for who in ("cph", "ours"):
        dest = os.path.join(out, who, fn)
        try:
            if who == "cph":
                cph.extract(src, dest_dir=dest)
            else:
                extract_atomic(src, dest)
            row[who] = "ok"
        except Exception as exc:
            row[who] = f"{type(exc).__name__}: {exc}"
    result[fn] = row
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    ch = tmp_path_factory.mktemp("unusual") / "channel"
    entries = corpus.build_all(str(ch))
    return ch, entries


def _compare(cph_tree: dict, ours_tree: dict, umask: int, where: str) -> list[str]:
    problems = []
    if sorted(cph_tree) != sorted(ours_tree):
        only_cph = sorted(set(cph_tree) - set(ours_tree))
        only_ours = sorted(set(ours_tree) - set(cph_tree))
        problems.append(f"{where}: paths differ: only cph {only_cph}, only ours {only_ours}")
    for rel in sorted(set(cph_tree) & set(ours_tree)):
        kc, vc, mc, gc = cph_tree[rel]
        ko, vo, mo, go = ours_tree[rel]
        if kc != ko or vc != vo:
            problems.append(f"{where}/{rel}: {kc} {vc!r:.60} vs ours {ko} {vo!r:.60}")
            continue
        if kc != "link" and mo != corpus.expected_mode(kc, mc, umask):
            problems.append(f"{where}/{rel}: mode cph {oct(mc)} ours {oct(mo)}")
        if gc != go:
            problems.append(f"{where}/{rel}: hard-link group cph {gc} ours {go}")
    return problems


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_same_trees_as_conda_package_handling(channel, tmp_path, umask):
    pytest.importorskip(
        "conda_package_handling.api", reason="conda-package-handling is in the conda venvs only"
    )
    ch, entries = channel
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + HERE)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", EXTRACT_BOTH, str(ch / "noarch"), str(out), oct(umask)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result) == len(entries) == 2 * len(corpus.cases("x"))
    failures = {fn: row for fn, row in result.items() if row != {"cph": "ok", "ours": "ok"}}
    assert not failures
    problems = []
    for fn in result:
        problems += _compare(
            corpus.snapshot(str(out / "cph" / fn)),
            corpus.snapshot(str(out / "ours" / fn)),
            umask,
            fn,
        )
    assert not problems, "\n".join(problems)


def test_the_deliberate_differences_are_the_readme_list():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    section = re.search(r"\n### Differences from conda's extractor\n(.*?)(?=\n#)", readme, re.S)
    assert section, "README has no 'Differences from conda's extractor' section"
    bullets = re.findall(r"^- (.+(?:\n  .+)*)", section.group(1), re.M)
    listed = [" ".join(b.split()) for b in bullets]
    assert listed == corpus.DELIBERATE_DIFFERENCES


def test_a_file_replacing_a_symlink_replaces_the_link_not_its_target(tmp_path):
    """The one content difference: cph opens the path, so writes through the link."""
    from conda_cache_plus import pkgbuild
    from conda_cache_plus.gateways.extract import extract_archive

    extra = [
        corpus.f("share/target.txt", b"target\n"),
        corpus.sym("share/l", "target.txt"),
        corpus.f("share/l", b"replacement\n"),
    ]
    pkg = pkgbuild.build_package(str(tmp_path), "repl", files={}, extra_members=extra)
    extract_archive(pkg.path, str(tmp_path / "x"))
    assert (tmp_path / "x" / "share" / "target.txt").read_bytes() == b"target\n"
    assert not (tmp_path / "x" / "share" / "l").is_symlink()
    assert (tmp_path / "x" / "share" / "l").read_bytes() == b"replacement\n"


def _conda_create(tmp_path, ch, setting: str, names: list[str]):
    prefix = tmp_path / f"env-{setting}"
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        CONDA_PKGS_DIRS=str(tmp_path / f"pkgs-{setting}"),
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
        CONDA_PLUGINS_CACHE_PLUS_EXTRACTOR=setting,
        PYTHONPATH=ROOT,
    )
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "conda", "create", "-p", str(prefix), "--offline", "--yes"),
            *("--override-channels", "-c", ch.as_uri(), *names),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    return proc, prefix


@requires_conda_at_least((26, 1), "package extractor plugins")
def test_conda_create_gives_the_same_environment_with_our_extractor(channel, tmp_path):
    ch, entries = channel
    names = sorted(e["name"] for e in entries)
    off, env_off = _conda_create(tmp_path, ch, "false", names)
    assert off.returncode == 0, off.stdout + off.stderr
    on, env_on = _conda_create(tmp_path, ch, "true", names)
    assert on.returncode == 0, on.stdout + on.stderr

    def tree(prefix):
        snap = corpus.snapshot(str(prefix))
        return {k: v for k, v in snap.items() if not k.startswith("conda-meta")}

    problems = _compare(tree(env_off), tree(env_on), 0o022, "env")
    # conda hard-links files from the cache: so their modes are the cache's (compared above
    # with the deliberate differences); directories are conda's own
    assert not problems, "\n".join(problems)
    # and conda's records of what it linked are the same
    for name in names:
        (meta_off,) = [p for p in os.listdir(env_off / "conda-meta") if p.startswith(name + "-")]
        rec_off = json.loads((env_off / "conda-meta" / meta_off).read_text())
        rec_on = json.loads((env_on / "conda-meta" / meta_off).read_text())
        assert [p["_path"] for p in rec_off["paths_data"]["paths"]] == [
            p["_path"] for p in rec_on["paths_data"]["paths"]
        ]
