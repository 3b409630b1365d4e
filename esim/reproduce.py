"""``esim reproduce otoyama2020``: the reference experiment end to end.

Otoyama, Yamaoka, Ito, Inagi, Sakuda, Tatsumisago & Hayashi, "Visualizing local electrical
properties of composite electrodes in sulfide all-solid-state batteries by scanning probe
microscopy", Research Square preprint (2020), doi 10.21203/rs.3.rs-57856/v1.

For each packing seed: pack the electrode, image the pristine state, charge to 4.4 V vs Li at
0.13 mA/cm2 and rest at open circuit (the rest time is fixed in the preset), image the charged
state at the same cross-sections, then analyse each window as the paper did (histogram peak of
each NMC particle's pixels, particles numbered from the current-collector side).  Numbers are
compared with ``esim/data/otoyama2020_targets.toml`` in ``report.md`` / ``report.json``.

The code lives in the package so that the installed ``esim`` command can run it; the thin
script ``experiments/otoyama2020/run.py`` calls :func:`run_otoyama2020`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from esim import analysis
from esim._report import _compare, _inputs, _markdown, _spread, _summary
from esim.errors import InvalidParameters
from esim.io.atomic import check_output_dir
from esim.network import force_for_contact_radius
from esim.params import Params
from esim.spm import instrument as ins
from esim.spm.maps import CLASS_CUT_OFF, CLASS_ISOLATED, CLASS_POINT_CONTACT

__all__ = ["EXPERIMENTS", "image_states", "load_targets", "preset_otoyama2020",
           "run_otoyama2020"]

log = logging.getLogger(__name__)

HIGH_R_OHM = analysis.HIGH_R_OHM  # "high-resistance" NMC: at or above 5e8 ohm (issue 6)


def load_targets() -> dict[str, Any]:
    """The numbers reported by Otoyama et al. (2020), shipped as package data."""
    text = resources.files("esim.data").joinpath("otoyama2020_targets.toml").read_text()
    return tomllib.loads(text)


def preset_otoyama2020(quick: bool = False) -> Params:
    """The default parameter set for the paper's materials and cell.

    The built-in defaults of every section *are* this preset (their sources and calibrations
    are documented field by field; the calibrated ones are listed in the README).  ``quick``
    shrinks the box laterally (24 x 24 um instead of 40 x 40 um, same 50 um thickness), which
    still holds one 15 x 15 um window next to the separator, and images it on 128^2 maps
    instead of 256^2 (``spm.pixels_u``, ``spm.pixels_z``; ``--set`` changes them).
    """
    p = Params()
    if quick:
        p = p.replace(structure={"box_x_m": 24e-6, "box_y_m": 24e-6, "sample_points": 200_000},
                      spm={"pixels_u": 128, "pixels_z": 128})
    return p.replace(spm=kpfm_calibration(p))


@dataclass(frozen=True)
class WindowResult:
    """Per-particle analysis of one imaged window, before and after the charge."""

    seed: int
    plane_position_m: float
    rows: list[dict[str, Any]]
    numbers: dict[str, float]


def _ocp_of_state(chg, params, snapshot: int = -1) -> np.ndarray:
    """U(x) of every particle at a snapshot of the charge, by default the end of the rest
    (V vs Li; SE entries, unused by the imaging, get U(0))."""
    from esim.ocv import nmc_ocv

    x = chg.x[snapshot]
    u, _ = nmc_ocv(np.nan_to_num(x), params)  # nmc_ocv applies charge.ocv_x_scale itself
    u0, _ = nmc_ocv(np.zeros(1), params)
    return np.where(np.isfinite(x), u, u0[0])


# Raw NMC V_CPD before and after the charge, Otoyama et al. (2020): V_CPD' = V_CPD + V_OCV
# with NMC V_CPD' 2.06-2.12 V at V_OCV = 1.16 V and 3.11-3.29 V at 3.74 V (targets file).
KPFM_NMC_RAW_BEFORE_V = 0.93
KPFM_NMC_RAW_AFTER_V = -0.54


def kpfm_calibration(params: Params) -> dict[str, float]:
    """The KPFM work-function coupling, calibrated on one number only: the NMC shift.

    ``V_CPD = 0.93 V - beta (U(x) - U(0))``, so ``beta = (0.93 - (-0.54)) / (U(x_ref) - U(0))``
    with ``x_ref = materials.nmc_x_max`` (SOC 1, the reference charge) and U the NMC
    open-circuit curve of the charge model (``esim.ocv.nmc_ocv``).  Returns the ``spm``
    section changes ``kpfm_beta`` and ``ocp_u0_V``.
    """
    from esim.ocv import nmc_ocv

    u = nmc_ocv(np.array([0.0, params.materials.nmc_x_max]), params)[0]
    beta = (KPFM_NMC_RAW_BEFORE_V - KPFM_NMC_RAW_AFTER_V) / float(u[1] - u[0])
    return {"kpfm_beta": beta, "ocp_u0_V": float(u[0]),
            "kpfm_nmc_offset_V": KPFM_NMC_RAW_BEFORE_V}


def _soc_end(chg) -> np.ndarray:
    """Every particle's SOC at the end of the rest.  A particle may take up a little Li (x
    slightly below 0, esim.charge) in an unevenly charging electrode; its conductivity is the
    x = 0 value (the table starts there), so the SOC is clipped at 0."""
    return np.clip(np.nan_to_num(chg.soc[-1]), 0.0, None)


def image_states(pk, params, chg, spm) -> dict[str, Any]:
    """The maps of one cross-section before the charge and, when ``chg`` (a ChargeResult of the
    same packing) is given, after it and its rest: ``{"pristine": SPMMaps, "charged": SPMMaps}``.

    Before: SOC 0, every NMC at ``spm.ocp_u0_V``, V_OCV ``spm.ocv_pristine_vs_inli_V``.  After:
    each particle's SOC and U(x) at the end of the rest, V_OCV the cell's OCV after the rest.
    The two are separate scans (``scan`` 0 and 1): their noise is independent.
    """
    from esim.spm.maps import simulate_spm

    u0 = np.full(pk.n_particles, spm.ocp_u0_V)
    # I-V points as in Otoyama et al. 2020, Fig. 4: two NMC and two SE before the charge, the two
    # lowest- and two highest-resistance NMC after it
    out = {"pristine": simulate_spm(pk, params, soc=0.0, ocp_V=u0, spm=spm,
                                    ocv_vs_inli_V=spm.ocv_pristine_vs_inli_V)}
    if chg is not None:
        out["charged"] = simulate_spm(pk, params, soc=_soc_end(chg),
                                      ocp_V=_ocp_of_state(chg, params),
                                      spm=spm, ocv_vs_li_V=float(chg.ocv_after_rest_V_vs_Li),
                                      iv_choice=(2, 2, 0), scan=1)
    return out


def _analyse_window(pk, params, chg, plane: float, seed: int, quick: bool,
                    pixels: int | None = None) -> tuple[WindowResult, Any, Any]:
    """Pristine and charged maps of one cross-section and their per-particle numbers, on
    ``pixels``^2 maps if given, else on the parameters' ``spm.pixels_u`` x ``spm.pixels_z``
    (the preset's 256^2, or 128^2 in quick mode)."""
    from esim.analysis import KPFM_HISTOGRAM, SSRM_HISTOGRAM, linear_gradient, particle_table
    from esim.packing import PHASE_NMC, PHASE_SE

    pu, pz = (pixels, pixels) if pixels else (params.spm.pixels_u, params.spm.pixels_z)
    spm = params.replace(spm={"plane_position_m": plane, "pixels_u": pu,
                              "pixels_z": pz, "seed": seed}).spm
    images = image_states(pk, params, chg, spm)
    pristine, charged = images["pristine"], images["charged"]
    soc_end = _soc_end(chg)
    depth = np.broadcast_to(charged.z_m[:, None], charged.particle.shape)
    nmc_ids = charged.window_particles[charged.window_phase == PHASE_NMC]
    tabs = {}
    for name, m in (("before", pristine), ("after", charged)):
        r = particle_table(m.ssrm_ohm, m.particle, depth, nmc_ids, **SSRM_HISTOGRAM)
        v = particle_table(m.kpfm_vcpd_prime_V, m.particle, depth, nmc_ids, **KPFM_HISTOGRAM)
        tabs[name] = (r, v)
    r_b, v_b = tabs["before"]
    r_a, v_a = tabs["after"]
    ids = r_a.ids
    # each particle's connection class and network resistance: ids are a subset of the window
    # particles, which are sorted by id
    at = np.searchsorted(charged.window_particles, ids)
    klass = charged.window_class[at].astype(np.int64)
    net = charged.window_resistance_ohm[at].astype(np.float64)
    # the contact that limits each particle's path (largest share of its power), as milled
    bott_a = charged.window_bottleneck_radius_m[at].astype(np.float64)
    bott_f = charged.window_bottleneck_kept_fraction[at].astype(np.float64)
    # the tip spreading term of the reading, median over the particle's pixels (model truth)
    tipr = (np.asarray(ndimage.median(charged.tip_resistance_ohm, charged.particle, ids),
                       float) if ids.size else np.zeros(0))
    # the KPFM model's V_CPD' of each particle without blur or noise (its U), at the end of the
    # charge (no rest) and after the rest: the truth behind the measured gradient
    kinds = np.asarray(chg.snapshot_kind)
    end = int(np.flatnonzero(kinds == 1)[0]) if (kinds == 1).any() else -1
    v_end = (-spm.kpfm_beta * _ocp_of_state(chg, params, end))[ids]
    v_rest = (-spm.kpfm_beta * _ocp_of_state(chg, params, -1))[ids]
    soc_after = soc_end[ids]
    delta_soc = soc_after - np.nan_to_num(chg.soc[0][ids])
    z, r_before, r_after = r_a.z_m, r_b.peak, r_a.peak
    v_before, v_after = v_b.peak, v_a.peak
    # one record per particle for the report (columns of the arrays above)
    cols = {"number": r_a.number, "particle": ids, "z_m": z, "ssrm_before_ohm": r_before,
            "ssrm_after_ohm": r_after, "vcpd_prime_before_V": v_before,
            "vcpd_prime_after_V": v_after, "soc_after": soc_after, "delta_soc": delta_soc,
            "connection_class": klass, "network_after_ohm": net,
            "bottleneck_contact_radius_m": bott_a, "bottleneck_kept_fraction": bott_f,
            "tip_spreading_after_ohm": tipr, "vcpd_truth_end_of_charge_V": v_end,
            "vcpd_truth_after_rest_V": v_rest}
    rows = [dict(zip(cols, rec, strict=True))
            for rec in zip(*(c.tolist() for c in cols.values()), strict=True)]
    # numbers of this window
    counts = high_r_counts(klass, r_after, delta_soc, bott_f)
    counted, high = _counted_and_high(klass, r_after)
    se_px = charged.phase == PHASE_SE
    se_px_b = pristine.phase == PHASE_SE
    nmc_px = charged.phase == PHASE_NMC

    def logmedian(x):
        x = x[np.isfinite(x) & (x > 0)]
        return float(10 ** np.median(np.log10(x))) if x.size else float("nan")

    def nan_if_empty(f, x):
        return float(f(x)) if x.size else float("nan")

    low = ~high & counted
    sel = _vcpd_fit_mask(klass, r_after)
    grad_v = linear_gradient(z[sel], v_after[sel])
    grad_r = linear_gradient(z[counted], np.log10(r_after[counted]))
    grad_end = linear_gradient(z[sel], v_end[sel])
    grad_rest = linear_gradient(z[sel], v_rest[sel])
    numbers = {
        "n_nmc_particles": int(ids.size),
        **counts,
        "ssrm_nmc_before_ohm": logmedian(r_before),
        "ssrm_se_before_ohm": logmedian(pristine.ssrm_ohm[se_px_b]),
        "ssrm_nmc_after_low_ohm": logmedian(r_after[low]),
        "ssrm_se_after_ohm": logmedian(charged.ssrm_ohm[se_px]),
        "kpfm_nmc_before_V": nan_if_empty(np.nanmedian, v_before),
        "kpfm_nmc_after_V": nan_if_empty(np.nanmedian, v_after),
        "kpfm_se_before_V": float(np.median(pristine.kpfm_vcpd_prime_V[se_px_b])),
        "kpfm_se_after_V": float(np.median(charged.kpfm_vcpd_prime_V[se_px])),
        "vcpd_gradient_cc_minus_se_V": grad_v["cc_minus_se"],
        "log10_r_gradient_cc_minus_se": grad_r["cc_minus_se"],
        "log10_r_gradient_stderr_per_m": grad_r["slope_stderr_per_m"],
        "log10_r_slope_per_m": grad_r["slope_per_m"],
        "nmc_pixel_fraction": float(nmc_px.mean()),
        "ssrm_after_low_network_part_ohm": logmedian(net[low]),
        "ssrm_after_low_tip_part_ohm": logmedian(tipr[low]),
        "network_after_max_ohm": nan_if_empty(np.max, net[counted & (klass != CLASS_CUT_OFF)]),
        "n_point_contact_class": int((klass == CLASS_POINT_CONTACT).sum()),
        "vcpd_gradient_truth_end_of_charge_V": grad_end["cc_minus_se"],
        "vcpd_gradient_truth_after_rest_V": grad_rest["cc_minus_se"],
        # the paper's Fig. 5e: "the V_CPD and resistance values of all the NMC particles were
        # ~2.1 V and 2.1e9 ohm" before the charge (means of the particles' peaks)
        "ssrm_nmc_before_particle_mean_ohm": nan_if_empty(np.mean, r_before),
        "kpfm_nmc_before_particle_mean_V": nan_if_empty(np.mean, v_before),
        "ssrm_nmc_after_high_ohm": logmedian(r_after[high]),
        # did the high-resistance particles charge, as the paper's did (their V_CPD' shifted)?
        "high_r_min_delta_soc": nan_if_empty(np.min, delta_soc[high]),
        "high_r_vcpd_shift_V": nan_if_empty(np.mean, (v_after - v_before)[high]),
        "low_r_vcpd_shift_V": nan_if_empty(np.mean, (v_after - v_before)[low]),
    }
    numbers["kpfm_nmc_shift_V"] = numbers["kpfm_nmc_after_V"] - numbers["kpfm_nmc_before_V"]
    numbers.update(_iv_numbers(pristine, charged, spm.bias_V))
    return WindowResult(seed, plane, rows, numbers), pristine, charged


def _vcpd_fit_mask(klass: np.ndarray, r_after_ohm: np.ndarray) -> np.ndarray:
    """The particles the V_CPD' gradient is fitted to: the counted ones below
    :data:`HIGH_R_OHM` (the paper left its high-resistance particles 03 and 08 out of it), or
    every particle where fewer than 3 are left (the report and Fig. S4 use this one rule)."""
    counted, high = _counted_and_high(klass, r_after_ohm)
    low = ~high & counted
    return low if low.sum() >= 3 else np.ones(low.size, bool)


def _counted_and_high(klass: np.ndarray, r_after_ohm: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The issue's rules as masks: *counted* (not isolated: it took part in the charge) and
    *high* (counted, reading at or above :data:`HIGH_R_OHM` after the charge)."""
    counted = np.asarray(klass) != CLASS_ISOLATED
    return counted, (np.asarray(r_after_ohm) >= HIGH_R_OHM) & counted


def high_r_counts(klass: np.ndarray, r_after_ohm: np.ndarray, delta_soc: np.ndarray,
                  kept_fraction: np.ndarray) -> dict[str, Any]:
    """The high-resistance counts of one window's NMC particles (the issue's rules).

    Isolated particles (no electronic path in the intact electrode, so they never charged) are
    counted apart; the others are *counted*.  A counted particle reading at or above
    :data:`HIGH_R_OHM` after the charge is *high*.  ``high_r_and_charged_fraction`` counts, of
    the counted, the high ones that charged (SOC gain > 0.01) and that a point contact limits
    or the milling cut off: the paper's kind.  A high reading of neither class ("other":
    several narrow contacts in series, none dissipating most of the path's power) is not.

    Parameters
    ----------
    klass : (P,) int
        Connection classes (``esim.spm.maps.CLASS_*``).
    r_after_ohm : (P,) float64, ohm
        Charged SSRM readings (histogram peaks).
    delta_soc : (P,) float64, 1
        SOC gained in the charge.
    kept_fraction : (P,) float64, 1
        Area fraction the milling left of the contact that limits each path (< 1: cut).
    """
    klass = np.asarray(klass)
    counted, high = _counted_and_high(klass, r_after_ohm)
    pc, cut = klass == CLASS_POINT_CONTACT, klass == CLASS_CUT_OFF
    n = max(int(counted.sum()), 1)
    return {
        "n_isolated": int((~counted).sum()),
        "n_cut_off": int(cut.sum()),
        "n_high_r_cut_off": int((high & cut).sum()),
        "n_high_r_point_contact": int((high & pc).sum()),
        # of those, how many hang on a contact the face cut to a segment (a point contact the
        # milling made)
        "n_high_r_point_contact_milled": int((high & pc & (np.asarray(kept_fraction) < 1.0)
                                              ).sum()),
        "n_counted": int(counted.sum()),
        "n_high_r": int(high.sum()),
        "high_r_fraction": float(high.sum() / n),
        "high_r_and_charged_fraction": float(
            (high & (np.asarray(delta_soc) > 0.01) & (pc | cut)).sum() / n),
    }


def _iv_numbers(pristine, charged, bias_V: float) -> dict[str, float]:
    """The C-AFM I-V numbers of one window (Otoyama et al. 2020, Fig. 4 and S3), from the
    measured (amplified, noisy) curves: the SE points' largest |I| from -2 to 1 V and their mean
    I at +2 V before the charge, and after it the ratio of the mean |I| at the imaging bias of
    the lower-reading half of the NMC points (by their SSRM reading) to the higher half's."""
    from esim.packing import PHASE_NMC, PHASE_SE

    out = {}
    v = pristine.iv_voltage_V
    px = pristine.iv_pixels
    se = pristine.phase[px[:, 0], px[:, 1]] == PHASE_SE if px.size else np.zeros(0, bool)
    i_se = pristine.iv_current_A[se]
    out["cafm_se_max_abs_below_1V_A"] = (float(np.abs(i_se[:, v <= 1.0]).max())
                                         if se.any() else float("nan"))
    out["cafm_se_at_2V_A"] = (float(i_se[:, np.argmin(np.abs(v - 2.0))].mean())
                              if se.any() else float("nan"))
    px = charged.iv_pixels
    nmc = np.flatnonzero(charged.phase[px[:, 0], px[:, 1]] == PHASE_NMC) if px.size else px
    ratio = float("nan")
    if nmc.size >= 2:
        reading = charged.ssrm_ohm[px[nmc, 0], px[nmc, 1]]
        by_r = nmc[np.argsort(reading, kind="stable")]
        i_bias = np.abs(charged.iv_current_A[:, np.argmin(np.abs(charged.iv_voltage_V
                                                                  - bias_V))])
        half = nmc.size // 2
        ratio = float(i_bias[by_r[:half]].mean() / max(i_bias[by_r[-half:]].mean(), 1e-300))
    out["cafm_low_to_high_r_current_ratio"] = ratio
    return out


def _electrode_numbers(pk, params: Params, t: dict) -> dict[str, float]:
    """The packed electrode's solid and NMC fractions, and what they make of the paper's
    composite: its mass on the pellet (mg) and its NMC weight share (wt %)."""
    c = params.charge
    sf, f = float(pk.solid_fraction), float(pk.nmc_fraction_of_solid)
    rho = f * c.nmc_density_kg_per_m3 + (1 - f) * c.se_density_kg_per_m3  # of the solid, kg/m3
    area = math.pi * (t["cell"]["pellet_diameter_m"] / 2) ** 2  # m2
    return {"solid_fraction": sf, "nmc_fraction_of_solid": f,
            "composite_mass_mg": sf * rho * params.structure.electrode_thickness_m * area * 1e6,
            "nmc_weight_percent": 100 * f * c.nmc_density_kg_per_m3 / rho}


def _diagnostics(pk, params, chg) -> dict[str, Any]:
    """Numbers behind the explanations, from the first seed: NMC-NMC contacts, effective
    conductivities of the charged electrode, and the SOC profile at the reaction onset and at
    the end of the charge (current collector side first)."""
    from esim.causal import _contact_stats
    from esim.effective import effective_properties

    eff = effective_properties(pk, params, soc=1.0)
    c = params.charge
    kinds = np.asarray(chg.snapshot_kind)
    prof = {}
    for name, kind in (("onset", 0), ("end_of_charge", 1), ("after_rest", 2)):
        if (kinds == kind).any():
            prof[name] = [float(v) for v in chg.soc_vs_z[int(np.flatnonzero(kinds == kind)[0])]]
    sig_i, sig_e = float(eff["sigma_ion_S_per_m"]), float(eff["sigma_e_S_per_m"])
    L = float(pk.box_m[2])
    # relaxation of a U(x) difference over the 15 um window (linearised porous electrode): the
    # slowest mode over a length l decays with tau = C_v r_ct / a_v + l^2 C_v / (pi^2 sigma_amb),
    # C_v = dQ/dU per volume of electrode, r_ct = RT / (F i0) (+ the interface ASR) the
    # charge transfer per interface area, a_v the active interface area per volume, sigma_amb
    # the series of the two effective conductivities.  The conductivity that keeps it for the
    # rest time (the transport term alone; the kinetic term is minutes):
    from esim.ocv import nmc_ocv
    from esim.packing import PHASE_NMC

    nmc = pk.phase == PHASE_NMC
    v_nmc = float(np.sum(4.0 / 3.0 * np.pi * pk.radii_m[nmc] ** 3)) / float(np.prod(pk.box_m))
    dudx = float(nmc_ocv(np.array([params.materials.nmc_x_max]), params)[1][0])
    q_c_per_kg = c.nmc_theoretical_capacity_mAh_per_g * 3.6 * 1e3
    c_v = c.nmc_density_kg_per_m3 * q_c_per_kg * v_nmc / dudx  # F/m3
    ell = float(params.spm.fov_height_m)
    rest = max(c.rest_time_s, 1.0)
    sig_keep = ell**2 * c_v / (np.pi**2 * rest)
    from esim.charge import FARADAY_C_per_mol, GAS_J_per_mol_K

    r_ct = (GAS_J_per_mol_K * params.materials.temperature_K
            / (FARADAY_C_per_mol * c.exchange_current_density_A_per_m2) + c.interface_asr_ohm_m2)
    a_v = float(eff["active_interface_area_m2"]) / float(np.prod(pk.box_m))
    tau_kin = c_v * r_ct / a_v if a_v > 0 else float("inf")
    tau_tr = ell**2 * c_v / (np.pi**2 * 1.0 / (1 / sig_i + 1 / sig_e))
    # the same NMC-NMC contacts under the mechanical model (Hertz with the hardness cap, forces
    # scaled to the stack pressure), whose radii do not depend on the numerical stiffness ratio
    from esim.network import _mechanical_radii

    a_mech, _ = _mechanical_radii(pk, params, pk.contact_radius_m.astype(np.float64),
                                  pk.wall_contact_radius_m.astype(np.float64))
    a_mech = a_mech[nmc[pk.contacts[:, 0]] & nmc[pk.contacts[:, 1]]]
    mech = {"radius_median_m": float(np.median(a_mech)) if a_mech.size else float("nan"),
            "fraction_below_25nm": float(np.mean(a_mech < 25e-9)) if a_mech.size
            else float("nan")}
    # the charged NMC against the pristine, and one charged NMC-NMC contact of 25 nm with its
    # two films: 2 rho_f t / (pi a^2) + rho / (2 a)
    from esim.materials import film_resistance_e, nmc_sigma_e

    s0, s1 = (float(v) for v in nmc_sigma_e(np.array([0.0, 1.0]), params=params))
    r25 = float(2 * film_resistance_e(25e-9, params)) + 1.0 / (s1 * 2 * 25e-9)
    return {"volumetric_capacitance_F_per_m3": c_v,
            "nmc_sigma_e_charged_to_pristine": s1 / s0,
            "contact_r_at_25nm_ohm": r25,
            "tau_relax_transport_s": tau_tr,
            "tau_relax_kinetic_s": tau_kin,
            "tau_relax_window_s": tau_kin + tau_tr,
            "interface_area_per_volume_per_m": a_v,
            "sigma_keeping_gradient_S_per_m": sig_keep,
            "polarisation_at_that_sigma_V": c.current_density_A_per_m2 * L / sig_keep,
            "kpfm_beta": float(params.spm.kpfm_beta),
            "contacts": _contact_stats(pk),
            "contacts_mechanical": mech,
            "nmc_stiffness_ratio": float(pk.params.structure.nmc_stiffness_ratio),
            "sigma_ion_eff_S_per_m": sig_i, "sigma_e_eff_charged_S_per_m": sig_e,
            "ohmic_drop_ion_V": c.current_density_A_per_m2 * L / sig_i,
            "ohmic_drop_e_charged_V": c.current_density_A_per_m2 * L / sig_e,
            "soc_vs_z": prof}


def _row_within(rows: list[dict[str, Any]], target: str) -> bool | None:
    """Whether the first row that compares with ``target`` (``section.key`` of the targets
    file) is within its tolerance; None if no row does."""
    for r in rows:
        if target in r["target"]:
            return bool(r["within"])
    return None


def _status(within: bool | None) -> str:
    return {True: "within", False: "missed", None: "no row"}[within]


def _tip_mechanics(params: Params, tip_part_ohm: float, budget_ohm: float) -> str:
    """What force the tip's contact takes: the preset's electrical radius and the radius that
    brings the tip term (``rho / (4 a)``, so ``tip_part_ohm`` scales as ``1 / a``) below
    ``budget_ohm`` with the barrier off.  A diamond tip of the nominal radius
    (:data:`esim.spm.instrument.TIP_NOMINAL_RADIUS_M`) on the flat milled NMC, Hertz capped at
    the NMC hardness (:func:`esim.network.force_for_contact_radius`)."""
    mat, sp = params.materials, params.spm
    e_star = 1.0 / ((1.0 - mat.nmc_poisson_ratio**2) / mat.nmc_youngs_modulus_Pa
                    + (1.0 - ins.DIAMOND_POISSON_RATIO**2) / ins.DIAMOND_YOUNGS_MODULUS_PA)

    def force_uN(a_m):
        return 1e6 * float(force_for_contact_radius(a_m, ins.TIP_NOMINAL_RADIUS_M, e_star,
                                                    mat.nmc_hardness_Pa))

    ohmic = budget_ohm - sp.r_instrument_ohm
    if not (ohmic > 0 and tip_part_ohm > 0):
        return ""
    a_need = tip_part_ohm * sp.tip_radius_m / ohmic
    return (
        f"With the barrier off (an [A] assumption), the tip term alone must fall below "
        f"{ohmic:.2g} ohm, a contact of at least {a_need * 1e9:.0f} nm. In contact mechanics "
        f"a diamond tip of nominal radius {ins.TIP_NOMINAL_RADIUS_M * 1e9:g} nm [E] pressed "
        f"into the flat milled NMC (E {mat.nmc_youngs_modulus_Pa / 1e9:g} GPa, H "
        f"{mat.nmc_hardness_Pa / 1e9:g} GPa; Hertz capped at the hardness) makes a "
        f"{sp.tip_radius_m * 1e9:g} nm contact at {force_uN(sp.tip_radius_m):.2g} uN and a "
        f"{a_need * 1e9:.0f} nm one at {force_uN(a_need):.2g} uN; the paper states no force, "
        "and a polycrystalline diamond coating conducts through a few of its grains, so "
        "the mechanics says what force a radius takes, not which radius the paper's tip "
        "had.")


def _explanations(agg, charge_nums, diag, rows, params: Params,
                  particles: list[dict[str, Any]] = ()) -> list[str]:
    """One paragraph per finding of the paper: what in the simulation produces it.  Every
    claim of a paragraph (within or missed, which side leads, which carrier limits, whether
    the gradient survives the rest) is read from the run's numbers and parameters, so a
    variant (``--set``) gets its own explanation, not the default set's.  ``particles`` are
    the per-particle records of every window (for the contacts that limit the
    point-contact-limited ones)."""
    m = {k: v["mean"] for k, v in agg.items()}
    f = m["high_r_fraction"]
    sp, c = params.spm, params.charge

    def total(key):  # over the windows
        return int(round(agg[key]["mean"] * agg[key]["n"])) if agg[key]["n"] else 0

    n_high, n_cut, n_pc = total("n_high_r"), total("n_high_r_cut_off"), total(
        "n_high_r_point_contact")
    min_dsoc = agg["high_r_min_delta_soc"]["min"]
    g = agg["vcpd_gradient_cc_minus_se_V"]
    cs, mech = diag["contacts"], diag["contacts_mechanical"]
    lo = m["ssrm_nmc_after_low_ohm"]
    tip, net = m["ssrm_after_low_tip_part_ohm"], m["ssrm_after_low_network_part_ohm"]
    prof = diag["soc_vs_z"]
    on = prof.get("onset", [float("nan")] * 2)
    g_end = m["vcpd_gradient_truth_end_of_charge_V"]
    g_rest = m["vcpd_gradient_truth_after_rest_V"]
    j_txt = f"{c.current_density_A_per_m2 / 10:.2g} mA/cm2"
    window_um = f"{sp.fov_height_m * 1e6:g} um"
    rest_h = f"{charge_nums['rest_time_s'] / 3600:g} h"
    if g_end > 0:
        end_sign = ("the paper's sign (the collector side less delithiated: a front from the SE "
                    "side, i.e. ionic limitation)")
    elif g_end < 0:
        end_sign = ("the opposite sign (the collector side more delithiated: electronic "
                    "limitation)")
    else:
        end_sign = "no sign"
    # -- (1) high-resistance particles: the contacts the network used
    geometric = (f"the lens circles of the soft-sphere overlaps: median "
                 f"{cs['radius_median_m'] * 1e9:.0f} nm, 5th percentile "
                 f"{cs['radius_p5_m'] * 1e9:.0f} nm, {100 * cs['fraction_below_25nm']:.1f} % "
                 f"below 25 nm ({100 * cs['fraction_at_asperity']:.1f} % at the "
                 f"{params.structure.asperity_radius_m * 1e9:g} nm asperity floor)")
    hertz = (f"Hertz with the NMC hardness cap, the packing's forces scaled to the "
             f"{params.materials.stack_pressure_Pa / 1e6:g} MPa stack pressure")
    mech_radii = (f"a median radius of {mech['radius_median_m'] * 1e9:.0f} nm "
                  f"({100 * mech['fraction_below_25nm']:.1f} % below 25 nm)")
    mechanical = f"the mechanical model's radii ({hertz}): {mech_radii}"
    below = (cs if params.network.contact_model == "geometric" else mech)["fraction_below_25nm"]
    if params.network.contact_model == "geometric":
        contacts = (
            f"The network's NMC-NMC contacts are {geometric}, with an NMC-NMC coordination of "
            f"{cs['coordination_mean']:.1f} ({100 * cs['fraction_with_at_most_one']:.1f} % of "
            "NMC with at most one NMC neighbour)")
        model_note = (
            "These lens radii are set by the overlaps F / k_hard, so they scale as "
            f"structure.nmc_stiffness_ratio^(-1/2) (here {diag['nmc_stiffness_ratio']:g}, a "
            "numerical choice that keeps NMC-NMC overlaps near 1 %; tests/test_network.py "
            "checks the scaling); the mechanical model (network.contact_model = 'mechanical': "
            f"{hertz}), which does not depend on that ratio, would give {mech_radii}")
    else:
        contacts = (
            f"The network's NMC-NMC contacts are {mechanical}, with an NMC-NMC coordination of "
            f"{cs['coordination_mean']:.1f} ({100 * cs['fraction_with_at_most_one']:.1f} % of "
            "NMC with at most one NMC neighbour)")
        model_note = (
            "These radii do not depend on the numerical stiffness ratio; the default geometric "
            f"model would give {geometric}")
    verb = "is" if n_pc == 1 else "are"
    pc = [p for p in particles if p["connection_class"] == CLASS_POINT_CONTACT
          and p["ssrm_after_ohm"] >= HIGH_R_OHM]
    if pc:
        a_nm = sorted(round(1e9 * p["bottleneck_contact_radius_m"]) for p in pc)
        n_mill = sum(p["bottleneck_kept_fraction"] < 1.0 for p in pc)
        made = "a point contact the milling made"
        if len(pc) == 1:
            pc_txt = (f"; its limiting contact conducts as a disc of {a_nm[0]} nm behind the "
                      "face, " + (f"a segment the face left of a cut contact ({made})" if n_mill
                                  else "a contact the face did not cut"))
        else:
            pc_txt = (f"; their limiting contacts conduct as discs of {', '.join(map(str, a_nm))}"
                      f" nm behind the face, {n_mill} of them a segment the face left of a cut "
                      f"contact ({made})")
    else:
        pc_txt = ""
    high = (
        f"High-resistance NMC after charge ({f:.2f} of the counted NMC at >= 5e8 ohm, paper "
        f"3/14; {_status(_row_within(rows, 'ssrm.particles_high_resistance_after_charge'))}): "
        "a particle's SSRM reading is the tip spreading resistance into it plus its resistance "
        "to the current collector through the material left behind the milled face (plus the "
        "non-ohmic tip barrier). After charge the NMC bulk is "
        f"{diag['nmc_sigma_e_charged_to_pristine']:.2g}x more conductive, so the network part "
        "is set by the NMC-NMC contacts the section kept. Two things leave a charged particle "
        "reading high. (1) The milling: a particle cut by the face keeps only the contacts, or "
        "the parts of them, on its remaining part, so a section whose centre lay beyond the "
        "face (a cap) keeps few of them, and "
        f"{m['n_cut_off']:.1f} of the {m['n_counted']:.1f} counted NMC per window kept no NMC "
        f"path at all ({n_cut} of the {n_high} at >= 5e8 ohm): cut off by the milling, they "
        "read the ceiling, like the SE, as the paper's high-resistance particles read like its "
        "SE (1e9 ohm). They charged with the electrode before it was cut: the smallest SOC gain "
        f"of a high-resistance particle is {min_dsoc:.2f}, and their V_CPD' shifted by "
        f"{m['high_r_vcpd_shift_V']:.2f} V against {m['low_r_vcpd_shift_V']:.2f} V for the "
        "others (the paper: every particle shifted). (2) Point contacts: one contact of radius "
        "a with its two LiNbO3 films costs 2 rho_f t/(pi a^2) + rho/(2a), "
        f"{diag['contact_r_at_25nm_ohm']:.2g} ohm at a = 25 nm in the charged NMC. "
        f"{contacts}, so a path that runs through a sub-25 nm contact is "
        f"{'rare' if below < 0.05 else 'common'}: {n_pc} of the {n_high} high-resistance "
        f"particles {verb} point-contact-limited (one contact with another particle dissipates "
        f"most of the path's power){pc_txt}, and the largest network part of a particle with "
        f"a path is {m['network_after_max_ohm']:.2g} ohm. {model_note}; the milled ones do not "
        "depend on the contact model. In the SEM of the section a cap shows its neighbours "
        "touching it at points along its edge, which is how the paper saw its 'point-contacted' "
        "particles; which of the two its three particles were, the paper cannot tell. The "
        "causal check (experiments/otoyama2020/causal_checks.py) changes the NMC-NMC contacts "
        "on the same electrodes (radii scaled, widened, the film removed, carbon added) and "
        "shows which readings follow the contacts. Nothing is tuned to the 3/14.")
    # -- (2) charged SSRM of the connected NMC
    blo, bhi = load_targets()["ssrm"]["charged_nmc_connected_ohm"]
    rest_of = max(lo - tip - net, 0.0)
    tip_txt = f"a_tip = {sp.tip_radius_m * 1e9:g} nm; the [E] range is 5-20 nm"
    band = "-".join(f"{b:.0e}".replace("e+0", "e") for b in (blo, bhi))
    if lo > bhi and net >= bhi:
        verdict = ("The network part alone lies above the band, so no tip radius would bring "
                   "the reading into it.")
    elif lo > bhi:
        verdict = (
            f"The band needs the tip and barrier terms together below ~{bhi - net:.1g} "
            "ohm: a wider effective electrical contact than the preset's (the nominal "
            "radius of diamond-coated tips is ~100 nm), or a charged NMC several times more "
            f"conductive than the pellet value. {_tip_mechanics(params, tip, bhi - net)} "
            "Neither the radius nor the conductivity is fixed by an independent number, so "
            "the row is reported as missed rather than fitted; causal_checks.md has the "
            "tip-radius sensitivity, with the barrier on and off.")
    elif lo < blo:
        verdict = ("The reading lies below the band: the tip and the network together conduct "
                   "better than the paper's particles did.")
    else:
        verdict = "The three terms together fall within the band."
    ssrm = (
        f"Charged SSRM of most NMC (log-median {lo:.2g} ohm, paper {band}; "
        f"{_status(_row_within(rows, 'ssrm.charged_nmc_connected_ohm'))}): of the reading, the "
        f"tip spreading rho/(4 a_tip) is {tip:.2g} ohm ({tip_txt}; rho of NMC at "
        f"x ~ {params.materials.nmc_x_max:.2f} from Amin & Chiang's sintered pellets), the "
        f"network {net:.2g} ohm, and the non-ohmic tip barrier and instrument the remaining "
        f"~{rest_of:.2g} ohm. {verdict}")
    # -- (3) the V_CPD' gradient
    if on[0] > on[-1]:
        onset = (f"the SOC is highest at the collector (first depth bin {on[0]:.2f}, last "
                 f"{on[-1]:.2f}): the pristine NMC's electronic conduction limits, the opposite "
                 "sign")
    elif on[0] < on[-1]:
        onset = (f"the SOC is highest at the SE side (first depth bin {on[0]:.2f}, last "
                 f"{on[-1]:.2f}): ionic conduction limits already, the paper's sign")
    else:
        onset = f"the SOC is flat through the electrode ({on[0]:.2f})"
    s_e, s_i = diag["sigma_e_eff_charged_S_per_m"], diag["sigma_ion_eff_S_per_m"]
    ratio = s_e / s_i
    how = ("about as well as" if 1 / 3 <= ratio <= 3 else
           f"{ratio:.2g}x better than" if ratio > 3 else f"{1 / ratio:.2g}x worse than")
    tau, rest_s = diag["tau_relax_window_s"], charge_nums["rest_time_s"]
    if tau < rest_s / 10:
        survives = (f"the rest equalises U(x) between connected particles (relaxation time over "
                    f"the {window_um} window C_v r_ct / a_v + l^2 C_v / (pi^2 sigma_amb) = "
                    f"{diag['tau_relax_kinetic_s']:.2g} s + "
                    f"{diag['tau_relax_transport_s']:.2g} s = {tau:.2g} s, with C_v = "
                    f"{diag['volumetric_capacitance_F_per_m3']:.2g} F/m3, r_ct the charge "
                    "transfer per interface area, a_v the interface area per volume and "
                    "sigma_amb the series of the two effective conductivities): it does not "
                    "survive a longer rest")
    else:
        survives = (f"its relaxation time over the {window_um} window, C_v r_ct / a_v + l^2 "
                    f"C_v / (pi^2 sigma_amb) = {tau:.2g} s, is not short against the {rest_h} "
                    "rest: part of it survives the rest")
    drop_keep = diag["polarisation_at_that_sigma_V"]
    keep = (f"A gradient that survives the rest needs sigma_amb below "
            f"{diag['sigma_keeping_gradient_S_per_m']:.1g} S/m, "
            + (f"which would not let the electrode charge at {j_txt} (an ohmic drop of "
               f"{drop_keep:.2g} V): it needs a mechanism outside this model (e.g. U(x) "
               "hysteresis, or a surface state seen by KPFM)." if drop_keep > 1.0 else
               f"an ohmic drop of {drop_keep:.2g} V at {j_txt}."))
    grad = (
        f"V_CPD' gradient after charge "
        f"({_status(_row_within(rows, 'kpfm.charged_gradient_se_to_cc_V'))}): with the "
        "work-function KPFM model, higher V_CPD' means less delithiated (within one map, "
        "V_CPD' falls as U(x) rises), so the paper's CC-side-higher sign means, in this model, "
        "a reaction front from the SE side. The paper reads its own sign the other way: it "
        "notes that its Fig. S4(b) contrasts with the SE-side reaction front of its earlier "
        "Raman studies; this reading is esim's, from its KPFM model. Measured on the maps: "
        f"{g['mean']:+.3f} V (std {g['std']:.3f} over {g['n']} windows; each particle's "
        "reading carries the blur of its surroundings into it and a few mV of the noise "
        "left by the histogram peak). The model's own "
        f"V_CPD' of the same particles (no blur, no noise): {g_end:+.4f} V at the end of the "
        f"charge (rest 0) and {g_rest:+.4f} V after the {rest_h} rest. Which limitation: at the "
        f"reaction onset {onset}. Once charged, NMC conducts electrons (effective sigma_e "
        f"{s_e:.2g} S/m) {how} the glass conducts ions ({s_i:.2g} S/m), and the end-of-charge "
        f"gradient has {end_sign}; causal_checks.md repeats the charge with a 10x poorer and a "
        "10x better glass and a 10x more conductive NMC. Its size is bounded by the ohmic drop "
        f"across the whole electrode at {j_txt}, j L / sigma_ion = "
        f"{1e3 * diag['ohmic_drop_ion_V']:.0f} mV, i.e. "
        f"{diag['kpfm_beta'] * diag['ohmic_drop_ion_V']:.2f} V of V_CPD' at most, and "
        f"{survives}. {keep}")
    # -- (4) C-AFM currents
    ratio_c = agg["cafm_low_to_high_r_current_ratio"]
    cafm = (
        "Low-resistance particles give larger C-AFM currents: C-AFM and SSRM share one tip "
        "contact model and one bias, so the current is bias / (tip + network + instrument "
        "resistance); a low-resistance path gives a large current by construction of the "
        "physics, not by a separate fit. How much larger depends on the spread of the "
        f"readings: the two lowest-reading NMC of a window carry {ratio_c['median']:.3g}x the "
        f"current of the two highest-reading ones at {sp.bias_V:g} V (median over "
        f"{ratio_c['n']} windows; range {ratio_c['min']:.2g}-{ratio_c['max']:.2g}x). A "
        "window's high-resistance particle (cut off by the "
        "milling, or point-contact-limited) carries next to no current, which makes the "
        "paper's \"completely different\" curves; between connected particles the ratio stays "
        "small, since the tip term, common to all, dominates (the SSRM reading is bias / "
        "current, so a 1e8 ohm particle beside a 1e9 ohm one carries 10x the current).")
    return [high, ssrm, grad, cafm]


def seeds_and_windows(base: Params, quick: bool, seeds: list[int] | None,
                      windows: int | None) -> tuple[list[int], int]:
    """The packing seeds and cross-sections per seed of a run: the preset's seed (quick) or three
    consecutive seeds, and 2 (quick) or 3 windows, unless given.  Raises InvalidParameters for
    an empty seed list or fewer than one window (checked before anything is written)."""
    if seeds is None:
        seeds = [base.structure.seed] if quick else [base.structure.seed + k for k in range(3)]
    if len(seeds) == 0:
        raise InvalidParameters("--seeds: give at least one packing seed")
    twice = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
    if twice:  # the same electrode twice would be pooled as two, narrowing the spreads
        raise InvalidParameters(f"--seeds: seed {twice[0]} given twice")
    windows = (2 if quick else 3) if windows is None else windows
    if windows < 1:
        raise InvalidParameters(f"--windows: must be >= 1, got {windows}")
    for s in seeds:  # validated like structure.seed, before anything is written
        try:
            base.replace(structure={"seed": int(s)})
        except InvalidParameters as exc:
            raise InvalidParameters(f"--seeds: {exc}") from None
    return list(seeds), int(windows)


#: ``spm`` keys the experiment sets for each window itself (a change to them is refused)
PER_WINDOW_SPM_KEYS = ("plane_position_m", "seed")


def preset_variant(quick: bool, overrides: dict[str, dict[str, Any]] | None = None) -> Params:
    """The preset (quick or full) with ``overrides`` applied, validated; refuses the keys the
    experiment sets itself for each window (``spm.plane_position_m``, ``spm.seed``)."""
    base = preset_otoyama2020(quick)
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    # the experiment places the sections and seeds the maps' noise itself: refuse, not ignore
    for key, instead in zip(PER_WINDOW_SPM_KEYS, ("--windows (evenly spaced planes)",
                                                  "--seeds (the maps' noise follows the packing "
                                                  "seed)")):
        if key in overrides.get("spm", {}):
            raise InvalidParameters(f"spm.{key}: set by the experiment for each window; use "
                                    f"{instead}")
    return base.replace(**overrides) if overrides else base


def run_otoyama2020(out_dir: str | Path, *, quick: bool = False, seeds: list[int] | None = None,
                    windows: int | None = None, quiet: bool = True,
                    overrides: dict[str, dict[str, Any]] | None = None,
                    figures: bool = True) -> dict[str, Any]:
    """Run the reference experiment; write figures, ``report.md`` and ``report.json``.

    Parameters
    ----------
    out_dir : path
        Output folder (created).
    quick : bool
        Small box, one seed, two windows, 128^2 pixels: the CI mode (< 2 min on 2 cores).
    seeds : list of int, optional
        Packing seeds (default: 3 seeds, or 1 in quick mode).
    windows : int, optional
        Cross-sections per seed at evenly spaced planes (default 3, quick 2).
    overrides : dict, optional
        Changes to the preset, ``{section: {key: value}}`` (validated before anything is
        written); recorded in the report, whose rows then compare a variant, not the default
        set, with the paper.
    figures : bool
        Draw the figures (False: only ``report.md`` and ``report.json``, e.g. in sweeps).

    Returns
    -------
    dict
        The report (also written as JSON).
    """
    from esim import __version__
    from esim.charge import charge
    from esim.io.atomic import atomic_write_text
    from esim.packing import pack

    check_output_dir(out_dir, "--output", marker="report.json",  # before any work
                     files=("report.json", "report.md", *REPRODUCE_FIGURES))
    t0 = time.perf_counter()
    base = preset_variant(quick, overrides)
    seeds, windows = seeds_and_windows(base, quick, seeds, windows)
    spacing = base.structure.box_y_m / windows  # between the evenly spaced section planes
    if spacing < base.structure.nmc_d50_m:
        log.warning("otoyama2020: %d windows per seed put the planes %.2g um apart, closer than "
                    "the NMC diameter (%.2g um): neighbouring windows cut the same particles, so "
                    "the spreads and pooled counts are not over independent windows", windows,
                    spacing * 1e6, base.structure.nmc_d50_m * 1e6)
    out = Path(out_dir)
    targets = load_targets()
    results: list[WindowResult] = []
    charges = []
    packed: list[dict[str, float]] = []
    first = None
    for seed in seeds:
        params = base.replace(structure={"seed": int(seed)})
        log.info("otoyama2020: packing seed %d", seed)
        pk = pack(params, quiet=quiet)
        packed.append(_electrode_numbers(pk, params, targets))
        log.info("otoyama2020: charging %d particles", pk.n_particles)
        chg = charge(pk, params, quiet=quiet)
        charges.append(chg)
        ly = pk.box_m[1]
        for w in range(windows):
            plane = ly * (w + 0.5) / windows
            res, pristine, charged = _analyse_window(pk, params, chg, plane, seed, quick)
            results.append(res)
            if first is None:
                first = (pk, chg, pristine, charged, res)
    keys = results[0].numbers.keys()
    agg = {k: _spread([r.numbers[k] for r in results]) for k in keys}
    c0 = charges[0]
    charge_nums = {
        "capacity_mAh_per_g": float(np.mean([c.capacity_at_end_of_charge_mAh_per_g
                                             for c in charges])),
        "ocv_after_rest_V_vs_Li": float(np.mean([c.ocv_after_rest_V_vs_Li for c in charges])),
        "ocv_after_rest_V_vs_InLi": float(np.mean([c.ocv_after_rest_V_vs_InLi for c in charges])),
        "unreacted_nmc_fraction": float(np.mean([c.unreacted_nmc_fraction for c in charges])),
        "rest_time_s": float(json.loads(c0.charge_params_json).get("rest_time_s", float("nan")))
        if c0.charge_params_json else float("nan"),
    }
    seed_numbers = [{"capacity_mAh_per_g": float(c.capacity_at_end_of_charge_mAh_per_g),
                     "ocv_after_rest_V_vs_InLi": float(c.ocv_after_rest_V_vs_InLi), **q}
                    for c, q in zip(charges, packed, strict=True)]
    rows = _compare(agg, charge_nums, targets, [r.numbers for r in results], seed_numbers)
    diag = _diagnostics(first[0], base.replace(structure={"seed": int(seeds[0])}), first[1])
    report = {"esim_version": __version__, "quick": quick, "seeds": [int(s) for s in seeds],
              "n_windows": len(results), "window_spacing_m": spacing,
              "nmc_d50_m": base.structure.nmc_d50_m, "elapsed_s": time.perf_counter() - t0,
              "rows": rows, "summary": _summary(rows), "inputs": _inputs(base, targets, packed),
              "electrode": packed,
              "aggregate": agg, "charge": charge_nums,
              "windows": [{"seed": r.seed, "plane_position_m": r.plane_position_m,
                           "numbers": r.numbers, "particles": r.rows} for r in results],
              "overrides": overrides,
              "diagnostics": diag,
              "explanations": _explanations(agg, charge_nums, diag, rows, base,
                                            [p for r in results for p in r.rows])}
    # Every file is drawn in a staging folder inside ``out`` and moved in at the end, the report
    # last: an interrupted run leaves the earlier run's files as they were, not half replaced
    # (figures of one run beside the report of another).
    out.mkdir(parents=True, exist_ok=True)
    for left in out.glob(".reproduce-staging-*"):  # of a run killed outright (SIGKILL)
        shutil.rmtree(left, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=".reproduce-staging-", dir=out))
    try:
        if figures:
            _figures(stage, first, len(results))
        report["elapsed_s"] = time.perf_counter() - t0  # the whole run, figures included
        atomic_write_text(stage / "report.json", json.dumps(
            report, indent=1, default=float, allow_nan=True).replace("NaN", "null"))
        atomic_write_text(stage / "report.md", _markdown(report))
        # an earlier run's figures that this run did not draw (figures off, or one that failed
        # to draw and was logged) would stand beside a report they do not belong to
        stale = [f for f in REPRODUCE_FIGURES if (out / f).is_file()
                 and not (stage / f).is_file()]
        for name in stale:
            (out / name).unlink()
        drawn = sorted(f.name for f in stage.iterdir() if not f.name.startswith("report."))
        for name in (*drawn, "report.md", "report.json"):
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report


def _cluster_labels(numbers, r_ohm, v_V, tol_decades: float, tol_V: float
                    ) -> list[tuple[str, float, float]]:
    """One label per cluster of points (Fig. 5e): particles whose resistance is within
    ``tol_decades`` and whose V_CPD' is within ``tol_V`` of a cluster's first point share a
    label ("01-03, 07"), placed at that point, so that numbers of coinciding points do not
    overprint.  Points with a non-finite coordinate get no label."""
    pts = [(n, math.log10(r), v) for n, r, v in zip(numbers, r_ohm, v_V, strict=True)
           if np.isfinite(r) and r > 0 and np.isfinite(v)]
    clusters: list[list] = []
    for n, lr, v in sorted(pts, key=lambda t: (t[1], t[2])):
        for c in clusters:
            if abs(lr - c[1]) <= tol_decades and abs(v - c[2]) <= tol_V:
                c[0].append(n)
                break
        else:
            clusters.append([[n], lr, v])
    out = []
    for ns, lr, v in clusters:
        ns = sorted(ns)
        runs, start = [], ns[0]
        for a, b in zip(ns, ns[1:] + [None]):
            if b != a + 1:
                runs.append(f"{start:02d}" if a == start else f"{start:02d}-{a:02d}")
                start = b
        out.append((", ".join(runs), 10.0 ** lr, v))
    return out


#: The figures ``esim reproduce otoyama2020`` writes
REPRODUCE_FIGURES = ("fig2_pristine_maps.png", "fig3_charged_maps.png", "fig4b_iv_pristine.png",
                     "fig4d_iv_charged.png", "fig5ef_particles.png", "figS1_charge_curve.png",
                     "figS4_position.png")


def _figures(out: Path, first, n_windows: int = 1) -> None:
    """Figures 2, 3, 4, 5e, 5f, S1 and S4 of the paper, from the first seed's first window."""
    from esim.plot import save_figure

    pk, chg, pristine, charged, res = first
    # the particles' numbers (01 = collector side) on every figure that shows them
    labels = {int(r["particle"]): f"{r['number']:02d}" for r in res.rows}
    pristine.plot(out / "fig2_pristine_maps.png", numbers=labels, iv_prefix="a")
    charged.plot(out / "fig3_charged_maps.png", numbers=labels, iv_prefix="c")
    pristine.plot_iv(out / "fig4b_iv_pristine.png", "(b) pristine, NMC and SE", numbers=labels,
                     prefix="a")
    charged.plot_iv(out / "fig4d_iv_charged.png",
                    "(d) after charge, lowest- and highest-resistance NMC", numbers=labels,
                    prefix="c")
    try:
        from esim.charge import plot_charge

        save_figure(plot_charge(chg, pk), out / "figS1_charge_curve.png")
    except Exception as exc:  # a figure must not lose the report; say so in the log
        log.warning("charge figure failed: %s", exc)
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    rows = res.rows
    num = [r["number"] for r in rows]
    rb = [r["ssrm_before_ohm"] for r in rows]
    ra = [r["ssrm_after_ohm"] for r in rows]
    vb = [r["vcpd_prime_before_V"] for r in rows]
    va = [r["vcpd_prime_after_V"] for r in rows]
    cls = np.array([r["connection_class"] for r in rows], dtype=np.int64)
    cut = cls == CLASS_CUT_OFF
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots(1, 2)
    ax[0].scatter(rb, vb, marker="o", color="k", label="before charge")
    ra_a, va_a = np.asarray(ra, float), np.asarray(va, float)
    ax[0].scatter(ra_a[~cut], va_a[~cut], marker="s", color="tab:red", label="after charge")
    if cut.any():
        ax[0].scatter(ra_a[cut], va_a[cut], marker="s", facecolors="none",
                      edgecolors="tab:red", label="after charge, cut off by the milling")
    ax[0].set_xscale("log")
    # whole decades, as in the paper's panel, so that clustered points are not pressed to an edge
    r_all = np.asarray(ra + rb, float)
    r_all = r_all[np.isfinite(r_all) & (r_all > 0)]
    lo, hi = (10.0 ** np.floor(np.log10(r_all.min())) / 10.0,
              10.0 ** np.ceil(np.log10(r_all.max())) * 10.0) if r_all.size else (1e6, 1e10)
    v_all = np.asarray(va + vb, float)
    v_span = float(np.ptp(v_all[np.isfinite(v_all)])) if np.isfinite(v_all).any() else 1.0
    placed: list[tuple[float, float, int]] = []  # (log10 r, V, vertical offset in points)
    tol_r, tol_v = 0.03 * np.log10(hi / lo), 0.03 * max(v_span, 1e-3)
    for text, r, v in (_cluster_labels(num, ra, va, tol_r, tol_v)
                       + _cluster_labels(num, rb, vb, tol_r, tol_v)):  # after, then before
        # a label runs ~0.6 decades to the right: step it up above a neighbour's label; a
        # leader line ties every label to its own point, however far it was stepped
        dy = 10
        while any(abs(math.log10(r) - x) < 0.6 and abs(v - y) < 0.1 * max(v_span, 1e-3)
                  and d == dy for x, y, d in placed):
            dy += 10
        placed.append((math.log10(r), v, dy))
        ax[0].annotate(text, (r, v), fontsize=7, xytext=(12, dy), textcoords="offset points",
                       va="center", arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4",
                                                "shrinkA": 0, "shrinkB": 3})
    for a in ax:
        a.xaxis.set_minor_formatter(NullFormatter())
    ax[0].set_xlim(lo, hi)
    ax[0].set_ymargin(0.15)  # room above the top cluster for its labels (10-30 pt over it)
    ax[0].axvline(HIGH_R_OHM, color="grey", ls=":", lw=0.8)
    ax[0].set_xlabel("resistance, SSRM histogram peak (Ω)")
    ax[0].set_ylabel("V_CPD', KPFM histogram peak (V)")
    ax[0].set_title("(e) per NMC particle (cf. Otoyama 2020 Fig. 5e)")
    ax[0].legend(fontsize=8)
    x = np.arange(len(num))
    ax[1].bar(x - 0.2, rb, width=0.4, color="k", label="before")
    ax[1].bar(x + 0.2, ra, width=0.4, color="tab:red", label="after")
    ax[1].set_yscale("log")
    ax[1].set_ylim(lo, hi)  # room above the bars for the legend
    ax[1].yaxis.set_minor_formatter(NullFormatter())
    ax[1].axhline(HIGH_R_OHM, color="grey", ls=":", lw=0.8)
    # which high-reading particles the milling cut off, which one contact limits
    tags = {CLASS_CUT_OFF: "C", CLASS_POINT_CONTACT: "P", CLASS_ISOLATED: "I"}
    for xi, k, r in zip(x, cls, ra):
        if int(k) in tags and np.isfinite(r):
            ax[1].text(xi + 0.2, r * 1.15, tags[int(k)], ha="center", va="bottom", fontsize=7)
    if any(int(k) in tags for k in cls):
        ax[1].text(0.01, 0.98, "C: cut off by the milling, P: point-contact-limited, "
                   "I: isolated", transform=ax[1].transAxes, ha="left", va="top", fontsize=7)
    ax[1].set_xticks(x, [f"{n:02d}" for n in num])
    ax[1].set_xlabel("NMC particle (01 = current-collector side)")
    ax[1].set_ylabel("resistance (Ω)")
    ax[1].set_title("(f) resistance per particle")
    ax[1].legend(fontsize=8, ncols=2, loc="upper right")
    save_figure(fig, out / "fig5ef_particles.png")
    z = np.array([r["z_m"] for r in rows]) * 1e6
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    ax = fig.subplots(1, 3)
    fit = _vcpd_fit_mask(cls, np.asarray(ra, float))
    win = f"window 1 of {n_windows}"
    spans = [float(np.ptp(v[np.isfinite(v)])) for v in (np.asarray(vb, float), va_a)
             if np.isfinite(v).any()]
    half = max([0.15] + [0.5 * x + 0.02 for x in spans])  # V, half the height of (a) and (b)
    spans_v: dict[Any, tuple[float, float]] = {}  # each panel's (lowest, highest) drawn value
    for a_, vals, title, col in ((ax[0], np.asarray(vb, float), "(a) before charge", "k"),
                                 (ax[1], va_a, "(b) after charge", "tab:red")):
        a_.scatter(z[fit], vals[fit], color=col, label="particle")
        if (~fit).any():  # as the paper left its particles 03 and 08 out of the gradient
            a_.scatter(z[~fit], vals[~fit], facecolors="none", edgecolors=col,
                       label=">= 5e8 Ω after charge (left out of the fit)")
        for zi, vi, n in zip(z, vals, num):  # the particles' numbers, as on the other figures
            if np.isfinite(vi):
                a_.annotate(f"{n:02d}", (zi, vi), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ok = fit & np.isfinite(vals)
        fin = vals[np.isfinite(vals)]
        if fin.size:
            spans_v[a_] = (float(fin.min()), float(fin.max()))
        if ok.sum() >= 2:  # the fitted line behind the gradient, over the fitted particles
            k, c = np.polyfit(z[ok], vals[ok], 1)
            zz = np.array([z[ok].min(), z[ok].max()])
            a_.plot(zz, k * zz + c, color=col, lw=1, ls="--",
                    label=f"linear fit: CC − SE {-k * (zz[1] - zz[0]):+.3f} V")
            if a_ is ax[1]:  # the paper's +0.2 V over the same span, from the fit's SE end
                ref = [k * zz[1] + c + 0.2, k * zz[1] + c]
                a_.plot(zz, ref, color="0.5", lw=1, ls=":",
                        label="paper: +0.2 V, CC side higher")
                lo_v, hi_v = spans_v.get(a_, (ref[1], ref[0]))
                spans_v[a_] = (min(lo_v, ref[1]), max(hi_v, ref[0]))
        a_.set_xlabel("depth z of the particle (µm, 0 = current collector)")
        a_.set_ylabel("V_CPD' (V)")
        a_.set_title(f"(S4{title[1]}) V_CPD' {title[4:]}, {win}", fontsize=10, loc="left")
        a_.legend(fontsize=7)
    # one height for both panels (equal V scales), each centred on what it draws
    half = max([half] + [0.5 * (hi_v - lo_v) + 0.03 for lo_v, hi_v in spans_v.values()])
    for a_, (lo_v, hi_v) in spans_v.items():
        mid = 0.5 * (lo_v + hi_v)
        a_.set_ylim(mid - half, mid + half)
    ax[2].scatter(z, rb, color="k", label="before charge")
    ax[2].scatter(z[~cut], ra_a[~cut], color="tab:red", label="after charge")
    if cut.any():
        ax[2].scatter(z[cut], ra_a[cut], facecolors="none", edgecolors="tab:red", s=60,
                      label="after charge, cut off by the milling")
    for zi, r, n in zip(z, ra_a, num):
        if np.isfinite(r):
            ax[2].annotate(f"{n:02d}", (zi, r), fontsize=7, xytext=(3, 3),
                           textcoords="offset points")
    ax[2].set_yscale("log")
    ax[2].set_xlabel("depth z of the particle (µm, 0 = current collector)")
    ax[2].set_ylabel("resistance (Ω)")
    ax[2].set_title(f"(c) resistance vs position, {win}", fontsize=10, loc="left")
    ax[2].legend(fontsize=7)
    fig.suptitle("V_CPD' and resistance against depth (cf. Otoyama 2020 Fig. S4); the report "
                 "gives the gradient's mean over every window", fontsize=10)
    save_figure(fig, out / "figS4_position.png")


EXPERIMENTS = {"otoyama2020": run_otoyama2020}
