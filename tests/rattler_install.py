"""Solve and install an environment with py-rattler (the pixi/rattler client), as pixi does.

    python rattler_install.py CHANNEL_URL PREFIX CACHE_DIR SPEC...

Run in a subprocess: py-rattler's interpreter may abort at exit once the work is done, so the
script ends with ``os._exit``.
"""

import asyncio
import os
import sys


async def main(channel: str, prefix: str, cache: str, specs: list[str]) -> None:
    import rattler

    records = await rattler.solve(
        [rattler.Channel(channel)],
        specs,
        platforms=["noarch"],
        timestamp_policy="allow-missing",
    )
    await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False)
    print(" ".join(sorted(f"{r.name.normalized}-{r.version}-{r.build}" for r in records)))


if __name__ == "__main__":
    code = 0
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
    except Exception as exc:  # reported, then the same hard exit
        print(f"rattler_install: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
