"""Reading the lockfiles people pin environments with, as fetch inputs.

- ``conda-lock.yml`` (conda-lock's unified format, ``version: 1``): one ``package`` list; each
  entry has ``manager`` (``conda`` or ``pip``), ``platform``, ``url`` and ``hash`` (md5, often
  sha256 too).
- ``pixi.lock`` (versions 6 and 7, as pixi and py-rattler write them): ``environments`` name, per
  platform, the packages they use (``- conda: URL`` or ``- pypi: URL``); the top-level ``packages``
  list holds each package once, keyed by the same location, with ``sha256``/``md5``/``size``.
  Version 7 adds a top-level ``platforms`` list, where a platform's name may differ from its
  ``subdir``. A location without ``://`` is a path, relative to the lockfile's directory.

Only conda archives are ours: PyPI entries (pip's and uv's business) and pixi's source packages
(built by pixi, no archive to download) are skipped and counted, never silently dropped. YAML is
parsed with ruamel.yaml (which conda itself depends on), safe loader, imported only when a
lockfile is read.
"""

from __future__ import annotations

import os
import platform as _platform
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from ..exceptions import InputError, UsageError
from ..model.filenames import package_extension

CONDA_LOCK = "conda-lock.yml"
PIXI_LOCK = "pixi.lock"
PIXI_VERSIONS = (6, 7)
KNOWN_INPUTS = (
    "@EXPLICIT files (conda list --explicit), conda-lock.yml (version 1), "
    "pixi.lock (versions 6 and 7), package URLs or paths (.conda, .tar.bz2)"
)

_MACHINES = {
    ("linux", "x86_64"): "linux-64",
    ("linux", "amd64"): "linux-64",
    ("linux", "aarch64"): "linux-aarch64",
    ("linux", "arm64"): "linux-aarch64",
    ("linux", "ppc64le"): "linux-ppc64le",
    ("linux", "s390x"): "linux-s390x",
    ("linux", "armv7l"): "linux-armv7l",
    ("linux", "armv6l"): "linux-armv6l",
    ("linux", "i686"): "linux-32",
    ("linux", "riscv64"): "linux-riscv64",
    ("darwin", "x86_64"): "osx-64",
    ("darwin", "arm64"): "osx-arm64",
    ("win32", "amd64"): "win-64",
    ("win32", "x86_64"): "win-64",
    ("win32", "arm64"): "win-arm64",
    ("win32", "x86"): "win-32",
}


def native_subdir() -> str:
    """This machine's conda platform (``linux-64``, ``osx-arm64``, ...); ``CONDA_SUBDIR`` wins,
    as in conda."""
    override = os.environ.get("CONDA_SUBDIR", "").strip()
    if override:
        return override
    system = "linux" if sys.platform.startswith("linux") else sys.platform
    return _MACHINES.get((system, _platform.machine().lower()), f"{system}-unknown")


@dataclass(frozen=True)
class LockedPackage:
    """One conda archive a lockfile pins: where it is and what it must hash to."""

    url: str
    fn: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Skipped:
    kind: str  # "pypi" or "source"
    name: str
    location: str


@dataclass
class LockfileContents:
    """What fetch takes from one lockfile, for the platforms and environments chosen."""

    path: str
    format: str  # CONDA_LOCK or PIXI_LOCK
    version: int
    platforms: list[str]  # chosen (as the lockfile names them)
    environments: list[str]  # chosen (pixi); empty for conda-lock
    packages: list[LockedPackage] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.format} v{self.version}"

    def skipped_note(self) -> str | None:
        """One line saying what was left out and why, or None."""
        pypi = sorted({s.name for s in self.skipped if s.kind == "pypi"})
        source = sorted({s.name for s in self.skipped if s.kind == "source"})
        parts = []
        if pypi:
            parts.append(
                f"{len(pypi)} PyPI package(s) ({_few(pypi)}): pip's or uv's cache, not conda's"
            )
        if source:
            parts.append(
                f"{len(source)} source package(s) ({_few(source)}): built by pixi, no archive"
            )
        if not parts:
            return None
        return f"{os.path.basename(self.path)}: skipped " + "; ".join(parts) + "."

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "version": self.version,
            "platforms": list(self.platforms),
            "environments": list(self.environments),
            "packages": len(self.packages),
            "skipped": [
                {"kind": s.kind, "name": s.name, "location": s.location} for s in self.skipped
            ],
        }


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f", and {len(names) - n} more" if len(names) > n else "")


# -- detection -------------------------------------------------------------------------------


def detect(text: str) -> str | None:
    """CONDA_LOCK or PIXI_LOCK when ``text`` looks like one (cheap: no YAML parse), else None.
    Both start with a top-level ``version:`` key, which no @EXPLICIT file has."""
    keys = set()
    for line in text.splitlines()[:400]:
        if line[:1].isalpha() and ":" in line:
            keys.add(line.split(":", 1)[0].strip())
    if "version" not in keys:
        return None
    if "package" in keys or "metadata" in keys:
        return CONDA_LOCK
    if "environments" in keys or "packages" in keys:
        return PIXI_LOCK
    return None


def _load_yaml(text: str, path: str):
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputError(path, f"not valid YAML{where}: {problem}") from None


# -- reading ---------------------------------------------------------------------------------


def read_lockfile(
    path: str,
    text: str,
    *,
    platform: str | None = None,
    environments: list[str] | None = None,
) -> LockfileContents:
    """The conda archives ``text`` (the content of lockfile ``path``) pins for ``platform``
    (default: this machine's) plus ``noarch``, in ``environments`` (pixi; default: all).
    Raises InputError (exit 2) for a lockfile that cannot be read, naming what is wrong."""
    kind = detect(text)
    data = _load_yaml(text, path)
    if not isinstance(data, dict) or kind is None:
        raise InputError(path, f"not a lockfile fetch reads; fetch reads {KNOWN_INPUTS}")
    version = data.get("version")
    if kind == CONDA_LOCK:
        if version != 1:
            raise InputError(
                path, f"conda-lock.yml version {version!r}: fetch reads version 1 (conda-lock 1-3)"
            )
        if environments:
            raise UsageError(
                f"--environment is for pixi.lock; {os.path.basename(path)} is a conda-lock.yml "
                "(one environment per file)"
            )
        return _read_conda_lock(path, data, platform or native_subdir())
    if version not in PIXI_VERSIONS:
        raise InputError(
            path,
            f"pixi.lock version {version!r}: fetch reads versions 6 and 7 "
            "(`pixi install` rewrites an older lockfile in the current version)",
        )
    return _read_pixi_lock(path, data, version, platform or native_subdir(), environments)


def _bad(path: str, where: str, reason: str) -> InputError:
    return InputError(path, f"{where}: {reason}")


def _hex(value, length: int, path: str, where: str, what: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if len(text) != length or any(c not in "0123456789abcdef" for c in text):
        raise _bad(path, where, f"the {what} is not {length} hex digits")
    return text


def _size(value, path: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(path, where, f"size {value!r} is not a number of bytes")
    return value


def _location_url(location: str, lock_dir: str) -> str:
    if "://" in location:
        return location
    return urllib.parse.urljoin(
        "file:", urllib.request.pathname2url(os.path.join(lock_dir, os.path.expanduser(location)))
    )


def _fn_of(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def _locked(path: str, where: str, location, hashes: dict, size) -> LockedPackage:
    if not isinstance(location, str) or not location.strip():
        raise _bad(path, where, "no package location (url)")
    url = _location_url(location.strip(), os.path.dirname(os.path.abspath(path)))
    fn = _fn_of(url)
    if not package_extension(fn):
        raise _bad(path, where, f"{location!r} is not a conda package (.conda or .tar.bz2)")
    md5 = _hex(hashes.get("md5"), 32, path, where, "md5")
    sha256 = _hex(hashes.get("sha256"), 64, path, where, "sha256")
    return LockedPackage(url=url, fn=fn, md5=md5, sha256=sha256, size=_size(size, path, where))


def _dedup(packages: list[LockedPackage]) -> list[LockedPackage]:
    return list(dict.fromkeys(packages))


def _read_conda_lock(path: str, data: dict, platform: str) -> LockfileContents:
    entries = data.get("package")
    if not isinstance(entries, list):
        raise _bad(path, "package", "missing, or not a list")
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    declared = [str(p) for p in meta.get("platforms") or []]
    seen_platforms = {str(e.get("platform")) for e in entries if isinstance(e, dict)}
    known = declared or sorted(seen_platforms)
    if platform not in known and platform != "noarch":
        raise InputError(
            path,
            f"no platform {platform!r} in this lockfile (it has: {', '.join(known)}); "
            "choose one with --platform",
        )
    out = LockfileContents(path, CONDA_LOCK, 1, [platform], [])
    for i, entry in enumerate(entries):
        where = f"package {i + 1}"
        if not isinstance(entry, dict):
            raise _bad(path, where, "not a mapping")
        if str(entry.get("platform")) not in (platform, "noarch"):
            continue
        manager = entry.get("manager", "conda")
        name = str(entry.get("name") or "?")
        if manager != "conda":
            out.skipped.append(Skipped("pypi", name, str(entry.get("url") or "")))
            continue
        hashes = entry.get("hash") if isinstance(entry.get("hash"), dict) else {}
        out.packages.append(_locked(path, f"{where} ({name})", entry.get("url"), hashes, None))
    out.packages = _dedup(out.packages)
    return out


def _pixi_platforms(data: dict, version: int) -> dict[str, str]:
    """Platform name -> subdir. Version 7 lists them (a name may differ from its subdir)."""
    names: dict[str, str] = {}
    if version >= 7:
        for p in data.get("platforms") or []:
            if isinstance(p, dict) and p.get("name"):
                names[str(p["name"])] = str(p.get("subdir") or p["name"])
    for env in (data.get("environments") or {}).values():
        if isinstance(env, dict) and isinstance(env.get("packages"), dict):
            for name in env["packages"]:
                names.setdefault(str(name), str(name))
    return names


def _read_pixi_lock(
    path: str, data: dict, version: int, platform: str, wanted_envs: list[str] | None
) -> LockfileContents:
    envs = data.get("environments")
    if not isinstance(envs, dict) or not envs:
        raise _bad(path, "environments", "missing, or not a mapping of environments")
    if wanted_envs:
        unknown = [e for e in wanted_envs if e not in envs]
        if unknown:
            raise InputError(
                path, f"no environment {unknown[0]!r} (it has: {', '.join(map(str, envs))})"
            )
        chosen_envs = list(dict.fromkeys(wanted_envs))
    else:
        chosen_envs = [str(e) for e in envs]
    platforms = _pixi_platforms(data, version)
    chosen = [n for n, subdir in platforms.items() if platform in (n, subdir)]
    chosen += [n for n, subdir in platforms.items() if "noarch" in (n, subdir) and n not in chosen]
    if not chosen:
        raise InputError(
            path,
            f"no platform {platform!r} in this lockfile (it has: {', '.join(platforms)}); "
            "choose one with --platform",
        )
    by_location: dict[str, list[dict]] = {}
    for i, entry in enumerate(data.get("packages") or []):
        if not isinstance(entry, dict):
            raise _bad(path, f"packages entry {i + 1}", "not a mapping")
        key = "conda" if "conda" in entry else "pypi" if "pypi" in entry else None
        if key is None:
            raise _bad(path, f"packages entry {i + 1}", "neither a conda nor a pypi package")
        by_location.setdefault(f"{key}:{entry[key]}", []).append(entry)
    out = LockfileContents(path, PIXI_LOCK, version, chosen, chosen_envs)
    for env_name in chosen_envs:
        env = envs[env_name]
        per_platform = env.get("packages") if isinstance(env, dict) else None
        if not isinstance(per_platform, dict):
            continue  # an environment with no packages (pixi writes none for an empty one)
        for plat in chosen:
            refs = per_platform.get(plat) or []
            if not isinstance(refs, list):
                raise _bad(path, f"environment {env_name} {plat}", "not a list of packages")
            for ref in refs:
                _take(path, out, ref, by_location, f"environment {env_name} {plat}")
    out.packages = _dedup(out.packages)
    out.skipped = list(dict.fromkeys(out.skipped))
    return out


def _take(path: str, out: LockfileContents, ref, by_location: dict, where: str) -> None:
    if not isinstance(ref, dict):
        raise _bad(path, where, f"{ref!r} is not a package reference")
    if "pypi" in ref:
        entries = by_location.get(f"pypi:{ref['pypi']}") or [{}]
        name = str(entries[0].get("name") or _fn_of(str(ref["pypi"])) or "?")
        out.skipped.append(Skipped("pypi", name, str(ref["pypi"])))
        return
    if "conda" not in ref:
        raise _bad(path, where, f"{ref!r} is neither a conda nor a pypi package")
    location = ref["conda"]
    entries = by_location.get(f"conda:{location}")
    if not entries:
        raise _bad(path, where, f"{location!r} is not in the lockfile's packages list")
    # several source packages may share a location; the reference names which (v6/v7)
    picked = [e for e in entries if all(e.get(k) == v for k, v in ref.items() if k != "conda")]
    entry = (picked or entries)[0]
    if not package_extension(_fn_of(str(location))):
        out.skipped.append(Skipped("source", str(entry.get("name") or location), str(location)))
        return
    hashes = {k: entry.get(k) for k in ("md5", "sha256")}
    out.packages.append(_locked(path, where, location, hashes, entry.get("size")))
