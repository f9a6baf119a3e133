"""Write a pixi.lock with py-rattler's own writer (rattler_lock, the code pixi uses), and install
an environment of a pixi.lock with py-rattler.

    python rattler_lock.py write CHANNEL_URL OUT PLATFORM[,...] ENV=SPEC[,...] [pypi=NAME@URL]...
    python rattler_lock.py install LOCKFILE ENV PLATFORM PREFIX CACHE_DIR [ARCHIVES_DIR]

``write`` solves each environment against the channel for PLATFORM (plus noarch), adds the PyPI
packages to every environment, and writes the lockfile. ``install`` reads the lockfile with
py-rattler and installs the environment's conda packages; with ARCHIVES_DIR, each archive is
taken from that directory (a conda package cache, where fetch put them) instead of its URL.
Both print one line and end with ``os._exit``: py-rattler's interpreter may abort at exit once
the work is done.
"""

import asyncio
import os
import sys


async def write(channel: str, out: str, platform: str, args: list[str]) -> None:
    import rattler
    from rattler import LockChannel, LockFile, LockPlatform

    plats = [LockPlatform(p) for p in platform.split(",")]
    lock = LockFile(plats)
    envs = [a for a in args if not a.startswith("pypi=")]
    pypi = [a[len("pypi=") :].split("@", 1) for a in args if a.startswith("pypi=")]
    for env in envs:
        name, specs = env.split("=", 1)
        lock.set_channels(name, [LockChannel(channel)])
        for plat in plats:
            records = await rattler.solve(
                [rattler.Channel(channel)],
                specs.split(","),
                platforms=[plat.name, "noarch"],
                timestamp_policy="allow-missing",
            )
            for record in records:
                lock.add_conda_package(name, plat, record)
            for pname, url in pypi:
                lock.add_pypi_package(name, plat, pname, "1.0", url)
    lock.to_path(out)
    print(out)


async def install(
    lockfile: str, env: str, platform: str, prefix: str, cache: str, archives
) -> None:
    import rattler
    from rattler import LockFile

    lock = LockFile.from_path(lockfile)
    environment = lock.environment(env)
    plat = next(p for p in environment.platforms() if p.name == platform)
    records = environment.conda_repodata_records_for_platform(plat) or []
    if archives:
        from pathlib import Path

        for record in records:
            record.url = (Path(archives) / record.url.rsplit("/", 1)[-1]).as_uri()
    await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False)
    print(" ".join(sorted(f"{r.name.normalized}-{r.version}-{r.build}" for r in records)))


if __name__ == "__main__":
    code = 0
    try:
        if sys.argv[1] == "write":
            asyncio.run(write(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
        else:
            archives = sys.argv[7] if len(sys.argv) > 7 else None
            asyncio.run(install(*sys.argv[2:7], archives))
    except Exception as exc:  # reported, then the same hard exit
        print(f"rattler_lock: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
