"""The cyclic garbage collector paused while a verb builds large, acyclic data.

A scan allocates one small object graph per entry and frees none, and a verb's output allocates
as much again on top: each collection would re-walk the growing heap for nothing (at 10⁵ entries
a ``list --json`` spent a quarter of its time there). The data these verbs build has no cycles,
so reference counting frees it all the same.
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def no_gc():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # Everything allocated meanwhile sits in the youngest generation: the first
            # collections after enable() would walk all of it, twice. Move it straight to the
            # oldest generation instead (freeze + unfreeze does that without a walk).
            gc.freeze()
            gc.unfreeze()
            gc.enable()
