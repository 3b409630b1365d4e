"""A labelled voxel image as a resistor network, solved by :mod:`esim.solver`.

One node per conducting voxel (labels whose conductivity is 0 are not nodes), one edge per pair
of face-sharing conducting voxels with the series conductance of the two half-voxels::

    g = sigma_h * A / L = sigma_h * dx,     sigma_h = 2 s1 s2 / (s1 + s2)   (harmonic mean)

and two terminal nodes on the faces normal to ``axis``:

* ``boundary="face"`` (default): the inlet terminal is the plane at the outer face of the first
  voxel layer, the outlet the outer face of the last one; each boundary voxel joins its terminal
  through half a voxel, ``g = 2 sigma dx``.  A uniform block of ``n`` voxels of size ``dx``
  along ``axis`` then has exactly ``G = sigma A / (n dx)``: tortuosity factor 1, with the
  sample length ``L = n dx`` (peer lesson 2: the boundary planes are not double counted).
* ``boundary="centre"``: the first and last voxel layers are themselves the equipotential
  terminals (their voxels are merged into the terminal nodes), ``L = (n - 1) dx``.  This is the
  convention of ``porespy.simulations.tortuosity_fd`` and is offered to compare with it.

Memory (for ``V`` voxels, ``N`` conducting, ``M ~ 3 N`` edges): the node map is int32 (4 B per
voxel; int64 above 2^31 nodes), a boolean mask (1 B per voxel), the edge list ``conns`` int64
(16 B per edge) and ``g`` float64 (8 B per edge): about ``5 V + 72 N`` bytes, ~0.6 GB for a
200^3 image at porosity 0.5.  The solver then needs the reduced Laplacian (~90 B per node), its
red-black reordered copy (the same again) and the grid hierarchy (~5 B per voxel): a 200^3
solve peaks at ~1.9 GiB resident.

Periodic sides (``periodic``): a packing is periodic in x and y, and its voxel image is one
period of it.  With ``periodic=True`` the faces normal to the other two axes wrap: each
conducting voxel of the last layer joins the one of the first layer with the same ``g``, as an
inner face would (and the percolating fraction counts clusters joined across the wrap).  The
default is insulating sides, the peers' convention (TauFactor, PoreSpy).  Wrap edges join
voxels that are not grid neighbours, so such a network is solved by the smoothed-aggregation
backend, not the grid one (:meth:`esim.solver.GridAMGBackend.setup` declines it): about 2x
slower (a 100^3 image at porosity 0.5: 4.9 s against 2.1 s, 2 cores).

Solving: :meth:`VoxelNetwork.effective_conductivity` passes the voxel of every node to the
solver (``grid``), whose AMG backend then coarsens on the grid itself
(:class:`esim.solver.GridAMGBackend`: 2x2x2 aggregation, 7-point Galerkin operators, K-cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from esim import _solver_kernels as _K
from esim.errors import InvalidParameters
from esim.solver import (
    ConductanceResult,
    _shape_repr,
    conductance_between,
    effective_conductivity,
    tortuosity_factor,
)

__all__ = ["VALID_BOUNDARIES", "VoxelConductivity", "VoxelNetwork", "voxel_network"]

#: Terminal conventions of :func:`voxel_network`.
VALID_BOUNDARIES = ("face", "centre")


@dataclass(frozen=True, eq=False)
class VoxelConductivity:
    """Effective conductivity and tortuosity of a voxel image along one axis.

    Attributes
    ----------
    conductance_S : float, S
        Conductance between the inlet and outlet terminals.
    sigma_eff_S_per_m : float, S/m
        ``G * L / A`` (0 when no conducting path spans the sample).
    length_m, area_m2 : float, m and m^2
        Sample length between the terminals and cross-section.
    volume_fraction : float
        Fraction of the image's voxels that conduct (``eps``).
    percolating_fraction : float
        Fraction of voxels in face-connected conducting clusters that touch both end faces
        (PoreSpy's "effective porosity").
    sigma_bulk_S_per_m : float, S/m
        The conducting phase's bulk conductivity (the single nonzero value, or the
        ``sigma_ref_S_per_m`` given; NaN when several phases conduct and none was given).
    tau : float
        Tortuosity factor ``eps * sigma_bulk / sigma_eff`` with ``eps = volume_fraction``
        (inf when not percolating; NaN when ``sigma_bulk`` is NaN).
    tau_percolating : float
        The same with ``eps = percolating_fraction`` (PoreSpy's definition).
    flux_mismatch, iterations, residual : float, int, float
        Solver checks (see :class:`esim.solver.NetworkSolution`).
    method : str
        Backend used.
    percolating : bool
        Whether a conducting path joins the terminals.
    report : str
        Cluster summary (explains a zero conductance).
    conductance : ConductanceResult
        The underlying two-terminal result (with the full solution when percolating).
    """

    conductance_S: float
    sigma_eff_S_per_m: float
    length_m: float
    area_m2: float
    volume_fraction: float
    percolating_fraction: float
    sigma_bulk_S_per_m: float
    tau: float
    tau_percolating: float
    flux_mismatch: float
    iterations: int
    residual: float
    method: str
    percolating: bool
    report: str
    conductance: ConductanceResult

    def __repr__(self) -> str:
        return _shape_repr(self)


@dataclass(frozen=True, eq=False)
class VoxelNetwork:
    """Resistor network of a labelled voxel image (see module docstring).

    Attributes
    ----------
    n_nodes : int
        Voxel nodes plus the two terminal nodes.
    conns : (M, 2) int64
        Edge end nodes.
    g : (M,) float64, S
        Edge conductances.
    inlet_node, outlet_node : int
        Terminal nodes at index 0 and at the last index along ``axis``.
    voxel_index : (n_nodes - 2,) int64
        Flat (C-order) index into the image of each voxel node ``0 .. n_nodes - 3``
        (with ``boundary="centre"`` the first and last layers are merged into the terminals and
        are not listed).
    shape : tuple of 3 int
        Image shape.
    axis : int
        Current direction.
    voxel_size_m : float, m
        Voxel edge ``dx``.
    boundary : str
        ``"face"`` or ``"centre"``.
    length_m, area_m2 : float, m and m^2
        Sample length between the terminals and cross-section normal to ``axis``.
    volume_fraction : float
        Fraction of voxels that conduct.
    sigma_bulk_S_per_m : float, S/m
        The single nonzero conductivity of the image's labels (NaN when several differ).
    conducting_mask : (nx, ny, nz) bool
        Voxels that are nodes (or merged into a terminal).
    """

    n_nodes: int
    conns: np.ndarray
    g: np.ndarray
    inlet_node: int
    outlet_node: int
    voxel_index: np.ndarray
    shape: tuple
    axis: int
    voxel_size_m: float
    boundary: str
    length_m: float
    area_m2: float
    volume_fraction: float
    sigma_bulk_S_per_m: float
    conducting_mask: np.ndarray
    periodic: tuple = (False, False, False)

    def __repr__(self) -> str:
        return _shape_repr(self)

    def percolating_fraction(self) -> float:
        """Fraction of voxels in face-connected conducting clusters touching both end faces
        (connected across the periodic sides where ``periodic`` says so)."""
        lab = _periodic_labels(self.conducting_mask, self.periodic)
        if lab.max() == 0:
            return 0.0
        a = np.unique(np.take(lab, 0, axis=self.axis))
        b = np.unique(np.take(lab, -1, axis=self.axis))
        both = np.intersect1d(a[a > 0], b[b > 0])
        return float(np.isin(lab, both).sum() / lab.size)

    def effective_conductivity(
        self,
        *,
        sigma_ref_S_per_m: float | None = None,
        allow_zero: bool = True,
        **solver_kw: Any,
    ) -> VoxelConductivity:
        """Solve the network and return the effective conductivity and tortuosity.

        Parameters
        ----------
        sigma_ref_S_per_m : float, S/m, optional
            Bulk conductivity used in the tortuosity factor; defaults to
            :attr:`sigma_bulk_S_per_m` (needed when several phases conduct).
        allow_zero : bool
            True (default): a sample with no spanning path gives ``sigma_eff = 0``,
            ``tau = inf`` and the cluster report; False raises
            :class:`~esim.errors.NotPercolating`.
        **solver_kw
            ``method``, ``rtol``, ``maxiter`` (and ``grid``, set here by default) of
            :func:`esim.solver.solve_network`.

        Returns
        -------
        VoxelConductivity
        """
        # the nodes' voxels let the AMG backend coarsen on the grid (GridAMGBackend)
        node_voxel = np.concatenate([self.voxel_index, np.full(2, -1, dtype=np.int64)])
        solver_kw.setdefault("grid", (self.shape, node_voxel))
        res = conductance_between(self.n_nodes, self.conns, self.g, [self.inlet_node],
                                  [self.outlet_node], allow_zero=allow_zero, **solver_kw)
        sigma = effective_conductivity(res.conductance_S, self.area_m2, self.length_m)
        sb = self.sigma_bulk_S_per_m if sigma_ref_S_per_m is None else float(sigma_ref_S_per_m)
        eps = self.volume_fraction
        eps_p = self.percolating_fraction()

        def _tau(e: float) -> float:
            if not np.isfinite(sb):
                return float("nan")
            if e == 0 or sigma == 0:
                return float("inf")
            return tortuosity_factor(e, sb, sigma)

        sol = res.solution
        return VoxelConductivity(
            conductance_S=res.conductance_S,
            sigma_eff_S_per_m=sigma,
            length_m=self.length_m,
            area_m2=self.area_m2,
            volume_fraction=eps,
            percolating_fraction=eps_p,
            sigma_bulk_S_per_m=sb,
            tau=_tau(eps),
            tau_percolating=_tau(eps_p),
            flux_mismatch=res.flux_mismatch,
            iterations=res.iterations,
            residual=res.residual,
            method=sol.method if sol is not None else "none",
            percolating=res.percolating,
            report=res.report,
            conductance=res,
        )


def _conductivity_table(conductivity: Any, labels_present: np.ndarray) -> np.ndarray:
    """(max_label + 1,) float64 S/m lookup table; every present label must be given."""
    top = int(labels_present.max()) if labels_present.size else 0
    if isinstance(conductivity, Mapping):
        lut = np.full(top + 1, np.nan)
        for k, v in conductivity.items():
            if int(k) != k or k < 0:
                raise InvalidParameters(
                    f"conductivity: label keys must be integers >= 0, got {k!r}"
                )
            if int(k) <= top:
                lut[int(k)] = float(v)
    else:
        arr = np.asarray(conductivity, dtype=np.float64)
        if arr.ndim != 1:
            raise InvalidParameters("conductivity: an array must be 1-D, indexed by label")
        lut = np.full(top + 1, np.nan)
        n = min(arr.size, top + 1)
        lut[:n] = arr[:n]
    missing = labels_present[np.isnan(lut[labels_present])]
    if missing.size:
        raise InvalidParameters(
            f"conductivity (S/m) not given for labels {missing.tolist()} present in the image"
        )
    bad = labels_present[~np.isfinite(lut[labels_present]) | (lut[labels_present] < 0)]
    if bad.size:
        raise InvalidParameters(
            f"conductivity (S/m) must be finite and >= 0; labels {bad.tolist()} are not"
        )
    return lut


def _periodic_labels(mask: np.ndarray, periodic: tuple) -> np.ndarray:
    """Face-connected cluster labels of ``mask`` (0 outside), clusters that touch across a
    periodic side merged into one label."""
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    lab, n = ndimage.label(mask)
    if n == 0 or not any(periodic):
        return lab
    pairs = []
    for k in range(3):
        if periodic[k]:
            a, b = np.take(lab, 0, axis=k).ravel(), np.take(lab, -1, axis=k).ravel()
            both = (a > 0) & (b > 0)
            pairs.append(np.stack([a[both], b[both]]))
    ab = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    graph = coo_matrix((np.ones(ab.shape[1]), (ab[0], ab[1])), shape=(n + 1, n + 1))
    _, comp = connected_components(graph, directed=False)
    # label 0 (outside) is its own component only if no cluster joined it: it never does
    merged = comp - comp[0]
    merged[merged < 0] += comp.max() + 1
    return merged[lab]


def _check_periodic(periodic: Any, axis: int) -> tuple:
    """``periodic`` as a tuple of three bools; True means every axis but ``axis``."""
    if isinstance(periodic, (bool, np.bool_)):
        return tuple(bool(periodic) and k != axis for k in range(3))
    try:
        per = tuple(periodic)
    except TypeError:
        per = ()
    if len(per) != 3 or not all(isinstance(p, (bool, np.bool_)) for p in per):
        raise InvalidParameters(
            f"periodic must be a bool or three bools (x, y, z), got {periodic!r}")
    if per[axis]:
        raise InvalidParameters(
            f"periodic: axis {axis} carries the current between the terminals and cannot "
            "wrap")
    return tuple(bool(p) for p in per)


def voxel_network(
    image: Any,
    conductivity: Mapping[int, float] | Any,
    voxel_size_m: float,
    axis: int = 2,
    *,
    boundary: str = "face",
    periodic: bool | tuple = False,
) -> VoxelNetwork:
    """Build the resistor network of a labelled 3-D voxel image.

    Parameters
    ----------
    image : (nx, ny, nz) array_like of int >= 0
        Phase labels (e.g. 0 pore, 1 NMC, 2 SE); stored compactly, never copied to float.
    conductivity : mapping label -> float, or (n_labels,) array_like, S/m
        Conductivity of each label; labels with 0 are not nodes.
    voxel_size_m : float, m
        Voxel edge length ``dx``.
    axis : {0, 1, 2}
        Current direction; the inlet face is index 0 and the outlet the last index.
    boundary : {"face", "centre"}
        Where the terminals sit (module docstring).
    periodic : bool or (bool, bool, bool)
        Which sides wrap (module docstring).  False (default): insulating sides, as the
        peers'.  True: every axis but ``axis`` (a packing's image along z).  A tuple names the
        axes; ``axis`` itself cannot wrap.

    Returns
    -------
    VoxelNetwork

    Raises
    ------
    InvalidParameters
        Bad image, labels without a conductivity, negative/NaN conductivity, bad size/axis.

    Examples
    --------
    A uniform 4x4x10 block of 2 S/m with 1 um voxels has tortuosity factor 1:

    >>> import numpy as np
    >>> net = voxel_network(np.ones((4, 4, 10), np.uint8), {1: 2.0}, 1e-6)
    >>> r = net.effective_conductivity()
    >>> round(r.sigma_eff_S_per_m, 12), round(r.tau, 12)
    (2.0, 1.0)
    """
    im = np.asarray(image)
    if im.ndim != 3:
        raise InvalidParameters(f"image must be 3-D, got shape {im.shape}")
    if im.dtype.kind not in "iub":
        raise InvalidParameters(f"image must hold integer labels, got dtype {im.dtype}")
    if im.dtype.kind == "b":
        im = im.view(np.uint8)
    if im.size == 0:
        raise InvalidParameters("image is empty")
    if im.dtype.kind == "i" and im.min() < 0:
        raise InvalidParameters("image labels must be >= 0")
    if axis not in (0, 1, 2):
        raise InvalidParameters(f"axis must be 0, 1 or 2, got {axis!r}")
    if not (np.isfinite(voxel_size_m) and voxel_size_m > 0):
        raise InvalidParameters(f"voxel_size_m must be > 0 (m), got {voxel_size_m!r}")
    if boundary not in VALID_BOUNDARIES:
        raise InvalidParameters(f"boundary must be one of {VALID_BOUNDARIES}, got {boundary!r}")
    per = _check_periodic(periodic, axis)
    nax = im.shape[axis]
    if boundary == "centre" and nax < 2:
        raise InvalidParameters("boundary='centre' needs at least 2 voxels along axis")

    present = np.flatnonzero(np.bincount(im.ravel().astype(np.intp, copy=False)))
    lut = _conductivity_table(conductivity, present)
    dx = float(voxel_size_m)
    positive = np.unique(lut[present][lut[present] > 0])
    sigma_bulk = float(positive[0]) if positive.size == 1 else float("nan")

    cond = (lut > 0)[im]
    n_cond = int(np.count_nonzero(cond))
    idx_dtype = np.int32 if n_cond + 2 < 2**31 else np.int64
    nm = np.full(im.shape, -1, dtype=idx_dtype)

    first = [slice(None)] * 3
    last = [slice(None)] * 3
    first[axis] = 0
    last[axis] = nax - 1
    first, last = tuple(first), tuple(last)
    if boundary == "face":
        inner = cond
    else:
        inner = cond.copy()
        inner[first] = False
        inner[last] = False
    n_vox_nodes = int(np.count_nonzero(inner))
    nm[inner] = np.arange(n_vox_nodes, dtype=idx_dtype)
    inlet, outlet = n_vox_nodes, n_vox_nodes + 1
    voxel_index = np.flatnonzero(inner.ravel()).astype(np.int64)
    if boundary == "centre":
        del inner
        nm[first][cond[first]] = inlet
        nm[last][cond[last]] = outlet

    # harmonic-mean face conductance per label pair, S
    s = np.where(np.isfinite(lut), lut, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = np.where((s[:, None] > 0) & (s[None, :] > 0),
                      2.0 * s[:, None] * s[None, :] / (s[:, None] + s[None, :]), 0.0)
    ghm = hm * dx

    # the face edges of all three directions in one numba pass (x, y, z; C order in each);
    # pairs merged into one terminal (boundary="centre") are dropped
    conns0, g0 = _K.voxel_face_edges(nm, np.ascontiguousarray(im), ghm)
    conns_parts, g_parts = [conns0], [g0]
    for k in range(3):  # the wrap-around faces, one layer pair per periodic side
        if per[k]:
            a, b = np.take(nm, 0, axis=k).ravel(), np.take(nm, -1, axis=k).ravel()
            wrap = (a >= 0) & (b >= 0) & (a != b)
            conns_parts.append(np.stack([a[wrap], b[wrap]], axis=1).astype(np.int64))
            g_parts.append(ghm[np.take(im, 0, axis=k).ravel()[wrap],
                               np.take(im, -1, axis=k).ravel()[wrap]])
    if boundary == "face":
        for face, node in ((first, inlet), (last, outlet)):
            m = cond[face]
            nodes = nm[face][m].astype(np.int64)
            conns_parts.append(np.stack([nodes, np.full(nodes.size, node, np.int64)], axis=1))
            g_parts.append(2.0 * s[im[face][m]] * dx)
    conns = np.concatenate(conns_parts, axis=0)
    g = np.concatenate(g_parts)

    other = [im.shape[k] for k in range(3) if k != axis]
    area = float(other[0] * other[1]) * dx * dx
    length = (nax if boundary == "face" else nax - 1) * dx
    return VoxelNetwork(
        n_nodes=n_vox_nodes + 2,
        conns=conns,
        g=g,
        inlet_node=inlet,
        outlet_node=outlet,
        voxel_index=voxel_index,
        shape=tuple(int(k) for k in im.shape),
        axis=int(axis),
        voxel_size_m=dx,
        boundary=boundary,
        length_m=float(length),
        area_m2=area,
        volume_fraction=n_cond / im.size,
        sigma_bulk_S_per_m=sigma_bulk,
        conducting_mask=cond,
        periodic=per,
    )
