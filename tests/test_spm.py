"""Virtual SPM: cross-section, SSRM, C-AFM, KPFM, SEM/EDX maps, exports, CLI.

Physics checks: the SSRM reading is the series sum of its parts (against the solver's own
node-to-ground resistance), SSRM and C-AFM share one contact model, isolated particles saturate,
charging lowers NMC resistance only, KPFM contrast follows the work-function model, and the
rasteriser and half-space cut agree with naive Python twins.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from esim._params_spm import SPMParams
from esim.errors import InvalidParameters
from esim.materials import nmc_sigma_e, se_sigma_e
from esim.network import build_network
from esim.packing import PHASE_NMC, PHASE_SE
from esim.solver import resistance_to_terminal
from esim.spm import instrument as ins
from esim.spm.maps import (CLASS_CONNECTED, CLASS_ISOLATED, CLASS_POINT_CONTACT, SPMMaps,
                           network_paths, nmc_ocp_placeholder, simulate_spm)
from esim.spm.section import (contact_kept_fraction, half_space, milled_network,
                              rasterize_section, signed_plane_distance)

PIX = 64
NOISELESS = dict(ssrm_noise_decades=0.0, ssrm_saturation_spread_decades=0.0)


def _spm(**kw) -> SPMParams:
    base = dict(pixels_u=PIX, pixels_z=PIX)
    base.update(kw)
    return SPMParams(**base)


@pytest.fixture(scope="module")
def pristine(small_packing):
    return simulate_spm(small_packing, spm=_spm(), noise=False)


@pytest.fixture(scope="module")
def charged(small_packing):
    return simulate_spm(small_packing, soc=1.0, spm=_spm(), noise=False)


# ------------------------------------------------------------------------------------------
# section: naive twins
# ------------------------------------------------------------------------------------------
def _naive_kept_fraction(D, w, n=20000):
    """Area fraction of a disc (half-width w across the face, centre at D) behind the face,
    by the midpoint rule over the disc's chords: a twin of the closed-form segment area."""
    if w <= 0:
        return float(D < 0)
    s = (np.arange(n) + 0.5) / n * 2 - 1  # position across the disc, in units of its radius
    chord = np.sqrt(1 - s * s)
    return float(chord[D + w * s < 0].sum() / chord.sum())


def test_half_space_matches_naive_loop(small_packing):
    pk = small_packing
    c = 0.37 * pk.box_m[1]
    net, hs = milled_network(pk, soc=0.0, plane_axis=1, plane_position_m=c)
    L = pk.box_m[1]
    kept = []
    for p in range(pk.n_particles):  # naive twin: one particle at a time
        d = (pk.centers_m[p, 1] - c) % L
        d = d - L if d >= L / 2 else d
        if d < pk.radii_m[p]:
            kept.append(p)
    assert hs.index.tolist() == kept
    node = {p: k for k, p in enumerate(kept)}
    node[pk.n_particles] = hs.cc_node
    node[pk.n_particles + 1] = hs.sep_node

    def side(y):  # signed minimum-image distance from the plane
        d = (y - c) % L
        return d - L if d >= L / 2 else d

    edges, frac, milled, partial = [], [], 0, 0
    for e, (a, b) in enumerate(net.conns.tolist()):
        if a in node and b in node:
            if b >= pk.n_particles:  # a wall contact: a disc in the wall plane at the foot
                at, sin_t = side(pk.centers_m[a, 1]), 1.0
            else:  # the circle where the two spheres meet, normal to their line of centres
                v = pk.centers_m[b] - pk.centers_m[a]
                v[:2] -= pk.box_m[:2] * np.round(v[:2] / pk.box_m[:2])
                dist = np.linalg.norm(v)
                s = (dist**2 + pk.radii_m[a] ** 2 - pk.radii_m[b] ** 2) / (2 * dist)
                at = side(pk.centers_m[a, 1]) + s * v[1] / dist
                sin_t = math.sqrt(1 - (v[1] / dist) ** 2)
            w = net.contact_radius_m[e] * sin_t  # the disc spans at +- w across the face
            f = _naive_kept_fraction(at, w)
            if at < w:  # some of it lies behind the face
                edges.append((node[a], node[b]))
                frac.append(f)
                partial += f < 1
            else:
                milled += 1
    assert milled > 0  # contacts of kept particles, milled away with the part that held them
    assert partial > 0  # and contacts the face cuts through
    assert [tuple(x) for x in hs.conns.tolist()] == edges
    # the milled contacts conduct as discs of their remaining area; whole ones as before
    f_hs = contact_kept_fraction(pk, net.conns, net.contact_radius_m, plane_axis=1,
                                 plane_position_m=c)[hs.edge_index]
    np.testing.assert_allclose(f_hs, frac, atol=1e-4)
    whole = f_hs == 1
    np.testing.assert_array_equal(hs.g[whole], net.g[hs.edge_index][whole])
    g0 = net.g[hs.edge_index][~whole]
    assert (hs.g[~whole][g0 > 0] < g0[g0 > 0]).all() and (hs.g[~whole][g0 == 0] == 0).all()
    # each kept contact conducts as a disc of its remaining area: radius a sqrt(f)
    np.testing.assert_allclose(hs.kept_fraction, frac, atol=1e-4)
    np.testing.assert_allclose(hs.contact_radius_m,
                               net.contact_radius_m[hs.edge_index] * np.sqrt(f_hs), rtol=1e-12)
    # a particle entirely beyond the plane is dropped, a cut one is kept
    assert not hs.kept[(hs.delta_m >= pk.radii_m)].any()
    assert hs.kept[hs.cut].all()


def test_maps_name_the_contact_that_limits_the_path(small_packing):
    """Per window particle, the maps give the radius and kept fraction of the contact with the
    largest share of its path's power (unit current: the shares g (dx)^2 / x_p sum to 1),
    recomputed here from the milled network's potentials, and the largest drop's share."""
    pk = small_packing
    spm = _spm(**NOISELESS)
    m = simulate_spm(pk, soc=1.0, spm=spm, noise=False)
    net, hs = milled_network(pk, soc=1.0, plane_axis=spm.plane_axis,
                             plane_position_m=spm.plane_position_m)
    n = hs.n_nodes
    c, g = hs.conns, hs.g
    lap = np.zeros((n, n))
    np.add.at(lap, (c[:, 0], c[:, 0]), g)
    np.add.at(lap, (c[:, 1], c[:, 1]), g)
    np.add.at(lap, (c[:, 0], c[:, 1]), -g)
    np.add.at(lap, (c[:, 1], c[:, 0]), -g)
    on = g > 0
    _, comp = connected_components(coo_matrix((g[on], (c[on, 0], c[on, 1])), shape=(n, n)),
                                   directed=False)
    checked = 0
    for k, p in enumerate(m.window_particles):
        if not np.isfinite(m.window_resistance_ohm[k]):
            assert np.isnan(m.window_bottleneck_radius_m[k])
            continue
        # unit current into p, collector grounded, on p's connected part only
        nodes = np.flatnonzero(comp == comp[hs.local[p]])
        nodes = nodes[nodes != hs.cc_node]
        rhs = (nodes == hs.local[p]).astype(float)
        x = np.zeros(n)
        x[nodes] = np.linalg.solve(lap[np.ix_(nodes, nodes)], rhs)
        drop = np.abs(x[c[:, 0]] - x[c[:, 1]]) * (g > 0)
        xp = x[hs.local[p]]
        power = g * drop**2 / xp
        assert power.sum() == pytest.approx(1.0, rel=1e-9)  # the power of a unit current, x_p
        assert power.max() == pytest.approx(m.window_max_edge_share[k], rel=1e-6)
        e = int(np.argmax(power))
        assert m.window_bottleneck_radius_m[k] == pytest.approx(hs.contact_radius_m[e], rel=1e-12)
        assert m.window_bottleneck_kept_fraction[k] == hs.kept_fraction[e]
        a0 = net.contact_radius_m[hs.edge_index[e]]
        assert m.window_bottleneck_radius_m[k] == pytest.approx(
            a0 * math.sqrt(m.window_bottleneck_kept_fraction[k]), rel=1e-12)
        checked += 1
        if checked == 6:
            break
    assert checked == 6


def test_rasterize_matches_naive_pixel_loop(small_packing):
    pk = small_packing
    c, u0, z0, w, h, nu, nz = 11e-6, 3e-6, 2e-6, 20e-6, 15e-6, 23, 19
    g = rasterize_section(pk, plane_axis=0, plane_position_m=c, origin_u_m=u0, origin_z_m=z0,
                          width_m=w, height_m=h, pixels_u=nu, pixels_z=nz)
    Lu = pk.box_m[1]
    delta = signed_plane_distance(pk.centers_m[:, 0], c, pk.box_m[0])
    for i in range(nz):  # naive twin: every pixel against every particle
        for j in range(nu):
            u, z = u0 + (j + 0.5) * w / nu, z0 + (i + 0.5) * h / nz
            best, key, edge = -1, (0, -np.inf), 0.0
            for p in range(pk.n_particles):
                du = (u - pk.centers_m[p, 1] + Lu / 2) % Lu - Lu / 2
                dz = z - pk.centers_m[p, 2]
                rho2 = pk.radii_m[p] ** 2 - delta[p] ** 2
                if rho2 <= 0 or du * du + dz * dz >= rho2:
                    continue
                k = (2 if pk.phase[p] == PHASE_NMC else 1,
                     pk.radii_m[p] - math.sqrt(du * du + dz * dz + delta[p] ** 2))
                if k > key:
                    best, key, edge = p, k, math.sqrt(rho2) - math.hypot(du, dz)
            assert g.particle[i, j] == best, (i, j)
            assert g.phase[i, j] == (pk.phase[best] if best >= 0 else 0)
            assert g.edge_distance_m[i, j] == pytest.approx(edge, abs=1e-15)
    assert g.z_m[0] == pytest.approx(z0 + 0.5 * h / nz)


# ------------------------------------------------------------------------------------------
# network paths
# ------------------------------------------------------------------------------------------
def test_network_paths_known_chain_and_solver(small_packing):
    # chain ground(0) -1 S- 1 -0.5 S- 2 ; dangling 3 - 4 (no path)
    R, share, bott = network_paths(5, np.array([[0, 1], [1, 2], [3, 4]]),
                                   np.array([1.0, 0.5, 1.0]), 0, np.array([1, 2, 3, 0]))
    np.testing.assert_allclose(R[:2], [1.0, 3.0])
    assert R[2] == np.inf and R[3] == 0.0
    np.testing.assert_allclose(share[:2], [1.0, 2.0 / 3.0])
    assert bott.tolist()[:3] == [0, 1, -1]
    # a thin contact (1e-3 S) in series, and in parallel a contact with the glass (1e-6 S) to a
    # node held near ground: the glass edge drops the most, the thin contact carries the
    # current and dissipates the power; it is the one named
    conns = np.array([[1, 2], [2, 0], [1, 3], [3, 0]])
    R, share, bott = network_paths(4, conns, np.array([1e-3, 1.0, 1e-6, 1.0]), 0, np.array([1]))
    assert bott.tolist() == [0]
    r1, r2 = 1e3 + 1, 1e6 + 1  # the two branches
    assert R[0] == pytest.approx(1 / (1 / r1 + 1 / r2), rel=1e-12)
    i1 = r2 / (r1 + r2)  # the thin contact's part of the unit current
    assert share[0] == pytest.approx(i1**2 * 1e3 / R[0], rel=1e-9)
    # a weak direct contact (1 ohm) beside a route of two 0.1 ohm edges: the direct edge drops
    # the whole path (a drop share of 1), but carries 1/6 of the current, so its power share
    # is 1/6; each route edge carries 5/6 and dissipates 5/12: no edge limits the path
    c3, g3 = np.array([[1, 0], [1, 2], [2, 0]]), np.array([1.0, 10.0, 10.0])
    R, share, bott = network_paths(3, c3, g3, 0, np.array([1]))
    assert R[0] == pytest.approx(1 / 6) and bott[0] in (1, 2)
    assert share[0] == pytest.approx(5 / 12)
    # the shares are the elasticities d ln R / d ln R_e: check by finite differences
    el = []
    for e in range(3):
        gp = g3.copy()
        gp[e] /= 1.001
        el.append(math.log(network_paths(3, c3, gp, 0, np.array([1]))[0][0] / R[0])
                  / math.log(1.001))
    np.testing.assert_allclose(el, [1 / 6, 5 / 12, 5 / 12], rtol=2e-3)
    assert max(el) == pytest.approx(share[0], rel=2e-3)
    # a real half-space network: the same numbers as the solver's resistance_to_terminal
    net = build_network(small_packing, carrier="electron", soc=1.0)
    hs = half_space(small_packing, net.conns, net.g, plane_axis=1, plane_position_m=-1.0)
    q = np.arange(0, hs.n_nodes - 2, 3)
    R, share, _ = network_paths(hs.n_nodes, hs.conns, hs.g, hs.cc_node, q, chunk_bytes=4096)
    ref = resistance_to_terminal(hs.n_nodes, hs.conns, hs.g, [hs.cc_node], q)
    np.testing.assert_allclose(R, ref, rtol=1e-9)
    ok = np.isfinite(R)
    assert ((share[ok] > 0) & (share[ok] <= 1 + 1e-12)).all()


# ------------------------------------------------------------------------------------------
# SSRM and C-AFM
# ------------------------------------------------------------------------------------------
def test_ssrm_ohmic_is_tip_plus_network_plus_series(small_packing):
    pk = small_packing
    spm = _spm(nonohmic=False, ssrm_r_max_ohm=1e16, ssrm_decades=15.0, **NOISELESS)
    m = simulate_spm(pk, soc=1.0, spm=spm, noise=False)
    _, hs = milled_network(pk, soc=1.0, plane_axis=spm.plane_axis,
                           plane_position_m=spm.plane_position_m)
    solid = m.particle >= 0
    pid = m.particle[solid]
    r_node = resistance_to_terminal(hs.n_nodes, hs.conns, hs.g, [hs.cc_node], hs.local[pid])
    rho = np.where(pk.phase[pid] == PHASE_NMC, 1.0 / nmc_sigma_e(1.0), 1.0 / se_sigma_e())
    r_tip = rho / (4 * spm.tip_radius_m) * (
        1 + 1 / (1 + np.pi * m.edge_distance_m[solid] / spm.tip_radius_m))
    expect = r_tip + r_node + spm.r_instrument_ohm
    # a section that kept no contact at all (a cap milled free) carries no current: the ceiling
    expect = np.where(np.isfinite(r_node), expect, spm.ssrm_r_max_ohm)
    np.testing.assert_allclose(m.ssrm_ohm[solid], expect, rtol=1e-9)
    # pores carry no current: they read the ceiling
    assert (m.ssrm_ohm[~solid] == spm.ssrm_r_max_ohm).all()


def test_ssrm_equals_bias_over_cafm_nonohmic(charged):
    m = charged
    assert m.spm["nonohmic"]
    r_max, sat = m.spm["ssrm_r_max_ohm"], m.spm["cafm_saturation_A"]
    in_range = ((m.ssrm_ohm < r_max) & (np.abs(m.cafm_A) < sat)
                & (m.ssrm_ohm > r_max / 10 ** m.spm["ssrm_decades"]))
    assert in_range.sum() > 100
    np.testing.assert_allclose(m.ssrm_ohm[in_range], m.bias_V / m.cafm_A[in_range], rtol=1e-12)
    # the barrier shows: SSRM exceeds the ohmic series sum where the current is large
    ohmic = m.tip_resistance_ohm + m.network_resistance_ohm + m.spm["r_instrument_ohm"]
    assert (m.ssrm_true_ohm[in_range] >= ohmic[in_range] * (1 - 1e-12)).all()


def _isolate(pk, p):
    """A copy of the packing in which particle p lost every contact with NMC and walls."""
    nmc = pk.phase == PHASE_NMC
    c = pk.contacts
    other = np.where(c[:, 0] == p, c[:, 1], np.where(c[:, 1] == p, c[:, 0], -1))
    keep = (other < 0) | ~nmc[np.maximum(other, 0)]
    keep_w = pk.wall_particle != p
    return dataclasses.replace(
        pk, contacts=c[keep], contact_gap_m=pk.contact_gap_m[keep],
        contact_radius_m=pk.contact_radius_m[keep], contact_force=pk.contact_force[keep],
        wall_particle=pk.wall_particle[keep_w], wall_side=pk.wall_side[keep_w],
        wall_gap_m=pk.wall_gap_m[keep_w], wall_contact_radius_m=pk.wall_contact_radius_m[keep_w],
        wall_force=pk.wall_force[keep_w])


def test_isolated_particle_reads_ceiling_and_floats(small_packing, pristine):
    nmc_ids = pristine.window_particles[pristine.window_phase == PHASE_NMC]
    area = np.bincount(pristine.particle[pristine.particle >= 0])
    p = int(nmc_ids[np.argmax(area[nmc_ids])])
    pk = _isolate(small_packing, p)
    phi = np.zeros(pk.n_particles)
    phi[p] = 0.25
    m = simulate_spm(pk, soc=1.0, spm=_spm(**NOISELESS), noise=False, floating_potential_V=phi)
    on = m.particle == p
    assert (m.connection_class[on] == CLASS_ISOLATED).all()
    assert (m.ssrm_ohm[on] == m.spm["ssrm_r_max_ohm"]).all()
    # connected NMC at the same SOC still conduct well
    conn = (m.phase == PHASE_NMC) & (m.connection_class != CLASS_ISOLATED)
    assert np.median(m.ssrm_ohm[conn]) < 0.1 * m.spm["ssrm_r_max_ohm"]
    # KPFM before blur: the floating particle differs by its own potential
    ref = np.median(m.kpfm_true_vcpd_V[conn])
    np.testing.assert_allclose(m.kpfm_true_vcpd_V[on], ref + 0.25, atol=1e-12)


def _skeleton(n_nodes, conns, g, cc, phase_nodes):
    """Naive twin: the nodes joined to the collector through NMC-NMC / NMC-collector edges."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    ok = np.append(phase_nodes == PHASE_NMC, [True, False])
    on = (g > 0) & ok[conns[:, 0]] & ok[conns[:, 1]]
    a = sp.coo_matrix((np.ones(on.sum()), (conns[on, 0], conns[on, 1])), (n_nodes, n_nodes))
    lab = connected_components(a, directed=False)[1]
    return lab == lab[cc]


def test_milling_cuts_off_charged_particles(small_packing):
    """Classes of the window's NMC: isolated = no skeleton path in the intact electrode (it
    never charged); cut off = a path in the intact electrode but none behind the milled face.
    A cut-off particle reads the ceiling like an isolated one, and the planes of the small
    electrode hold some."""
    from esim.spm.maps import CLASS_CUT_OFF

    pk = small_packing
    net = build_network(pk, carrier="electron", soc=1.0)
    intact = _skeleton(net.n_nodes, net.conns, net.g, net.cc_node, pk.phase)
    n_cut = 0
    for c in np.linspace(0.1, 0.9, 5) * pk.box_m[1]:
        m = simulate_spm(pk, soc=1.0, spm=_spm(plane_position_m=c, **NOISELESS), noise=False)
        _, hs = milled_network(pk, soc=1.0, plane_axis=1, plane_position_m=c)
        behind = _skeleton(hs.n_nodes, hs.conns, hs.g, hs.cc_node, pk.phase[hs.index])
        nmc = m.window_phase == PHASE_NMC
        ids = m.window_particles[nmc]
        cls = m.window_class[nmc]
        np.testing.assert_array_equal(cls == CLASS_ISOLATED, ~intact[ids])
        cut = intact[ids] & ~behind[hs.local[ids]]
        np.testing.assert_array_equal(cls == CLASS_CUT_OFF, cut)
        for p in ids[cut]:
            assert (m.ssrm_ohm[m.particle == p] == m.spm["ssrm_r_max_ohm"]).all()
        n_cut += int(cut.sum())
    assert n_cut > 0


def test_charging_lowers_nmc_not_se(pristine, charged):
    conn = (pristine.phase == PHASE_NMC) & np.isin(pristine.connection_class,
                                                    [CLASS_CONNECTED, CLASS_POINT_CONTACT])
    assert conn.any()
    before = np.median(np.log10(pristine.ssrm_ohm[conn]))
    after = np.median(np.log10(charged.ssrm_ohm[conn]))
    assert before - after >= 1.0
    se = pristine.phase == PHASE_SE
    np.testing.assert_allclose(np.median(charged.ssrm_ohm[se]), np.median(pristine.ssrm_ohm[se]),
                               rtol=1e-9)
    # pristine: everything at the ceiling, as in Otoyama 2020 (1.8-2.2e9 ohm)
    assert np.all(pristine.ssrm_ohm[pristine.phase > 0] == pristine.spm["ssrm_r_max_ohm"])


def test_iv_curves_se_onset_and_nmc(charged):
    m = charged
    v = m.iv_voltage_V
    assert v[0] == -2.0 and v[-1] == 2.0
    assert m.iv_time_s[-1] == pytest.approx(1.0)  # 4 V at 4 V/s
    ph = m.phase[m.iv_pixels[:, 0], m.iv_pixels[:, 1]]
    assert (ph == PHASE_NMC).sum() == 2 and (ph == PHASE_SE).sum() == 2
    assert (m.iv_pixels > 0).all() and (m.iv_pixels < PIX - 1).all()
    r_iv = m.network_resistance_ohm[m.iv_pixels[:, 0], m.iv_pixels[:, 1]]
    r_nmc = m.window_resistance_ohm[(m.window_phase == PHASE_NMC)]
    assert r_iv[0] <= r_iv[1] and r_iv[0] >= r_nmc.min()
    for k, (r, c) in enumerate(m.iv_pixels):
        i = m.iv_current_A[k]
        if m.phase[r, c] == PHASE_SE:
            assert np.abs(i[v <= 1.0]).max() < 1e-14
            assert i[-1] == pytest.approx(1e-12, rel=0.05)
        elif m.phase[r, c] == PHASE_NMC:
            assert i[0] < 0 < i[-1]
            j = np.argmin(np.abs(v - m.bias_V))
            assert i[j] == pytest.approx(m.cafm_A[r, c], rel=1e-12)


def test_iv_choice_picks_the_extreme_nmc(small_packing, charged):
    """``iv_choice=(2, 2, 0)`` (Otoyama 2020 Fig. 4d): the two lowest- and two highest-resistance
    NMC of the particles whose centre pixel lies inside the window, in ascending order."""
    m = simulate_spm(small_packing, soc=1.0, spm=_spm(), noise=False, iv_choice=(2, 2, 0))
    assert m.iv_pixels.shape == (4, 2)
    rows, cols = m.iv_pixels[:, 0], m.iv_pixels[:, 1]
    assert (m.phase[rows, cols] == PHASE_NMC).all()
    pids = m.particle[rows, cols]
    assert len(set(pids.tolist())) == 4
    r_iv = m.network_resistance_ohm[rows, cols]
    assert (np.diff(r_iv) >= 0).all()
    # the same candidates as the default choice (1, 1, 2): its NMC are the extremes
    r_default = charged.network_resistance_ohm[charged.iv_pixels[:, 0], charged.iv_pixels[:, 1]]
    nmc_default = charged.phase[charged.iv_pixels[:, 0], charged.iv_pixels[:, 1]] == PHASE_NMC
    assert r_iv[0] == r_default[nmc_default][0] and r_iv[-1] == r_default[nmc_default][-1]
    # the sections probed lie wholly inside the window (there are enough such NMC here)
    p2 = m.particle
    on_edge = np.unique(np.r_[p2[0], p2[-1], p2[:, 0], p2[:, -1]])
    whole = [p for p, ph, r in zip(m.window_particles, m.window_phase, m.window_resistance_ohm)
             if ph == PHASE_NMC and np.isfinite(r) and p not in on_edge]
    assert len(whole) >= 4
    assert not np.isin(pids, on_edge).any()
    # asking for more than the whole sections offer widens the candidates instead of returning
    # fewer curves
    many = len(whole) // 2 + 1
    m2 = simulate_spm(small_packing, soc=1.0, spm=_spm(), noise=False, iv_choice=(many, many, 0))
    pid2 = m2.particle[m2.iv_pixels[:, 0], m2.iv_pixels[:, 1]]
    assert len(set(pid2.tolist())) == 2 * many and np.isin(pid2, on_edge).any()
    with pytest.raises(InvalidParameters, match="iv_choice"):
        simulate_spm(small_packing, soc=1.0, spm=_spm(), noise=False, iv_choice=(2, -1, 0))


# ------------------------------------------------------------------------------------------
# KPFM
# ------------------------------------------------------------------------------------------
def test_kpfm_contrast_is_work_function(small_packing):
    pk = small_packing
    rng = np.random.default_rng(1)
    soc = np.where(rng.random(pk.n_particles) < 0.5, 0.3, 0.8)
    spm = _spm()
    m = simulate_spm(pk, soc=soc, spm=spm, noise=False)
    nmc = (m.phase == PHASE_NMC) & (m.connection_class != CLASS_ISOLATED)
    v = m.kpfm_true_vcpd_V
    lo, hi = nmc & (m.soc == 0.3), nmc & (m.soc == 0.8)
    assert lo.any() and hi.any()
    assert np.ptp(v[lo]) < 1e-12 and np.ptp(v[hi]) < 1e-12  # no contrast at one SOC
    du = nmc_ocp_placeholder(0.8, spm=spm) - nmc_ocp_placeholder(0.3, spm=spm)
    assert v[lo][0] - v[hi][0] == pytest.approx(spm.kpfm_beta * du, abs=1e-12)
    # given OCP: the same law with the caller's U
    ocp = 3.9 + 0.2 * (soc > 0.5)
    m2 = simulate_spm(pk, soc=soc, ocp_V=ocp, spm=spm, noise=False)
    assert m2.kpfm_true_vcpd_V[lo][0] - m2.kpfm_true_vcpd_V[hi][0] == pytest.approx(
        spm.kpfm_beta * 0.2, abs=1e-12)


def test_kpfm_calibration_reproduces_paper(small_packing, pristine, charged):
    s = pristine.spm_params
    # NMC raw V_CPD +0.93 -> -0.54 V and SE +1.06 -> -0.98 V (Otoyama et al., Research Square
    # preprint (2020)); V_CPD' with V_OCV 1.16 and 3.74 V
    nmc0 = pristine.kpfm_true_vcpd_V[pristine.phase == PHASE_NMC]
    nmc1 = charged.kpfm_true_vcpd_V[charged.phase == PHASE_NMC]
    assert np.median(nmc0) == pytest.approx(0.93, abs=1e-9)
    assert np.median(nmc1) == pytest.approx(-0.54, abs=0.01)
    assert pristine.ocv_vs_inli_V == 1.16
    assert charged.ocv_vs_inli_V == pytest.approx(3.74, abs=0.01)
    # the SE as imaged (the maps' own values, not the parameters' arithmetic)
    se0 = np.median(pristine.kpfm_true_vcpd_V[pristine.phase == PHASE_SE])
    se1 = np.median(charged.kpfm_true_vcpd_V[charged.phase == PHASE_SE])
    assert se0 == pytest.approx(1.06, abs=1e-3) and se1 == pytest.approx(-0.98, abs=0.02)
    assert s.kpfm_se_offset_V - s.kpfm_se_coupling * charged.ocv_vs_inli_V == pytest.approx(
        se1, abs=1e-9)
    # an OCV vs Li is converted, never added as is
    m = simulate_spm(small_packing, soc=1.0, ocv_vs_li_V=4.36,
                     spm=_spm(pixels_u=8, pixels_z=8), noise=False)
    assert m.ocv_vs_inli_V == pytest.approx(3.74)
    np.testing.assert_allclose(m.kpfm_vcpd_prime_V - m.kpfm_vcpd_V, 3.74)


def test_kpfm_uniform_potential_stays_uniform(small_packing):
    """A uniform surface stays uniform: the window, the section around it and the separator's
    glass beyond it all read the same (kpfm_surroundings = "section", the default)."""
    base = SPMParams()
    v_se = base.kpfm_se_offset_V - base.kpfm_se_coupling * base.ocv_pristine_vs_inli_V
    spm = _spm(kpfm_nmc_offset_V=v_se)
    m = simulate_spm(small_packing, spm=spm, noise=False)
    np.testing.assert_allclose(m.kpfm_true_vcpd_V, v_se, atol=1e-15)
    np.testing.assert_allclose(m.kpfm_vcpd_V, v_se, atol=1e-12)


def test_kpfm_blur_conserves_and_psf_normalised(small_packing, pristine):
    from esim.spm.maps import kpfm_psf_of

    p = pristine.pixel_size_u_m
    s = pristine.spm_params
    psf = ins.kpfm_psf(p, apex_sigma_m=s.kpfm_apex_sigma_m,
                       cantilever_sigma_m=s.kpfm_cantilever_sigma_m,
                       cantilever_weight=s.kpfm_cantilever_weight)
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    k = kpfm_psf_of(s, (p, p))
    np.testing.assert_array_equal(k, psf)
    # symmetric PSF, reflective borders (kpfm_surroundings = "mirror"): the map mean is kept
    m = simulate_spm(small_packing, spm=_spm(kpfm_surroundings="mirror"), noise=False)
    assert m.kpfm_vcpd_V.mean() == pytest.approx(m.kpfm_true_vcpd_V.mean(), abs=1e-12)
    np.testing.assert_allclose(m.kpfm_vcpd_V, ins.blur(m.kpfm_true_vcpd_V, k), atol=1e-12)


def test_kpfm_small_window_keeps_the_whole_cantilever_tail(small_packing):
    """A window smaller than the cantilever term (2 um, sigma 2 um) is blurred by the whole
    PSF: its far tail averages the (mirrored) surroundings.  A kernel cut to twice the map and
    renormalised hands that weight to the near field and sharpens the contrast (the old code:
    2.2 mV off here, 66 mV on a 1 V step).  A pixel far below the PSF's reach is refused."""
    from esim._params_spm import KPFM_PSF_MAX_HALF_PX
    from esim.spm.maps import kpfm_psf_of

    spm = _spm(kpfm_surroundings="mirror", fov_width_m=2e-6, fov_height_m=2e-6,
               fov_u_offset_m=8e-6, pixels_u=32, pixels_z=32)
    m = simulate_spm(small_packing, spm=spm, noise=False)
    assert np.ptp(m.kpfm_true_vcpd_V) > 0.1  # NMC and glass in the window
    full = ins.kpfm_psf((m.pixel_size_z_m, m.pixel_size_u_m))
    assert full.shape[0] > 4 * 32  # the tail reaches beyond twice the map
    np.testing.assert_allclose(m.kpfm_vcpd_V, ins.blur(m.kpfm_true_vcpd_V, full), atol=1e-12)
    tiny = (1e-9, 1e-9)  # 8000 px for 4 sigma of 2 um
    assert 4 * spm.kpfm_cantilever_sigma_m / tiny[0] > KPFM_PSF_MAX_HALF_PX
    with pytest.raises(InvalidParameters, match="kpfm_cantilever_sigma_m"):
        kpfm_psf_of(spm, tiny)
    fm = kpfm_psf_of(dataclasses.replace(spm, kpfm_cantilever_weight=0.0), tiny)  # FM-KPFM
    assert fm.shape == (241, 241)  # 4 x 30 nm apex
    # refused with the parameters, before any packing: the field of view's pixels
    with pytest.raises(InvalidParameters, match="spm.kpfm_cantilever_sigma_m: .* 800[01] px"):
        SPMParams(fov_width_m=1e-6, fov_height_m=1e-6, pixels_u=1000, pixels_z=1000)
    with pytest.raises(InvalidParameters, match=r"spm.kpfm_apex_sigma_m: .*pixels_\*\)$"):
        SPMParams(fov_width_m=1e-6, pixels_u=8000, kpfm_cantilever_weight=0.0,
                  kpfm_apex_sigma_m=1e-6)
    from esim.params import Params

    with pytest.raises(InvalidParameters, match="spm.kpfm_cantilever_sigma_m"):  # "full": L / px
        Params().replace(structure={"electrode_thickness_m": 11e-6},
                         spm={"fov_z_anchor": "full", "pixels_z": 8192})


def test_blur_extended_with_glass_beyond_an_edge_is_the_cantilever_tail():
    """A uniform map with glass beyond its separator-side edge (the rows past the last one)
    loses, at a distance d from the edge, the Gaussian tail beyond it:
    V0 - (V0 - Vg) Phi(-d / sigma); mirrored, it would keep V0."""
    from scipy.stats import norm

    px, sigma, nz, nx = 50e-9, 1e-6, 120, 40
    psf = ins.kpfm_psf(px, apex_sigma_m=1e-9, cantilever_sigma_m=sigma, cantilever_weight=1.0)
    py, pxh = psf.shape[0] // 2, psf.shape[1] // 2
    ext = np.full((nz + 2 * py, nx + 2 * pxh), 3.1)
    ext[py + nz:] = 2.8
    v = ins.blur_extended(ext, psf)
    assert v.shape == (nz, nx)
    d = (nz - np.arange(nz) - 0.5) * px  # row centre to the edge
    np.testing.assert_allclose(v[:, 20], 3.1 - 0.3 * norm.cdf(-d / sigma), atol=3e-3)
    np.testing.assert_allclose(v[:, 0], v[:, 20], atol=1e-12)
    np.testing.assert_allclose(ins.blur(np.full((nz, nx), 3.1), psf), 3.1, atol=1e-12)
    with pytest.raises(InvalidParameters, match="larger than the extended map"):
        ins.blur_extended(np.ones((5, 5)), psf)


def test_kpfm_sees_the_section_around_the_window(small_packing, charged):
    """The KPFM probe averages over what lies around the window: the window's own surface
    potential in the middle, the section's particles (rendered independently here, on the
    adjacent windows) laterally and towards the collector, the separator's glass beyond the
    electrode; the measured map is the PSF over that field."""
    from esim.spm.maps import kpfm_psf_of, kpfm_surroundings, window_of
    from esim.spm.section import rasterize_section

    pk, m = small_packing, charged
    spm = m.spm_params
    assert spm.kpfm_surroundings == "section"  # the default
    psf = kpfm_psf_of(spm, (m.pixel_size_z_m, m.pixel_size_u_m))
    py, px = psf.shape[0] // 2, psf.shape[1] // 2
    # every particle's raw V_CPD: the window's, read off its truth map (NMC at SOC 1, glass)
    v_glass = float(m.kpfm_true_vcpd_V[m.phase != PHASE_NMC][0])
    v_nmc = float(m.kpfm_true_vcpd_V[m.phase == PHASE_NMC][0])
    iso = np.isin(np.arange(pk.n_particles), m.window_particles[m.window_class
                                                                == CLASS_ISOLATED])
    assert not iso.any()  # every NMC particle of this window reads v_nmc
    v_all = np.where(pk.phase == PHASE_NMC, v_nmc, v_glass)
    u0, z0, w, h = window_of(pk, spm)
    grid = rasterize_section(pk, plane_axis=spm.plane_axis, plane_position_m=spm.plane_position_m,
                             origin_u_m=u0, origin_z_m=z0, width_m=w, height_m=h,
                             pixels_u=spm.pixels_u, pixels_z=spm.pixels_z)
    ext = kpfm_surroundings(pk, spm, grid, v_all, v_glass, py, px)
    nz, nu = m.phase.shape
    assert ext.shape == (nz + 2 * py, nu + 2 * px)
    np.testing.assert_array_equal(ext[py:py + nz, px:px + nu], m.kpfm_true_vcpd_V)
    # the window lies at the separator: every row beyond it is glass
    assert z0 + h == pytest.approx(pk.box_m[2])
    assert (ext[py + nz:] == v_glass).all()
    # the columns right of the window are the adjacent window of the same section
    du = m.pixel_size_u_m
    k = 5
    right = rasterize_section(pk, plane_axis=spm.plane_axis,
                              plane_position_m=spm.plane_position_m, origin_u_m=u0 + w,
                              origin_z_m=z0, width_m=k * du, height_m=h, pixels_u=k,
                              pixels_z=nz)
    np.testing.assert_array_equal(ext[py:py + nz, px + nu:px + nu + k],
                                  np.where(right.particle >= 0, v_all[right.particle], v_glass))
    # and the rows below it, the section towards the collector
    below = rasterize_section(pk, plane_axis=spm.plane_axis,
                              plane_position_m=spm.plane_position_m, origin_u_m=u0,
                              origin_z_m=z0 - k * m.pixel_size_z_m, width_m=w,
                              height_m=k * m.pixel_size_z_m, pixels_u=nu, pixels_z=k)
    np.testing.assert_array_equal(ext[py - k:py, px:px + nu],
                                  np.where(below.particle >= 0, v_all[below.particle], v_glass))
    # the measured map is the PSF over that field
    np.testing.assert_allclose(m.kpfm_vcpd_V, ins.blur_extended(ext, psf), atol=1e-12)
    # near the separator, away from the lateral edges, the glass (below the charged NMC)
    # pulls the reading down against the mirrored window, which sees its own composite there
    # again (glass and NMC); laterally and towards the collector either way is possible
    assert v_glass < v_nmc
    mirror = simulate_spm(pk, soc=1.0, spm=_spm(kpfm_surroundings="mirror"), noise=False)
    top, mid = slice(nz - 3, nz), slice(nu // 2 - 4, nu // 2 + 4)
    assert (m.kpfm_vcpd_V[top, mid] < mirror.kpfm_vcpd_V[top, mid]).all()


# ------------------------------------------------------------------------------------------
# determinism, noise, exports
# ------------------------------------------------------------------------------------------
_MAPS = ["sem", "edx_s_counts", "edx_ni_counts", "ssrm_ohm", "cafm_A", "kpfm_vcpd_V",
         "iv_current_A"]


def test_noise_free_deterministic_and_seeded_noise(small_packing, charged):
    a = simulate_spm(small_packing, soc=1.0, spm=_spm(seed=3), noise=False)
    for k in _MAPS:
        np.testing.assert_array_equal(getattr(a, k), getattr(charged, k))
    n1 = simulate_spm(small_packing, soc=1.0, spm=_spm(seed=5))
    n2 = simulate_spm(small_packing, soc=1.0, spm=_spm(seed=5))
    n3 = simulate_spm(small_packing, soc=1.0, spm=_spm(seed=6))
    for k in _MAPS:
        np.testing.assert_array_equal(getattr(n1, k), getattr(n2, k))
        assert not np.array_equal(getattr(n1, k), getattr(n3, k)), k
        assert not np.array_equal(getattr(n1, k), getattr(a, k)), k
    # noisy SSRM: log-normal around the truth, saturating near 2e9
    assert n1.ssrm_ohm.max() < 2.0e9 * 10 ** 0.2


def test_gsf_round_trip_exact(charged, tmp_path):
    from esim.io.gsf import read_gsf
    from esim.spm.maps import CHANNELS

    paths = charged.export_gsf(tmp_path)
    assert len(paths) == len(CHANNELS) + 1
    for name, (unit, _) in CHANNELS.items():
        ch = read_gsf(tmp_path / f"{name}.gsf")
        data = getattr(charged, name)
        np.testing.assert_array_equal(ch.data, data.astype(np.float32))
        assert ch.z_unit == unit and ch.xy_unit == "m"
        assert ch.pixel_size_m == pytest.approx(charged.pixel_size_u_m, rel=1e-12)
        assert ch.pixel_size_y_m == pytest.approx(charged.pixel_size_z_m, rel=1e-12)
        assert ch.y_offset_m == pytest.approx(charged.origin_z_m, rel=1e-12)


def test_hdf5_round_trip_and_figures(charged, tmp_path):
    charged.save(tmp_path / "m.h5")
    back = SPMMaps.load(tmp_path / "m.h5")
    for f in dataclasses.fields(SPMMaps):
        a, b = getattr(charged, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    assert back.spm_params == charged.spm_params
    assert back.ocv_vs_inli_V == charged.ocv_vs_inli_V
    assert np.isfinite(back.window_bottleneck_radius_m).any()
    # a file written before the bottleneck fields existed loads with NaN for them
    import h5py

    with h5py.File(tmp_path / "m.h5", "a") as h5:
        del h5["window_bottleneck_radius_m"], h5["window_bottleneck_kept_fraction"]
    old = SPMMaps.load(tmp_path / "m.h5")
    assert old.window_bottleneck_radius_m.shape == charged.window_particles.shape
    assert np.isnan(old.window_bottleneck_kept_fraction).all()
    np.testing.assert_array_equal(old.window_resistance_ohm, charged.window_resistance_ohm)
    for fn in ("plot", "plot_truth", "plot_iv"):
        p = getattr(charged, fn)(tmp_path / f"{fn}.png")
        assert p.stat().st_size > 10_000
    csv = charged.write_iv_csv(tmp_path / "iv.csv").read_text().splitlines()
    assert csv[0].startswith("time_s,voltage_V,I1_")
    assert len(csv) == 1 + charged.spm["iv_samples"]


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
def test_bad_inputs(small_packing):
    pk = small_packing
    with pytest.raises(InvalidParameters, match="outside the box"):
        simulate_spm(pk, spm=_spm(plane_position_m=float(pk.box_m[1]) * 1.5))
    with pytest.raises(InvalidParameters, match="wider than the section"):
        simulate_spm(pk, spm=_spm(fov_width_m=float(pk.box_m[0]) * 1.2))
    with pytest.raises(InvalidParameters, match="larger than"):
        simulate_spm(pk, spm=_spm(fov_height_m=float(pk.box_m[2]) * 1.2))
    with pytest.raises(InvalidParameters, match="pixels_u"):
        _spm(pixels_u=0)
    with pytest.raises(InvalidParameters, match="at least one pixel"):
        rasterize_section(pk, plane_axis=1, plane_position_m=-1, origin_u_m=0, origin_z_m=0,
                          width_m=1e-6, height_m=1e-6, pixels_u=0, pixels_z=4)
    with pytest.raises(InvalidParameters, match="plane_axis"):
        rasterize_section(pk, plane_axis=2, plane_position_m=-1, origin_u_m=0, origin_z_m=0,
                          width_m=1e-6, height_m=1e-6, pixels_u=4, pixels_z=4)
    with pytest.raises(InvalidParameters, match="soc"):
        simulate_spm(pk, soc=np.zeros(3), spm=_spm())
    with pytest.raises(InvalidParameters, match="once"):
        simulate_spm(pk, ocv_vs_li_V=4.0, ocv_vs_inli_V=3.0, spm=_spm())


def test_full_thickness_window(small_packing):
    m = simulate_spm(small_packing, spm=_spm(fov_z_anchor="full", pixels_z=32, pixels_u=32),
                     noise=False)
    assert m.extent_m[3] == pytest.approx(small_packing.box_m[2])
    assert m.origin_z_m == 0.0


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def test_cli_spm(small_params, tmp_path, capsys):
    import json

    from esim.cli.main import main

    cfg = tmp_path / "p.toml"
    small_params.replace(spm={"pixels_u": 48, "pixels_z": 48}).save(cfg)
    out = tmp_path / "out"
    assert main(["spm", str(cfg), "-o", str(out), "--soc", "1.0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["pixels"] == 48 * 48 and d["soc"] == 1.0
    for f in ("spm.h5", "spm_maps.png", "spm_truth.png", "iv.png", "iv.csv",
              "gsf/ssrm_ohm.gsf", "gsf/kpfm_vcpd_prime_V.gsf"):
        assert (out / f).exists(), f
    assert main(["spm", str(cfg), "-o", str(out), "--plane-position", "1.0", "--no-figures"]) == 2
    assert "outside the box" in capsys.readouterr().err
    assert main(["spm", str(cfg), "-o", str(out), "--pixels", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("esim: error:") and err.count("\n") == 1
    # the Fig. 4d choice of I-V points: two lowest- and two highest-resistance NMC
    out2 = tmp_path / "out2"
    assert main(["spm", str(cfg), "-o", str(out2), "--soc", "1.0", "--no-figures",
                 "--iv-choice", "2", "2", "0"]) == 0
    header = (out2 / "iv.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["time_s", "voltage_V"]
    assert len(header) == 6 and all("_NMC_" in h for h in header[2:]), header
    capsys.readouterr()
    assert main(["spm", str(cfg), "-o", str(tmp_path / "out3"), "--iv-choice", "1", "-1",
                 "0"]) == 2
    assert "--iv-choice: three counts >= 0" in capsys.readouterr().err
    assert not (tmp_path / "out3").exists()


def test_particle_readings_and_half_space_monotonic(small_packing, charged):
    r = charged.particle_readings()
    for p_id, med in zip(r["particle"], r["ssrm_ohm"]):
        assert med == pytest.approx(np.median(charged.ssrm_ohm[charged.particle == p_id]))
    assert r["pixels"].sum() == (charged.particle >= 0).sum()
    # Rayleigh monotonicity: removing material beyond the cut can only raise a resistance
    net = build_network(small_packing, carrier="electron", soc=1.0)
    full = resistance_to_terminal(net.n_nodes, net.conns, net.g, [net.cc_node], r["particle"])
    assert (r["network_resistance_ohm"] >= full * (1 - 1e-9)).all()
    assert (r["network_resistance_ohm"] > full * 1.001).any()


def test_scans_of_one_section_have_independent_noise(small_packing):
    """The pristine and charged maps are two measurements: their noise must differ (it was the
    same, so it cancelled in before/after differences).  Scan 0 is the default; a scan repeats
    with its seed."""
    s = _spm(pixels_u=32, pixels_z=32)
    a = simulate_spm(small_packing, soc=0.0, spm=s)
    b = simulate_spm(small_packing, soc=0.0, spm=s, scan=1)
    assert_maps_equal = np.testing.assert_array_equal
    assert_maps_equal(simulate_spm(small_packing, soc=0.0, spm=s, scan=0).ssrm_ohm, a.ssrm_ohm)
    assert_maps_equal(simulate_spm(small_packing, soc=0.0, spm=s, scan=1).kpfm_vcpd_V,
                      b.kpfm_vcpd_V)
    t = simulate_spm(small_packing, soc=0.0, spm=s, noise=False)
    se = a.phase == PHASE_SE
    for name in ("ssrm_ohm", "cafm_A", "kpfm_vcpd_V", "sem", "edx_ni_counts"):
        na = (getattr(a, name) - getattr(t, name))[se]
        nb = (getattr(b, name) - getattr(t, name))[se]
        assert np.abs(na).max() > 0 and np.abs(nb).max() > 0, name
        assert abs(np.corrcoef(na, nb)[0, 1]) < 0.2, name
    with pytest.raises(InvalidParameters, match="scan"):
        simulate_spm(small_packing, soc=0.0, spm=s, scan=-1)


def test_one_pixel_maps_are_refused_by_name():
    """A 1-pixel-wide map crashed in the SEM's edge gradient with a bare ValueError."""
    for key in ("pixels_u", "pixels_z"):
        with pytest.raises(InvalidParameters, match=key):
            SPMParams(**{key: 1})


def test_edx_gsf_carries_no_unit_gwyddion_would_misread(charged, tmp_path):
    """Gwyddion reads ZUnits "counts" as centi-"ounts" (or drops it): the EDX channels are
    written without a unit, their titles say counts."""
    from esim.io.gsf import read_gsf

    charged.export_gsf(tmp_path)
    for name in ("edx_s_counts", "edx_ni_counts"):
        ch = read_gsf(tmp_path / f"{name}.gsf")
        assert ch.z_unit == "" and ch.title.endswith("(counts)")


def test_fewer_iv_points_than_asked_are_named(small_packing, caplog):
    """--iv-choice 50 50 50 was clipped to the window's particles without a word."""
    with caplog.at_level("WARNING", logger="esim.spm.maps"):
        m = simulate_spm(small_packing, spm=_spm(), noise=False, iv_choice=(40, 0, 1))
    n_nmc = int(np.count_nonzero((m.window_phase == PHASE_NMC)
                                 & np.isfinite(m.window_resistance_ohm)))
    assert len(m.iv_pixels) == min(40, n_nmc) + 1 < 41
    assert f"the window holds {n_nmc} NMC sections with a path" in caplog.text
