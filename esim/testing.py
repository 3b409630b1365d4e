"""Known-answer structures with their exact values, shared by tests, benchmarks and docs.

Every generator returns the structure together with the number that physics settles for it
(design note 3), so a test reads ``assert solve(x) == x.exact``:

========================  =========================================================
generator                 exact value
========================  =========================================================
resistor_chain            ``G = 1 / sum(R_k)`` (series)
parallel_resistors        ``G = sum(g_k)``
series_parallel           ``G`` of a small ladder, reduced by hand
cubic_lattice             ``G = g N^2 / (L - 1)`` between the two end layers
dead_end_network          a two-terminal chain with a side branch: zero branch current
uniform_block             tortuosity factor 1, ``sigma_eff = sigma`` (voxel image)
non_percolating_block     zero conductance (an insulating layer cuts the image)
random_particle_network   no exact value; a particle-like graph for cross-checks/benchmarks
random_lattice_network    no exact value; a 3-D lattice with random conductances
========================  =========================================================

Networks are :class:`KnownNetwork` objects: plain arrays (``n_nodes``, ``conns (M, 2) int64``,
``g (M,) float64, S``) plus terminal node sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from esim.errors import InvalidParameters

__all__ = [
    "KnownNetwork",
    "cubic_lattice",
    "dead_end_network",
    "non_percolating_block",
    "parallel_resistors",
    "random_lattice_network",
    "random_particle_network",
    "resistor_chain",
    "series_parallel",
    "uniform_block",
]


@dataclass(frozen=True, eq=False)
class KnownNetwork:
    """A resistor network with two terminals and (when known) its exact conductance.

    Attributes
    ----------
    n_nodes : int
        Number of nodes ``N``.
    conns : (M, 2) int64
        Edge end nodes.
    g : (M,) float64, S
        Edge conductances.
    source, sink : (S,) int64
        Terminal node sets.
    conductance_S : float, S
        Exact two-terminal conductance (NaN when not known in closed form).
    description : str
        What the structure is.
    extra : dict
        Structure-specific exact facts (e.g. the dead-end edge indices).
    """

    n_nodes: int
    conns: np.ndarray
    g: np.ndarray
    source: np.ndarray
    sink: np.ndarray
    conductance_S: float
    description: str
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"KnownNetwork({self.description!r}, n_nodes={self.n_nodes}, "
                f"n_edges={self.conns.shape[0]}, conductance_S={self.conductance_S:.6g})")


def _arr(*xs):
    return tuple(np.asarray(x, dtype=np.int64) for x in xs)


def resistor_chain(resistances_ohm) -> KnownNetwork:
    """Resistors in series: node k -- node k+1 with resistance ``R_k``.

    Parameters
    ----------
    resistances_ohm : (K,) array_like, ohm, all > 0

    Returns
    -------
    KnownNetwork
        ``conductance_S = 1 / sum(R)`` between node 0 and node K.
    """
    r = np.asarray(resistances_ohm, dtype=np.float64)
    if r.ndim != 1 or r.size == 0 or not np.all(r > 0):
        raise InvalidParameters("resistances_ohm must be a non-empty 1-D array of values > 0")
    k = r.size
    conns = np.stack([np.arange(k), np.arange(1, k + 1)], axis=1).astype(np.int64)
    src, snk = _arr([0], [k])
    return KnownNetwork(k + 1, conns, 1.0 / r, src, snk, float(1.0 / r.sum()),
                        f"{k} resistors in series")


def parallel_resistors(conductances_S) -> KnownNetwork:
    """Conductances in parallel between two nodes (parallel edges of one node pair).

    Returns
    -------
    KnownNetwork
        ``conductance_S = sum(g)`` between node 0 and node 1.
    """
    g = np.asarray(conductances_S, dtype=np.float64)
    if g.ndim != 1 or g.size == 0 or not np.all(g > 0):
        raise InvalidParameters("conductances_S must be a non-empty 1-D array of values > 0")
    conns = np.tile(np.array([[0, 1]], dtype=np.int64), (g.size, 1))
    src, snk = _arr([0], [1])
    return KnownNetwork(2, conns, g.copy(), src, snk, float(g.sum()),
                        f"{g.size} resistors in parallel")


def series_parallel() -> KnownNetwork:
    """A small series-parallel circuit reduced by hand.

    ``0 -[1 ohm]- 1``, then from 1 to 2 two branches: ``[2 ohm]`` and ``[1 ohm]-3-[1 ohm]``
    (together 1 ohm), then ``2 -[3 ohm]- 4``.  Total ``R = 1 + 1 + 3 = 5 ohm``.
    """
    conns = np.array([[0, 1], [1, 2], [1, 3], [3, 2], [2, 4]], dtype=np.int64)
    r = np.array([1.0, 2.0, 1.0, 1.0, 3.0])
    src, snk = _arr([0], [4])
    return KnownNetwork(5, conns, 1.0 / r, src, snk, 0.2, "series-parallel ladder, R = 5 ohm")


def cubic_lattice(n: int, length: int, g_S: float = 1.0) -> KnownNetwork:
    """Simple cubic lattice of ``n x n x length`` nodes, equal edge conductance ``g``.

    Node ``(x, y, z)`` has index ``(x * n + y) * length + z``.  The source is the layer
    ``z = 0`` and the sink the layer ``z = length - 1``; every layer is an equipotential, so
    the ``n^2`` columns of ``length - 1`` series edges give ``G = g n^2 / (length - 1)``.

    Parameters
    ----------
    n : int >= 1
        Nodes along x and y.
    length : int >= 2
        Nodes along z (the current direction).
    g_S : float, S
        Conductance of every edge.
    """
    if n < 1 or length < 2 or not g_S > 0:
        raise InvalidParameters("cubic_lattice needs n >= 1, length >= 2 and g_S > 0")
    conns = _lattice_edges((n, n, length))
    idx = np.arange(n * n * length, dtype=np.int64).reshape(n, n, length)
    return KnownNetwork(
        n * n * length, conns, np.full(conns.shape[0], float(g_S)),
        idx[:, :, 0].ravel(), idx[:, :, -1].ravel(), float(g_S) * n * n / (length - 1),
        f"{n}x{n}x{length} simple cubic lattice, g = {g_S} S",
    )


def _lattice_edges(shape: tuple[int, int, int]) -> np.ndarray:
    """(M, 2) int64 nearest-neighbour edges of a C-ordered 3-D grid of nodes."""
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    parts = []
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        parts.append(np.stack([idx[tuple(lo)].ravel(), idx[tuple(hi)].ravel()], axis=1))
    return np.concatenate(parts, axis=0)


def dead_end_network() -> KnownNetwork:
    """A chain 0-1-2-3 (1 S each) with a dead-end branch 1-4-5 (2 S, 0.5 S) hanging off node 1.

    Exact: ``G = 1/3 S``; the branch edges (``extra["dead_end_edges"]``) carry zero current
    and nodes 4, 5 sit at the potential of node 1.
    """
    conns = np.array([[0, 1], [1, 2], [2, 3], [1, 4], [4, 5]], dtype=np.int64)
    g = np.array([1.0, 1.0, 1.0, 2.0, 0.5])
    src, snk = _arr([0], [3])
    return KnownNetwork(6, conns, g, src, snk, 1.0 / 3.0, "chain with a dead-end branch",
                        extra={"dead_end_edges": np.array([3, 4]),
                               "dead_end_nodes": np.array([4, 5]), "branch_node": 1})


def uniform_block(shape=(6, 5, 8), label: int = 1) -> np.ndarray:
    """A labelled voxel image filled with one phase.

    Exact: through any axis, with terminals on the outer faces, ``sigma_eff = sigma`` and the
    tortuosity factor is 1.

    Returns
    -------
    image : (nx, ny, nz) uint8
    """
    return np.full(tuple(shape), label, dtype=np.uint8)


def non_percolating_block(shape=(6, 5, 8), axis: int = 2, label: int = 1) -> np.ndarray:
    """A conducting block cut in two by one insulating (label 0) layer normal to ``axis``.

    Exact: zero conductance along ``axis``; two clusters, one touching each terminal.

    Returns
    -------
    image : (nx, ny, nz) uint8
    """
    im = uniform_block(shape, label)
    sl = [slice(None)] * 3
    sl[axis] = im.shape[axis] // 2
    im[tuple(sl)] = 0
    return im


def random_lattice_network(shape, rng=None, g_range=(0.1, 10.0), p_bond: float = 1.0):
    """Simple cubic lattice with random (log-uniform) bond conductances, some bonds removed.

    Parameters
    ----------
    shape : (3,) ints
        Lattice nodes along x, y, z; terminals are the z = 0 and z = last layers.
    rng : numpy.random.Generator | int | None
    g_range : (2,) float, S
        Bounds of the log-uniform conductances.
    p_bond : float
        Probability that a bond is present (absent bonds get g = 0).

    Returns
    -------
    KnownNetwork (``conductance_S`` is NaN).
    """
    rng = np.random.default_rng(rng)
    shape = tuple(int(s) for s in shape)
    conns = _lattice_edges(shape)
    lo, hi = np.log(g_range[0]), np.log(g_range[1])
    g = np.exp(rng.uniform(lo, hi, conns.shape[0]))
    if p_bond < 1:
        g[rng.random(conns.shape[0]) >= p_bond] = 0.0
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return KnownNetwork(int(np.prod(shape)), conns, g, idx[:, :, 0].ravel(),
                        idx[:, :, -1].ravel(), float("nan"),
                        f"random {shape} lattice, p_bond = {p_bond}")


def random_particle_network(n_nodes: int, rng=None, mean_degree: float = 6.0,
                            terminal_fraction: float = 0.02) -> KnownNetwork:
    """Particle-like random network: random centres in a unit cube, joined within a radius.

    Centres are uniform in ``[0, 1]^3``; pairs closer than ``r`` (chosen for the asked mean
    degree, ``r = (3 k / (4 pi n))^(1/3)``) are joined by an edge with a log-normal conductance
    (median 1 S, sigma 1).  Terminals: the nodes in the slabs ``z < terminal_fraction`` and
    ``z > 1 - terminal_fraction``.  Isolated clusters occur, as in real packings.

    Returns
    -------
    KnownNetwork (``conductance_S`` is NaN), ``extra["coords"]`` (N, 3) float64 (unit box).
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(rng)
    pts = rng.random((int(n_nodes), 3))
    r = (3.0 * mean_degree / (4.0 * np.pi * n_nodes)) ** (1.0 / 3.0)
    pairs = cKDTree(pts).query_pairs(r, output_type="ndarray").astype(np.int64)
    g = rng.lognormal(0.0, 1.0, pairs.shape[0])
    z = pts[:, 2]
    src = np.flatnonzero(z < terminal_fraction)
    snk = np.flatnonzero(z > 1.0 - terminal_fraction)
    return KnownNetwork(int(n_nodes), pairs, g, src, snk, float("nan"),
                        f"random particle network, {n_nodes} nodes, degree ~{mean_degree}",
                        extra={"coords": pts})
