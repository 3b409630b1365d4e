"""Parameter-sweep benchmark: the same sweep with one worker and with two Dask worker processes.

Work: ``esim sweep --stage solve --soc 1`` over 4 NMC shares x 2 seeds (8 points) on the default
40 x 40 x 50 um box (~2200 particles each).  Every point packs its electrode and solves its
electron and ion networks, so the time is almost all packing.  The timed body is the whole
:func:`esim.sweep.run_sweep` into a fresh folder (nothing reused), worker start-up included; the
numba caches are warm (one small sweep runs first).  ``ratio_to_esim`` of the two-worker row is
its time over the one-worker time: 0.5 is a perfect speed-up on 2 cores.  ``peak_rss_MiB`` is
the driving process's (with one worker it runs every point itself), ``peak_rss_children_MiB``
the largest worker process's: two workers hold at most the driver's plus twice that.  No peer
tool runs parameter sweeps of a microstructure simulation, so there is no peer row.
"""

from __future__ import annotations

import tempfile

from benchmarks._util import timed

SUITE = "sweep"
_SMALL = {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
          "sample_points": 50_000}


def cases(quick: bool) -> list[dict]:
    if quick:
        base = {"small": True, "shares": [0.45, 0.6], "seeds": [1], "work": "sweep_quick",
                "repeats": 1}
    else:
        base = {"small": False, "shares": [0.45, 0.5, 0.54, 0.6], "seeds": [1, 2],
                "work": "sweep_solve_8x2200", "repeats": 3}
    return [{"name": f"esim_sweep_{w}_worker", "workers": w, **base} for w in (1, 2)]


def run(case: dict) -> dict:
    from esim.params import Params
    from esim.sweep import run_sweep

    params = Params().replace(structure=_SMALL) if case["small"] else Params()
    vary = {"structure.nmc_fraction_of_solid": case["shares"], "structure.seed": case["seeds"]}
    with tempfile.TemporaryDirectory() as d:  # warm the numba caches
        run_sweep(Params().replace(structure=_SMALL), {"structure.seed": [1]}, "solve", d,
                  figure=False)

    def once():
        with tempfile.TemporaryDirectory() as d:
            return run_sweep(params, vary, "solve", d, soc=1.0, workers=case["workers"],
                             figure=False)

    t, times, res = timed(once, case["repeats"])
    n = len(res.rows)
    return {"tool": "esim" if case["workers"] == 1 else f"esim ({case['workers']} workers)",
            "time_s": t, "times_s": times, "work": case["work"], "points": n,
            "points_per_s": n / t, "n_failed": res.n_failed,
            "n_particles_mean": sum(r["n_particles"] for r in res.rows) / n,
            "sigma_e_S_per_m_first": res.rows[0]["sigma_e_S_per_m"]}
