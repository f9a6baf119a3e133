"""The fetch plan as text for people."""

from __future__ import annotations

from ..fetch.plan import COPY, DOWNLOAD, EXTRACT, NONE, FetchPlan
from ..model.sizes import human_bytes


def describe_plan(p: FetchPlan) -> str:
    """The plan for people (``--dry-run``)."""
    verbs = {
        NONE: "keep",
        EXTRACT: "extract",
        COPY: "copy+extract",
        DOWNLOAD: "download+extract",
    }
    from .text import table, width, wrap

    rows = [
        [
            verbs[item.action],
            item.ref.fn,
            human_bytes(item.ref.size) if item.ref.size is not None else "?",
        ]
        for item in p.items
    ]
    lines = []
    table_lines = table(["Action", "Package", "Size"], rows, right={2}, shrink=(1,), indent=2)
    for n, line in enumerate(table_lines.splitlines()):
        why = "Why" if n == 0 else p.items[n - 1].reason
        if len(line) + 4 + len(why) <= width():
            lines.append(f"  {line}  {why}")
        else:  # a long reason goes under its row rather than past the 80th column
            lines += [f"  {line}", wrap(f"      {why}", "      ")]
    c = p.counts()
    head = wrap(
        f"{len(p.items)} package(s): {c[NONE]} already in the cache, {c[DOWNLOAD]} to download "
        f"({p.download_size_text()}), {c[COPY]} to copy, {c[EXTRACT]} to extract only.",
        "  ",
    )
    if p.target:
        head += f"\nTarget cache: {p.target}" + (" (will be created)" if p.create_target else "")
    return "\n".join([head, *lines])
