"""Charge benchmarks: esim's galvanostatic first charge (default parameters, 0.13 mA/cm2 to
4.4 V vs Li, no rest) of composite electrodes of ~1e4 and ~1e5 particles (default 50 um
thickness, square box sized for the particle count), and a toy electrode in quick mode.

The packing is built in setup (not timed); the timed body is :func:`esim.charge.charge`.
No peer simulates this particle-resolved electrochemistry on the same input, so the suite is
esim alone; ``work`` names the job for comparisons across runs.  The goal of the issue is a
1e4-particle charge in under 2 minutes on 2 cores.
"""

from __future__ import annotations

import math

from benchmarks._util import timed

SUITE = "charge"
# particles per um^2 of electrode area at the default 50 um thickness (2191 in 40 x 40 um)
_DENSITY = 2191 / 40.0**2


def _box_for(n: int) -> float:
    return math.sqrt(n / _DENSITY) * 1e-6


def cases(quick: bool) -> list[dict]:
    if quick:
        return [{"name": "esim_charge_toy", "tool": "esim", "n_target": 0,
                 "work": "charge_toy", "repeats": 2}]
    return [{"name": f"esim_charge_{n}", "tool": "esim", "n_target": n,
             "work": f"charge_{n}", "repeats": 1} for n in (10_000, 100_000)]


def _packing(case: dict):
    from esim.packing import pack
    from esim.params import Params

    if case["n_target"] == 0:
        p = Params().replace(structure={"box_x_m": 25e-6, "box_y_m": 25e-6,
                                        "electrode_thickness_m": 20e-6,
                                        "sample_points": 50_000})
    else:
        L = _box_for(case["n_target"])
        p = Params().replace(structure={"box_x_m": L, "box_y_m": L})
    return pack(p)


def run(case: dict) -> dict:
    from esim.charge import charge, params_with_charge

    packing = _packing(case)  # setup, not timed
    params = params_with_charge(packing.params, rest_time_s=0.0)
    t, times, r = timed(lambda: charge(packing, params), case["repeats"])
    return {"tool": "esim", "work": case["work"], "time_s": t, "repeats": len(times),
            "times_s": [round(x, 4) for x in times], "n_particles": int(packing.n_particles),
            "capacity_mAh_per_g": float(r.capacity_at_end_of_charge_mAh_per_g),
            "voltage_at_end_of_charge_V_vs_Li": float(r.voltage_at_end_of_charge_V_vs_Li),
            "steps": int(r.n_steps), "newton_iterations": int(r.n_newton),
            "rejected_steps": int(r.n_rejected), "factorizations": int(r.n_factorizations),
            "conservation_error": float(r.conservation_error),
            "unreacted_nmc_fraction": float(r.unreacted_nmc_fraction)}
