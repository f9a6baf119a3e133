"""Equality and repr over a class's fields, for the small record classes a verb's start-up
imports.

They are not dataclasses: ``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis`` and
``tokenize``), which was a fifth of what ``conda-cache info`` of an empty cache cost
(benchmarks/bench_startup.py). A subclass lists its fields in ``FIELDS`` and writes its
``__init__``; instances compare equal when their class and fields are, as dataclasses' did, and
are unhashable (mutable) unless the subclass says otherwise.
"""

from __future__ import annotations


class FieldsEq:
    __slots__ = ()
    FIELDS: tuple[str, ...] = ()

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return all(getattr(self, k) == getattr(other, k) for k in self.FIELDS)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.FIELDS)
        return f"{self.__class__.__qualname__}({fields})"


class FrozenFields(FieldsEq):
    """Immutable and hashable by its fields, as ``@dataclass(frozen=True)`` was; its
    ``__init__`` sets each field with ``object.__setattr__``."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, k) for k in self.FIELDS))

    def __reduce__(self):
        # pickle (process pools) and copy rebuild it through __init__, which takes the fields
        # in FIELDS order, since setting a field afterwards is refused
        return (self.__class__, tuple(getattr(self, k) for k in self.FIELDS))
