"""Dense two-phase sphere packings of NMC111 and Li3PS4 glass, by soft-sphere compression.

Algorithm
---------
The packing is the energy minimum of repulsive harmonic spheres, reached by compression, as in
the jamming studies of O'Hern, Silbert, Liu & Nagel (Phys. Rev. E 68, 011306, 2003):

1. Radii are drawn from truncated lognormal distributions.  The NMC radii are scaled so that the
   NMC sphere volume equals ``target_solid_fraction * nmc_fraction_of_solid`` of the box.
2. Particles are placed uniformly at random at full size and the overlap energy
   ``E = sum k_ij delta_ij^2 / 2`` is minimised with FIRE (Bitzek et al., Phys. Rev. Lett. 97,
   170201, 2006), using a Verlet pair list built with cell lists (never O(N^2)) and renewed
   only for the particles that moved far when that suffices.  (A gradual compression from a
   dilute start gave the same fractions and contact statistics at several times the cost.)
3. NMC is hard and the glass soft: an NMC-NMC pair has stiffness ``nmc_stiffness_ratio`` times
   that of any pair involving SE, so at force balance NMC-NMC overlaps stay small (they are the
   point contacts) while SE spheres overlap NMC and each other to fill space, as the glass
   deforms under 360 MPa.  Walls at z=0 (current collector) and z=L (separator) repel with the
   stiffness of the particle's phase; x and y are periodic.
4. Where phases overlap NMC owns the volume.  The union phase fractions are measured by sampling
   random points; the SE radii are then rescaled (secant iteration, re-minimising each time)
   until the union solid fraction is on target.  The NMC share follows, because the NMC volume
   is fixed in step 1.
5. Contacts are the pairs whose gap is below ``contact_tolerance_rel`` times the smaller radius,
   plus particle-wall contacts by the same rule.  The radius of a contact is the radius of the
   lens circle of the two spheres, at least ``asperity_radius_m``.  The normal forces of the
   final state are kept (in model units, with the virial mean stress in the same units) so that
   the network stage can rescale them to the stack pressure.

All kernels are numba-compiled, see only arrays and scalars, and are cached on disk (the
threaded ones under their own names, see ``_twin``).  They are deterministic: the threaded ones
split their work into a fixed number of chunks and add the chunks' partial sums in a fixed
order, so a seed gives the same bytes on any number of threads.  Positions are dimensionless
inside (unit: the NMC median radius).
"""

from __future__ import annotations

import logging
import math
import os
import types
from dataclasses import dataclass, field
from typing import Any

import numba as nb
import numpy as np
from scipy import special

from esim.errors import InvalidParameters, PackingFailed
from esim.params import PackingParams, Params

__all__ = ["Packing", "pack", "jam_hard_spheres", "PHASE_NMC", "PHASE_SE", "PORE",
           "find_contacts", "lognormal_radii"]

log = logging.getLogger(__name__)

PORE = 0
PHASE_NMC = 1
PHASE_SE = 2
PHASE_NAMES = {PORE: "pore", PHASE_NMC: "NMC", PHASE_SE: "SE"}
WALL_CC = 0  # z = 0, current collector
WALL_SEP = 1  # z = L, solid-electrolyte separator

_NB = dict(cache=True, nogil=True)


def _twin(f: Any, suffix: str) -> Any:
    """A copy of the plain function ``f`` under the name ``f.__qualname__ + suffix``.

    numba names a kernel's on-disk cache after the function's qualified name and line, not
    after its compile options: a serial and a ``parallel=True`` kernel made from the same
    function would share one cache index and load each other's machine code.  The threaded
    kernels are made from twins, so each has its own cache.
    """
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + suffix, f.__defaults__,
                           f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    g.__doc__ = f.__doc__
    return g


def _arr(unit: str, doc: str) -> Any:
    return field(metadata={"unit": unit, "doc": doc})


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Packing:
    """A frozen sphere packing with its contacts.

    Attributes
    ----------
    params : Params
        The parameter set that made it (the structure section is used).
    box_m : (3,) float64, m
        Box edges (x, y, z); x and y periodic, z bounded by walls unless ``z_boundary='periodic'``.
    centers_m : (N, 3) float64, m
    radii_m : (N,) float64, m
    phase : (N,) int8
        ``PHASE_NMC`` (1) or ``PHASE_SE`` (2).
    contacts : (M, 2) int32
        Particle pairs ``i < j`` in contact (gap below the contact tolerance).
    contact_gap_m : (M,) float64, m
        Centre distance minus the radii sum (negative: overlap).
    contact_radius_m : (M,) float64, m
        Radius of the lens circle, at least the asperity radius.
    contact_force : (M,) float64, model units
        Normal force of the final state, in units of (soft stiffness x NMC median radius).
    wall_particle : (K,) int32
        Particles touching a wall.
    wall_side : (K,) int8
        ``WALL_CC`` (0, z=0) or ``WALL_SEP`` (1, z=L).
    wall_gap_m, wall_contact_radius_m, wall_force : (K,) float64
        As for particle pairs (the wall is a plane).
    mean_stress_model : float, model units of force per area (length unit: NMC median radius)
        Virial mean stress of the final state, pairs and walls included.
    solid_fraction : float, 1
        Union solid fraction, measured on random points.
    nmc_fraction_of_solid : float, 1
        Union NMC volume over union solid volume (NMC owns overlaps).
    fraction_stderr : float, 1
        Standard error of the sampled fractions.
    iterations : int
        FIRE iterations, all minimisations together.
    max_force_residual : float, model units
        Largest net force on a particle at the end.
    minimiser : str
        The minimiser that ran on the main box, ``fire`` or ``fire-imex``
        (``structure.minimiser`` resolved; files written before it existed: ``fire``).
    """

    params: Params
    box_m: np.ndarray = _arr("m", "box edges")
    centers_m: np.ndarray = _arr("m", "sphere centres")
    radii_m: np.ndarray = _arr("m", "sphere radii")
    phase: np.ndarray = _arr("1", "1 NMC, 2 SE")
    contacts: np.ndarray = _arr("1", "pairs i<j")
    contact_gap_m: np.ndarray = _arr("m", "gap (negative: overlap)")
    contact_radius_m: np.ndarray = _arr("m", "contact radius")
    contact_force: np.ndarray = _arr("model", "normal force, model units")
    wall_particle: np.ndarray = _arr("1", "particle touching a wall")
    wall_side: np.ndarray = _arr("1", "0: z=0 (CC), 1: z=L (separator)")
    wall_gap_m: np.ndarray = _arr("m", "gap to the wall")
    wall_contact_radius_m: np.ndarray = _arr("m", "wall contact radius")
    wall_force: np.ndarray = _arr("model", "normal wall force, model units")
    mean_stress_model: float = 0.0
    solid_fraction: float = 0.0
    nmc_fraction_of_solid: float = 0.0
    fraction_stderr: float = 0.0
    iterations: int = 0
    max_force_residual: float = 0.0
    minimiser: str = "fire"

    def __repr__(self) -> str:
        return (f"Packing(N={self.n_particles} (NMC {int((self.phase == PHASE_NMC).sum())}, "
                f"SE {int((self.phase == PHASE_SE).sum())}), box_m={self.box_m.tolist()}, "
                f"contacts={len(self.contacts)}, wall_contacts={len(self.wall_particle)}, "
                f"solid_fraction={self.solid_fraction:.4f})")

    @property
    def n_particles(self) -> int:
        return int(self.radii_m.shape[0])

    @property
    def periodic_z(self) -> bool:
        return self.params.structure.z_boundary == "periodic"

    def save(self, path: str | os.PathLike) -> None:
        """Write to HDF5 (atomically), with the parameters and esim version."""
        from esim.io.hdf5 import save_result

        save_result(self, path, kind="packing")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Packing":
        """Read a packing written by :meth:`save`, checked (:meth:`check`)."""
        from esim.io.hdf5 import load_result

        pk = load_result(cls, path, kind="packing")
        pk.check(str(path))
        return pk

    def check(self, source: str = "packing") -> None:
        """Raise :class:`~esim.errors.InputFileError` naming ``source`` and the field if the
        arrays do not make a packing: shapes that disagree, a non-finite or non-positive size,
        an unknown phase or wall side, a contact or wall entry naming no particle."""
        from esim.errors import InputFileError

        def bad(field: str, why: str) -> None:
            raise InputFileError(f"{source}: field {field!r} {why}")

        for name in ("radii_m", "centers_m", "phase", "contacts", "wall_particle", "box_m"):
            if np.ndim(getattr(self, name)) == 0:
                bad(name, "is a single value, not an array")
        for group in (("radii_m", "centers_m", "phase"),
                      ("contacts", "contact_gap_m", "contact_radius_m", "contact_force"),
                      ("wall_particle", "wall_side", "wall_gap_m", "wall_contact_radius_m",
                       "wall_force")):
            lens = {getattr(self, f).shape[:1] for f in group}
            if len(lens) > 1:
                raise InputFileError(f"{source}: fields " + ", ".join(
                    f"{f!r} {getattr(self, f).shape}" for f in group) + " disagree in length")
        n, m, k = self.radii_m.shape[0], self.contacts.shape[0], self.wall_particle.shape[0]

        if self.box_m.shape != (3,) or not (np.isfinite(self.box_m).all()
                                            and (self.box_m > 0).all()):
            bad("box_m", f"must be three positive finite lengths, got {self.box_m!r}")
        shapes = {"radii_m": (n,), "centers_m": (n, 3), "phase": (n,), "contacts": (m, 2),
                  "contact_gap_m": (m,), "contact_radius_m": (m,), "contact_force": (m,),
                  "wall_particle": (k,), "wall_side": (k,), "wall_gap_m": (k,),
                  "wall_contact_radius_m": (k,), "wall_force": (k,)}
        for name, shape in shapes.items():
            got = getattr(self, name).shape
            if got != shape:
                bad(name, f"has shape {got}; the packing's {n} particles, {m} contacts and {k} "
                          f"wall contacts need {shape}")
        if not (np.isfinite(self.radii_m).all() and (self.radii_m > 0).all()):
            bad("radii_m", "must be positive and finite")
        if not np.isfinite(self.centers_m).all():
            bad("centers_m", "must be finite")
        if not np.isin(self.phase, (PHASE_NMC, PHASE_SE)).all():
            bad("phase", f"holds codes other than {PHASE_NMC} (NMC) and {PHASE_SE} (SE): "
                         f"{sorted(set(np.unique(self.phase).tolist()) - {PHASE_NMC, PHASE_SE})}")
        if m and ((self.contacts < 0).any() or (self.contacts >= n).any()
                  or (self.contacts[:, 0] == self.contacts[:, 1]).any()):
            bad("contacts", f"must pair two different particles of 0..{n - 1}")
        if k and ((self.wall_particle < 0).any() or (self.wall_particle >= n).any()):
            bad("wall_particle", f"must name particles of 0..{n - 1}")
        if not np.isin(self.wall_side, (WALL_CC, WALL_SEP)).all():
            bad("wall_side", f"must be {WALL_CC} (collector) or {WALL_SEP} (separator)")
        for name in ("contact_gap_m", "contact_radius_m", "wall_gap_m", "wall_contact_radius_m"):
            if not np.isfinite(getattr(self, name)).all():
                bad(name, "must be finite")

    def coordination(self, phase_i: int | None = None, phase_j: int | None = None) -> np.ndarray:
        """(N,) int: contacts per particle, optionally only with partners of ``phase_j``,
        returned for all particles (select ``phase_i`` yourself) - walls excluded."""
        i, j = self.contacts[:, 0], self.contacts[:, 1]
        z = np.zeros(self.n_particles, dtype=np.int64)
        if phase_j is None:
            np.add.at(z, i, 1)
            np.add.at(z, j, 1)
        else:
            np.add.at(z, i, (self.phase[j] == phase_j).astype(np.int64))
            np.add.at(z, j, (self.phase[i] == phase_j).astype(np.int64))
        return z

    def nmc_connectivity(self) -> dict[str, Any]:
        """Connectivity of NMC through NMC-NMC contacts and NMC-wall contacts.

        Returns a dict with ``nmc_percolates`` (a cluster touches both walls; in a z-periodic
        box, never), ``nmc_connected_to_cc_fraction`` (volume fraction of NMC in clusters that
        touch z=0) and ``nmc_isolated_fraction`` (volume fraction of NMC particles with no NMC
        or current-collector contact).
        """
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = self.n_particles
        nmc = self.phase == PHASE_NMC
        keep = nmc[self.contacts[:, 0]] & nmc[self.contacts[:, 1]]
        c = self.contacts[keep]
        wk = nmc[self.wall_particle]
        wp, ws = self.wall_particle[wk], self.wall_side[wk]
        # Components of the NMC contact graph alone: the walls are not conductors between
        # clusters (the separator blocks electrons), so they only tag the clusters they touch.
        g = coo_matrix((np.ones(len(c)), (c[:, 0], c[:, 1])), shape=(n, n))
        _, lab = connected_components(g, directed=False)
        at_cc = np.unique(lab[wp[ws == WALL_CC]])
        at_sep = np.unique(lab[wp[ws == WALL_SEP]])
        vol = self.radii_m**3 * nmc
        perc = bool(np.intersect1d(at_cc, at_sep).size) and not self.periodic_z
        to_cc = np.isin(lab, at_cc) & nmc
        deg = self.coordination(phase_j=PHASE_NMC)
        touches_cc = np.zeros(n, bool)
        touches_cc[wp[ws == WALL_CC]] = True
        isolated = nmc & (deg == 0) & ~touches_cc
        tot = vol.sum()
        return {
            "nmc_percolates": perc,
            "nmc_connected_to_cc_fraction": float(vol[to_cc].sum() / tot) if tot else 0.0,
            "nmc_isolated_fraction": float(vol[isolated].sum() / tot) if tot else 0.0,
        }

    def summary(self) -> dict[str, Any]:
        """The numbers ``esim pack`` prints: SI units, unit in the key name."""
        nmc = self.phase == PHASE_NMC
        se = self.phase == PHASE_SE
        pi, pj = self.phase[self.contacts[:, 0]], self.phase[self.contacts[:, 1]]
        nn = (pi == PHASE_NMC) & (pj == PHASE_NMC)
        a_nn = self.contact_radius_m[nn]
        rmin = np.minimum(self.radii_m[self.contacts[:, 0]], self.radii_m[self.contacts[:, 1]])
        overlap_rel = (-self.contact_gap_m / rmin)[nn]

        def q(x: np.ndarray, p: float) -> float | None:
            return float(np.percentile(x, p)) if x.size else None

        out: dict[str, Any] = {
            "n_particles": self.n_particles,
            "n_nmc": int(nmc.sum()),
            "n_se": int(se.sum()),
            "box_x_m": float(self.box_m[0]),
            "box_y_m": float(self.box_m[1]),
            "electrode_thickness_m": float(self.box_m[2]),
            "solid_fraction": self.solid_fraction,
            "porosity": 1.0 - self.solid_fraction,
            "nmc_fraction_of_solid": self.nmc_fraction_of_solid,
            "fraction_stderr": self.fraction_stderr,
            "target_solid_fraction": self.params.structure.target_solid_fraction,
            "target_nmc_fraction_of_solid": self.params.structure.nmc_fraction_of_solid,
            "n_contacts": int(len(self.contacts)),
            "n_nmc_nmc_contacts": int(nn.sum()),
            "n_wall_contacts": int(len(self.wall_particle)),
            "coordination_mean": float(self.coordination().mean()) if self.n_particles else 0.0,
            "coordination_nmc_nmc_mean": float(self.coordination(phase_j=PHASE_NMC)[nmc].mean())
            if nmc.any() else 0.0,
            "coordination_nmc_se_mean": float(self.coordination(phase_j=PHASE_SE)[nmc].mean())
            if nmc.any() else 0.0,
            "coordination_se_se_mean": float(self.coordination(phase_j=PHASE_SE)[se].mean())
            if se.any() else 0.0,
            "nmc_nmc_contact_radius_median_m": q(a_nn, 50),
            "nmc_nmc_contact_radius_p10_m": q(a_nn, 10),
            "nmc_nmc_contact_radius_p90_m": q(a_nn, 90),
            "nmc_nmc_overlap_max_rel": float(overlap_rel.max()) if overlap_rel.size else 0.0,
            "iterations": self.iterations,
            "minimiser": self.minimiser,
            "max_force_residual": self.max_force_residual,
            "seed": self.params.structure.seed,
        }
        out.update(self.nmc_connectivity())
        return out


# ----------------------------------------------------------------------------------------------
# Radii
# ----------------------------------------------------------------------------------------------


def lognormal_radii(rng: np.random.Generator, n: int, d50_m: float, gsd: float,
                    cutoff_sigmas: float) -> np.ndarray:
    """(n,) radii, m, whose diameters are lognormal (median ``d50_m``, geometric standard
    deviation ``gsd``), truncated at +-``cutoff_sigmas`` in log space by inverse-CDF sampling."""
    sigma = math.log(gsd)
    lo, hi = special.ndtr(-cutoff_sigmas), special.ndtr(cutoff_sigmas)
    u = lo + (hi - lo) * rng.random(n)
    return 0.5 * d50_m * np.exp(sigma * special.ndtri(u))


def _radii_for_volume(rng: np.random.Generator, volume_m3: float, d50_m: float, gsd: float,
                      cutoff: float) -> np.ndarray:
    """Draw radii until their sphere volume reaches ``volume_m3``; rescale to hit it exactly."""
    if volume_m3 <= 0:
        return np.zeros(0)
    mean_v = (4 / 3) * math.pi * (0.5 * d50_m) ** 3 * math.exp(4.5 * math.log(gsd) ** 2)
    n_guess = int(volume_m3 / mean_v * 1.3) + 16
    r = lognormal_radii(rng, n_guess, d50_m, gsd, cutoff)
    while (4 / 3) * math.pi * np.sum(r**3) < volume_m3:
        r = np.concatenate([r, lognormal_radii(rng, n_guess, d50_m, gsd, cutoff)])
    cum = (4 / 3) * math.pi * np.cumsum(r**3)
    k = int(np.searchsorted(cum, volume_m3)) + 1
    r = r[:k]
    return r * (volume_m3 / ((4 / 3) * math.pi * np.sum(r**3))) ** (1 / 3)


# ----------------------------------------------------------------------------------------------
# Kernels: cell lists, pair lists, forces, FIRE, contacts, union sampling
# ----------------------------------------------------------------------------------------------


@nb.njit(**_NB)
def _cells(pos, box, cell_size, periodic_z):
    """Counting-sort particles (or points) into cells of at least ``cell_size``.

    Returns (ncell (3,), start (ncells+1,), order (N,)); cell c holds order[start[c]:start[c+1]].
    """
    ncell = np.empty(3, np.int64)
    for d in range(3):
        ncell[d] = max(1, int(box[d] / cell_size))
    n = pos.shape[0]
    cid = np.empty(n, np.int64)
    c = np.empty(3, np.int64)
    for i in range(n):
        for d in range(3):
            x = pos[i, d]
            if d < 2 or periodic_z:
                x = x - box[d] * math.floor(x / box[d])
            k = int(x / box[d] * ncell[d])
            c[d] = min(max(k, 0), ncell[d] - 1)
        cid[i] = (c[0] * ncell[1] + c[1]) * ncell[2] + c[2]
    nc = ncell[0] * ncell[1] * ncell[2]
    start = np.zeros(nc + 1, np.int64)
    for i in range(n):
        start[cid[i] + 1] += 1
    for c in range(nc):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[cid[i]]] = i
        fill[cid[i]] += 1
    return ncell, start, order


@nb.njit(**_NB)
def _offsets(n):
    """Neighbour-cell offsets along one axis without visiting a cell twice (n < 3)."""
    if n == 1:
        return np.array([0], np.int64)
    if n == 2:
        return np.array([0, 1], np.int64)
    return np.array([-1, 0, 1], np.int64)


@nb.njit(**_NB, inline="always")
def _mi(x, length, periodic):
    """Minimum image of one coordinate difference."""
    if periodic:
        return x - length * np.rint(x / length)
    return x


@nb.njit(**_NB, inline="always")
def _mi_inv(x, length, inv_length, periodic):
    """Minimum image of one coordinate difference, with a precomputed ``1 / length`` (hot
    loops: a multiplication instead of a division)."""
    if periodic:
        return x - length * np.rint(x * inv_length)
    return x


@nb.njit(**_NB, inline="always")
def _dist2(a, b, box, periodic_z):
    """Squared minimum-image distance and the components of b - a (no allocation)."""
    dx = _mi(b[0] - a[0], box[0], True)
    dy = _mi(b[1] - a[1], box[1], True)
    dz = _mi(b[2] - a[2], box[2], periodic_z)
    return dx * dx + dy * dy + dz * dz, dx, dy, dz


@nb.njit(**_NB, inline="always")
def _cell_of(x, box, ncell, d, periodic):
    if periodic:
        x = x - box[d] * math.floor(x / box[d])
    return min(max(int(x / box[d] * ncell[d]), 0), ncell[d] - 1)


@nb.njit(**_NB, inline="always")
def _slab_gap(u, h, x, n, open_ends):
    """Distance from coordinate ``x`` to cell slab ``u`` of width ``h`` (0 inside it).  With
    ``open_ends`` (a walled axis) the first and last of the ``n`` slabs reach to -+infinity,
    because :func:`_cells` clips particles outside the box into them."""
    lo = u * h
    hi = (u + 1) * h
    if open_ends:
        if u == 0:
            lo = -np.inf
        if u == n - 1:
            hi = np.inf
    return max(0.0, lo - x, x - hi)


@nb.njit(**_NB)
def _pair_sweep(pos, rad, box, periodic_z, extra, ncell, start, order, counts, pairs, fill):
    """One sweep of the pair search: count (``fill`` is None-like, size 0) or fill pairs.

    Each particle writes only its own slots.  (Serial on purpose: numba's on-disk cache of a
    ``parallel=True`` kernel called from other cached kernels crashed on reload, numba 0.68.)
    """
    n = pos.shape[0]
    ox, oy = _offsets(ncell[0]), _offsets(ncell[1])
    oz = _offsets(ncell[2]) if periodic_z else np.array([-1, 0, 1], np.int64)
    counting = fill.shape[0] == 0
    for i in range(n):
        c0 = _cell_of(pos[i, 0], box, ncell, 0, True)
        c1 = _cell_of(pos[i, 1], box, ncell, 1, True)
        c2 = _cell_of(pos[i, 2], box, ncell, 2, periodic_z)
        k = 0
        for dx in ox:
            cx = (c0 + dx) % ncell[0]
            for dy in oy:
                cy = (c1 + dy) % ncell[1]
                for dz in oz:
                    cz = c2 + dz
                    if periodic_z:
                        cz = cz % ncell[2]
                    elif cz < 0 or cz >= ncell[2]:
                        continue
                    cc = (cx * ncell[1] + cy) * ncell[2] + cz
                    for s in range(start[cc], start[cc + 1]):
                        j = order[s]
                        if j <= i:
                            continue
                        r2, _, _, _ = _dist2(pos[i], pos[j], box, periodic_z)
                        cut = rad[i] + rad[j] + extra
                        if r2 < cut * cut:
                            if not counting:
                                pairs[fill[i] + k, 0] = i
                                pairs[fill[i] + k, 1] = j
                            k += 1
        if counting:
            counts[i + 1] = k


@nb.njit(**_NB)
def _pair_sweep_pruned(pos, rad, box, periodic_z, extra, ncell, start, order, reach, pairs,
                       cx_lo, cx_hi, k0, cap_end):
    """Pairs from a half stencil of ``(2 reach + 1)^3`` cells: each cell is paired with itself
    and its forward neighbours, so every distance is computed once.  A neighbour cell is
    skipped when its nearest point is farther from particle i than ``r_i + r_max + extra``
    (with cells of half the largest cut-off this skips most of the 5x5x5 block for the small
    particles of a polydisperse packing).  Valid when every periodic axis has at least
    ``2 reach + 1`` cells.  Sweeps the home cells with x index in ``[cx_lo, cx_hi)`` and writes
    its pairs to ``pairs[k0:cap_end]`` while they fit; returns the number found (the caller
    retries with a larger array when it exceeds the room).
    """
    nx, ny, nz = ncell[0], ncell[1], ncell[2]
    hx, hy, hz = box[0] / nx, box[1] / ny, box[2] / nz
    ibx, iby, ibz = 1.0 / box[0], 1.0 / box[1], 1.0 / box[2]
    rmax = 0.0
    for i in range(rad.shape[0]):
        rmax = max(rmax, rad[i])
    k = 0
    for cx in range(cx_lo, cx_hi):
        for cy in range(ny):
            for cz in range(nz):
                c = (cx * ny + cy) * nz + cz
                for s in range(start[c], start[c + 1]):
                    i = order[s]
                    # coordinates wrapped like _cells wrapped them, so i lies in cell c
                    px = pos[i, 0] - box[0] * math.floor(pos[i, 0] * ibx)
                    py = pos[i, 1] - box[1] * math.floor(pos[i, 1] * iby)
                    pz = pos[i, 2]
                    if periodic_z:
                        pz -= box[2] * math.floor(pz * ibz)
                    ri = rad[i] + extra
                    reach2 = (ri + rmax) * (ri + rmax)
                    # Offsets (dx, dy, dz) of the half stencil in lexicographic order from
                    # (0, 0, 0), pruned axis by axis: a neighbour cell is skipped when its
                    # nearest point is farther from i than r_i + r_max + extra (unwrapped cell
                    # coordinates; the end slabs of a walled axis reach to +-infinity, because
                    # _cells clips particles outside the box into them).
                    for dx in range(0, reach + 1):
                        ux = cx + dx
                        gx = _slab_gap(ux, hx, px, nx, False)
                        gx2 = gx * gx
                        if gx2 >= reach2:
                            continue
                        ox = ux % nx
                        for dy in range(-reach if dx > 0 else 0, reach + 1):
                            uy = cy + dy
                            gy = _slab_gap(uy, hy, py, ny, False)
                            gxy2 = gx2 + gy * gy
                            if gxy2 >= reach2:
                                continue
                            oy = (cy + dy) % ny
                            for dz in range(-reach if (dx > 0 or dy > 0) else 0, reach + 1):
                                uz = cz + dz
                                if not periodic_z and (uz < 0 or uz >= nz):
                                    continue
                                gz = _slab_gap(uz, hz, pz, nz, not periodic_z)
                                if gxy2 + gz * gz >= reach2:
                                    continue
                                oz = uz % nz if periodic_z else uz
                                cc = (ox * ny + oy) * nz + oz
                                home_cell = dx == 0 and dy == 0 and dz == 0
                                t0 = s + 1 if home_cell else start[cc]
                                for t in range(t0, start[cc + 1]):
                                    j = order[t]
                                    ddx = _mi_inv(pos[j, 0] - pos[i, 0], box[0], ibx, True)
                                    ddy = _mi_inv(pos[j, 1] - pos[i, 1], box[1], iby, True)
                                    ddz = _mi_inv(pos[j, 2] - pos[i, 2], box[2], ibz,
                                                  periodic_z)
                                    cut = ri + rad[j]
                                    if ddx * ddx + ddy * ddy + ddz * ddz < cut * cut:
                                        if k0 + k < cap_end:
                                            pairs[k0 + k, 0] = i
                                            pairs[k0 + k, 1] = j
                                        k += 1
    return k


@nb.njit(**_NB)
def _pair_grid(pos, rad, box, periodic_z, extra):
    """Cells for the pair search: (ncell, start, order, reach).  Cells are half the largest
    cut-off wide (reach 2: 5x5x5 half stencil, pruned per particle) where every periodic axis
    holds 5 of them, else a full cut-off wide (reach 1: 3x3x3 half stencil); reach 0 means
    the box is too small for either (fewer than 3 cells on a periodic axis)."""
    n = pos.shape[0]
    rmax = 0.0
    for i in range(n):
        rmax = max(rmax, rad[i])
    cut = 2.0 * rmax + extra
    reach = 2
    for d in range(3):
        if (d < 2 or periodic_z) and int(box[d] / (0.5 * cut)) < 5:
            reach = 1
    ncell, start, order = _cells(pos, box, cut / reach, periodic_z)
    for d in range(3):
        if (d < 2 or periodic_z) and ncell[d] < 3:
            reach = 0
    return ncell, start, order, reach


@nb.njit(**_NB)
def _pair_list_cap(pos, rad, box, periodic_z, extra, cap):
    """All pairs with centre distance below r_i + r_j + extra, via cell lists.

    Returns (P, 2) int64; a pair is listed once, in either order.  ``cap`` is a guess of P
    (e.g. the previous list's size): one sweep when it is large enough, two otherwise.  See
    :func:`_pair_grid` for the cells; very small boxes use the plain search.
    """
    n = pos.shape[0]
    ncell, start, order, reach = _pair_grid(pos, rad, box, periodic_z, extra)
    if reach == 0:
        counts = np.zeros(n + 1, np.int64)
        none = np.zeros(0, np.int64)
        _pair_sweep(pos, rad, box, periodic_z, extra, ncell, start, order, counts,
                    np.zeros((0, 2), np.int64), none)
        for q in range(n):
            counts[q + 1] += counts[q]
        pairs = np.empty((counts[n], 2), np.int64)
        _pair_sweep(pos, rad, box, periodic_z, extra, ncell, start, order, counts, pairs,
                    counts[:-1].copy())
        return pairs
    pairs = np.empty((max(cap, 16), 2), np.int64)
    k = _pair_sweep_pruned(pos, rad, box, periodic_z, extra, ncell, start, order, reach, pairs,
                           0, ncell[0], 0, pairs.shape[0])
    if k > pairs.shape[0]:
        pairs = np.empty((k, 2), np.int64)
        k = _pair_sweep_pruned(pos, rad, box, periodic_z, extra, ncell, start, order, reach,
                               pairs, 0, ncell[0], 0, k)
    return pairs[:k]


@nb.njit(**_NB)
def _pair_query(pos, rad, box, periodic_z, skin, disp, fast, flist, ncell, start, order, reach,
                pairs, cap):
    """Fresh pairs of the particles ``flist`` (a partial rebuild of the Verlet list).

    Lists ``(f, j)`` when the centre distance is below ``r_f + r_j + skin + disp[j]``, where
    ``disp[j]`` is how far j has moved since its own pairs were last searched (0 for the
    particles of ``flist``, marked in ``fast``): the margin keeps the list valid while f and j
    together move less than the skin from now on (see ``_fire``).  A pair of two listed
    particles is written once, from its smaller index.  Full ``(2 reach + 1)^3`` stencil of the
    cells from :func:`_pair_grid` (built with ``extra >= skin + max(disp)``), pruned like
    :func:`_pair_sweep_pruned`.  Writes up to ``cap`` pairs; returns the number found.
    """
    nx, ny, nz = ncell[0], ncell[1], ncell[2]
    hx, hy, hz = box[0] / nx, box[1] / ny, box[2] / nz
    ibx, iby, ibz = 1.0 / box[0], 1.0 / box[1], 1.0 / box[2]
    rmax = 0.0
    dmax = 0.0
    for i in range(rad.shape[0]):
        rmax = max(rmax, rad[i])
        dmax = max(dmax, disp[i])
    k = 0
    for q in range(flist.shape[0]):
        f = flist[q]
        px = pos[f, 0] - box[0] * math.floor(pos[f, 0] * ibx)
        py = pos[f, 1] - box[1] * math.floor(pos[f, 1] * iby)
        pz = pos[f, 2]
        if periodic_z:
            pz -= box[2] * math.floor(pz * ibz)
        cx = _cell_of(pos[f, 0], box, ncell, 0, True)
        cy = _cell_of(pos[f, 1], box, ncell, 1, True)
        cz = _cell_of(pos[f, 2], box, ncell, 2, periodic_z)
        rf = rad[f] + skin
        reach2 = (rf + rmax + dmax) * (rf + rmax + dmax)
        for dx in range(-reach, reach + 1):
            ux = cx + dx
            gx = _slab_gap(ux, hx, px, nx, False)
            if gx * gx >= reach2:
                continue
            ox = ux % nx
            for dy in range(-reach, reach + 1):
                uy = cy + dy
                gy = _slab_gap(uy, hy, py, ny, False)
                gxy2 = gx * gx + gy * gy
                if gxy2 >= reach2:
                    continue
                oy = uy % ny
                for dz in range(-reach, reach + 1):
                    uz = cz + dz
                    if not periodic_z and (uz < 0 or uz >= nz):
                        continue
                    gz = _slab_gap(uz, hz, pz, nz, not periodic_z)
                    if gxy2 + gz * gz >= reach2:
                        continue
                    oz = uz % nz if periodic_z else uz
                    cc = (ox * ny + oy) * nz + oz
                    for t in range(start[cc], start[cc + 1]):
                        j = order[t]
                        if j == f or (fast[j] and j < f):
                            continue
                        ddx = _mi_inv(pos[j, 0] - pos[f, 0], box[0], ibx, True)
                        ddy = _mi_inv(pos[j, 1] - pos[f, 1], box[1], iby, True)
                        ddz = _mi_inv(pos[j, 2] - pos[f, 2], box[2], ibz, periodic_z)
                        cut = rf + rad[j] + disp[j]
                        if ddx * ddx + ddy * ddy + ddz * ddz < cut * cut:
                            if k < cap:
                                pairs[k, 0] = f
                                pairs[k, 1] = j
                            k += 1
    return k


@nb.njit(**_NB)
def _sort_pairs(pairs, n):
    """The pairs ordered by their first particle (a stable counting sort).  Particles are stored
    in spatial order (see ``_System``), so the force kernel then walks positions nearly in
    order and sums each particle's run of pairs in registers."""
    count = np.zeros(n + 1, np.int64)
    for p in range(pairs.shape[0]):
        count[pairs[p, 0] + 1] += 1
    for i in range(n):
        count[i + 1] += count[i]
    out = np.empty_like(pairs)
    for p in range(pairs.shape[0]):
        q = count[pairs[p, 0]]
        out[q, 0] = pairs[p, 0]
        out[q, 1] = pairs[p, 1]
        count[pairs[p, 0]] = q + 1
    return out


@nb.njit(**_NB)
def _merge_pairs(pairs, fast, new):
    """``pairs`` (ordered by first particle) without the pairs of ``fast`` particles, merged
    with ``new`` (ordered by first particle, all first particles fast): the result is ordered
    by first particle too."""
    out = np.empty((pairs.shape[0] + new.shape[0], 2), pairs.dtype)
    k = 0
    q = 0
    for p in range(pairs.shape[0]):
        i = pairs[p, 0]
        while q < new.shape[0] and new[q, 0] < i:
            out[k, 0] = new[q, 0]
            out[k, 1] = new[q, 1]
            k += 1
            q += 1
        if not (fast[i] or fast[pairs[p, 1]]):
            out[k, 0] = i
            out[k, 1] = pairs[p, 1]
            k += 1
    while q < new.shape[0]:
        out[k, 0] = new[q, 0]
        out[k, 1] = new[q, 1]
        k += 1
        q += 1
    return out[:k]

def _pair_chunks_impl(pos, rad, box, periodic_z, extra, ncell, start, order, reach, pairs,
                      bounds, offs, caps, counts):
    """The pruned sweep over slabs of home cells ``bounds[c]:bounds[c + 1]`` (x index), each
    writing to its own room ``pairs[offs[c]:offs[c] + caps[c]]``; ``counts[c]`` = pairs found."""
    for c in nb.prange(bounds.shape[0] - 1):
        counts[c] = _pair_sweep_pruned(pos, rad, box, periodic_z, extra, ncell, start, order,
                                       reach, pairs, bounds[c], bounds[c + 1], offs[c],
                                       offs[c] + caps[c])


# threaded twin of the sweep (cached under its own name, like the threaded FIRE kernels)
_pair_chunks_par = nb.njit(cache=True, nogil=True, parallel=True)(_twin(_pair_chunks_impl, "_par"))
_PAIR_SLABS = 8


def _pair_list_threaded(pos, rad, box, periodic_z, extra, caps=None):
    """:func:`_pair_list_cap` with the sweep split into ``_PAIR_SLABS`` slabs of cells run on
    threads.  The slabs are concatenated in order, so the list is the serial one, pair for
    pair.  Returns (pairs, per-slab counts); ``caps`` are per-slab room guesses (e.g. the last
    counts).  Very small boxes fall back to the serial search."""
    ncell, start, order, reach = _pair_grid(pos, rad, box, periodic_z, extra)
    if reach == 0:
        return _pair_list_cap(pos, rad, box, periodic_z, extra, 8 * pos.shape[0]), None
    nsl = min(_PAIR_SLABS, int(ncell[0]))
    bounds = (np.arange(nsl + 1) * int(ncell[0])) // nsl
    if caps is None or len(caps) != nsl:
        # particles per slab (cells are x-major) times 8 pairs
        per_cell_x = ncell[1] * ncell[2]
        caps = 8 * np.diff(start[bounds * per_cell_x]) + 64
    caps = np.asarray(caps, np.int64)
    counts = np.zeros(nsl, np.int64)
    for _ in range(2):
        offs = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(np.int64)
        pairs = np.empty((int(caps.sum()), 2), np.int64)
        _pair_chunks_par(pos, rad, box, periodic_z, extra, ncell, start, order, reach, pairs,
                         bounds, offs, caps, counts)
        if (counts <= caps).all():
            break
        caps = counts.copy()  # exact room: the second sweep fits
    return np.concatenate([pairs[o:o + k] for o, k in zip(offs, counts, strict=True)]), counts


@nb.njit(**_NB)
def _pair_list(pos, rad, box, periodic_z, extra):
    """:func:`_pair_list_cap` with a capacity guess of 8 pairs per particle."""
    return _pair_list_cap(pos, rad, box, periodic_z, extra, 8 * pos.shape[0])


def _fire_forces_impl(pos, rad, hard, pairs, box, periodic_z, k_soft, k_hard, vel, buf, frc,
                      part):
    """Harmonic repulsion and FIRE's power: fills ``frc`` (N, 3) with net forces; returns
    (energy, max |F|, F.v, |v|, |F|) with norms over all particles.

    ``k (r_i + r_j - d)`` for overlapping pairs (``k_hard`` when both particles are hard, else
    ``k_soft``) and ``k`` times the overlap with the walls at z = 0 and z = L unless
    ``periodic_z``.  The pair list is cut into ``buf.shape[0]`` fixed chunks, each with its own
    force buffer, summed per particle in a fixed order: the result does not depend on the
    number of threads.  Pairs come ordered by their first particle (``_fire`` sorts them),
    whose force is summed in registers over its run of pairs and written once; any order gives
    the same forces up to rounding.
    """
    n = pos.shape[0]
    nch = buf.shape[0]
    npair = pairs.shape[0]
    bx, by, bz = box[0], box[1], box[2]
    hx, hy, hz = 0.5 * bx, 0.5 * by, 0.5 * bz
    for c in nb.prange(nch):
        ec = 0.0
        p0 = npair * c // nch
        p1 = npair * (c + 1) // nch
        cur = pairs[p0, 0] if p1 > p0 else 0
        px, py, pz = pos[cur, 0], pos[cur, 1], pos[cur, 2]
        rc = rad[cur]
        hc = hard[cur]
        ax = 0.0
        ay = 0.0
        az = 0.0
        for p in range(p0, p1):
            pi = pairs[p, 0]
            pj = pairs[p, 1]
            if pi != cur:  # the run of pairs of particle ``cur`` ends: write its sum
                buf[c, cur, 0] += ax
                buf[c, cur, 1] += ay
                buf[c, cur, 2] += az
                ax = 0.0
                ay = 0.0
                az = 0.0
                cur = pi
                px, py, pz = pos[cur, 0], pos[cur, 1], pos[cur, 2]
                rc = rad[cur]
                hc = hard[cur]
            # Minimum image by one shift: positions are folded into the box at every pair-list
            # build and move less than the skin in between, so |q| < 1.5 L.  (Same values as
            # q - L rint(q / L) for every pair in the list.)
            qx = pos[pj, 0] - px
            if qx > hx:
                qx -= bx
            elif qx < -hx:
                qx += bx
            qy = pos[pj, 1] - py
            if qy > hy:
                qy -= by
            elif qy < -hy:
                qy += by
            qz = pos[pj, 2] - pz
            if periodic_z:
                if qz > hz:
                    qz -= bz
                elif qz < -hz:
                    qz += bz
            q2 = qx * qx + qy * qy + qz * qz
            # Branch-free in the overlap test (about 40 % of the listed pairs do not overlap,
            # in no predictable order): a pair that does not overlap adds exact zeros.  This
            # was 1.6x faster than the branch at 1e5 particles.
            qd = math.sqrt(q2)
            ov = max(rc + rad[pj] - qd, 0.0) if q2 > 0.0 else 0.0
            kp = k_hard if hc & hard[pj] else k_soft
            fq = kp * ov / qd if q2 > 0.0 else 0.0
            ec += 0.5 * kp * ov * ov
            ax -= fq * qx
            ay -= fq * qy
            az -= fq * qz
            buf[c, pj, 0] += fq * qx
            buf[c, pj, 1] += fq * qy
            buf[c, pj, 2] += fq * qz
        if p1 > p0:
            buf[c, cur, 0] += ax
            buf[c, cur, 1] += ay
            buf[c, cur, 2] += az
        part[c, 0] = ec
    for c in nb.prange(nch):
        ew = 0.0
        fm = 0.0
        cp = 0.0
        cv = 0.0
        cf = 0.0
        for m in range(n * c // nch, n * (c + 1) // nch):
            fx = 0.0
            fy = 0.0
            fz = 0.0
            for q in range(nch):
                fx += buf[q, m, 0]
                fy += buf[q, m, 1]
                fz += buf[q, m, 2]
                buf[q, m, 0] = 0.0
                buf[q, m, 1] = 0.0
                buf[q, m, 2] = 0.0
            if not periodic_z:
                kw = k_soft
                if hard[m]:
                    kw = k_hard
                lo = rad[m] - pos[m, 2]
                if lo > 0.0:
                    fz += kw * lo
                    ew += 0.5 * kw * lo * lo
                hi = pos[m, 2] + rad[m] - box[2]
                if hi > 0.0:
                    fz -= kw * hi
                    ew += 0.5 * kw * hi * hi
            frc[m, 0] = fx
            frc[m, 1] = fy
            frc[m, 2] = fz
            g = fx * fx + fy * fy + fz * fz
            fm = max(fm, g)
            cf += g
            cp += fx * vel[m, 0] + fy * vel[m, 1] + fz * vel[m, 2]
            cv += vel[m, 0] ** 2 + vel[m, 1] ** 2 + vel[m, 2] ** 2
        part[c, 1] = ew
        part[c, 2] = fm
        part[c, 3] = cp
        part[c, 4] = cv
        part[c, 5] = cf
    e = 0.0
    fmax = 0.0
    pw = 0.0
    vn = 0.0
    fn = 0.0
    for c in range(nch):
        e += part[c, 0] + part[c, 1]
        fmax = max(fmax, part[c, 2])
        pw += part[c, 3]
        vn += part[c, 4]
        fn += part[c, 5]
    return e, math.sqrt(fmax), pw, math.sqrt(vn), math.sqrt(fn)


@nb.njit(**_NB)
def _top2(m1, m2, g):
    """The two largest of ``m1 >= m2`` and ``g``, in order."""
    if g > m1:
        return g, m1
    if g > m2:
        return m1, g
    return m1, m2


@nb.njit(**_NB)
def _top2_merged(top):
    """The sum of the square roots of the two largest entries of the chunks' (largest, second)
    table ``top`` (squared displacements: the two largest displacements)."""
    m1 = 0.0
    m2 = 0.0
    for c in range(top.shape[0]):
        m1, m2 = _top2(m1, m2, top[c, 0])
        m1, m2 = _top2(m1, m2, top[c, 1])
    return math.sqrt(m1) + math.sqrt(m2)


def _fire_move_impl(pos, vel, frc, mass, ref, box, periodic_z, keep, mix, dt, d2):
    """Velocity mixing and a semi-implicit Euler step,
    ``v <- keep v + mix F + dt F / m; x <- x + dt v``; fills ``d2`` with the squared
    displacements since ``ref`` and returns the sum of the two largest displacements (found
    per fixed chunk, then merged: exact and thread-count independent)."""
    n = pos.shape[0]
    nch = _NCHUNK
    top = np.zeros((nch, 2))
    ibx, iby, ibz = 1.0 / box[0], 1.0 / box[1], 1.0 / box[2]
    for c in nb.prange(nch):
        m1 = 0.0
        m2 = 0.0
        for m in range(n * c // nch, n * (c + 1) // nch):
            for a in range(3):
                vm = keep * vel[m, a] + mix * frc[m, a] + dt * frc[m, a] / mass[m]
                vel[m, a] = vm
                pos[m, a] += dt * vm
            ddx = _mi_inv(pos[m, 0] - ref[m, 0], box[0], ibx, True)
            ddy = _mi_inv(pos[m, 1] - ref[m, 1], box[1], iby, True)
            ddz = _mi_inv(pos[m, 2] - ref[m, 2], box[2], ibz, periodic_z)
            g = ddx * ddx + ddy * ddy + ddz * ddz
            d2[m] = g
            m1, m2 = _top2(m1, m2, g)
        top[c, 0] = m1
        top[c, 1] = m2
    return _top2_merged(top)


@nb.njit(**_NB)
def _wrap(pos, box, periodic_z):
    """Fold positions into the box along the periodic axes (in place)."""
    for m in range(pos.shape[0]):
        for a in range(3):
            if a < 2 or periodic_z:
                pos[m, a] -= box[a] * math.floor(pos[m, a] / box[a])


# Work is split into this many fixed chunks whatever the number of threads, and the chunks'
# partial sums are added in a fixed order: the same seed gives the same bytes on 1 or 64 cores.
# Each chunk has an (N, 3) force buffer, so the force loop uses at most 4 threads (16 chunks
# cost 38 MiB of buffers at 1e5 particles and were 20 % slower serially).
_NCHUNK = 4
# Each FIRE kernel exists twice, serial and multi-threaded, each cached on disk under its own name
# (``_twin``: made from the same function, the two once shared a cache index and crashed on
# reload; compiling the threaded kernels cost ~4.3 s in every process that packs >= 2e4).
# Threads pay off only when one call has enough work; below this many particles, or on one
# thread, the serial kernels run.  (On a loaded machine fine-grained threads were measured up
# to 30x slower than serial for 1600 particles.)
_PARALLEL_MIN_PARTICLES = 20_000
_PARALLEL_MIN_POINTS = 100_000  # sample points of the union fractions: threaded from here
_FIRST_FTOL = 1e-2  # tolerance of the quench before the SE radii are calibrated
_PILOT_MIN_PARTICLES = 5000  # larger boxes take their SE scale from a pilot box
_PILOT_PARTICLES = 2000  # particles in the pilot box
_SKIN = 0.8  # Verlet skin of the FIRE pair list, in units of the median radius
_DT_MAX = 0.3  # FIRE's largest time step, in units of sqrt(mass / k_soft)
# FIRE's mixing parameter at each restart and the downhill steps before the time step grows:
# Bitzek et al. (2006)'s values.  Measured over 20 seeds at 1e4 particles (benchmarks/
# fire_alpha.py): alpha 0.035-0.05 took 15-22 % fewer iterations on average than 0.1, within a
# seed-to-seed spread of 6k-29k; at 1e5 it goes either way (0.05 vs 0.1: 21.1k/21.5k vs
# 23.6k/25.2k for seeds 1 and 2, 38k vs 21k for the default seed) and over 12 seeds at 3e4 there
# is no difference (16.9k +- 1.6k vs 17.2k +- 2.0k), so the published value stays.
_FIRE_ALPHA0 = 0.1
_FIRE_NMIN = 5
_CASCADE_STEP = 0.1  # factor between the force tolerances of successive FIRE restarts
# Partial rebuilds of the Verlet list (see _partial_rebuild): particles that moved more than this
# fraction of the skin get fresh pairs; more than this share of fast particles -> full rebuild.
_PARTIAL_FRACTION = 0.35
_PARTIAL_MAX = 0.02
_SER = tuple(nb.njit(**_NB)(f) for f in (_fire_forces_impl, _fire_move_impl))
_PAR = tuple(nb.njit(cache=True, nogil=True, parallel=True)(_twin(f, "_par"))
             for f in (_fire_forces_impl, _fire_move_impl))


def _fire_kernels(n: int) -> tuple:
    """(forces, move) kernels for ``n`` particles: threaded when it pays off."""
    if n >= _PARALLEL_MIN_PARTICLES and nb.get_num_threads() > 1:
        return _PAR
    return _SER


def _partial_rebuild(pos, rad, box, periodic_z, skin, ref, d2, pairs):
    """The Verlet list renewed for its fast particles only, or None when a full rebuild is due.

    The list stays valid while, for every unlisted pair, the two particles have moved less than
    the skin in all since their pairs were searched (``ref``, per particle).  When that bound is
    broken it is nearly always by a handful of particles (at 1e4 particles: a median of one
    particle beyond half the skin): only the particles that moved more than
    ``_PARTIAL_FRACTION`` of the skin get fresh pairs and a fresh reference, searched with
    ``skin + d_j`` for each partner j that keeps its older reference (``d2``: squared
    displacements since ``ref``), so the bound holds again for every pair.  Positions must be
    folded (``_wrap``).  A full rebuild is due when more than ``_PARTIAL_MAX`` of the particles
    are fast, or the box is too small for cell lists.
    """
    n = pos.shape[0]
    disp = np.sqrt(d2)
    fast = disp > _PARTIAL_FRACTION * skin
    flist = np.flatnonzero(fast)
    if flist.size > _PARTIAL_MAX * n:
        return None
    disp[fast] = 0.0
    ncell, start, order, reach = _pair_grid(pos, rad, box, periodic_z, skin + float(disp.max()))
    if reach == 0:
        return None
    new = np.empty((16 * flist.size + 16, 2), np.int64)
    k = _pair_query(pos, rad, box, periodic_z, skin, disp, fast, flist, ncell, start, order,
                    reach, new, new.shape[0])
    if k > new.shape[0]:
        new = np.empty((k, 2), np.int64)
        _pair_query(pos, rad, box, periodic_z, skin, disp, fast, flist, ncell, start, order,
                    reach, new, k)
    ref[flist] = pos[flist]
    return _merge_pairs(pairs, fast, new[:k])


def _fire(pos, rad, hard, mass, box, periodic_z, k_soft, k_hard, ftol, maxit, skin, dt_max):
    """Minimise the harmonic overlap energy in place with FIRE (Bitzek et al., PRL 97, 170201,
    2006).  Returns (iterations, max |F|, energy, full and partial pair-list rebuilds).

    ``mass`` preconditions the stiff NMC-NMC modes.  A Verlet pair list with ``skin`` is
    renewed when the two largest displacements since the particles' pairs were searched add up
    to more than the skin: for the few fast particles only where that suffices
    (:func:`_partial_rebuild`), else in full.  The loop is Python (a few microseconds per
    iteration); the work per iteration is in two kernels (serial, or threaded for large ``n``:
    see ``_fire_kernels``) with fixed chunking, so results do not depend on the thread count.
    """
    n = pos.shape[0]
    forces, move = _fire_kernels(n)
    _wrap(pos, box, periodic_z)  # the force kernel's minimum image needs folded positions
    vel = np.zeros_like(pos)
    frc = np.zeros_like(pos)
    buf = np.zeros((_NCHUNK, n, 3))
    part = np.zeros((_NCHUNK, 6))
    d2 = np.zeros(n)
    ref = pos.copy()
    threaded = forces is _PAR[0]
    pairs, caps = _first_pairs(pos, rad, box, periodic_z, skin, threaded)
    dt = 0.25 * dt_max
    alpha = _FIRE_ALPHA0
    n_pos = 0
    it = 0
    nrebuild = 0
    npartial = 0
    while True:
        e, fmax, pw, vn, fn = forces(pos, rad, hard, pairs, box, periodic_z, k_soft, k_hard,
                                     vel, buf, frc, part)
        if fmax < ftol or it >= maxit:
            break
        it += 1
        keep, mix, dt, alpha, n_pos = _fire_rules(pw, vn, fn, dt, alpha, n_pos, dt_max)
        if move(pos, vel, frc, mass, ref, box, periodic_z, keep, mix, dt, d2) > skin:
            pairs, caps, full = _renew_pairs(pos, rad, box, periodic_z, skin, ref, d2, pairs,
                                             threaded, caps)
            nrebuild += full
            npartial += not full
    _wrap(pos, box, periodic_z)
    return it, fmax, e, nrebuild, npartial


def _first_pairs(pos, rad, box, periodic_z, skin, threaded):
    """The first Verlet list of a minimisation, sorted by first particle, and the threaded
    search's per-slab sizes (``caps``, None when serial)."""
    n = pos.shape[0]
    caps = None
    if threaded:
        pairs, caps = _pair_list_threaded(pos, rad, box, periodic_z, skin)
    else:
        pairs = _pair_list_cap(pos, rad, box, periodic_z, skin, 8 * n)
    return _sort_pairs(pairs, n), caps


def _fire_rules(pw, vn, fn, dt, alpha, n_pos, dt_max):
    """FIRE's update (Bitzek et al. 2006) from the power ``pw = F . v`` and the norms of
    ``v`` and ``F``: returns (keep, mix, dt, alpha, n_pos) with the velocity to become
    ``keep v + mix F`` before the step."""
    if pw > 0.0:  # downhill: mix the velocity towards the force, speed up
        keep, mix = 1.0 - alpha, alpha * vn / fn
        n_pos += 1
        if n_pos > _FIRE_NMIN:
            dt = min(dt * 1.1, dt_max)
            alpha *= 0.99
        return keep, mix, dt, alpha, n_pos
    # uphill: stop, shorten the step, restart the mixing
    return 0.0, 0.0, dt * 0.5, _FIRE_ALPHA0, 0


def _renew_pairs(pos, rad, box, periodic_z, skin, ref, d2, pairs, threaded, caps):
    """The Verlet list after a move beyond the skin: renewed for the fast particles only where
    that suffices (:func:`_partial_rebuild`), else in full (``ref`` reset).  Positions are
    folded first.  Returns (pairs, caps, full)."""
    n = pos.shape[0]
    _wrap(pos, box, periodic_z)
    fresh = _partial_rebuild(pos, rad, box, periodic_z, skin, ref, d2, pairs)
    if fresh is not None:
        return fresh, caps, False
    ref[:] = pos
    if threaded:
        room = None if caps is None else caps + caps // 4 + 64
        pairs, caps = _pair_list_threaded(pos, rad, box, periodic_z, skin, room)
    else:
        pairs = _pair_list_cap(pos, rad, box, periodic_z, skin,
                               pairs.shape[0] + pairs.shape[0] // 4 + 16)
    return _sort_pairs(pairs, n), caps, True


@nb.njit(**_NB)
def _contacts_kernel(pos, rad, pairs, box, periodic_z, tol_rel):
    """Filter a pair list to contacts: gap < tol_rel * min(r_i, r_j).  Returns a bool mask and
    the gaps of all pairs."""
    m = pairs.shape[0]
    keep = np.zeros(m, np.bool_)
    gap = np.empty(m)
    for p in range(m):
        i, j = pairs[p, 0], pairs[p, 1]
        r2, _, _, _ = _dist2(pos[i], pos[j], box, periodic_z)
        gap[p] = math.sqrt(r2) - rad[i] - rad[j]
        keep[p] = gap[p] < tol_rel * min(rad[i], rad[j])
    return keep, gap


def _union_sample_impl(pts, pos, rad, phase, box, periodic_z):
    """Phase of each sample point: NMC (1) if inside any NMC sphere, else SE (2) if inside any
    SE sphere, else pore (0).  Cell lists of size r_max: only 27 cells are searched.  Each
    point is independent (the threaded twin gives the same labels)."""
    n = pos.shape[0]
    rmax = 0.0
    for i in range(n):
        rmax = max(rmax, rad[i])
    ncell, start, order = _cells(pos, box, rmax, periodic_z)
    ox, oy = _offsets(ncell[0]), _offsets(ncell[1])
    oz = _offsets(ncell[2]) if periodic_z else np.array([-1, 0, 1], np.int64)
    out = np.zeros(pts.shape[0], np.int8)
    for p in nb.prange(pts.shape[0]):
        c0 = min(max(int(pts[p, 0] / box[0] * ncell[0]), 0), ncell[0] - 1)
        c1 = min(max(int(pts[p, 1] / box[1] * ncell[1]), 0), ncell[1] - 1)
        c2 = min(max(int(pts[p, 2] / box[2] * ncell[2]), 0), ncell[2] - 1)
        best = 0
        for dx in ox:
            cx = (c0 + dx) % ncell[0]
            for dy in oy:
                cy = (c1 + dy) % ncell[1]
                for dz in oz:
                    cz = c2 + dz
                    if periodic_z:
                        cz = cz % ncell[2]
                    elif cz < 0 or cz >= ncell[2]:
                        continue
                    cc = (cx * ncell[1] + cy) * ncell[2] + cz
                    for s in range(start[cc], start[cc + 1]):
                        j = order[s]
                        if best == PHASE_NMC:
                            break
                        if phase[j] == PHASE_SE and best == PHASE_SE:
                            continue
                        r2, _, _, _ = _dist2(pts[p], pos[j], box, periodic_z)
                        if r2 < rad[j] * rad[j]:
                            best = phase[j]
        out[p] = best
    return out


_union_sample = nb.njit(**_NB)(_union_sample_impl)
_union_sample_par = nb.njit(cache=True, nogil=True, parallel=True)(
    _twin(_union_sample_impl, "_par"))


# ----------------------------------------------------------------------------------------------
# Python wrappers
# ----------------------------------------------------------------------------------------------


def find_contacts(centers: np.ndarray, radii: np.ndarray, box: np.ndarray, *,
                  periodic_z: bool, tol_rel: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` whose gap is below ``tol_rel * min(r_i, r_j)``, found with cell lists.

    Parameters
    ----------
    centers : (N, 3) float64, any length unit
    radii : (N,) float64, same unit
    box : (3,) float64, same unit; x and y periodic (and z when ``periodic_z``)
    tol_rel : float, 1

    Returns
    -------
    pairs : (M, 2) int64, sorted lexicographically
    gap : (M,) float64, centre distance minus radii sum (negative: overlap)
    """
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    radii = np.ascontiguousarray(radii, dtype=np.float64)
    box = np.ascontiguousarray(box, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != 3 or radii.shape != (centers.shape[0],):
        raise ValueError("centers must be (N, 3) and radii (N,)")
    if radii.size == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    extra = tol_rel * float(radii.max())
    edges = box if periodic_z else box[:2]
    if 2 * (2 * radii.max() + extra) > edges.min():
        raise PackingFailed("box too small for the largest particle: each periodic edge must "
                            "exceed twice the largest diameter")
    pairs = _pair_list(centers, radii, box, periodic_z, extra)
    keep, gap = _contacts_kernel(centers, radii, pairs, box, periodic_z, tol_rel)
    pairs, gap = np.sort(pairs[keep], axis=1), gap[keep]
    idx = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[idx], gap[idx]


def _lens_radius(r1: np.ndarray, r2: np.ndarray, d: np.ndarray, a_min: float) -> np.ndarray:
    """Radius of the circle where two spheres (distance d) intersect; ``a_min`` if they don't."""
    x = (d**2 + r1**2 - r2**2) / (2 * d)
    a2 = r1**2 - x**2
    inside = d <= np.abs(r1 - r2)
    a = np.sqrt(np.clip(a2, 0.0, None))
    a = np.where(inside, np.minimum(r1, r2), a)
    return np.maximum(a, a_min)


def _sample_fractions(rng_pts: np.ndarray, pos: np.ndarray, rad: np.ndarray, phase: np.ndarray,
                      box: np.ndarray, periodic_z: bool) -> tuple[float, float, float]:
    """Union solid fraction, NMC share of solid, and the standard error, from sample points."""
    big = rng_pts.shape[0] >= _PARALLEL_MIN_POINTS and nb.get_num_threads() > 1
    lab = (_union_sample_par if big else _union_sample)(rng_pts, pos, rad, phase, box,
                                                        periodic_z)
    m = lab.size
    solid = float(np.count_nonzero(lab)) / m
    nmc = float(np.count_nonzero(lab == PHASE_NMC)) / m
    se = math.sqrt(max(solid * (1 - solid), 1e-12) / m)
    return solid, (nmc / solid if solid > 0 else 0.0), se


class _System:
    """Dimensionless state of a packing under construction (length unit: NMC median radius)."""

    def __init__(self, s: PackingParams, rng: np.random.Generator):
        self.s = s
        self.ell = 0.5 * s.nmc_d50_m
        self.box = np.array([s.box_x_m, s.box_y_m, s.electrode_thickness_m]) / self.ell
        self.periodic_z = s.z_boundary == "periodic"
        vol = float(np.prod(self.box))
        v_nmc = s.target_solid_fraction * s.nmc_fraction_of_solid * vol
        v_se = s.target_solid_fraction * (1 - s.nmc_fraction_of_solid) * vol
        r_nmc = _radii_for_volume(rng, v_nmc, 2.0, s.nmc_gsd, s.size_cutoff_sigmas)
        # SE sphere volume starts 25 % above its union target: overlaps eat the rest, and the
        # SE radii are then calibrated on the measured union (see pack).
        se_d50 = s.se_d50_m / self.ell
        r_se = _radii_for_volume(rng, 1.25 * v_se, se_d50, s.se_gsd, s.size_cutoff_sigmas)
        self.rad0 = np.concatenate([r_nmc, r_se])
        self.phase = np.concatenate([np.full(r_nmc.size, PHASE_NMC, np.int8),
                                     np.full(r_se.size, PHASE_SE, np.int8)])
        self.k_soft = 1.0
        self.k_hard = s.nmc_stiffness_ratio
        self.se_scale = 1.0
        n = self.rad0.size
        self.pos = rng.random((n, 3)) * self.box
        if not self.periodic_z:
            r = self.rad0
            self.pos[:, 2] = r + rng.random(n) * np.maximum(self.box[2] - 2 * r, 0.0)
        # Store particles in cell order: neighbours sit close in memory (cache locality).
        cell = 2.0 * float(np.median(self.rad0)) if n else 1.0
        _, _, order = _cells(self.pos, self.box, cell, self.periodic_z)
        self.pos = np.ascontiguousarray(self.pos[order])
        self.rad0 = self.rad0[order]
        self.phase = self.phase[order]
        self.hard = (self.phase == PHASE_NMC) | (not s.se_overlap_allowed)
        # Diagonal preconditioner: mass proportional to the particle's stiffest spring.
        self.mass = np.where(self.hard, self.k_hard, self.k_soft).astype(np.float64)
        self.iterations = 0
        self.rebuilds = 0  # full rebuilds of the FIRE pair list
        self.partial_rebuilds = 0  # renewals for the fast particles only
        self.fmax = np.inf

    @property
    def rad(self) -> np.ndarray:
        return np.where(self.phase == PHASE_SE, self.rad0 * self.se_scale, self.rad0)

    def minimise(self, rad: np.ndarray, ftol: float, maxit: int) -> float:
        """FIRE in a cascade of tolerances (0.1, 0.01, 0.001, ..., ftol), restarting FIRE (zero
        velocities, fresh time step) at each stage.  On one seed this once measured 4.8k
        against 9.4k iterations for a single run; over 20 seeds at 1e4 particles the cascade
        makes no difference (mean 12.9k +- 0.9k iterations; steps of 0.01: 13.2k +- 0.9k;
        0.1 then ``ftol``: 12.4k +- 0.8k), so the count is set by the relaxation itself."""
        e = 0.0
        tol = 0.1
        while True:
            e = self._fire(rad, max(tol, ftol), maxit)
            if tol <= ftol:
                return e
            tol *= _CASCADE_STEP

    @property
    def implicit(self) -> bool:
        """Whether the ``fire-imex`` minimiser runs (:func:`minimiser_used`)."""
        n_hard = int(np.count_nonzero(self.hard))
        return minimiser_used(self.s, self.rad0.size, n_hard) == "fire-imex"

    def _fire(self, rad: np.ndarray, ftol: float, maxit: int) -> float:
        skin = _SKIN * float(np.median(rad))
        if self.implicit:
            from esim._fire_imex import fire_imex

            it, fmax, e, nreb, npart = fire_imex(self.pos, rad, self.hard, self.box,
                                                 self.periodic_z, self.k_soft, self.k_hard,
                                                 ftol, maxit, skin, _DT_MAX)
        else:
            it, fmax, e, nreb, npart = _fire(self.pos, rad, self.hard, self.mass, self.box,
                                             self.periodic_z, self.k_soft, self.k_hard, ftol,
                                             maxit, skin, _DT_MAX)
        self.rebuilds += int(nreb)
        self.partial_rebuilds += int(npart)
        self.iterations += int(it)
        self.fmax = float(fmax)
        return float(e)


def minimiser_used(s: PackingParams, n: int, n_hard: int) -> str:
    """``structure.minimiser`` resolved for ``n`` particles of which ``n_hard`` are hard:
    ``auto`` is ``fire-imex`` from ``_PARALLEL_MIN_PARTICLES`` particles when both hard and soft
    particles exist (the implicit springs are the hard-soft contrast), else ``fire``."""
    if s.minimiser == "auto":
        big = n >= _PARALLEL_MIN_PARTICLES and 0 < n_hard < n
        return "fire-imex" if big else "fire"
    return s.minimiser


def pack(params: Params | None = None, *, quiet: bool = True) -> Packing:
    """Generate the two-phase packing described by ``params.structure``.

    Parameters
    ----------
    params : Params, optional
        Defaults to :class:`esim.params.Params()`.
    quiet : bool
        No progress bar (bars are shown only on a terminal anyway).

    Returns
    -------
    Packing

    Raises
    ------
    PackingFailed
        The targets are out of reach (hard NMC above its jamming density, or the SE cannot
        reach the solid fraction), or the box is too small for the largest particle.

    Examples
    --------
    >>> from esim.params import Params
    >>> p = Params().replace(structure={"box_x_m": 20e-6, "box_y_m": 20e-6,
    ...                                 "electrode_thickness_m": 15e-6, "sample_points": 20000})
    >>> pk = pack(p)
    >>> abs(pk.solid_fraction - 0.85) < 0.01
    True
    """
    params = params or Params()
    sysm, solid, nmc_share, err = _pack_state(params, quiet)
    return _finish(params, sysm, sysm.rad, solid, nmc_share, err)


def _pilot_se_scale(params: Params, n: int) -> float | None:
    """SE radius scale of the converged packing of a small pilot box, or None.

    The scale that puts the union solid fraction on target is an intensive property of the
    composition (same thickness, same size distributions), so for a large box it is first
    found on a box of about ``_PILOT_PARTICLES`` particles (its own seed, derived from the
    main one) and the large box starts from it: its first minimisation then runs straight to
    the force tolerance, and the usual calibration loop only corrects the small finite-size
    difference.  Boxes below ``_PILOT_MIN_PARTICLES`` (the default 40 x 40 x 50 um one among
    them) are calibrated directly, as before.
    """
    s = params.structure
    if n < _PILOT_MIN_PARTICLES or s.nmc_fraction_of_solid >= 1 or not s.se_overlap_allowed:
        return None
    shrink = math.sqrt(_PILOT_PARTICLES / n)
    seed = int(np.random.default_rng([s.seed, 1]).integers(2**62))
    pilot = params.replace(structure={"box_x_m": s.box_x_m * shrink,
                                      "box_y_m": s.box_y_m * shrink, "seed": seed})
    try:
        sysm = _pack_state(pilot, quiet=True)[0]
    except PackingFailed:  # e.g. the pilot box too small for the largest particle
        return None
    return sysm.se_scale


def _pack_state(params: Params, quiet: bool) -> tuple[_System, float, float, float]:
    """The minimised, calibrated state of :func:`pack` (before contacts are extracted)."""
    from esim._progress import progress

    s = params.structure
    rng = np.random.default_rng(s.seed)
    sysm = _System(s, rng)
    rmax = float(sysm.rad0.max()) if sysm.rad0.size else 0.0
    if sysm.rad0.size < 2:
        raise PackingFailed("structure: the box holds fewer than two particles; enlarge "
                            "box_x_m/box_y_m/electrode_thickness_m")
    periodic_edges = sysm.box if sysm.periodic_z else sysm.box[:2]
    if 2.2 * (2 * rmax) > periodic_edges.min():
        raise PackingFailed(
            "structure.box_x_m/box_y_m: each periodic edge must exceed 2.2 diameters of the "
            f"largest particle ({2 * rmax * sysm.ell:.3g} m)")
    phi_hard = s.target_solid_fraction * (s.nmc_fraction_of_solid if s.se_overlap_allowed else 1)
    if phi_hard > 0.70:
        raise PackingFailed(
            f"structure.target_solid_fraction x nmc_fraction_of_solid = {phi_hard:.3f}: hard "
            "spheres jam near 0.64-0.70 (random close packing); lower the target")
    pts = rng.random((s.sample_points, 3)) * sysm.box
    ftol = s.force_tolerance
    target = s.target_solid_fraction

    def measure() -> tuple[float, float, float]:
        return _sample_fractions(pts, sysm.pos, sysm.rad, sysm.phase, sysm.box, sysm.periodic_z)

    # 1. Quench: minimise the overlap energy from the random start at full size.  (A gradual
    #    compression gave the same fractions and contact statistics at several times the cost.)
    #    The first minimisation stops at a loose tolerance: the SE radii change next anyway.
    bar = progress(total=4, desc="packing", quiet=quiet)
    scale0 = _pilot_se_scale(params, sysm.rad0.size)
    if scale0 is not None:  # start from the pilot's SE scale, straight to the tolerance
        sysm.se_scale = scale0
        sysm.minimise(sysm.rad, ftol=ftol, maxit=s.max_iterations)
        converged = True
    else:
        sysm.minimise(sysm.rad, ftol=max(ftol, _FIRST_FTOL), maxit=s.max_iterations)
        converged = ftol >= _FIRST_FTOL
    bar.update(1)
    solid, nmc_share, err = measure()
    # 2. Calibrate the SE radii on the measured union solid fraction.  The inner secant loop
    #    rescales SE radii at fixed centres (sampling only); the outer loop re-minimises.
    for _outer in range(4):
        on_target = abs(solid - target) <= s.fraction_tolerance or s.nmc_fraction_of_solid >= 1
        if on_target and converged:
            break
        hist = [(sysm.se_scale, solid)]
        for _ in range(20 if (sysm.phase == PHASE_SE).any() else 0):
            if abs(solid - target) <= 0.25 * s.fraction_tolerance:
                break
            if len(hist) == 1:
                v_se_now = max(solid * (1 - nmc_share), 1e-6)
                v_se_goal = max(target - solid * nmc_share, 1e-6)
                new = sysm.se_scale * (v_se_goal / v_se_now) ** (1 / 3)
            else:
                (c0, f0), (c1, f1) = hist[-2], hist[-1]
                new = c1 + (target - f1) * (c1 - c0) / (f1 - f0) if f1 != f0 else c1 * 1.01
            sysm.se_scale = float(np.clip(new, 0.7 * sysm.se_scale, 1.4 * sysm.se_scale))
            solid, nmc_share, err = measure()
            hist.append((sysm.se_scale, solid))
        sysm.minimise(sysm.rad, ftol=ftol, maxit=s.max_iterations)
        converged = True
        solid, nmc_share, err = measure()
        bar.update(1)
    bar.close()
    if abs(solid - target) > max(s.fraction_tolerance, 3 * err) + 0.005:
        raise PackingFailed(f"structure.target_solid_fraction: reached {solid:.4f}, target "
                            f"{target:.4f}; the SE cannot fill the space at this composition")
    if sysm.fmax > 10 * ftol:
        raise PackingFailed(f"structure.max_iterations: the minimiser stopped at a residual "
                            f"force {sysm.fmax:.2e} (tolerance {ftol:.1e}); raise max_iterations")
    log.info("packing: %d iterations, solid fraction %.4f, NMC share %.4f", sysm.iterations,
             solid, nmc_share)
    return sysm, solid, nmc_share, err


def _finish(params: Params, sysm: _System, rad: np.ndarray, solid: float, nmc_share: float,
            err: float) -> Packing:
    """Contacts, contact radii, forces and the virial stress of the final state, in SI."""
    s = params.structure
    ell = sysm.ell
    pos = sysm.pos
    pairs, gap = find_contacts(pos, rad, sysm.box, periodic_z=sysm.periodic_z,
                               tol_rel=s.contact_tolerance_rel)
    i, j = pairs[:, 0], pairs[:, 1]
    d = gap + rad[i] + rad[j]
    a = _lens_radius(rad[i], rad[j], d, s.asperity_radius_m / ell)
    hard_pair = sysm.hard[i] & sysm.hard[j]
    k = np.where(hard_pair, sysm.k_hard, sysm.k_soft)
    force = k * np.clip(-gap, 0.0, None)
    stress = float(np.sum(force * d))
    # walls
    if sysm.periodic_z:
        wp = np.zeros(0, np.int64)
        ws = np.zeros(0, np.int8)
        wgap = np.zeros(0)
    else:
        tol = s.contact_tolerance_rel * rad
        gap_lo = pos[:, 2] - rad
        gap_hi = sysm.box[2] - pos[:, 2] - rad
        lo = np.flatnonzero(gap_lo < tol)
        hi = np.flatnonzero(gap_hi < tol)
        wp = np.concatenate([lo, hi])
        ws = np.concatenate([np.full(lo.size, WALL_CC, np.int8), np.full(hi.size, WALL_SEP,
                                                                           np.int8)])
        wgap = np.concatenate([gap_lo[lo], gap_hi[hi]])
    wr = rad[wp]
    wa = np.maximum(np.sqrt(np.clip(wr**2 - (wr + wgap) ** 2, 0.0, None)),
                    s.asperity_radius_m / ell)
    wk = np.where(sysm.hard[wp], sysm.k_hard, sysm.k_soft)
    wforce = wk * np.clip(-wgap, 0.0, None)
    stress += float(np.sum(wforce * (wr + wgap)))
    mean_stress = stress / (3.0 * float(np.prod(sysm.box)))
    return Packing(
        params=params,
        box_m=sysm.box * ell,
        centers_m=pos * ell,
        radii_m=rad * ell,
        phase=sysm.phase.copy(),
        contacts=pairs.astype(np.int32),
        contact_gap_m=gap * ell,
        contact_radius_m=a * ell,
        contact_force=force,
        wall_particle=wp.astype(np.int32),
        wall_side=ws,
        wall_gap_m=wgap * ell,
        wall_contact_radius_m=wa * ell,
        wall_force=wforce,
        mean_stress_model=mean_stress,
        solid_fraction=solid,
        nmc_fraction_of_solid=nmc_share,
        fraction_stderr=err,
        iterations=sysm.iterations,
        minimiser="fire-imex" if sysm.implicit else "fire",
        max_force_residual=sysm.fmax,
    )


# ----------------------------------------------------------------------------------------------
# Monodisperse hard spheres: jamming by compression (the random-close-packing check)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class JammedPacking:
    """Result of :func:`jam_hard_spheres`: positions at the jamming point of a periodic box.

    ``contacts`` are the pairs with gap below ``contact_tol_rel * r`` at the final state,
    ``rattlers`` those removed iteratively for having fewer than 4 (= d+1) contacts.
    """

    centers: np.ndarray  # (N, 3), units of the radius
    radius: float
    box: np.ndarray  # (3,)
    solid_fraction: float
    contacts: np.ndarray  # (M, 2)
    rattlers: np.ndarray  # (N,) bool
    mean_contacts_no_rattlers: float
    contact_tol_rel: float
    energy_per_particle: float
    iterations: int


def jam_hard_spheres(n: int, *, seed: int, contact_tol_rel: float = 1e-6,
                     e_jam: float = 1e-9, phi0: float = 0.55, ftol: float = 1e-8,
                     periodic_z: bool = True, dphi_min: float = 1e-3) -> JammedPacking:
    """Compress ``n`` equal soft spheres in a periodic cube to the jamming point.

    Radii grow in steps; after each step the overlap energy is minimised (FIRE).  While the
    minimum has zero energy (per particle below ``e_jam``) the packing is unjammed; above it, the
    step is undone and halved (bisection in phi), as in O'Hern et al., PRE 68, 011306 (2003).
    At the end the state is just above jamming, so contacts are the overlapping pairs.
    ``n >= 2`` (the FIRE kernel reads the first particle's data).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise InvalidParameters(f"n: at least 2 spheres to jam, got {n!r}")
    rng = np.random.default_rng(seed)
    r = 1.0
    side = (n * (4 / 3) * math.pi / phi0) ** (1 / 3)
    box = np.full(3, side)
    pos = rng.random((n, 3)) * box
    hard = np.ones(n, np.bool_)
    mass = np.ones(n)
    rad = np.full(n, r)
    iters = 0

    def relax(p: np.ndarray, radius: float) -> float:
        nonlocal iters
        it, fmax, e, _, _ = _fire(p, np.full(n, radius), hard, mass, box, periodic_z, 1.0, 1.0,
                               ftol, 2_000_000, 0.3, 0.2)
        iters += int(it)
        return float(e) / n

    phi = phi0
    relax(pos, r)
    dphi = 0.02
    last_free = pos.copy()
    phi_free = phi
    while dphi > dphi_min:
        trial = phi_free + dphi
        radius = r * (trial / phi0) ** (1 / 3)
        p = last_free.copy()
        e = relax(p, radius)
        if e > e_jam:
            dphi *= 0.5
            jammed_pos, phi_j = p, trial
        else:
            last_free, phi_free = p, trial
    # final state: the smallest jammed state found (just above phi_J)
    if "jammed_pos" not in locals():
        raise PackingFailed("compression did not reach jamming")
    radius = r * (phi_j / phi0) ** (1 / 3)
    rad[:] = radius
    e = relax(jammed_pos, radius)
    pairs, gap = find_contacts(jammed_pos, rad, box, periodic_z=periodic_z,
                               tol_rel=contact_tol_rel)
    z = np.bincount(pairs.ravel(), minlength=n)
    rattler = np.zeros(n, bool)
    while True:
        new = (~rattler) & (z < 4)
        if not new.any():
            break
        rattler |= new
        live = ~rattler[pairs[:, 0]] & ~rattler[pairs[:, 1]]
        z = np.bincount(pairs[live].ravel(), minlength=n)
    live = ~rattler[pairs[:, 0]] & ~rattler[pairs[:, 1]]
    zmean = 2 * live.sum() / max(1, (~rattler).sum())
    return JammedPacking(centers=jammed_pos, radius=radius, box=box, solid_fraction=phi_j,
                         contacts=pairs, rattlers=rattler, mean_contacts_no_rattlers=float(zmean),
                         contact_tol_rel=contact_tol_rel, energy_per_particle=e,
                         iterations=iters)
