"""conda asks for post-command hooks at the end of every command: ours must not load the locks."""

from __future__ import annotations

import subprocess
import sys

from conftest import requires_conda

PROBE = """
import sys
import conda.plugins.types  # as conda has, before it asks for hooks
from conda_cache_plus import plugin
from conda_cache_plus.conda_layer import lock_release
hooks = list(plugin.conda_post_commands())
assert [h.run_for for h in hooks] == [set(lock_release.COMMANDS)], hooks
hooks[0].action("list")  # nothing was locked, nothing to release, nothing imported
assert "conda_cache_plus.conda_layer.transaction_locks" not in sys.modules
from conda_cache_plus.conda_layer import transaction_locks
released = []
transaction_locks.release_all = lambda: released.append(1)
hooks[0].action("install")
assert released == [1], released
print("ok")
"""


@requires_conda
def test_post_command_hook_loads_no_locks_and_releases_what_was_taken():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
