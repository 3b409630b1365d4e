"""The typed parameter field used by every parameter section (unit, range, source)."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def param(default: Any, *, unit: str, source: str, range: tuple | None = None,
          choices: tuple | None = None) -> Any:
    """A dataclass field with unit, allowed range or choices, and the source of its default."""
    return field(default=default, metadata={"unit": unit, "range": range, "choices": choices,
                                            "source": source})


def section_of(params: Any, cls: type, name: str) -> Any:
    """The ``name`` section (of type ``cls``) of a parameter set.

    Accepts the section itself, a full :class:`esim.params.Params`, or None (the defaults).
    """
    if isinstance(params, cls):
        return params
    if params is None:
        return cls()
    return getattr(params, name, None) or cls()
