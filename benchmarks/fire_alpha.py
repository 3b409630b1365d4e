"""Study: FIRE iterations of the default composite against FIRE's restart mixing ``alpha0``
(and, with ``--cascade-step``, the factor between the tolerances of successive restarts; with
``--stiffness-ratios``, the NMC-NMC stiffness ratio, with the NMC-NMC overlap it leaves).

The packing's cost is its FIRE iteration count, which varies several-fold between seeds
(glassy relaxation: local rearrangements with a correlation length of 2-4 radii).  This
script measures the mean and its standard error over many seeds for each ``alpha0``, so that
a change of the minimiser's constants is judged on more than one seed.

Usage::

    python -m benchmarks.fire_alpha                      # 20 seeds x 4 values, ~10 min on 2 cores
    python -m benchmarks.fire_alpha --seeds 10 11 --alphas 0.05 0.1 --out /tmp/fa
    python -m benchmarks.fire_alpha --alphas 0.1 --cascade-step 0.01 --tag fire_cascade_0.01
    python -m benchmarks.fire_alpha --alphas 0.1 --stiffness-ratios 30 60 100 --tag fire_stiffness

Each packing runs in a worker process (``--jobs``, default 2).  Writes ``<tag>.json`` and
``<tag>.md`` (default tag ``fire_alpha``) to ``--out`` (default ``benchmarks/results``), each
atomically.
Iterations are the main box's (the pilot box of boxes above 5000 particles not counted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _one(args: tuple[float, int, float, float, float]) -> dict:
    alpha0, seed, box_m, step, ratio = args
    from esim import packing
    from esim.params import Params

    packing._FIRE_ALPHA0 = alpha0  # read by the FIRE loop at every call
    packing._CASCADE_STEP = step
    p = Params().replace(structure={"box_x_m": box_m, "box_y_m": box_m, "seed": seed,
                                    "nmc_stiffness_ratio": ratio})
    t = time.perf_counter()
    pk = packing.pack(p)
    elapsed = time.perf_counter() - t
    return {"alpha0": alpha0, "cascade_step": step, "nmc_stiffness_ratio": ratio, "seed": seed,
            "iterations": int(pk.iterations), "time_s": elapsed, "n_particles": pk.n_particles,
            "solid_fraction": float(pk.solid_fraction),
            "max_nmc_overlap_rel": pk.summary()["nmc_nmc_overlap_max_rel"]}


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.035, 0.05, 0.07, 0.1])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10, 30)))
    ap.add_argument("--box-m", type=float, default=85.46e-6,
                    help="lateral box edge, m (85.46e-6: ~1e4 particles at 50 um thickness)")
    ap.add_argument("--cascade-step", type=float, default=0.1,
                    help="factor between the force tolerances of successive FIRE restarts "
                         "(esim's default 0.1; 1e-3 goes from 0.1 straight to 1e-4)")
    ap.add_argument("--stiffness-ratios", type=float, nargs="+", default=[100.0],
                    help="NMC-NMC stiffness ratios (structure.nmc_stiffness_ratio; default 100)")
    ap.add_argument("--tag", default="fire_alpha", help="name of the result files")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    if (not a.alphas or not a.seeds or a.jobs < 1 or a.box_m <= 0
            or not 0 < a.cascade_step < 1 or min(a.stiffness_ratios) < 1):
        ap.error("--alphas and --seeds need values; --jobs >= 1; --box-m > 0; "
                 "0 < --cascade-step < 1; --stiffness-ratios >= 1")
    work = [(al, s, a.box_m, a.cascade_step, k)
            for k in a.stiffness_ratios for al in a.alphas for s in a.seeds]
    with ProcessPoolExecutor(a.jobs) as ex:
        rows = list(ex.map(_one, work))
    table = ["| alpha0 | NMC stiffness ratio | seeds | mean iterations | s.e.m. | median | min | "
             "max | mean time (s) | largest NMC-NMC overlap / r_min |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for k in a.stiffness_ratios:
        for al in a.alphas:
            mine = [r for r in rows if r["alpha0"] == al and r["nmc_stiffness_ratio"] == k]
            its = [r["iterations"] for r in mine]
            ts = [r["time_s"] for r in mine]
            ov = max(r["max_nmc_overlap_rel"] for r in mine)
            sem = statistics.stdev(its) / math.sqrt(len(its)) if len(its) > 1 else float("nan")
            summary.append({"alpha0": al, "nmc_stiffness_ratio": k, "n": len(its),
                            "mean": statistics.mean(its), "sem": sem,
                            "median": statistics.median(its), "min": min(its), "max": max(its),
                            "mean_time_s": statistics.mean(ts), "max_nmc_overlap_rel": ov})
            table.append(f"| {al:g} | {k:g} | {len(its)} | {statistics.mean(its):.0f} | "
                         f"{sem:.0f} | {statistics.median(its):.0f} | {min(its)} | {max(its)} | "
                         f"{statistics.mean(ts):.1f} | {ov:.4f} |")
    a.out.mkdir(parents=True, exist_ok=True)
    meta = {"box_x_m": a.box_m, "cascade_step": a.cascade_step,
            "n_particles_mean": statistics.mean(r["n_particles"] for r in rows),
            "jobs": a.jobs, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write(a.out / f"{a.tag}.json", json.dumps({"meta": meta, "summary": summary, "runs": rows},
                                                 indent=1))
    head = ("# FIRE minimiser study (alpha0, cascade step, NMC stiffness ratio)\n\n"
            f"Default composite, lateral box {a.box_m:.4g} m "
            f"(tolerance cascade step {a.cascade_step:g}) "
            f"(~{meta['n_particles_mean']:.0f} particles), seeds {a.seeds[0]}..{a.seeds[-1]}; "
            f"times are with {a.jobs} packings sharing the machine "
            "(iterations are what count).\n\n")
    _write(a.out / f"{a.tag}.md", head + "\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
