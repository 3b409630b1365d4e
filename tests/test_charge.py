"""Physics tests of the galvanostatic charge (esim.charge) and the NMC111 OCV curve (esim.ocv).

Each test runs on a small packing (25 x 25 x 20 um, ~330 particles): limits the physics
settles (uniform charge, isolated particles, reaction fronts), conservation, time-step
convergence, a finite-difference twin of the Jacobian, and bad input.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.sparse as sp

from esim import charge as C
from esim.charge import ChargeIncomplete, ChargeResult, charge, params_with_charge
from esim.errors import InvalidParameters, NotPercolating
from esim.ocv import TYPICAL_HALFCELL_U, TYPICAL_HALFCELL_X, nmc_ocv, x_at_ocv
from esim.packing import PHASE_NMC, PHASE_SE, WALL_CC, WALL_SEP, pack
from esim.params import Params

SMALL = {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
         "sample_points": 50000}

# conductors and kinetics so good that the electrode charges uniformly
FAST_MATERIALS = {"nmc_sigma_e_pristine_S_per_m": 1e-2, "nmc_sigma_e_x010_S_per_m": 1e4,
                  "nmc_sigma_e_x030_S_per_m": 1e4, "nmc_sigma_e_x050_S_per_m": 1e4,
                  "nmc_sigma_e_x075_S_per_m": 1e4, "film_rho_e_thickness_ohm_m2": 0.0,
                  "se_sigma_ion_S_per_m": 1e3}


@pytest.fixture(scope="module")
def small():
    p = Params().replace(structure=SMALL)
    return pack(p)


def _params(packing, materials=None, **charge_kw):
    p = packing.params
    if materials:
        p = p.replace(materials=materials)
    return params_with_charge(p, **charge_kw)


def _drop_contacts(packing, particle, *, keep_phase):
    """The packing with every contact of ``particle`` to ``keep_phase``'s opposite... removed.

    Removes the particle's contacts with particles of its own phase and its wall contacts
    (``keep_phase`` is the phase whose contacts survive)."""
    c = packing.contacts
    other = np.where(c[:, 0] == particle, c[:, 1], np.where(c[:, 1] == particle, c[:, 0], -1))
    involved = other >= 0
    drop = involved & (packing.phase[np.maximum(other, 0)] != keep_phase)
    keep = ~drop
    wkeep = packing.wall_particle != particle
    return dataclasses.replace(
        packing, contacts=c[keep], contact_gap_m=packing.contact_gap_m[keep],
        contact_radius_m=packing.contact_radius_m[keep],
        contact_force=packing.contact_force[keep],
        wall_particle=packing.wall_particle[wkeep], wall_side=packing.wall_side[wkeep],
        wall_gap_m=packing.wall_gap_m[wkeep],
        wall_contact_radius_m=packing.wall_contact_radius_m[wkeep],
        wall_force=packing.wall_force[wkeep])


# ----------------------------------------------------------------------------------------------
# OCV curve
# ----------------------------------------------------------------------------------------------


def test_ocv_passes_through_table_and_is_monotone():
    raw = params_with_charge(None, ocv_x_scale=1.0)
    u, du = nmc_ocv(np.asarray(TYPICAL_HALFCELL_X), raw)
    np.testing.assert_allclose(u, TYPICAL_HALFCELL_U, atol=1e-12)
    x = np.linspace(-0.2, 1.2, 2001)
    u, du = nmc_ocv(x)
    assert np.all(np.diff(u) > 0) and np.all(du > 0)
    # the number: the typical table gives ~4.13 V at x = 0.59
    assert abs(float(nmc_ocv(0.59, raw)[0]) - 4.13) < 0.01
    assert abs(float(nmc_ocv(x_at_ocv(4.36))[0]) - 4.36) < 1e-9
    # the calibrated scale only stretches x
    k = params_with_charge(None).charge.ocv_x_scale
    np.testing.assert_allclose(nmc_ocv(x / k)[0], nmc_ocv(x, raw)[0], atol=1e-12)
    np.testing.assert_allclose(nmc_ocv(x / k)[1], k * nmc_ocv(x, raw)[1], rtol=1e-12)
    # slope against a centred difference
    h = 1e-6
    xs = np.array([0.05, 0.2, 0.45, 0.62, 0.75])
    fd = (nmc_ocv(xs + h)[0] - nmc_ocv(xs - h)[0]) / (2 * h)
    np.testing.assert_allclose(nmc_ocv(xs)[1], fd, rtol=1e-5)


def test_ocv_custom_table_and_errors():
    p = params_with_charge(None, ocv_curve="table", ocv_table="0:3.5, 0.5:4.0, 1:4.5",
                           ocv_x_scale=1.0)
    np.testing.assert_allclose(nmc_ocv(0.25, p)[0], 3.75, atol=1e-12)  # PCHIP of a line
    for bad in ("0:3.5, 0.5:4.0", "0:3.5, 0.5:3.4, 1:4", "a:b, 1:2, 2:3"):
        with pytest.raises(InvalidParameters, match="ocv_table"):
            nmc_ocv(0.1, params_with_charge(None, ocv_curve="table", ocv_table=bad))


# ----------------------------------------------------------------------------------------------
# Linear algebra: the Jacobian against finite differences (naive twin), Schur symmetry
# ----------------------------------------------------------------------------------------------


def _newton_state(packing, shells):
    """A stepper mid-step on ``packing`` (``shells`` radial shells, a series interface ASR)
    and a Newton iterate near its solution: ``(M, st, u, rng)``, the generator to go on."""
    kw = {"solid_diffusion": "shells", "n_shells": shells} if shells > 1 else {}
    p = _params(packing, interface_asr_ohm_m2=2e-3, **kw)
    M = C._Model(packing, p)
    st = C._Stepper(M)
    rng = np.random.default_rng(0)
    x_old = rng.uniform(0.1, 0.5, M.nx)
    st.begin_step(x_old, 50.0, M.I_app)
    u = np.zeros(M.n_u)
    u[M.ox:] = x_old + rng.uniform(0, 0.01, M.nx)
    U = nmc_ocv(u[M.ox:].reshape(M.ne, M.ns)[:, -1], p)[0]
    u[:M.ne] = U + rng.normal(0, 2e-3, M.ne)
    u[M.oV] = float(np.mean(U))
    return M, st, u, rng


@pytest.mark.parametrize("shells", [1, 3])
def test_jacobian_matches_finite_differences(small, shells):
    M, st, u, rng = _newton_state(small, shells)
    u[M.oi:M.ox] = rng.normal(0, 2e-3, M.ni)
    R0, _, (S, tri, B, Cm) = st.residual(u, True)
    diag, off, piv = tri
    A = (S + B @ sp.diags(1.0 / piv[:, -1]) @ Cm).toarray()
    ns = M.ns
    surf = np.arange(M.ne) * ns + ns - 1
    Bf = np.zeros((M.ox, M.nx))
    Bf[:, surf] = B.toarray()
    Cf = np.zeros((M.nx, M.ox))
    Cf[surf] = Cm.toarray()
    Dx = np.zeros((M.nx, M.nx))
    for q in range(M.ne):
        sl = slice(q * ns, (q + 1) * ns)
        Dx[sl, sl] = np.diag(diag[q]) + np.diag(off[q], 1) + np.diag(off[q], -1)
    J = np.block([[A, Bf], [Cf, Dx]])
    assert abs(S - S.T).max() <= 1e-12 * abs(S).max()  # SPD Schur complement
    # the Schur route of a Newton step equals a dense solve of the full system
    rx = R0[M.ox:].reshape(M.ne, ns)
    dy = np.linalg.solve(S.toarray(), -R0[:M.ox] + B @ st.shell_solve(tri, rx)[:, -1])
    rr = -rx.copy()
    rr[:, -1] -= Cm @ dy
    du = np.concatenate([dy, st.shell_solve(tri, rr).ravel()])
    np.testing.assert_allclose(du, np.linalg.solve(J, -R0), rtol=1e-6,
                               atol=1e-9 * np.abs(du).max())
    cols = rng.choice(M.n_u, 40, replace=False)
    for j in cols:
        h = 1e-7 if j < M.ox else 1e-8
        up, um = u.copy(), u.copy()
        up[j] += h
        um[j] -= h
        fd = (st.residual(up, False)[0] - st.residual(um, False)[0]) / (2 * h)
        np.testing.assert_allclose(J[:, j], fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max() + 1e-30)


# ----------------------------------------------------------------------------------------------
# Physics limits
# ----------------------------------------------------------------------------------------------


def test_uniform_limit_follows_ocv_plus_ohmic_drop(small):
    p = _params(small, FAST_MATERIALS, exchange_current_density_A_per_m2=1e4, initial_x=0.1,
                capacity_limit_mAh_per_g=100.0, snapshot_capacity_mAh_per_g=40.0,
                rest_time_s=0.0)
    r = charge(small, p)
    assert r.stop_reason == "capacity_limit" and not r.partial
    react = r.reacting
    for s in range(r.snapshot_time_s.size):
        xs = r.x[s, react]
        assert xs.std() < 1e-4 * xs.mean()
    # V = U(x_mean) + I R_sep (all other drops negligible in this limit)
    i_app = p.charge.current_density_A_per_m2
    mass = r.particle_mass_kg
    q = p.charge.nmc_theoretical_capacity_mAh_per_g
    x_mean_react = 0.1 + r.capacity_mAh_per_g / q * mass.sum() / mass[react].sum()
    expected = nmc_ocv(x_mean_react, p)[0] + i_app * r.separator_resistance_ohm_m2
    sel = r.time_s > 0
    np.testing.assert_allclose(r.voltage_V_vs_Li[sel], expected[sel], atol=2e-4)
    assert abs(r.separator_resistance_ohm_m2 - 0.34e-3 / 3.1e-2) < 1e-9


def test_isolated_nmc_never_changes_soc(small):
    M = C._Model(small, small.params)
    # an NMC particle that reacts: cut its electron paths (NMC contacts, collector)
    target = int(M.k_n[0])
    cut = _drop_contacts(small, target, keep_phase=PHASE_SE)
    r = charge(cut, _params(cut, capacity_limit_mAh_per_g=60.0, rest_time_s=0.0))
    assert not r.electron_active[target]
    assert np.all(r.x[:, target] == 0.0)
    assert np.all(np.isnan(r.phi_e_V[:, target]))
    assert np.all(r.reaction_current_A[:, target] == 0.0)
    assert r.x[-1, r.reacting].mean() > 0.1  # the rest charged


def test_se_without_ionic_path_carries_no_current(small):
    M = C._Model(small, small.params)
    target = int(M.k_s[~M.k_sep][0])  # an SE particle at an active interface
    cut = _drop_contacts(small, target, keep_phase=PHASE_NMC)
    r = charge(cut, _params(cut, capacity_limit_mAh_per_g=30.0, rest_time_s=0.0))
    assert small.phase[target] == PHASE_SE and not r.ion_active[target]
    assert np.all(r.reaction_current_A[:, target] == 0.0)
    assert np.all(np.isnan(r.phi_ion_V[:, target]))


def _front(packing, materials, i0):
    p = _params(packing, materials, cutoff_V_vs_Li=6.0, capacity_limit_mAh_per_g=15.0,
                snapshot_capacity_mAh_per_g=0.0, rest_time_s=0.0,
                exchange_current_density_A_per_m2=i0)
    r = charge(packing, p)
    prof = r.soc_vs_z[-1]
    third = max(1, prof.size // 3)
    return np.nanmean(prof[:third]), np.nanmean(prof[-third:])


def test_poor_electronic_conduction_reacts_near_collector(small):
    poor_e = {**FAST_MATERIALS, "nmc_sigma_e_pristine_S_per_m": 1e-3,
              **{f"nmc_sigma_e_x0{k}_S_per_m": 1e-3 for k in ("10", "30", "50", "75")}}
    near_cc, near_sep = _front(small, poor_e, 1e3)
    assert near_cc > 3 * near_sep


def test_poor_ionic_conduction_reacts_near_separator(small):
    # kinetics slower than the default: with fast kinetics and a glass this poor, uniform NMC
    # particles would carry Li+ across themselves (reduced on one side, oxidised on the
    # other), an artefact of one x per particle (see esim.charge)
    poor_i = {**FAST_MATERIALS, "se_sigma_ion_S_per_m": 1e-5}
    near_cc, near_sep = _front(small, poor_i, 0.64)
    assert near_sep > 3 * near_cc


# ----------------------------------------------------------------------------------------------
# Conservation and convergence
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_small(small):
    return charge(small, _params(small, rest_time_s=600.0))


def test_charge_conservation(full_small, small):
    r = full_small
    assert r.stop_reason == "cutoff"
    assert r.conservation_error < 1e-6
    # independent recount from the stored end state
    p = r.params
    q = p.charge.nmc_theoretical_capacity_mAh_per_g * 3.6e3  # C/kg per unit x
    nmc = small.phase == PHASE_NMC
    end = int(np.flatnonzero(r.snapshot_kind == C.SNAP_END_OF_CHARGE)[0])
    li = np.sum(r.particle_mass_kg[nmc] * q * r.x[end, nmc])
    passed = p.charge.current_density_A_per_m2 * small.box_m[0] * small.box_m[1] * \
        r.time_s[r.phase_code == C.PHASE_CHARGE][-1]
    assert abs(li - passed) / passed < 1e-6
    # the rest moves Li between particles but creates none
    rest = int(np.flatnonzero(r.snapshot_kind == C.SNAP_AFTER_REST)[0])
    li_rest = np.sum(r.particle_mass_kg[nmc] * q * r.x[rest, nmc])
    assert abs(li_rest - li) / li < 1e-6
    # at open circuit after the rest no net current flows
    assert abs(r.reaction_current_A[rest][nmc].sum()) < 1e-6 * passed / r.time_s[-1]
    assert abs(r.voltage_at_end_of_charge_V_vs_Li - 4.4) <= 2e-4
    assert r.ocv_after_rest_V_vs_Li < r.voltage_at_end_of_charge_V_vs_Li
    assert abs(r.ocv_after_rest_V_vs_InLi - (r.ocv_after_rest_V_vs_Li - 0.62)) < 1e-12


def test_halving_time_step_changes_capacity_below_half_a_permille(full_small, small):
    """Time-step convergence of the capacity: halving every step bound changed it by 3e-5
    (2026-11-27; 4x larger bounds: 9e-5), so 5e-4 leaves room for rounding, not for a
    first-order time-stepping error."""
    c = full_small.params.charge
    r2 = charge(small, _params(small, rest_time_s=0.0, dt_max_s=c.dt_max_s / 2,
                               max_dx_per_step=c.max_dx_per_step / 2,
                               dt_initial_s=c.dt_initial_s / 2))
    a, b = full_small.capacity_at_end_of_charge_mAh_per_g, r2.capacity_at_end_of_charge_mAh_per_g
    assert r2.n_steps > 1.5 * (full_small.phase_code == C.PHASE_CHARGE).sum() - 1
    assert abs(a - b) / b < 5e-4


def test_result_roundtrip(full_small, tmp_path):
    r = full_small
    path = r.save(tmp_path / "charged.h5")
    back = ChargeResult.load(path)
    np.testing.assert_array_equal(back.voltage_V_vs_Li, r.voltage_V_vs_Li)
    np.testing.assert_array_equal(back.soc, r.soc)
    assert back.capacity_at_end_of_charge_mAh_per_g == r.capacity_at_end_of_charge_mAh_per_g
    assert back.charge_params_json == r.charge_params_json
    assert "(3, " in repr(r) and "soc=" in repr(r)
    assert set(r.snapshot_kind.tolist()) == {0, 1, 2}
    # the wall-clock time is not content: two runs of the same parameters give the same bytes
    import dataclasses

    other = dataclasses.replace(r, elapsed_s=r.elapsed_s + 12.5)
    assert other.save(tmp_path / "again.h5").read_bytes() == path.read_bytes()
    assert back.elapsed_s == 0.0


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_unreachable_cutoff_keeps_partial_result(small, tmp_path):
    with pytest.raises(ChargeIncomplete, match="max_time_s") as e:
        charge(small, _params(small, max_time_s=2000.0))
    r = e.value.result
    assert r.partial and r.stop_reason == "max_time"
    assert r.time_s[-1] == pytest.approx(2000.0, rel=1e-6)
    assert r.conservation_error < 1e-6
    r.save(tmp_path / "partial.h5")
    assert ChargeResult.load(tmp_path / "partial.h5").partial
    # its figure says where it stopped (it read "0.0 mAh/g at cut-off" and "end of charge")
    import matplotlib.pyplot as plt

    from esim.charge import plot_charge

    fig = plot_charge(r, small)
    a, b, c = fig.axes[:3]  # the colorbar's axes come after them
    q = float(r.capacity_mAh_per_g[-1])
    assert q > 1 and a.get_title() == f"(a) stopped at {q:.1f} mAh/g, before the cut-off [partial]"
    assert "when the charge stopped" in b.get_title()
    labels = [t.get_text() for t in c.get_legend().get_texts()]
    assert any(t.startswith("charge stopped") for t in labels)
    assert not any("end of charge" in t for t in labels)
    plt.close(fig)
    with pytest.raises(ChargeIncomplete, match="exhausted"):
        charge(small, _params(small, cutoff_V_vs_Li=6.0, x_limit=0.5))


def test_newton_failure_in_the_rest_keeps_the_end_of_charge(small, monkeypatch):
    """A failure during the rest must not overwrite the end of the charge: the voltage and
    capacity at the end of the charge are the finished charge's, the last snapshot is a rest
    state (it was tagged "end of charge", with the rest's voltage as the end-of-charge one)."""
    p = _params(small, rest_time_s=3600.0)
    full = charge(small, p)
    orig, n_rest = C._Stepper.newton, [0]

    def newton(self, u0):
        if self.I == 0.0:
            n_rest[0] += 1
            if n_rest[0] > 3:  # let the rest run a few steps, then fail for good
                return None, 1, 1.0
        return orig(self, u0)

    monkeypatch.setattr(C._Stepper, "newton", newton)
    with pytest.raises(ChargeIncomplete, match="during the rest") as e:
        charge(small, p)
    r = e.value.result
    assert r.partial and r.stop_reason == "newton_failed" and math.isnan(r.ocv_after_rest_V_vs_Li)
    charging = r.phase_code == C.PHASE_CHARGE
    assert r.voltage_at_end_of_charge_V_vs_Li == r.voltage_V_vs_Li[charging][-1]
    assert r.voltage_at_end_of_charge_V_vs_Li == pytest.approx(
        full.voltage_at_end_of_charge_V_vs_Li, abs=1e-12)
    assert r.capacity_at_end_of_charge_mAh_per_g == pytest.approx(
        full.capacity_at_end_of_charge_mAh_per_g, rel=1e-12)
    assert r.snapshot_kind.tolist() == [C.SNAP_ONSET, C.SNAP_END_OF_CHARGE, C.SNAP_AFTER_REST]
    assert r.snapshot_time_s[-1] > r.snapshot_time_s[1]
    assert r.voltage_V_vs_Li[-1] < r.voltage_at_end_of_charge_V_vs_Li  # it had relaxed a bit


def test_separator_follows_the_glass_temperature(small):
    """The separator is the same Li3PS4 glass as in the composite: at 60 C its resistance falls
    by the glass's Arrhenius factor (it stayed at its 25 C value while the composite's glass
    warmed, 4.5x too resistive beside it)."""
    from esim.materials import se_sigma_ion

    hot = small.params.replace(materials={"temperature_K": 333.15})
    r25 = C._Model(small, small.params).R_sep
    r60 = C._Model(small, hot).R_sep
    ratio = float(se_sigma_ion(params=hot) / se_sigma_ion(params=small.params))
    assert ratio > 3
    assert r25 / r60 == pytest.approx(ratio, rel=1e-12)
    c = small.params.charge
    area = small.box_m[0] * small.box_m[1]
    assert r25 == pytest.approx(c.separator_thickness_m / (c.separator_sigma_ion_S_per_m * area),
                                rel=1e-12)


def test_interface_area_of_a_particle_stays_within_its_surface(small, monkeypatch):
    """Overlapping caps (SE neighbours crowding an NMC) are scaled so that a particle's
    interfaces add up to at most 4 pi r^2, as esim.effective caps them; caps that fit are
    kept as they are."""
    import esim.effective as E

    base = C._Model(small, small.params)
    real = E.interface_cap_area

    def fat(packing):
        idx, area = real(packing)
        return idx, area * 50.0  # every cap 50x: most particles would exceed their surface

    monkeypatch.setattr(E, "interface_cap_area", fat)
    m = C._Model(small, small.params)
    r = small.radii_m.astype(float)
    tot = np.bincount(m.k_n, weights=m.k_area, minlength=small.n_particles)
    assert (tot <= 4 * np.pi * r**2 * (1 + 1e-12)).all()
    assert np.isclose(tot, 4 * np.pi * r**2, rtol=1e-12).sum() > 0.5 * (tot > 0).sum()
    tot0 = np.bincount(base.k_n, weights=base.k_area, minlength=small.n_particles)
    assert (tot0 < 4 * np.pi * r**2).all()  # the real caps fit: nothing was scaled


def test_impossible_current(small):
    with pytest.raises(ChargeIncomplete, match="too high") as e:
        charge(small, _params(small, current_density_A_per_m2=1e4, dt_min_s=1e-3))
    assert e.value.result.stop_reason in ("impossible_current", "newton_failed")
    assert e.value.result.partial


def test_newton_failure_is_reported(small):
    with pytest.raises(ChargeIncomplete, match="Newton did not converge") as e:
        charge(small, _params(small, newton_max_iterations=2, newton_rtol=1e-15,
                              dt_min_s=0.1))
    assert e.value.result.partial


def test_rejected_options(small):
    with pytest.raises(InvalidParameters, match="charge.current_density"):
        params_with_charge(None, current_density_A_per_m2=-1.0)
    all_se = dataclasses.replace(small, phase=np.full_like(small.phase, PHASE_SE))
    with pytest.raises(NotPercolating, match="no current"):
        charge(all_se, small.params)


def test_diffusion_estimate_justifies_uniform_particles():
    est = C.diffusion_estimate(Params())
    assert est["ratio"] < 0.05
    assert est["surface_excess_x"] < 2e-3


def test_wall_constants():
    assert WALL_CC == 0 and WALL_SEP == 1


def test_default_electrode_reaches_reference_capacity():
    """The reference experiment: default packing at 0.13 mA/cm2 to 4.4 V vs Li gives
    164 mAh/g within 10 % (Otoyama et al. 2020; defaults calibrated on it via ocv_x_scale),
    and the OCV after the rest lies within 30 mV of the paper's 4.36 V vs Li (a prediction)."""
    p = Params()
    r = charge(pack(p), params_with_charge(p))
    assert abs(r.capacity_at_end_of_charge_mAh_per_g - 164.0) / 164.0 < 0.10
    assert abs(r.ocv_after_rest_V_vs_Li - 4.36) < 0.03
    assert r.conservation_error < 1e-6


def test_cli_charge_quick_and_partial(tmp_path, capsys):
    import json

    from esim.cli.main import main

    out = tmp_path / "charged.h5"
    assert main(["charge", "--quick", "-o", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["stop_reason"] == "cutoff" and not s["partial"]
    assert s["capacity_mAh_per_g"] > 100 and s["conservation_error"] < 1e-6
    assert out.exists() and out.with_suffix(".png").exists()
    assert (tmp_path / "charged_packing.h5").exists()
    cfg = tmp_path / "c.toml"
    cfg.write_text("[charge]\nmax_time_s = 300.0\n")
    # a charge that stops early writes its partial result beside the output, not over it
    good = out.read_bytes()
    assert main(["charge", str(tmp_path / "charged_packing.h5"), "--config", str(cfg),
                 "-o", str(out), "--no-figure", "--json"]) == 2
    err = capsys.readouterr().err
    assert "max_time_s" in err and "partial result in" in err and "charged_partial.h5" in err
    assert out.read_bytes() == good
    assert ChargeResult.load(tmp_path / "charged_partial.h5").partial
    # --config and --quick that would be ignored are refused, naming what applies
    packing = str(tmp_path / "charged_packing.h5")
    wide = tmp_path / "wide.toml"
    wide.write_text("[structure]\nseed = 5\n[charge]\nrest_time_s = 0.0\n")
    for argv, needle in (([packing, "--config", str(wide)], "only its [charge] table applies"),
                         ([packing, "--quick"], "--quick: the packing"),
                         (["--quick", "--config", str(cfg)], "--config: applies to a packing"),
                         (["--quick", "--no-figure", "--figure", "f.png"], "--figure: given "
                          "with --no-figure"),
                         (["--quick", "--figure", str(tmp_path / "f.txt")], "--figure: expected "
                          "a .png or .pdf or .svg path")):
        assert main(["charge", *argv, "-o", str(tmp_path / "x.h5")]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x_packing.h5").exists()


def test_shells_agree_with_uniform_at_the_reference_rate(full_small, small):
    """At 0.13 mA/cm2 r^2/D ~ 700 s << the ~6 h charge: shells change the capacity < 1 %,
    the justification of the uniform default; very slow diffusion cuts it (surface runs
    ahead), conserving charge, and the rest then relaxes the OCV."""
    r5 = charge(small, _params(small, solid_diffusion="shells", n_shells=5, rest_time_s=600.0))
    a = full_small.capacity_at_end_of_charge_mAh_per_g
    assert abs(r5.capacity_at_end_of_charge_mAh_per_g - a) / a < 0.01
    assert r5.conservation_error < 1e-6
    slow = {f"nmc_diffusivity_x0{k}_m2_per_s": 1e-17 for k in ("10", "55", "75")}
    rs = charge(small, _params(small, solid_diffusion="shells", n_shells=5, rest_time_s=600.0,
                               **slow))
    assert rs.capacity_at_end_of_charge_mAh_per_g < 0.8 * a
    assert rs.conservation_error < 1e-6
    # during the rest Li diffuses back to the surface: the OCV falls further than uniform's
    drop_slow = rs.voltage_at_end_of_charge_V_vs_Li - rs.ocv_after_rest_V_vs_Li
    drop_uni = full_small.voltage_at_end_of_charge_V_vs_Li - full_small.ocv_after_rest_V_vs_Li
    assert drop_slow > drop_uni


def test_lateral_tiling_charges_identically(small, full_small):
    """The packing is periodic in x and y: a 2 x 2 tiling is the same electrode, so it must
    give the same curve per gram (and exercises the benchmark's 1e5-particle setup)."""
    from benchmarks.bench_charge import tile_packing

    t = tile_packing(small, 2)
    assert t.n_particles == 4 * small.n_particles
    r = charge(t, _params(t, rest_time_s=0.0))
    assert r.capacity_at_end_of_charge_mAh_per_g == pytest.approx(
        full_small.capacity_at_end_of_charge_mAh_per_g, rel=1e-6)


def test_amg_preconditioner_charges_like_the_direct_one(small, full_small):
    """The AMG path (auto above 6000 potentials: every electrode of 1e4 particles and more) on
    the small electrode, forced: the same charge as the factorisation-preconditioned CG, to the
    Newton tolerance, with its hierarchy reused across iterations."""
    r = charge(small, _params(small, rest_time_s=600.0, linear_solver="amg"))
    d = full_small
    assert r.stop_reason == "cutoff"
    assert r.conservation_error < 1e-6
    assert r.capacity_at_end_of_charge_mAh_per_g == pytest.approx(
        d.capacity_at_end_of_charge_mAh_per_g, rel=1e-6)
    assert r.ocv_after_rest_V_vs_Li == pytest.approx(d.ocv_after_rest_V_vs_Li, abs=1e-6)
    assert r.n_steps == d.n_steps
    np.testing.assert_allclose(r.x[-1], d.x[-1], atol=1e-6)
    # a preconditioner serves many Newton iterations (rebuilt only when CG slows down)
    assert 1 <= r.n_factorizations < r.n_newton / 2


@pytest.mark.parametrize("shells", [1, 3])
def test_schur_assembly_equals_the_sparse_product(small, shells):
    """The Schur complement summed by the numba kernel into its fixed pattern equals
    ``A - B D^-1 C`` formed with scipy's sparse products (the assembly it replaced)."""
    M, st, u, rng = _newton_state(small, shells)
    u[M.oi:M.ox] = rng.normal(0, 2e-3, M.ni)
    _, _, (S, tri, B, Cm) = st.residual(u, True)
    _, dI, dU = st.interfaces(u)
    ion = ~M.k_sep
    e, s = M.k_e, M.oi + M.k_i[ion]
    di = dI[ion]
    A = sp.csr_matrix((np.concatenate([st.Lvals_y, dI, di, -di, -di]),
                       (np.concatenate([st.Lrows_y, e, s, e[ion], s]),
                        np.concatenate([st.Lcols_y, e, s, s, e[ion]]))), shape=S.shape)
    ref = (A - B @ sp.diags(1.0 / tri[2][:, -1]) @ Cm).toarray()
    assert M.k_sep.any() and ion.any()  # both kinds of interface are exercised
    np.testing.assert_allclose(S.toarray(), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    assert S.has_sorted_indices


def test_a_singular_factor_shrinks_the_step_instead_of_aborting(small, monkeypatch):
    """An exactly singular Newton matrix (SuperLU's error, now esim's SolverDidNotConverge)
    rejects the step and retries with a smaller one, as it did before the solver wrapped the
    error: the charge still reaches its cut-off."""
    import esim.charge as C
    from esim.errors import SolverDidNotConverge

    real = C._Preconditioner
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # one factorisation fails, mid-charge
            raise SolverDidNotConverge("the network's matrix is singular to working precision")
        return real(*a, **kw)

    monkeypatch.setattr(C, "_Preconditioner", flaky)
    r = charge(small, _params(small, rest_time_s=0.0))
    assert calls["n"] > 3 and r.n_rejected >= 1
    assert r.stop_reason == "cutoff" and not r.partial


def test_charge_figure_draws_each_sliced_particle_at_its_place(small, full_small):
    """Panel (b): one disc per particle cut by the plane y = L_y/2, at its (x, z) in um, NMC
    coloured by its SOC at the end of charge."""
    import matplotlib.pyplot as plt

    from esim.charge import plot_charge

    fig = plot_charge(full_small, small)
    try:
        b = fig.axes[1]
        se_c, nmc_c = b.collections[:2]
        dy = np.abs(small.centers_m[:, 1] - small.box_m[1] / 2)
        cut = dy < small.radii_m
        for coll, ph in ((se_c, PHASE_SE), (nmc_c, PHASE_NMC)):
            sel = cut & (small.phase == ph)
            np.testing.assert_allclose(coll.get_offsets(), small.centers_m[sel][:, [0, 2]] * 1e6)
        assert nmc_c.get_array().size == np.count_nonzero(cut & (small.phase == PHASE_NMC))
    finally:
        plt.close(fig)


def test_a_rest_that_fails_after_the_cut_off_is_not_drawn_as_a_stopped_charge(small,
                                                                              monkeypatch):
    """A charge that reached its cut-off and failed in the rest is partial too: its figure
    keeps "at cut-off" and "end of charge", and names the interrupted rest."""
    import matplotlib.pyplot as plt

    import esim.charge as ch
    from esim.charge import plot_charge

    def failing_rest(self):
        self.fail("newton_failed", "Newton did not converge during the rest")

    monkeypatch.setattr(ch._Run, "rest_phase", failing_rest)
    with pytest.raises(ChargeIncomplete) as e:
        charge(small, _params(small, rest_time_s=600.0))
    r = e.value.result
    assert r.partial and r.stop_reason == "newton_failed"
    fig = plot_charge(r, small)
    a, b, c = fig.axes[:3]
    assert a.get_title().endswith("mAh/g at cut-off [rest interrupted]")
    assert "at end of charge" in b.get_title()
    labels = [t.get_text() for t in c.get_legend().get_texts()]
    assert any(t.startswith("end of charge") for t in labels)
    assert any(t.startswith("rest interrupted") for t in labels)
    plt.close(fig)


def test_a_cut_off_within_the_shortest_step_stops_instead_of_stalling(full_small, small):
    """With dt_min_s = 1 s and a 1e-5 V tolerance the voltage rise over the shortest step
    exceeds the window, so the secant cannot shorten the step that crosses the cut-off: the
    charge stops on the cut-off's far side (a cycler's first sample past it), and the capacity
    stays within a step of the default run's.  Before, the same step was retried forever."""
    r = charge(small, _params(small, rest_time_s=0.0, cutoff_tolerance_V=1e-5, dt_min_s=1.0))
    assert r.stop_reason == "cutoff"
    assert r.voltage_at_end_of_charge_V_vs_Li >= 4.4 - 1e-5
    assert r.conservation_error < 1e-6
    a = full_small.capacity_at_end_of_charge_mAh_per_g
    assert abs(r.capacity_at_end_of_charge_mAh_per_g - a) / a < 1e-3


@pytest.mark.parametrize("key", ["snapshot_capacity_mAh_per_g", "capacity_limit_mAh_per_g"])
def test_a_target_just_past_an_accepted_step_is_taken_there(full_small, small, key):
    """A snapshot or capacity limit 1e-9 of a step after an accepted step: the step to it
    would be ~1e-7 s, where the Li balances Q/dt (x - x_old) cancel to round-off; the target is
    taken at once (snapshot) or the charge stops there (limit), and Newton converges at any
    step it does take.  Before, both failed with 'Newton did not converge'."""
    r0 = full_small
    cap = r0.capacity_mAh_per_g
    i = 20
    target = float(cap[i] + 1e-9 * (cap[i + 1] - cap[i]))  # ~1.5e-7 s after step i
    # dt_min_s 1e-7 s: the target is one short step away (the Li balances' round-off floor);
    # 1e-3 s: it lies within the shortest step, so it is taken at once, with no shorter step
    for dt_min in (1e-7, 1e-3):
        r = charge(small, _params(small, rest_time_s=0.0, dt_min_s=dt_min, **{key: target}))
        steps = np.diff(r.time_s[r.phase_code == C.PHASE_CHARGE])
        if key == "capacity_limit_mAh_per_g":
            assert r.stop_reason == "capacity_limit"
            assert r.capacity_at_end_of_charge_mAh_per_g == pytest.approx(target, rel=1e-6)
        else:
            assert r.stop_reason == "cutoff"
            onset = int(np.flatnonzero(r.snapshot_kind == C.SNAP_ONSET)[0])
            assert r.snapshot_time_s[onset] == pytest.approx(r0.time_s[i], rel=1e-6)
        if dt_min == 1e-3:
            assert steps.min() >= dt_min * (1 - 1e-9)
