"""The one resistor-network solver of esim.

A network is held as plain arrays (design note 7):

* ``n_nodes`` : int, number of nodes ``N``;
* ``conns`` : (M, 2) int64, the two end nodes of each edge;
* ``g`` : (M,) float64, S, the conductance of each edge (``0`` means "no edge").

Some nodes are *fixed* (Dirichlet terminals at a given potential, V); Kirchhoff's current law
holds at every other node.  The linear system is the graph Laplacian reduced to the free nodes,
assembled from the edge list without any Python loop over nodes or edges.

Before solving, the network is validated (shapes, ranges, finite non-negative conductances)
and its connected components (over edges with ``g > 0``) are found: clusters that touch no
fixed node are *excluded* and reported (their potential is undefined and set to NaN) -- the
geometry is never altered to make a solve work (peer lesson 3).  After solving, current
conservation is checked at every free node (relative Kirchhoff residual) and, for two-terminal
problems, the inflow is compared with the outflow (``flux_mismatch``, peer lesson 1).

Backends are interchangeable objects with one method, ``solve(A, b) -> (x, info)``:

* ``"direct"`` -- sparse LU (SuperLU with a symmetric ordering);
* ``"amg"`` -- conjugate gradients preconditioned by algebraic multigrid: on a voxel network
  (:func:`solve_network`'s ``grid``, passed by :mod:`esim.voxel_network`) the structured
  aggregation K-cycle of :class:`GridAMGBackend`, otherwise a smoothed-aggregation V-cycle
  (:class:`AMGBackend`);
* ``"auto"`` -- direct below :data:`AUTO_DIRECT_MAX_UNKNOWNS` unknowns (2e4: sparse LU fill-in
  explodes on 3-D graphs), AMG above, falling back to direct (with a logged warning) when CG
  does not reach its tolerance.

Assembly, connected components and the post-solve currents are numba kernels over the edge
list (:mod:`esim._solver_kernels`).  Both AMG backends run a flexible preconditioned CG
(:func:`_pcg`) that stops when the relative residual of the *unscaled* system,
``||b - A x|| / ||b||``, meets ``rtol`` (default 1e-10, checked on the true residual, not only
the recursive one); the tolerance is not relaxed for tortuosity: at 20-30 iterations the last
digits cost little.  The residual bounds the error only through the condition number: on a
32^3 two-phase lattice with a 1e6 conductance contrast, rtol 1e-10 left a relative error of
2.5e-9 in the conductance (an independent review, 2026-11-28), and the flux mismatch reported
beside every result tracked it (2.5e-9): it, not rtol, is the accuracy to quote.

Smoothed aggregation (:class:`AMGBackend`): above 5e4 unknowns the system is first reordered by
reverse Cuthill-McKee (particle networks arrive in random order; locality makes the sweeps and
products 2-4x faster); then it is scaled symmetrically to unit diagonal; the hierarchy is
built in CSR (:func:`_sa_hierarchy`, aggregation and strength from pyamg, near-null space
``sqrt(diag)``); one symmetric Gauss-Seidel sweep before and after each coarse correction.  If
CG stalls (large conductance contrast) the hierarchy is rebuilt once with strength threshold
0.1 and CG continues from its last iterate.

Timings (``benchmarks/results/solver_scale.md``, 2-core machine with another job holding about
one core): a 1e6-node particle-like network in 7.4 s (31 iterations), a 200^3 voxel image
(4e6 unknowns) in 7.9 s including building the network (20 iterations), against 10.2 s and
27.2 s with the previous solver (pyamg smoothed aggregation, scipy CG) run back to back.
SuperLU is not competitive in 3-D above ~2e4 unknowns.

Public functions
----------------
solve_network
    Potentials and currents for given fixed-node potentials.
conductance_between
    Two-terminal conductance (source at 1 V, sink at 0 V).
resistance_to_terminal
    Two-point resistance from many query nodes to a grounded terminal set, from one
    factorisation.
effective_conductivity, tortuosity_factor
    Conversions of a conductance into the material quantities used by cell models.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from esim import _solver_kernels as _K
from esim.errors import InvalidParameters, NotPercolating, SolverDidNotConverge

log = logging.getLogger(__name__)

__all__ = [
    "AUTO_DIRECT_MAX_UNKNOWNS",
    "VALID_METHODS",
    "AMGBackend",
    "ConductanceResult",
    "DirectBackend",
    "GridAMGBackend",
    "NetworkSolution",
    "conductance_between",
    "effective_conductivity",
    "get_backend",
    "laplacian",
    "network_components",
    "resistance_to_terminal",
    "solve_network",
    "tortuosity_factor",
    "validate_network",
]

#: Methods accepted by :func:`solve_network`.
VALID_METHODS = ("auto", "direct", "amg")

#: ``method="auto"`` uses the direct solver up to this many unknowns and AMG-CG above.
#: SuperLU's fill-in grows fast on 3-D graphs (a 50^3 lattice takes ~40 s and 1 GB of factors,
#: against ~2 s for AMG-CG), so the switch sits far below the 2e5 often quoted for 2-D problems.
AUTO_DIRECT_MAX_UNKNOWNS = 20_000

#: The post-solve Kirchhoff check accepts a relative residual up to
#: ``max(CHECK_FACTOR * rtol, CHECK_FLOOR)``: a direct solve is limited by round-off, not rtol.
CHECK_FACTOR = 10.0
CHECK_FLOOR = 1e-9


# --------------------------------------------------------------------------------------------
# result objects
# --------------------------------------------------------------------------------------------
def _shape_repr(obj: Any) -> str:
    parts = []
    for name in obj.__dataclass_fields__:
        v = getattr(obj, name)
        if isinstance(v, np.ndarray):
            parts.append(f"{name}=<{v.dtype} {v.shape}>")
        elif isinstance(v, float):
            parts.append(f"{name}={v:.6g}")
        elif isinstance(v, (int, str, bool, type(None))):
            parts.append(f"{name}={v!r}")
        else:
            parts.append(f"{name}=<{type(v).__name__}>")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True, eq=False)
class NetworkSolution:
    """Potentials and currents of a resistor network with fixed (Dirichlet) nodes.

    Attributes
    ----------
    potential : (N,) float64, V
        Node potentials; NaN on excluded nodes (clusters touching no fixed node).
    edge_current : (M,) float64, A
        Current through each edge, positive from ``conns[:, 0]`` to ``conns[:, 1]``;
        0 on edges of excluded clusters.
    node_injection : (N,) float64, A
        Net current leaving each fixed node into the network (0 on free nodes).
    active : (N,) bool
        Node belongs to a cluster that touches at least one fixed node.
    n_excluded_clusters : int
        Number of connected clusters touching no fixed node.
    excluded_nodes : (K,) int64
        Indices of the nodes of those clusters.
    iterations : int
        Iterations of the iterative solver (0 for a direct solve).
    residual : float
        Relative Kirchhoff residual of the free nodes, ``||r|| / ||b||`` where ``r`` is the
        net current leaving each free node (computed from the edge currents) and ``b`` the
        right-hand side of the reduced system (A / A, dimensionless).
    method : str
        Backend that produced the accepted solution (``"direct"``, ``"amg"`` or ``"none"``
        when there was nothing to solve).
    flux_mismatch : float
        For two-terminal problems (fixed potentials taking exactly two distinct values):
        ``|I_in - I_out| / max(|I_in|, |I_out|)`` (0 when no current flows); NaN otherwise.
    """

    potential: np.ndarray
    edge_current: np.ndarray
    node_injection: np.ndarray
    active: np.ndarray
    n_excluded_clusters: int
    excluded_nodes: np.ndarray
    iterations: int
    residual: float
    method: str
    flux_mismatch: float

    def __repr__(self) -> str:
        return _shape_repr(self)


@dataclass(frozen=True, eq=False)
class ConductanceResult:
    """Two-terminal conductance of a network (source at 1 V, sink at 0 V).

    Attributes
    ----------
    conductance_S : float, S
        Effective conductance between the source and sink node sets (0 when no path exists
        and ``allow_zero=True`` was given).
    current_A : float, A
        Current entering the network through the source at 1 V (equal to ``conductance_S``).
    flux_mismatch : float
        ``|I_in - I_out| / max(|I_in|, |I_out|)``; 0 when no current flows.
    iterations : int
        Iterations of the iterative solver (0 for a direct solve).
    residual : float
        Relative Kirchhoff residual of the free nodes.
    percolating : bool
        Whether a conducting path joins source and sink.
    report : str
        One-paragraph summary of the cluster structure (always filled; it explains a zero).
    solution : NetworkSolution or None
        The full solution (None when no path exists).
    """

    conductance_S: float
    current_A: float
    flux_mismatch: float
    iterations: int
    residual: float
    percolating: bool
    report: str
    solution: NetworkSolution | None = field(default=None)

    def __repr__(self) -> str:
        return _shape_repr(self)


# --------------------------------------------------------------------------------------------
# validation and topology
# --------------------------------------------------------------------------------------------
def validate_network(n_nodes: int, conns: Any, g: Any) -> tuple[int, np.ndarray, np.ndarray]:
    """Check and normalise a network given as arrays.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``N`` (>= 1).
    conns : (M, 2) array_like of int
        Edge end nodes, each in ``[0, N)``.
    g : (M,) array_like of float, S
        Edge conductances, finite and >= 0.

    Returns
    -------
    n_nodes : int
    conns : (M, 2) int64
    g : (M,) float64, S

    Raises
    ------
    InvalidParameters
        On wrong shapes, out-of-range nodes, or NaN/inf/negative conductances (the message
        gives the number of bad edges and the first bad index).
    """
    if isinstance(n_nodes, (bool, np.bool_)) or int(n_nodes) != n_nodes or n_nodes < 1:
        raise InvalidParameters(f"network.n_nodes must be an integer >= 1, got {n_nodes!r}")
    n_nodes = int(n_nodes)
    conns = np.asarray(conns)
    if conns.size == 0:
        conns = conns.reshape(0, 2)
    if conns.ndim != 2 or conns.shape[1] != 2:
        raise InvalidParameters(f"network.conns must have shape (M, 2), got {conns.shape}")
    if conns.dtype.kind not in "iu":
        raise InvalidParameters(f"network.conns must be integers, got dtype {conns.dtype}")
    conns = conns.astype(np.int64, copy=False)
    g = np.asarray(g, dtype=np.float64)
    if g.shape != (conns.shape[0],):
        raise InvalidParameters(
            f"network.g must have shape ({conns.shape[0]},) to match conns, got {g.shape}"
        )
    bad = (conns < 0) | (conns >= n_nodes)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise InvalidParameters(
            f"network.conns: {rows.size} of {conns.shape[0]} edges have a node outside "
            f"[0, {n_nodes}); first bad edge index {rows[0]} = {conns[rows[0]].tolist()}"
        )
    bad_g = ~np.isfinite(g) | (g < 0)
    if bad_g.any():
        idx = np.flatnonzero(bad_g)
        raise InvalidParameters(
            f"network.g (S) must be finite and >= 0: {idx.size} of {g.size} edges are not; "
            f"first bad edge index {idx[0]} has g = {g[idx[0]]!r}"
        )
    return n_nodes, conns, g


def _validate_nodes(name: str, nodes: Any, n_nodes: int) -> np.ndarray:
    arr = np.asarray(nodes)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidParameters(f"{name} must be a 1-D array of node indices, got {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise InvalidParameters(f"{name} must be integer node indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= n_nodes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidParameters(
            f"{name}: {int(bad.sum())} indices outside [0, {n_nodes}); first at position {i} "
            f"= {int(arr[i])}"
        )
    return arr


def network_components(n_nodes: int, conns: np.ndarray, g: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components over the edges with ``g > 0``.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``N``.
    conns : (M, 2) int64
        Edge end nodes.
    g : (M,) float64, S
        Edge conductances.

    Returns
    -------
    n_components : int
    labels : (N,) int32
        Component label of each node.
    """
    # union-find over the edge list (numba): no adjacency matrix is built
    n_comp, labels = _K.components(int(n_nodes), conns, g)
    return int(n_comp), labels


def _wsum(idx: np.ndarray, weights: np.ndarray, minlength: int) -> np.ndarray:
    """float64 ``bincount`` (also when empty, where numpy returns int64)."""
    return np.bincount(idx, weights=weights, minlength=minlength).astype(np.float64, copy=False)


def laplacian(n_nodes: int, conns: np.ndarray, g: np.ndarray) -> sp.csr_matrix:
    """Weighted graph Laplacian ``L = D - W`` of a network.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``N``.
    conns : (M, 2) int64
        Edge end nodes (parallel edges add, self-loops are dropped).
    g : (M,) float64, S
        Edge conductances.

    Returns
    -------
    L : (N, N) csr_matrix, S
        ``(L @ v)[k]`` is the net current leaving node ``k`` at potentials ``v`` (V).

    Examples
    --------
    >>> import numpy as np
    >>> L = laplacian(2, np.array([[0, 1]]), np.array([2.0]))
    >>> L.toarray()
    array([[ 2., -2.],
           [-2.,  2.]])
    """
    loop = conns[:, 0] == conns[:, 1]  # self-loops carry no current: drop them exactly
    if loop.any():
        conns, g = conns[~loop], g[~loop]
    i, j = conns[:, 0], conns[:, 1]
    deg = _wsum(i, weights=g, minlength=n_nodes) + _wsum(j, weights=g, minlength=n_nodes)
    rows = np.concatenate([i, j, np.arange(n_nodes)])
    cols = np.concatenate([j, i, np.arange(n_nodes)])
    data = np.concatenate([-g, -g, deg])
    return sp.coo_matrix((data, (rows, cols)), shape=(n_nodes, n_nodes)).tocsr()


def _reduced_system(
    n_nodes: int,
    conns: np.ndarray,
    g: np.ndarray,
    free: np.ndarray,
    vfixed: np.ndarray,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Assemble ``A x = b`` on the free nodes (vectorised).

    ``free`` is (N,) bool; ``vfixed`` is (N,) float64 with the fixed potentials (V) on fixed
    nodes and NaN elsewhere.  Returns ``A`` (nf, nf) csr (S), ``b`` (nf,) (A) and the free
    node indices (nf,).
    """
    free_idx = np.flatnonzero(free)
    nf = free_idx.size
    pos = np.full(n_nodes, -1, dtype=np.int64)
    pos[free_idx] = np.arange(nf, dtype=np.int64)
    # numba assembly straight into canonical CSR (rows sorted, parallel edges summed); edges
    # with g = 0 and self-loops are left out (a self-loop would add and subtract 2g on the
    # diagonal, which is not exact in floating point: a node held only by a tiny conductance
    # would get a zero pivot)
    indptr, indices, data, b = _K.reduced_csr(pos, conns, g, vfixed, nf)
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    else:
        indices = indices.astype(np.int64)
    A = sp.csr_matrix((data, indices, indptr), shape=(nf, nf))
    A.has_canonical_format = True
    return A, b, free_idx


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
def splu_checked(A: Any, **kw: Any) -> spla.SuperLU:
    """``scipy.sparse.linalg.splu`` that answers an exactly singular factor with esim's
    :class:`SolverDidNotConverge` (SuperLU raises a bare ``RuntimeError``).  The reduced
    Laplacian of a connected, grounded network is non-singular in exact arithmetic; in
    float64 it is singular when a cluster hangs on by a conductance below ~1e-16 of its own
    (``1 + 1e-17 == 1``), so the cluster's potential is undetermined to working precision."""
    try:
        return spla.splu(A, **kw)
    except RuntimeError as exc:
        raise SolverDidNotConverge(
            f"the network's matrix is singular to working precision ({exc}): a cluster is "
            "attached by a conductance ~1e-16 or less of its own, beyond float64; raise the "
            "smallest conductances (e.g. a phase's conductivity) or drop that cluster") from None


class DirectBackend:
    """Sparse LU (SuperLU, symmetric-mode ordering); ``solve(A, b) -> (x, info)``."""

    name = "direct"

    def factorize(self, A: sp.spmatrix) -> spla.SuperLU:
        """LU factorisation of the SPD matrix ``A`` (S), ordered for a symmetric pattern."""
        return splu_checked(
            sp.csc_matrix(A),
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )

    def solve(self, A: sp.spmatrix, b: np.ndarray) -> tuple[np.ndarray, dict]:
        """Solve ``A x = b``; ``info`` has ``iterations`` (0) and ``converged`` (True)."""
        t0 = time.perf_counter()
        x = self.factorize(A).solve(b)
        return x, {"iterations": 0, "converged": True, "backend": self.name,
                   "time_s": time.perf_counter() - t0}


class AMGBackend:
    """CG preconditioned by a smoothed-aggregation AMG V-cycle (pyamg aggregation).

    Parameters
    ----------
    rtol : float
        Relative residual ``||b - A x|| / ||b||`` at which CG stops.
    maxiter : int
        Maximum number of CG iterations.
    """

    name = "amg"

    #: Systems with at least this many unknowns are reordered by reverse Cuthill-McKee.
    reorder_min = 50_000

    def __init__(self, rtol: float = 1e-10, maxiter: int = 500):
        self.rtol = float(rtol)
        self.maxiter = int(maxiter)

    def solve(self, A: sp.spmatrix, b: np.ndarray) -> tuple[np.ndarray, dict]:
        """Solve ``A x = b``; ``info`` has ``iterations`` and ``converged``."""

        t0 = time.perf_counter()
        A = sp.csr_matrix(A)
        n = A.shape[0]
        perm = None
        if n >= self.reorder_min:
            # bandwidth-reducing order: particle networks come in random order, and the
            # matrix-vector products and Gauss-Seidel sweeps gather x at random (measured on
            # 1e6 particles: 4x faster products, 2.4x faster sweeps after the reordering)
            from scipy.sparse.csgraph import reverse_cuthill_mckee

            perm = reverse_cuthill_mckee(A, symmetric_mode=True).astype(np.int64)
            A = _permute_csr(A, perm)
            b = b[perm]
        # symmetric diagonal scaling: makes high-contrast networks better conditioned; the
        # hierarchy is built for D^-1/2 A D^-1/2 and CG runs on A itself with the equivalent
        # preconditioner D^-1/2 M D^-1/2, so it stops on the unscaled residual directly
        d = 1.0 / np.sqrt(A.diagonal())
        As = A.copy()
        As.data *= np.repeat(d, np.diff(A.indptr)) * d[As.indices]

        # theta = 0 (all connections strong) is cheapest on ordinary networks; if CG stalls
        # (high conductance contrast, e.g. 1e6 between phases) the hierarchy is rebuilt with
        # theta = 0.1 and CG continues from where it stopped.
        x, it, converged, t_setup = None, 0, False, 0.0
        for theta, cap in ((0.0, min(self.maxiter, 60)), (0.1, self.maxiter)):
            ts = time.perf_counter()
            M = _vcycle_operator(*_sa_hierarchy(As, 1.0 / d, theta=theta))
            t_setup += time.perf_counter() - ts

            def precond(r, M=M):
                return d * M.matvec(d * r)

            x, k, converged = _pcg_threads(A, b, precond, self.rtol, max(1, cap - it),
                                           x0=x)
            it += k
            if converged:
                break
            log.info("AMG-CG stalled after %d iterations with theta=%.1f; rebuilding the "
                     "hierarchy with strength threshold 0.1", it, theta)
        if perm is not None:
            xo = np.empty_like(x)
            xo[perm] = x
            x = xo
        return x, {"iterations": it, "converged": converged, "backend": self.name,
                   "setup_s": t_setup, "time_s": time.perf_counter() - t0}


def _permute_csr(A: sp.csr_matrix, perm: np.ndarray) -> sp.csr_matrix:
    """``A[perm][:, perm]`` in canonical CSR (numba; scipy's fancy indexing is 5x slower)."""
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    ptr, ind, dat = _K.csr_permute(A.indptr, A.indices, A.data, perm,
                                   inv.astype(A.indices.dtype))
    length = np.empty(A.shape[0], dtype=np.int64)
    _K.sort_merge_rows(ptr, ind, dat, length)
    out = sp.csr_matrix((dat, ind, ptr), shape=A.shape)
    out.has_canonical_format = True
    return out


def _sa_hierarchy(A: sp.csr_matrix, B: np.ndarray, max_coarse: int = 500, theta: float = 0.0,
                  max_levels: int = 12):
    """Smoothed-aggregation hierarchy of an SPD M-matrix, kept in CSR throughout.

    The same algorithm as ``pyamg.smoothed_aggregation_solver`` with symmetric strength
    (threshold ``theta``), standard aggregation, the constant near-null-space vector and one
    Jacobi step with local (row-sum) weights, ``P = (I - 4/3 D_row^{-1} A) T``, where the
    tentative ``T`` interpolates the near-null-space vector ``B`` ((n,) float64: ``sqrt(diag)``
    of the unscaled Laplacian, i.e. the constant before the symmetric scaling) exactly; written
    here because
    pyamg's version passes through 1x1-block BSR matrices whose element-wise ``abs`` costs
    seconds per level on 1e6+ unknowns.  Aggregation and strength come from pyamg.

    Returns ``(As, Ps, Rs, coarse_lu)``: operators per level (CSR), prolongators and
    restrictions (CSR) and the sparse LU of the coarsest operator.
    """
    from pyamg.aggregation import standard_aggregation
    from pyamg.strength import symmetric_strength_of_connection

    As, Ps, Rs = [sp.csr_matrix(A)], [], []
    while As[-1].shape[0] > max_coarse and len(As) < max_levels:
        A = As[-1]
        C = symmetric_strength_of_connection(A, theta=theta)
        agg = standard_aggregation(C)[0].tocsr()
        n_agg = agg.shape[1]
        if n_agg == 0 or n_agg >= A.shape[0]:
            break
        norms = np.sqrt(agg.T @ (B * B))
        norms[norms == 0] = 1.0
        T = (sp.diags(B) @ agg @ sp.diags(1.0 / norms)).tocsr()
        absA = A.copy()
        absA.data = np.abs(absA.data)
        rowsum = np.asarray(absA.sum(axis=1)).ravel()
        dinv = np.where(rowsum > 0, (4.0 / 3.0) / np.where(rowsum > 0, rowsum, 1.0), 0.0)
        P = (T - sp.diags(dinv) @ (A @ T)).tocsr()
        R = P.T.tocsr()
        Ac = (R @ A @ P).tocsr()
        Ac.sum_duplicates()
        Ps.append(P)
        Rs.append(R)
        As.append(Ac)
        B = norms
    coarse_lu = splu_checked(As[-1].tocsc())
    return As, Ps, Rs, coarse_lu


def _vcycle_operator(As, Ps, Rs, coarse_lu) -> spla.LinearOperator:
    """One V-cycle as a CG preconditioner: one symmetric Gauss-Seidel sweep before and after
    the coarse correction (a symmetric operator, as CG needs), exact solve on the coarsest
    level.  No residual norms are evaluated inside (pyamg's ``aspreconditioner`` computes two
    extra fine-level mat-vecs per application)."""
    n = As[0].shape[0]
    # a module-level recursion, not a nested recursive closure: that is a reference cycle,
    # which would keep every discarded hierarchy alive until Python's cyclic collector runs
    # (the charge rebuilds its preconditioner tens of times: +0.1-0.2 GB a rebuild at 1e5)
    return spla.LinearOperator((n, n), dtype=np.float64,
                               matvec=lambda b: _vcycle(As, Ps, Rs, coarse_lu, 0, np.ravel(b)))


def _vcycle(As, Ps, Rs, coarse_lu, lvl: int, b: np.ndarray) -> np.ndarray:
    """One V-cycle from level ``lvl`` for the right-hand side ``b`` (see _vcycle_operator)."""
    from pyamg.relaxation.relaxation import gauss_seidel

    if lvl == len(As) - 1:
        return coarse_lu.solve(b)
    A = As[lvl]
    x = np.zeros_like(b)
    gauss_seidel(A, x, b, iterations=1, sweep="symmetric")
    x += Ps[lvl] @ _vcycle(As, Ps, Rs, coarse_lu, lvl + 1, Rs[lvl] @ (b - A @ x))
    gauss_seidel(A, x, b, iterations=1, sweep="symmetric")
    return x


class GridAMGBackend:
    """CG preconditioned by aggregation multigrid on the voxel grid the unknowns sit on.

    For a voxel network every unknown is a voxel and every coupling joins two face
    neighbours, so 2x2x2 blocks of voxels are natural aggregates: with the piecewise-constant
    prolongation ``P`` the Galerkin operator ``P^T A P`` is again a 7-point stencil whose face
    conductances are the sums of the fine face conductances between two blocks
    (:func:`esim._solver_kernels.csr_to_grid`, :func:`~esim._solver_kernels.grid_coarsen`).
    Setup is one pass over the matrix and then over ever smaller grids -- no sparse
    matrix products, no strength graph.  The smoother is red-black Gauss-Seidel (a voxel grid
    is bipartite: each colour updates in parallel, the result independent of the thread count):
    forward (red, black) before and backward (black, red) after each coarse correction.
    Plain aggregation under-corrects smooth errors (its coarse space interpolates them
    piecewise-constantly), so each coarse level is solved by the K-cycle (Notay &
    Vassilevski, Numer. Linear Algebra Appl. 15, 473, 2008: two flexible-CG steps
    preconditioned by the next level), which keeps the iteration count independent of the
    number of levels; the outer CG is flexible too (:func:`_pcg`).  The unknowns are
    reordered red first, so each half-sweep runs over one contiguous block of rows.

    Measured on a 200^3 porosity-0.5 image (4e6 unknowns): 20 iterations to ``rtol = 1e-10``
    (smoothed aggregation: 29), setup 0.3 s (smoothed aggregation: 8 s).

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape.
    position : (n,) int64
        Flat (C-order) grid index of each unknown (row of ``A``).
    rtol, maxiter : float, int
        As :class:`AMGBackend`: CG stops when ``||b - A x|| / ||b|| <= rtol``.
    """

    name = "amg"

    #: Coarsening stops when at most this many cells conduct (sparse LU there).
    max_coarse = 2000
    #: Levels with fewer cells (or unknowns) run their kernels on one thread.  A parallel
    #: region costs milliseconds when another process holds a core, and the K-cycle enters
    #: the coarse levels many times: on a 2-core machine with one core busy, a 200^3 solve
    #: took 11 s with the 100^3 level parallel and 7 s with only the 4e6-unknown fine level
    #: parallel (and 7.5 s on one thread).
    parallel_min_cells = 2_000_000

    def __init__(self, shape, position, rtol: float = 1e-10, maxiter: int = 500):
        self.shape = tuple(int(k) for k in shape)
        self.position = np.asarray(position, dtype=np.int64)
        self.rtol = float(rtol)
        self.maxiter = int(maxiter)

    def setup(self, A: sp.csr_matrix):
        """The hierarchy of ``A``, or None when an entry joins two non-neighbouring voxels.

        The unknowns are reordered red first, then black (``perm``), so that each half-sweep
        of the smoother runs over one contiguous block of rows.
        """
        ix, iy, iz = np.unravel_index(self.position, self.shape)
        cshape = np.array([(k + 1) // 2 for k in self.shape], dtype=np.int64)
        cell = (ix // 2 * cshape[1] + iy // 2) * cshape[2] + iz // 2
        ok, d, wx, wy, wz = _K.csr_to_grid(A.indptr, A.indices, A.data, cell, ix, iy, iz,
                                           cshape)
        if not ok:
            return None
        black = ((ix + iy + iz) & 1).astype(bool)
        perm = np.concatenate([np.flatnonzero(~black), np.flatnonzero(black)])
        n_red = int(perm.size - np.count_nonzero(black))
        del ix, iy, iz, black
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        ptr, ind, dat = _K.csr_permute(A.indptr, A.indices, A.data, perm,
                                       inv.astype(A.indices.dtype))
        Ap = sp.csr_matrix((dat, ind, ptr), shape=A.shape)
        invd = 1.0 / Ap.diagonal()
        levels = [(d, wx, wy, wz)]
        while np.count_nonzero(levels[-1][0]) > self.max_coarse and max(d.shape) > 1:
            d, wx, wy, wz = _K.grid_coarsen(*levels[-1])
            levels.append((d, wx, wy, wz))
        coarse = _grid_lu(*levels[-1])
        return (Ap, perm, cell[perm], n_red, invd), levels, coarse

    def preconditioner(self, hierarchy) -> "_GridCycle":
        """The cycle ``z = M r`` of a hierarchy from :meth:`setup`, as a callable.

        Levels smaller than :attr:`parallel_min_cells` run their kernels on one thread: a
        parallel region costs more than the work there (milliseconds when the machine is
        busy), and the K-cycle visits the coarse levels many times.
        """
        return _GridCycle(hierarchy, self.parallel_min_cells)

    def solve(self, A: sp.spmatrix, b: np.ndarray) -> tuple[np.ndarray, dict]:
        """Solve ``A x = b``; ``info`` has ``iterations`` and ``converged``.  Falls back to
        :class:`AMGBackend` when ``A`` couples non-neighbouring voxels."""
        t0 = time.perf_counter()
        A = sp.csr_matrix(A)
        hierarchy = self.setup(A)
        if hierarchy is None:
            log.info("grid AMG: the matrix couples non-neighbouring voxels; using AMGBackend")
            return AMGBackend(self.rtol, self.maxiter).solve(A, b)
        t_setup = time.perf_counter() - t0
        Ap, perm = hierarchy[0][0], hierarchy[0][1]
        xp, it, converged = _pcg_threads(Ap, b[perm], self.preconditioner(hierarchy),
                                         self.rtol, self.maxiter)
        x = np.empty_like(xp)
        x[perm] = xp
        if not converged:
            log.warning("grid AMG-CG did not reach rtol=%.1e in %d iterations; trying "
                        "smoothed aggregation", self.rtol, it)
            x, info = AMGBackend(self.rtol, self.maxiter).solve(A, b)
            info["iterations"] += it
            return x, info
        return x, {"iterations": it, "converged": converged, "backend": self.name,
                   "setup_s": t_setup, "time_s": time.perf_counter() - t0,
                   "levels": 1 + len(hierarchy[1])}


class _GridCycle:
    """One cycle of :class:`GridAMGBackend`'s hierarchy, ``z = M r`` (``__call__``).

    A class rather than nested functions: the level cycle and the K-cycle call each other, and
    as closures they would form a reference cycle that keeps the whole hierarchy (GBs at 200^3)
    alive after the solve until Python's cyclic collector happens to run.
    """

    def __init__(self, hierarchy, parallel_min_cells: int):
        import numba

        (A, _, self.cell, self.n_red, self.invd), self.levels, (self.active, self.lu) = \
            hierarchy
        self.last = len(self.levels) - 1
        self.ncells = self.levels[0][0].size
        nt = numba.get_num_threads()
        self.nts = [nt if lv[0].size >= parallel_min_cells else 1 for lv in self.levels]
        self.nt = nt if A.shape[0] >= parallel_min_cells else 1  # the fine level
        self.set_threads = numba.set_num_threads
        self.ip, self.ind, self.dat = A.indptr, A.indices, A.data
        self.n = A.shape[0]
        self.r = np.empty(self.n)
        self.rc = np.empty(self.ncells)

    def grid_cycle(self, lvl, b):
        self.set_threads(self.nts[lvl])
        d, wx, wy, wz = self.levels[lvl]
        x = np.zeros_like(b)
        if lvl == self.last:
            x[self.active] = self.lu.solve(b[self.active])
            return x
        _K.grid_gs_colour(d, wx, wy, wz, x, b, 0)
        _K.grid_gs_colour(d, wx, wy, wz, x, b, 1)
        r = np.empty_like(b)
        _K.grid_residual(d, wx, wy, wz, x, b, r)
        rc = np.empty(self.levels[lvl + 1][0].shape)
        _K.grid_restrict(r, rc)
        ec = self.coarse_solve(lvl + 1, rc)
        self.set_threads(self.nts[lvl])
        _K.grid_prolong_add(x, ec, 1.0)
        _K.grid_gs_colour(d, wx, wy, wz, x, b, 1)
        _K.grid_gs_colour(d, wx, wy, wz, x, b, 0)
        return x

    def coarse_solve(self, lvl, rc):
        """Level ``lvl``'s correction by the K-cycle (Notay & Vassilevski 2008): two
        steps of flexible CG preconditioned by the level's cycle, the second skipped when
        the first already reduces the residual 4-fold.  Plain aggregation with a single
        V-cycle would under-correct smooth errors, and the CG iteration count would grow
        with the number of levels."""
        e1 = self.grid_cycle(lvl, rc)
        if lvl == self.last:
            return e1
        self.set_threads(self.nts[lvl])
        d, wx, wy, wz = self.levels[lvl]
        v = np.empty_like(rc)
        _K.grid_matvec(d, wx, wy, wz, e1, v)
        e1f, vf, rcf = e1.ravel(), v.ravel(), rc.ravel()
        rho1 = _K.dot(e1f, vf)
        if not rho1 > 0:
            return e1
        a1 = _K.dot(e1f, rcf) / rho1
        rt = rc - a1 * v
        rtf = rt.ravel()
        if _K.dot(rtf, rtf) <= 0.0625 * _K.dot(rcf, rcf):
            return a1 * e1
        e2 = self.grid_cycle(lvl, rt)
        self.set_threads(self.nts[lvl])
        w = np.empty_like(rc)
        _K.grid_matvec(d, wx, wy, wz, e2, w)
        e2f = e2.ravel()
        gam = _K.dot(e2f, vf)
        bet = _K.dot(e2f, w.ravel())
        a2 = _K.dot(e2f, rtf)
        rho2 = bet - gam * gam / rho1
        if not rho2 > 0:
            return a1 * e1
        return (a1 - gam * a2 / (rho1 * rho2)) * e1 + (a2 / rho2) * e2

    def __call__(self, b):
        ip, ind, dat, n, n_red, r, rc = self.ip, self.ind, self.dat, self.n, self.n_red, \
            self.r, self.rc
        self.set_threads(self.nt)
        # forward red-black Gauss-Seidel from x = 0: the red half-sweep sees only zeros,
        # and after the black one the black residuals are exactly 0
        x = np.empty_like(b)
        _K.scale_range(x, b, self.invd, 0, n_red)
        _K.csr_gs_range(ip, ind, dat, x, b, n_red, n)
        _K.csr_residual_range(ip, ind, dat, x, b, r, 0, n_red)
        _K.restrict_cells(r, self.cell, self.ncells, rc)
        ec = self.coarse_solve(0, rc.reshape(self.levels[0][0].shape))
        self.set_threads(self.nt)
        _K.prolong_cells_add(x, self.cell, ec.ravel(), 1.0)
        # backward sweep (black, red): the adjoint of the forward one
        _K.csr_gs_range(ip, ind, dat, x, b, n_red, n)
        _K.csr_gs_range(ip, ind, dat, x, b, 0, n_red)
        return x


def _grid_lu(d, wx, wy, wz):
    """``(active, lu)``: sparse LU of a (small) 7-point stencil on its cells with ``d > 0``."""
    active = d.ravel() > 0
    idx = np.full(d.size, -1, dtype=np.int64)
    idx[active] = np.arange(int(active.sum()))
    flat = np.arange(d.size).reshape(d.shape)
    rows, cols, vals = [idx[active]], [idx[active]], [d.ravel()[active]]
    for w, lo, hi in ((wx, flat[:-1], flat[1:]), (wy, flat[:, :-1], flat[:, 1:]),
                      (wz, flat[:, :, :-1], flat[:, :, 1:])):
        sl = tuple(slice(0, s) for s in lo.shape)
        a, c, v = idx[lo.ravel()], idx[hi.ravel()], w[sl].ravel()
        keep = (a >= 0) & (c >= 0) & (v != 0)
        rows += [a[keep], c[keep]]
        cols += [c[keep], a[keep]]
        vals += [-v[keep], -v[keep]]
    n = int(active.sum())
    M = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    return active.reshape(d.shape), splu_checked(M)


def _pcg_threads(A: sp.csr_matrix, b: np.ndarray, precond, rtol: float, maxiter: int,
                 x0: np.ndarray | None = None):
    """:func:`_pcg` on one numba thread below :attr:`GridAMGBackend.parallel_min_cells`
    unknowns (see there), on all of numba's threads above; the caller's setting is restored."""
    import numba

    nt = numba.get_num_threads()
    if A.shape[0] < GridAMGBackend.parallel_min_cells:
        numba.set_num_threads(1)
    try:
        return _pcg(A, b, precond, rtol, maxiter, x0=x0)
    finally:
        numba.set_num_threads(nt)


def _pcg(A: sp.csr_matrix, b: np.ndarray, precond, rtol: float, maxiter: int,
         x0: np.ndarray | None = None):
    """Flexible preconditioned CG on ``A x = b`` (numba kernels for the vector updates) from
    ``x0`` (default 0);
    stops when the true relative residual ``||b - A x|| / ||b||`` meets ``rtol``.

    Returns ``(x, iterations, converged)``.
    """
    ip, ind, dat = A.indptr, A.indices, A.data
    n = b.size
    bnorm = float(np.sqrt(_K.dot(b, b)))
    if bnorm == 0:
        return np.zeros(n), 0, True
    r = np.empty(n)
    if x0 is None:
        x = np.zeros(n)
        r[:] = b
    else:
        x = np.array(x0, dtype=np.float64)
        _K.csr_residual(ip, ind, dat, x, b, r)
    q = np.empty(n)
    it = 0
    while True:  # restarts only when the recursive residual has drifted from the true one
        z = precond(r)
        p = z.copy()
        rz = _K.dot(r, z)
        breakdown = False
        while it < maxiter:
            _K.csr_matvec(ip, ind, dat, p, q)
            pq = _K.dot(p, q)
            if not pq > 0:  # only at round-off level, or with a non-SPD preconditioner
                breakdown = True
                break
            step = rz / pq
            rr = _K.cg_update(x, r, p, q, step)
            it += 1
            if np.sqrt(rr) <= rtol * bnorm:
                break
            z = precond(r)
            # flexible CG (Notay 2000): beta from A-orthogonality to the last direction,
            # identical to r.z / r_old.z_old for a fixed SPD preconditioner, and robust to
            # one that varies slightly between applications (the K-cycle's inner CG)
            _K.cg_direction(p, z, -_K.dot(z, q) / pq)
            rz = _K.dot(r, z)
        _K.csr_residual(ip, ind, dat, x, b, r)
        rtrue = float(np.sqrt(_K.dot(r, r)))
        if rtrue <= rtol * bnorm:
            return x, it, True
        if it >= maxiter or breakdown:
            return x, it, False


def get_backend(method: str, rtol: float = 1e-10, maxiter: int = 500):
    """Backend object for ``method`` in ``("direct", "amg")``; others raise InvalidParameters."""
    if method == "direct":
        return DirectBackend()
    if method == "amg":
        return AMGBackend(rtol=rtol, maxiter=maxiter)
    raise InvalidParameters(
        f"solver.method must be one of {VALID_METHODS}, got {method!r}"
    )


# --------------------------------------------------------------------------------------------
# the solve
# --------------------------------------------------------------------------------------------
def _solve_reduced(A, b, method, rtol, maxiter, grid=None):
    nf = b.size
    if method == "auto":
        primary = "direct" if nf <= AUTO_DIRECT_MAX_UNKNOWNS else "amg"
    else:
        primary = method
    if primary == "amg" and grid is not None:
        backend = GridAMGBackend(grid[0], grid[1], rtol=rtol, maxiter=maxiter)
    else:
        backend = get_backend(primary, rtol, maxiter)
    x, info = backend.solve(A, b)
    if primary == "amg" and not info["converged"]:
        if method == "auto":
            log.warning(
                "AMG-preconditioned CG did not reach rtol=%.1e in %d iterations on %d unknowns;"
                " falling back to the direct solver", rtol, maxiter, nf,
            )
            it = info["iterations"]
            x, info = get_backend("direct").solve(A, b)
            info["iterations"] = it
        else:
            raise SolverDidNotConverge(
                f"AMG-preconditioned CG did not reach rtol={rtol:.1e} in {maxiter} iterations "
                f"on {nf} unknowns; try method='direct' or a larger maxiter"
            )
    return x, info


def solve_network(
    n_nodes: int,
    conns: Any,
    g: Any,
    fixed_nodes: Any,
    fixed_values: Any,
    *,
    method: str = "auto",
    rtol: float = 1e-10,
    maxiter: int = 500,
    grid: Any = None,
) -> NetworkSolution:
    """Potentials and currents of a resistor network with fixed-potential nodes.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``N``.
    conns : (M, 2) array_like of int
        Edge end nodes.
    g : (M,) array_like of float, S
        Edge conductances (finite, >= 0; 0 means no connection).
    fixed_nodes : (F,) array_like of int
        Nodes held at a given potential (at least one).
    fixed_values : (F,) array_like of float, V, or scalar
        Their potentials.
    method : {"auto", "direct", "amg"}
        Linear solver backend (see module docstring).
    rtol : float
        Relative residual tolerance of the iterative solver; the post-solve Kirchhoff check
        accepts ``max(10 * rtol, 1e-9)``.
    maxiter : int
        Maximum CG iterations.
    grid : (shape, node_voxel), optional
        The network is a voxel grid: ``shape`` (3 ints) and ``node_voxel`` ((N,) int, the
        flat C-order voxel index of each node, -1 for nodes off the grid such as terminals).
        When every free node is on the grid and every edge between free nodes joins face
        neighbours, AMG uses :class:`GridAMGBackend` (structured 2x2x2 aggregation, cheap
        setup); otherwise it is ignored.  :mod:`esim.voxel_network` passes it.

    Returns
    -------
    NetworkSolution

    Raises
    ------
    InvalidParameters
        Bad shapes, indices, conductances, potentials or method.
    SolverDidNotConverge
        The Kirchhoff residual exceeds the tolerance after any fallback.

    Examples
    --------
    Two 1 S resistors in series between 1 V and 0 V:

    >>> sol = solve_network(3, [[0, 1], [1, 2]], [1.0, 1.0], [0, 2], [1.0, 0.0])
    >>> float(sol.potential[1]), float(sol.edge_current[0])
    (0.5, 0.5)
    """
    n_nodes, conns, g = validate_network(n_nodes, conns, g)
    return _solve_validated(n_nodes, conns, g, fixed_nodes, fixed_values, method=method,
                            rtol=rtol, maxiter=maxiter, grid=grid)


def _validate_grid(grid: Any, n_nodes: int):
    """``(shape, node_voxel int64 (N,))`` checked, or None."""
    if grid is None:
        return None
    try:
        shape, node_voxel = grid
        shape = tuple(int(k) for k in shape)
    except (TypeError, ValueError):
        raise InvalidParameters("grid must be (shape, node_voxel)") from None
    node_voxel = np.asarray(node_voxel)
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidParameters(f"grid shape must be 3 positive ints, got {shape}")
    if node_voxel.shape != (n_nodes,) or node_voxel.dtype.kind not in "iu":
        raise InvalidParameters(
            f"grid node_voxel must be ({n_nodes},) integers, got {node_voxel.shape} "
            f"{node_voxel.dtype}"
        )
    node_voxel = node_voxel.astype(np.int64, copy=False)
    if node_voxel.size and (node_voxel.min() < -1 or node_voxel.max() >= np.prod(shape)):
        raise InvalidParameters("grid node_voxel must be -1 or a flat index into the grid")
    return shape, node_voxel


def _solve_validated(n_nodes, conns, g, fixed_nodes, fixed_values, *, method="auto",
                     rtol=1e-10, maxiter=500, components=None, grid=None) -> NetworkSolution:
    """:func:`solve_network` on a validated network, optionally with precomputed components."""
    grid = _validate_grid(grid, n_nodes)
    if method not in VALID_METHODS:
        raise InvalidParameters(f"solver.method must be one of {VALID_METHODS}, got {method!r}")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise InvalidParameters(f"solver.rtol must be in (0, 1), got {rtol!r}")
    if int(maxiter) < 1:
        raise InvalidParameters(f"solver.maxiter must be >= 1, got {maxiter!r}")
    fixed_nodes = _validate_nodes("fixed_nodes", fixed_nodes, n_nodes)
    if fixed_nodes.size == 0:
        raise InvalidParameters(
            "fixed_nodes is empty: at least one node must be held at a fixed potential (V)"
        )
    fixed_values = np.asarray(fixed_values, dtype=np.float64)
    if fixed_values.ndim == 0:
        fixed_values = np.full(fixed_nodes.shape, float(fixed_values))
    if fixed_values.shape != fixed_nodes.shape:
        raise InvalidParameters(
            f"fixed_values (V) must be a scalar or have shape {fixed_nodes.shape} like "
            f"fixed_nodes, got {fixed_values.shape}"
        )
    if not np.all(np.isfinite(fixed_values)):
        raise InvalidParameters("fixed_values (V) must be finite")
    vfixed = np.full(n_nodes, np.nan)
    vfixed[fixed_nodes] = fixed_values
    if not np.array_equal(vfixed[fixed_nodes], fixed_values):
        raise InvalidParameters("fixed_nodes lists a node twice with different potentials")
    is_fixed = ~np.isnan(vfixed)

    # topology: clusters that touch no fixed node are excluded (reported, not repaired)
    n_comp, labels = components or network_components(n_nodes, conns, g)
    touching = np.zeros(n_comp, dtype=bool)
    touching[labels[fixed_nodes]] = True
    active = touching[labels]
    excluded_nodes = np.flatnonzero(~active)
    n_excluded = int(n_comp - np.count_nonzero(touching))
    if n_excluded:
        log.info("%d clusters (%d nodes) touch no fixed node and are excluded from the solve",
                 n_excluded, excluded_nodes.size)
    free = active & ~is_fixed

    A, b, free_idx = _reduced_system(n_nodes, conns, g, free, vfixed)
    if not np.all(np.isfinite(b)) or not np.all(np.isfinite(A.data)):
        raise InvalidParameters("the assembled linear system is not finite (overflow in g * V?)")

    potential = vfixed.copy()
    iterations, used = 0, "none"
    if free_idx.size:
        grid_free = None
        if grid is not None:
            pos = grid[1][free_idx]
            if pos.size and pos.min() >= 0:
                grid_free = (grid[0], pos)
        x, info = _solve_reduced(A, b, method, rtol, int(maxiter), grid_free)
        potential[free_idx] = x
        iterations, used = int(info["iterations"]), info["backend"]

    # currents and checks, from the edge list (independent of the assembled matrix)
    current, net_out = _K.edge_currents(conns, g, potential, active)
    bnorm = float(np.linalg.norm(b))
    rnorm = float(np.linalg.norm(net_out[free_idx]))
    residual = rnorm / bnorm if bnorm > 0 else rnorm
    injection = np.where(is_fixed, net_out, 0.0)

    flux_mismatch = float("nan")
    levels = np.unique(fixed_values)
    if levels.size == 2:
        i_in = float(injection[is_fixed & (vfixed == levels[1])].sum())
        i_out = -float(injection[is_fixed & (vfixed == levels[0])].sum())
        scale = max(abs(i_in), abs(i_out))
        flux_mismatch = abs(i_in - i_out) / scale if scale > 0 else 0.0

    tol = max(CHECK_FACTOR * rtol, CHECK_FLOOR)
    if residual > tol and used == "amg" and method == "auto":
        log.warning("AMG solution has Kirchhoff residual %.2e > %.1e; re-solving directly",
                    residual, tol)
        return _solve_validated(n_nodes, conns, g, fixed_nodes, fixed_values,
                                method="direct", rtol=rtol, maxiter=maxiter,
                                components=(n_comp, labels))
    if residual > tol:
        raise SolverDidNotConverge(
            f"Kirchhoff residual {residual:.2e} at the {free_idx.size} free nodes exceeds "
            f"{tol:.1e} (method={used})"
        )
    return NetworkSolution(
        potential=potential,
        edge_current=current,
        node_injection=injection,
        active=active,
        n_excluded_clusters=n_excluded,
        excluded_nodes=excluded_nodes,
        iterations=iterations,
        residual=residual,
        method=used,
        flux_mismatch=flux_mismatch,
    )


def _cluster_report(labels: np.ndarray, source: np.ndarray, sink: np.ndarray) -> tuple[bool, str]:
    n_comp = int(labels.max()) + 1 if labels.size else 0
    src = np.zeros(n_comp, dtype=bool)
    snk = np.zeros(n_comp, dtype=bool)
    src[labels[source]] = True
    snk[labels[sink]] = True
    size = np.bincount(labels, minlength=n_comp)
    both, only_src, only_snk = src & snk, src & ~snk, snk & ~src
    neither = ~src & ~snk
    report = (
        f"{n_comp} clusters: {int(both.sum())} join source and sink "
        f"({int(size[both].sum())} nodes), {int(only_src.sum())} touch only the source "
        f"({int(size[only_src].sum())} nodes), {int(only_snk.sum())} touch only the sink "
        f"({int(size[only_snk].sum())} nodes), {int(neither.sum())} touch neither terminal "
        f"({int(size[neither].sum())} nodes)"
    )
    return bool(both.any()), report


def conductance_between(
    n_nodes: int,
    conns: Any,
    g: Any,
    source_nodes: Any,
    sink_nodes: Any,
    *,
    allow_zero: bool = False,
    **kw: Any,
) -> ConductanceResult:
    """Two-terminal conductance: source nodes at 1 V, sink nodes at 0 V.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``N``.
    conns : (M, 2) array_like of int
        Edge end nodes.
    g : (M,) array_like of float, S
        Edge conductances.
    source_nodes, sink_nodes : array_like of int
        Disjoint, non-empty node sets forming the two terminals (a node listed twice counts
        once).
    allow_zero : bool
        When no conducting path joins source and sink: False (default) raises
        :class:`~esim.errors.NotPercolating`; True returns ``conductance_S = 0`` with
        ``percolating=False`` and the cluster report in ``report``.
    **kw
        Passed to :func:`solve_network` (``method``, ``rtol``, ``maxiter``, ``grid``).

    Returns
    -------
    ConductanceResult
        ``conductance_S`` (S) is the current (A) entering at the source per volt.

    Raises
    ------
    NotPercolating
        No path and ``allow_zero`` is False; the message counts the clusters and says which
        terminal each touches.

    Examples
    --------
    Two 2 S resistors in parallel:

    >>> conductance_between(2, [[0, 1], [0, 1]], [2.0, 2.0], [0], [1]).conductance_S
    4.0
    """
    n_nodes, conns, g = validate_network(n_nodes, conns, g)
    # node sets: a node listed twice is one terminal node (its current was counted twice)
    source = np.unique(_validate_nodes("source_nodes", source_nodes, n_nodes))
    sink = np.unique(_validate_nodes("sink_nodes", sink_nodes, n_nodes))
    if source.size == 0 or sink.size == 0:
        raise InvalidParameters("source_nodes and sink_nodes must both be non-empty")
    if np.intersect1d(source, sink).size:
        raise InvalidParameters("source_nodes and sink_nodes must be disjoint")
    # the options are checked before the paths, so a misspelt one fails on every network
    unknown = set(kw) - {"method", "rtol", "maxiter", "grid"}
    if unknown:
        raise InvalidParameters(
            f"conductance_between: unknown options {sorted(unknown)}; valid: method, rtol, "
            "maxiter, grid, allow_zero"
        )
    if kw.get("method", "auto") not in VALID_METHODS:
        raise InvalidParameters(
            f"solver.method must be one of {VALID_METHODS}, got {kw['method']!r}")
    n_comp, labels = network_components(n_nodes, conns, g)
    percolating, report = _cluster_report(labels, source, sink)
    if not percolating:
        msg = f"no conducting path joins source and sink; {report}"
        if not allow_zero:
            raise NotPercolating(msg)
        log.info(msg)
        return ConductanceResult(0.0, 0.0, 0.0, 0, 0.0, False, msg, None)
    fixed = np.concatenate([source, sink])
    values = np.concatenate([np.ones(source.size), np.zeros(sink.size)])
    sol = _solve_validated(n_nodes, conns, g, fixed, values, components=(n_comp, labels), **kw)
    current = float(sol.node_injection[source].sum())
    return ConductanceResult(
        conductance_S=current,  # / (1 V)
        current_A=current,
        flux_mismatch=sol.flux_mismatch,
        iterations=sol.iterations,
        residual=sol.residual,
        percolating=True,
        report=report,
        solution=sol,
    )


def resistance_to_terminal(
    n_nodes: int,
    conns: Any,
    g: Any,
    ground_nodes: Any,
    query_nodes: Any,
    *,
    chunk_bytes: int = 256 * 2**20,
    method: str = "direct",
    rtol: float = 1e-10,
    maxiter: int = 500,
) -> np.ndarray:
    """Two-point resistance between each query node and a grounded terminal set.

    With the ground nodes held at 0 V, a unit current injected at node ``q`` raises it to
    ``R_q`` volts: ``R_q = (A^{-1})_{qq}`` where ``A`` is the Laplacian reduced to the
    non-ground nodes of the grounded clusters.  ``A`` is factorised once (sparse LU) and
    solved for blocks of unit-injection columns, ``chunk_bytes`` at a time, so the cost is one
    factorisation plus ``Q`` triangular solves, not ``Q`` full solves.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``N``.
    conns : (M, 2) array_like of int
        Edge end nodes.
    g : (M,) array_like of float, S
        Edge conductances.
    ground_nodes : (F,) array_like of int
        The grounded terminal (all at 0 V); non-empty.
    query_nodes : (Q,) array_like of int
        Nodes whose resistance to ground is wanted (repeats allowed).
    chunk_bytes : int
        Memory bound (bytes) of one block of right-hand sides (``8 * n_free * k``).
    method : {"direct", "amg"}
        ``"direct"`` (default): one sparse LU, block triangular solves.  ``"amg"``: the
        hierarchies of :class:`AMGBackend` (with its fallback for high contrast, kept for the
        following nodes once taken; without its reordering) built once and shared by a
        flexible-CG solve per distinct query node, for large 3-D networks where LU fill-in is
        prohibitive (cost ~ Q x 10-70 V-cycles).
    rtol, maxiter : float, int
        CG tolerance and iteration limit for ``method="amg"``.

    Returns
    -------
    R : (Q,) float64, ohm
        ``0`` for ground nodes, ``inf`` for nodes not connected to ground.

    Examples
    --------
    >>> resistance_to_terminal(3, [[0, 1], [1, 2]], [1.0, 0.5], [0], [1, 2])
    array([1., 3.])
    """
    n_nodes, conns, g = validate_network(n_nodes, conns, g)
    ground = _validate_nodes("ground_nodes", ground_nodes, n_nodes)
    query = _validate_nodes("query_nodes", query_nodes, n_nodes)
    if ground.size == 0:
        raise InvalidParameters("ground_nodes is empty: at least one node must be grounded")
    n_comp, labels = network_components(n_nodes, conns, g)
    touching = np.zeros(n_comp, dtype=bool)
    touching[labels[ground]] = True
    active = touching[labels]
    is_ground = np.zeros(n_nodes, dtype=bool)
    is_ground[ground] = True
    free = active & ~is_ground
    vfixed = np.where(is_ground, 0.0, np.nan)
    A, _, free_idx = _reduced_system(n_nodes, conns, g, free, vfixed)

    out = np.full(query.size, np.inf)
    out[is_ground[query]] = 0.0
    qfree = free[query]
    if not qfree.any():
        return out
    pos = np.full(n_nodes, -1, dtype=np.int64)
    pos[free_idx] = np.arange(free_idx.size)
    uq, inverse = np.unique(pos[query[qfree]], return_inverse=True)
    nf = free_idx.size
    if method == "amg":
        # AMGBackend's scheme, its hierarchies built once and shared by every query node: the
        # symmetric diagonal scaling, theta = 0 first and theta = 0.1 when CG stalls (high
        # conductance contrast), flexible CG on the unscaled A
        A = sp.csr_matrix(A)
        d = 1.0 / np.sqrt(A.diagonal())
        As = (sp.diags(d) @ A @ sp.diags(d)).tocsr()
        preconds: dict[float, Any] = {}

        def precond(theta: float):
            if theta not in preconds:
                M = _vcycle_operator(*_sa_hierarchy(As, 1.0 / d, theta=theta))
                preconds[theta] = lambda r, M=M: d * M.matvec(d * r)
            return preconds[theta]

        vals = np.empty(uq.size)
        schedule = [(0.0, min(maxiter, 60)), (0.1, maxiter)]
        for k, col in enumerate(uq):  # one solve per distinct query node, not per edge
            e = np.zeros(nf)
            e[col] = 1.0
            x, it, converged = None, 0, False
            for theta, cap in list(schedule):
                x, kk, converged = _pcg_threads(A, e, precond(theta), rtol, max(1, cap - it),
                                                x0=x)
                it += kk
                if converged:
                    break
                if theta == 0.0:  # the next nodes start with the hierarchy that converges
                    schedule = [(0.1, maxiter)]
            if not converged:
                raise SolverDidNotConverge(
                    f"resistance_to_terminal: CG did not reach rtol={rtol:.1e} for node "
                    f"{int(free_idx[col])} in {it} iterations; try method='direct'"
                )
            vals[k] = x[col]
        out[qfree] = vals[inverse]
        return out
    if method != "direct":
        raise InvalidParameters(f"method must be 'direct' or 'amg', got {method!r}")
    lu = DirectBackend().factorize(A)
    k = max(1, min(uq.size, int(chunk_bytes // (8 * nf))))
    vals = np.empty(uq.size)
    for start in range(0, uq.size, k):  # loop over memory-bounded blocks, not nodes
        cols = uq[start:start + k]
        rhs = np.zeros((nf, cols.size))
        rhs[cols, np.arange(cols.size)] = 1.0
        x = lu.solve(rhs)
        vals[start:start + cols.size] = x[cols, np.arange(cols.size)]
    out[qfree] = vals[inverse]
    return out


# --------------------------------------------------------------------------------------------
# material quantities
# --------------------------------------------------------------------------------------------
def effective_conductivity(conductance_S: float, area_m2: float, length_m: float) -> float:
    """Effective conductivity of a sample from its conductance.

    ``sigma_eff = G * L / A``.

    Parameters
    ----------
    conductance_S : float, S
        Conductance between the two end faces.
    area_m2 : float, m^2
        Cross-section normal to the current.
    length_m : float, m
        Distance between the two equipotential planes where the potential difference is
        applied (for a voxel image with terminals on its outer faces: ``n * dx``, not
        ``(n - 1) * dx``; see peer lesson 2).

    Returns
    -------
    sigma_eff : float, S/m

    Examples
    --------
    >>> effective_conductivity(2.0, 4.0, 2.0)
    1.0
    """
    if not (area_m2 > 0 and length_m > 0):
        raise InvalidParameters(
            f"area_m2 and length_m must be > 0, got {area_m2!r} and {length_m!r}"
        )
    return float(conductance_S) * float(length_m) / float(area_m2)


def tortuosity_factor(volume_fraction: float, sigma_bulk_S_per_m: float,
                      sigma_eff_S_per_m: float) -> float:
    """Tortuosity factor ``tau = eps * sigma_bulk / sigma_eff``.

    The conducting phase of volume fraction ``eps`` and bulk conductivity ``sigma_bulk`` gives
    an effective conductivity ``sigma_eff = eps * sigma_bulk / tau``.  A uniform block
    (``eps = 1``, straight paths) has ``tau = 1`` exactly; a sample with no conducting path has
    ``tau = inf``.  (This is the "tortuosity factor" of TauFactor and PoreSpy, sometimes written
    tau^2 in the literature; it is not a path-length ratio.)

    Parameters
    ----------
    volume_fraction : float
        ``eps`` in (0, 1].
    sigma_bulk_S_per_m : float, S/m
        Bulk conductivity of the conducting phase.
    sigma_eff_S_per_m : float, S/m
        Effective conductivity of the sample (>= 0).

    Returns
    -------
    tau : float (dimensionless)

    Examples
    --------
    >>> tortuosity_factor(0.5, 10.0, 2.5)
    2.0
    """
    if not (0 < volume_fraction <= 1):
        raise InvalidParameters(f"volume_fraction must be in (0, 1], got {volume_fraction!r}")
    if not sigma_bulk_S_per_m > 0:
        raise InvalidParameters(f"sigma_bulk_S_per_m must be > 0, got {sigma_bulk_S_per_m!r}")
    if not sigma_eff_S_per_m >= 0:
        raise InvalidParameters(f"sigma_eff_S_per_m must be >= 0, got {sigma_eff_S_per_m!r}")
    if sigma_eff_S_per_m == 0:
        return float("inf")
    return float(volume_fraction) * float(sigma_bulk_S_per_m) / float(sigma_eff_S_per_m)
