"""recipe/recipe.yaml: the conda-forge lint rules that apply to it, agreement with pyproject.toml,
and an offline render with rattler-build's own parser (py-rattler-build).

The lint checks mirror conda-smithy's for v1 ``noarch: python`` recipes (python_min in host, run
and tests; a build backend next to pip in host; SPDX license; license_file present), so a recipe
that passes here should lint clean when it goes to staged-recipes or its feedstock.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import conda_cache_plus

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the recipe (test extra)")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the interpreter
    tomllib = pytest.importorskip("tomli", reason="Python 3.10 needs tomli to read pyproject")

ROOT = Path(__file__).resolve().parent.parent
RECIPE_DIR = ROOT / "recipe"
RECIPE_FILE = RECIPE_DIR / "recipe.yaml"

# PyPI name -> conda-forge name, where they differ. Everything else keeps its name.
PYPI_TO_CONDA: dict[str, str] = {}

# conda-smithy's expected top-level order for single-output v1 recipes.
SECTION_ORDER = ["context", "package", "source", "build", "requirements", "tests", "about", "extra"]

PY_MIN = "${{ python_min }}"


@pytest.fixture(scope="module")
def recipe() -> dict:
    return yaml.safe_load(RECIPE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _static_version() -> str:
    # hatch reads the version from this file (tool.hatch.version.path), no git tags involved
    text = (ROOT / "conda_cache_plus" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    assert match, "conda_cache_plus/__init__.py must set __version__ statically"
    return match.group(1)


def _name(spec: str) -> str:
    return spec.split()[0].lower()


def _by_name(specs: list[str]) -> dict[str, str]:
    return {_name(s): " ".join(s.split()[1:]) for s in specs}


def _python_tests(recipe: dict) -> list[dict]:
    return [t["python"] for t in recipe["tests"] if "python" in t]


def _script_lines(recipe: dict) -> list[str]:
    lines: list[str] = []
    for test in recipe["tests"]:
        script = test.get("script")
        if isinstance(script, str):
            lines += script.splitlines()
        elif isinstance(script, list):
            lines += script
    return [line.strip() for line in lines]


def _min_conda_in_readme() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"conda\s*(?:>=|≥)\s*(\d+\.\d+(?:\.\d+)?)", text)
    assert match, "README.md must state the oldest supported conda as 'conda >= X.Y'"
    return match.group(1)


# --- the recipe's shape (conda-forge v1 conventions) ------------------------------------------


def test_v1_schema_and_section_order(recipe):
    assert recipe["schema_version"] == 1
    present = [key for key in recipe if key != "schema_version"]
    assert present == [key for key in SECTION_ORDER if key in recipe]
    for required in ("context", "package", "source", "build", "requirements", "tests", "about"):
        assert required in recipe, required


def test_source_is_a_checkout_or_a_checksummed_sdist(recipe):
    source = recipe["source"]
    if "path" in source:
        assert (RECIPE_DIR / source["path"] / "pyproject.toml").is_file()
    else:
        assert source["url"].startswith("https://")
        assert re.fullmatch(r"[0-9a-f]{64}", source["sha256"])


def test_noarch_python_built_with_pip(recipe):
    build = recipe["build"]
    assert build["noarch"] == "python"
    assert isinstance(build["number"], int)
    script = build["script"]
    assert script.startswith("${{ PYTHON }} -m pip install . ")
    for flag in ("--no-deps", "--no-build-isolation", "-vv"):
        assert flag in script.split()


def test_python_min_used_in_host_run_and_tests(recipe, pyproject):
    """conda-smithy's hint_noarch_python_use_python_min, for each of the three places."""
    requires_python = pyproject["project"]["requires-python"]
    assert requires_python == ">=" + recipe["context"]["python_min"]

    host = recipe["requirements"]["host"]
    run = recipe["requirements"]["run"]
    assert any(re.fullmatch(r"python\s+=?=?\$\{\{ python_min \}\}(\.\*)?", r) for r in host), host
    assert any(re.fullmatch(r"python\s+>=\$\{\{ python_min \}\}", r) for r in run), run

    versions = [v for t in _python_tests(recipe) for v in t.get("python_version", [])]
    assert f"{PY_MIN}.*" in versions, "the oldest supported python must be tested"
    assert "*" in versions, "the latest python must be tested"


def test_python_lower_bound_and_no_upper_bound_in_run(recipe):
    python = [r for r in recipe["requirements"]["run"] if _name(r) == "python"]
    assert len(python) == 1
    assert ">=" in python[0] and "<" not in python[0]


def test_build_backend_and_pip_in_host(recipe, pyproject):
    host = _by_name(recipe["requirements"]["host"])
    assert "pip" in host
    backend = pyproject["build-system"]["build-backend"].split(".")[0]
    assert backend == "hatchling"
    assert backend in host
    # the host pin must not allow an older backend than pyproject asks for
    (requires,) = [r for r in pyproject["build-system"]["requires"] if r.startswith(backend)]
    assert host[backend].replace(" ", "") == requires[len(backend) :].replace(" ", "")


def test_python_import_test_with_pip_check(recipe):
    (py_test,) = _python_tests(recipe)
    assert py_test.get("pip_check") is True
    assert "conda_cache_plus" in py_test["imports"]
    assert "conda_cache_plus.plugin" in py_test["imports"]


def test_script_test_runs_the_commands(recipe):
    lines = _script_lines(recipe)
    assert "conda cache --help" in lines
    assert "python -m conda_cache_plus --help" in lines
    assert any("health_checks" in line and "'package-cache'" in line for line in lines)
    # the test env of a noarch package should pin python like the import test does
    script_tests = [t for t in recipe["tests"] if "script" in t]
    run = [r for t in script_tests for r in t.get("requirements", {}).get("run", [])]
    assert f"python {PY_MIN}.*" in run


def test_about_license_and_maintainers(recipe, pyproject):
    about = recipe["about"]
    assert about["license"] == "BSD-3-Clause" == pyproject["project"]["license"]
    try:
        from packaging.licenses import canonicalize_license_expression
    except ImportError:  # packaging < 24.2
        pass
    else:
        assert canonicalize_license_expression(about["license"]) == about["license"]
    license_file = ROOT / about["license_file"]
    assert license_file.is_file()
    assert license_file.read_text(encoding="utf-8").startswith("BSD 3-Clause License")
    assert about["license_file"] in pyproject["project"]["license-files"]
    for key in ("homepage", "summary", "description"):
        assert about.get(key), key
    assert recipe["extra"]["recipe-maintainers"]


# --- agreement with pyproject.toml ------------------------------------------------------------


def test_version_agrees(recipe, pyproject):
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "conda_cache_plus/__init__.py"
    assert recipe["context"]["version"] == _static_version() == conda_cache_plus.__version__
    assert recipe["package"]["version"] == "${{ version }}"


def test_name_agrees(recipe, pyproject):
    assert recipe["context"]["name"] == pyproject["project"]["name"]
    assert recipe["package"]["name"] == "${{ name }}"


def test_run_dependencies_cover_pyproject(recipe, pyproject):
    from packaging.requirements import Requirement

    run = _by_name(recipe["requirements"]["run"])
    for dep in pyproject["project"]["dependencies"]:
        req = Requirement(dep)
        if req.marker is not None and not req.marker.evaluate():
            continue
        conda_name = PYPI_TO_CONDA.get(req.name.lower(), req.name.lower())
        assert conda_name in run, f"{dep} from pyproject is missing in the recipe's run"
        assert run[conda_name].replace(" ", "") == str(req.specifier), (
            f"{conda_name}: recipe says {run[conda_name]!r}, pyproject {req.specifier}"
        )


def test_conda_lower_bound_matches_readme(recipe):
    run = _by_name(recipe["requirements"]["run"])
    assert run.get("conda", "").startswith(">="), "conda must be a run dependency with a bound"
    assert run["conda"] == f">={_min_conda_in_readme()}"


def test_entry_points_agree(recipe, pyproject):
    scripts = pyproject["project"]["scripts"]
    recipe_eps = recipe["build"]["python"]["entry_points"]
    assert sorted(recipe_eps) == sorted(f"{name} = {target}" for name, target in scripts.items())
    conda_eps = pyproject["project"]["entry-points"]["conda"]
    assert conda_eps == {"conda-cache-plus": "conda_cache_plus.plugin"}
    # the module the conda entry point names is the one the recipe's import test loads
    (py_test,) = _python_tests(recipe)
    assert set(conda_eps.values()) <= set(py_test["imports"])


# --- rendering with rattler-build's own parser (offline) --------------------------------------


@pytest.fixture(scope="module")
def rattler_build():
    return pytest.importorskip(
        "rattler_build", reason="py-rattler-build is not installed (pip install -e '.[test]')"
    )


def _render(rattler_build, path=RECIPE_FILE, platform: str = "linux-64"):
    from rattler_build.tool_config import PlatformConfig

    # from_file: from_yaml writes the text into a temporary directory it never removes
    stage0 = rattler_build.Stage0Recipe.from_file(path)
    config = rattler_build.RenderConfig(platform=PlatformConfig(target_platform=platform))
    return stage0, stage0.render(rattler_build.VariantConfig(), config)


def test_renders_offline(rattler_build, recipe):
    stage0, variants = _render(rattler_build)
    assert stage0.schema_version == 1
    assert len(variants) == 1, "a noarch: python recipe renders exactly one variant"
    rendered = variants[0].recipe.to_dict()
    assert rendered["package"] == {"name": "conda-cache-plus", "version": _static_version()}
    assert rendered["build"]["noarch"] == "python"
    assert rendered["build"]["string"].startswith("py")
    py_min = recipe["context"]["python_min"]
    assert f"python {py_min}.*" in rendered["requirements"]["host"]
    assert f"python >={py_min}" in rendered["requirements"]["run"]
    (py_test,) = [t["python"] for t in rendered["tests"] if "python" in t]
    assert py_test["python_version"] == [f"{py_min}.*", "*"]
    assert rendered["about"]["license"] == "BSD-3-Clause"
    assert rendered["about"]["license_file"] == ["LICENSE"]


@pytest.mark.parametrize("platform", ["osx-arm64", "win-64"])
def test_renders_the_same_everywhere(rattler_build, platform):
    _, linux = _render(rattler_build)
    _, other = _render(rattler_build, platform=platform)
    assert other[0].recipe.to_dict() == linux[0].recipe.to_dict()


def test_parser_rejects_a_misspelt_key(rattler_build, tmp_path):
    """The render test is only worth something if the parser is strict about keys."""
    broken = tmp_path / "recipe.yaml"
    broken.write_text(
        RECIPE_FILE.read_text(encoding="utf-8").replace("pip_check:", "pip_chek:"), encoding="utf-8"
    )
    with pytest.raises(Exception, match="pip_chek"):
        _render(rattler_build, broken)


def test_unix_only_until_windows_is_supported(recipe):
    run = _by_name(recipe["requirements"]["run"])
    assert "__unix" in run, "conda-forge keeps a Unix-only noarch package off Windows so"
    readme = (RECIPE_DIR / "README.md").read_text(encoding="utf-8")
    assert "__unix" in readme


def test_maintainers_placeholder_is_said(recipe):
    maintainers = recipe["extra"]["recipe-maintainers"]
    readme = " ".join((RECIPE_DIR / "README.md").read_text(encoding="utf-8").split())
    if any(m == "conda-cache-plus-developers" for m in maintainers):
        assert "recipe-maintainers" in readme and "placeholder" in readme


@pytest.mark.conda
def test_script_tests_pass_under_this_conda(recipe, tmp_path):
    """The recipe's test commands, run as the recipe runs them, under the conda of this venv
    (CI: each conda from the oldest the recipe allows, 24.11, to the newest)."""
    pytest.importorskip("conda")
    import os
    import shlex
    import subprocess

    py = shlex.quote(sys.executable)
    env = dict(os.environ, CONDA_PKGS_DIRS=str(tmp_path / "pkgs"))
    for line in _script_lines(recipe):
        if not line or line.startswith("#"):
            continue
        # `conda` refuses to run outside a conda installation: the same command through python
        cmd = re.sub(r"^conda-cache\b", f"{py} -m conda_cache_plus", line)
        cmd = re.sub(r"^conda\b", f"{py} -m conda", cmd)
        cmd = re.sub(r"^python\b", py, cmd)
        proc = subprocess.run(cmd, shell=True, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{line}: {proc.stdout}{proc.stderr}"
