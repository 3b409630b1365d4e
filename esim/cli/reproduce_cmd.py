"""Reproduce a published experiment end to end; today: ``otoyama2020``.

``esim reproduce otoyama2020 -o results/`` packs the electrode, images the pristine state, charges
to 4.4 V vs Li at 0.13 mA/cm2, rests, images the charged state at the same cross-sections, and
writes the figures (analogues of Figures 2, 3, 4, 5e/f, S1, S4), ``report.md`` and
``report.json``: one row per number of the paper's that esim predicts or was calibrated on
(reported, simulated, within?, and what the row can show: prediction, calibration, instrument,
input or consistency check), headed by how many predictions pass, then the paper's numbers
taken as given beside the values used.
``--quick`` runs a small box, one seed and two windows (what CI runs).  ``--set SECTION.KEY=VALUE``
(repeatable) changes the preset, e.g. ``--set network.contact_model=mechanical``; the report then
says that it compares a variant, not the default set, with the paper.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from esim.cli._common import add_set_argument

HELP = "reproduce a published experiment (otoyama2020) with a report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", choices=["otoyama2020"], help="which experiment")
    p.add_argument("-o", "--output", default="results", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small box, one seed (CI mode)")
    p.add_argument("--seeds", type=int, nargs="+", help="packing seeds")
    p.add_argument("--windows", type=int, help="cross-sections per seed")
    add_set_argument(p, "the preset (the report then says it compares a variant)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the output folder, the rows within tolerance by "
                        "kind, the run's numbers (means over the windows; the unit in each key) "
                        "and the report's rows")


def run(args: argparse.Namespace) -> int:
    from esim.params import parse_overrides
    from esim.reproduce import EXPERIMENTS

    report = EXPERIMENTS[args.experiment](Path(args.output), quick=args.quick, seeds=args.seeds,
                                          windows=args.windows, quiet=args.quiet or args.json,
                                          overrides=parse_overrides(args.set))
    if args.json:
        numbers = {k: v["mean"] for k, v in report["aggregate"].items()}
        numbers.update(report["charge"])
        print(json.dumps({"output": str(args.output), "elapsed_s": report["elapsed_s"],
                          "seeds": report["seeds"], "n_windows": report["n_windows"],
                          "within_by_kind": report["summary"], "numbers": numbers,
                          "rows": report["rows"]}, default=float))
    else:
        print((Path(args.output) / "report.md").read_text())
    logging.getLogger("esim").info("wrote %s", args.output)
    return 0
