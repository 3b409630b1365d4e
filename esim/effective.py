"""Effective through-plane conductivities, tortuosity factors and percolation of a packing.

Definitions
-----------
``sigma_e_S_per_m``
    Electronic conductivity through the electrode, measured as in an *ion-blocking cell with
    electronic electrodes on both faces*: the electron network in ``mode="blocking"`` with the
    current collector (z = 0) at 1 V and the opposite face (z = L) at 0 V;
    ``sigma = G L / A`` (G the two-terminal conductance, L the electrode thickness, A the box
    cross-section).  Every particle carries electrons at its own conductivity, the glass too
    (1e-9 S/cm), so a non-percolating NMC skeleton still gives a small, finite value.
``sigma_ion_S_per_m``
    Ionic conductivity as in an *electron-blocking cell with Li electrodes on both faces*: the
    Li-ion network in ``mode="blocking"``.
``tau_e``, ``tau_ion``
    Tortuosity factors against the conducting phase: ``sigma_eff = eps sigma_bulk / tau`` with
    ``eps`` the union volume fraction of that phase in the whole electrode (pores included)
    and ``sigma_bulk`` its bulk conductivity (NMC electronic at the given SOC; glass ionic).
    A uniform block of the phase has tau = 1; no path gives ``inf``.  Contacts and films are
    part of tau (this is an effective, "network" tortuosity factor, not a path length ratio).
    A two-phase medium cannot beat ``eps sigma_bulk`` (Wiener's bound), so tau >= 1; the
    particle network can give tau < 1 in dense packings, where each contact's half-particle
    resistance uses its sphere's whole section and the soft glass spheres overlap (a volume
    shared by several contacts counts once per contact).  Measured against resolved voxel
    solves of the same 54:46 packings with their periodic sides
    (``experiments/particle_vs_voxel.py``): sigma_ion 0.95x the voxel value at solid fraction
    0.80, 1.09x at 0.85, 1.25x at 0.90 and 1.66x at 0.95, as the glass spheres' summed volume
    outgrows their union (1.09, 1.18, 1.35, 1.68x); a glass-only packing at 0.95 gives
    tau_ion = 0.66.  ``effective_properties``
    logs a warning when tau < 1; the particle network's transport is validated at the default
    0.85.
``bruggeman_e``, ``bruggeman_ion``
    The same results as Bruggeman exponents, what cell models such as PyBaMM take:
    ``sigma_eff = sigma_bulk eps^b``, i.e. ``b = ln(sigma_eff / sigma_bulk) / ln(eps)``
    (so ``tau = eps^(1 - b)``; b = 1.5 is Bruggeman's random spheres).  NaN where it is not
    defined: ``eps`` of 0 or 1, or no path (``sigma_eff`` of 0).
``sigma_e_percolating``, ``sigma_ion_percolating``
    Whether any conducting path joins the two faces in that network.  Every phase carries
    electrons, the glass too, so ``sigma_e_percolating`` is True even for an electrode without
    NMC; whether the NMC skeleton itself spans the electrode is ``nmc_percolates``.
``nmc_percolates``
    A cluster of NMC-NMC contacts touches both the current collector and the separator
    (:meth:`esim.packing.Packing.nmc_connectivity`).
``nmc_connected_fraction``
    Volume fraction of NMC (sphere volumes) in clusters of NMC-NMC contacts that touch the
    current collector.  Connectivity is topological over the phase that carries the carrier:
    electrons are counted through NMC only (the glass conducts electrons ~1e6 times worse).
``se_connected_fraction``
    Volume fraction of SE in clusters of SE-SE contacts that touch the separator (z = L).
``active_interface_area_m2``
    NMC/SE interface area of connected NMC touching connected SE.  The interface of one
    NMC-SE contact is the spherical cap of the NMC sphere inside the SE sphere,
    ``2 pi r_NMC h`` with ``h = r_NMC - x`` and ``x = (d^2 + r_NMC^2 - r_SE^2) / (2 d)`` the
    distance from the NMC centre to the lens plane (the glass wraps the oxide; the lens disc
    would undercount it), at least the contact disc ``pi a^2`` for touching pairs; the sum per
    NMC particle is capped at its sphere area ``4 pi r^2`` (SE caps on one particle may
    overlap).  ``interface_area_m2`` is the same sum over all NMC-SE contacts.

Every conductivity comes with the solver's diagnostics: ``<name>_flux_mismatch``,
``<name>_iterations``, ``<name>_residual`` (peer lesson 1).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from esim import solver
from esim.errors import InvalidParameters
from esim.materials import materials_of, nmc_sigma_e, se_sigma_ion, soc_to_x
from esim.network import build_network
from esim.packing import PHASE_NMC, PHASE_SE, WALL_CC, WALL_SEP, Packing

log = logging.getLogger(__name__)

__all__ = ["bruggeman_exponent", "connected_to_wall", "effective_properties",
           "interface_cap_area", "soc_sweep"]


def connected_to_wall(packing: Packing, phase: int, wall_side: int) -> np.ndarray:
    """Particles of ``phase`` joined to a wall through same-phase contacts.

    Parameters
    ----------
    packing : Packing
    phase : int
        ``PHASE_NMC`` or ``PHASE_SE``.
    wall_side : int
        ``WALL_CC`` (z = 0) or ``WALL_SEP`` (z = L).

    Returns
    -------
    connected : (N,) bool
    """
    n = packing.n_particles
    own = packing.phase == phase
    c = packing.contacts
    keep = own[c[:, 0]] & own[c[:, 1]]
    wk = own[packing.wall_particle] & (packing.wall_side == wall_side)
    rows = np.concatenate([c[keep, 0], packing.wall_particle[wk]]).astype(np.int64)
    cols = np.concatenate([c[keep, 1], np.full(int(wk.sum()), n)]).astype(np.int64)
    adj = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n + 1, n + 1))
    _, lab = connected_components(adj, directed=False)
    return (lab[:n] == lab[n]) & own


def interface_cap_area(packing: Packing) -> tuple[np.ndarray, np.ndarray]:
    """NMC/SE interface area of every NMC-SE contact: the cap of NMC inside the SE sphere.

    Returns
    -------
    contact_index : (K,) int64
        Rows of ``packing.contacts`` that are NMC-SE pairs.
    area_m2 : (K,) float64, m^2
        ``max(2 pi r_NMC h, pi a^2)``, ``h`` clipped to ``[0, 2 r_NMC]``.
    """
    ph = packing.phase
    c = packing.contacts.astype(np.int64)
    pi_, pj = ph[c[:, 0]], ph[c[:, 1]]
    mixed = np.flatnonzero(((pi_ == PHASE_NMC) & (pj == PHASE_SE))
                           | ((pi_ == PHASE_SE) & (pj == PHASE_NMC)))
    cm = c[mixed]
    nmc_first = ph[cm[:, 0]] == PHASE_NMC
    n_idx = np.where(nmc_first, cm[:, 0], cm[:, 1])
    s_idx = np.where(nmc_first, cm[:, 1], cm[:, 0])
    rn, rs = packing.radii_m[n_idx], packing.radii_m[s_idx]
    d = np.maximum(rn + rs + packing.contact_gap_m[mixed], 1e-30)
    x = (d * d + rn * rn - rs * rs) / (2.0 * d)
    h = np.clip(rn - x, 0.0, 2.0 * rn)
    a = packing.contact_radius_m[mixed]
    return mixed, np.maximum(2.0 * np.pi * rn * h, np.pi * a * a)


def bruggeman_exponent(eps: float, sigma_bulk: float, sigma_eff: float) -> float:
    """``b`` of ``sigma_eff = sigma_bulk eps^b`` (NaN for ``eps`` outside (0, 1) or a zero
    conductivity).

    >>> round(bruggeman_exponent(0.4, 1.0, 0.4**1.5), 12)  # Bruggeman's 1.5
    1.5
    """
    if not (0.0 < eps < 1.0) or not (sigma_bulk > 0.0 and sigma_eff > 0.0):
        return math.nan
    return math.log(sigma_eff / sigma_bulk) / math.log(eps)


def _conductivity(packing: Packing, params: Any, carrier: str, soc: float,
                  prefix: str, out: dict[str, Any]) -> float:
    net = build_network(packing, params, carrier=carrier, soc=soc, mode="blocking")
    res = solver.conductance_between(net.n_nodes, net.conns, net.g, [net.cc_node],
                                     [net.sep_node], allow_zero=True)
    box = packing.box_m
    sigma = solver.effective_conductivity(res.conductance_S, float(box[0] * box[1]),
                                          float(box[2]))
    out[f"{prefix}_S_per_m"] = sigma
    out[f"{prefix}_flux_mismatch"] = float(res.flux_mismatch)
    out[f"{prefix}_iterations"] = int(res.iterations)
    out[f"{prefix}_residual"] = float(res.residual)
    out[f"{prefix}_percolating"] = bool(res.percolating)
    return sigma


def effective_properties(packing: Packing, params: Any = None, soc: float = 0.0
                         ) -> dict[str, Any]:
    """Effective electrical properties of a packing at a uniform state of charge.

    Parameters
    ----------
    packing : Packing
        With walls at z = 0 (current collector) and z = L (separator).
    params : Params, optional
        ``materials`` and ``network`` sections; defaults to ``packing.params``.
    soc : float, 1
        Uniform state of charge in [0, 1] (x = soc * x_max in Li(1-x)NMC111).

    Returns
    -------
    dict
        Keys (SI units named in the key; definitions in the module docstring):
        ``soc``, ``x``, ``temperature_K``,
        ``sigma_e_S_per_m`` with ``sigma_e_flux_mismatch``, ``sigma_e_iterations``,
        ``sigma_e_residual``, ``sigma_e_percolating``;
        ``sigma_ion_S_per_m`` with the same four diagnostics;
        ``nmc_sigma_e_bulk_S_per_m``, ``se_sigma_ion_bulk_S_per_m``,
        ``nmc_volume_fraction``, ``se_volume_fraction``, ``tau_e``, ``tau_ion``,
        ``nmc_percolates``, ``nmc_connected_fraction``, ``se_connected_fraction``,
        ``active_interface_area_m2``, ``interface_area_m2``.

    Examples
    --------
    >>> from esim.params import Params
    >>> from esim.packing import pack
    >>> p = Params().replace(structure={"box_x_m": 25e-6, "box_y_m": 25e-6,
    ...                                 "electrode_thickness_m": 20e-6, "sample_points": 50000})
    >>> out = effective_properties(pack(p), p, soc=1.0)
    >>> out["sigma_ion_S_per_m"] > 0
    True
    """
    soc_f = float(soc)
    if not (0.0 <= soc_f <= 1.0) or not math.isfinite(soc_f):
        raise InvalidParameters(f"soc: must lie in [0, 1], got {soc!r}")
    params = packing.params if params is None else params
    m = materials_of(params)
    out: dict[str, Any] = {"soc": soc_f, "x": float(soc_to_x(soc_f, m)),
                           "temperature_K": m.temperature_K}
    sig_e = _conductivity(packing, params, "electron", soc_f, "sigma_e", out)
    sig_i = _conductivity(packing, params, "ion", soc_f, "sigma_ion", out)

    phi_nmc = packing.solid_fraction * packing.nmc_fraction_of_solid
    phi_se = packing.solid_fraction * (1.0 - packing.nmc_fraction_of_solid)
    bulk_e = float(nmc_sigma_e(soc_f, m.temperature_K, m))
    bulk_i = float(se_sigma_ion(m.temperature_K, m))
    out["nmc_sigma_e_bulk_S_per_m"] = bulk_e
    out["se_sigma_ion_bulk_S_per_m"] = bulk_i
    out["nmc_volume_fraction"] = phi_nmc
    out["se_volume_fraction"] = phi_se
    out["tau_e"] = (solver.tortuosity_factor(phi_nmc, bulk_e, sig_e) if phi_nmc > 0
                    else math.inf)
    out["tau_ion"] = (solver.tortuosity_factor(phi_se, bulk_i, sig_i) if phi_se > 0
                      else math.inf)
    out["bruggeman_e"] = bruggeman_exponent(phi_nmc, bulk_e, sig_e)
    out["bruggeman_ion"] = bruggeman_exponent(phi_se, bulk_i, sig_i)
    for key, what in (("tau_e", "electronic"), ("tau_ion", "ionic")):
        if out[key] < 1.0:  # beyond Wiener's bound: the network overcounts overlapping volume
            log.warning("%s = %.3g < 1: the particle network's %s conductivity exceeds "
                        "eps * sigma_bulk, which no two-phase medium can (solid fraction "
                        "%.3f; the network overcounts overlapping sphere volume in dense "
                        "packings: see esim.effective)", key, out[key], what,
                        packing.solid_fraction)

    vol = packing.radii_m**3
    nmc = packing.phase == PHASE_NMC
    se = packing.phase == PHASE_SE
    nmc_conn = connected_to_wall(packing, PHASE_NMC, WALL_CC)
    se_conn = connected_to_wall(packing, PHASE_SE, WALL_SEP)
    out["nmc_percolates"] = bool(packing.nmc_connectivity()["nmc_percolates"])
    out["nmc_connected_fraction"] = (float(vol[nmc_conn].sum() / vol[nmc].sum())
                                     if nmc.any() else 0.0)
    out["se_connected_fraction"] = (float(vol[se_conn].sum() / vol[se].sum())
                                    if se.any() else 0.0)

    idx, area = interface_cap_area(packing)
    c = packing.contacts[idx].astype(np.int64)
    n_idx = np.where(nmc[c[:, 0]], c[:, 0], c[:, 1])
    s_idx = np.where(nmc[c[:, 0]], c[:, 1], c[:, 0])
    cap = 4.0 * np.pi * packing.radii_m**2
    n = packing.n_particles
    per_all = np.minimum(np.bincount(n_idx, weights=area, minlength=n), cap)
    active = nmc_conn[n_idx] & se_conn[s_idx]
    per_active = np.minimum(np.bincount(n_idx[active], weights=area[active], minlength=n), cap)
    out["interface_area_m2"] = float(per_all.sum())
    out["active_interface_area_m2"] = float(per_active.sum())
    return out


def soc_sweep(packing: Packing, params: Any = None, socs: Iterable[float] = (0.0, 1.0)
              ) -> list[dict[str, Any]]:
    """:func:`effective_properties` at each state of charge (the sigma_e vs SOC curve).

    Parameters
    ----------
    socs : iterable of float, 1

    Returns
    -------
    list of dict, one per SOC, in the given order.
    """
    return [effective_properties(packing, params, float(s)) for s in socs]

