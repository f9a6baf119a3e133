"""A throwaway conda user with a file:// channel, for tests that run real conda."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata

import pytest

from conda_cache_plus import pkgbuild


def plugin_installed() -> bool:
    return any(ep.value == "conda_cache_plus.plugin" for ep in metadata.entry_points(group="conda"))


needs_plugin = pytest.mark.skipif(
    not plugin_installed(), reason="conda-cache-plus is not installed (no conda entry point)"
)


class CondaWorld:
    """A throwaway user (HOME, pkgs, envs) and a file:// channel built with pkgbuild."""

    def __init__(self, root):
        self.root = str(root)
        self.home = os.path.join(self.root, "home")
        self.pkgs = os.path.join(self.root, "pkgs")
        self.envs = os.path.join(self.root, "envs")
        self.channel_dir = os.path.join(self.root, "channel")
        os.makedirs(self.home, exist_ok=True)
        self.packages = pkgbuild.demo_channel(self.channel_dir)
        self.channel = "file://" + self.channel_dir
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONDA_", "_CE_", "_CONDA")) and k != "CONDARC"
        }
        self.env.update(
            HOME=self.home,
            CONDA_PKGS_DIRS=self.pkgs,
            CONDA_ENVS_DIRS=self.envs,
            XDG_CACHE_HOME=os.path.join(self.root, "xdg-cache"),
            XDG_CONFIG_HOME=os.path.join(self.root, "xdg-config"),
            CONDA_SOLVER="classic",
            CONDA_REGISTER_ENVS="false",
            CONDA_NOTIFY_OUTDATED_CONDA="false",
            CONDARC=os.path.join(self.root, "condarc"),
            PYTHONWARNINGS="ignore",
        )

    def conda(self, *args, stdin=subprocess.DEVNULL, input=None, timeout=180, env=None):
        full = dict(self.env)
        full.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "conda", *args],
            capture_output=True,
            text=True,
            env=full,
            stdin=None if input is not None else stdin,
            input=input,
            timeout=timeout,
        )

    def mask(self, text: str) -> str:
        text = text.replace(self.root, "<TMP>")
        text = text.replace(os.path.realpath(self.root), "<TMP>")
        text = text.replace(sys.prefix, "<ROOT>")
        # conda 24.11 names the root environment by its directory (the venv's name here)
        root_name = re.escape(os.path.basename(sys.prefix))
        text = re.sub(rf"^{root_name}(?= +\S+ +<ROOT>$)", "<ROOT-NAME>", text, flags=re.M)
        text = re.sub(r"\b\d+\.\d+s\b", "<T>s", text)  # durations
        return text
