"""How low may the pristine NMC conductivity be for the paper's charge to start at all?

The reference cell was charged at 0.13 mA/cm2 to 4.4 V vs Li and gave 164 mAh/g (Otoyama et
al. 2020).  The pristine electronic conductivity of the NMC is the preset's least certain
input: the literature brackets it over three decades, 5e-6 ... 1e-2 S/m (Amin & Chiang, J.
Electrochem. Soc. 163, A1512, 2016; Wang et al., J. Power Sources 393, 75, 2018; pressed
LiNbO3-coated NMC111 of the reference group; ``shared/reference/materials_literature.md``), and
the preset takes the bracket's log-middle, 2.2e-4 S/m, because the pristine SSRM maps saturate
anywhere in it (README, calibrated values).

The charge itself says more.  At its start every NMC particle is pristine, so the current has
to leave the electrode through the pristine NMC particles that touch the current collector: one
constriction ``rho / (4 a)`` per contact, the network's own wall edges.  If the cell voltage
then runs past the cut-off at once, the charge cannot start (``impossible_current``), and the
paper's charge did start.  This experiment finds, per packing seed and contact model, the
smallest pristine conductivity at which the default electrode starts the charge at the paper's
current (a scan of the bracket, then a bisection in log sigma), and the start voltage across the
bracket:

* ``sigma_min_S_per_m``: the charge starts above it and not below (the scan checks that the
  answer is one crossing);
* ``v_start_V``: the cell voltage after the first step (1 s) where the charge starts;
* ``r_start_ohm_m2`` = (v_start - U(x=0)) / j, the start's area-specific resistance, beside
  ``r_cc_ohm_m2`` = A / sum of the conductances of the NMC-collector edges: how much of the start
  is the collector constriction.

Nothing here changes the preset: it states what the paper's charge implies within the model.

Usage::

    python experiments/pristine_sigma_bound.py [-o OUTDIR] [--quick]

writes ``OUTDIR/pristine_sigma_bound.{json,md,png}``.  Full: the default 40 x 40 x 50 um
electrode, the preset's three seeds, both contact models, ~3 min on 2 cores.  ``--quick`` (a
25 x 25 x 20 um box, one seed, the geometric model, a coarse scan; ~20 s) is what the tests run.
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

#: literature bracket of the pristine NMC111 electronic conductivity, S/m (5e-8 ... 1e-4 S/cm:
#: Amin & Chiang, J. Electrochem. Soc. 163, A1512, 2016 [S]; pressed LiNbO3-coated NMC111 of
#: the reference group [S]; materials_literature.md)
BRACKET_S_PER_M = (5e-6, 1e-2)

MODES = {
    "quick": {"structure": {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
                            "sample_points": 50_000},
              "seeds": 1, "contact_models": ["geometric"], "scan": 5, "bisect_ratio": 1.25},
    "full": {"structure": {}, "seeds": 3, "contact_models": ["geometric", "mechanical"],
             "scan": 9, "bisect_ratio": 1.05},
}


def start_charge(packing: Any, params: Any, sigma: float) -> dict[str, Any]:
    """Run the first seconds of the charge with pristine conductivity ``sigma`` (S/m).

    Returns ``{"starts": bool, "v_start_V": float (NaN if it does not start),
    "stop_reason": str}``.
    """
    from esim.charge import ChargeIncomplete, charge

    p = params.replace(materials={"nmc_sigma_e_pristine_S_per_m": sigma},
                       charge={"max_time_s": 3.0})
    try:
        res = charge(packing, p)
    except ChargeIncomplete as exc:
        res = exc.result
    starts = res.stop_reason not in ("impossible_current", "newton_failed")
    v = float(res.voltage_V_vs_Li[1]) if starts and res.voltage_V_vs_Li.size > 1 else math.nan
    return {"starts": bool(starts), "v_start_V": v, "stop_reason": res.stop_reason}


def collector_resistance(packing: Any, params: Any) -> float:
    """``A / G``: the area-specific resistance (ohm m2) of the pristine NMC particles' contacts
    with the current collector, the network's own wall edges, all in parallel."""
    from esim.network import EDGE_WALL, build_network

    net = build_network(packing, params, carrier="electron", soc=0.0)
    at_cc = (net.edge_kind == EDGE_WALL) & (net.conns[:, 1] == net.cc_node)
    nmc = net.phase[net.conns[:, 0]] == 1
    g = float(net.g[at_cc & nmc].sum())
    area = float(packing.box_m[0] * packing.box_m[1])
    return area / g if g > 0 else math.inf


def bound(packing: Any, params: Any, n_scan: int, ratio: float) -> dict[str, Any]:
    """Scan the bracket (``n_scan`` log-spaced values), then bisect the crossing in log sigma
    until the bracket around it is narrower than ``ratio``."""
    sig = np.geomspace(*BRACKET_S_PER_M, n_scan)
    scan = [dict(sigma_S_per_m=float(s), **start_charge(packing, params, float(s))) for s in sig]
    ok = np.array([r["starts"] for r in scan])
    crossings = int(np.count_nonzero(ok[1:] != ok[:-1]))
    out: dict[str, Any] = {"scan": scan, "crossings": crossings}
    if ok.all() or not ok.any():
        out["sigma_min_S_per_m"] = float(sig[0]) if ok.all() else math.inf
        out["sigma_min_bracket"] = None
        return out
    k = int(np.flatnonzero(ok)[0])
    lo, hi = float(sig[k - 1]), float(sig[k])
    while hi / lo > ratio:
        mid = math.sqrt(lo * hi)
        r = start_charge(packing, params, mid)
        scan.append(dict(sigma_S_per_m=mid, **r))
        lo, hi = (lo, mid) if r["starts"] else (mid, hi)
    scan.sort(key=lambda r: r["sigma_S_per_m"])
    out["sigma_min_S_per_m"] = hi
    out["sigma_min_bracket"] = [lo, hi]
    return out


def run(out: Path, quick: bool) -> dict[str, Any]:
    from esim import __version__
    from esim.charge import params_with_charge
    from esim.io.atomic import atomic_write_text
    from esim.ocv import nmc_ocv
    from esim.packing import pack
    from esim.reproduce import preset_otoyama2020

    t0 = time.perf_counter()
    mode = MODES["quick" if quick else "full"]
    base = params_with_charge(preset_otoyama2020())
    if mode["structure"]:
        base = base.replace(structure=mode["structure"])
    seed0 = base.structure.seed
    j = base.charge.current_density_A_per_m2
    u0 = float(nmc_ocv(np.array([base.charge.initial_x]), base.charge)[0][0])
    default_sigma = base.materials.nmc_sigma_e_pristine_S_per_m
    rows = []
    for s in range(mode["seeds"]):
        p_seed = base.replace(structure={"seed": seed0 + s})
        pk = pack(p_seed)
        for model in mode["contact_models"]:
            p = p_seed.replace(network={"contact_model": model})
            b = bound(pk, p, mode["scan"], mode["bisect_ratio"])
            at_default = start_charge(pk, p, default_sigma)
            r_cc = collector_resistance(pk, p)
            v = at_default["v_start_V"]
            rows.append({"seed": seed0 + s, "contact_model": model,
                         "n_particles": int(pk.n_particles),
                         "sigma_min_S_per_m": b["sigma_min_S_per_m"],
                         "sigma_min_bracket": b["sigma_min_bracket"],
                         "crossings": b["crossings"],
                         "default_sigma_starts": at_default["starts"],
                         "v_start_at_default_V": v,
                         "r_start_ohm_m2": (v - u0) / j if math.isfinite(v) else math.nan,
                         "r_cc_ohm_m2": r_cc, "scan": b["scan"]})
    mins = [r["sigma_min_S_per_m"] for r in rows]
    report = {"esim_version": __version__, "quick": quick, "box_m": list(pk.box_m),
              "current_density_A_per_m2": j, "cutoff_V_vs_Li": base.charge.cutoff_V_vs_Li,
              "u_pristine_V_vs_Li": u0, "bracket_S_per_m": list(BRACKET_S_PER_M),
              "default_sigma_S_per_m": default_sigma,
              "sigma_min_range_S_per_m": [min(mins), max(mins)], "rows": rows,
              "elapsed_s": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pristine_sigma_bound.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "pristine_sigma_bound.md", _markdown(report))
    _figure(report, out / "pristine_sigma_bound.png")
    return report


def _figure(r: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    from esim.plot import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    styles = {"geometric": "-", "mechanical": "--"}
    for k, row in enumerate(r["rows"]):
        s = np.array([x["sigma_S_per_m"] for x in row["scan"]])
        v = np.array([x["v_start_V"] for x in row["scan"]])
        ok = np.isfinite(v)
        line, = ax.plot(s[ok], v[ok], styles[row["contact_model"]], marker="o", ms=3,
                        label=f"seed {row['seed']}, {row['contact_model']}")
        ax.plot(s[~ok], np.full(int((~ok).sum()), r["cutoff_V_vs_Li"] + 0.05), "x",
                color=line.get_color())
    ax.axhline(r["cutoff_V_vs_Li"], color="k", lw=0.8)
    ax.text(r["bracket_S_per_m"][1] / 1.1, r["cutoff_V_vs_Li"] - 0.01,
            f"cut-off {r['cutoff_V_vs_Li']:g} V vs Li", fontsize=8, va="top", ha="right")
    ax.axhline(r["u_pristine_V_vs_Li"], color="0.5", lw=0.8, ls=":")
    ax.text(r["bracket_S_per_m"][1] / 1.1, r["u_pristine_V_vs_Li"] + 0.01,
            "U(x = 0), open circuit", fontsize=8, color="0.4", va="bottom", ha="right")
    ax.axvline(r["default_sigma_S_per_m"], color="0.5", lw=0.8, ls="-.")
    ax.text(r["default_sigma_S_per_m"] * 1.1, r["u_pristine_V_vs_Li"] + 0.1, "preset",
            fontsize=8, color="0.4", rotation=90)
    ax.set_xscale("log")
    ax.set_xlim(*r["bracket_S_per_m"])
    ax.set_xlabel("pristine NMC electronic conductivity (S/m)")
    ax.set_ylabel("cell voltage after 1 s (V vs Li)")
    ax.set_title(f"Start of the charge at {r['current_density_A_per_m2'] / 10:g} mA/cm$^2$ "
                 "(x: exceeds the cut-off at once)", fontsize=10)
    ax.legend(fontsize=8, loc="center right", bbox_to_anchor=(1, 0.58))
    return save_figure(fig, path)


def _markdown(r: dict[str, Any]) -> str:
    box = " x ".join(f"{1e6 * x:g}" for x in r["box_m"])
    lo, hi = r["sigma_min_range_S_per_m"]
    lines = [
        "# The pristine NMC conductivity the paper's charge needs", "",
        f"esim {r['esim_version']}; box {box} um; quick={r['quick']}; {r['elapsed_s']:.0f} s. "
        f"Charge at {r['current_density_A_per_m2']:g} A/m2 from U(x = 0) = "
        f"{r['u_pristine_V_vs_Li']:.2f} V vs Li, cut-off {r['cutoff_V_vs_Li']:g} V; literature "
        f"bracket {r['bracket_S_per_m'][0]:g} ... {r['bracket_S_per_m'][1]:g} S/m, preset "
        f"{r['default_sigma_S_per_m']:g} S/m.", "",
        "| seed | contact model | smallest sigma that starts (S/m) | crossings in the scan | "
        "preset starts | V after 1 s at the preset (V vs Li) | start ASR (ohm m2) | "
        "collector constriction ASR (ohm m2) |",
        "|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        lines.append(
            f"| {x['seed']} | {x['contact_model']} | {x['sigma_min_S_per_m']:.3g} | "
            f"{x['crossings']} | {'yes' if x['default_sigma_starts'] else 'no'} | "
            f"{x['v_start_at_default_V']:.3f} | {x['r_start_ohm_m2']:.3g} | "
            f"{x['r_cc_ohm_m2']:.3g} |")
    lines += [
        "", f"The paper's charge started, so within the model the pristine conductivity is at "
        f"least the smallest one that starts: {lo:.2g} ... {hi:.2g} S/m over the rows above "
        "(seed and contact model).  The charge excludes the bracket below that, "
        f"{math.log10(lo / r['bracket_S_per_m'][0]):.1f} ... "
        f"{math.log10(hi / r['bracket_S_per_m'][0]):.1f} of its "
        f"{math.log10(r['bracket_S_per_m'][1] / r['bracket_S_per_m'][0]):.1f} decades.  "
        "The start ASR is (V after 1 s - U(0)) / j; the collector constriction ASR is the box "
        "area over the summed conductance of the pristine NMC-collector contacts (spreading "
        "into each particle plus its film), the part of the start the collector contacts "
        "alone would explain."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--outdir", default="results/pristine_sigma_bound")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    r = run(Path(a.outdir), a.quick)
    print(_markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
