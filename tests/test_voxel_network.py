"""Physics tests of esim.voxel_network: uniform block, series layers, non-percolation,
flux per layer, construction against a naive loop, and a PoreSpy/OpenPNM cross-check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from esim import solver as S
from esim import testing as T
from esim.errors import InvalidParameters, NotPercolating
from esim.voxel_network import voxel_network

DX = 0.5e-6  # m


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("boundary", ["face", "centre"])
@pytest.mark.parametrize("method", ["direct", "amg"])
def test_uniform_block_tortuosity_one(axis, boundary, method):
    im = T.uniform_block((5, 6, 7), label=2)
    net = voxel_network(im, {0: 0.0, 2: 3.5}, DX, axis=axis, boundary=boundary)
    r = net.effective_conductivity(method=method)
    assert r.sigma_eff_S_per_m == pytest.approx(3.5, rel=1e-10)
    assert abs(r.tau - 1) < 1e-10 and abs(r.tau_percolating - 1) < 1e-10
    n = im.shape[axis]
    L = n * DX if boundary == "face" else (n - 1) * DX
    assert r.length_m == pytest.approx(L)
    assert r.conductance_S == pytest.approx(3.5 * r.area_m2 / L, rel=1e-10)


def test_single_voxel_layer():
    """One layer thick along the axis: each voxel is two half-voxels in series."""
    net = voxel_network(np.ones((3, 4, 1), np.uint8), [0.0, 2.0], DX, axis=2)
    r = net.effective_conductivity()
    assert r.conductance_S == pytest.approx(12 * 2.0 * DX, rel=1e-12)
    assert abs(r.tau - 1) < 1e-12


def test_series_layers_harmonic_mean():
    """Layers of conductivities s1, s2 along the axis: the exact series sum."""
    im = np.ones((3, 3, 6), np.uint8)
    im[:, :, 3:] = 2
    s1, s2 = 1.0, 4.0
    net = voxel_network(im, {1: s1, 2: s2}, DX, axis=2)
    r = net.effective_conductivity()
    # resistivity-weighted length: 3 dx at s1 and 3 dx at s2
    sigma = 6 / (3 / s1 + 3 / s2)
    assert r.sigma_eff_S_per_m == pytest.approx(sigma, rel=1e-12)
    assert np.isnan(r.tau)  # two conducting phases, no reference given
    r2 = net.effective_conductivity(sigma_ref_S_per_m=s2)
    assert r2.tau == pytest.approx(s2 / sigma)
    # across the layers (parallel): arithmetic mean
    rp = voxel_network(im, {1: s1, 2: s2}, DX, axis=0).effective_conductivity()
    assert rp.sigma_eff_S_per_m == pytest.approx((s1 + s2) / 2, rel=1e-12)


def test_non_percolating_block_zero_with_report():
    im = T.non_percolating_block((6, 5, 8), axis=2)
    net = voxel_network(im, {0: 0.0, 1: 1.0}, DX, axis=2)
    r = net.effective_conductivity()
    assert r.sigma_eff_S_per_m == 0 and r.conductance_S == 0 and not r.percolating
    assert r.tau == np.inf and r.percolating_fraction == 0
    assert "1 touch only the source" in r.report and "1 touch only the sink" in r.report
    with pytest.raises(NotPercolating, match="no conducting path"):
        net.effective_conductivity(allow_zero=False)
    # across the cut the block still conducts
    r0 = voxel_network(im, {0: 0.0, 1: 1.0}, DX, axis=0).effective_conductivity()
    assert r0.percolating and r0.sigma_eff_S_per_m > 0


def test_empty_phase_is_zero_not_negative():
    im = np.zeros((4, 4, 4), np.uint8)
    r = voxel_network(im, {0: 0.0}, DX).effective_conductivity()
    assert r.sigma_eff_S_per_m == 0 and r.volume_fraction == 0


def test_flux_same_through_every_layer():
    rng = np.random.default_rng(0)
    im = (rng.random((10, 10, 12)) < 0.75).astype(np.uint8)
    net = voxel_network(im, {0: 0.0, 1: 1.0}, DX, axis=2)
    r = net.effective_conductivity(method="amg")
    sol = r.conductance.solution
    a, b = net.conns.T
    vox = (a < net.inlet_node) & (b < net.inlet_node)
    za = np.unravel_index(net.voxel_index[a[vox]], im.shape)[2]
    zb = np.unravel_index(net.voxel_index[b[vox]], im.shape)[2]
    axial = za != zb
    layer_flux = np.bincount(np.minimum(za, zb)[axial], sol.edge_current[vox][axial],
                             minlength=11)
    assert np.allclose(layer_flux, r.conductance_S, rtol=1e-7)
    assert r.flux_mismatch < 1e-8


def test_construction_matches_naive_loop():
    rng = np.random.default_rng(1)
    im = rng.integers(0, 3, (3, 4, 5)).astype(np.uint8)
    cond = {0: 0.0, 1: 2.0, 2: 5.0}
    net = voxel_network(im, cond, DX, axis=1)
    # naive: Python loop over voxel pairs
    node = {v: k for k, v in enumerate(net.voxel_index)}
    expected = {}
    for x, y, z in itertools.product(*map(range, im.shape)):
        s1 = cond[int(im[x, y, z])]
        if s1 == 0:
            continue
        for d in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
            q = (x + d[0], y + d[1], z + d[2])
            if any(c >= n for c, n in zip(q, im.shape)):
                continue
            s2 = cond[int(im[q])]
            if s2 == 0:
                continue
            i = node[np.ravel_multi_index((x, y, z), im.shape)]
            j = node[np.ravel_multi_index(q, im.shape)]
            expected[(i, j)] = 2 * s1 * s2 / (s1 + s2) * DX
        me = node[np.ravel_multi_index((x, y, z), im.shape)]
        if y == 0:
            expected[(me, net.inlet_node)] = 2 * s1 * DX
        if y == im.shape[1] - 1:
            expected[(me, net.outlet_node)] = 2 * s1 * DX
    got = {(int(a), int(b)): float(gg) for (a, b), gg in zip(net.conns, net.g)}
    assert got.keys() == expected.keys()
    for k in got:
        assert got[k] == pytest.approx(expected[k], rel=1e-14)
    assert net.conns.dtype == np.int64 and net.g.dtype == np.float64
    assert np.count_nonzero(im) + 2 == net.n_nodes


def test_voxel_network_agrees_with_lattice():
    """A uniform voxel block with boundary='centre' is the cubic lattice g N^2/(L-1)."""
    n, L = 4, 9
    net = voxel_network(T.uniform_block((n, n, L)), {1: 1.0}, DX, axis=2, boundary="centre")
    G = net.effective_conductivity().conductance_S
    assert G == pytest.approx(T.cubic_lattice(n, L, g_S=1.0 * DX).conductance_S, rel=1e-12)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(image=np.ones((2, 2)), conductivity={1: 1.0}), "3-D"),
        (dict(image=np.ones((2, 2, 2), float), conductivity={1: 1.0}), "integer"),
        (dict(image=np.full((2, 2, 2), 3), conductivity={1: 1.0}), r"labels \[3\]"),
        (dict(image=np.ones((2, 2, 2), int), conductivity={1: -1.0}), "finite and >= 0"),
        (dict(image=np.ones((2, 2, 2), int), conductivity={1: np.nan}), r"not given|finite"),
        (dict(image=np.ones((2, 2, 2), int), conductivity={1: 1.0}, voxel_size_m=0.0),
         "voxel_size_m"),
        (dict(image=np.ones((2, 2, 2), int), conductivity={1: 1.0}, axis=3), "axis"),
        (dict(image=np.ones((2, 2, 2), int), conductivity={1: 1.0}, boundary="wall"),
         "boundary"),
    ],
)
def test_bad_voxel_input(kw, match):
    kw.setdefault("voxel_size_m", DX)
    with pytest.raises(InvalidParameters, match=match):
        voxel_network(**kw)


def test_voxel_against_porespy_tortuosity_fd():
    """esim (boundary='centre', PoreSpy's convention) against porespy.tortuosity_fd."""
    pytest.importorskip("openpnm")
    ps = pytest.importorskip("porespy")
    im = ps.generators.blobs([40, 40, 40], porosity=0.5, seed=3)
    ref = ps.simulations.tortuosity_fd(im, axis=2, ftol=1e-6)
    net = voxel_network(im.astype(np.uint8), {0: 0.0, 1: 1.0}, 1e-6, axis=2,
                        boundary="centre")
    r = net.effective_conductivity()
    assert r.percolating_fraction == pytest.approx(ref.effective_porosity, rel=1e-12)
    assert r.tau_percolating == pytest.approx(ref.tortuosity, rel=0.01)
    # the face convention differs only by the boundary half-voxels: a few percent at n = 40
    rf = voxel_network(im.astype(np.uint8), {0: 0, 1: 1.0}, 1e-6, axis=2).effective_conductivity()
    assert rf.tau_percolating == pytest.approx(ref.tortuosity, rel=0.05)
    assert S.tortuosity_factor(r.volume_fraction, 1.0, r.sigma_eff_S_per_m) == pytest.approx(r.tau)


# ---------------------------------------------------------------------------------------------
# periodic sides
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["face", "centre"])
def test_periodic_path_through_the_wrap_hand_value(boundary):
    """Two columns joined only across the x wrap: (0, 0, 0..m) and (nx-1, 0, m..nz-1).  With
    insulating sides nothing spans; with x periodic the path is nz + 1 voxels in series, so by
    hand ``G = sigma dx / (nz + 1)`` ("face": nz edges plus two half-voxel terminals) or
    ``G = sigma dx / nz`` ("centre": nz edges between the merged end layers)."""
    nx, ny, nz, m, sig, dx = 5, 4, 12, 6, 3.0, 1e-6
    im = np.zeros((nx, ny, nz), np.uint8)
    im[0, 0, :m + 1] = 1
    im[nx - 1, 0, m:] = 1
    cond = {0: 0.0, 1: sig}
    for per in (False, (False, True, False)):
        r = voxel_network(im, cond, dx, boundary=boundary, periodic=per).effective_conductivity()
        assert not r.percolating and r.sigma_eff_S_per_m == 0 and r.percolating_fraction == 0
    g_hand = sig * dx / (nz + 1 if boundary == "face" else nz)
    for per in (True, (True, False, False)):
        net = voxel_network(im, cond, dx, boundary=boundary, periodic=per)
        r = net.effective_conductivity()
        assert r.conductance_S == pytest.approx(g_hand, rel=1e-10)
        assert r.percolating_fraction == pytest.approx(im.mean(), rel=1e-12)
    assert net.periodic == (True, False, False)


def test_periodic_uniform_block_and_roll_invariance():
    """A uniform block keeps tau = 1 with wrapped sides; a random image's periodic solve does
    not change when the image is rolled sideways (the wrap is an inner face like the others),
    while the insulating-sides solve does; and wrapping only adds conducting faces, so it
    conducts better (Rayleigh monotonicity)."""
    r = voxel_network(np.ones((6, 5, 10), np.uint8), {1: 2.0}, 1e-6,
                      periodic=True).effective_conductivity()
    assert r.tau == pytest.approx(1.0, abs=1e-10)
    im = (np.random.default_rng(3).random((14, 12, 16)) < 0.62).astype(np.uint8)
    cond = {0: 0.0, 1: 1.0}

    def sigma(img, per):
        return voxel_network(img, cond, 1e-6, periodic=per).effective_conductivity(
            method="direct").sigma_eff_S_per_m

    s_per, s_ins = sigma(im, True), sigma(im, False)
    rolled = np.roll(np.roll(im, 5, axis=0), -4, axis=1)
    assert sigma(rolled, True) == pytest.approx(s_per, rel=1e-9)
    assert abs(sigma(rolled, False) / s_ins - 1) > 1e-3
    assert s_per > s_ins > 0


@pytest.mark.parametrize("periodic, match", [
    ((True, True, True), "axis 2 carries the current"),
    (3, "a bool or three bools"),
    ((1, 0, 0), "a bool or three bools"),
    ((True, False), "a bool or three bools"),
])
def test_periodic_bad_values(periodic, match):
    with pytest.raises(InvalidParameters, match=match):
        voxel_network(np.ones((3, 3, 3), np.uint8), {1: 1.0}, 1e-6, periodic=periodic)
