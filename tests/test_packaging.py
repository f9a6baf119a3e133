"""`python -m build` makes an sdist and a wheel that hold what users and the recipe need.

Built without isolation (hatchling comes from the test extra), so no network is needed; the wheel
is built from the unpacked sdist, which has no .git: the version must not come from git tags.
"""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import conda_cache_plus

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("build", reason="the 'build' package is needed (pip install -e '.[test]')")
pytest.importorskip("hatchling", reason="hatchling is needed to build without isolation")


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def _package_modules() -> set[str]:
    pkg = ROOT / "conda_cache_plus"
    return {p.relative_to(ROOT).as_posix() for p in pkg.rglob("*.py")}


def test_both_files_are_named_for_the_static_version(dists):
    version = conda_cache_plus.__version__
    assert dists["sdist"].name == f"conda_cache_plus-{version}.tar.gz"
    assert dists["wheel"].name == f"conda_cache_plus-{version}-py3-none-any.whl"


def test_wheel_contents(dists):
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        info = f"conda_cache_plus-{conda_cache_plus.__version__}.dist-info"
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
        metadata = email.message_from_bytes(whl.read(f"{info}/METADATA"))
        license_text = whl.read(f"{info}/licenses/LICENSE").decode()
    # every module of the package, and nothing from tests/benchmarks
    assert {n for n in names if n.startswith("conda_cache_plus/")} >= _package_modules()
    assert not any(n.startswith(("tests/", "benchmarks/", "recipe/")) for n in names)
    # what conda loads, and the standalone command
    assert "[conda]\nconda-cache-plus = conda_cache_plus.plugin" in entry_points
    assert "[console_scripts]\nconda-cache = conda_cache_plus.cli:main" in entry_points
    assert license_text.startswith("BSD 3-Clause License")
    assert metadata["Version"] == conda_cache_plus.__version__
    assert metadata["Requires-Python"] == ">=3.10"
    # PEP 639 (the license and license-files fields of pyproject.toml): hatchling 1.26 builds
    # but writes neither field (Metadata 2.3); 1.27, the lower bound we declare, writes both
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    requires = metadata.get_all("Requires-Dist")
    assert any(r.startswith("pluggy") for r in requires)
    assert any(r.replace("-", ".").startswith("ruamel.yaml") for r in requires)
    assert any(r.startswith("zstandard") for r in requires)


def test_sdist_holds_what_the_recipe_builds_from(dists):
    prefix = f"conda_cache_plus-{conda_cache_plus.__version__}/"
    with tarfile.open(dists["sdist"]) as tar:
        names = {m.name[len(prefix) :] for m in tar.getmembers() if m.name.startswith(prefix)}
    for needed in (
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "recipe/recipe.yaml",
        "tests/conftest.py",
        "conda_cache_plus/__init__.py",
        "conda_cache_plus/plugin.py",
    ):
        assert needed in names, needed
    assert {n for n in names if n.startswith("conda_cache_plus/")} >= _package_modules()
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
