"""Charge a composite electrode at constant current to the cut-off voltage, then rest at open
circuit; write the result to HDF5 with a figure (charge curve, SOC map on a slice, SOC against
depth) and print a summary.

The input is a TOML parameter file (the electrode is packed first and saved beside the output
as ``<output>_packing.h5``) or a saved packing (``.h5``, its own parameters are used; a
``--config`` TOML may give the ``[charge]`` section).  A charge that stops early (cut-off not
reached, Newton failure, impossible current) writes what was computed (``partial``) to
``<output>_partial.h5``, leaving an existing ``<output>`` as it was, and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import time
import tomllib
from pathlib import Path
from typing import Any

from esim.cli._common import (add_set_argument, apply_overrides, figure_path, print_json,
                              print_table)

HELP = "galvanostatic first charge of the electrode (HDF5 + figure)"
log = logging.getLogger("esim")

QUICK_STRUCTURE = {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
                   "sample_points": 50000}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?",
                   help="TOML parameter file, or a packing .h5 (default: built-in parameters)")
    p.add_argument("-o", "--output", default="charged.h5",
                   help="HDF5 output (default: %(default)s)")
    p.add_argument("--config", help="TOML file whose [charge] table applies to a packing input")
    p.add_argument("--figure", help="figure path (default: OUTPUT with .png)")
    p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quick", action="store_true",
                   help="a small electrode (25 x 25 x 20 um, ~330 particles): seconds")
    add_set_argument(p, "the parameter set (after the input file, --config and --quick)")


def _read_toml(path: str) -> dict[str, Any]:
    from esim.errors import InputFileError

    try:
        return tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such parameter file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable TOML file ({exc})") from None


def _split_charge(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    data = dict(data)
    ch = data.pop("charge", {}) or {}
    return data, ch


def _params_and_packing(args: argparse.Namespace):
    from esim.charge import params_with_charge
    from esim.errors import InvalidParameters
    from esim.packing import Packing
    from esim.params import Params, params_from_dict

    packing = None
    charge_kw: dict[str, Any] = {}
    src = args.input
    if src and Path(src).suffix.lower() in (".h5", ".hdf5"):
        if args.quick:
            raise InvalidParameters(f"--quick: the packing {src} fixes the electrode; --quick "
                                    "applies to a parameter-file input only")
        packing = Packing.load(src)
        params = packing.params
        if args.config:
            rest, charge_kw = _split_charge(_read_toml(args.config))
            if rest:
                raise InvalidParameters(
                    f"{args.config}: only its [charge] table applies to a packing input; found "
                    f"[{'], ['.join(rest)}] (use --set SECTION.KEY=VALUE for other sections)")
    else:
        if args.config:
            raise InvalidParameters("--config: applies to a packing .h5 input only; give the "
                                    "[charge] table in the parameter file, or use --set")
        if src:
            rest, charge_kw = _split_charge(_read_toml(src))
            try:
                params = params_from_dict(rest)
            except InvalidParameters as exc:
                raise InvalidParameters(f"{src}: {exc}") from None
        else:
            params = Params()
        if args.quick:
            params = params.replace(structure=QUICK_STRUCTURE)
    try:
        params = params_with_charge(params, **charge_kw)
    except InvalidParameters as exc:
        raise InvalidParameters(f"{args.config or src}: {exc}") from None
    params = apply_overrides(params, args.set,
                             packing_input=src if packing is not None else None)
    return params, packing


def run(args: argparse.Namespace) -> int:
    from esim.charge import ChargeIncomplete, charge, plot_charge
    from esim.io.atomic import check_not_input, check_output_file
    from esim.packing import pack
    from esim.plot import save_figure

    out = check_output_file(args.output, "--output", (".h5", ".hdf5"))
    fig = figure_path(args, out)
    check_not_input([out, out.with_name(out.stem + "_partial" + out.suffix)],
                    [args.input, args.config])
    quiet = args.quiet or args.json
    params, packing = _params_and_packing(args)
    summary: dict[str, Any] = {}
    t0 = time.perf_counter()
    if packing is None:
        packing = pack(params, quiet=quiet)
        ppath = out.with_name(out.stem + "_packing.h5")
        packing.save(ppath)
        summary["packing"] = str(ppath)
        summary["pack_s"] = time.perf_counter() - t0
    summary["n_particles"] = int(packing.n_particles)
    failure = None
    try:
        result = charge(packing, params, quiet=quiet)
    except ChargeIncomplete as exc:
        failure, result = exc, exc.result
    if failure is not None:  # a partial result beside the output, not over a finished one
        out = out.with_name(out.stem + "_partial" + out.suffix)
        fig = fig.with_name(fig.stem + "_partial" + fig.suffix) if fig is not None else None
    result.save(out)
    summary.update(result.summary())
    summary["output"] = str(out)
    if fig is not None:
        save_figure(plot_charge(result, packing), fig)
        summary["figure"] = str(fig)
    if args.json:
        print_json(summary)
    else:
        print_table(f"esim charge: {out}", summary)
    if failure is not None:
        msg = str(failure).removesuffix(" (partial result kept)")
        raise ChargeIncomplete(f"{msg} (partial result in {out})", failure.result)
    return 0
