"""Electron and Li-ion resistor networks of a sphere packing.

Nodes are the N particles plus two terminals: the current collector ``cc_node = N`` (z = 0)
and the separator ``sep_node = N + 1`` (z = L).  Edges are the packing's particle contacts
followed by its wall contacts, in the packing's order, so edge ``k < M_p`` is
``packing.contacts[k]`` and edge ``M_p + k`` is ``packing.wall_particle[k]`` against its wall.
An edge whose contact cannot carry the carrier keeps its place with ``g = 0``.

Edge resistance (series, nothing hidden)
----------------------------------------
``R = R_half(i) + R_half(j) + n_film R_film + R_wall``

Half-particle resistance ``R_half = rho / r * F(a / r)``
    The resistance of a sphere of radius r and resistivity rho from a contact disc of radius a
    (an equipotential, by symmetry, in the neck of two equal overlapping spheres) to the
    sphere's equatorial plane through its centre (the node), the rest of the surface being
    insulating.  ``F`` is fitted to an axisymmetric finite-volume solution of that truncated
    sphere (cell sizes r/400 and r/800, Richardson-extrapolated; a/r = 0.05..0.95):

    ``F(eps) = (1 - eps)^k / (4 eps) * (1 + c1 eps) + h / pi + c2 eps h (1 - eps)``,
    ``h = sqrt(1 - eps^2)``,

    with ``k, c1, c2`` in :data:`SPREADING_FIT`.  Limits: for a << r it is Holm's constriction
    resistance of a disc on a half-space, ``rho / (4 a)`` (Holm, Electric Contacts, 1967), plus
    the finite bulk of the sphere; as a -> r the constriction term vanishes like (1 - eps)^k and
    F tends to the bulk (one-dimensional) resistance of the thin slab between the contact
    plane and the centre plane, ``rho h r / (pi r^2)``.  This is the same construction as the
    analytic particle-to-particle resistance of Birkholz, Gan & Kamlah, Powder Technol. (2019),
    doi 10.1016/j.powtec.2019.04.005 (constriction + bulk of the truncated sphere), fitted
    here to our own numerical solution; the fit's largest relative error is stated in
    :data:`SPREADING_FIT_MAX_REL_ERROR` and checked against a voxel solve of two overlapping
    spheres in ``tests/test_network.py``.  For unequal spheres each particle uses its own
    ``a / r_i``; a wall contact uses the same half-particle term (the wall is a plane cut).

Coating films ``R_film``
    LiNbO3 covers every NMC surface.  Each NMC end of a contact adds one film,
    ``rho_f t / (pi a^2)`` for electrons (the calibrated product ``film_rho_e_thickness_ohm_m2``,
    part of the default electron path on NMC-NMC contacts) and ``t / (sigma_f pi a^2)`` for
    Li ions.  NMC-NMC: two films; NMC-SE and NMC-wall: one; SE-SE and SE-wall: none.

Terminals and measurement modes
-------------------------------
``mode="cell"`` (the working electrode)
    Electrons: the current collector (a metal) connects every particle touching z = 0; the
    separator (SE) blocks electrons: its node has no conducting edge.  Ions: the separator
    connects every particle touching z = L, with the separator's own spreading resistance
    ``rho_SE / (4 a)`` on its side (a half-space of glass); the metal collector blocks ions.
``mode="blocking"`` (the through-plane measurement of one carrier)
    Both faces are ideal electrodes for the carrier and block the other one: for electrons an
    *ion-blocking cell with electronic electrodes on both faces*, for ions an
    *electron-blocking cell with ionic (Li) electrodes on both faces*.  The wall side adds no
    resistance.  Used by :func:`esim.effective.effective_properties`.

Contact radius a
----------------
``network.contact_model = "geometric"``
    The lens circle of the two spheres (or sphere and wall) from the packing, at least the
    asperity radius ``structure.asperity_radius_m``.
``network.contact_model = "mechanical"``
    For the hard contacts (NMC-NMC and NMC-wall): Hertz, ``a = (3 F R* / (4 E*))^(1/3)``
    with ``1/R* = 1/r_i + 1/r_j`` (``R* = r`` against the flat collector) and
    ``1/E* = (1 - nu_i^2)/E_i + (1 - nu_j^2)/E_j``; when the Hertz mean pressure
    ``F / (pi a^2)`` exceeds the hardness H of the softer body (NMC against NMC; the steel
    collector, ``cc_hardness_Pa``, or the separator's glass, ``se_hardness_Pa``, against the
    walls: the packing presses NMC on both walls with its hard springs, so those lens radii are
    numerical too) the contact is fully plastic and ``pi a^2 = F / H``.  Equivalently
    ``a = max(a_Hertz, sqrt(F / (pi H)))``; then at least the asperity radius.  Contacts
    between particles involving the glass stay area contacts with the geometric lens (the glass
    is plastic at 360 MPa and overlaps in the packing, Sakuda et al., Sci. Rep. 3, 2261, 2013
    [S]).

Part of a contact (``contact_area_fraction``)
    A contact of which only the fraction f of its disc remains (the rest milled away with the
    part of a cut particle that held it, :func:`esim.spm.section.contact_kept_fraction`) is
    taken as a disc of the same area, radius ``a sqrt(f)`` [A].  The film term depends on the
    area only; of all flat contacts of one area the disc has the smallest capacitance, hence
    the largest constriction resistance (Polya & Szego, Isoperimetric Inequalities in
    Mathematical Physics, 1951), so the segment's resistance is over- rather than
    underestimated.  f = 0 opens the edge (``g = 0``).

Force scaling (mechanical model)
    The packing's forces are in model units (soft stiffness x length unit ell, ell = NMC
    median radius = ``structure.nmc_d50_m / 2``), and its virial mean stress
    ``sigma_model = sum_c F_c d_c / (3 V)`` (``esim.packing._finish``: pair forces times centre
    distances, wall forces times centre-to-wall distances, over the box volume, all lengths in
    ell) is in model force per ell^2.  A force scale S (N per model force unit) makes the real
    stress ``S sigma_model / ell^2``; setting it to the stack pressure P gives
    ``S = P ell^2 / sigma_model`` and ``F_N = F_model S``.

Examples
--------
>>> from esim.params import Params
>>> from esim.packing import pack
>>> p = Params().replace(structure={"box_x_m": 25e-6, "box_y_m": 25e-6,
...                                 "electrode_thickness_m": 20e-6, "sample_points": 50000})
>>> net = build_network(pack(p), p, carrier="electron", soc=1.0)
>>> net.n_nodes == net.sep_node + 1
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from esim._params_materials import NetworkParams
from esim.errors import InvalidParameters
from esim.materials import (film_resistance_e, film_resistance_ion, materials_of,
                            nmc_sigma_e, nmc_sigma_ion, se_sigma_e, se_sigma_ion)
from esim.packing import PHASE_NMC, WALL_CC, WALL_SEP, Packing

__all__ = [
    "CARRIERS",
    "EDGE_PARTICLE",
    "EDGE_WALL",
    "MODES",
    "ParticleNetwork",
    "SPREADING_FIT",
    "SPREADING_FIT_MAX_REL_ERROR",
    "build_network",
    "contact_radius_mechanical",
    "force_for_contact_radius",
    "half_particle_resistance",
    "network_params_of",
    "spreading_factor",
]

CARRIERS = ("electron", "ion")
MODES = ("cell", "blocking")
EDGE_PARTICLE = 0
EDGE_WALL = 1

#: Coefficients (k, c1, c2) of the half-particle factor F(eps); see the module docstring.
SPREADING_FIT = (1.4137, 0.9430, -0.1918)
#: Largest relative deviation of F from the finite-volume reference over a/r = 0.05..0.95.
SPREADING_FIT_MAX_REL_ERROR = 0.011


def network_params_of(params: Any) -> NetworkParams:
    """The :class:`NetworkParams` of a Params (defaults if the section is not registered)."""
    if isinstance(params, NetworkParams):
        return params
    return getattr(params, "network", None) or NetworkParams()


def spreading_factor(eps: Any) -> np.ndarray:
    """Dimensionless half-particle resistance ``F = R_half sigma r`` against ``eps = a / r``.

    Parameters
    ----------
    eps : array_like, 1
        Contact radius over particle radius, in (0, 1]; values above 1 are clipped to 1.

    Returns
    -------
    F : ndarray, 1.  ``F -> 1/(4 eps)`` as eps -> 0 (Holm); ``F -> sqrt(1 - eps^2)/pi`` as
        eps -> 1 (bulk slab); ``F(1) = 0``.
    """
    k, c1, c2 = SPREADING_FIT
    e = np.clip(np.asarray(eps, dtype=np.float64), 1e-300, 1.0)
    h = np.sqrt(1.0 - e * e)
    return (1.0 - e) ** k / (4.0 * e) * (1.0 + c1 * e) + h / np.pi + c2 * e * h * (1.0 - e)


def half_particle_resistance(a_m: Any, r_m: Any, rho_ohm_m: Any) -> np.ndarray:
    """Resistance of one particle from a contact of radius a to its centre plane.

    ``R_half = rho / r * F(a / r)`` (see :func:`spreading_factor`).

    Parameters
    ----------
    a_m : array_like, m
        Contact radius (> 0).
    r_m : array_like, m
        Particle radius.
    rho_ohm_m : array_like, ohm m
        Resistivity of the particle for the carrier.

    Returns
    -------
    R : ndarray, ohm (broadcast shape).  For a << r it is Holm's ``rho / (4 a)``.
    """
    a = np.asarray(a_m, dtype=np.float64)
    r = np.asarray(r_m, dtype=np.float64)
    return np.asarray(rho_ohm_m, dtype=np.float64) / r * spreading_factor(a / r)


def contact_radius_mechanical(force_N: Any, r_star_m: Any, e_star_Pa: Any,
                              hardness_Pa: Any) -> np.ndarray:
    """Contact radius of an elastic-plastic sphere contact: Hertz with a hardness cap.

    ``a_H = (3 F R* / (4 E*))^(1/3)``; if the Hertz mean pressure ``F / (pi a_H^2)`` exceeds
    the hardness H, ``a = sqrt(F / (pi H))`` (fully plastic), i.e. ``a = max(a_H, a_P)``.

    Parameters
    ----------
    force_N : array_like, N (>= 0)
    r_star_m : array_like, m, effective radius ``1/R* = 1/R1 + 1/R2``
    e_star_Pa : array_like, Pa, effective modulus ``1/E* = sum (1 - nu^2)/E``
    hardness_Pa : array_like, Pa

    Returns
    -------
    a : ndarray, m (0 where F = 0).  The mean pressure ``F / (pi a^2)`` never exceeds H.
    """
    F = np.asarray(force_N, dtype=np.float64)
    if np.any(F < 0) or np.any(~np.isfinite(F)):
        raise InvalidParameters("force_N: contact forces must be finite and >= 0 N")
    a_hertz = np.cbrt(3.0 * F * np.asarray(r_star_m) / (4.0 * np.asarray(e_star_Pa)))
    a_plastic = np.sqrt(F / (np.pi * np.asarray(hardness_Pa)))
    return np.maximum(a_hertz, a_plastic)


def force_for_contact_radius(a_m: Any, r_star_m: Any, e_star_Pa: Any,
                             hardness_Pa: Any) -> np.ndarray:
    """The force that makes a contact of radius a: the inverse of
    :func:`contact_radius_mechanical`.

    ``a = max(a_H(F), a_P(F))`` grows with F along both branches, so the smallest force that
    reaches a is ``min(F_H, F_P)`` with ``F_H = 4 E* a^3 / (3 R*)`` (Hertz) and
    ``F_P = pi a^2 H`` (fully plastic).

    Parameters
    ----------
    a_m : array_like, m (>= 0)
    r_star_m, e_star_Pa, hardness_Pa : as :func:`contact_radius_mechanical`

    Returns
    -------
    F : ndarray, N.  ``contact_radius_mechanical(F, ...) == a``.
    """
    a = np.asarray(a_m, dtype=np.float64)
    if np.any(a < 0) or np.any(~np.isfinite(a)):
        raise InvalidParameters("a_m: contact radii must be finite and >= 0 m")
    f_hertz = 4.0 * np.asarray(e_star_Pa) * a**3 / (3.0 * np.asarray(r_star_m))
    f_plastic = np.pi * a * a * np.asarray(hardness_Pa)
    return np.minimum(f_hertz, f_plastic)


@dataclass(frozen=True, eq=False)
class ParticleNetwork:
    """A resistor network of a packing for one carrier.

    Attributes
    ----------
    carrier : str
        ``"electron"`` or ``"ion"``.
    mode : str
        ``"cell"`` or ``"blocking"`` (see the module docstring).
    n_nodes : int
        ``N + 2``: particles, then the current collector and the separator.
    cc_node, sep_node : int
        ``N`` and ``N + 1``.
    conns : (M, 2) int64
        Edge end nodes: the packing's contacts, then its wall contacts (particle, terminal).
    g : (M,) float64, S
        Edge conductances (0: this contact does not carry the carrier in this mode).
    edge_kind : (M,) int8
        ``EDGE_PARTICLE`` (0) or ``EDGE_WALL`` (1).
    contact_radius_m : (M,) float64, m
        Contact radius used for each edge (geometric or mechanical).
    r_bulk_ohm : (M,) float64, ohm
        Sum of the half-particle (spreading + bulk) resistances of the edge, and the
        separator's spreading where it applies.
    r_film_ohm : (M,) float64, ohm
        Coating-film resistance of the edge.
    coords_m : (N + 2, 3) float64, m
        Particle centres; terminals at the middle of their face (z = 0 and z = L).
    phase : (N + 2,) int8
        Particle phase (1 NMC, 2 SE); 0 for the two terminals.
    """

    carrier: str
    mode: str
    n_nodes: int
    cc_node: int
    sep_node: int
    conns: np.ndarray
    g: np.ndarray
    edge_kind: np.ndarray
    contact_radius_m: np.ndarray
    r_bulk_ohm: np.ndarray
    r_film_ohm: np.ndarray
    coords_m: np.ndarray
    phase: np.ndarray

    def __repr__(self) -> str:
        return (f"ParticleNetwork(carrier={self.carrier!r}, mode={self.mode!r}, "
                f"n_nodes={self.n_nodes}, conns={self.conns.shape}, g={self.g.shape}, "
                f"conducting_edges={int(np.count_nonzero(self.g))})")

    def to_networkx(self) -> Any:
        """The network as an undirected ``networkx.MultiGraph``.

        Nodes carry ``pos`` (m) and ``phase``; edges carry ``g`` (S), ``a`` (m, contact
        radius) and ``kind`` (0 particle, 1 wall).  Zero-conductance edges are left out.
        """
        import networkx as nx

        G = nx.MultiGraph(carrier=self.carrier, mode=self.mode, cc_node=self.cc_node,
                          sep_node=self.sep_node)
        G.add_nodes_from((int(i), {"pos": tuple(map(float, self.coords_m[i])),
                                   "phase": int(self.phase[i])})
                         for i in range(self.n_nodes))
        keep = np.flatnonzero(self.g > 0)
        G.add_edges_from((int(self.conns[k, 0]), int(self.conns[k, 1]),
                          {"g": float(self.g[k]), "a": float(self.contact_radius_m[k]),
                           "kind": int(self.edge_kind[k])}) for k in keep)
        return G


def _per_particle_soc(soc: Any, n: int) -> np.ndarray:
    if soc is None:
        return np.zeros(n)
    s = np.asarray(soc, dtype=np.float64)
    if s.ndim == 0:
        return np.full(n, float(s))
    if s.shape != (n,):
        raise InvalidParameters(f"soc: expected a scalar or an array of shape ({n},), one per "
                                f"particle, got shape {s.shape}")
    return s


def _resistivities(packing: Packing, params: Any, carrier: str, soc: Any) -> np.ndarray:
    """(N,) ohm m: resistivity of each particle for the carrier."""
    m = materials_of(params)
    n = packing.n_particles
    nmc = packing.phase == PHASE_NMC
    sigma = np.empty(n)
    if carrier == "electron":
        s = _per_particle_soc(soc, n)
        sigma[nmc] = nmc_sigma_e(s[nmc], m.temperature_K, m)
        sigma[~nmc] = se_sigma_e(None, m)
    else:
        sigma[nmc] = nmc_sigma_ion(0.0, m.temperature_K, m)
        sigma[~nmc] = se_sigma_ion(m.temperature_K, m)
    with np.errstate(divide="ignore"):
        return 1.0 / sigma


def _mechanical_radii(packing: Packing, params: Any, a_pair: np.ndarray,
                      a_wall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hertz-with-hardness-cap radii for NMC-NMC and NMC-wall contacts (see module doc)."""
    m = materials_of(params)
    ell = 0.5 * packing.params.structure.nmc_d50_m
    if not packing.mean_stress_model > 0:
        raise InvalidParameters("network.contact_model = 'mechanical': the packing carries no "
                                "contact stress (mean_stress_model = 0); use 'geometric'")
    scale_N = m.stack_pressure_Pa * ell**2 / packing.mean_stress_model
    a_min = packing.params.structure.asperity_radius_m
    nmc = packing.phase == PHASE_NMC
    i, j = packing.contacts[:, 0], packing.contacts[:, 1]
    hard = nmc[i] & nmc[j]
    r = packing.radii_m
    c_nmc = (1.0 - m.nmc_poisson_ratio**2) / m.nmc_youngs_modulus_Pa
    c_cc = (1.0 - m.cc_poisson_ratio**2) / m.cc_youngs_modulus_Pa
    r_star = r[i] * r[j] / (r[i] + r[j])
    a_h = contact_radius_mechanical(packing.contact_force * scale_N, r_star, 0.5 / c_nmc,
                                    m.nmc_hardness_Pa)
    a_pair = np.where(hard, np.maximum(a_h, a_min), a_pair)
    wp = packing.wall_particle
    # the packing presses NMC on both walls with the hard springs, so their lens radii are
    # numerical there too: Hertz against the wall's material, capped at the softer body's
    # hardness -- the steel collector at z = 0, the separator's glass at z = L
    c_se = (1.0 - m.se_poisson_ratio**2) / m.se_youngs_modulus_Pa
    at_cc = packing.wall_side == WALL_CC
    e_star_w = np.where(at_cc, 1.0 / (c_nmc + c_cc), 1.0 / (c_nmc + c_se))
    h_w = np.where(at_cc, min(m.nmc_hardness_Pa, m.cc_hardness_Pa),
                   min(m.nmc_hardness_Pa, m.se_hardness_Pa))
    a_hw = contact_radius_mechanical(packing.wall_force * scale_N, r[wp], e_star_w, h_w)
    a_wall = np.where(nmc[wp], np.maximum(a_hw, a_min), a_wall)
    return a_pair, a_wall


def build_network(packing: Packing, params: Any = None, *, carrier: str, soc: Any = None,
                  mode: str = "cell", contact_area_fraction: Any = None) -> ParticleNetwork:
    """Build the particle resistor network of a packing for electrons or Li ions.

    Parameters
    ----------
    packing : Packing
        With walls (``structure.z_boundary = "walls"``).
    params : Params, optional
        Uses the ``materials`` and ``network`` sections (defaults when absent); defaults to
        ``packing.params``.
    carrier : {"electron", "ion"}
    soc : float or (N,) array_like, 1, optional
        State of charge of each particle (only NMC entries are used); a scalar applies to all.
        Defaults to 0 (pristine, as made).  Ignored for ions.  In [0, 1 / nmc_x_max]: SOC 1 is
        the practical capacity (x = nmc_x_max), 1 / nmc_x_max is x = 1.
    mode : {"cell", "blocking"}
        Terminal contacts: the working electrode, or the blocking-electrode measurement cell
        (see the module docstring).
    contact_area_fraction : (M,) array_like, 1, optional
        Fraction of each edge's contact disc that remains, in [0, 1] (edges in the network's
        order); the contact becomes a disc of that area (see the module docstring).  Default:
        whole contacts.

    Returns
    -------
    ParticleNetwork

    Raises
    ------
    InvalidParameters
        Unknown carrier or mode (the message lists the valid names), a packing without walls,
        a SOC array of the wrong shape or out of [0, 1 / nmc_x_max], a contact area fraction of
        the wrong
        shape or out of [0, 1].
    """
    if carrier not in CARRIERS:
        raise InvalidParameters(f"carrier: unknown {carrier!r}; valid carriers: "
                                f"{', '.join(CARRIERS)}")
    if mode not in MODES:
        raise InvalidParameters(f"mode: unknown {mode!r}; valid modes: {', '.join(MODES)}")
    if packing.periodic_z:
        raise InvalidParameters("structure.z_boundary = 'periodic': a network with current "
                                "collector and separator terminals needs walls")
    params = packing.params if params is None else params
    m = materials_of(params)
    net_p = network_params_of(params)
    n = packing.n_particles
    cc, sep = n, n + 1
    phase = packing.phase
    nmc = phase == PHASE_NMC
    rho = _resistivities(packing, params, carrier, soc)
    r = packing.radii_m

    # contact radii
    a_pair = packing.contact_radius_m.astype(np.float64)
    a_wall = packing.wall_contact_radius_m.astype(np.float64)
    if net_p.contact_model == "mechanical":
        a_pair, a_wall = _mechanical_radii(packing, params, a_pair, a_wall)
    elif net_p.contact_model != "geometric":
        raise InvalidParameters(f"network.contact_model: unknown {net_p.contact_model!r}; "
                                "valid: geometric, mechanical")
    open_ = np.ones(a_pair.size + a_wall.size, dtype=bool)
    if contact_area_fraction is not None:
        f = np.asarray(contact_area_fraction, dtype=np.float64)
        if f.shape != open_.shape or not np.all((f >= 0) & (f <= 1)):
            raise InvalidParameters(f"contact_area_fraction: expected {open_.size} values in "
                                    f"[0, 1] (one per edge), got shape {f.shape}"
                                    + ("" if f.shape != open_.shape else " with values outside"))
        open_ = f > 0
        scale = np.sqrt(np.where(open_, f, 1.0))  # a removed contact keeps a finite radius
        a_pair = a_pair * scale[:a_pair.size]
        a_wall = a_wall * scale[a_pair.size:]
    film = film_resistance_e if carrier == "electron" else film_resistance_ion

    # particle-particle edges
    i = packing.contacts[:, 0].astype(np.int64)
    j = packing.contacts[:, 1].astype(np.int64)
    rb_pair = (half_particle_resistance(a_pair, r[i], rho[i])
               + half_particle_resistance(a_pair, r[j], rho[j]))
    n_film_pair = nmc[i].astype(np.float64) + nmc[j]
    rf_pair = n_film_pair * film(a_pair, m)

    # wall edges
    wp = packing.wall_particle.astype(np.int64)
    ws = packing.wall_side
    rb_wall = half_particle_resistance(a_wall, r[wp], rho[wp])
    rf_wall = nmc[wp] * film(a_wall, m)
    if mode == "blocking":
        wall_open = np.ones(wp.size, dtype=bool)
    elif carrier == "electron":
        wall_open = ws == WALL_CC
    else:
        wall_open = ws == WALL_SEP
        # the separator is a half-space of glass: Holm spreading on its side
        rb_wall = rb_wall + np.where(wall_open,
                                     1.0 / (4.0 * a_wall * se_sigma_ion(m.temperature_K, m)),
                                     0.0)

    conns = np.concatenate([np.stack([i, j], axis=1),
                            np.stack([wp, np.where(ws == WALL_CC, cc, sep)], axis=1)]
                           ).astype(np.int64)
    r_bulk = np.concatenate([rb_pair, rb_wall])
    r_film = np.concatenate([rf_pair, rf_wall])
    total = r_bulk + r_film
    open_ &= np.concatenate([np.ones(i.size, dtype=bool), wall_open])
    with np.errstate(divide="ignore"):
        g = np.where(open_ & np.isfinite(total), 1.0 / total, 0.0)
    kind = np.concatenate([np.full(i.size, EDGE_PARTICLE, np.int8),
                           np.full(wp.size, EDGE_WALL, np.int8)])
    box = packing.box_m
    coords = np.concatenate([packing.centers_m,
                             [[box[0] / 2, box[1] / 2, 0.0], [box[0] / 2, box[1] / 2, box[2]]]])
    node_phase = np.concatenate([phase.astype(np.int8), np.zeros(2, np.int8)])
    return ParticleNetwork(carrier=carrier, mode=mode, n_nodes=n + 2, cc_node=cc, sep_node=sep,
                           conns=conns, g=g, edge_kind=kind,
                           contact_radius_m=np.concatenate([a_pair, a_wall]),
                           r_bulk_ohm=r_bulk, r_film_ohm=r_film, coords_m=coords,
                           phase=node_phase)

