"""Hidden setup steps of the README's example outputs (see tests/test_readme.py).

``python readme_scenario.py env PREFIX DIST...``: an environment at PREFIX hard-linking the
given entries of ``demo-pkgs``, registered in ``~/.conda/environments.txt`` (what ``conda
create`` leaves behind, made without conda so the conda-less run shows the same).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def make_env(prefix: str, dists: list[str]) -> None:
    from envtools import make_env as build_env

    from conda_cache_plus.layouts.caches import PackageCaches

    records = {r.basename: r for r in PackageCaches(["demo-pkgs"], use_index=False).records()}
    prefix = os.path.abspath(prefix)
    build_env(prefix, [records[d] for d in dists])
    registry = os.path.join(os.path.expanduser("~"), ".conda", "environments.txt")
    os.makedirs(os.path.dirname(registry), exist_ok=True)
    with open(registry, "a") as fh:
        fh.write(prefix + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["env"]:
        make_env(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(f"usage: {sys.argv[0]} env PREFIX DIST...")
