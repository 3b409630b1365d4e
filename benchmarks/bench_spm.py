"""Virtual SPM benchmark: every channel (SEM, EDX S/Ni, SSRM, C-AFM map and I-V, KPFM) of a
15 x 15 um window next to the separator, at 512 x 512 pixels, for a structure of 2e4 particles.

The packing is built in setup (not timed), and one small run warms the numba kernels up; the
timed body is :func:`esim.spm.maps.simulate_spm` (network, half-space cut, unit-injection
solves, rasterisation, instrument models) of the charged state (uniform SOC 1); the pristine
time is reported beside it.  Goal: under
10 s on 2 cores.  No peer tool simulates SSRM/C-AFM/KPFM maps from a microstructure
(shared/reference/spm_formats.md), so there is no peer row.
"""

from __future__ import annotations

import math

from benchmarks._util import timed

SUITE = "spm"
# particles per um^2 of electrode area at the default 50 um thickness (bench_packing.py)
_DENSITY = 2191 / 40.0**2


def cases(quick: bool) -> list[dict]:
    if quick:
        return [{"name": "esim_spm_quick_64px", "n_target": 330, "pixels": 64, "small": True,
                 "work": "spm_quick", "repeats": 1}]
    # one case: the packing (~3 min for 2e4 particles) is built once; the timed body is the
    # charged state (SOC 1, the non-ohmic contact in range), the pristine time is reported too
    return [{"name": "esim_spm_20000_512px", "n_target": 20_000, "pixels": 512, "small": False,
             "work": "spm_20000_512", "repeats": 3}]


def _packing(case: dict):
    from esim.packing import pack
    from esim.params import Params

    if case["small"]:
        p = Params().replace(structure={"box_x_m": 25e-6, "box_y_m": 25e-6,
                                        "electrode_thickness_m": 20e-6,
                                        "sample_points": 100_000})
    else:
        L = math.sqrt(case["n_target"] / _DENSITY) * 1e-6
        p = Params().replace(structure={"box_x_m": L, "box_y_m": L})
    return pack(p)


def run(case: dict) -> dict:
    from esim._params_spm import SPMParams
    from esim.spm.maps import simulate_spm

    pk = _packing(case)
    simulate_spm(pk, soc=1.0, spm=SPMParams(pixels_u=16, pixels_z=16))  # JIT warm-up
    spm = SPMParams(pixels_u=case["pixels"], pixels_z=case["pixels"])
    t0, _, m0 = timed(lambda: simulate_spm(pk, soc=0.0, spm=spm), case["repeats"])
    t, times, m = timed(lambda: simulate_spm(pk, soc=1.0, spm=spm), case["repeats"])
    s0, s = m0.summary(), m.summary()
    return {"tool": "esim", "time_s": t, "times_s": times, "time_pristine_s": t0,
            "work": case["work"], "n_particles": pk.n_particles, "pixels": int(m.ssrm_ohm.size),
            "window_particles": int(m.window_particles.size),
            "ssrm_median_nmc_pristine_ohm": s0["ssrm_median_nmc_ohm"],
            "ssrm_median_nmc_soc1_ohm": s["ssrm_median_nmc_ohm"],
            "ssrm_median_se_soc1_ohm": s["ssrm_median_se_ohm"],
            "pixels_per_s": m.ssrm_ohm.size / t}
