"""Generate the particle packing: NMC111 and Li3PS4 glass spheres, pressed to the target solid
fraction; write it to HDF5 with a figure of a cross-section and of the contact statistics."""

from __future__ import annotations

import argparse
import logging
import time

from esim.cli._common import (add_set_argument, figure_path, params_from_arg, print_json,
                              print_table)
from esim.io.atomic import check_output_file

HELP = "generate a two-phase particle packing (HDF5 + figure)"
log = logging.getLogger("esim")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="TOML parameter file (default: built-in defaults)")
    p.add_argument("-o", "--output", default="packing.h5",
                   help="HDF5 output (default: %(default)s)")
    p.add_argument("--figure", help="figure path (default: OUTPUT with .png)")
    p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_set_argument(p)


def run(args: argparse.Namespace) -> int:
    from esim.packing import pack

    params = params_from_arg(args.config, args.set)
    out = check_output_file(args.output, "--output", (".h5", ".hdf5"))
    fig = figure_path(args, out)
    t0 = time.perf_counter()
    packing = pack(params, quiet=args.quiet or args.json)
    elapsed = time.perf_counter() - t0
    packing.save(out)
    summary = packing.summary()
    summary["elapsed_s"] = elapsed
    summary["output"] = str(out)
    if fig is not None:
        from esim.plot import plot_packing

        plot_packing(packing, fig)
        summary["figure"] = str(fig)
    if args.json:
        print_json(summary)
    else:
        print_table(f"esim pack: {out}", summary)
    return 0
