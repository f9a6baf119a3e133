"""``conda cache export DIR [SPEC ...] [--env PREFIX]``: the cached packages as a channel.

``DIR`` becomes (or stays) a channel that conda, mamba and pixi install from
(``conda create --offline -c file://DIR --override-channels ...``; served by any static HTTP
server it is a mirror). The JSON result is described by docs/schemas/export.json.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager

from ..envs.discovery import Environment, is_environment
from ..exceptions import EXIT_PROBLEMS_FOUND, UsageError
from ..fetch import export as engine
from ..gateways.locks import FileLock
from ..layouts.caches import PackageCaches
from ..model.cache_paths import CacheLayout
from ..model.match import matchers
from . import add_specs
from .main_usage import add_env_option

JSON_VERSION = 1
# what exports before 0.1 left in the channel; the lock is now on the directory itself
OLD_EXPORT_LOCK = ".conda-cache-export.lock"


def configure_parser(parser) -> None:
    parser.add_argument("channel_dir", metavar="DIR", help="The channel directory to write.")
    add_specs(parser, "Only packages matching these specs (default: every cached package).")
    add_env_option(parser, "Also export the packages this environment uses (repeatable).")
    parser.add_argument(
        "--link",
        action="store_true",
        help="Hard-link archives into DIR instead of copying (same file system; "
        "falls back to a copy elsewhere).",
    )
    take_specs_after_options(parser)


def take_specs_after_options(parser) -> None:
    """``export DIR --pkgs-dir X zlib``: argparse fills DIR and SPEC... where they first meet
    (DIR, no spec), so a SPEC after an option comes back unrecognized and the command fails.
    Those words are SPECs; conda's own verbs take positionals anywhere too. Set on the instance,
    as both the standalone parser and conda's sub-parsers action call it."""
    own = type(parser).parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = own(parser, args, namespace)
        if "--" in extras:  # after "--" nothing is an option: leave it all to argparse
            return namespace, extras
        words = [a for a in extras if not a.startswith("-")]
        namespace.specs = list(namespace.specs or []) + words
        return namespace, [a for a in extras if a.startswith("-")]

    parser.parse_known_args = parse_known_args


def select_records(caches: PackageCaches, specs, env_prefixes: list[str]):
    """(records to export, findings about environments' packages in no cache)."""
    records = caches.records()
    if not specs and not env_prefixes:
        return records, []
    chosen: dict[int, object] = {}
    missing: list[engine.Finding] = []
    if specs:
        picked = [rec for rec in records if any(m.match(rec) for m in specs)]
        # what they depend on comes along, so the channel installs them on its own
        picked, missing = engine.with_dependencies(picked, records)
        for rec in picked:
            chosen[id(rec)] = rec
    if env_prefixes:
        from ..usage.graph import scan_usage

        envs = [Environment(p, ["--env"]) for p in env_prefixes]
        report = scan_usage(records, envs, use_index=False)
        by_dir = {rec.extracted_package_dir: rec for rec in records}
        for env in envs:
            for dirs in report.matched.get(env.prefix, {}).values():
                # the first (writable-first order) cache entry holding it is enough
                hits = [by_dir[d] for d in dirs if d in by_dir]
                with_archive = [r for r in hits if r.archives] or hits
                if with_archive:
                    chosen.setdefault(id(with_archive[0]), with_archive[0])
            for pkg in report.missing.get(env.prefix, []):
                missing.append(
                    engine.Finding(
                        engine.NOT_CACHED,
                        f"{env.prefix}: {pkg.dist}",
                        "the environment uses it but no cache holds it",
                    )
                )
    return [r for r in records if id(r) in chosen], missing


@contextmanager
def directory_lock(path: str, *, on_wait=None, poll: float = 0.2):
    """An exclusive flock on the directory itself: two exports into one channel take turns,
    and nothing is left in the channel (a lock file there would be served with it)."""
    import fcntl
    import time

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait is not None:
                    on_wait(f"waiting for another export into {path} ...")
                    told = True
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _drop_old_lock_file(channel_dir: str) -> None:
    try:
        os.unlink(os.path.join(channel_dir, OLD_EXPORT_LOCK))
    except OSError:
        pass


def _install_hint(channel_dir: str, specs: list[str]) -> str:
    import shlex

    wanted = " ".join(shlex.quote(s) for s in specs) or "PACKAGE ..."
    return (
        f"Install from it: conda create -p ENV --offline -c {shlex.quote('file://' + channel_dir)}"
        f" --override-channels {wanted}"
    )


def execute(args, run) -> int:
    channel_dir = os.path.abspath(os.path.expanduser(args.channel_dir))
    if os.path.exists(channel_dir) and not os.path.isdir(channel_dir):
        raise UsageError(f"{channel_dir} exists and is not a directory")
    prefixes = [os.path.abspath(os.path.expanduser(p)) for p in args.env_prefixes or []]
    for prefix in prefixes:
        if not is_environment(prefix):
            raise UsageError(f"{prefix} is not a conda environment (no conda-meta)")
    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    if any(os.path.realpath(channel_dir) == os.path.realpath(d) for d in run.pkgs_dirs):
        raise UsageError(f"{channel_dir} is a package cache; export into another directory")
    with ExitStack() as stack:
        if not run.dry_run:
            # Two exports into one channel would interleave their repodata.json rewrites.
            os.makedirs(channel_dir, exist_ok=True)
            stack.enter_context(directory_lock(channel_dir, on_wait=run.out.message))
            _drop_old_lock_file(channel_dir)
            # A clean waits until the archives are copied (fetch takes the same shared lock).
            for cache in caches.writable():
                stack.enter_context(
                    FileLock(
                        CacheLayout(cache.pkgs_dir).cache_lock,
                        shared=True,
                        timeout=None,
                        on_wait=run.out.message,
                    )
                )
        records, missing = select_records(caches, matchers(args.specs), prefixes)
        plan = engine.plan_export(records, channel_dir, link=args.link, missing=missing)
        if not run.dry_run:
            engine.write_export(plan)
    data = {
        "version": JSON_VERSION,
        "verb": "export",
        "dry_run": bool(run.dry_run),
        "pkgs_dirs": list(run.pkgs_dirs),
        "channel_dir": channel_dir,
        "channel_url": "file://" + channel_dir,
        "link": bool(args.link),
        "specs": list(args.specs or []),
        "environments": prefixes,
        **plan.to_json(),
    }
    text = engine.describe(plan, done=not run.dry_run)
    if run.dry_run:
        text += "\nDry run: nothing was changed."
    else:
        text += "\n" + _install_hint(channel_dir, list(args.specs or []))
    run.out.result(data, text)
    return EXIT_PROBLEMS_FOUND if plan.problems else 0
