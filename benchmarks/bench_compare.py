"""``esim compare`` benchmark: one measured area (SSRM, C-AFM, KPFM and an SEM image, 1024 x 1024
pixels, read from .gsf files) against four simulated areas (512 x 512), segmented from their SEM
images by Otsu thresholds and a distance-transform watershed, each particle read at its
histogram peak, and compared channel by channel (no figures: the timed body is the analysis).

The "measured" maps are esim's own (the default electrode, another seed), so the numbers are
reproducible; the four simulated areas are four cross-sections of the default electrode.  Goal:
a few seconds, memory a small multiple of the maps.  No peer tool compares SPM maps particle by
particle; the segmentation is scikit-image's (Otsu, watershed).
"""

from __future__ import annotations

SUITE = "compare"


def cases(quick: bool) -> list[dict]:
    if quick:
        return [{"name": "esim_compare_quick_128px", "measured_px": 128, "sim_px": 64,
                 "n_sims": 2, "small": True, "work": "compare_quick", "repeats": 1}]
    return [{"name": "esim_compare_1024px_4x512px", "measured_px": 1024, "sim_px": 512,
             "n_sims": 4, "small": False, "work": "compare_1024_4x512", "repeats": 3}]


def _maps(case: dict, tmp):
    from esim._params_spm import SPMParams
    from esim.packing import pack
    from esim.params import Params
    from esim.spm.maps import simulate_spm

    base = Params()
    if case["small"]:
        base = base.replace(structure={"box_x_m": 25e-6, "box_y_m": 25e-6,
                                       "electrode_thickness_m": 20e-6, "sample_points": 100_000})
    pk_m = pack(base.replace(structure={"seed": base.structure.seed + 1}))
    px = case["measured_px"]
    meas = simulate_spm(pk_m, soc=1.0, spm=SPMParams(pixels_u=px, pixels_z=px))
    meas.export_gsf(tmp)
    pk = pack(base)
    y = float(pk.box_m[1])
    sims = [simulate_spm(pk, soc=1.0, spm=SPMParams(pixels_u=case["sim_px"],
                                                    pixels_z=case["sim_px"],
                                                    plane_position_m=y * (k + 0.5)
                                                    / case["n_sims"], seed=k))
            for k in range(case["n_sims"])]
    return sims


def run(case: dict) -> dict:
    import tempfile
    import tracemalloc
    from pathlib import Path

    from benchmarks._util import timed
    from esim import compare as C

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sims = _maps(case, tmp)

        def body():
            meas = C.load_measured(ssrm=str(tmp / "ssrm_ohm.gsf"), cafm=str(tmp / "cafm_A.gsf"),
                                   kpfm=str(tmp / "kpfm_vcpd_prime_V.gsf"),
                                   sem=str(tmp / "sem.gsf"))
            sets = [C.simulated_mapset(m, "sem", name=f"sim{k}") for k, m in enumerate(sims)]
            return C.compare_maps(meas, sets)

        body()  # warm-up (imports of scikit-image and scipy.stats)
        t, times, res = timed(body, case["repeats"])
        # the process's peak RSS includes simulating the maps; the comparison's own peak of
        # allocations (numpy reports to tracemalloc) is measured on one more call
        tracemalloc.start()
        body()
        body_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    seg = res["segmentation"]
    r = res["channels"]["ssrm"]
    return {"tool": "esim", "time_s": t, "times_s": times, "work": case["work"],
            "compare_peak_alloc_MiB": body_peak,
            "pixels_measured": case["measured_px"] ** 2,
            "pixels_simulated": case["n_sims"] * case["sim_px"] ** 2,
            "particles_measured": seg["particles_measured"],
            "particles_simulated": sum(seg["particles_simulated"]),
            "simulated_phase_accuracy": seg["simulated_phase_accuracy"],
            "simulated_particle_recall": seg["simulated_particle_recall"],
            "ssrm_ks_statistic": r["ks_statistic"]}
