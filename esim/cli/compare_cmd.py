"""Compare measured SPM maps of a cross-section with simulated ones, particle by particle.

The measured area: any of --ssrm (Ohm), --kpfm (V) and --cafm (A), one file each, plus one
source of phases: --phase (a label map: 0 pore, 1 NMC, 2 SE), --sem (a backscattered-electron
image: pore < SE < NMC in brightness) or --edx-ni with --edx-s (EDX maps).  Files are Gwyddion
.gsf or .gwy (name a channel of a multi-channel file as FILE.gwy#TITLE, or FILE.gwy#N by its
number when titles repeat), TIFF or .npy (these two need --pixel-size-m, as does a Gwyddion
file that gives no lateral unit or extent).  The simulated areas: one or more spm.h5 files
from `esim spm` or `esim dataset` (--sim, repeatable; pooled).

With --register, each measured channel is first shifted by whole pixels onto the phase source
(cross-correlation of edge images; a channel with no edges, e.g. a pristine SSRM map at the
amplifier's ceiling, stays in place with a warning).

Both sides are segmented the same way (phases, then NMC particles by a distance-transform
watershed), each particle is read at the peak of its pixel histogram (the method of Otoyama et
al. 2020), and the distributions are compared: medians and quartiles, Kolmogorov-Smirnov and
Wasserstein distances, the share of NMC at or above --high-ohm with its Wilson 95 % interval,
the depth gradient and the per-phase pixel medians.  On the simulated maps the segmentation is
also scored against their truth.

Writes OUTDIR/compare.json, compare.md, particles.csv, compare.png and segmentation.png.
With --sweep DIR instead of --sim, every parameter set of an `esim sweep --stage spm --save`
folder is compared (its seeds pooled) and the sets are ranked by the mean Kolmogorov-Smirnov
statistic over the channels (fit.csv, fit.md, fit.json, fit.png): a grid search for the
parameters that best explain the measured maps; the comparison files are those of the best set.

Example (the paper's convention: KPFM as V_CPD' = V_CPD + V_OCV, here 3.75 V vs In-Li)::

    esim compare --ssrm ssrm.gsf --kpfm scan.gwy#KPFM --kpfm-offset-V 3.75 --sem sem.tif \\
        --source-pixel-size-m 29.3e-9 --register --cc-side last-row \\
        --sim charged/spm.h5 -o compare/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esim.cli._common import print_json, print_table

HELP = "compare measured SSRM/KPFM/C-AFM maps with simulated ones, particle by particle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from esim.analysis import HIGH_R_OHM
    from esim.io.maps import CC_SIDES

    m = p.add_argument_group("measured maps (one area)")
    m.add_argument("--ssrm", metavar="FILE", help="SSRM resistance map (Ohm)")
    m.add_argument("--kpfm", metavar="FILE", help="KPFM map (V), compared as V_CPD'")
    m.add_argument("--cafm", metavar="FILE", help="C-AFM current map (A)")
    m.add_argument("--phase", metavar="FILE", help="phase labels: 0 pore, 1 NMC, 2 SE")
    m.add_argument("--sem", metavar="FILE", help="SEM (BSE) image: phases by Otsu thresholds")
    m.add_argument("--edx-ni", metavar="FILE", help="EDX Ni map (with --edx-s)")
    m.add_argument("--edx-s", metavar="FILE", help="EDX S map (with --edx-ni)")
    m.add_argument("--particles", metavar="FILE",
                   help="NMC particle labels (0 none, 1, 2, ...), e.g. drawn by hand: used "
                        "instead of the watershed split")
    m.add_argument("--cc-side", choices=CC_SIDES, default="first-row",
                   help="where the current collector is in the measured files "
                        "(default: %(default)s, esim's own convention)")
    m.add_argument("--pixel-size-m", type=float, default=None,
                   help="pixel size, m (required for TIFF, .npy and a .gsf/.gwy without a lateral "
                        "unit or extent; checked against one that has them)")
    m.add_argument("--source-pixel-size-m", type=float, default=None,
                   help="pixel size of the --phase/--sem/--edx-*/--particles files, m, where it "
                        "differs from the channels' (e.g. a TIFF SEM image; default: "
                        "--pixel-size-m)")
    m.add_argument("--kpfm-offset-V", type=float, default=0.0,
                   help="added to the KPFM map: the cell's V_OCV vs In-Li if the file holds "
                        "V_CPD (default: %(default)s, the file holds V_CPD')")
    m.add_argument("--register", action="store_true",
                   help="shift each channel by whole pixels onto the phase map (phase "
                        "correlation of edge images)")
    m.add_argument("--max-shift-m", type=float, default=2e-6,
                   help="largest shift --register may apply, m (default: %(default)s)")
    m.add_argument("--sem-classes", type=int, choices=(2, 3), default=3,
                   help="SEM phases: 3 = pore, SE, NMC; 2 = SE, NMC (default: %(default)s)")
    sim = p.add_mutually_exclusive_group(required=True)
    sim.add_argument("--sim", action="append", default=[], metavar="SPM.h5",
                     help="simulated maps (repeatable; the sets are pooled)")
    sim.add_argument("--sweep", metavar="DIR",
                     help="rank every parameter set of an `esim sweep --stage spm --save` "
                          "folder against the measured maps (seeds pooled): fit.csv/md/json/png, "
                          "and the full comparison of the best set")
    p.add_argument("--sim-phases", choices=("same", "truth"), default="same",
                   help="segment the simulated maps by the measured side's method (same) or "
                        "take their true phases (default: %(default)s)")
    p.add_argument("--min-diameter-m", type=float, default=1e-6,
                   help="NMC particle size d for the watershed, m: seeds at least d/2 apart, "
                        "and sections smaller than a disc of diameter d/2 are not counted "
                        "(default: %(default)s)")
    p.add_argument("--high-ohm", type=float, default=HIGH_R_OHM,
                   help="high-resistance threshold, ohm (default: %(default)s)")
    p.add_argument("-o", "--outdir", default="compare",
                   help="output folder (default: %(default)s)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from esim.compare import (CHANNEL_SPECS, compare_maps, load_measured, rank_sweep,
                              remove_fit, simulated_mapset, write_comparison, write_fit)
    from esim.errors import InvalidParameters
    from esim.io.atomic import check_output_dir
    from esim.spm.maps import SPMMaps

    check_output_dir(args.outdir, files=("compare.json", "compare.md", "particles.csv",
                                         "compare.png", "segmentation.png", "fit.csv",
                                         "fit.md", "fit.json", "fit.png"),
                     marker="compare.json")
    if not (args.min_diameter_m > 0):
        raise InvalidParameters(f"--min-diameter-m: must be positive, got {args.min_diameter_m}")
    if not (args.high_ohm > 0):
        raise InvalidParameters(f"--high-ohm: must be positive, got {args.high_ohm}")
    sims = [str(Path(f).resolve()) for f in args.sim]
    twice = [f for f, r in zip(args.sim, sims) if sims.count(r) > 1]
    if twice:  # pooled twice, its particles would count double
        raise InvalidParameters(f"--sim {twice[0]}: given twice")
    # read and check everything before anything is written
    measured = load_measured(ssrm=args.ssrm, kpfm=args.kpfm, cafm=args.cafm, phase=args.phase,
                             sem=args.sem, edx_ni=args.edx_ni, edx_s=args.edx_s,
                             particles=args.particles,
                             cc_side=args.cc_side, pixel_size_m=args.pixel_size_m,
                             source_pixel_size_m=args.source_pixel_size_m,
                             kpfm_offset_V=args.kpfm_offset_V,
                             min_diameter_m=args.min_diameter_m, sem_classes=args.sem_classes,
                             register=args.register, max_shift_m=args.max_shift_m)
    summary: dict = {}
    if args.sweep:
        fit = rank_sweep(measured, args.sweep, min_diameter_m=args.min_diameter_m,
                         sem_classes=args.sem_classes, sim_phases=args.sim_phases,
                         high_ohm=args.high_ohm, quiet=bool(args.quiet or args.json))
        result = fit["best"]
        files = write_fit(fit, measured, args.outdir, figures=not args.no_figures)
        summary["sets_ranked"] = len(fit["rows"])
        for k, v in fit["rows"][0]["overrides"].items():
            summary[f"best_{k}"] = v
        summary["best_score"] = fit["rows"][0]["score"]
    else:
        method = "phase" if args.sim_phases == "truth" else measured.seg.method.split(" ")[0]
        sims = [simulated_mapset(SPMMaps.load(f), method, min_diameter_m=args.min_diameter_m,
                                 sem_classes=args.sem_classes, name=str(f),
                                 channels=tuple(measured.channels)) for f in args.sim]
        if sum(m.seg.n_particles for m in sims) == 0:
            raise InvalidParameters(
                f"--min-diameter-m: no NMC particle of at least {args.min_diameter_m:g} m in the "
                f"simulated maps ({', '.join(map(str, args.sim))}); nothing to compare")
        result = compare_maps(measured, sims, high_ohm=args.high_ohm,
                              min_diameter_m=args.min_diameter_m)
        files = write_comparison(result, measured, sims, args.outdir,
                                 figures=not args.no_figures)
        remove_fit(args.outdir)
    for k, v in (result.get("registration") or {}).items():
        summary[f"{k}_shift_rows_px"], summary[f"{k}_shift_columns_px"] = v["shift_px"]
    summary["particles_measured"] = result["segmentation"]["particles_measured"]
    summary["particles_simulated"] = sum(result["segmentation"]["particles_simulated"])
    for c, r in result["channels"].items():
        u, du = CHANNEL_SPECS[c].key_unit, CHANNEL_SPECS[c].spread_unit
        summary[f"{c}_particle_median_measured_{u}"] = r[f"particle_median_measured_{u}"]
        summary[f"{c}_particle_median_simulated_{u}"] = r[f"particle_median_simulated_{u}"]
        if "ks_statistic" in r:
            summary[f"{c}_ks_statistic"] = r["ks_statistic"]
            summary[f"{c}_ks_pvalue"] = r["ks_pvalue"]
            summary[f"{c}_wasserstein_{du}"] = r[f"wasserstein_{du}"]
        if c == "ssrm":
            summary["ssrm_high_fraction_measured"] = r["high_fraction_measured"]
            summary["ssrm_high_fraction_simulated"] = r["high_fraction_simulated"]
    summary.update({f"{k}_path": str(v) for k, v in files.items()})
    if args.json:
        print_json(summary)
    else:
        print_table(f"esim compare: {Path(args.outdir)}", summary)
    return 0
