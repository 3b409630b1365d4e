"""Helpers shared by the subcommands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from esim.params import Params, load_params


def params_from_arg(config: str | None, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """The default parameter set, or the validated one in ``config`` (a TOML file), with the
    ``--set SECTION.KEY=VALUE`` items ``overrides`` applied (validated)."""
    from esim.params import parse_overrides

    params = Params() if config is None else load_params(config)
    return params.replace(**parse_overrides(overrides)) if overrides else params


def print_json(d: dict[str, Any]) -> None:
    """One JSON object on stdout (NaN/inf as null, so any JSON parser reads it)."""
    from esim.io.atomic import json_safe

    print(json.dumps(json_safe(d), sort_keys=False))


def format_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(title: str, d: dict[str, Any]) -> None:
    """Human-readable key/value table."""
    print(title)
    width = max(len(k) for k in d)
    for k, v in d.items():
        print(f"  {k:<{width}}  {format_value(v)}")


def output_path(arg: str | None, default: str) -> Path:
    return Path(arg or default)
