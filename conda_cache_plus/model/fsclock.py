"""The clock of the file system a path lives on, for the racy-timestamp rule of remembered state.

The scan, verify and environment indexes remember a file's fingerprint only when its mtime was
already ``RACY_SECONDS`` old when it was read (statefile.py). "Old" must be measured on the clock
that wrote the mtime: on NFS and other network file systems that is the *server's* clock, and on
a cache shared by a cluster the writer may be another host. Comparing with this host's
``time.time()`` would trust a file written a moment ago whenever the server's clock runs behind
ours. So:

- a directory we may write (a writable cache's private dir): we touch a probe file there and
  read back its mtime, which the file server stamps; the offset between that and our clock is
  remembered per device for this process;
- a local file system (per /proc/self/mountinfo) needs no probe: its clock is ours;
- a network file system we cannot write (a read-only NFS/CVMFS cache, another user's
  environment): its clock is unknown, and :func:`now` returns ``-inf`` so nothing read there is
  ever remembered; every run reads it afresh.
"""

from __future__ import annotations

import _thread
import os
import time

UNKNOWN = float("-inf")
PROBE_NAME = "clock-probe"
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "lustre",
        "gpfs",
        "beegfs",
        "afs",
        "9p",
        "virtiofs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.cvmfs2",
        "fuse.cvmfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
    }
)

_offsets: dict[int, float] = {}  # st_dev -> file system clock minus ours
_lock = _thread.allocate_lock()  # threading.Lock(), without importing threading


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fstype), longest mount point first."""
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                point = fields[4].replace("\\040", " ")
                out.append((point, right.split()[0]))
    except OSError:
        return []
    out.sort(key=lambda m: -len(m[0]))
    return out


def fstype(path: str) -> str | None:
    real = os.path.realpath(path)
    for point, kind in _mounts():
        if real == point or real.startswith(point.rstrip("/") + "/"):
            return kind
    return None


def is_network(path: str) -> bool:
    kind = fstype(path) or ""
    return kind in NETWORK_FS or kind.startswith("nfs")


def _probe(probe_dir: str) -> float | None:
    """The file system's clock minus ours, from a file we touch in ``probe_dir``."""
    path = os.path.join(probe_dir, PROBE_NAME)
    try:
        before = time.time()
        # never through a link planted in the private dir (safefs.py)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            os.utime(fd, None)  # "now", as the file server sees it (NFS: SET_TO_SERVER_TIME)
            mtime = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
        after = time.time()
    except OSError:
        return None
    return mtime - (before + after) / 2


def now(path: str, probe_dir: str | None = None) -> float:
    """The current time on the clock that stamps files under ``path`` (``UNKNOWN`` if it cannot
    be told: then no timestamp read there may be trusted)."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return time.time()
    with _lock:
        offset = _offsets.get(dev)
    if offset is None:
        offset = 0.0
        if is_network(path):
            probed = _probe(probe_dir) if probe_dir and os.path.isdir(probe_dir) else None
            offset = UNKNOWN if probed is None else probed
        with _lock:
            _offsets[dev] = offset
    return time.time() + offset
