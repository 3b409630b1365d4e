"""The solver's numba kernels against naive twins (scipy graph routines, COO assembly, explicit
``P.T @ A @ P``, dense solves), and the grid multigrid against the direct solver."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from esim import _solver_kernels as K
from esim import solver as S
from esim.voxel_network import voxel_network


def _random_edges(rng, n, m):
    conns = rng.integers(0, n, size=(m, 2))
    g = rng.lognormal(0.0, 2.0, m)
    g[rng.random(m) < 0.15] = 0.0  # "no edge"
    conns[:3] = conns[3:6][:, ::-1]  # reversed duplicates
    conns[6, 1] = conns[6, 0]  # a self-loop
    return conns.astype(np.int64), g


@pytest.mark.parametrize("seed", range(5))
def test_components_match_scipy(seed):
    rng = np.random.default_rng(seed)
    n = 60
    conns, g = _random_edges(rng, n, 50)
    n_comp, labels = K.components(n, conns, g)
    keep = g > 0
    adj = sp.coo_matrix((np.ones(keep.sum()), (conns[keep, 0], conns[keep, 1])), shape=(n, n))
    ref_n, ref = connected_components(adj, directed=False)
    assert n_comp == ref_n
    # the same partition: each label maps to exactly one reference label and back
    pairs = np.unique(np.stack([labels, ref], axis=1), axis=0)
    assert pairs.shape[0] == n_comp
    # labels are numbered in order of each component's smallest node
    first = np.array([np.flatnonzero(labels == c)[0] for c in range(n_comp)])
    assert np.all(np.diff(first) > 0)


def _naive_reduced(n, conns, g, free, vfixed):
    """The COO assembly the numba kernel replaced (dense, for small networks)."""
    L = np.zeros((n, n))
    for (i, j), gij in zip(conns, g):
        if i != j:
            L[i, i] += gij
            L[j, j] += gij
            L[i, j] -= gij
            L[j, i] -= gij
    f = np.flatnonzero(free)
    fixed = ~np.isnan(vfixed)
    b = -L[np.ix_(f, np.flatnonzero(fixed))] @ vfixed[fixed]
    return L[np.ix_(f, f)], b


@pytest.mark.parametrize("seed", range(5))
def test_reduced_system_matches_naive_assembly(seed):
    rng = np.random.default_rng(seed)
    n = 40
    conns, g = _random_edges(rng, n, 120)
    vfixed = np.full(n, np.nan)
    vfixed[:3] = [1.0, 0.5, 0.0]
    n_comp, labels = K.components(n, conns, g)
    touching = np.zeros(n_comp, bool)
    touching[labels[:3]] = True
    free = touching[labels] & np.isnan(vfixed)
    A, b, _free_idx = S._reduced_system(n, conns, g, free, vfixed)
    A_ref, b_ref = _naive_reduced(n, conns, g, free, vfixed)
    np.testing.assert_allclose(A.toarray(), A_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(b, b_ref, rtol=1e-13, atol=1e-13)
    assert A.has_sorted_indices
    Ac = A.copy()
    Ac.sum_duplicates()
    assert Ac.nnz == A.nnz  # no duplicates left


def test_edge_currents_match_numpy():
    rng = np.random.default_rng(3)
    n = 30
    conns, g = _random_edges(rng, n, 80)
    v = rng.random(n)
    active = rng.random(n) < 0.8
    cur, net = K.edge_currents(conns, g, v, active)
    live = active[conns[:, 0]] & active[conns[:, 1]]
    ref = np.where(live, g * (v[conns[:, 0]] - v[conns[:, 1]]), 0.0)
    np.testing.assert_allclose(cur, ref)
    ref_net = np.bincount(conns[:, 0], ref, n) - np.bincount(conns[:, 1], ref, n)
    np.testing.assert_allclose(net, ref_net, atol=1e-14)


def _stencil_matrix(d, wx, wy, wz):
    """Dense matrix of a 7-point stencil (``d`` diagonal, ``-w`` couplings)."""
    n = d.size
    idx = np.arange(n).reshape(d.shape)
    M = np.diag(d.ravel()).astype(float)
    for w, lo, hi in ((wx, idx[:-1], idx[1:]), (wy, idx[:, :-1], idx[:, 1:]),
                      (wz, idx[:, :, :-1], idx[:, :, 1:])):
        sl = tuple(slice(0, s) for s in lo.shape)
        M[lo.ravel(), hi.ravel()] -= w[sl].ravel()
        M[hi.ravel(), lo.ravel()] -= w[sl].ravel()
    return M


def _voxel_system(shape, porosity, seed, boundary="face", contrast=7.0):
    rng = np.random.default_rng(seed)
    im = (rng.random(shape) < porosity).astype(np.uint8)
    im[..., 0] = 1
    im[..., -1] = 1
    lab = rng.integers(1, 3, shape).astype(np.uint8) * im  # two phases of different sigma
    net = voxel_network(lab, {0: 0.0, 1: 1.0, 2: contrast}, 1e-6, boundary=boundary)
    fixed = np.array([net.inlet_node, net.outlet_node])
    n_comp, labels = S.network_components(net.n_nodes, net.conns, net.g)
    touching = np.zeros(n_comp, bool)
    touching[labels[fixed]] = True
    vfix = np.full(net.n_nodes, np.nan)
    vfix[fixed] = [1.0, 0.0]
    free = touching[labels] & np.isnan(vfix)
    A, b, free_idx = S._reduced_system(net.n_nodes, net.conns, net.g, free, vfix)
    return net, A, b, net.voxel_index[free_idx]


@pytest.mark.parametrize("shape", [(6, 5, 7), (8, 8, 8), (5, 1, 9)])
def test_grid_coarse_operators_equal_galerkin_products(shape):
    _net, A, _b, pos = _voxel_system(shape, 0.7, 1)
    ix, iy, iz = np.unravel_index(pos, shape)
    cshape = np.array([(k + 1) // 2 for k in shape])
    cell = (ix // 2 * cshape[1] + iy // 2) * cshape[2] + iz // 2
    ok, d, wx, wy, wz = K.csr_to_grid(A.indptr, A.indices, A.data, cell, ix, iy, iz, cshape)
    assert ok
    P = sp.csr_matrix((np.ones(pos.size), (np.arange(pos.size), cell)),
                      shape=(pos.size, int(np.prod(cshape))))
    np.testing.assert_allclose(_stencil_matrix(d, wx, wy, wz), (P.T @ A @ P).toarray(),
                               rtol=1e-12, atol=1e-12)
    # and once more, stencil to stencil
    D, WX, WY, WZ = K.grid_coarsen(d, wx, wy, wz)
    c2 = np.array(D.shape)
    jx, jy, jz = np.meshgrid(*[np.arange(k) for k in d.shape], indexing="ij")
    cell2 = ((jx // 2 * c2[1] + jy // 2) * c2[2] + jz // 2).ravel()
    P2 = sp.csr_matrix((np.ones(d.size), (np.arange(d.size), cell2)),
                       shape=(d.size, int(np.prod(c2))))
    Ad = _stencil_matrix(d, wx, wy, wz)
    np.testing.assert_allclose(_stencil_matrix(D, WX, WY, WZ), P2.T.toarray() @ Ad @ P2,
                               rtol=1e-12, atol=1e-12)


def test_grid_kernels_match_dense():
    rng = np.random.default_rng(0)
    shape = (5, 4, 6)
    w = [rng.random(shape) for _ in range(3)]
    for a, ax in zip(w, range(3)):  # no coupling past the last cell
        np.moveaxis(a, ax, 0)[-1] = 0.0
    d = 6.0 + rng.random(shape)
    d[0, 0, 0] = 0.0  # an empty cell: no couplings, stays 0
    for a in w:
        a[0, 0, 0] = 0.0
    M = _stencil_matrix(d, *w)
    M[0, :] = 0.0
    M[:, 0] = 0.0
    x = rng.random(shape)
    x[0, 0, 0] = 0.0
    bvec = rng.random(shape)
    y = np.empty(shape)
    K.grid_matvec(d, *w, x, y)
    np.testing.assert_allclose(y.ravel(), M @ x.ravel(), atol=1e-12)
    r = np.empty(shape)
    K.grid_residual(d, *w, x, bvec, r)
    np.testing.assert_allclose(r.ravel(), bvec.ravel() - M @ x.ravel(), atol=1e-12)
    # one red-black half-sweep is a Gauss-Seidel update of one colour (a Jacobi update
    # as well, since the colour's cells do not couple)
    colour = (np.indices(shape).sum(axis=0) % 2 == 0)
    xs = x.copy()
    K.grid_gs_colour(d, *w, xs, bvec, 0)
    mask = colour & (d > 0)
    ref = x.copy()
    ref[mask] = x[mask] + r[mask] / d[mask]
    np.testing.assert_allclose(xs, ref, atol=1e-12)


@pytest.mark.parametrize("shape,boundary", [((9, 8, 10), "face"), ((13, 11, 9), "centre"),
                                            ((24, 20, 22), "face")])
def test_grid_amg_matches_direct(shape, boundary):
    _net, A, b, pos = _voxel_system(shape, 0.65, 2, boundary)
    be = S.GridAMGBackend(shape, pos, rtol=1e-12)
    be.max_coarse = 10  # force several levels on a small grid
    x, info = be.solve(A, b)
    assert info["converged"] and info["levels"] >= 3
    xd, _ = S.DirectBackend().solve(A, b)
    np.testing.assert_allclose(x, xd, rtol=0, atol=1e-9 * np.abs(xd).max())
    assert np.linalg.norm(b - A @ x) <= 1e-12 * np.linalg.norm(b)


def test_grid_amg_high_contrast():
    """Two phases 1e5 apart (e.g. SE and NMC ionic conductivities)."""
    _, A, b, pos = _voxel_system((20, 18, 16), 0.8, 6, "centre", contrast=1e5)
    x, info = S.GridAMGBackend((20, 18, 16), pos, rtol=1e-10).solve(A, b)
    assert info["converged"] and "levels" in info  # no fallback
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
    # a residual of 1e-10 bounds the error by the condition number (~1e5 here)
    xd, _ = S.DirectBackend().solve(A, b)
    np.testing.assert_allclose(x, xd, rtol=0, atol=1e-5 * np.abs(xd).max())


def test_grid_amg_falls_back_when_not_a_grid():
    _net, A, b, pos = _voxel_system((6, 6, 6), 0.8, 4)
    A = A.tolil()
    A[0, A.shape[0] - 1] = A[A.shape[0] - 1, 0] = -0.5  # couples two distant voxels
    A[0, 0] += 0.5
    A[A.shape[0] - 1, A.shape[0] - 1] += 0.5
    A = A.tocsr()
    be = S.GridAMGBackend((6, 6, 6), pos, rtol=1e-12)
    assert be.setup(A) is None
    x, _info = be.solve(A, b)  # smoothed aggregation instead
    np.testing.assert_allclose(A @ x, b, atol=1e-10 * np.abs(b).max())


def test_voxel_network_uses_grid_amg_and_agrees_with_direct(monkeypatch):
    def no_sa(*a, **k):
        raise AssertionError("the voxel network fell back to smoothed aggregation")

    monkeypatch.setattr(S.AMGBackend, "solve", no_sa)
    rng = np.random.default_rng(5)
    im = (rng.random((30, 30, 30)) < 0.7).astype(np.uint8)
    net = voxel_network(im, {0: 0.0, 1: 1.0}, 1e-6, boundary="centre")
    amg = net.effective_conductivity(method="amg")
    direct = net.effective_conductivity(method="direct")
    assert amg.method == "amg" and amg.iterations > 0
    assert amg.conductance_S == pytest.approx(direct.conductance_S, rel=1e-9)
    assert amg.flux_mismatch < 1e-8


def test_amg_with_reordering_matches_direct(monkeypatch):
    from esim import testing as T

    net = T.random_particle_network(3000, rng=1)
    monkeypatch.setattr(S.AMGBackend, "reorder_min", 100)
    a = S.conductance_between(net.n_nodes, net.conns, net.g, net.source, net.sink,
                              method="amg")
    d = S.conductance_between(net.n_nodes, net.conns, net.g, net.source, net.sink,
                              method="direct")
    assert a.conductance_S == pytest.approx(d.conductance_S, rel=1e-9)
    np.testing.assert_allclose(a.solution.potential, d.solution.potential, atol=1e-9,
                               equal_nan=True)


def test_pcg_restarts_from_x0():
    rng = np.random.default_rng(0)
    n = 50
    B = sp.random(n, n, density=0.1, random_state=1)
    A = sp.csr_matrix(B @ B.T + n * sp.eye(n))
    b = rng.random(n)
    x, _it, ok = S._pcg(A, b, lambda r: r / A.diagonal(), 1e-12, 500)
    assert ok and np.linalg.norm(A @ x - b) <= 1e-12 * np.linalg.norm(b)
    _x2, it2, ok2 = S._pcg(A, b, lambda r: r / A.diagonal(), 1e-12, 500, x0=x)
    assert ok2 and it2 <= 1


def _naive_face_edges(nm, im, ghm):
    """The vectorised numpy construction the numba kernel replaced."""
    conns, g = [], []
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        both = (nm[lo] >= 0) & (nm[hi] >= 0)
        a, b = nm[lo][both], nm[hi][both]
        ga = ghm[im[lo][both], im[hi][both]]
        keep = a != b
        conns.append(np.stack([a[keep], b[keep]], axis=1))
        g.append(ga[keep])
    return np.concatenate(conns).astype(np.int64), np.concatenate(g)


@pytest.mark.parametrize("boundary", ["face", "centre"])
def test_voxel_face_edges_match_numpy(boundary):
    rng = np.random.default_rng(8)
    im = rng.integers(0, 3, (7, 6, 5)).astype(np.uint8)
    sigma = np.array([0.0, 1.0, 4.0])
    net = voxel_network(im, sigma, 1e-6, axis=1, boundary=boundary)
    nm = np.full(im.shape, -1, dtype=np.int64)
    nm.ravel()[net.voxel_index] = np.arange(net.voxel_index.size)
    if boundary == "centre":
        first = np.zeros(im.shape, bool)
        first[:, 0] = True
        last = np.zeros(im.shape, bool)
        last[:, -1] = True
        nm[first & (im > 0)] = net.inlet_node
        nm[last & (im > 0)] = net.outlet_node
    hm = np.where((sigma[:, None] > 0) & (sigma[None, :] > 0),
                  2 * sigma[:, None] * sigma[None, :] / (sigma[:, None] + sigma[None, :] + 1e-300),
                  0.0) * 1e-6
    conns, g = K.voxel_face_edges(nm, im, hm)
    ref_c, ref_g = _naive_face_edges(nm, im, hm)
    np.testing.assert_array_equal(conns, ref_c)
    np.testing.assert_allclose(g, ref_g, rtol=1e-15)
    np.testing.assert_array_equal(net.conns[: conns.shape[0]], conns)


def test_multigrid_cycles_hold_no_reference_cycles():
    """A discarded hierarchy is freed by reference counting alone (no reference cycle through
    the cycle's recursion): the charge rebuilds its preconditioner tens of times, and a voxel
    hierarchy at 200^3 holds gigabytes."""
    import gc
    import weakref

    _net, A, b, pos = _voxel_system((12, 10, 9), 0.7, 2, "face")
    shape = (12, 10, 9)
    gc.disable()
    try:
        # smoothed aggregation (the particle networks' and the charge's V-cycle)
        d = 1.0 / np.sqrt(A.diagonal())
        As = sp.csr_matrix(A.multiply(d[:, None]).multiply(d[None, :]))
        hier = S._sa_hierarchy(As, 1.0 / d, max_coarse=20)
        assert len(hier[0]) >= 2
        probe = weakref.ref(hier[0][-1])
        V = S._vcycle_operator(*hier)
        V.matvec(b)
        del hier, V
        assert probe() is None
        # the voxel grid's K-cycle
        be = S.GridAMGBackend(shape, pos, rtol=1e-10)
        be.max_coarse = 10
        h = be.setup(A)
        probe = weakref.ref(h[1][-1][0])  # the coarsest level's diagonal
        M = be.preconditioner(h)
        M(b[h[0][1]])
        del h, M
        assert probe() is None
    finally:
        gc.enable()
