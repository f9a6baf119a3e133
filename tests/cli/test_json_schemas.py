"""Every verb's ``--json`` is one JSON document on stdout matching docs/schemas/<verb>.json.

Runs each verb on a real cache built here, standalone (``python -m conda_cache_plus``) and, where
conda is importable, as ``python -m conda cache``. Validation uses tests/schema_check.py (always)
and ``jsonschema`` too where it is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import HAVE_CONDA, REPO, populate, run_cli
from schema_check import validate

from conda_cache_plus import pkgbuild
from conda_cache_plus.cli import VERBS

SCHEMAS = os.path.join(REPO, "docs", "schemas")

# Arguments that make each verb do its real work without asking (destructive ones dry-run).
VERB_ARGS = {
    "dir": [],
    "info": [],
    "list": [],
    "verify": [],
    "usage": [],
    "fetch": ["{explicit}"],
    "repair": ["--dry-run"],
    "remove": ["alpha", "--dry-run"],
    "clean": ["--unused", "--dry-run"],
    "export": ["{channel}"],
}


def test_every_verb_has_arguments_here():
    assert set(VERB_ARGS) == set(VERBS)


def load_schema(verb: str) -> dict:
    path = os.path.join(SCHEMAS, f"{verb}.json")
    if not os.path.exists(path):
        pytest.skip(f"docs/schemas/{verb}.json is not written yet")
    with open(path) as fh:
        return json.load(fh)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_schema_is_valid_draft_2020_12(verb):
    schema = load_schema(verb)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "version" in schema["required"]
    assert validate({}, schema)  # an empty object must not pass: the schema says something
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.fixture
def world(tmp_path):
    """A cache with three packages, a file:// channel holding them, an @EXPLICIT file."""
    out = tmp_path / "channel"
    a = pkgbuild.build_package(str(out / "noarch"), "alpha", "1.0", "0", fmt=".conda")
    b = pkgbuild.build_package(
        str(out / "noarch"), "beta", "2.1", "h1", fmt=".conda", depends=["alpha"]
    )
    c = pkgbuild.build_package(str(out / "noarch"), "gamma", "0.5", "0", fmt=".tar.bz2")
    url = pkgbuild.write_channel(str(out), [a, b, c])
    pkgs = str(tmp_path / "pkgs")
    populate(pkgs, [a, b], channel_url=url)
    populate(pkgs, [c], extract=False, channel_url=url)
    explicit = str(tmp_path / "explicit.txt")
    pkgbuild.write_explicit(explicit, [a, b, c], url)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "CONDA_PKGS_DIRS": pkgs,
        "CONDA_ENVS_DIRS": str(tmp_path / "envs"),
        "CONDA_SOLVER": "classic",
        "CONDA_REGISTER_ENVS": "false",
        "CONDARC": str(tmp_path / "condarc"),
    }
    return {
        "pkgs": pkgs,
        "fresh": str(tmp_path / "fresh-pkgs"),  # fetch fills an empty cache
        "explicit": explicit,
        "channel": str(tmp_path / "exported"),
        "tmp": str(tmp_path),
        "env": env,
    }


def verb_argv(verb: str, world: dict) -> list[str]:
    args = [a.format(**world) for a in VERB_ARGS[verb]]
    pkgs = world["fresh"] if verb == "fetch" else world["pkgs"]
    return [verb, *args, "--json", "--pkgs-dir", pkgs]


def check_output(proc, schema: dict, verb: str) -> dict:
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    data = json.loads(proc.stdout)  # exactly one document: trailing text would fail here
    assert isinstance(data, dict)
    errors = validate(data, schema)
    assert not errors, f"{verb} --json does not match docs/schemas/{verb}.json:\n" + "\n".join(
        errors[:20]
    )
    try:
        import jsonschema
    except ImportError:
        return data
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    return data


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_standalone_json_matches_schema(verb, world):
    schema = load_schema(verb)
    proc = run_cli(*verb_argv(verb, world), env=world["env"])
    check_output(proc, schema, verb)


def _plugin_installed() -> bool:
    return any(ep.value == "conda_cache_plus.plugin" for ep in metadata.entry_points(group="conda"))


@pytest.mark.skipif(not HAVE_CONDA, reason="conda is not importable here")
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_conda_json_matches_schema(verb, world):
    if not _plugin_installed():
        pytest.skip("conda-cache-plus is not installed (no conda entry point)")
    schema = load_schema(verb)
    env = dict(os.environ)
    env.update(world["env"])
    proc = subprocess.run(
        [sys.executable, "-m", "conda", "cache", *verb_argv(verb, world)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    check_output(proc, schema, verb)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_errors_under_json_are_one_json_document(verb, world):
    """A verb that fails still prints one JSON document (like conda's own --json errors)."""
    proc = run_cli(
        verb,
        "--json",
        "--pkgs-dir",
        world["pkgs"],
        "no-such-thing==1[[",
        env=world["env"],
        cwd=world["tmp"],  # export takes it for a directory name
    )
    if proc.returncode == 2 and not proc.stdout and "usage:" in proc.stderr:
        # argparse rejected the command line before the verb ran (a verb without specs): one
        # usage line on stderr and exit 2, as conda's own commands do under --json
        assert "unrecognized arguments: no-such-thing==1[[" in proc.stderr, proc.stderr
        return
    data = json.loads(proc.stdout)
    assert "version" in data or "error" in data
