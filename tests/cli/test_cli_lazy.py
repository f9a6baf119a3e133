"""conda builds every plugin's parser on every command: ours must not load our engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import requires_conda

# the engines a parser must not load: fetching, downloading, verifying, repairing, usage and
# cleaning, scanning, extracting
ENGINES = (
    "conda_cache_plus.fetch.",
    "conda_cache_plus.gateways.download",
    "conda_cache_plus.integrity.",
    "conda_cache_plus.usage.",
    "conda_cache_plus.layouts.conda_pkgs",
    "conda_cache_plus.gateways.extract",
)

PROBE = """
import json, sys
{setup}
loaded = sorted(m for m in sys.modules if m.startswith("conda_cache_plus."))
print(json.dumps(loaded))
"""


def loaded_after(setup: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_standalone_parser_is_lazy():
    loaded = loaded_after(
        "from conda_cache_plus.cli import build_standalone_parser\nbuild_standalone_parser()"
    )
    assert not [m for m in loaded if m.startswith(ENGINES)], loaded


def test_a_selected_verb_is_configured():
    loaded = loaded_after(
        "from conda_cache_plus.cli import build_standalone_parser\n"
        "args = build_standalone_parser().parse_args(['verify', '--full', '--pkgs-dir', '/x'])\n"
        "assert args.verify_level == 'full' and args.cache_dirs == ['/x'], args"
    )
    assert "conda_cache_plus.cli.main_verify" in loaded
    assert "conda_cache_plus.cli.main_fetch" not in loaded


@requires_conda
def test_conda_parser_for_any_command_is_lazy():
    loaded = loaded_after(
        "from conda.cli.conda_argparse import generate_parser\n"
        "p = generate_parser()\n"
        "p.parse_args(['info', '--json'])"
    )
    assert not [m for m in loaded if m.startswith(ENGINES)], loaded
    # not even the verbs' sub-parsers, nor our errors: conda_subcommands imports cli alone
    assert "conda_cache_plus.exceptions" not in loaded, loaded


@requires_conda
def test_conda_cache_parser_is_configured_when_conda_picks_it():
    loaded = loaded_after(
        "from conda.cli.conda_argparse import generate_parser\n"
        "p = generate_parser()\n"
        "sub = next(a for a in p._actions if a.dest == 'cmd')._name_parser_map['cache']\n"
        "assert 'parse_known_args' in vars(sub)  # not configured yet\n"
        "args = p.parse_args(['cache', 'verify', '--full', '--json', '--pkgs-dir', '/x'])\n"
        "assert args.verify_level == 'full' and args.cache_dirs == ['/x'] and args.json, args\n"
        "assert 'parse_known_args' not in vars(sub)\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    sub.print_help()\n"
        "assert 'verify' in out.getvalue() and 'clean' in out.getvalue(), out.getvalue()"
    )
    assert "conda_cache_plus.cli.main_verify" in loaded
    assert "conda_cache_plus.cli.main_fetch" not in loaded


# What a verb that only reads the cache must not import: the HTTP stack, threads, pools, archive
# readers, the typing module (benchmarks/bench_startup.py measures what this saves).
NOT_FOR_READING = (
    "ssl",
    "socket",
    "http.client",
    "urllib.request",
    "concurrent.futures",
    "multiprocessing",
    "threading",
    "typing",
    "tarfile",
    "zstandard",
)

RUN_VERB = """
import contextlib, io, json, os, sys
os.environ["CONDA_CACHE_PLUS_NO_CONDA"] = "1"
os.environ["CONDA_PKGS_DIRS"] = {pkgs!r}
os.environ["XDG_CACHE_HOME"] = {xdg!r}
from conda_cache_plus.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main({argv!r})
print(json.dumps([code, out.getvalue(), sorted(sys.modules)]))
"""


def run_verb(tmp_path, argv: list[str]) -> tuple[int, str, list[str]]:
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir(exist_ok=True)
    code = RUN_VERB.format(pkgs=str(pkgs), xdg=str(tmp_path / "xdg"), argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return tuple(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_version_builds_no_parser(tmp_path):
    code, out, loaded = run_verb(tmp_path, ["--version"])
    assert code == 0
    assert out.startswith("conda-cache ")
    ours = [m for m in loaded if m.startswith("conda_cache_plus")]
    assert sorted(ours) == ["conda_cache_plus", "conda_cache_plus.cli"]
    assert "argparse" not in loaded


@pytest.mark.parametrize(
    "argv",
    [["info"], ["list"], ["usage"], ["clean", "--unused", "--dry-run"]],
    ids=lambda a: " ".join(a),
)
def test_reading_verbs_import_no_network_threads_or_temp_files(tmp_path, argv):
    code, _out, loaded = run_verb(tmp_path, argv)
    assert code == 0
    assert not [m for m in NOT_FOR_READING if m in loaded], loaded


@pytest.mark.parametrize(
    "argv",
    [["info"], ["list"], ["dir", "-v"], ["usage"], ["clean", "--unused", "-d"]],
    ids=lambda a: " ".join(a),
)
def test_reading_verbs_import_no_dataclasses(tmp_path, argv):
    # dataclasses imports inspect, ast, dis and tokenize: a fifth of an empty cache's `info`
    # (model/plainclass.py)
    code, _out, loaded = run_verb(tmp_path, argv)
    assert code == 0
    assert not [m for m in ("dataclasses", "inspect") if m in loaded], loaded


@pytest.mark.parametrize(
    "argv",
    [["info", "--json"], ["list", "zlib"], ["dir", "-v"], ["usage"], ["clean", "--unused", "-d"]],
    ids=lambda a: " ".join(a),
)
def test_everyday_verbs_import_no_argparse_openssl_or_shutil(tmp_path, argv):
    # argparse (with gettext and locale), OpenSSL and shutil (bz2, lzma) were 40% of an empty
    # `info` (cli/quickargs.py reads these command lines; benchmarks/bench_startup.py). The
    # last of three runs on a cache older than the racy window: before it, a run writes what it
    # remembers, and tempfile imports shutil
    run_verb(tmp_path, argv)
    old = time.time() - 3600
    os.utime(tmp_path / "pkgs", (old, old))
    run_verb(tmp_path, argv)
    code, _out, loaded = run_verb(tmp_path, argv)
    assert code == 0
    heavy = ("argparse", "gettext", "hashlib", "_hashlib", "shutil", "bz2", "lzma")
    assert not [m for m in heavy if m in loaded], loaded
