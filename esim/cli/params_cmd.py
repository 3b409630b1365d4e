"""Write the default parameter set, or check a parameter file and print it in full."""

from __future__ import annotations

import argparse
import sys

from esim.cli._common import add_set_argument, params_from_arg

HELP = "print the default parameters (--default) or validate a TOML file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--default", action="store_true",
                   help="print the full default parameter set as TOML (with units and sources)")
    g.add_argument("config", nargs="?", help="a TOML parameter file to validate and print")
    add_set_argument(p, "the set printed (e.g. esim params --default --set "
                        "charge.rest_time_s=0 > my.toml)")


def run(args: argparse.Namespace) -> int:
    p = params_from_arg(None if args.default else args.config, args.set)
    sys.stdout.write(p.to_toml())
    return 0
