"""Causal checks of the reference experiment, and what controls its missed rows.

Otoyama et al. (2020) explain their high-resistance NMC particles (>= 5e8 ohm in the charged
SSRM map, 3 of 14) by *point contacts* between NMC particles in a carbon-free electrode.  In
esim two causes make them: point contacts, and the milling, which takes away the contacts (or
the parts of them) beyond the face, so a section whose centre lay beyond it (a cap) may keep no
NMC path (``CLASS_CUT_OFF``: it charged, but reads like the glass).  This module repeats
:func:`esim.reproduce.run_otoyama2020` on the same electrodes (same packing seeds, same
cross-section planes, same pixels and noise seeds) with one cause changed at a time, and
reports the per-particle charged SSRM, the network part of it, the C-AFM current and
the KPFM numbers of every case side by side:

``baseline``
    The default parameter set.
``narrowed_x{s}``
    Every NMC-NMC contact radius multiplied by ``s`` (< 1), at least the asperity radius
    ``structure.asperity_radius_m``: the electrode's NMC contacts made into point contacts.
    The dose side of the test: if point contacts make high-resistance particles, their
    fraction must rise as ``s`` falls.
``widened``
    Every NMC-NMC contact radius at least :data:`WIDENED_RADIUS_M` = 0.4 um, the elasto-plastic
    contact radius of two 5 um NMC spheres under the 360 MPa pressing (Hertz with a hardness
    cap, ``shared/reference/materials_literature.md``: F ~ 5.5 mN, a ~ 0.4 um): the point
    contacts made into pressed area contacts.
``film_broken``
    ``materials.film_rho_e_thickness_ohm_m2 = 0``: the LiNbO3 film removed from the electron
    path (the lower end of its bracket, a film broken by the pressing).
``carbon``
    A conductive additive: a percolating carbon network dispersed in the glass, modelled as an
    electronic conductivity of the SE phase, ``materials.se_sigma_e_S_per_m =``
    :data:`CARBON_SIGMA_E_S_PER_M` (1 S/m = 1e-2 S/cm [E]: a few vol% of carbon black or
    fibres above their percolation threshold, sigma_eff ~ sigma_C (phi - phi_c)^2 with
    sigma_C ~ 1e3..1e4 S/m).  Every NMC particle then reaches the collector also through its
    NMC/SE area contacts (one LiNbO3 film each, in series).  The *imaging* network carries
    this bypass; the *charge* model neglects electron transport in the glass (``esim.charge``),
    so this case reuses the baseline charge: in the baseline every connected NMC already
    charges and the 1 h rest equalises U(x), so the bypass could change the charged state only
    by the baseline's residual spread, which the report states.
``contacts_unmilled``
    ``spm.mill_contacts = false``: the section keeps every contact of a particle the face cuts,
    as if the material beyond the face had been lifted off its contacts (a counterfactual: no
    sample can be made so).  It isolates the milling's share of the high-resistance particles;
    the charge is the baseline's (imaging does not change it).

Each case is imaged with the same windows; per particle the charged SSRM and C-AFM readings are
histogram peaks of the maps (:func:`esim.analysis.particle_table`), as in the reproduction.
The network part of each reading (the half-space path resistance to the collector, without the
tip spreading and barrier terms, which are the same in every case) is reported beside it,
because the count moves in steps of one particle: the causal effect also shows in the
distribution (median, p90, max).

Sensitivities of the missed rows (first seed only):

* charged SSRM of most NMC: the reading split into tip spreading, network and the rest (the
  non-ohmic barrier and the instrument), and re-imaged with other tip radii;
* fraction >= 5e8 ohm: the contact-radius scale (the ``narrowed`` cases);
* V_CPD' gradient after charge: imaged at the end of the charge (rest 0), after the preset's
  1 h, and after 10 h, for the default glass and a glass 10x less conductive; and the gradient
  at the end of the charge with the glass or the NMC made 10x more conductive, which says
  which transport limits it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from esim.errors import InvalidParameters

__all__ = ["CARBON_SIGMA_E_S_PER_M", "WIDENED_RADIUS_M", "cases_of", "run_causal_checks",
           "scale_nmc_contacts"]

log = logging.getLogger(__name__)

#: Minimum NMC-NMC contact radius of the ``widened`` case, m (pressed elasto-plastic contact
#: of two 5 um NMC spheres at 360 MPa, materials_literature.md worked example).
WIDENED_RADIUS_M = 0.4e-6
#: Electronic conductivity of the carbon-containing glass matrix of the ``carbon`` case, S/m [E].
CARBON_SIGMA_E_S_PER_M = 1.0

_NMC_SIGMA_KEYS = ("nmc_sigma_e_pristine_S_per_m", "nmc_sigma_e_x010_S_per_m",
                   "nmc_sigma_e_x030_S_per_m", "nmc_sigma_e_x050_S_per_m",
                   "nmc_sigma_e_x075_S_per_m")


def scale_nmc_contacts(packing, scale: float = 1.0, min_radius_m: float = 0.0):
    """A copy of a packing with its NMC-NMC contact radii changed.

    ``a' = clip(max(scale a, min_radius_m, asperity), None, min(r_i, r_j))`` on NMC-NMC pairs;
    every other contact, and every position, radius and force, is unchanged.

    Parameters
    ----------
    packing : Packing
    scale : float, 1, > 0
    min_radius_m : float, m, >= 0

    Returns
    -------
    Packing
    """
    from esim.packing import PHASE_NMC

    if not (math.isfinite(scale) and scale > 0):
        raise InvalidParameters(f"scale: must be a finite number > 0, got {scale!r}")
    if not (math.isfinite(min_radius_m) and min_radius_m >= 0):
        raise InvalidParameters(f"min_radius_m: must be finite and >= 0 m, got {min_radius_m!r}")
    nmc = packing.phase == PHASE_NMC
    i, j = packing.contacts[:, 0], packing.contacts[:, 1]
    hard = nmc[i] & nmc[j]
    r = packing.radii_m
    floor = max(min_radius_m, packing.params.structure.asperity_radius_m)
    a = packing.contact_radius_m.astype(np.float64)
    a_new = np.minimum(np.maximum(a * scale, floor), np.minimum(r[i], r[j]))
    return dataclasses.replace(packing, contact_radius_m=np.where(hard, a_new, a))


def cases_of(quick: bool) -> list[dict[str, Any]]:
    """The cases of the causal check (see the module docstring), baseline first."""
    scales = (0.2,) if quick else (0.1, 0.2, 0.5)
    cases = [{"name": "baseline", "what": "default parameter set", "scale": 1.0,
              "min_radius_m": 0.0, "materials": {}, "recharge": True}]
    for s in scales:
        cases.append({"name": f"narrowed_x{s:g}",
                      "what": f"NMC-NMC contact radii x {s:g} (asperity floor 10 nm)",
                      "scale": s, "min_radius_m": 0.0, "materials": {}, "recharge": True})
    cases += [
        {"name": "widened", "what": f"NMC-NMC contact radii >= {WIDENED_RADIUS_M * 1e6:g} um "
                                    "(pressed area contacts)",
         "scale": 1.0, "min_radius_m": WIDENED_RADIUS_M, "materials": {}, "recharge": True},
        {"name": "film_broken", "what": "LiNbO3 film out of the electron path (rho_f t = 0)",
         "scale": 1.0, "min_radius_m": 0.0,
         "materials": {"film_rho_e_thickness_ohm_m2": 0.0}, "recharge": True},
        {"name": "carbon", "what": f"carbon in the glass, sigma_e = {CARBON_SIGMA_E_S_PER_M:g} "
                                   "S/m (imaging; baseline charge)",
         "scale": 1.0, "min_radius_m": 0.0,
         "materials": {"se_sigma_e_S_per_m": CARBON_SIGMA_E_S_PER_M}, "recharge": False},
        {"name": "contacts_unmilled", "what": "the section keeps every contact of a particle the "
                                              "face cuts (counterfactual; baseline charge)",
         "scale": 1.0, "min_radius_m": 0.0, "materials": {}, "spm": {"mill_contacts": False},
         "recharge": False},
    ]
    return cases


def _charge(pk, params):
    """Charge, keeping a partial result (and saying so) when the cut-off is not reached."""
    from esim.charge import ChargeIncomplete, charge

    try:
        return charge(pk, params, quiet=True), ""
    except ChargeIncomplete as exc:
        if exc.result is None or exc.result.x.shape[0] == 0:
            raise
        return exc.result, str(exc)


def _window(pk, params, chg, plane: float, seed: int, quick: bool) -> dict[str, Any]:
    """Per-particle charged readings of one window: SSRM and C-AFM peaks, network part."""
    from esim.analysis import histogram_peak
    from esim.reproduce import HIGH_R_OHM, _analyse_window
    from esim.spm.maps import CLASS_CUT_OFF, CLASS_ISOLATED, CLASS_POINT_CONTACT

    res, _, charged = _analyse_window(pk, params, chg, plane, seed, quick)
    ids = np.array([r["particle"] for r in res.rows], dtype=np.int64)
    k = np.searchsorted(charged.window_particles, ids)
    cls = charged.window_class[k] if ids.size else np.zeros(0, np.int8)
    cafm = histogram_peak(np.abs(charged.cafm_A), charged.particle, ids, bins=180, log=True,
                          value_range=(1e-15, 1e-5))
    # per-particle pixel median of the tip spreading term (ground truth of the model)
    tip = (np.asarray(ndimage.median(charged.tip_resistance_ohm, charged.particle, ids), float)
           if ids.size else np.zeros(0))
    ssrm = np.array([r["ssrm_after_ohm"] for r in res.rows])
    counted = cls != CLASS_ISOLATED
    return {
        "seed": seed, "plane_position_m": plane, "numbers": res.numbers,
        "ssrm_after_ohm": ssrm[counted],
        "network_ohm": charged.window_resistance_ohm[k][counted],
        "tip_ohm": tip[counted],
        "cafm_after_A": cafm[counted],
        "point_contact": (cls == CLASS_POINT_CONTACT)[counted],
        # the contact that limits each path (largest share of its power), as the milling left it
        "bottleneck_radius_m": charged.window_bottleneck_radius_m[k][counted],
        "bottleneck_kept_fraction": charged.window_bottleneck_kept_fraction[k][counted],
        "cut_off": (cls == CLASS_CUT_OFF)[counted],
        "high": (ssrm >= HIGH_R_OHM)[counted],
        "n_isolated": int((~counted).sum()),
    }


def _dist(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": float("nan"), "p90": float("nan"), "p10": float("nan"),
                "max": float("nan"), "min": float("nan")}
    return {"median": float(np.median(x)), "p90": float(np.percentile(x, 90)),
            "p10": float(np.percentile(x, 10)), "max": float(x.max()), "min": float(x.min())}


def _summarise(name: str, what: str, wins: list[dict], chg_info: list[dict]) -> dict[str, Any]:
    from esim.reproduce import HIGH_R_OHM

    cat = {k: np.concatenate([w[k] for w in wins]) for k in
           ("ssrm_after_ohm", "network_ohm", "tip_ohm", "cafm_after_A", "point_contact",
            "cut_off", "high", "bottleneck_radius_m", "bottleneck_kept_fraction")}
    hpc = cat["high"] & cat["point_contact"]
    n = int(cat["ssrm_after_ohm"].size)
    per_window_high = [float(w["high"].mean()) if w["high"].size else float("nan")
                       for w in wins]
    grads = [w["numbers"]["vcpd_gradient_cc_minus_se_V"] for w in wins]

    def num(key: str) -> float:
        return float(np.nanmedian([w["numbers"][key] for w in wins]))

    return {
        "name": name, "what": what, "n_particles": n,
        "n_isolated": int(sum(w["n_isolated"] for w in wins)),
        "high_r_threshold_ohm": HIGH_R_OHM,
        "high_r_count": int(cat["high"].sum()),
        "high_r_fraction": float(cat["high"].mean()) if n else float("nan"),
        "high_r_fraction_per_window": per_window_high,
        "point_contact_class_fraction": float(cat["point_contact"].mean()) if n
        else float("nan"),
        "cut_off_class_fraction": float(cat["cut_off"].mean()) if n else float("nan"),
        "high_r_cut_off_count": int((cat["high"] & cat["cut_off"]).sum()),
        "high_r_point_contact_count": int(hpc.sum()),
        # their limiting contacts: radius behind the face, and how many the face cut
        "high_r_point_contact_radii_m": sorted(cat["bottleneck_radius_m"][hpc].tolist()),
        "high_r_point_contact_milled_count": int(
            (cat["bottleneck_kept_fraction"][hpc] < 1.0).sum()),
        "ssrm_after_ohm": _dist(cat["ssrm_after_ohm"]),
        "network_ohm": _dist(cat["network_ohm"]),
        "tip_spreading_ohm": _dist(cat["tip_ohm"]),
        "cafm_after_A": _dist(cat["cafm_after_A"]),
        "kpfm_nmc_after_V": num("kpfm_nmc_after_V"),
        "kpfm_se_after_V": num("kpfm_se_after_V"),
        "ssrm_se_after_ohm": num("ssrm_se_after_ohm"),
        "vcpd_gradient_cc_minus_se_V": float(np.nanmean(grads)),
        "vcpd_gradient_std_V": float(np.nanstd(grads, ddof=1)) if len(grads) > 1 else 0.0,
        "capacity_mAh_per_g": float(np.mean([c["capacity_mAh_per_g"] for c in chg_info])),
        "unreacted_nmc_fraction": float(np.mean([c["unreacted_nmc_fraction"]
                                                 for c in chg_info])),
        "charge_messages": sorted({c["message"] for c in chg_info if c["message"]}),
        "per_particle_ssrm_after_ohm": cat["ssrm_after_ohm"].tolist(),
        "per_particle_network_ohm": cat["network_ohm"].tolist(),
        "per_particle_cafm_after_A": cat["cafm_after_A"].tolist(),
    }


def _chg_info(chg, message: str) -> dict[str, Any]:
    return {"capacity_mAh_per_g": float(chg.capacity_at_end_of_charge_mAh_per_g),
            "unreacted_nmc_fraction": float(chg.unreacted_nmc_fraction), "message": message}


def _at_snapshot(chg, s: int):
    """The charge result cut after snapshot ``s`` (imaging reads the last row)."""
    return dataclasses.replace(chg, x=chg.x[:s + 1], soc=chg.soc[:s + 1])


def _gradient_sensitivity(pk, base, planes, seed, quick) -> list[dict[str, Any]]:
    """V_CPD' gradient (maps, histogram peaks) vs rest time, glass and NMC conductivities.

    Rest 0 is the end-of-charge snapshot of the 1 h run; longer rests are their own runs.
    """
    sig = base.materials.se_sigma_ion_S_per_m
    variants = [("default", {}, (3600.0, 36000.0)),
                ("SE sigma_ion / 10", {"se_sigma_ion_S_per_m": sig / 10},
                 (3600.0,) if quick else (3600.0, 36000.0))]
    if not quick:
        variants += [("SE sigma_ion x 10", {"se_sigma_ion_S_per_m": sig * 10}, (3600.0,)),
                     ("NMC sigma_e x 10", {k: getattr(base.materials, k) * 10
                                           for k in _NMC_SIGMA_KEYS}, (3600.0,))]
    rows = []
    for label, mat, rests in variants:
        states = []
        for rest in rests:
            p = base.replace(materials=mat, charge={"rest_time_s": rest}) if mat else \
                base.replace(charge={"rest_time_s": rest})
            chg, msg = _charge(pk, p)
            if rest == 3600.0:
                end = int(np.flatnonzero(chg.snapshot_kind == 1)[0])
                states.append((0.0, p, _at_snapshot(chg, end), msg))
            states.append((rest, p, chg, msg))
        for rest, p, chg, msg in states:
            nums = [_window(pk, p, chg, plane, seed, quick)["numbers"] for plane in planes]
            g = [w["vcpd_gradient_cc_minus_se_V"] for w in nums]
            # the model's own V_CPD' of the same particles in this state (no blur, no noise)
            g_truth = [w["vcpd_gradient_truth_after_rest_V"] for w in nums]
            rows.append({"variant": label, "rest_time_s": rest,
                         "vcpd_gradient_cc_minus_se_V": float(np.mean(g)),
                         "vcpd_gradient_truth_V": float(np.mean(g_truth)),
                         "per_window_V": [float(x) for x in g],
                         "capacity_mAh_per_g": float(chg.capacity_at_end_of_charge_mAh_per_g),
                         "message": msg})
    return rows


def _tip_sensitivity(pk, base, chg, planes, seed, quick) -> list[dict[str, Any]]:
    """Charged SSRM of the low-resistance NMC against the tip radius and the barrier."""
    rows = []
    for label, spm in (("tip 5 nm", {"tip_radius_m": 5e-9}), ("tip 10 nm (default)", {}),
                       ("tip 20 nm", {"tip_radius_m": 20e-9}),
                       ("tip 50 nm", {"tip_radius_m": 50e-9}),
                       ("tip 100 nm", {"tip_radius_m": 100e-9}),
                       ("tip 10 nm, ohmic contact", {"nonohmic": False})):
        p = base.replace(spm=spm) if spm else base
        nums = [_window(pk, p, chg, plane, seed, quick)["numbers"] for plane in planes]
        rows.append({"variant": label,
                     "ssrm_nmc_after_low_ohm": float(np.median(
                         [x["ssrm_nmc_after_low_ohm"] for x in nums])),
                     "ssrm_nmc_before_ohm": float(np.median(
                         [x["ssrm_nmc_before_ohm"] for x in nums])),
                     "high_r_fraction": float(np.mean([x["high_r_fraction"] for x in nums]))})
    return rows


def run_causal_checks(out_dir: str | Path, *, quick: bool = False,
                      seeds: list[int] | None = None, windows: int | None = None,
                      sensitivity: bool = True) -> dict[str, Any]:
    """Run the causal checks; write ``causal_checks.json``, ``causal_checks.md`` and figures.

    Parameters
    ----------
    out_dir : path
        Output folder (created).
    quick : bool
        The small box of the quick reproduction, one seed, two windows, one narrowed case and
        a shorter sensitivity study (the CI mode).
    seeds : list of int, optional
        Packing seeds (default: those of :func:`esim.reproduce.run_otoyama2020`).
    windows : int, optional
        Cross-sections per seed (default 3, quick 2), at the reproduction's planes.
    sensitivity : bool
        Also run the sensitivity studies of the missed rows (first seed).

    Returns
    -------
    dict
        The report (also written as JSON).
    """
    from esim import __version__
    from esim.io.atomic import atomic_write_text
    from esim.packing import pack
    from esim.reproduce import preset_otoyama2020, seeds_and_windows

    t0 = time.perf_counter()
    base = preset_otoyama2020(quick)
    seeds, windows = seeds_and_windows(base, quick, seeds, windows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = cases_of(quick)
    wins: dict[str, list] = {c["name"]: [] for c in cases}
    info: dict[str, list] = {c["name"]: [] for c in cases}
    sens: dict[str, Any] = {}
    for si, seed in enumerate(seeds):
        params0 = base.replace(structure={"seed": int(seed)})
        pk0 = pack(params0, quiet=True)
        planes = [pk0.box_m[1] * (w + 0.5) / windows for w in range(windows)]
        base_chg = None
        for c in cases:
            log.info("causal checks: seed %d, case %s", seed, c["name"])
            pk = scale_nmc_contacts(pk0, c["scale"], c["min_radius_m"]) \
                if (c["scale"] != 1.0 or c["min_radius_m"] > 0) else pk0
            p = params0.replace(materials=c["materials"]) if c["materials"] else params0
            if c.get("spm"):
                p = p.replace(spm=c["spm"])
            if c["recharge"]:
                chg, msg = _charge(pk, p)
            else:
                chg, msg = base_chg
            if c["name"] == "baseline":
                base_chg = (chg, msg)
            info[c["name"]].append(_chg_info(chg, msg))
            wins[c["name"]] += [_window(pk, p, chg, plane, int(seed), quick) for plane in planes]
        if si == 0 and sensitivity:
            chg0 = base_chg[0]
            end = int(np.flatnonzero(chg0.snapshot_kind == 1)[0])
            x_end, x_rest = chg0.x[end], chg0.x[-1]
            # NMC that took part in the charge: isolated particles (no electron path or no
            # active interface) keep their initial x and would widen the spread artificially
            x0 = params0.charge.initial_x
            ok = np.isfinite(x_rest) & (np.abs(x_end - x0) > 1e-9)
            sens = {
                "seed": int(seed),
                "baseline_x_spread_after_rest": float(np.std(x_rest[ok])),
                "baseline_x_spread_end_of_charge": float(np.std(x_end[ok])),
                "tip": _tip_sensitivity(pk0, params0, chg0, planes, int(seed), quick),
                "gradient": _gradient_sensitivity(pk0, params0, planes, int(seed), quick),
                "contacts": _contact_stats(pk0),
            }
    summary = [_summarise(c["name"], c["what"], wins[c["name"]], info[c["name"]])
               for c in cases]
    report = {"esim_version": __version__, "quick": quick, "seeds": [int(s) for s in seeds],
              "windows_per_seed": windows, "elapsed_s": time.perf_counter() - t0,
              "cases": summary, "sensitivity": sens}
    _figure(out, summary)
    if sens:
        _figure_gradient(out, sens)
    atomic_write_text(out / "causal_checks.json",
                      json.dumps(report, indent=1, default=float).replace("NaN", "null"))
    atomic_write_text(out / "causal_checks.md", _markdown(report))
    return report


def _contact_stats(pk) -> dict[str, float]:
    """NMC-NMC contact radii and coordination of a packing."""
    from esim.packing import PHASE_NMC

    nmc = pk.phase == PHASE_NMC
    i, j = pk.contacts[:, 0], pk.contacts[:, 1]
    hard = nmc[i] & nmc[j]
    a = pk.contact_radius_m[hard]
    deg = np.bincount(np.r_[i[hard], j[hard]], minlength=pk.n_particles)[nmc]
    return {"nmc_nmc_contacts": int(hard.sum()),
            "radius_median_m": float(np.median(a)) if a.size else float("nan"),
            "radius_p5_m": float(np.percentile(a, 5)) if a.size else float("nan"),
            "fraction_at_asperity": float(np.mean(a <= pk.params.structure.asperity_radius_m
                                                  * (1 + 1e-9))) if a.size else float("nan"),
            "fraction_below_25nm": float(np.mean(a < 25e-9)) if a.size else float("nan"),
            "coordination_mean": float(deg.mean()) if deg.size else float("nan"),
            "fraction_with_at_most_one": float(np.mean(deg <= 1)) if deg.size
            else float("nan")}


def _fmt(v: float, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.3g}{unit}"


def _markdown(rep: dict[str, Any]) -> str:
    lines = ["# Causal checks: point contacts, film, conductive additive, milling", "",
             (f"esim {rep['esim_version']}, seeds {rep['seeds']}, {rep['windows_per_seed']} "
             f"windows per seed, quick={rep['quick']}, {rep['elapsed_s']:.0f} s.  Same packings, "
             "same cross-sections and pixels in every case; per-particle charged readings are "
             "histogram peaks of the maps; isolated NMC excluded."), "",
             ("| case | what | NMC | >= 5e8 ohm (cut off by the milling / point-contact-limited) "
              "| SSRM median / p90 / max (ohm) | network "
             "median / p90 / max (ohm) | C-AFM median / p10 (A) | KPFM NMC after (V) | "
             "V_CPD' gradient CC-SE (V) | SE SSRM (ohm) | capacity (mAh/g) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in rep["cases"]:
        s, nw, ca = c["ssrm_after_ohm"], c["network_ohm"], c["cafm_after_A"]
        lines.append(
            f"| {c['name']} | {c['what']} | {c['n_particles']} | {c['high_r_count']} "
            f"({c['high_r_fraction']:.2f}; {c['high_r_cut_off_count']} / "
            f"{c['high_r_point_contact_count']}) | {_fmt(s['median'])} / {_fmt(s['p90'])} / "
            f"{_fmt(s['max'])} | {_fmt(nw['median'])} / {_fmt(nw['p90'])} / {_fmt(nw['max'])} "
            f"| {_fmt(ca['median'])} / {_fmt(ca['p10'])} | {c['kpfm_nmc_after_V']:.3f} | "
            f"{c['vcpd_gradient_cc_minus_se_V']:+.3f} ± {c['vcpd_gradient_std_V']:.3f} | "
            f"{_fmt(c['ssrm_se_after_ohm'])} | {c['capacity_mAh_per_g']:.1f} |")
    pcs = [c for c in rep["cases"] if c.get("high_r_point_contact_radii_m")]
    if pcs:
        lines += ["", "The point-contact-limited particles at >= 5e8 ohm: the contact with the "
                  "largest share of the power of each one's path, as a disc behind the face (a "
                  "segment of a contact the face cut conducts as a disc of its area):", ""]
        lines += [f"- {c['name']}: "
                  + ", ".join(f"{a * 1e9:.1f}" for a in c["high_r_point_contact_radii_m"])
                  + f" nm; {c['high_r_point_contact_milled_count']} of "
                  f"{len(c['high_r_point_contact_radii_m'])} cut by the face" for c in pcs]
    msgs = [f"{c['name']}: {m}" for c in rep["cases"] for m in c["charge_messages"]]
    if msgs:
        lines += ["", "Charges that stopped before the cut-off (partial result imaged):", ""]
        lines += [f"- {m}" for m in msgs]
    sens = rep.get("sensitivity") or {}
    if sens:
        cs = sens["contacts"]
        lines += ["", f"## Sensitivities of the missed rows (seed {sens['seed']})", "",
                  (f"NMC-NMC contacts of the packing: {cs['nmc_nmc_contacts']}, lens radius "
                  f"median {cs['radius_median_m'] * 1e9:.0f} nm, 5th percentile "
                  f"{cs['radius_p5_m'] * 1e9:.0f} nm; {100 * cs['fraction_at_asperity']:.1f} % "
                  f"at the 10 nm asperity floor, {100 * cs['fraction_below_25nm']:.1f} % below "
                  f"25 nm; NMC-NMC coordination {cs['coordination_mean']:.2f}, "
                  f"{100 * cs['fraction_with_at_most_one']:.1f} % of NMC with at most one NMC "
                  "neighbour."), "",
                  "Charged SSRM against the tip (same charged state, same windows):", "",
                  "| tip | most NMC after charge (ohm) | pristine NMC (ohm) | >= 5e8 fraction |",
                  "|---|---|---|---|"]
        for r in sens["tip"]:
            lines.append(f"| {r['variant']} | {_fmt(r['ssrm_nmc_after_low_ohm'])} | "
                         f"{_fmt(r['ssrm_nmc_before_ohm'])} | {r['high_r_fraction']:.2f} |")
        lines += ["", ("KPFM V_CPD' gradient after charge (CC - SE, mean over windows; on the "
                  "maps, and on the model's own V_CPD' of the same particles without blur or "
                  "noise) against the rest time and the transport:"), "",
                  ("| variant | rest (s) | gradient, maps (V) | gradient, model's own V_CPD' "
                   "(V) | capacity (mAh/g) |"), "|---|---|---|---|---|"]
        for r in sens["gradient"]:
            lines.append(f"| {r['variant']} | {r['rest_time_s']:.0f} | "
                         f"{r['vcpd_gradient_cc_minus_se_V']:+.4f} | "
                         f"{r.get('vcpd_gradient_truth_V', float('nan')):+.4f} | "
                         f"{r['capacity_mAh_per_g']:.1f} |")
        lines += ["", (f"Spread of x over the NMC of the baseline that took part in the "
                       f"charge (isolated particles excluded): std "
                  f"{sens['baseline_x_spread_end_of_charge']:.4f} at the end of the charge, "
                  f"{sens['baseline_x_spread_after_rest']:.4f} after the 1 h rest.")]
    return "\n".join(lines) + "\n"


def _figure(out: Path, summary: list[dict]) -> None:
    """Per-particle charged SSRM, network resistance and C-AFM current of every case."""
    from matplotlib.figure import Figure

    from esim.plot import save_figure
    from esim.reproduce import HIGH_R_OHM

    names = [c["name"] for c in summary]
    x = np.arange(len(names))
    fig = Figure(figsize=(13, 4.4), layout="constrained")
    ax = fig.subplots(1, 3)
    rng = np.random.default_rng(0)  # horizontal jitter of the points only
    for k, (key, label) in enumerate((
            ("per_particle_ssrm_after_ohm", "charged SSRM, histogram peak (Ω)"),
            ("per_particle_network_ohm", "network path to the collector (Ω)"),
            ("per_particle_cafm_after_A", "charged C-AFM |I| at −2 V, peak (A)"))):
        for i, c in enumerate(summary):
            v = np.asarray(c[key], float)
            v = v[np.isfinite(v) & (v > 0)]
            ax[k].scatter(i + rng.uniform(-0.25, 0.25, v.size), v, s=9, alpha=0.6,
                          color="tab:red" if c["name"] == "baseline" else "tab:blue")
            if v.size:
                ax[k].plot([i - 0.35, i + 0.35], [np.median(v)] * 2, color="k", lw=1.5)
        ax[k].set_yscale("log")
        ax[k].set_xticks(x, names, rotation=35, ha="right", fontsize=8)
        ax[k].set_ylabel(label)
    ax[0].axhline(HIGH_R_OHM, color="grey", ls=":", lw=1)
    ax[0].axhspan(1e7, 1e8, color="tab:green", alpha=0.12, lw=0)
    ax[0].set_title("SSRM (dotted: 5e8 Ω; green: paper's 1e7–1e8 Ω)", fontsize=9)
    ax[1].set_title("network part of the reading (no tip, no barrier)", fontsize=9)
    ax[2].set_title("C-AFM current per NMC particle", fontsize=9)
    fig.suptitle("Causal checks: per-particle charged readings (bar: median)", fontsize=10)
    save_figure(fig, out / "causal_checks.png")


def _figure_gradient(out: Path, sens: dict) -> None:
    """V_CPD' gradient against the rest time, per transport variant."""
    from matplotlib.figure import Figure

    from esim.plot import save_figure

    fig = Figure(figsize=(6.2, 4.2), layout="constrained")
    ax = fig.subplots()
    rows = sens["gradient"]
    for label in dict.fromkeys(r["variant"] for r in rows):
        rr = sorted((r for r in rows if r["variant"] == label), key=lambda r: r["rest_time_s"])
        t = [max(r["rest_time_s"], 10.0) for r in rr]  # rest 0 drawn at 10 s (log axis)
        ax.plot(t, [r["vcpd_gradient_cc_minus_se_V"] for r in rr], marker="o", label=label)
    ax.axhspan(0.1, 0.3, color="tab:green", alpha=0.12, lw=0, label="paper 0.2 ± 0.1 V")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("rest at open circuit (s; rest 0 drawn at 10 s)")
    ax.set_ylabel("V_CPD' gradient after charge, CC − SE (V)")
    ax.set_title("KPFM gradient vs rest time and transport", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, out / "causal_gradient_vs_rest.png")
