"""The ion-milled cross-section: the half-space network that remains and the pixel grid.

Geometry
--------
The milled plane is ``X[plane_axis] = c`` with ``plane_axis`` 0 (x) or 1 (y): perpendicular to
the electrode layer, so the image shows the depth z (current collector at z = 0, separator at
z = L) against the lateral axis ``u`` (the other of x, y).  The kept material lies on the low side
of the plane.  The box is periodic in x and y, so each particle's signed distance from the plane
is taken by minimum image, ``delta = ((X - c + L/2) mod L) - L/2`` in ``[-L/2, L/2)``:

* ``delta >= r``: the particle lies entirely on the removed side and is dropped;
* ``-r < delta < r``: the particle is cut; its section is the circle of radius
  ``sqrt(r^2 - delta^2)`` centred on its projection;
* ``delta <= -r``: the particle lies behind the face and is kept whole.

So the half-space is represented by the slab of depth ``L/2`` behind the face (20 um for the
default 40 um box) [A]: particles at ``delta ~ -L/2`` are the back of the sample, and a contact
crossing the seam at ``delta = -L/2`` joins a kept particle to a dropped one, so it is removed
with the dropped particle as long as ``L/2`` exceeds two particle diameters.

Network
-------
The network used for imaging is the half-space network: :func:`esim.network.build_network` on
the full packing, then the dropped particles' nodes and every edge touching them are removed
(vectorised), and the milling takes away the part of every contact that lay on the removed
part of a cut particle (:func:`milled_network`).  A contact is a disc of radius a centred on
the radical plane of its two spheres (:func:`contact_plane_distance`), normal to their line of
centres; a wall contact is a disc in the wall plane at the particle's foot.  The face cuts it
along a chord, and only the circular segment behind the face remains
(:func:`contact_kept_fraction`): its area fraction is
``f = (arccos h - h sqrt(1 - h^2)) / pi`` with ``h = D / (a sin theta)``, D the signed distance
of the disc's centre from the face and theta the angle between the disc's normal and the
face's normal (f = 1 for ``h <= -1``, 0 for ``h >= 1``).  The remaining segment conducts as a
disc of the same area (:func:`esim.network.build_network`, ``contact_area_fraction``) [A].  A
cut particle therefore keeps only the contacts on its remaining part, so a section whose
centre lay beyond the plane (a cap) keeps few of them.  A cut particle keeps its full-sphere
bulk resistance [A]: the lost part changes its bulk term, not its contact constrictions, which
dominate.

Pixels
------
Each pixel centre on the plane knows its phase, owning particle, pore flag, the in-plane
distance to the owning particle's circle edge and its depth z.  Ownership follows
:mod:`esim.voxel`: NMC owns overlaps (the hard oxide keeps its shape); within one phase the pixel
goes to the particle whose surface is farthest away in 3-D (largest ``r - |x - c|``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from esim.errors import InvalidParameters
from esim.packing import PHASE_NMC, PORE, Packing

__all__ = ["HalfSpace", "SectionGrid", "contact_kept_fraction", "contact_plane_distance",
           "half_space", "milled_network", "plane_geometry", "rasterize_section",
           "signed_plane_distance"]


def _shape_repr(obj) -> str:
    parts = []
    for k, v in obj.__dict__.items():
        parts.append(f"{k}={v.shape}" if isinstance(v, np.ndarray) else f"{k}={v!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True, eq=False)
class HalfSpace:
    """The electron network of the material left behind the milled face.

    Attributes
    ----------
    kept : (N,) bool
        Particles kept (cut or behind the face).
    index : (K,) int64
        Packing index of each kept particle; node ``k < K`` of this network is ``index[k]``.
    local : (N,) int64
        Inverse map: node of each packing particle, -1 for dropped ones.
    delta_m : (N,) float64, m
        Signed minimum-image distance of each centre from the plane (negative: kept side).
    cut : (N,) bool
        Particles the plane intersects (``|delta| < r``).
    n_nodes : int
        ``K + 2``.
    cc_node, sep_node : int
        ``K`` and ``K + 1``.
    conns : (M', 2) int64
        Edge end nodes of the kept edges.
    g : (M',) float64, S
        Their conductances.
    edge_index : (M',) int64
        Index of each kept edge in the full network's edge list.
    kept_fraction : (M',) float64, 1
        The part of each kept contact's area behind the face (1 where not milled).
    contact_radius_m : (M',) float64, m
        Radius of the disc each kept contact conducts as, ``a sqrt(f)`` (NaN where the radii
        were not given).
    """

    kept: np.ndarray
    index: np.ndarray
    local: np.ndarray
    delta_m: np.ndarray
    cut: np.ndarray
    n_nodes: int
    cc_node: int
    sep_node: int
    conns: np.ndarray
    g: np.ndarray
    edge_index: np.ndarray
    kept_fraction: np.ndarray
    contact_radius_m: np.ndarray

    def __repr__(self) -> str:
        return _shape_repr(self)


def plane_geometry(plane_axis: int) -> tuple[int, int]:
    """``(normal_axis, lateral_axis)`` of a plane; the image axes are (z, lateral).

    Raises
    ------
    InvalidParameters
        ``plane_axis`` is not 0 or 1 (a plane z = const would not show the depth).
    """
    if isinstance(plane_axis, bool) or plane_axis not in (0, 1):
        raise InvalidParameters(f"spm.plane_axis: must be 0 (plane x = const) or 1 (plane y = "
                                f"const), got {plane_axis!r}")
    return int(plane_axis), 1 - int(plane_axis)


def signed_plane_distance(coord_m: np.ndarray, plane_m: float, period_m: float) -> np.ndarray:
    """Minimum-image signed distance ``((X - c + L/2) mod L) - L/2``, m, in ``[-L/2, L/2)``."""
    return np.mod(np.asarray(coord_m, dtype=np.float64) - plane_m + 0.5 * period_m,
                  period_m) - 0.5 * period_m


def check_plane(packing: Packing, plane_axis: int, plane_position_m: float) -> float:
    """The plane position inside the box (a negative value means the middle); m."""
    ax, _ = plane_geometry(plane_axis)
    L = float(packing.box_m[ax])
    c = float(plane_position_m)
    if not math.isfinite(c):
        raise InvalidParameters(f"spm.plane_position_m: must be finite, got {c!r}")
    if c < 0:
        return 0.5 * L
    if c > L:
        raise InvalidParameters(f"spm.plane_position_m: the cut plane at {c:g} m lies outside "
                                f"the box (0 to {L:g} m along axis {ax})")
    return c


def contact_plane_distance(packing: Packing, conns: np.ndarray, delta_m: np.ndarray,
                           axis: int) -> np.ndarray:
    """Signed distance from the milled plane of each edge's contact centre, m (negative: kept).

    A particle-particle contact is centred on the radical plane of its two spheres, at
    ``c_i + t (c_j - c_i)`` with ``t = 1/2 + (r_i^2 - r_j^2) / (2 d^2)`` (minimum image); a wall
    contact lies at the particle's foot on the wall, at the particle's own distance.

    Parameters
    ----------
    packing : Packing
    conns : (M, 2) int64
        Edges over particles ``0..N-1`` and the terminals ``N``, ``N + 1``.
    delta_m : (N,) float64, m
        Signed distance of each centre from the plane (:func:`signed_plane_distance`).
    axis : int
        The plane's normal axis.
    """
    return _contact_discs(packing, conns, delta_m, axis)[0]


def _contact_discs(packing: Packing, conns: np.ndarray, delta_m: np.ndarray,
                   axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance of each contact disc's centre from the plane (m) and the sine of the
    angle between the disc's normal and the plane's normal (1 for a wall contact)."""
    n = packing.n_particles
    i, j = conns[:, 0], conns[:, 1]
    out = delta_m[np.minimum(i, n - 1)].copy()
    sin_t = np.ones(conns.shape[0])
    pair = (i < n) & (j < n)
    wall = ~pair
    out[wall] = delta_m[np.where(i[wall] < n, i[wall], j[wall])]
    a, b = i[pair], j[pair]
    box = np.asarray(packing.box_m, dtype=np.float64)
    d = packing.centers_m[b] - packing.centers_m[a]
    periodic = np.array([True, True, bool(packing.periodic_z)])
    d[:, periodic] -= box[periodic] * np.round(d[:, periodic] / box[periodic])
    d2 = np.maximum(np.einsum("ij,ij->i", d, d), 1e-300)
    r = packing.radii_m
    t = 0.5 + (r[a] ** 2 - r[b] ** 2) / (2.0 * d2)
    out[pair] = delta_m[a] + t * d[:, axis]
    sin_t[pair] = np.sqrt(np.clip(1.0 - d[:, axis] ** 2 / d2, 0.0, 1.0))
    return out, sin_t


def contact_kept_fraction(packing: Packing, conns: np.ndarray, contact_radius_m: np.ndarray, *,
                          plane_axis: int, plane_position_m: float) -> np.ndarray:
    """Fraction of each contact disc's area behind the milled face, in [0, 1].

    The disc (radius a, centre at the signed distance D from the face, normal at the angle
    theta to the face's normal) spans ``D +- a sin(theta)`` across the face; the part behind it
    is a circular segment of area fraction ``(arccos h - h sqrt(1 - h^2)) / pi``,
    ``h = D / (a sin theta)`` clipped to [-1, 1] (see the module docstring).

    Parameters
    ----------
    packing : Packing
    conns : (M, 2) int64
        Edges over particles ``0..N-1`` and the terminals ``N``, ``N + 1``.
    contact_radius_m : (M,) float64, m
        The contacts' radii (``esim.network.ParticleNetwork.contact_radius_m``).
    plane_axis : {0, 1}
    plane_position_m : float, m

    Returns
    -------
    (M,) float64, 1.  (:func:`half_space` drops the edges of the particles entirely beyond
    the face whatever their fraction.)
    """
    ax, _ = plane_geometry(plane_axis)
    c = check_plane(packing, plane_axis, plane_position_m)
    delta = signed_plane_distance(packing.centers_m[:, ax], c, float(packing.box_m[ax]))
    dist, sin_t = _contact_discs(packing, np.asarray(conns, dtype=np.int64), delta, ax)
    w = np.asarray(contact_radius_m, dtype=np.float64) * sin_t
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(w > 0, dist / np.where(w > 0, w, 1.0), np.sign(dist) + (dist == 0))
    h = np.clip(h, -1.0, 1.0)
    return np.clip((np.arccos(h) - h * np.sqrt(1.0 - h * h)) / np.pi, 0.0, 1.0)


def half_space(packing: Packing, conns: np.ndarray, g: np.ndarray, *, plane_axis: int,
               plane_position_m: float, kept_fraction: np.ndarray | None = None,
               contact_radius_m: np.ndarray | None = None) -> HalfSpace:
    """Drop the particles beyond the plane, every edge that touches them, and every contact
    with nothing left behind the plane.

    Parameters
    ----------
    packing : Packing
    conns : (M, 2) int64
        Edges of the full network (``esim.network.ParticleNetwork.conns``): particles
        ``0..N-1``, current collector ``N``, separator ``N + 1``.
    g : (M,) float64, S
        Their conductances, those of the milled contacts where ``kept_fraction`` is given
        (:func:`milled_network` builds both).
    plane_axis : {0, 1}
    plane_position_m : float, m
        Inside the box; negative: the middle.
    kept_fraction : (M,) float64, 1, optional
        The part of each contact behind the face (:func:`contact_kept_fraction`); the edges
        with 0 are dropped.  None keeps every contact between kept particles (a
        counterfactual: ``spm.mill_contacts = false``).
    contact_radius_m : (M,) float64, m, optional
        The intact contacts' radii (``ParticleNetwork.contact_radius_m``), for
        ``HalfSpace.contact_radius_m``.

    Returns
    -------
    HalfSpace
    """
    ax, _ = plane_geometry(plane_axis)
    c = check_plane(packing, plane_axis, plane_position_m)
    n = packing.n_particles
    r = packing.radii_m
    delta = signed_plane_distance(packing.centers_m[:, ax], c, float(packing.box_m[ax]))
    kept = delta < r
    cut = np.abs(delta) < r
    index = np.flatnonzero(kept).astype(np.int64)
    k = index.size
    # node map: kept particles -> 0..K-1, terminals N, N+1 -> K, K+1, dropped -> -1
    local_all = np.full(n + 2, -1, dtype=np.int64)
    local_all[index] = np.arange(k)
    local_all[n] = k
    local_all[n + 1] = k + 1
    conns = np.asarray(conns, dtype=np.int64)
    lc = local_all[conns]
    keep_edge = (lc >= 0).all(axis=1)
    f = (np.ones(conns.shape[0]) if kept_fraction is None
         else np.asarray(kept_fraction, dtype=np.float64))
    keep_edge &= f > 0
    a = (np.full(conns.shape[0], np.nan) if contact_radius_m is None
         else np.asarray(contact_radius_m, dtype=np.float64) * np.sqrt(f))
    return HalfSpace(kept=kept, index=index, local=local_all[:n].copy(), delta_m=delta, cut=cut,
                     n_nodes=k + 2, cc_node=k, sep_node=k + 1, conns=lc[keep_edge],
                     g=np.asarray(g, dtype=np.float64)[keep_edge],
                     edge_index=np.flatnonzero(keep_edge).astype(np.int64),
                     kept_fraction=f[keep_edge], contact_radius_m=a[keep_edge])


def milled_network(packing: Packing, params=None, *, soc=None, plane_axis: int,
                   plane_position_m: float, mill_contacts: bool = True):
    """The electron network of the intact electrode and that of the milled sample.

    Parameters
    ----------
    packing : Packing
    params : Params, optional
        Defaults to ``packing.params``.
    soc : float or (N,) array_like, 1, optional
        State of charge of each particle (:func:`esim.network.build_network`).
    plane_axis : {0, 1}
    plane_position_m : float, m
    mill_contacts : bool
        Mill the contacts with the part of a cut particle that held them (default); False
        keeps every contact between kept particles whole (``spm.mill_contacts``).

    Returns
    -------
    net : esim.network.ParticleNetwork
        The intact electrode's network (``mode="cell"``).
    hs : HalfSpace
        The half-space behind the face, its contacts milled.
    """
    from esim.network import build_network

    net = build_network(packing, params, carrier="electron", soc=soc, mode="cell")
    if not mill_contacts:
        return net, half_space(packing, net.conns, net.g, plane_axis=plane_axis,
                               plane_position_m=plane_position_m,
                               contact_radius_m=net.contact_radius_m)
    f = contact_kept_fraction(packing, net.conns, net.contact_radius_m, plane_axis=plane_axis,
                              plane_position_m=plane_position_m)
    milled = build_network(packing, params, carrier="electron", soc=soc, mode="cell",
                           contact_area_fraction=f)
    return net, half_space(packing, milled.conns, milled.g, plane_axis=plane_axis,
                           plane_position_m=plane_position_m, kept_fraction=f,
                           contact_radius_m=net.contact_radius_m)


@dataclass(frozen=True, eq=False)
class SectionGrid:
    """The pixel grid of the imaging window on the milled plane.

    Maps are ``(nz, nu)``: row ``i`` at depth ``z_m[i]`` (row 0 nearest the current collector),
    column ``j`` at lateral position ``u_m[j]``.

    Attributes
    ----------
    phase : (nz, nu) int8
        0 pore, 1 NMC, 2 SE.
    particle : (nz, nu) int64
        Packing index of the owning particle, -1 for pore.
    pore : (nz, nu) bool
    edge_distance_m : (nz, nu) float64, m
        In-plane distance from the pixel centre to the owner's section circle (0 for pore).
    z_m : (nz,) float64, m
        Depth of each row (pixel centre).
    u_m : (nu,) float64, m
        Lateral position of each column (pixel centre), unwrapped from the window origin.
    pixel_size_z_m, pixel_size_u_m : float, m
    origin_z_m, origin_u_m : float, m
        Corner of the window.
    """

    phase: np.ndarray
    particle: np.ndarray
    pore: np.ndarray
    edge_distance_m: np.ndarray
    z_m: np.ndarray
    u_m: np.ndarray
    pixel_size_z_m: float
    pixel_size_u_m: float
    origin_z_m: float
    origin_u_m: float

    def __repr__(self) -> str:
        return _shape_repr(self)


@nb.njit(cache=True)
def _raster_kernel(cu, cz, delta, rad, phase, ids, period_u, u0, z0, du, dz, nu, nz,
                   phase_img, id_img, edge_img, depth_img):
    """Paint the section circles; each pixel keeps the best (phase priority, 3-D depth)."""
    for p in range(cu.shape[0]):
        r = rad[p]
        rho2 = r * r - delta[p] * delta[p]
        if rho2 <= 0.0:
            continue
        rho = math.sqrt(rho2)
        pr = 2 if phase[p] == PHASE_NMC else 1
        for s in range(-1, 2):
            c_u = cu[p] + s * period_u
            j0 = max(int(math.floor((c_u - rho - u0) / du - 0.5)), 0)
            j1 = min(int(math.ceil((c_u + rho - u0) / du - 0.5)), nu - 1)
            if j1 < j0:
                continue
            i0 = max(int(math.floor((cz[p] - rho - z0) / dz - 0.5)), 0)
            i1 = min(int(math.ceil((cz[p] + rho - z0) / dz - 0.5)), nz - 1)
            for i in range(i0, i1 + 1):
                z = z0 + (i + 0.5) * dz - cz[p]
                for j in range(j0, j1 + 1):
                    u = u0 + (j + 0.5) * du - c_u
                    d2 = u * u + z * z
                    if d2 >= rho2:
                        continue
                    depth = r - math.sqrt(d2 + delta[p] * delta[p])
                    cur = phase_img[i, j]
                    cur_pr = 0 if cur == 0 else (2 if cur == PHASE_NMC else 1)
                    if pr > cur_pr or (pr == cur_pr and depth > depth_img[i, j]):
                        phase_img[i, j] = phase[p]
                        id_img[i, j] = ids[p]
                        depth_img[i, j] = depth
                        edge_img[i, j] = rho - math.sqrt(d2)


def rasterize_section(packing: Packing, *, plane_axis: int, plane_position_m: float,
                      origin_u_m: float, origin_z_m: float, width_m: float, height_m: float,
                      pixels_u: int, pixels_z: int) -> SectionGrid:
    """Rasterise the section circles of the cut particles onto the window's pixel grid.

    Parameters
    ----------
    packing : Packing
    plane_axis : {0, 1}
        Normal of the plane (x or y).
    plane_position_m : float, m
        Position along the normal, inside the box; negative: the middle.
    origin_u_m, origin_z_m : float, m
        Window corner (lateral, depth).
    width_m, height_m : float, m
        Window size; at most the box's lateral period and thickness.
    pixels_u, pixels_z : int
        Pixel counts, ``>= 1``.

    Returns
    -------
    SectionGrid

    Raises
    ------
    InvalidParameters
        Zero pixels, a window larger than the section or outside it, a plane outside the box.
    """
    ax, lat = plane_geometry(plane_axis)
    c = check_plane(packing, plane_axis, plane_position_m)
    for name, v in (("pixels_u", pixels_u), ("pixels_z", pixels_z)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InvalidParameters(f"spm.{name}: need at least one pixel, got {v!r}")
    Lu = float(packing.box_m[lat])
    Lz = float(packing.box_m[2])
    w, h = float(width_m), float(height_m)
    if not (w > 0 and h > 0):
        raise InvalidParameters(f"spm.fov: the field of view must have a positive size, got "
                                f"{w:g} x {h:g} m")
    tol = 1e-9 * max(Lu, Lz)
    if w > Lu + tol:
        raise InvalidParameters(f"spm.fov_width_m: the field of view ({w:g} m) is wider than the "
                                f"section ({Lu:g} m)")
    if h > Lz + tol or origin_z_m < -tol or origin_z_m + h > Lz + tol:
        raise InvalidParameters(f"spm.fov_height_m: the field of view (z from {origin_z_m:g} to "
                                f"{origin_z_m + h:g} m) does not fit the section's thickness "
                                f"({Lz:g} m)")
    du, dz = w / pixels_u, h / pixels_z
    delta = signed_plane_distance(packing.centers_m[:, ax], c, float(packing.box_m[ax]))
    sel = np.flatnonzero(np.abs(delta) < packing.radii_m)
    # lateral centres as the image near the window (the kernel also tries +-Lu)
    cu = origin_u_m + np.mod(packing.centers_m[sel, lat] - origin_u_m, Lu)
    phase_img = np.zeros((pixels_z, pixels_u), np.int8)
    id_img = np.full((pixels_z, pixels_u), -1, np.int64)
    edge_img = np.zeros((pixels_z, pixels_u), np.float64)
    depth_img = np.zeros((pixels_z, pixels_u), np.float64)
    _raster_kernel(cu, np.ascontiguousarray(packing.centers_m[sel, 2]), delta[sel],
                   packing.radii_m[sel], packing.phase[sel].astype(np.int8), sel.astype(np.int64),
                   Lu, float(origin_u_m), float(origin_z_m), du, dz, int(pixels_u),
                   int(pixels_z), phase_img, id_img, edge_img, depth_img)
    return SectionGrid(phase=phase_img, particle=id_img, pore=phase_img == PORE,
                       edge_distance_m=edge_img,
                       z_m=origin_z_m + (np.arange(pixels_z) + 0.5) * dz,
                       u_m=origin_u_m + (np.arange(pixels_u) + 0.5) * du,
                       pixel_size_z_m=dz, pixel_size_u_m=du, origin_z_m=float(origin_z_m),
                       origin_u_m=float(origin_u_m))
