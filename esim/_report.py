"""The report of ``esim reproduce otoyama2020``: one row per number of the targets file (reported,
simulated, within its tolerance, how many single windows pass, what the row can show), the
numbers taken as given, and the Markdown of both (:mod:`esim.reproduce` runs the experiment)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from esim import analysis
from esim.params import Params


def _spread(values: list[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                "max": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "median": float(np.median(v)),
            "n": int(v.size)}


# What a row of the report can show (the phrase names them in the report's summary).  Only
# predictions test the model; the others check that a calibration on (or fit to) the paper's
# number, the instrument's range (the SSRM ceiling, the C-AFM noise), an input read back
# through the pipeline, or a consequence of another row or of how the row is built
# ("consistency": it cannot fail unless that other row does or the code is wrong) came
# through the whole pipeline.
ROW_KINDS = {"prediction": "the predictions", "calibrated": "the calibrations",
             "instrument": "the instrument's range", "input": "the inputs",
             "consistency": "the consistency checks"}


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows and rows within tolerance, per kind (predictions first)."""
    out: dict[str, dict[str, int]] = {}
    for kind in ROW_KINDS:
        sel = [r for r in rows if r.get("kind", "prediction") == kind]
        if sel:
            out[kind] = {"n": len(sel), "within": sum(bool(r["within"]) for r in sel)}
    return out


def _row(name: str, reported: Any, simulated: float, ok, tolerance: str, note: str = "",
         per_unit: list[float] | None = None, unit: str = "windows", *,
         target: str | tuple[str, ...] = (), kind: str = "prediction") -> dict[str, Any]:
    """One row of the table.  ``ok`` is the row's pass test, applied to the simulated value
    (the mean over windows or seeds; the C-AFM ratio row passes the median) and to each
    window's (or seed's) own value in
    ``per_unit``: how often one window, the paper's whole experiment, would pass on its own.
    ``target`` names the key(s) of the targets file (``section.key``) the row compares with;
    ``kind`` is what the row can show: one of :data:`ROW_KINDS`."""
    if kind not in ROW_KINDS:
        raise ValueError(f"kind: one of {sorted(ROW_KINDS)}, got {kind!r}")
    vals = [v for v in (per_unit or []) if v is not None and math.isfinite(v)]
    return {"quantity": name, "reported": reported, "simulated": simulated,
            "within": bool(ok(simulated)), "tolerance": tolerance, "note": note,
            "n_within": int(sum(bool(ok(v)) for v in vals)), "n_values": len(vals),
            "per": unit, "target": [target] if isinstance(target, str) else list(target),
            "kind": kind}


def _compare(agg: dict[str, dict], charge_nums: dict[str, float], t: dict,
             windows: list[dict[str, Any]] | None = None,
             seed_numbers: list[dict[str, float]] | None = None) -> list[dict]:
    """One row per number of the targets file that the simulation produces.  ``windows`` are
    the per-window numbers and ``seed_numbers`` the per-seed numbers (charge, and the
    electrode's mass and weight ratio), for the count of windows (seeds) that pass on their
    own."""
    m = {k: v["mean"] for k, v in agg.items()}
    windows = windows or []
    seed_numbers = seed_numbers or []

    def per(key: str) -> list[float]:
        return [w[key] for w in windows]

    def per_seed(key: str) -> list[float]:
        return [c[key] for c in seed_numbers]

    def seed_mean(key: str) -> float:
        return _spread(per_seed(key))["mean"]

    rows = []
    # -- the electrode: the weighed composite and its weight ratio follow from the packing's
    # solid and NMC fractions and the two densities (inputs: the 54:46 vol% and 50 um)
    mass_t = t["cell"]["composite_mass_mg"]
    rows.append(_row("composite mass on the pellet (mg)", mass_t, seed_mean("composite_mass_mg"),
                     lambda v: abs(v / mass_t - 1) <= 0.10, "±10 %",
                     f"from the packing's solid fraction "
                     f"({seed_mean('solid_fraction'):.3f}, an assumption) and the densities "
                     f"over the {t['cell']['pellet_diameter_m'] * 1e3:.0f} mm pellet and the "
                     "50 um thickness (read off an SEM image, hence the tolerance)",
                     per_seed("composite_mass_mg"), "seeds", target="cell.composite_mass_mg"))
    wt_t = t["cell"]["nmc_se_weight_ratio"][0]
    rows.append(_row("NMC share of the composite (wt %)", wt_t, seed_mean("nmc_weight_percent"),
                     lambda v: abs(v - wt_t) <= 1.0, "±1 wt %",
                     "from the 54:46 vol % (an input) and the two densities: the paper's 75:25 "
                     "wt % and its 54:46 vol % agree with each other, whatever the model does",
                     per_seed("nmc_weight_percent"), "seeds", target="cell.nmc_se_weight_ratio",
                     kind="input"))
    cap_t = t["charge"]["first_charge_capacity_mAh_per_g"]
    rows.append(_row("first-charge capacity (mAh/g NMC)", cap_t, charge_nums["capacity_mAh_per_g"],
                     lambda v: abs(v / cap_t - 1) <= 0.10, "±10 %",
                     "charge.ocv_x_scale was calibrated on it",
                     per_seed("capacity_mAh_per_g"), "seeds",
                     target="charge.first_charge_capacity_mAh_per_g", kind="calibrated"))
    ocv_t = t["charge"]["ocv_after_V"]
    rows.append(_row("OCV after charge and rest (V vs In-Li)", ocv_t,
                     charge_nums["ocv_after_rest_V_vs_InLi"], lambda v: abs(v - ocv_t) <= 0.05,
                     "±0.05 V", "with U(x) scaled on the capacity",
                     per_seed("ocv_after_rest_V_vs_InLi"), "seeds",
                     target="charge.ocv_after_V"))
    # -- the window
    n_an = t["ssrm"]["particles_analysed"]
    p_lo, p_hi = analysis.poisson_interval(n_an)
    nn = agg["n_nmc_particles"]
    rows.append(_row("NMC particles analysed in a 15 x 15 um window", n_an, nn["mean"],
                     lambda v: p_lo <= v <= p_hi,
                     f"the count's Poisson 95 % interval, {p_lo:.1f}-{p_hi:.1f}",
                     f"every NMC section in the window; range {nn['min']:.0f}-{nn['max']:.0f} "
                     "(5 um NMC, d50 [S]: the paper's 14 suggests smaller particles or a larger "
                     "window)", per("n_nmc_particles"), target="ssrm.particles_analysed"))
    # -- SSRM
    lo, hi = t["ssrm"]["pristine_all_areas_ohm"]
    within_3 = lambda v: 2e9 / 3 <= v <= 2e9 * 3  # noqa: E731
    for key, label in (("ssrm_nmc_before_ohm", "pristine SSRM, NMC (ohm)"),
                       ("ssrm_se_before_ohm", "pristine SSRM, SE (ohm)")):
        rows.append(_row(label, f"{lo:.2g}-{hi:.2g}", m[key], within_3,
                         "factor 3 of 2e9", "instrument ceiling (SSRM range)", per(key),
                         target="ssrm.pristine_all_areas_ohm", kind="instrument"))
    rows.append(_row("pristine SSRM, NMC particle mean (ohm)",
                     t["ssrm"]["pristine_nmc_particle_mean_ohm"],
                     m["ssrm_nmc_before_particle_mean_ohm"], within_3, "factor 3 of 2e9",
                     "mean of the particles' histogram peaks (Fig. 5e); instrument ceiling",
                     per("ssrm_nmc_before_particle_mean_ohm"),
                     target="ssrm.pristine_nmc_particle_mean_ohm", kind="instrument"))
    blo, bhi = t["ssrm"]["charged_nmc_connected_ohm"]
    rows.append(_row("charged SSRM, most NMC (ohm)", f"{blo:.0e}-{bhi:.0e}",
                     m["ssrm_nmc_after_low_ohm"], lambda v: blo <= v <= bhi, "within the band",
                     "log-median of the NMC below 5e8 ohm; its parts (medians over the "
                     "particles, model truth): the tip's spreading "
                     f"{m['ssrm_after_low_tip_part_ohm']:.2g} ohm, the network "
                     f"{m['ssrm_after_low_network_part_ohm']:.2g} ohm, the rest the tip barrier "
                     "and the amplifier (see the explanation)",
                     per("ssrm_nmc_after_low_ohm"), target="ssrm.charged_nmc_connected_ohm"))
    n_hi = t["ssrm"]["particles_high_resistance_after_charge"]
    rep = n_hi / n_an
    f = agg["high_r_fraction"]
    in_band = lambda v: 0.10 <= v <= 0.35  # noqa: E731
    k = int(sum(per("n_high_r")))
    n = int(sum(per("n_counted")))
    note = (f"spread over windows x seeds: std {f['std']:.3f}, range "
            f"{f['min']:.2f}-{f['max']:.2f}, n={f['n']}")
    if n:
        # how likely the paper's count is at the simulated rate: pooled over the windows, and
        # at the upper end of that rate's 95 % interval (a conservative statement)
        p_hi_r = analysis.wilson_interval(k, n)[1]
        note += (f"; pooled {k}/{n}; at that rate a window of {n_an} NMC shows >= {n_hi} with "
                 f"probability {analysis.prob_at_least(n_hi, n_an, k / n):.1g} "
                 f"({analysis.prob_at_least(n_hi, n_an, p_hi_r):.1g} at the rate's 95 % upper "
                 f"bound {p_hi_r:.3f}); paper's {n_hi}/{n_an}: 95 % interval "
                 + "-".join(f"{x:.2f}" for x in analysis.wilson_interval(n_hi, n_an)))
    rows.append(_row("charged NMC at >= 5e8 ohm (fraction)", round(rep, 3), f["mean"], in_band,
                     "0.10-0.35", note, per("high_r_fraction"),
                     target="ssrm.particles_high_resistance_after_charge"))
    fc = agg["high_r_and_charged_fraction"]
    n_pc, n_cut = int(sum(per("n_high_r_point_contact"))), int(sum(per("n_high_r_cut_off")))
    rows.append(_row("...of which charged (point-contact-limited or cut off by the milling)",
                     round(rep, 3), fc["mean"], in_band, "0.10-0.35",
                     f"of the {k} at >= 5e8 ohm: {n_pc} point-contact-limited (one contact "
                     f"dissipates most of the path's power), {n_cut} cut off by the milling "
                     "(no NMC contact left on the part behind the face; they read the ceiling, "
                     f"like the SE), {k - n_pc - n_cut} other; isolated particles (no electronic "
                     "path before the milling, so never charged) are excluded from both rows; "
                     "the same paper number as the row above, so it is counted as a check of "
                     "that row (what the high-resistance particles are), not a second prediction",
                     per("high_r_and_charged_fraction"),
                     target="ssrm.particles_high_resistance_after_charge", kind="consistency"))
    hr = agg["ssrm_nmc_after_high_ohm"]
    rows.append(_row("charged SSRM, the NMC at >= 5e8 ohm (ohm)",
                     t["ssrm"]["charged_nmc_point_contact_ohm"], hr["mean"],
                     lambda v: 1e9 / 3 <= v <= 3e9, "factor 3 of 1e9",
                     (f"log-median per window, {k} particle{'s' * (k != 1)} in {hr['n']} of "
                      f"{len(windows)} windows" if k else "no such particle in any window")
                     + "; materials.film_rho_e_thickness_ohm_m2 was calibrated on this number, "
                     "and a reading >= 5e8 ohm below the SSRM ceiling lies within the band by "
                     "construction",
                     per("ssrm_nmc_after_high_ohm"), target="ssrm.charged_nmc_point_contact_ohm",
                     kind="calibrated"))
    rows.append(_row("charged SSRM, SE (ohm)", t["ssrm"]["charged_se_ohm"],
                     m["ssrm_se_after_ohm"], lambda v: 1e9 / 3 <= v <= 3e9, "factor 3 of 1e9",
                     "", per("ssrm_se_after_ohm"), target="ssrm.charged_se_ohm",
                     kind="instrument"))
    g = agg["log10_r_gradient_cc_minus_se"]
    rows.append(_row("resistance gradient through the window (decades, CC - SE)", "none",
                     g["mean"], lambda v: abs(v) < 0.5, "abs(change) < 0.5 decade",
                     f"std {g['std']:.2f}", per("log10_r_gradient_cc_minus_se"),
                     target="ssrm.resistance_gradient_through_thickness"))
    # -- C-AFM (Fig. 4 and S3)
    floor = t["cafm"]["detectable_current_A"]
    rows.append(_row("C-AFM current of SE, -2 to 1 V, before charge (A)",
                     t["cafm"]["se_current_below_1V_A"], m["cafm_se_max_abs_below_1V_A"],
                     lambda v: abs(v) < floor, f"below the detectable {floor:.0e} A",
                     "the largest magnitude over two SE points: the amplifier's noise "
                     "(spm.cafm_noise_floor_A); the SE's electronic conductivity ([E]) behind "
                     "the tip passes far less", per("cafm_se_max_abs_below_1V_A"),
                     target="cafm.se_current_below_1V_A", kind="instrument"))
    i2 = t["cafm"]["se_current_at_2V_A"]
    rows.append(_row("C-AFM current of SE at +2 V, before charge (A)", i2,
                     m["cafm_se_at_2V_A"], lambda v: i2 / 3 <= v <= 3 * i2, "factor 3",
                     "spm.se_decomposition_current_2V_A (Fig. S3), read through the "
                     "amplifier's noise", per("cafm_se_at_2V_A"),
                     target="cafm.se_current_at_2V_A", kind="input"))
    cr = _spread(per("cafm_low_to_high_r_current_ratio"))
    cr_med = cr["median"]
    rows.append(_row("C-AFM current at -2 V after charge, low- / high-resistance NMC "
                     "(ratio of magnitudes)",
                     "> 1", cr_med, lambda v: v > 1.0, "> 1",
                     "median over windows (range "
                     f"{cr['min']:.3g}-{cr['max']:.3g}; a window whose highest-reading NMC "
                     "sits at the ceiling would dominate a mean); the two lowest- and two "
                     "highest-reading NMC of each window (Fig. 4d). The points are chosen by "
                     "their SSRM reading and the C-AFM current crosses the same path, so the "
                     "row checks the two maps agree",
                     per("cafm_low_to_high_r_current_ratio"),
                     kind="consistency"))  # the file's comment, no key
    # -- KPFM
    for key, tkey, label in (("kpfm_nmc_before_V", "pristine_nmc_V", "KPFM V_CPD' NMC before"),
                             ("kpfm_se_before_V", "pristine_se_V", "KPFM V_CPD' SE before"),
                             ("kpfm_nmc_after_V", "charged_nmc_V", "KPFM V_CPD' NMC after"),
                             ("kpfm_se_after_V", "charged_se_V", "KPFM V_CPD' SE after"),
                             ("kpfm_nmc_before_particle_mean_V", "pristine_particle_mean_V",
                              "KPFM V_CPD' NMC particle mean before"),
                             ("kpfm_nmc_shift_V", "nmc_shift_V", "KPFM V_CPD' NMC shift")):
        rv = t["kpfm"][tkey]
        klo, khi = (rv if isinstance(rv, list) else (rv, rv))
        rows.append(_row(label + " (V)", rv, m[key],
                         lambda v, a=klo, b=khi: (a - 0.15) <= v <= (b + 0.15), "±0.15 V",
                         "beta calibrated on the NMC shift" if "NMC" in label else
                         "SE model fitted on the SE shift", per(key), target=f"kpfm.{tkey}",
                         kind="calibrated"))
    g = agg["vcpd_gradient_cc_minus_se_V"]
    rows.append(_row("KPFM V_CPD' gradient after charge (V, CC - SE)",
                     t["kpfm"]["charged_gradient_se_to_cc_V"], g["mean"],
                     lambda v: 0.1 <= v <= 0.3, "0.2 ± 0.1 V, CC side higher",
                     f"std {g['std']:.3f} over {g['n']} windows",
                     per("vcpd_gradient_cc_minus_se_V"),
                     target="kpfm.charged_gradient_se_to_cc_V"))
    return rows


def _inputs(params: Params, t: dict, packings: list[dict[str, float]]) -> list[dict[str, Any]]:
    """The numbers of the targets file that the preset takes as given (or does not model), each
    beside the value esim used, read from the parameters (not restated)."""
    s, mt, c, sp = params.structure, params.materials, params.charge, params.spm
    nmc_vol = float(np.mean([q["nmc_fraction_of_solid"] for q in packings]))

    def item(key, used, where):
        sec, k = key.split(".")
        return {"target": key, "reported": t[sec][k], "esim": used, "where": where}

    return [
        item("cell.nmc_se_volume_ratio", f"{s.nmc_fraction_of_solid * 100:.0f}:"
             f"{(1 - s.nmc_fraction_of_solid) * 100:.0f} (packed: {nmc_vol * 100:.1f} % NMC)",
             "structure.nmc_fraction_of_solid"),
        item("cell.electrode_thickness_m", s.electrode_thickness_m,
             "structure.electrode_thickness_m"),
        item("cell.pellet_diameter_m", t["cell"]["pellet_diameter_m"],
             "the composite mass row only (the model is a periodic slab)"),
        item("cell.stack_pressure_Pa", mt.stack_pressure_Pa,
             "materials.stack_pressure_Pa (the mechanical contact model only)"),
        item("cell.temperature_K", mt.temperature_K, "materials.temperature_K"),
        item("cell.counter_electrode", f"{c.counter_electrode_V_vs_Li} V vs Li",
             "charge.counter_electrode_V_vs_Li (In-Li two-phase plateau)"),
        item("charge.current_density_A_per_m2", c.current_density_A_per_m2,
             "charge.current_density_A_per_m2 (the Results' 0.13 mA/cm2)"),
        item("charge.cutoff_V_vs_Li", c.cutoff_V_vs_Li, "charge.cutoff_V_vs_Li"),
        item("charge.ocv_before_V", sp.ocv_pristine_vs_inli_V,
             "spm.ocv_pristine_vs_inli_V (V_CPD' of the pristine maps)"),
        item("ssrm.bias_V", sp.bias_V, "spm.bias_V"),
        item("ssrm.dynamic_range_decades", sp.ssrm_decades, "spm.ssrm_decades"),
        item("cafm.bias_V", sp.bias_V, "spm.bias_V (one tip and bias for SSRM and C-AFM)"),
        item("cafm.detectable_current_A", t["cafm"]["detectable_current_A"],
             f"the SE current row's tolerance (amplifier noise floor "
             f"spm.cafm_noise_floor_A = {sp.cafm_noise_floor_A:.0e} A)"),
        item("cafm.detectable_resistance_ohm", sp.ssrm_r_max_ohm,
             "spm.ssrm_r_max_ohm (the SSRM ceiling, near 1e9 ohm)"),
        item("cafm.iv_sweep_V", [sp.iv_v_start_V, sp.iv_v_end_V],
             "spm.iv_v_start_V, spm.iv_v_end_V"),
        item("cafm.iv_scan_rate_V_per_s", sp.iv_rate_V_per_s, "spm.iv_rate_V_per_s"),
        item("kpfm.ac_voltage_V", "not modelled",
             "the KPFM model is the surface potential convolved with a PSF"),
        item("kpfm.ac_frequency_Hz", "not modelled",
             "the KPFM model is the surface potential convolved with a PSF"),
        item("kpfm.imaged_area_m2", sp.fov_width_m * sp.fov_height_m,
             "spm.fov_width_m x spm.fov_height_m, next to the separator"),
    ]


def _cell(v: Any) -> str:
    """A number of the Markdown tables: 3 significant digits, "n/a" for a missing value."""
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else "n/a"
    return str(v)


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# esim reproduce otoyama2020", "",
             ("Reference: Otoyama et al., Research Square preprint (2020), "
             "doi 10.21203/rs.3.rs-57856/v1."), "",
             (f"esim {report['esim_version']}, seeds {report['seeds']}, "
             f"{report['n_windows']} window{'s' * (report['n_windows'] != 1)}, "
             f"quick={report['quick']}, "
             f"{report['elapsed_s']:.0f} s."), ""]
    spacing, d50 = report.get("window_spacing_m"), report.get("nmc_d50_m")
    if spacing is not None and d50 is not None and spacing < d50:
        lines += [f"**Windows not independent:** the section planes lie {spacing * 1e6:.2g} um "
                  f"apart, closer than the NMC diameter ({d50 * 1e6:.2g} um), so neighbouring "
                  "windows cut the same particles; the spreads, the pooled counts and their "
                  "intervals below treat them as independent and are too narrow.", ""]
    if report.get("overrides"):
        changed = ", ".join(f"{sec}.{k} = {v!r}" for sec, kv in report["overrides"].items()
                            for k, v in kv.items())
        lines += [f"**A variant, not the default set:** {changed}.", ""]
    summ = report.get("summary") or _summary(report["rows"])
    pred = summ.get("prediction", {"n": 0, "within": 0})
    checks = [f"{ROW_KINDS[k]} ({v['n']} row{'s' * (v['n'] != 1)}, {v['within']} within)"
              for k, v in summ.items() if k != "prediction"]
    listed = (", ".join(checks[:-1]) + " and " + checks[-1]) if len(checks) > 1 else "".join(
        checks)
    lines += [f"**{pred['within']} of the {pred['n']} predictions are within tolerance.**"
              + (f" The other rows check that {listed} come through the whole pipeline."
                 if checks else ""), ""]
    lines += ["| quantity | reported | simulated | within | tolerance | single windows within "
              "| kind | note |", "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        rep, sim = (_cell(v) for v in (r["reported"], r["simulated"]))
        alone = f"{r['n_within']}/{r['n_values']}" + (" seeds" if r["per"] == "seeds" else "")
        lines.append(f"| {r['quantity']} | {rep} | {sim} | "
                     f"{'yes' if r['within'] else '**no**'} | {r['tolerance']} | {alone} | "
                     f"{r.get('kind', 'prediction')} | {r['note']} |")
    lines += ["", ("*single windows within*: how many of the windows (for the charge, of the "
                   "seeds) pass on their own, i.e. how often the paper's one-window experiment "
                   "would have matched the target if the electrode were the simulated one.  "
                   "*kind*: only a prediction tests the model; a calibrated row was fitted to "
                   "the paper's number, an instrument row is set by the instrument (the SSRM "
                   "ceiling, the C-AFM noise), an input row reads back numbers taken as given, "
                   "and a consistency row follows from another row or from how its points are "
                   "chosen.  *tolerance*: the targets file gives none; the capacity (±10 %), "
                   "SSRM (factor 3 of 2e9 and of 1e9 ohm, the 1e7-1e8 ohm band, 0.10-0.35 at "
                   ">= 5e8 ohm), KPFM (±0.15 V) and gradient (0.2 ± 0.1 V) tolerances are the "
                   "acceptance criteria of esim's issue 6; the others (mass, weight share, OCV, "
                   "particle count, resistance gradient, C-AFM currents) are esim's, each "
                   "stated in its row.")]
    if report.get("inputs"):
        lines += ["", "## Numbers of the paper taken as given", "",
                  "The other numbers of the targets file: esim uses them (or does not model "
                  "them), so they are not compared.", "",
                  "| quantity | reported | esim | where |", "|---|---|---|---|"]
        for r in report["inputs"]:
            rep, used = (_cell(v) for v in (r["reported"], r["esim"]))
            lines.append(f"| {r['target']} | {rep} | {used} | {r['where']} |")
    lines += ["", "## What produces each finding", ""]
    if report.get("overrides"):
        lines += [("These paragraphs are written for the default set. Their numbers are this "
                   "run's, but where the changes above alter the model they describe (the "
                   "contact model, say), their wording may not apply."), ""]
    lines += [f"- {p}" for p in report["explanations"]]
    lines += ["", "## Charge", ""]
    lines += [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}"
              for k, v in report["charge"].items()]
    return "\n".join(lines) + "\n"
