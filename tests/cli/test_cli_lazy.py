"""conda builds every plugin's parser on every command: ours must not load our engines."""

from __future__ import annotations

import json
import subprocess
import sys

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
