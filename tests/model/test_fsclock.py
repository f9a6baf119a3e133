"""The file system's clock for the racy-timestamp rule: never another host's clock unchecked.

No NFS server runs here, so "network" is simulated by saying so (``is_network``); the probe and
the consequences for the remembered scan index are real.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import populate

from conda_cache_plus.layouts import scan_index
from conda_cache_plus.layouts.kinds import scan
from conda_cache_plus.model import fsclock
from conda_cache_plus.model.cache_paths import CacheLayout


@pytest.fixture(autouse=True)
def _fresh_offsets(monkeypatch):
    monkeypatch.setattr(fsclock, "_offsets", {})


def test_local_file_systems_use_our_clock(tmp_path):
    assert fsclock.fstype(str(tmp_path)) is not None
    assert abs(fsclock.now(str(tmp_path)) - time.time()) < 1


def test_network_file_system_is_probed_where_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(fsclock, "is_network", lambda path: True)
    probe_dir = tmp_path / "private"
    probe_dir.mkdir()
    got = fsclock.now(str(tmp_path), str(probe_dir))
    assert abs(got - time.time()) < 2  # the "server" is this kernel: no skew
    assert (probe_dir / fsclock.PROBE_NAME).exists()


def test_network_file_system_we_cannot_probe_trusts_no_timestamp(tmp_path, monkeypatch, build):
    monkeypatch.setattr(fsclock, "is_network", lambda path: True)
    pkgs = tmp_path / "pkgs"
    populate(pkgs, [build("alpha", "1.0", "0")])
    old = time.time() - 3600  # written long ago, by our clock
    for root, dirs, files in os.walk(pkgs):
        for n in dirs + files:
            os.utime(os.path.join(root, n), (old, old))
    assert fsclock.now(str(pkgs)) == fsclock.UNKNOWN
    assert not os.path.isdir(CacheLayout(str(pkgs)).private)
    scan(str(pkgs))
    # nothing was remembered: the next scan reads every record again
    assert not any(k for k in scan_index.load(str(pkgs)) if not k.startswith("\0"))


def test_a_skewed_server_clock_is_measured_not_assumed(tmp_path, monkeypatch, build):
    """A server whose clock runs an hour behind ours: a file it stamped a moment ago looks an
    hour old to our clock, and would be trusted; measured on its clock, it is not."""
    monkeypatch.setattr(fsclock, "is_network", lambda path: True)
    monkeypatch.setattr(fsclock, "_probe", lambda probe_dir: -3600.0)
    pkgs = tmp_path / "pkgs"
    populate(pkgs, [build("alpha", "1.0", "0")])
    os.makedirs(CacheLayout(str(pkgs)).private, exist_ok=True)
    behind = time.time() - 3600  # "now" on the server, as it stamped the files
    for root, dirs, files in os.walk(pkgs):
        for n in dirs + files:
            os.utime(os.path.join(root, n), (behind, behind))
    scan(str(pkgs))
    assert not any(k for k in scan_index.load(str(pkgs)) if not k.startswith("\0"))


def test_control_on_a_local_file_system_old_files_are_remembered(tmp_path, build):
    pkgs = tmp_path / "pkgs"
    populate(pkgs, [build("alpha", "1.0", "0")])
    old = time.time() - 3600
    for root, dirs, files in os.walk(pkgs):
        for n in dirs + files:
            os.utime(os.path.join(root, n), (old, old))
    scan(str(pkgs))
    assert any(k for k in scan_index.load(str(pkgs)) if not k.startswith("\0"))
