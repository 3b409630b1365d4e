"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from esim.params import Params, load_params


SET_METAVAR = "SECTION.KEY=VALUE"


def add_set_argument(p: argparse.ArgumentParser, what: str = "the parameter set") -> None:
    """The ``--set SECTION.KEY=VALUE`` option (repeatable), the same on every subcommand."""
    p.add_argument("--set", action="append", default=[], metavar=SET_METAVAR,
                   help=f"change one field of {what} (repeatable; validated like a parameter "
                        "file), e.g. --set charge.rest_time_s=0")


def figure_path(args: argparse.Namespace, output: Path) -> Path | None:
    """The figure a command draws beside ``output`` (``--figure``, default OUTPUT with .png),
    checked before any work; None with ``--no-figure``."""
    from esim.errors import InvalidParameters
    from esim.io.atomic import FIGURE_SUFFIXES, check_output_file

    if args.no_figure:
        if args.figure:
            raise InvalidParameters("--figure: given with --no-figure; choose one")
        return None
    path = Path(args.figure) if args.figure else output.with_suffix(".png")
    return check_output_file(path, "--figure", FIGURE_SUFFIXES)


def params_from_arg(config: str | None, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """The default parameter set, or the validated one in ``config`` (a TOML file), with the
    ``--set SECTION.KEY=VALUE`` items ``overrides`` applied (validated)."""
    params = Params() if config is None else load_params(config)
    return apply_overrides(params, overrides)


def apply_overrides(params: Params, overrides: list[str] | tuple[str, ...] = (), *,
                    packing_input: str | None = None) -> Params:
    """``params`` with the ``--set`` items ``overrides`` applied (validated).

    ``packing_input`` names a saved packing the parameters came from: its structure is fixed, so
    a ``structure.*`` item is refused there (with the field and the file named) rather than
    silently ignored.
    """
    from esim.errors import InvalidParameters
    from esim.params import parse_overrides

    if not overrides:
        return params
    changes = parse_overrides(overrides)
    if packing_input is not None and "structure" in changes:
        key = next(iter(changes["structure"]))
        raise InvalidParameters(
            f"--set structure.{key}: {packing_input} is a saved packing, whose structure is "
            "fixed; give a TOML parameter file (or none) to pack a new electrode")
    return params.replace(**changes)


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
