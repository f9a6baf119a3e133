"""A small channel for lockfile tests, and lockfiles of it as the real tools write them.

- ``lock_channel(dir)``: noarch ``lk-data``, ``lk-tool`` (needs lk-lib, lk-data), ``lk-test``
  (needs lk-tool), and ``lk-lib`` built for linux-64 and osx-arm64: reproducible builds, so the
  hashes are the same on every machine.
- ``conda_lock_yml(channel_url, out)``: a ``conda-lock.yml`` made by the real conda-lock when it
  can run here (``conda-lock`` on PATH or beside this Python, and conda importable), else the
  golden one it made (tests/golden/lockfiles/conda-lock.yml, conda-lock 4.0.3) for this channel.
- ``pixi_lock_v7(channel_url, out)``: written by py-rattler's own writer (tests/rattler_lock.py).
- ``pixi_lock_v6(channel_url, out, ...)``: pixi's documented version 6 format, as text.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conda_cache_plus.pkgbuild import BuiltPackage, build_package, write_channel

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_CONDA_LOCK = os.path.join(HERE, "golden", "lockfiles", "conda-lock.yml")
CHANNEL_MARK = "file:///@CHANNEL@"
RATTLER_LOCK = os.path.join(HERE, "rattler_lock.py")
PLATFORMS = ("linux-64", "osx-arm64")
PYPI_URL = "https://files.pythonhosted.org/packages/py3/r/requests/requests-2.32.3-py3-none-any.whl"


def lock_channel(channel_dir: str) -> dict[str, BuiltPackage]:
    for sub in ("noarch", *PLATFORMS):
        os.makedirs(os.path.join(channel_dir, sub), exist_ok=True)
    noarch = os.path.join(channel_dir, "noarch")
    built = [
        build_package(noarch, "lk-data", "1.0", "0"),
        build_package(
            os.path.join(channel_dir, "linux-64"), "lk-lib", "2.0", "h1", subdir="linux-64"
        ),
        build_package(
            os.path.join(channel_dir, "osx-arm64"), "lk-lib", "2.0", "h2", subdir="osx-arm64"
        ),
        build_package(noarch, "lk-tool", "3.0", "0", depends=["lk-lib >=2", "lk-data"]),
        build_package(noarch, "lk-test", "0.1", "0", depends=["lk-tool"]),
    ]
    write_channel(channel_dir, built)
    return {p.fn: p for p in built}


def _conda_lock_exe() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "conda-lock")
    found = os.environ.get("CONDA_LOCK_EXE") or shutil.which("conda-lock")
    return found or (beside if os.path.exists(beside) else None)


def conda_lock_yml(channel_url: str, out_dir: str) -> tuple[str, str]:
    """(path, how): how is "conda-lock" when the real tool made it now, "golden" otherwise."""
    out = os.path.join(out_dir, "conda-lock.yml")
    exe = _conda_lock_exe()
    if exe and shutil.which("python") and _conda_importable():
        env_yml = os.path.join(out_dir, "environment.yml")
        with open(env_yml, "w") as fh:
            fh.write(f"channels:\n  - {channel_url}\ndependencies:\n  - lk-tool\n")
        shim = os.path.join(out_dir, "conda")
        with open(shim, "w") as fh:  # conda-lock runs `conda create --dry-run --json`
            fh.write(f'#!/bin/sh\nexec "{sys.executable}" -m conda "$@"\n')
        os.chmod(shim, 0o755)
        env = dict(os.environ, CONDA_SOLVER="classic", CONDA_PKGS_DIRS=os.path.join(out_dir, "p"))
        args = [exe, "lock", "--conda", shim, "--no-mamba", "-f", env_yml, "--lockfile", out]
        for p in PLATFORMS:
            args += ["-p", p]
        proc = subprocess.run(args, cwd=out_dir, env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            return out, "conda-lock"
    with open(GOLDEN_CONDA_LOCK) as fh:
        text = fh.read().replace(CHANNEL_MARK, channel_url.rstrip("/"))
    with open(out, "w") as fh:
        fh.write(text)
    return out, "golden"


def _conda_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("conda") is not None


def pixi_lock_v7(channel_url: str, out: str, *, pypi: bool = True) -> str:
    args = [sys.executable, RATTLER_LOCK, "write", channel_url, out, ",".join(PLATFORMS)]
    args += ["default=lk-tool", "test=lk-test"]
    if pypi:
        args.append(f"pypi=requests@{PYPI_URL}")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def pixi_lock_v6(channel_url: str, out: str, built: dict[str, BuiltPackage]) -> str:
    """pixi's version 6 format: environments -> platform -> ``conda:``/``pypi:`` references,
    and each package once in ``packages`` (here also a source package and a relative path)."""

    def url(fn: str) -> str:
        return f"{channel_url}/{built[fn].subdir}/{fn}"

    env_default = {
        "linux-64": ["lk-data-1.0-0.conda", "lk-lib-2.0-h1.conda", "lk-tool-3.0-0.conda"],
        "osx-arm64": ["lk-data-1.0-0.conda", "lk-lib-2.0-h2.conda", "lk-tool-3.0-0.conda"],
    }
    lines = ["version: 6", "environments:", "  default:", "    channels:"]
    lines += [f"    - url: {channel_url}/", "    indexes:", "    - https://pypi.org/simple"]
    lines += ["    packages:"]
    for plat, fns in env_default.items():
        lines.append(f"      {plat}:")
        lines += [f"      - conda: {url(fn)}" for fn in fns]
        lines.append(f"      - pypi: {PYPI_URL}")
        lines.append("      - conda: .")  # the workspace itself, built from source by pixi
    lines += ["  test:", "    channels:", f"    - url: {channel_url}/", "    packages:"]
    lines += ["      linux-64:", "      - conda: ./ch/noarch/lk-test-0.1-0.conda"]
    lines += [f"      - conda: {url('lk-tool-3.0-0.conda')}"]
    lines.append("packages:")
    for fn, pkg in sorted(built.items()):
        location = url(fn) if fn != "lk-test-0.1-0.conda" else "./ch/noarch/lk-test-0.1-0.conda"
        lines += [f"- conda: {location}", f"  sha256: {pkg.sha256}", f"  md5: {pkg.md5}"]
        lines += [f"  arch: {'x86_64' if pkg.subdir == 'linux-64' else 'null'}"]
        lines += [f"  size: {pkg.size}", "  timestamp: 1700000000000"]
    lines += ["- conda: .", "  name: my-workspace", "  version: 0.1.0", "  build: hbf21a9e_0"]
    lines += ["  subdir: noarch", "  input:", "    hash: 1f5c", "    globs: []"]
    lines += [f"- pypi: {PYPI_URL}", "  name: requests", "  version: 2.32.3"]
    lines += ["  sha256: 70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6"]
    lines += ["  requires_python: '>=3.8'"]
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return out
