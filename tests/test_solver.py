"""Physics tests of esim.solver: exact circuits, lattices, conservation, reciprocity,
Rayleigh monotonicity, backends against a dense naive twin, percolation, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esim import solver as S
from esim import testing as T
from esim.errors import InvalidParameters, NotPercolating, SolverDidNotConverge

METHODS = ["direct", "amg"]


def _G(net, **kw):
    return S.conductance_between(net.n_nodes, net.conns, net.g, net.source, net.sink, **kw)


# ----------------------------------------------------------------------------- exact circuits
@pytest.mark.parametrize("method", METHODS)
def test_series_chain_exact(method):
    net = T.resistor_chain([1.0, 2.5, 0.5, 4.0])
    r = _G(net, method=method)
    assert r.conductance_S == pytest.approx(1 / 8.0, rel=1e-10)
    # the potential falls linearly with the accumulated resistance
    v = r.solution.potential
    assert v == pytest.approx(1 - np.cumsum([0, 1.0, 2.5, 0.5, 4.0]) / 8.0, abs=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_parallel_exact(method):
    net = T.parallel_resistors([0.5, 1.5, 3.0])
    assert _G(net, method=method).conductance_S == pytest.approx(5.0, rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_series_parallel_exact(method):
    net = T.series_parallel()
    r = _G(net, method=method)
    assert r.conductance_S == pytest.approx(net.conductance_S, rel=1e-10)
    assert r.flux_mismatch < 1e-10


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n,length", [(1, 2), (3, 7), (6, 4), (10, 12)])
def test_cubic_lattice_exact(method, n, length):
    net = T.cubic_lattice(n, length, g_S=0.7)
    r = _G(net, method=method)
    assert r.conductance_S == pytest.approx(0.7 * n * n / (length - 1), rel=1e-9)
    assert net.conductance_S == pytest.approx(0.7 * n * n / (length - 1))
    # every layer is an equipotential at the linear profile
    v = r.solution.potential.reshape(n, n, length)
    assert np.allclose(v, 1 - np.arange(length) / (length - 1), atol=1e-9)


def test_dead_end_carries_zero_current():
    net = T.dead_end_network()
    r = _G(net)
    sol = r.solution
    assert r.conductance_S == pytest.approx(net.conductance_S, rel=1e-12)
    assert np.all(np.abs(sol.edge_current[net.extra["dead_end_edges"]]) < 1e-14)
    b = net.extra["branch_node"]
    assert sol.potential[net.extra["dead_end_nodes"]] == pytest.approx(sol.potential[b])
    # the main chain carries the full current
    assert sol.edge_current[[0, 1, 2]] == pytest.approx([1 / 3] * 3)


# ----------------------------------------------------------------------------- conservation
@pytest.mark.parametrize("method", METHODS)
def test_kirchhoff_at_every_free_node(method):
    net = T.random_lattice_network((7, 6, 9), rng=3, p_bond=0.75)
    r = _G(net, method=method, allow_zero=False)
    sol = r.solution
    i, j = net.conns.T
    net_out = np.bincount(i, sol.edge_current, net.n_nodes) - np.bincount(
        j, sol.edge_current, net.n_nodes)
    fixed = np.zeros(net.n_nodes, bool)
    fixed[net.source] = fixed[net.sink] = True
    assert np.max(np.abs(net_out[~fixed])) < 1e-8 * r.current_A
    # injections: what enters at the source leaves at the sink
    assert sol.node_injection[net.source].sum() == pytest.approx(
        -sol.node_injection[net.sink].sum(), rel=1e-8)
    assert np.all(sol.node_injection[~fixed] == 0)
    assert r.flux_mismatch < 1e-8 and r.residual < 1e-8


def test_excluded_clusters_are_reported_not_repaired():
    # chain 0-1-2 plus an isolated pair 3-4 and an isolated node 5
    sol = S.solve_network(6, [[0, 1], [1, 2], [3, 4]], [1.0, 1.0, 1.0], [0, 2], [1.0, 0.0])
    assert sol.n_excluded_clusters == 2
    assert sol.excluded_nodes.tolist() == [3, 4, 5]
    assert np.isnan(sol.potential[[3, 4, 5]]).all()
    assert sol.potential[1] == pytest.approx(0.5)
    assert sol.active.tolist() == [True, True, True, False, False, False]
    assert sol.edge_current[2] == 0
    assert "shape" not in repr(sol) and "(6,)" in repr(sol)  # repr shows shapes


# ----------------------------------------------------------------------------- reciprocity
def _random_graph(rng, n=14, m=30):
    rng = np.random.default_rng(rng)
    conns = rng.integers(0, n, (m, 2))
    # a spanning chain keeps everything connected
    chain = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    conns = np.concatenate([conns, chain])
    g = rng.uniform(0.1, 5.0, conns.shape[0])
    return n, conns, g


def test_resistance_to_terminal_matches_one_solve_per_node():
    n, conns, g = _random_graph(5)
    ground = np.array([0, 7])
    query = np.array([1, 2, 3, 13, 0, 2])  # repeats and a ground node
    R = S.resistance_to_terminal(n, conns, g, ground, query)
    for q, r in zip(query, R):
        if q in ground:
            assert r == 0
        else:
            G = S.conductance_between(n, conns, g, [q], ground).conductance_S
            assert r == pytest.approx(1 / G, rel=1e-10)


def test_resistance_to_terminal_chunks_and_unconnected():
    n, conns, g = _random_graph(6)
    conns = np.concatenate([conns, [[n, n + 1]]])  # a cluster away from ground
    g = np.append(g, 1.0)
    q = np.arange(n + 2)
    R_big = S.resistance_to_terminal(n + 2, conns, g, [0], q)
    R_small = S.resistance_to_terminal(n + 2, conns, g, [0], q, chunk_bytes=1)  # 1 column/block
    assert np.array_equal(R_big, R_small)
    R_amg = S.resistance_to_terminal(n + 2, conns, g, [0], q, method="amg")
    assert np.allclose(R_amg, R_big, rtol=1e-8)
    assert np.isinf(R_big[[n, n + 1]]).all() and R_big[0] == 0
    assert np.all(R_big[1:n] > 0)


def test_resistance_to_terminal_amg_on_lattice():
    net = T.random_lattice_network((6, 6, 6), rng=4)
    q = np.arange(0, net.n_nodes, 17)
    a = S.resistance_to_terminal(net.n_nodes, net.conns, net.g, net.sink, q)
    b = S.resistance_to_terminal(net.n_nodes, net.conns, net.g, net.sink, q, method="amg")
    assert np.allclose(a, b, rtol=1e-8)
    with pytest.raises(InvalidParameters, match="'direct' or 'amg'"):
        S.resistance_to_terminal(net.n_nodes, net.conns, net.g, net.sink, q, method="lu")


def test_transfer_conductance_reciprocity():
    """Drive a (1 V) with the rest of the terminals grounded: current into b equals current
    into a when b is driven instead (R_ab = R_ba)."""
    n, conns, g = _random_graph(11, n=20, m=45)
    a, b, c = 3, 15, 9
    s1 = S.solve_network(n, conns, g, [a, b, c], [1.0, 0.0, 0.0])
    s2 = S.solve_network(n, conns, g, [b, a, c], [1.0, 0.0, 0.0])
    assert s1.node_injection[b] == pytest.approx(s2.node_injection[a], rel=1e-10)
    assert s1.flux_mismatch < 1e-10


# ----------------------------------------------------------------------------- Rayleigh
@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 9),
    factor=st.floats(1.0, 100.0),
    edge=st.integers(0, 100),
)
def test_rayleigh_monotonicity(seed, n, factor, edge):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(n, 3 * n))
    conns = rng.integers(0, n, (m, 2))
    g = rng.uniform(0.0, 2.0, m)
    g[rng.random(m) < 0.3] = 0.0  # some absent edges: raising them may connect the terminals
    g2 = g.copy()
    g2[edge % m] = g2[edge % m] * factor + (factor - 1.0)
    r1 = S.conductance_between(n, conns, g, [0], [n - 1], allow_zero=True).conductance_S
    r2 = S.conductance_between(n, conns, g2, [0], [n - 1], allow_zero=True).conductance_S
    assert r2 >= r1 * (1 - 1e-10) - 1e-14


def test_terminal_node_listed_twice_counts_once():
    """Two 1 S resistors in series: 0.5 S whether the source node is listed once or twice
    (listed twice, its current was summed twice: 1.0 S, with no flux mismatch to show it)."""
    conns, g = [[0, 1], [1, 2]], [1.0, 1.0]
    for src, snk in (([0], [2]), ([0, 0], [2]), ([0], [2, 2, 2])):
        assert S.conductance_between(3, conns, g, src, snk).conductance_S == pytest.approx(
            0.5, rel=1e-12)


def test_self_loop_does_not_cancel_a_tiny_conductance():
    """Regression (found by the Rayleigh property test): a node held only by a 2e-16 S edge
    and carrying a 1 S self-loop must not get a zero pivot from 2g - 2g round-off."""
    conns = [[0, 2], [1, 1], [1, 0]]
    r = S.conductance_between(3, conns, [2.0, 1.05, 2.2e-16], [0], [2])
    assert r.conductance_S == pytest.approx(2.0, rel=1e-14)
    assert S.laplacian(3, np.array([[1, 1]]), np.array([1.0])).nnz <= 3


# ----------------------------------------------------------------------------- naive twin
def _naive_dense_potential(n, conns, g, fixed, values):
    """Dense Laplacian by a Python loop over edges, Dirichlet rows, np.linalg.solve."""
    L = np.zeros((n, n))
    for (a, b), gg in zip(conns, g):
        L[a, a] += gg
        L[b, b] += gg
        L[a, b] -= gg
        L[b, a] -= gg
    rhs = np.zeros(n)
    for f, v in zip(fixed, values):
        L[f, :] = 0
        L[f, f] = 1
        rhs[f] = v
    return np.linalg.solve(L, rhs)


@pytest.mark.parametrize("seed", range(4))
def test_backends_against_dense_twin(seed):
    net = T.random_lattice_network((4, 5, 6), rng=seed, g_range=(1e-3, 1e3))
    fixed = np.concatenate([net.source, net.sink])
    vals = np.concatenate([np.full(net.source.size, 2.0), np.full(net.sink.size, -0.5)])
    ref = _naive_dense_potential(net.n_nodes, net.conns, net.g, fixed, vals)
    for method in ["direct", "amg", "auto"]:
        sol = S.solve_network(net.n_nodes, net.conns, net.g, fixed, vals, method=method)
        assert np.allclose(sol.potential, ref, rtol=0, atol=1e-8), method
    assert S.laplacian(net.n_nodes, net.conns, net.g).sum() == pytest.approx(0, abs=1e-9)


def test_amg_high_contrast_converges():
    """Six decades of conductance contrast: AMG-CG rebuilds its hierarchy with a strength
    threshold and still meets the tolerance, agreeing with the direct solve."""
    net = T.random_lattice_network((12, 12, 12), rng=5, g_range=(1e-3, 1e3))
    a = _G(net, method="amg")
    b = _G(net, method="direct")
    assert a.conductance_S == pytest.approx(b.conductance_S, rel=1e-8)
    assert a.residual <= 1e-9


def test_auto_falls_back_to_direct_with_warning(monkeypatch, caplog):
    net = T.random_lattice_network((10, 10, 10), rng=1)  # above the AMG coarsest size
    monkeypatch.setattr(S, "AUTO_DIRECT_MAX_UNKNOWNS", 0)
    with caplog.at_level(logging.WARNING, logger="esim.solver"):
        r = _G(net, method="auto", maxiter=1, rtol=1e-12)
    assert r.solution.method == "direct"
    assert any("falling back" in rec.message for rec in caplog.records)
    ref = _G(net, method="direct")
    assert r.conductance_S == pytest.approx(ref.conductance_S, rel=1e-10)


def test_amg_without_fallback_raises():
    net = T.random_lattice_network((10, 10, 10), rng=1)
    with pytest.raises(SolverDidNotConverge, match="did not reach"):
        _G(net, method="amg", maxiter=1, rtol=1e-12)


# ----------------------------------------------------------------------------- percolation
def _spanning_probability(L, p, n_samples, rng, n_solve=3):
    """Share of realisations whose open bonds (g = 1, closed g = 0) connect the two faces, by
    esim's ``network_components``; the first ``n_solve`` realisations are also solved
    (``conductance_between``), whose ``percolating`` flag and conductance must agree."""
    conns = T._lattice_edges((L, L, L))
    N = L**3
    idx = np.arange(N).reshape(L, L, L)
    top, bottom = idx[:, :, 0].ravel(), idx[:, :, -1].ravel()
    hits = 0
    for k in range(n_samples):  # loop over realisations, not nodes
        g = (rng.random(conns.shape[0]) < p).astype(np.float64)
        _, lab = S.network_components(N, conns, g)
        span = np.intersect1d(lab[top], lab[bottom]).size > 0
        if k < n_solve:
            res = S.conductance_between(N, conns, g, top, bottom, allow_zero=True)
            assert res.percolating == span and (res.conductance_S > 0) == span
        hits += span
    return hits / n_samples


def test_bond_percolation_threshold_simple_cubic():
    """Spanning probability of bond percolation crosses 1/2 near p_c = 0.2488."""
    rng = np.random.default_rng(2024)
    ps = np.array([0.20, 0.23, 0.26, 0.30])
    for L in (8, 12):
        R = np.array([_spanning_probability(L, p, 100, rng) for p in ps])
        assert R[0] < 0.25 and R[-1] > 0.75
        assert np.all(np.diff(R) >= -0.1)
        k = int(np.argmax(R >= 0.5))
        p_half = ps[k - 1] + (0.5 - R[k - 1]) * (ps[k] - ps[k - 1]) / (R[k] - R[k - 1])
        assert abs(p_half - 0.2488) < 0.04, (L, R)


# ----------------------------------------------------------------------------- bad input
def test_no_path_raises_with_cluster_report():
    conns = [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(NotPercolating, match=r"3 clusters.*1 touch only the source.*"
                                             r"1 touch only the sink.*1 touch neither"):
        S.conductance_between(6, conns, [1.0, 1.0, 1.0], [0], [3])
    r = S.conductance_between(6, conns, [1.0, 1.0, 1.0], [0], [3], allow_zero=True)
    assert r.conductance_S == 0 and not r.percolating and "touch only the source" in r.report


def test_zero_conductance_edge_is_no_path():
    with pytest.raises(NotPercolating):
        S.conductance_between(2, [[0, 1]], [0.0], [0], [1])


@pytest.mark.parametrize(
    "conns,g,match",
    [
        ([[0, 1], [1, 2]], [1.0, np.nan], r"1 of 2 edges.*first bad edge index 1"),
        ([[0, 1], [1, 2]], [-1.0, 1.0], r"1 of 2 edges.*first bad edge index 0"),
        ([[0, 1], [1, 2]], [1.0, np.inf], r"finite"),
        ([[0, 1], [1, 3]], [1.0, 1.0], r"outside \[0, 3\).*first bad edge index 1"),
        ([[0, -1], [1, 2]], [1.0, 1.0], r"outside"),
        ([[0, 1, 2]], [1.0], r"shape \(M, 2\)"),
        ([[0, 1], [1, 2]], [1.0], r"shape \(2,\)"),
        ([[0.0, 1.0]], [1.0], r"integers"),
    ],
)
def test_bad_network_input(conns, g, match):
    with pytest.raises(InvalidParameters, match=match):
        S.solve_network(3, conns, g, [0], [1.0])


def test_bad_terminals_and_options():
    c, g = [[0, 1], [1, 2]], [1.0, 1.0]
    with pytest.raises(InvalidParameters, match="at least one node"):
        S.solve_network(3, c, g, [], [])
    with pytest.raises(InvalidParameters, match="fixed_nodes"):
        S.solve_network(3, c, g, [5], [1.0])
    with pytest.raises(InvalidParameters, match="finite"):
        S.solve_network(3, c, g, [0], [np.nan])
    with pytest.raises(InvalidParameters, match=r"shape \(2,\)"):
        S.solve_network(3, c, g, [0, 2], [1.0, 0.0, 0.5])
    with pytest.raises(InvalidParameters, match="twice"):
        S.solve_network(3, c, g, [0, 0], [1.0, 0.0])
    with pytest.raises(InvalidParameters, match="'auto', 'direct', 'amg'"):
        S.solve_network(3, c, g, [0], [1.0], method="cholesky")
    with pytest.raises(InvalidParameters, match="disjoint"):
        S.conductance_between(3, c, g, [0, 1], [1])
    with pytest.raises(InvalidParameters, match="n_nodes"):
        S.solve_network(0, c, g, [0], [1.0])
    # a misspelt option or method fails on a network without a path too, not only with one
    for kw, match in (({"rtoll": 1e-3}, "unknown options"), ({"method": "bogus"}, "'amg'")):
        for conns in ([[0, 1]], c):  # no path from 0 to 2; a path
            with pytest.raises(InvalidParameters, match=match):
                S.conductance_between(3, conns, [1.0] * len(conns), [0], [2], allow_zero=True,
                                      **kw)


# ----------------------------------------------------------------------------- helpers
def test_effective_conductivity_and_tortuosity_helpers():
    assert S.effective_conductivity(2.0, 4.0, 2.0) == 1.0
    assert S.tortuosity_factor(1.0, 3.0, 3.0) == 1.0
    assert S.tortuosity_factor(0.5, 10.0, 2.5) == 2.0
    assert S.tortuosity_factor(0.5, 10.0, 0.0) == np.inf
    with pytest.raises(InvalidParameters):
        S.effective_conductivity(1.0, 0.0, 1.0)
    with pytest.raises(InvalidParameters):
        S.tortuosity_factor(1.5, 1.0, 1.0)


def test_particle_network_backends_agree():
    net = T.random_particle_network(3000, rng=7, mean_degree=8)
    a = _G(net, method="direct")
    b = _G(net, method="amg")
    assert a.conductance_S == pytest.approx(b.conductance_S, rel=1e-8)
    assert a.solution.n_excluded_clusters == b.solution.n_excluded_clusters


@pytest.mark.parametrize("method", ["direct", "amg", "auto"])
def test_singular_to_working_precision_is_an_esim_error(method):
    """A dead-end cluster hanging on by 1e-17 S beside 1 S edges makes the reduced Laplacian
    exactly singular in float64 (1 + 1e-17 == 1): SuperLU's bare RuntimeError becomes
    SolverDidNotConverge, which names the cause."""
    from esim.errors import SolverDidNotConverge

    conns = [[0, 1], [1, 4], [1, 2], [2, 3]]
    with pytest.raises(SolverDidNotConverge, match="singular to working precision"):
        S.solve_network(5, conns, [1.0, 1.0, 1e-17, 1.0], [0, 4], [1.0, 0.0], method=method)


def test_resistance_to_terminal_amg_at_a_high_conductance_contrast():
    """A two-phase lattice with the NMC-to-glass contrast of 1e6: the AMG path falls back to
    the theta = 0.1 hierarchy, as AMGBackend does, and agrees with the direct one within 100
    iterations (before, its plain CG on the theta = 0 hierarchy did not converge in them)."""
    n = 20
    idx = np.arange(n**3).reshape(n, n, n)
    conns = np.concatenate([np.stack([np.take(idx, range(n - 1), axis=ax).ravel(),
                                      np.take(idx, range(1, n), axis=ax).ravel()], 1)
                            for ax in range(3)])
    sig = np.where(np.random.default_rng(1).random(n**3) < 0.35, 1.0, 1e-6)
    g = 2 / (1 / sig[conns[:, 0]] + 1 / sig[conns[:, 1]])
    ground = n**3
    bottom = idx[:, :, 0].ravel()
    conns = np.concatenate([conns, np.stack([bottom, np.full(bottom.size, ground)], 1)])
    g = np.concatenate([g, 2 * sig[bottom]])
    q = np.arange(0, n**3, n**3 // 12)
    r_direct = S.resistance_to_terminal(n**3 + 1, conns, g, [ground], q)
    r_amg = S.resistance_to_terminal(n**3 + 1, conns, g, [ground], q, method="amg",
                                     maxiter=100)
    assert np.all(np.isfinite(r_direct))
    np.testing.assert_allclose(r_amg, r_direct, rtol=1e-8)
