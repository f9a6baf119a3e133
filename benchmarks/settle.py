"""Putting the disk in the same state before every timed run of a benchmark.

On this machine's root filesystem (ext4 *without a journal*), creating an inode skips every inode
of its block group that was deleted in the last 60 s (5 min while its inode-table block is
dirty), checking them one at a time in the buffer cache: right after a run's output (15,000
files) is deleted, the next run's file creations spend 5-15 s of kernel CPU in that scan, and so
whoever runs after a delete is 5-10x slower than on a quiet disk. Dropping the page cache after
``sync`` ends it (a block that is not cached counts as "not recent") and starts every run cold,
as after a reboot. Without ``drop_caches`` the next best is to wait.
"""

from __future__ import annotations

import os
import time


def block_device(path: str) -> str | None:
    """The /sys/block name of the disk holding ``path`` (None for tmpfs and the like)."""
    dev = os.stat(path).st_dev
    link = os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not os.path.exists(link):
        return None
    if os.path.exists(os.path.join(link, "partition")):
        link = os.path.dirname(link)
    return os.path.basename(link)


def disk_stat(dev: str | None) -> tuple[int, int, int]:
    """(reads completed, writes completed, requests in flight) of ``dev``."""
    if dev is None:
        return (0, 0, 0)
    with open(f"/sys/block/{dev}/stat") as fh:
        f = fh.read().split()
    return int(f[0]), int(f[4]), int(f[8])


def can_drop_caches() -> bool:
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def settle(path: str, drop_caches: bool) -> None:
    """``sync``, optionally drop the page cache, then wait (at most 15 s) until the disk under
    ``path`` has had no request in flight for a second."""
    os.sync()
    if drop_caches:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    dev = block_device(path)
    if dev is None:
        return
    quiet_since = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = time.monotonic()
        if disk_stat(dev)[2] == 0:
            quiet_since = quiet_since or now
            if now - quiet_since >= 1.0:
                return
        else:
            quiet_since = None
        time.sleep(0.05)
