"""The everyday ``conda-cache VERB [SPEC ...] [--flag ...]`` parsed without argparse.

Importing argparse (with ``re``, ``gettext`` and ``locale``) and building a verb's parser is a
third of an empty ``conda-cache info --json`` (benchmarks/bench_startup.py). A command line made
only of a verb, its specs and options that take no value (``--json``, ``-v``, ``--unused``, ...),
each spelled exactly as declared, means the same to argparse on every Python version; that one is
read here. Anything else (an abbreviation, ``-vv``, an option with a value, ``-h``, an error)
returns None and argparse decides, with its messages.

There is one declaration of the options: the verb's own ``configure_parser`` (and the common
options of cli/__init__), run against :class:`Recorder` instead of a parser. The namespace is
argparse's, attribute for attribute (tests/cli/test_quickargs.py compares them for every verb).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# argparse's own default for each action that takes no value (its ``default=None`` otherwise)
_NO_VALUE = {"store_true": False, "store_false": True, "store_const": None, "count": None}


class Namespace:
    """What the verbs use of ``argparse.Namespace``: attributes, ``in``, equality."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __eq__(self, other) -> bool:
        return vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class Unsupported(Exception):
    """The declarations use something only argparse does: argparse parses this verb."""


class Recorder:
    """Stands in for a verb's ArgumentParser while its options are declared: records what each
    option sets, and the defaults argparse would give the namespace."""

    def __init__(self):
        self.defaults: dict[str, object] = {}
        self.flags: dict[str, tuple[str, str, object]] = {}  # option -> (dest, action, const)
        self.positional: str | None = None  # the dest of a ``nargs="*"`` positional

    def add_argument(self, *names: str, **kwargs) -> None:
        action = kwargs.get("action", "store")
        if not isinstance(action, str):
            raise Unsupported(f"action {action!r}")
        if not names[0].startswith("-"):  # a positional
            if (
                kwargs.get("nargs") != "*"
                or self.positional is not None
                or _special(kwargs, positional=True)
            ):
                raise Unsupported(f"positional {names[0]}")
            self.positional = kwargs.get("dest") or names[0]
            default = kwargs.get("default")
            # argparse: an absent ``*`` positional is its default, or [] when that is None
            self._default(self.positional, [] if default is None else default)
            return
        dest = kwargs.get("dest") or _option_dest(names)
        default = kwargs.get("default", _NO_VALUE.get(action))
        if (isinstance(default, str) and "type" in kwargs) or _special(kwargs, positional=False):
            raise Unsupported(names[0])  # argparse converts a str default with the type
        self._default(dest, default)
        if action in _NO_VALUE:
            for name in names:
                self.flags[name] = (dest, action, kwargs.get("const"))

    def _default(self, dest: str, value: object) -> None:
        self.defaults.setdefault(dest, value)  # argparse: the first option of a dest gives it

    def add_argument_group(self, *args, **kwargs) -> Recorder:
        return self

    def __getattr__(self, name: str):
        # set_defaults, mutually exclusive groups, ...: not needed by any verb today
        raise Unsupported(name)


def parse(
    argv: list[str], verbs: dict, configure: Callable[[Recorder, str], None]
) -> Namespace | None:
    """The namespace argparse would give for ``argv`` (``cache_verb`` and the verb's options),
    or None when argparse must parse it. ``configure(recorder, verb)`` declares the options."""
    if not argv or argv[0] not in verbs:
        return None
    rec = Recorder()
    try:
        configure(rec, argv[0])
    except Unsupported:
        return None
    values = dict(rec.defaults)
    rest = argv[1:]
    if rec.positional is not None:  # SPEC ... before every option, as argparse reads them
        specs = []
        while rest and not rest[0].startswith("-"):
            specs.append(rest.pop(0))
        if specs:
            values[rec.positional] = specs
    for token in rest:
        option = rec.flags.get(token)
        if option is None:
            return None
        dest, action, const = option
        if action == "store_true":
            values[dest] = True
        elif action == "store_false":
            values[dest] = False
        elif action == "store_const":
            values[dest] = const
        else:  # count
            values[dest] = (values[dest] or 0) + 1
    # what the top-level parser adds: the verb, and no parser to print help from (a verb is given)
    return Namespace(cache_verb=argv[0], _cache_parser=None, **values)


def _special(kwargs: dict, *, positional: bool) -> bool:
    """Declarations whose effect on the namespace only argparse knows: required options,
    suppressed defaults, a positional's choices (checked even when it is absent; an option's
    only when it is given, with a value, which sends the command line to argparse)."""
    return bool(
        kwargs.get("required")
        or kwargs.get("default") == "==SUPPRESS=="  # argparse.SUPPRESS
        or (positional and ("choices" in kwargs or "type" in kwargs))
    )


def _option_dest(names: tuple[str, ...]) -> str:
    """argparse's dest of an option: its first long name (else first name), dashes as _."""
    name = next((n for n in names if n.startswith("--")), names[0])
    return name.lstrip("-").replace("-", "_")
