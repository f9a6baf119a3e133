"""``conda cache fetch (FILE|URL)...``: download and extract packages into the cache.

Inputs: ``@EXPLICIT`` files (paths or URLs; ``conda list --explicit [--md5|--sha256]``,
conda-lock's explicit render), lockfiles (``conda-lock.yml`` v1, ``pixi.lock`` v6 and v7: the
conda packages of ``--platform``, default this machine's, plus noarch; for pixi, of
``--environment``, default all), package URLs or paths (``URL#md5``, ``URL#sha256:...``), or,
with ``--repodata``, package file names / ``name-version-build`` / names (globs allowed) looked
up in a channel's ``repodata.json``. The JSON result is described by docs/schemas/fetch.json.
"""

from __future__ import annotations

import functools
import os

from ..exceptions import FetchFailedError, InputError, InvalidSpecError, UsageError
from ..fetch import lockfiles
from ..fetch import pipeline as engine_pipeline
from ..fetch import plan as engine_plan
from ..fetch import refs as engine_refs
from ..gateways import download as engine_download
from ..gateways.download import read_url_bytes
from ..layouts.caches import PackageCaches
from ..model.filenames import package_extension
from ..model.sizes import human_bytes
from ..ui import fetch_report as engine_fetch_report
from ..ui.text import wrap

JSON_VERSION = 1


def configure_parser(parser) -> None:
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="FILE|URL",
        help="@EXPLICIT files, conda-lock.yml or pixi.lock files (path or URL), or package "
        "URLs/paths (URL#md5, URL#sha256:HEX); with --repodata also package names, file names "
        "or globs.",
    )
    parser.add_argument(
        "--platform",
        metavar="SUBDIR",
        help="Lockfiles: the platform whose packages to fetch, plus noarch (default: this "
        "machine's, e.g. linux-64; in pixi.lock v7 also a platform's name).",
    )
    parser.add_argument(
        "--environment",
        dest="lock_environments",
        action="append",
        metavar="NAME",
        help="pixi.lock: only this environment's packages (repeatable; default: all).",
    )
    parser.add_argument(
        "--repodata",
        dest="repodata_source",
        metavar="FILE|URL",
        help="A channel's repodata.json; the other arguments name packages in it.",
    )
    parser.add_argument(
        "--refetch",
        action="store_true",
        help="Download and extract again even what the cache already holds.",
    )
    parser.add_argument(
        "--download-workers",
        type=int,
        metavar="N",
        help="Parallel downloads (default: conda's fetch_threads, 5).",
    )
    parser.add_argument(
        "--extract-workers",
        type=int,
        metavar="N",
        help="Parallel extractions (default on Linux: worker processes, one per CPU plus one; "
        "elsewhere: threads, 4 per CPU, at most 8).",
    )


def gather_refs(
    sources: list[str],
    repodata_source: str | None,
    run,
    *,
    platform: str | None = None,
    environments: list[str] | None = None,
    read: list | None = None,
) -> list[engine_refs.PackageRef]:
    """The packages the inputs name. ``read`` collects the lockfiles read (LockfileContents)."""
    refs: list[engine_refs.PackageRef] = []
    patterns: list[str] = []
    read = [] if read is None else read
    for source in sources:
        bare = source.split("#", 1)[0]
        if package_extension(bare) and ("://" in bare or os.path.isfile(os.path.expanduser(bare))):
            refs.append(engine_refs.ref_from_url(source))
        elif "://" in source:
            raw = read_url_bytes(source, run)
            text = engine_refs.decode_utf8(raw, source, "a fetch input")
            refs += refs_from_text(source, text, platform, environments, read)
        elif os.path.isfile(os.path.expanduser(source)):
            path = os.path.expanduser(source)
            text = engine_refs.read_text_file(path, "a fetch input")
            refs += refs_from_text(path, text, platform, environments, read)
        elif repodata_source:
            patterns.append(source)
        elif package_extension(bare):
            raise InvalidSpecError(source, "no such file")
        else:
            raise InvalidSpecError(
                source, "not a file, a URL or a package (package names need --repodata)"
            )
    if not read and (platform or environments):
        raise UsageError(
            "--platform and --environment are for lockfiles (conda-lock.yml, pixi.lock)"
        )
    if repodata_source:
        if not patterns:
            raise UsageError("--repodata needs package names (or globs) to fetch")
        data, base = engine_refs.load_repodata(repodata_source, run)
        refs += engine_refs.refs_from_repodata(data, base, patterns)
    return refs


def _first_line(text: str) -> str | None:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return line
    return None


def refs_from_text(source: str, text: str, platform, environments, read: list):
    """An input file's packages: a lockfile's, or an @EXPLICIT list's; anything else is a usage
    error naming the inputs fetch reads."""
    if lockfiles.detect(text):
        contents = lockfiles.read_lockfile(
            source, text, platform=platform, environments=environments
        )
        read.append(contents)
        refs = []
        for p in contents.packages:
            ref = engine_refs.ref_from_url(p.url, source)
            ref.md5, ref.sha256, ref.size = p.md5, p.sha256, p.size
            refs.append(ref)
        return refs
    first = _first_line(text)
    if first is not None and not first.startswith("@"):
        try:
            engine_refs.ref_from_url(first, source)
        except InvalidSpecError:
            raise InputError(
                source,
                f"not a fetch input (first line {first[:60]!r}); fetch reads "
                + lockfiles.KNOWN_INPUTS,
            ) from None
    # a path again, so that a bad line's error names the file
    return engine_refs.parse_explicit(source if "://" not in source else text)


def _summary_text(summary, elapsed: float, verbose: int = 0) -> str:
    """At most 80 columns: the counts that are not zero (all of them with -v); --json has every
    number."""
    c = {o: summary.count(o) for o in engine_pipeline.OUTCOMES}
    done = len(summary.items) - c[engine_pipeline.FAILED] - summary.count("cancelled")
    # the bytes of the packages counted as downloaded: a package that failed after its download
    # (a full disk while extracting) is not one of them, and its bytes are said apart
    mine = [i for i in summary.items if i.outcome == engine_pipeline.DOWNLOADED]
    downloaded = f"{len(mine)} downloaded ({human_bytes(sum(i.transferred for i in mine))}"
    resumed = sum(i.resumed_from for i in mine)
    if resumed:
        downloaded += f", {human_bytes(resumed)} resumed"
    elsewhere = summary.bytes_downloaded - sum(i.transferred for i in mine)
    parts = [
        (c[engine_pipeline.DOWNLOADED], downloaded + ")"),
        (c[engine_pipeline.COPIED], f"{c[engine_pipeline.COPIED]} copied from read-only caches"),
        (
            c[engine_pipeline.EXTRACTED],
            f"{c[engine_pipeline.EXTRACTED]} extracted from cached archives",
        ),
        (c[engine_pipeline.REUSED], f"{c[engine_pipeline.REUSED]} already cached"),
    ]
    if elsewhere:
        parts.append((elsewhere, f"{human_bytes(elsewhere)} downloaded for packages not ready"))
    shown = [text for n, text in parts if n or verbose]
    if verbose:
        shown.append(f"{summary.extractions} extraction(s)")
    head = f"{done} of {len(summary.items)} package(s) ready in {elapsed:.1f}s"
    lines = [wrap(head + (": " + ", ".join(shown) if shown else "") + ".", "  ")]
    for item in summary.items:
        if item.outcome == engine_pipeline.FAILED:
            lines.append(wrap(f"  FAILED {item.fn}: {item.error}", "    "))
        elif item.note and item.note.startswith(("defective", "damaged")):
            lines.append(wrap(f"  ! {item.fn}: {item.note}", "    "))
    cancelled = summary.count("cancelled")
    if cancelled:
        lines.append(f"  {cancelled} package(s) not done (interrupted); run again to finish.")
    return "\n".join(lines)


def check_extracted(pkgs_dir: str, extracted_dir: str, command: str) -> str | None:
    """What fetch just extracted, checked with verify's own judgement: a package defective as
    published (conda will refuse it) is said at once, not left for a later verify (issue 23).
    Run by the fetch engine in the worker that extracted the entry, right after it; the note
    for the package, or None when the entry is ok."""
    from ..integrity.judgement import DEFECTIVE, judge_entry

    f = judge_entry(pkgs_dir, os.path.relpath(extracted_dir, pkgs_dir), command=command)
    if f.verdict == DEFECTIVE:
        return f"defective as published: {f.remedy['reason']}"
    if f.verdict != "ok":
        return f"damaged after extraction: {f.remedy.get('command') or f.remedy['reason']}"
    return None


def execute(args, run) -> int:
    if not args.sources:
        raise UsageError("give @EXPLICIT files, package URLs, or --repodata FILE|URL and names")
    for opt in ("download_workers", "extract_workers"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise UsageError(f"--{opt.replace('_', '-')} must be at least 1")
    read: list = []
    refs = gather_refs(
        args.sources,
        args.repodata_source,
        run,
        platform=args.platform,
        environments=args.lock_environments,
        read=read,
    )
    for contents in read:
        note = contents.skipped_note()
        if note:
            run.out.message(note)
    refused = [r for r in refs if r.refused]
    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    force = {r.fn for r in refs} if args.refetch else frozenset()
    fetch_plan = engine_plan.plan(refs, caches, force=force)
    data = {
        "version": JSON_VERSION,
        "verb": "fetch",
        "dry_run": bool(run.dry_run),
        "pkgs_dirs": list(run.pkgs_dirs),
        "target": fetch_plan.target,
        "plan": fetch_plan.to_json(),
        "summary": None,
        "packages": [],
        "failures": [],
        "lockfiles": [c.to_json() for c in read],
    }
    if run.dry_run:
        text = engine_fetch_report.describe_plan(fetch_plan)
        text += "".join(f"\n  refuse            {r.fn}  {r.refused}" for r in refused)
        run.out.result(data, text + "\nDry run: nothing was changed.")
        return 0
    if any(i.action != "none" for i in fetch_plan.items):
        run.out.message("Downloading and Extracting Packages:")
        # the self-check's machinery, loaded once here rather than in every forked worker
        from ..integrity import judgement, repair, verify  # noqa: F401
    summary = engine_pipeline.execute(
        fetch_plan,
        run,
        download_workers=args.download_workers,
        extract_workers=args.extract_workers,
        check=functools.partial(check_extracted, command=run.command),
    )
    for ref in refused:  # checked before anything was written; listed like any failure
        summary.items.append(
            engine_pipeline.ItemResult(
                ref.fn,
                engine_download.strip_fragment(ref.url),
                engine_plan.DOWNLOAD,
                outcome=engine_pipeline.FAILED,
                error=f"refused: {ref.refused}; nothing was written",
                error_type="UnsafeNameError",
            )
        )
    data["summary"] = summary.to_json()
    data["packages"] = [i.to_json() for i in summary.items]
    data["failures"] = [
        {"fn": i.fn, "url": i.url, "error": i.error, "error_type": i.error_type}
        for i in summary.failures
    ]
    run.out.result(data, _summary_text(summary, summary.seconds, run.verbose))
    if summary.interrupted:
        raise KeyboardInterrupt
    if summary.failures:
        raise FetchFailedError(
            [(i.fn, i.error or "failed") for i in summary.failures],
            [i.error_type for i in summary.failures],
        )
    return 0
