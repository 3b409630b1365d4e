"""Electronic percolation of the NMC network against the NMC share, beside Bielefeld et al. (2019).

Bielefeld, Weber & Janek (J. Phys. Chem. C 123, 1626, 2019) put the electronic percolation
threshold of NMC in NMC/Li3PS4-type composites (3 um SE, 80 x 80 x 140 um domains) at
``p_c = 7.83 ln(d / um) + 36.67`` vol% of NMC in the total volume [S], about 49 vol% for 5 um NMC:
the paper's 54:46 composite (46-51 vol% NMC at 5-15 % porosity) would sit at the threshold
(shared/reference/materials_literature.md).  This experiment measures where esim's packings
percolate, with :func:`esim.sweep.run_sweep`: NMC shares of the solid from 0.15 to 0.6, several
packing seeds each, on the default 40 x 40 x 50 um electrode (walls at the collector and the
separator, periodic sideways).  For each point:

* ``nmc_percolates``: an NMC-NMC contact path joins the collector (z = 0) to the separator
  (z = L);
* ``nmc_connected_fraction``: the NMC volume electronically connected to the collector;
* ``sigma_e_S_per_m`` at SOC 1 (charged NMC), the through-plane electronic conductivity.

The threshold is where the spanning probability over the seeds crosses 1/2 (linear
interpolation between shares; with a few seeds a coarse estimate), reported in vol% of the total
volume (NMC share of the solid times the union solid fraction, both measured per packing).  The
electrode is 50 um thick, a third of Bielefeld's domain, and the 1/2 crossing of a finite box
shifts with its size (``experiments/percolation_sc.py`` shows the shift on a lattice).

Usage::

    python experiments/nmc_percolation.py [-o OUTDIR] [--quick] [--seeds N] [--workers W]

writes ``OUTDIR/nmc_percolation.{json,md,png}`` and the sweeps' own files in
``OUTDIR/sweep_0/`` and ``sweep_1/`` (a re-run into the same folder reuses finished points).
``--quick`` (a 25 x 25 x 20 um box, 2-3 shares, 1 seed; seconds) is what the test suite runs.
Full: 10 shares x 4 seeds per series, ~3 min on 2 cores.

Two packings are compared: esim's default (the soft glass overlaps NMC; union solid fraction
0.85) and a control of rigid spheres (``se_overlap_allowed = false``: no overlaps at all, solid
fraction 0.62, as a rigid-sphere structure generator makes them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Bielefeld, Weber & Janek, J. Phys. Chem. C 123, 1626 (2019): electronic percolation threshold
# of NMC (d = NMC particle diameter) with 3 um SE, vol% of the total volume [S]
BIELEFELD_SLOPE_VOLPCT = 7.83
BIELEFELD_INTERCEPT_VOLPCT = 36.67

#: the two packings compared: esim's default (soft glass overlapping NMC, union solid fraction
#: 0.85) and a control of rigid spheres (glass as hard as NMC, no overlaps, solid fraction 0.62,
#: as in rigid-sphere structure generators)
SERIES = {"soft glass (default)": {},
          "rigid spheres": {"se_overlap_allowed": False, "target_solid_fraction": 0.62}}

MODES = {
    "quick": {"structure": {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
                            "sample_points": 50_000},
              "shares": {"soft glass (default)": [0.2, 0.3, 0.45], "rigid spheres": [0.2, 0.6]},
              "seeds": 1},
    "full": {"structure": {},
             "shares": {name: [round(0.15 + 0.05 * k, 2) for k in range(10)]
                        for name in SERIES},
             "seeds": 4},
}


def bielefeld_threshold_volpct(d_m: float) -> float:
    """Bielefeld et al. (2019)'s NMC percolation threshold, vol% of the total volume, for NMC
    particles of diameter ``d_m`` (m) with 3 um SE."""
    return BIELEFELD_SLOPE_VOLPCT * math.log(d_m / 1e-6) + BIELEFELD_INTERCEPT_VOLPCT


def crossing(x: np.ndarray, p: np.ndarray, level: float = 0.5) -> float | None:
    """The first x where ``p`` (ordered by x) reaches ``level`` from below, by linear
    interpolation between neighbours; None when it never does or already starts there."""
    x, p = np.asarray(x, float), np.asarray(p, float)
    for k in range(1, x.size):
        if p[k - 1] < level <= p[k]:
            return float(x[k - 1] + (level - p[k - 1]) * (x[k] - x[k - 1]) / (p[k] - p[k - 1]))
    return None


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per NMC share: spanning probability, connected fraction and sigma_e over the
    seeds, NMC vol% of the total volume (mean of the measured values)."""
    shares = sorted({r["overrides"]["structure.nmc_fraction_of_solid"] for r in rows})
    out = []
    for s in shares:
        rs = [r for r in rows if r["overrides"]["structure.nmc_fraction_of_solid"] == s
              and r["status"] == "ok"]
        if not rs:
            continue
        vol = [100 * r["solid_fraction"] * r["nmc_fraction_of_solid"] for r in rs]
        conn = [r["nmc_connected_fraction"] for r in rs]
        sig = [r["sigma_e_S_per_m"] for r in rs]
        out.append({"nmc_fraction_of_solid": s, "nmc_volpct_of_total": float(np.mean(vol)),
                    "seeds": len(rs),
                    "spanning_probability": float(np.mean([r["nmc_percolates"] for r in rs])),
                    "connected_fraction_mean": float(np.mean(conn)),
                    "connected_fraction_std": float(np.std(conn)),
                    "sigma_e_S_per_m_median": float(np.median(sig))})
    return out


def _figure(series: dict[str, dict[str, Any]], marks: dict[str, float | None],
            path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from esim.plot import save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.6))
    for k, (name, ser) in enumerate(series.items()):
        table = ser["table"]
        v = np.array([t["nmc_volpct_of_total"] for t in table])
        c = f"C{2 * k}"
        a.plot(v, [t["spanning_probability"] for t in table], "o-", color=c,
               label=f"{name}: spanning probability")
        a.errorbar(v, [t["connected_fraction_mean"] for t in table],
                   yerr=[t["connected_fraction_std"] for t in table], fmt="s--", capsize=3,
                   color=c, alpha=0.6, label=f"{name}: NMC volume connected to the collector")
        b.semilogy(v, [t["sigma_e_S_per_m_median"] for t in table], "o-", color=c, label=name)
        if ser["threshold_volpct"] is not None:
            for ax in (a, b):
                ax.axvline(ser["threshold_volpct"], color=c, lw=1.0)
    a.set_ylim(-0.03, 1.03)
    a.set_ylabel("fraction")
    b.set_ylabel("σ_e at SOC 1, median over seeds (S/m)")
    styles = {"Bielefeld et al. 2019 threshold": ("k", "--"),
              "Otoyama 2020 composite (54:46, φ = 0.85)": ("C1", ":")}
    for ax in (a, b):
        for name, x in marks.items():
            if x is not None:
                c, ls = styles[name]
                ax.axvline(x, color=c, ls=ls, lw=1.2, label=name if ax is a else None)
        ax.set_xlabel("NMC, vol% of the electrode")
    fig.legend(*a.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8,
               frameon=False)
    fig.suptitle("Electronic percolation of esim's NMC network (solid lines: spanning "
                 "probability 1/2)", fontsize=11)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)

def run(out: Path, quick: bool, seeds: int | None, workers: int) -> dict[str, Any]:
    from esim import __version__
    from esim.io.atomic import atomic_write_text
    from esim.params import Params
    from esim.sweep import run_sweep

    mode = MODES["quick" if quick else "full"]
    n_seeds = seeds or mode["seeds"]
    base = Params().replace(structure=mode["structure"]) if mode["structure"] else Params()
    t0 = time.perf_counter()
    series: dict[str, dict[str, Any]] = {}
    n_failed = 0
    for k, (name, changes) in enumerate(SERIES.items()):
        b = base.replace(structure=changes) if changes else base
        res = run_sweep(b, {"structure.nmc_fraction_of_solid": mode["shares"][name],
                            "structure.seed": list(range(1, n_seeds + 1))}, "solve",
                        out / f"sweep_{k}", soc=1.0, workers=workers, quiet=False,
                        metrics=["nmc_connected_fraction", "sigma_e_S_per_m"])
        n_failed += res.n_failed
        table = summarise(res.rows)
        p = np.array([t["spanning_probability"] for t in table])
        series[name] = {
            "structure_changes": changes,
            "solid_fraction": b.structure.target_solid_fraction, "table": table,
            "threshold_volpct": crossing(np.array([t["nmc_volpct_of_total"] for t in table]), p),
            "threshold_nmc_fraction_of_solid": crossing(
                np.array([t["nmc_fraction_of_solid"] for t in table]), p)}
    d = base.structure.nmc_d50_m
    biel = bielefeld_threshold_volpct(d)
    paper = 100 * 0.54 * base.structure.target_solid_fraction
    report = {"esim_version": __version__, "quick": quick, "seeds": n_seeds,
              "box_m": [base.structure.box_x_m, base.structure.box_y_m,
                        base.structure.electrode_thickness_m],
              "nmc_d50_m": d, "series": series,
              "esim_threshold_volpct": series["soft glass (default)"]["threshold_volpct"],
              "bielefeld2019_threshold_volpct": biel,
              "otoyama2020_composite_volpct": paper,
              "n_failed": n_failed, "elapsed_s": time.perf_counter() - t0}
    marks = {"Bielefeld et al. 2019 threshold": biel,
             "Otoyama 2020 composite (54:46, φ = 0.85)": paper}
    _figure(series, marks, out / "nmc_percolation.png")
    atomic_write_text(out / "nmc_percolation.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "nmc_percolation.md", _markdown(report))
    return report

def _markdown(r: dict[str, Any]) -> str:
    box = " x ".join(f"{1e6 * x:g}" for x in r["box_m"])
    lines = [
        "# Electronic percolation of the NMC network", "",
        f"esim {r['esim_version']}; box {box} um; NMC d50 {1e6 * r['nmc_d50_m']:g} um; "
        f"{r['seeds']} seed(s) per share; quick={r['quick']}; {r['elapsed_s']:.0f} s."]
    for name, ser in r["series"].items():
        thr = ser["threshold_volpct"]
        lines += ["", f"## {name}: solid fraction {ser['solid_fraction']:g}"
                  + (f" ({ser['structure_changes']})" if ser["structure_changes"] else ""), "",
                  "| NMC share of solid | NMC vol% of electrode | spanning probability | "
                  "connected fraction (mean ± std) | σ_e at SOC 1, median (S/m) |",
                  "|---|---|---|---|---|"]
        for t in ser["table"]:
            lines.append(
                f"| {t['nmc_fraction_of_solid']:g} | {t['nmc_volpct_of_total']:.1f} | "
                f"{t['spanning_probability']:.2f} | {t['connected_fraction_mean']:.3f} ± "
                f"{t['connected_fraction_std']:.3f} | {t['sigma_e_S_per_m_median']:.3g} |")
        lines += ["", "Threshold (spanning probability 1/2): "
                  + (f"{thr:.1f} vol% of the electrode, NMC share "
                     f"{ser['threshold_nmc_fraction_of_solid']:.3f} of the solid"
                     if thr is not None else "not bracketed")]
    lines += ["", "## Reference",
              "",
              f"- Bielefeld et al., J. Phys. Chem. C 123, 1626 (2019), for "
              f"{1e6 * r['nmc_d50_m']:g} um NMC and 3 um SE: "
              f"{r['bielefeld2019_threshold_volpct']:.1f} vol%",
              f"- Otoyama et al. 2020 composite (54:46 at a solid fraction of 0.85): "
              f"{r['otoyama2020_composite_volpct']:.1f} vol%"]
    return "\n".join(lines) + "\n"

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--outdir", default="results/nmc_percolation")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, help="packing seeds per share (default: 4, quick 1)")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    if a.seeds is not None and not 1 <= a.seeds <= 1000:
        print("nmc_percolation: error: --seeds must lie in [1, 1000]", file=sys.stderr)
        return 2
    r = run(Path(a.outdir), a.quick, a.seeds, a.workers)
    print(_markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
