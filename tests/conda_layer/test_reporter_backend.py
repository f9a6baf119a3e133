"""The ``plain`` reporter backend under real conda: every command, captured against golden files.

Goldens live in tests/golden/; paths, times, versions and machine facts are masked. Regenerate with
``UPDATE_GOLDEN=1 python -m pytest tests/conda_layer/test_reporter_backend.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conda_world import CondaWorld, needs_plugin
from conftest import HAVE_CONDA, TESTS, populate, requires_conda, requires_conda_at_least

from conda_cache_plus import pkgbuild

pytestmark = requires_conda

GOLDEN = os.path.join(TESTS, "golden")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not HAVE_CONDA:
        pytest.skip("conda is not importable here")
    return CondaWorld(tmp_path_factory.mktemp("plainworld"))


@pytest.fixture(scope="module")
def created(world):
    """One real `conda create` from the file:// channel, shared by the goldens."""
    prefix = os.path.join(world.envs, "demo")
    proc = world.conda(
        "create",
        "--offline",
        "--yes",
        "-p",
        prefix,
        "-c",
        world.channel,
        "--override-channels",
        "demo-tool",
        "--console",
        "plain",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _sort_runs(lines: list[str], pattern: str) -> list[str]:
    """Sort each run of consecutive lines matching ``pattern`` (their order is thread timing)."""
    out, run = [], []
    for line in [*lines, None]:
        if line is not None and re.match(pattern, line):
            run.append(line)
            continue
        # all starts, then all ends: one plausible order whatever the threads did
        out += sorted(run, key=lambda text: (": started" not in text, text))
        run = []
        if line is not None:
            out.append(line)
    return out


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _golden_path(name: str) -> tuple[str, str]:
    """(the file to compare with, the file UPDATE_GOLDEN writes). conda's own lines differ
    between releases (24.11 and 26.1 print other spinners and `conda info` keys than 26.7):
    ``NAME@24.11.txt`` holds what an older conda prints where it differs; NAME.txt is 26.7's."""
    from conda_cache_plus.conda_layer.compat import conda_version_tuple

    generic = os.path.join(GOLDEN, name)
    have = conda_version_tuple()[:2]
    if have >= (26, 7):
        return generic, generic
    stem, ext = os.path.splitext(name)
    specific = os.path.join(GOLDEN, f"{stem}@{have[0]}.{have[1]}{ext}")
    return (specific if os.path.exists(specific) else generic), specific


def check_golden(name: str, text: str) -> None:
    path, own = _golden_path(name)
    if os.environ.get("UPDATE_GOLDEN") or not os.path.exists(path):
        if not os.environ.get("UPDATE_GOLDEN") and os.environ.get("CI"):
            pytest.fail(f"golden file {name} is missing; run with UPDATE_GOLDEN=1")
        generic = os.path.join(GOLDEN, name)
        if own != generic and os.path.exists(generic) and _read(generic) == text:
            return  # this conda prints what 26.7 prints
        os.makedirs(GOLDEN, exist_ok=True)
        with open(own, "w") as fh:
            fh.write(text)
        return
    expected = _read(path)
    rel = os.path.relpath(path, TESTS)
    assert text == expected, f"output differs from tests/{rel} (UPDATE_GOLDEN=1 rewrites)"


def assert_log_friendly(text: str) -> None:
    assert "\x1b" not in text, "ANSI escape in plain output"
    assert "\r" not in text, "carriage return in plain output"
    assert "\b" not in text


# -- the backend is there ------------------------------------------------------------------------
@needs_plugin
@requires_conda_at_least((26, 7), "--console validation against registered backends")
def test_console_plain_is_a_registered_choice(world):
    proc = world.conda("info", "--console", "definitely-not-a-backend")
    assert proc.returncode != 0
    assert "plain" in proc.stderr  # argparse lists the valid choices


def test_hook_yields_the_backend_and_the_renderer_is_complete():
    from conda.plugins.types import CondaReporterBackend, ReporterRendererBase

    from conda_cache_plus import plugin

    (backend,) = list(plugin.conda_reporter_backends())
    assert isinstance(backend, CondaReporterBackend)
    assert backend.name == "plain"
    renderer = backend.renderer()  # conda instantiates with no arguments; ABCs must be satisfied
    assert isinstance(renderer, ReporterRendererBase)


def test_progress_bar_takes_condas_kwargs(capsys):
    from conda.plugins.types import ProgressBarBase, SpinnerBase

    from conda_cache_plus.conda_layer.reporter_backend import PlainReporterRenderer

    r = PlainReporterRenderer()
    with r.progress_bar_context_manager() as ctx:
        bar = r.progress_bar(
            f"{'zlib-1.3':<20.20} | " + f"{'87 KB':<9} | ",
            context_manager=ctx,
            enabled=False,  # conda says False off a terminal: plain prints anyway
            leave=False,
            position=None,
        )
        assert isinstance(bar, ProgressBarBase)
        bar.update_to(0.5)
        bar.update_to(1)
        bar.finish()
        bar.refresh()
        bar.close()
    spinner = r.spinner("Solving environment", "failed\n")  # positional, as conda calls it
    assert isinstance(spinner, SpinnerBase)
    with spinner:
        pass
    out = capsys.readouterr().out
    assert "zlib-1.3 (87 KB): started" in out
    assert "zlib-1.3 (87 KB): done in " in out
    assert "Solving environment: done" in out
    assert_log_friendly(out)


# -- goldens ---------------------------------------------------------------------------------------
VOLATILE_INFO_KEYS = (
    "conda version",
    "python version",
    "virtual packages",
    "platform",
    "user-agent",
    "UID:GID",
    "populated config files",
    "conda av data dir",
    "base environment",
    "netrc file",
    "temporary directory",
    "conda-build version",
)


def mask_info(world: CondaWorld, text: str) -> str:
    out = []
    skipping = False
    for line in world.mask(text).splitlines():
        key, sep, _ = line.partition(" : ")
        if sep and key.strip() in VOLATILE_INFO_KEYS:
            out.append(f"{key} : <masked>")
            skipping = True
            continue
        if skipping and line.startswith(" ") and not sep:
            continue  # continuation lines of a masked value
        skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


@needs_plugin
def test_conda_info_console_plain(world):
    proc = world.conda("info", "--console", "plain")
    assert proc.returncode == 0, proc.stderr
    assert_log_friendly(proc.stdout)
    check_golden("conda_info_plain.txt", mask_info(world, proc.stdout))


@needs_plugin
def test_conda_env_list_console_plain(world, created):
    proc = world.conda("env", "list", "--console", "plain")
    assert proc.returncode == 0, proc.stderr
    assert_log_friendly(proc.stdout)
    # column widths follow the longest name, which is the venv's own name on conda 24.11
    check_golden("conda_env_list_plain.txt", re.sub(r" {2,}", "  ", world.mask(proc.stdout)))


@needs_plugin
def test_conda_env_list_via_condarc_and_env_var(world, created):
    with open(world.env["CONDARC"], "w") as fh:
        fh.write("console: plain\n")
    try:
        via_rc = world.conda("env", "list")
    finally:
        os.remove(world.env["CONDARC"])
    via_env = world.conda("env", "list", env={"CONDA_CONSOLE": "plain"})
    flag = world.conda("env", "list", "--console", "plain")
    assert via_rc.stdout == via_env.stdout == flag.stdout
    assert "Name" in flag.stdout and "Flags" in flag.stdout


@needs_plugin
def test_conda_create_console_plain(world, created):
    assert_log_friendly(created.stdout)
    lines = world.mask(created.stdout).splitlines()
    lines = _sort_runs(lines, r"^demo-\S+ \(.*\): (started|done)")
    text = "\n".join(lines) + "\n"
    assert "demo-tool-2.0 (1 KB): started" in text
    check_golden("conda_create_plain.txt", text)


@needs_plugin
def test_conda_create_console_plain_lines_are_whole_on_every_conda(world, created):
    """conda prints its fetch heading without a newline off a terminal (every supported
    version); the first package line must not be glued to it."""
    lines = created.stdout.splitlines()
    heading = [line for line in lines if line.startswith("Downloading and Extracting")]
    assert heading == ["Downloading and Extracting Packages: ...working..."], created.stdout
    done = [line for line in lines if re.match(r"^demo-\S+ \(.*\): done in \d", line)]
    assert len(done) == 2, created.stdout
    assert "progress: 2 of 2 done" in created.stdout


@needs_plugin
def test_conda_create_prompt_with_stdin_closed_takes_the_default_like_classic(world):
    prefix = os.path.join(world.root, "unattended")
    proc = world.conda(
        "create",
        "--offline",
        "-p",
        prefix,
        "-c",
        world.channel,
        "--override-channels",
        "demo-data",
        "--console",
        "plain",
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stdin is closed; answering yes" in proc.stdout
    assert os.path.exists(os.path.join(prefix, "conda-meta", "history"))


@needs_plugin
def test_conda_create_prompt_reads_an_answer(world):
    prefix = os.path.join(world.root, "answered")
    proc = world.conda(
        "create",
        "--offline",
        "-p",
        prefix,
        "-c",
        world.channel,
        "--override-channels",
        "demo-data",
        "--console",
        "plain",
        input="y\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Proceed? [yes/no, default: yes] yes\n" in proc.stdout
    assert os.path.exists(os.path.join(prefix, "conda-meta", "history"))


@needs_plugin
def test_renderer_prompt_in_a_real_process_with_stdin_closed(world):
    code = (
        "from conda_cache_plus.conda_layer.reporter_backend import PlainReporterRenderer as R; "
        "print('ANSWER', R().prompt('Remove', default='yes'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=world.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ANSWER yes" in proc.stdout  # the default, as classic


@pytest.fixture(scope="module")
def fixed_cache(tmp_path_factory):
    """A cache whose listing does not depend on where the test runs (fixed channel URL)."""
    root = tmp_path_factory.mktemp("fixedcache")
    out = root / "built"
    pkgs = [
        pkgbuild.build_package(str(out), "alpha", "1.0", "0", fmt=".conda"),
        pkgbuild.build_package(str(out), "beta", "2.1", "h1", fmt=".conda", depends=["alpha"]),
        pkgbuild.build_package(str(out), "gamma", "0.5", "0", fmt=".tar.bz2"),
    ]
    pkgs_dir = str(root / "pkgs")
    populate(pkgs_dir, pkgs[:2])
    populate(pkgs_dir, pkgs[2:], extract=False)
    return pkgs_dir


@needs_plugin
def test_conda_cache_list_console_plain(world, fixed_cache):
    proc = world.conda("cache", "list", "--pkgs-dir", fixed_cache, "--console", "plain")
    assert proc.returncode == 0, proc.stderr
    assert_log_friendly(proc.stdout)
    text = proc.stdout.replace(fixed_cache, "<PKGS>")
    check_golden("conda_cache_list_plain.txt", text)


@pytest.fixture(scope="module")
def fetched(world, tmp_path_factory):
    """`conda cache fetch --console plain` from a channel's repodata into an empty cache."""
    root = tmp_path_factory.mktemp("fetchworld")
    pkgs_dir = str(root / "pkgs")
    repodata = os.path.join(world.channel_dir, "noarch", "repodata.json")
    proc = world.conda(
        "cache",
        "fetch",
        "--repodata",
        repodata,
        "demo-tool-2.0-0.conda",
        "demo-lib-1.1-0.conda",
        "--pkgs-dir",
        pkgs_dir,
        "--console",
        "plain",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, pkgs_dir


@needs_plugin
def test_conda_cache_fetch_console_plain(world, fetched):
    proc, pkgs_dir = fetched
    assert_log_friendly(proc.stdout)
    lines = world.mask(proc.stdout.replace(pkgs_dir, "<PKGS>")).splitlines()
    lines = _sort_runs(lines, r"^\S+ \(.*\): (started|done)")
    check_golden("conda_cache_fetch_plain.txt", "\n".join(lines) + "\n")


@needs_plugin
def test_conda_cache_verify_console_plain(world, fetched):
    _, pkgs_dir = fetched
    proc = world.conda("cache", "verify", "--pkgs-dir", pkgs_dir, "--console", "plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_log_friendly(proc.stdout)
    check_golden(
        "conda_cache_verify_plain.txt", world.mask(proc.stdout.replace(pkgs_dir, "<PKGS>"))
    )
