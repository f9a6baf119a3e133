"""cli/quickargs: the command lines it reads give argparse's namespace, attribute for attribute;
everything else is left to argparse."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from conda_cache_plus.cli import VERBS, build_standalone_parser, configure_standalone
from conda_cache_plus.cli.quickargs import Recorder, Unsupported, parse


def argparse_namespace(argv: list[str]) -> dict:
    got = vars(build_standalone_parser().parse_args(argv))
    got["_cache_parser"] = None  # the parser object itself: quickargs has none (a verb is given)
    return got


def quick(argv: list[str]):
    return parse(argv, VERBS, configure_standalone)


def flags_of(verb: str) -> list[str]:
    rec = Recorder()
    try:
        configure_standalone(rec, verb)
    except Unsupported:
        return []
    return sorted(rec.flags)


def has_specs(verb: str) -> bool:
    rec = Recorder()
    try:
        configure_standalone(rec, verb)
    except Unsupported:
        return False
    return rec.positional is not None


QUICK_VERBS = [v for v in VERBS if flags_of(v)]


def test_the_everyday_verbs_are_read_without_argparse():
    assert {"dir", "info", "list", "usage", "verify", "clean"} <= set(QUICK_VERBS)


@pytest.mark.parametrize("verb", QUICK_VERBS)
def test_each_flag_alone_and_all_together_as_argparse(verb):
    flags = flags_of(verb)
    lines = [[verb], *([verb, f] for f in flags), [verb, *flags], [verb, *reversed(flags)]]
    lines += [[verb, a, b] for a, b in itertools.combinations(flags, 2)]
    if "-v" in flags:
        lines += [[verb, "-v", "-v", "--verbose"], [verb, "-q", "-v", "-v"]]
    if has_specs(verb):
        lines += [[verb, "zlib"], [verb, "zlib", "numpy>=1", "--json"], [verb, "", "--json"]]
    for argv in lines:
        got = quick(argv)
        assert got is not None, argv
        assert vars(got) == argparse_namespace(argv), argv


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--version"],
        ["nosuchverb"],
        ["info", "--jso"],  # an abbreviation: argparse's to accept
        ["info", "-vv"],  # combined short options
        ["info", "-h"],
        ["info", "--help"],
        ["info", "--pkgs-dir", "/x"],  # an option with a value
        ["info", "--pkgs-dir=/x"],
        ["info", "--json=1"],
        ["info", "--console", "json"],
        ["info", "--", "--json"],
        ["info", "extra"],  # info takes no specs: argparse's error
        ["list", "--json", "zlib"],  # specs after an option: argparse's versions differ
        ["list", "-", "--json"],
        ["list", "-1"],
        ["list", "--sort", "size"],
        ["remove", "zlib", "-y"],  # nargs="+": argparse's
        ["export", "/tmp/x"],
        ["clean", "--older-than", "30d"],
    ],
)
def test_everything_else_is_left_to_argparse(argv):
    assert quick(argv) is None


def test_recorder_refuses_what_only_argparse_knows():
    for kwargs in (
        {"required": True, "action": "store_true"},
        {"default": "==SUPPRESS==", "action": "store_true"},
        {"type": int, "default": "3"},
        {"action": object},
    ):
        with pytest.raises(Unsupported):
            Recorder().add_argument("--x", **kwargs)
    with pytest.raises(Unsupported):
        Recorder().add_argument("spec", nargs="*", choices=("a", "b"))
    with pytest.raises(Unsupported):
        Recorder().set_defaults(x=1)


def test_a_quick_command_line_runs_the_verb(tmp_path):
    """End to end: ``info --json -q`` and its argparse spelling ``info --json --quie`` agree."""
    (tmp_path / "pkgs").mkdir()
    env = {"CONDA_PKGS_DIRS": str(tmp_path / "pkgs"), "HOME": str(tmp_path / "home")}
    env["PATH"] = "/usr/bin:/bin"
    env["CONDA_CACHE_PLUS_NO_CONDA"] = "1"
    out = []
    for flag in ("--quiet", "--quie"):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, "info", "--json", flag],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout)
    quick_run, argparse_run = out
    assert quick_run.splitlines()[-1] == "argparse: False", quick_run
    assert argparse_run.splitlines()[-1] == "argparse: True", argparse_run
    assert quick_run.splitlines()[:-1] == argparse_run.splitlines()[:-1]


PROBE = """
import sys
from conda_cache_plus.cli import main
code = main()
print("argparse:", "argparse" in sys.modules)
sys.exit(code)
"""
