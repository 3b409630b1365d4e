"""Causal checks of Otoyama et al. (2020): the same electrodes with the NMC-NMC point contacts
narrowed or widened, the LiNbO3 film out of the electron path, a carbon additive, or the
section keeping every contact the milling takes away (a counterfactual); and the sensitivities
of the rows the reproduction misses.

    python experiments/otoyama2020/causal_checks.py results/causal [--quick]
        [--seeds S ...] [--windows N] [--no-sensitivity]

Writes ``causal_checks.md``, ``causal_checks.json``, ``causal_checks.png`` (per-particle charged
SSRM, network resistance and C-AFM current of every case) and ``causal_gradient_vs_rest.png``.
The experiment itself is :func:`esim.causal.run_causal_checks` (see its module docstring for the
cases and their physics).  Bad arguments: one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from esim.errors import EsimError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", nargs="?", default="results/causal", help="output folder")
    ap.add_argument("-o", "--out", dest="out", help="output folder (same as the positional)")
    ap.add_argument("--quick", action="store_true", help="small box, one seed (CI mode)")
    ap.add_argument("--seeds", type=int, nargs="+", help="packing seeds")
    ap.add_argument("--windows", type=int, help="cross-sections per seed")
    ap.add_argument("--no-sensitivity", action="store_true",
                    help="skip the sensitivity studies of the missed rows")
    args = ap.parse_args(argv)
    from esim.causal import run_causal_checks

    try:
        run_causal_checks(args.out or args.output, quick=args.quick, seeds=args.seeds,
                          windows=args.windows, sensitivity=not args.no_sensitivity)
    except EsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out or args.output) / "causal_checks.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
