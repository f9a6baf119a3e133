"""What ``conda_post_commands`` needs on every conda command, without the lock machinery.

conda asks every plugin for its post-command hooks at the end of every command (``conda list``
too) and only then keeps those whose ``run_for`` names the command, so the hook's imports are a
cost of every command. The locks themselves live in :mod:`.transaction_locks`, which the
post-solve hook imports: a process that never imported it holds no lock to release.
"""

from __future__ import annotations

import sys

# The commands whose transactions take cache locks (conda's names for them).
COMMANDS = frozenset(
    {"install", "create", "update", "upgrade", "remove", "uninstall", "env_create", "env_update"}
)

_LOCKS_MODULE = __name__.rpartition(".")[0] + ".transaction_locks"


def post_command(command: str) -> None:
    """Release whatever this process's transactions still hold."""
    locks = sys.modules.get(_LOCKS_MODULE)
    if locks is not None:
        locks.release_all()
