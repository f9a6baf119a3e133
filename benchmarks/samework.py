"""What every benchmark checks before it prints a ratio: that its contenders did the same work.

A ratio between two programs means something only when both did the same job: found the same
unused entries, read the same number of records, extracted the same files, hashed the same bytes.
Each benchmark collects what each contender produced (a count, a set of names, a tree's
signature) and passes it to :func:`require_same`, which stops the benchmark with exit status 3
and the difference when they disagree, instead of printing a ratio that compares unlike work.
"""

from __future__ import annotations

import os
import stat
import sys

EXIT_DIFFERENT_WORK = 3


class DifferentWork(SystemExit):
    def __init__(self, message: str) -> None:
        print(f"DIFFERENT WORK: {message}", file=sys.stderr, flush=True)
        super().__init__(EXIT_DIFFERENT_WORK)
        self.message = message


def _show(value, limit: int = 8) -> str:
    if isinstance(value, (set, frozenset)):
        items = sorted(value, key=str)
        more = f" ... ({len(items)} in all)" if len(items) > limit else ""
        return "{" + ", ".join(map(str, items[:limit])) + more + "}"
    return repr(value)


def require_same(what: str, results: dict[str, object], expected: object = None) -> None:
    """Stop unless every contender's result equals ``expected`` (or, without it, each other).

    ``results`` maps a contender's label to what it produced (a count, a set, a signature).
    """
    if not results:
        raise DifferentWork(f"{what}: no contender produced anything")
    first = next(iter(results))
    ref_label, ref = ("expected", expected) if expected is not None else (first, results[first])
    bad = {label: v for label, v in results.items() if v != ref}
    if not bad:
        return
    lines = [f"{what}: {ref_label} = {_show(ref)}"]
    for label, v in bad.items():
        if isinstance(v, (set, frozenset)) and isinstance(ref, (set, frozenset)):
            lines.append(f"  {label}: {len(v)} (missing {_show(ref - v)}, extra {_show(v - ref)})")
        else:
            lines.append(f"  {label} = {_show(v)}")
    raise DifferentWork("\n".join(lines))


def require_positive(what: str, value: int) -> None:
    """Stop when a contender did nothing at all (e.g. 0 unused: every row would agree)."""
    if not value:
        raise DifferentWork(f"{what}: nothing was done (0), so no ratio would mean anything")


def tree_signature(root: str, skip: frozenset[str] = frozenset()) -> tuple[int, int, int, int]:
    """(regular files, their bytes, symlinks, directories) under ``root``, not following links;
    relative paths in ``skip`` (e.g. a metadata file only one contender writes, or a directory)
    are left out."""
    files = size = links = dirs = 0
    for top, subdirs, names in os.walk(root):
        rel_top = os.path.relpath(top, root)
        if skip:
            prefix = "" if rel_top == "." else rel_top + os.sep
            subdirs[:] = [d for d in subdirs if prefix + d not in skip]
        for name in names:
            rel = name if rel_top == "." else os.path.join(rel_top, name)
            if rel in skip or name in skip:
                continue
            st = os.lstat(os.path.join(top, name))
            if stat.S_ISLNK(st.st_mode):
                links += 1
            else:
                files += 1
                size += st.st_size
        for name in subdirs:
            if os.path.islink(os.path.join(top, name)):
                links += 1
            else:
                dirs += 1
    return files, size, links, dirs


def load() -> str:
    """The 1, 5 and 15-minute load averages, for the line printed next to every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} CPUs"


def conda_importable() -> bool:
    """Whether conda's columns can be measured here (else they are reported as n/a)."""
    try:
        import conda.core.package_cache_data  # noqa: F401
    except Exception:
        return False
    return True


def precompile() -> None:
    """Compile the package's modules to bytecode first, as installing a wheel or a conda package
    does: with PYTHONDONTWRITEBYTECODE set (as on this machine) and an editable checkout, every
    command would otherwise compile every module it imports from source (~0.1 s for a verb),
    which conda's own, installed, modules never pay."""
    import compileall

    import conda_cache_plus

    compileall.compile_dir(os.path.dirname(conda_cache_plus.__file__), quiet=1)
