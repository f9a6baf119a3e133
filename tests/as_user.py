"""Run a command as an ordinary (non-root) user, for tests of permissions.

``chmod 000`` means nothing to root, so a test of "unreadable" must run the CLI as someone else:

- not root: as ourselves;
- root: as a throw-away user (created with ``useradd`` once per test session, removed at its
  end by ``remove_created``, which conftest.py calls), through ``setpriv``. Its
  interpreter is ours when that user can run it; else (ours under a 0700 ``/root``) the system's
  ``pythonX.Y`` of the same version, with our ``site-packages`` on ``PYTHONPATH``. When neither
  works the test is skipped, with the reason.

The files the command needs live under ``world`` (a 0755 directory outside the 0700 pytest
temp root), owned by that user.
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

# Users and groups are per test session (the session's pid in the name): two sessions on one
# machine never share, or remove, each other's; what a session made goes when it ends.
SESSION = os.getpid()
USER = f"cpx-nonroot-{SESSION}"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_created: list[tuple[str, str]] = []  # (userdel|groupdel, name), newest first
_temp_dirs: list[str] = []


def session_name(base: str) -> str:
    """A user or group name of this session (at most 32 characters, useradd's limit)."""
    return f"{base}-{SESSION}"


def ensure_group(name: str) -> str | None:
    """Create group ``name`` unless it exists (removed at the end of the session); or why not."""
    try:
        grp.getgrnam(name)
        return None
    except KeyError:
        pass
    if not shutil.which("groupadd"):
        return "groupadd is not available"
    proc = subprocess.run(["groupadd", name], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"groupadd {name} failed: {proc.stderr.strip()}"
    _created.insert(0, ("groupdel", name))
    return None


def ensure_user(name: str, groups: tuple[str, ...] = ()) -> str | None:
    """Create user ``name`` (no home, no login shell, in ``groups``) unless it exists; it is
    removed, with its own group, at the end of the session. None, or why it could not be made."""
    try:
        pwd.getpwnam(name)
        return None
    except KeyError:
        pass
    if not shutil.which("useradd"):
        return "useradd is not available to create a non-root user"
    cmd = ["useradd", "--no-create-home", "--shell", "/bin/false"]
    if groups:
        cmd += ["-G", ",".join(groups)]
    proc = subprocess.run([*cmd, name], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"useradd {name} failed: {proc.stderr.strip()}"
    _created.insert(0, ("userdel", name))
    return None


def remove_stale() -> list[str]:
    """Remove the users and groups of earlier sessions that were killed before they could (their
    names end in the pid of a process that is gone); the names removed. Root only."""
    if os.geteuid() != 0:
        return []
    removed = []
    entries = [("userdel", p.pw_name) for p in pwd.getpwall()]
    entries += [("groupdel", g.gr_name) for g in grp.getgrall()]
    for cmd, name in entries:  # users first: a user's own group goes with it
        base, _, pid = name.rpartition("-")
        if not (name.startswith("cpx-") and base and pid.isdigit()) or int(pid) == SESSION:
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that session is still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if subprocess.run([cmd, name], capture_output=True).returncode == 0:
            removed.append(name)
    return removed


def remove_created() -> list[str]:
    """Remove every user and group this session made, and its temporary copies of the project;
    the names that could not be removed."""
    left = []
    while _created:
        cmd, name = _created.pop(0)
        proc = subprocess.run([cmd, name], capture_output=True, text=True)
        if proc.returncode != 0:
            left.append(f"{name} ({cmd}: {proc.stderr.strip()})")
    while _temp_dirs:
        shutil.rmtree(_temp_dirs.pop(), ignore_errors=True)
    _user.cache_clear()
    _project_root.cache_clear()
    _interpreter.cache_clear()
    interpreter_as.cache_clear()
    return left


@functools.cache
def _user() -> tuple[int, int] | str:
    """(uid, gid) of the user to run as, or why there is none."""
    why = ensure_user(USER)
    if why:
        return why
    pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


def _others_may_read(path: str) -> bool:
    """Whether every directory down to ``path`` lets other users through (o+x), and ``path``
    itself lets them read (o+r)."""
    path = os.path.abspath(path)
    try:
        if not os.stat(path).st_mode & 0o004:
            return False
        while True:
            if not os.stat(path).st_mode & 0o001:
                return False
            parent = os.path.dirname(path)
            if parent == path:
                return True
            path = parent
    except OSError:
        return False


@functools.cache
def _project_root() -> str:
    """Where the other user imports this project from: the checkout itself, or (a checkout
    under a private directory, as in CI) a world-readable copy of the package."""
    if _others_may_read(os.path.join(ROOT, "conda_cache_plus")):
        return ROOT
    copy = tempfile.mkdtemp(prefix="cpx-project-")
    _temp_dirs.append(copy)
    os.chmod(copy, 0o755)
    shutil.copytree(
        os.path.join(ROOT, "conda_cache_plus"),
        os.path.join(copy, "conda_cache_plus"),
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for root, dirs, files in os.walk(copy):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return copy


def _paths() -> list[str]:
    paths = [_project_root()]
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in paths:
            paths.append(p)
    return paths


def _prefix(uid: int, gid: int, groups: tuple[int, ...] = (), user: str = USER) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv:
        extra = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
        return [setpriv, f"--reuid={uid}", f"--regid={gid}", extra, "--"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--"]  # its groups come from /etc/group
    raise RuntimeError("neither setpriv nor runuser")


@functools.cache
def _interpreter() -> tuple[list[str], dict] | str:
    """(command prefix up to and including python, extra environment), or why not."""
    if os.geteuid() != 0:
        return [sys.executable], {}
    who = _user()
    if isinstance(who, str):
        return who
    return interpreter_as(*who)


@functools.cache
def interpreter_as(
    uid: int, gid: int, groups: tuple[int, ...] = (), user: str = USER
) -> tuple[list[str], dict] | str:
    """As root: the command prefix running Python as ``uid``/``gid`` with supplementary
    ``groups``, and its extra environment; or why there is none."""
    if not (shutil.which("setpriv") or shutil.which("runuser")):
        return "neither setpriv nor runuser is available"
    prefix = _prefix(uid, gid, groups, user)
    probe = "import conda_cache_plus, zstandard"
    env = {"PYTHONPATH": os.pathsep.join(_paths())}
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [sys.executable] + [
        p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}") if os.path.exists(p)
    ]
    for python in candidates:
        proc = subprocess.run(
            [*prefix, python, "-c", probe],
            capture_output=True,
            env={**os.environ, **env},
            cwd="/",
        )
        if proc.returncode == 0:
            return [*prefix, python], env
    return (
        f"no Python {version} that user {user} may run with this project importable "
        f"(tried {', '.join(candidates)})"
    )


def require_nonroot():
    """The interpreter command and environment, or skip the test with the reason."""
    got = _interpreter()
    if isinstance(got, str):
        pytest.skip(got)
    return got


class World:
    """A directory the non-root user owns, and a way to run Python commands there as them."""

    def __init__(self):
        self.python, self.env = require_nonroot()
        self.path = tempfile.mkdtemp(prefix="cpx-nonroot-", dir="/tmp")
        os.chmod(self.path, 0o755)

    def hand_over(self) -> None:
        """Give every file under the world to the user (after the test built it as root)."""
        if os.geteuid() != 0:
            return
        uid, gid = _user()
        for root, dirs, files in os.walk(self.path):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), uid, gid)
        os.lchown(self.path, uid, gid)

    @property
    def ids(self) -> tuple[int, int]:
        """(uid, gid) the commands run as."""
        if os.geteuid() != 0:
            return os.getuid(), os.getgid()
        return _user()

    def environ(self, env=None) -> dict:
        return {
            **os.environ,
            "HOME": self.path,
            "XDG_CACHE_HOME": os.path.join(self.path, ".cache"),
            **self.env,
            **(env or {}),
        }

    def run(self, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.python, *args],
            capture_output=True,
            text=True,
            env=self.environ(env),
            cwd=self.path,
            timeout=timeout,
        )

    def cli(self, *args, env=None) -> subprocess.CompletedProcess:
        return self.run("-m", "conda_cache_plus", *args, env=env)

    def cleanup(self) -> None:
        for root, dirs, _files in os.walk(self.path):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700)
                except OSError:
                    pass
        shutil.rmtree(self.path, ignore_errors=True)
