"""``conda cache dir``: the cache directories, one per line (like ``pip cache dir``).

Scriptable by default: paths only, in the configured order, so ``cd "$(conda cache dir | head -1)"``
works. ``-v`` adds what each is, its state and where it came from; ``--json`` has the same rows.

Each row comes from a provider in :data:`PROVIDERS` (``run -> list[CacheDir]``): conda's pkgs_dirs
today; another cache layout (rattler's, say) adds its own provider with its own ``kind`` and
``source``, and every rendering here shows it without change.
"""

from __future__ import annotations

from ..model.plainclass import FieldsEq
from ..ui.text import table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

JSON_VERSION = 1


class CacheDir(FieldsEq):
    # not a dataclass: dataclasses (and inspect) would be most of what ``dir`` imports
    __slots__ = FIELDS = ("path", "kind", "source", "exists", "writable", "writable_reason")

    def __init__(
        self,
        path: str,
        kind: str,  # what sort of cache: "pkgs" (conda's pkgs_dirs), ...
        source: str,  # where the path came from: --pkgs-dir, conda, CONDA_PKGS_DIRS, condarc, ...
        exists: bool = False,
        writable: bool | None = None,
        writable_reason: str = "",
    ):
        self.path = path
        self.kind = kind
        self.source = source
        self.exists = exists
        self.writable = writable
        self.writable_reason = writable_reason

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "source": self.source,
            "exists": self.exists,
            "writable": self.writable,
            "writable_reason": self.writable_reason,
        }

    @property
    def state(self) -> str:
        if self.writable:
            return "writable"
        if self.writable is False:
            return f"read-only ({self.writable_reason})"
        return self.writable_reason or "does not exist"


def pkgs_dirs_rows(run) -> list[CacheDir]:
    """conda's package caches (pkgs_dirs), as every other verb sees them."""
    import os

    from ..layouts.kinds import RATTLER, detect, writability

    rows = []
    for path in run.pkgs_dirs:
        writable, why = writability(path)
        rows.append(
            CacheDir(
                path=path,
                kind="rattler" if detect(path).name == RATTLER else "pkgs",
                source=run.pkgs_origin,
                exists=os.path.isdir(path),
                writable=writable,
                writable_reason=why,
            )
        )
    return rows


def rattler_rows(run) -> list[CacheDir]:
    """pixi's and rattler's package caches (pixi.py) not already among pkgs_dirs: the ones that
    exist, and the ones an environment variable names."""
    import os

    from ..layouts.kinds import writability
    from ..layouts.pixi import cache_dirs

    looked_at = {os.path.realpath(p) for p in run.pkgs_dirs}
    rows = []
    for c in cache_dirs():
        path = c.pkgs_dir
        exists = os.path.isdir(path)
        if os.path.realpath(path) in looked_at or not (exists or c.source.endswith("_DIR")):
            continue
        writable, why = writability(path)
        rows.append(CacheDir(path, "rattler", c.source, exists, writable, why))
    return rows


# Each returns the rows of one kind of cache; `dir` shows them in this order.
PROVIDERS: list[Callable[[object], list[CacheDir]]] = [pkgs_dirs_rows, rattler_rows]


def configure_parser(parser) -> None:
    pass


def build(run) -> dict:
    rows = [row for provider in PROVIDERS for row in provider(run)]
    return {
        "version": JSON_VERSION,
        "pkgs_dirs_source": run.pkgs_origin,
        "dirs": [r.to_json() for r in rows],
    }


def render(data: dict, verbose: int = 0) -> str:
    dirs = data["dirs"]
    if not verbose:
        return "\n".join(d["path"] for d in dirs)
    rows = [[d["path"], d["kind"], CacheDir(**d).state, d["source"]] for d in dirs]
    return table(["Path", "Kind", "State", "From"], rows, shrink=(2, 0))


def execute(args, run) -> int:
    data = build(run)
    run.out.result(data, render(data, run.verbose))
    return 0
