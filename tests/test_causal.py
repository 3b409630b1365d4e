"""The causal checks of the reference experiment (quick mode): structure and the physics they
are about -- narrowing the NMC-NMC contacts makes high-resistance particles, widening them, a
broken film or a carbon additive lowers the per-particle resistance."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "experiments" / "otoyama2020" / "causal_checks.py"
    spec = importlib.util.spec_from_file_location("causal_checks", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    out = tmp_path_factory.mktemp("causal")
    assert _script().main(["--quick", "-o", str(out)]) == 0
    return out, json.loads((out / "causal_checks.json").read_text())


def test_structure(causal):
    out, rep = causal
    names = [c["name"] for c in rep["cases"]]
    assert names[0] == "baseline"
    assert {"widened", "film_broken", "carbon"} <= set(names)
    assert any(n.startswith("narrowed_x") for n in names)
    for c in rep["cases"]:
        assert c["n_particles"] >= 5
        for key in ("ssrm_after_ohm", "network_ohm", "cafm_after_A"):
            assert set(c[key]) >= {"median", "p90", "max"}
        assert len(c["per_particle_ssrm_after_ohm"]) == c["n_particles"]
    md = (out / "causal_checks.md").read_text()
    assert md.count("\n| ") >= len(names) + 2
    for png in ("causal_checks.png", "causal_gradient_vs_rest.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    sens = rep["sensitivity"]
    assert {r["variant"] for r in sens["tip"]} >= {"tip 10 nm (default)", "tip 100 nm"}
    assert {r["rest_time_s"] for r in sens["gradient"]} >= {0.0, 3600.0}


def test_point_contacts_cause_high_resistance(causal):
    _, rep = causal
    c = {x["name"]: x for x in rep["cases"]}
    base = c["baseline"]
    narrowed = [x for n, x in c.items() if n.startswith("narrowed_x")]
    # the dose side: point contacts make high-resistance particles
    for x in narrowed:
        assert x["high_r_fraction"] > base["high_r_fraction"]
        assert x["network_ohm"]["median"] > 3 * base["network_ohm"]["median"]
        assert x["cafm_after_A"]["median"] < base["cafm_after_A"]["median"]
    # the cure side: wider contacts, no film, carbon -- never more high-R particles, and a
    # lower per-particle resistance distribution (the largest can stay: a particle the milling
    # cut off from the NMC keeps its path through the glass, whatever the NMC contacts)
    for name in ("widened", "film_broken", "carbon"):
        x = c[name]
        assert x["high_r_fraction"] <= base["high_r_fraction"]
        assert x["network_ohm"]["median"] < base["network_ohm"]["median"]
        assert x["network_ohm"]["max"] <= base["network_ohm"]["max"]
        assert x["ssrm_after_ohm"]["median"] <= base["ssrm_after_ohm"]["median"]
        assert x["cafm_after_A"]["median"] >= base["cafm_after_A"]["median"]
    assert c["carbon"]["network_ohm"]["median"] < base["network_ohm"]["median"] / 10
    # the readings' floor: with the network bypassed (carbon), the tip and barrier remain
    assert c["carbon"]["ssrm_after_ohm"]["median"] > np.median(
        c["carbon"]["per_particle_network_ohm"])


def test_milling_cuts_off_charged_particles(causal):
    """The milling's share: keeping every contact of the cut particles (a counterfactual) leaves
    fewer high-resistance particles; a film-free path cannot reconnect a particle the milling
    cut off (the same contacts remain), wider contacts only where one now reaches behind the
    face (never more cut off), carbon in the glass can."""
    _, rep = causal
    c = {x["name"]: x for x in rep["cases"]}
    base, unmilled = c["baseline"], c["contacts_unmilled"]
    assert base["high_r_cut_off_count"] > 0
    assert unmilled["high_r_cut_off_count"] < base["high_r_cut_off_count"]
    assert unmilled["high_r_fraction"] < base["high_r_fraction"]
    assert unmilled["cut_off_class_fraction"] < base["cut_off_class_fraction"]
    assert c["film_broken"]["high_r_cut_off_count"] == base["high_r_cut_off_count"]
    assert c["widened"]["cut_off_class_fraction"] <= base["cut_off_class_fraction"]
    assert c["carbon"]["high_r_cut_off_count"] < base["high_r_cut_off_count"]
    # every point-contact-limited high reading names its limiting contact (test_spm checks
    # which contact that is); the counterfactual that keeps every contact whole cuts none
    for x in rep["cases"]:
        radii = x["high_r_point_contact_radii_m"]
        assert len(radii) == x["high_r_point_contact_count"]
        assert 0 <= x["high_r_point_contact_milled_count"] <= len(radii)
        assert all(a > 0 for a in radii)
    assert unmilled["high_r_point_contact_milled_count"] == 0
    # narrowing every NMC-NMC contact raises readings through several narrow contacts in series
    # (none dominates, so they are "other", not point-contact-limited): more high readings,
    # the cut-off ones unchanged
    nar = c["narrowed_x0.2"]
    assert nar["high_r_count"] > base["high_r_count"]
    assert nar["high_r_cut_off_count"] == base["high_r_cut_off_count"]


def test_summary_lists_the_limiting_contacts_of_the_point_contact_limited_high_readings():
    """The radii listed are those of the high, point-contact-limited particles (as milled), and
    the milled count is how many of those contacts the face cut (kept fraction < 1)."""
    from esim.causal import _summarise

    def win(high, pc, cut, radius_m, kept):
        n = len(high)
        return {"ssrm_after_ohm": np.where(high, 2e9, 1e8), "network_ohm": np.full(n, 5e7),
                "tip_ohm": np.full(n, 9e7), "cafm_after_A": np.full(n, 1e-8),
                "point_contact": np.array(pc), "cut_off": np.array(cut), "high": np.array(high),
                "bottleneck_radius_m": np.array(radius_m), "bottleneck_kept_fraction":
                np.array(kept), "n_isolated": 0,
                "numbers": {"kpfm_nmc_after_V": 3.1, "kpfm_se_after_V": 2.8,
                            "ssrm_se_after_ohm": 2e9, "vcpd_gradient_cc_minus_se_V": 0.01}}

    wins = [win([True, True, False, True], [True, False, True, False],
                [False, True, False, False], [20e-9, 90e-9, 12e-9, 15e-9], [1.0, 1.0, 1.0, 1.0]),
            win([True, False], [True, False], [False, False], [5e-9, 80e-9], [2e-4, 1.0])]
    s = _summarise("t", "synthetic", wins, [{"capacity_mAh_per_g": 164.0,
                                            "unreacted_nmc_fraction": 0.0, "message": ""}])
    assert s["high_r_count"] == 4 and s["high_r_cut_off_count"] == 1
    assert s["high_r_point_contact_count"] == 2  # particle 0 of each window; not the low one
    assert s["high_r_point_contact_radii_m"] == [5e-9, 20e-9]
    assert s["high_r_point_contact_milled_count"] == 1


def test_gradient_relaxes_with_rest(causal):
    _, rep = causal
    # on the model's own V_CPD' (no blur, no noise: the maps' noise floor is a few 0.01 V): a
    # 10x poorer glass leaves an ionic (SE-side-first, CC side higher) gradient at the end of
    # the charge (quick mode: +0.031 V, against +0.004 V with the default glass) that the 1 h
    # rest removes (4e-6 V)
    g = {(r["variant"], r["rest_time_s"]): r["vcpd_gradient_truth_V"]
         for r in rep["sensitivity"]["gradient"]}
    assert g[("SE sigma_ion / 10", 0.0)] > 0.015
    assert g[("SE sigma_ion / 10", 0.0)] > 3 * abs(g[("default", 0.0)])
    for variant in ("default", "SE sigma_ion / 10"):
        assert abs(g[(variant, 3600.0)]) < 1e-3


def test_bad_windows_exit_2(tmp_path, capsys):
    assert _script().main(["--quick", "--windows", "0", "-o", str(tmp_path)]) == 2
    assert "windows" in capsys.readouterr().err
