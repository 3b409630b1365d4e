"""Generate a synthetic ground-truth dataset: virtual SPM maps of many electrodes with their truth.

Sample i is an electrode packed with ``structure.seed = FIRST_SEED + i`` (noise seed the same;
setting either seed in the base set is refused: use --first-seed), with the KPFM coupling
calibrated as ``esim reproduce`` does unless the base set changes it, cut at the base set's
plane and imaged before (``pristine``) and after (``charged``: the first charge to 4.4 V vs Li
and the rest of the charge section) the first charge, as ``esim reproduce`` images the paper's
electrode.  Each ``sample_NNNNN/<state>/`` holds ``spm.h5`` (measured maps and
the per-pixel truth: phase, particle index, SOC, network and tip resistance, connection class,
the signals before the amplifiers and the blur), ``gsf/`` (every measured channel plus
``phase.gsf`` and ``truth_particle.gsf``, for Gwyddion) and ``particles.csv`` (the truth
per particle of the window beside its median readings).  ``sample_NNNNN/packing.h5`` and
``charge.h5`` hold the electrode and its charge.  ``manifest.csv`` / ``manifest.json`` list every
sample and state with its summary numbers; ``base_params.toml`` the shared parameters.

Samples already complete in ``-o OUTDIR`` with the same parameters are reused, so an interrupted
run resumes.  A sample that fails for a physical reason is listed as failed (exit status 1); bad
input exits with status 2 before anything is written.

Example (20 electrodes, before and after the charge, two processes)::

    esim dataset --samples 20 --workers 2 -o dataset/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esim.cli._common import add_set_argument, params_from_arg, print_json, print_table

HELP = "synthetic ground-truth dataset: SPM maps of many electrodes with per-pixel truth"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?",
                   help="TOML parameter file of the base set (default: built-in parameters)")
    p.add_argument("-n", "--samples", type=int, default=10,
                   help="number of electrodes (default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=1,
                   help="seed of sample 0; sample i uses FIRST_SEED + i (default: %(default)s)")
    p.add_argument("--states", nargs="+", choices=["pristine", "charged"],
                   default=["pristine", "charged"],
                   help="states to image (default: both)")
    add_set_argument(p, "the base set")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default: %(default)s)")
    p.add_argument("-o", "--outdir", default="dataset",
                   help="output folder (default: %(default)s); complete samples are reused")
    p.add_argument("--figures", action="store_true",
                   help="also draw maps.png and truth.png for every sample and state")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from esim.dataset import generate_dataset

    base = params_from_arg(args.config, args.set)
    result = generate_dataset(base, args.samples, args.outdir, first_seed=args.first_seed,
                              states=tuple(args.states), workers=args.workers,
                              figures=args.figures, quiet=bool(args.quiet or args.json))
    summary = {"n_samples": args.samples, "states": " ".join(args.states),
               "n_failed": result.n_failed, "reused_samples": result.reused,
               "elapsed_s": result.elapsed_s,
               **{f"{k}_path": str(v) for k, v in result.files.items()}}
    if args.json:
        print_json(summary)
    else:
        print_table(f"esim dataset: {Path(args.outdir)}", summary)
        for r in result.rows:
            if r["status"] != "ok" and r["state"] == args.states[0]:
                print(f"  sample {r['sample']} failed: {r['error']}")
    return 1 if result.n_failed else 0
