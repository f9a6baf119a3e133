"""The environments we know of: every prefix that may be using the package caches.

Found the way conda finds them (``conda env list``): the root prefix, every environment directly
under an ``envs_dirs`` directory, the prefixes listed in ``~/.conda/environments.txt``, plus the
prefixes the user names (``--env PREFIX``). A prefix is an environment when it has
``conda-meta/history`` or any ``conda-meta/*.json`` record.

Without conda, ``envs_dirs`` comes from ``CONDA_ENVS_DIRS`` / ``CONDA_ENVS_PATH`` (``os.pathsep``
separated, like conda), else ``envs_dirs`` in the .condarc files, then conda's fixed defaults
``<root>/envs`` and ``~/.conda/envs``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from ..model import config
from ..model.host import require_conda_host
from ..model.plainclass import FieldsEq

SOURCE_ROOT = "root"
SOURCE_ENVS_DIR = "envs_dirs"
SOURCE_REGISTERED = "environments.txt"
SOURCE_USER = "--env"


class Environment(FieldsEq):
    # not a dataclass: dataclasses (and inspect) were a fifth of an empty `usage` or `clean`
    FIELDS = ("prefix", "sources")

    def __init__(self, prefix: str, sources: list[str] | None = None):
        self.prefix = prefix
        self.sources = [] if sources is None else sources

    def to_json(self) -> dict:
        return {"prefix": self.prefix, "sources": list(self.sources)}


def is_environment(prefix: str) -> bool:
    meta = os.path.join(prefix, "conda-meta")
    if os.path.isfile(os.path.join(meta, "history")):
        return True
    try:
        with os.scandir(meta) as it:
            return any(de.name.endswith(".json") for de in it)
    except PermissionError:
        # a conda-meta we may not read: an environment we cannot see into, which may use any
        # cached package (usage.py makes it protect them all)
        return True
    except OSError:
        return False


def _split_env_var(value: str) -> list[str]:
    return [p for p in value.split(os.pathsep) if p.strip()]


def envs_dirs(*, use_conda: bool = False, environ: Mapping[str, str] | None = None) -> list[str]:
    if use_conda:
        return [os.path.abspath(p) for p in require_conda_host().context().envs_dirs]
    env = os.environ if environ is None else environ
    configured: list[str] = []
    for var in ("CONDA_ENVS_DIRS", "CONDA_ENVS_PATH"):
        if env.get(var):
            configured = _split_env_var(env[var])
            break
    if not configured:
        for path in reversed(config.condarc_files(env)):
            value = config.read_condarc_list(path, "envs_dirs") or config.read_condarc_list(
                path, "envs_path"
            )
            if value:
                configured += value
    root = config.root_prefix(env)
    fixed = [os.path.join(root, "envs"), os.path.join("~", ".conda", "envs")]
    return config.dedupe_paths([*configured, *fixed])


def root_prefix(*, use_conda: bool = False, environ: Mapping[str, str] | None = None) -> str:
    if use_conda:
        return os.path.abspath(require_conda_host().context().root_prefix)
    return config.root_prefix(environ)


def environments_txt(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".conda", "environments.txt")


def registered_prefixes(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def known_environments(
    extra: Iterable[str] = (),
    *,
    use_conda: bool = False,
    environ: Mapping[str, str] | None = None,
    discover: bool = True,
    workspaces: Iterable[str] = (),
) -> list[Environment]:
    """Every environment that exists, each once (by real path), in discovery order.

    ``discover=False`` keeps only ``extra`` (the user's ``--env`` prefixes) and the environments
    of the pixi ``workspaces`` search roots: for tests and for ``usage --only-env``-style
    questions. Discovery adds conda's environments and pixi's (``pixi.py``).
    """
    from ..layouts import pixi

    found: dict[str, Environment] = {}

    def add(prefix: str, source: str) -> None:
        prefix = os.path.abspath(os.path.expanduser(prefix))
        key = os.path.realpath(prefix)
        if key in found:
            if source not in found[key].sources:
                found[key].sources.append(source)
            return
        if is_environment(prefix):
            found[key] = Environment(prefix, [source])

    for prefix in extra:
        add(prefix, SOURCE_USER)
    if discover:
        add(root_prefix(use_conda=use_conda, environ=environ), SOURCE_ROOT)
        for envs_dir in envs_dirs(use_conda=use_conda, environ=environ):
            try:
                with os.scandir(envs_dir) as it:
                    names = sorted(de.name for de in it if de.is_dir())
            except OSError:
                continue
            for name in names:
                add(os.path.join(envs_dir, name), SOURCE_ENVS_DIR)
        for prefix in registered_prefixes(environments_txt(environ)):
            add(prefix, SOURCE_REGISTERED)
        for prefix, source in pixi.known_prefixes(environ=environ):
            add(prefix, source)
    for prefix in pixi.workspace_envs(workspaces):
        add(prefix, pixi.SOURCE_PIXI_WORKSPACE)
    return list(found.values())


def register_envs(*, use_conda: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """conda's ``register_envs`` setting: whether new environments go into environments.txt."""
    if use_conda:
        try:
            return bool(require_conda_host().context().register_envs)
        except Exception:
            pass
    env = os.environ if environ is None else environ
    value = env.get("CONDA_REGISTER_ENVS")
    if value is None:
        for path in config.condarc_files(env):
            found = config.read_condarc_list(path, "register_envs")
            if found:
                value = found[0]
    if value is None:
        return True
    return str(value).strip().lower() not in ("false", "no", "off", "0")


def visibility_notes(
    *, use_conda: bool = False, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Why environments may exist that we cannot see (so "unused" may not be), one line each."""
    notes = []
    tail = (
        "hard-linked packages of such environments are still kept (their link counts show "
        "them), softlinked or reflinked ones are not: name them with --env PREFIX"
    )
    if not register_envs(use_conda=use_conda, environ=environ):
        notes.append(
            "register_envs is off: environments created outside envs_dirs are not recorded in "
            f"environments.txt and are invisible here; {tail}"
        )
    elif not os.path.exists(environments_txt(environ)):
        notes.append(
            f"{environments_txt(environ)} does not exist: environments outside envs_dirs are "
            f"invisible here; {tail}"
        )
    return notes
