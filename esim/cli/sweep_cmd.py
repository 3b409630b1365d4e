"""Run one stage of esim for many parameter sets (a grid or a list), in parallel with Dask.

Each ``--vary SECTION.KEY=VALUES`` names a field of the parameter file (``esim params --default``
lists them) and its values: comma-separated (``structure.seed=1,2,3``,
``network.contact_model=geometric,mechanical``) or spaced, ``lin(START, STOP, COUNT)`` and
``log(START, STOP, COUNT)``, quoted for the shell
(``"charge.current_density_A_per_m2=log(0.65, 13, 3)"``).  The points are every combination of
the values (default) or, with ``--zip``, the lists taken element by element.
``--set SECTION.KEY=VALUE`` changes the base set for every point.  Every point is validated
before any runs: a bad value exits with status 2, naming the point and the field, and writes
nothing.

Each point packs its own electrode and runs ``--stage``: ``pack`` (structure), ``solve``
(effective conductivities at ``--soc``), ``charge`` (first charge and rest), ``spm`` (virtual SPM
maps at ``--soc``) or ``otoyama2020`` (the reference experiment on the point's seed, with the
point's changes applied to the paper's preset: how the paper's numbers respond to a parameter,
e.g. ``--vary "spm.tip_radius_m=log(5e-9, 1e-7, 5)"``; ``--quick`` for its quick mode).

Writes to ``-o OUTDIR``: ``sweep.csv``, ``sweep.md``, ``sweep.json`` (one row per point, SI units
in the column names), ``sweep.png`` (each number against the first varied non-seed field, mean
and spread over seeds; failed points marked) and ``points/point_NNNN.json``, written as each
point finishes.  Re-running into the same folder reuses the points whose parameters are
unchanged, so an interrupted sweep resumes.  A point that fails for a physical reason is listed
as failed and the others go on; the exit status is then 1.  A charge that stops early (e.g. a
current the pristine electrode cannot carry) is a result, listed as incomplete with its reason.

Example: the electronic conductivity of the composite against its NMC share, three seeds each::

    esim sweep --stage solve --soc 1 --vary structure.nmc_fraction_of_solid=0.4,0.54,0.7 \\
        --vary structure.seed=1,2,3 --workers 2 -o sweep_out
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esim.cli._common import add_set_argument, params_from_arg, print_json, print_table

HELP = "run one stage for a grid of parameter values (Dask), with a table and a figure"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from esim.sweep import STAGES

    p.add_argument("config", nargs="?",
                   help="TOML parameter file of the base set (default: built-in parameters)")
    p.add_argument("--vary", action="append", default=[], metavar="SECTION.KEY=VALUES",
                   help="a field and its values (repeatable): V1,V2,... or lin(A, B, N) or "
                        "log(A, B, N)")
    add_set_argument(p, "the base set, for every point")
    p.add_argument("--zip", action="store_true",
                   help="take the --vary lists element by element instead of every combination")
    p.add_argument("--stage", choices=list(STAGES), default="solve",
                   help="what each point computes (default: %(default)s)")
    p.add_argument("--soc", type=float, default=0.0,
                   help="uniform state of charge for the solve and spm stages, 0..1 "
                        "(default: %(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes, one point each at a time (default: %(default)s)")
    p.add_argument("-o", "--outdir", default="sweep_out",
                   help="output folder (default: %(default)s); points already there are reused")
    p.add_argument("--save", action="store_true",
                   help="also keep each point's packing and stage result (HDF5)")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="number drawn in sweep.png (repeatable; default: the stage's main ones)")
    p.add_argument("--quick", action="store_true",
                   help="run the otoyama2020 stage in its quick mode (small box, 2 windows)")
    p.add_argument("--no-figure", action="store_true", help="do not draw sweep.png")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from esim.errors import InvalidParameters
    from esim.sweep import parse_vary, run_sweep

    if not args.vary:
        raise InvalidParameters("--vary: give at least one SECTION.KEY=VALUES (e.g. "
                                "structure.seed=1,2,3)")
    vary = parse_vary(args.vary)
    base = params_from_arg(args.config, args.set)
    result = run_sweep(base, vary, args.stage, args.outdir, mode="zip" if args.zip else "grid",
                       soc=args.soc, workers=args.workers, save=args.save,
                       quiet=bool(args.quiet or args.json), figure=not args.no_figure,
                       metrics=args.metric, quick=args.quick)
    summary = {"stage": args.stage, "varied": ", ".join(vary), "n_points": len(result.rows),
               "n_failed": result.n_failed, "n_incomplete": result.n_incomplete,
               "reused_points": result.reused,
               "elapsed_s": result.elapsed_s,
               **{f"{k}_path": str(v) for k, v in result.files.items()}}
    if args.json:
        print_json(summary)
    else:
        print_table(f"esim sweep: {Path(args.outdir)}", summary)
        for r in result.rows:
            if r["status"] != "ok":
                print(f"  point {r['index']} {r['status']}: {r['error']}")
    return 1 if result.n_failed else 0
