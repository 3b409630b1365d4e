"""Material laws of the composite: conductivities of NMC111, Li3PS4 glass and the LiNbO3 film.

All functions are vectorised over numpy arrays and return SI units (S/m, ohm, ohm m^2).  The
defaults and their literature sources live in :mod:`esim._params_materials`
(:class:`~esim._params_materials.MaterialsParams`); the laws here are:

NMC111 electronic conductivity, Li(1-x)NMC
    ``log10 sigma(x, T_ref)`` and the activation energy ``E_a(x)`` are interpolated linearly
    in x between the table points of Amin & Chiang, J. Electrochem. Soc. 163, A1512 (2016)
    (x = 0, 0.10, 0.30, 0.50, 0.75 at T_ref = 30 C), with the x = 0 point replaced by the
    calibrated pristine value; outside the table, the end values are held constant.
    Temperature: Arrhenius ``sigma(T) = sigma(T_ref) exp(-E_a/k_B (1/T - 1/T_ref))``.
State of charge
    ``x = SOC * x_max`` with ``x_max = 0.59`` (164 mAh/g of 277.8 mAh/g theoretical, Otoyama
    et al. 2020): SOC 0 is the as-made pristine material, SOC 1 the reference charge to 4.4 V.
Li3PS4 glass
    Li-ion conductivity with Arrhenius from 25 C (Sakuda, Hayashi & Tatsumisago, Sci. Rep. 3,
    2261, 2013 [S]); electronic conductivity constant ([E] estimate).
LiNbO3 coating
    Film resistance of a contact of radius a: ``R_f = rho_f t / (pi a^2)`` per film; the
    electronic product ``rho_f t`` is a calibrated parameter, the ionic one is ``t / sigma_f``.

Examples
--------
>>> from esim.materials import nmc_sigma_e, soc_to_x
>>> from esim._params_materials import MaterialsParams
>>> m = MaterialsParams()
>>> float(nmc_sigma_e(0.5, 303.15, m, kind="x"))  # Amin & Chiang: 1.6e-3 S/cm at x = 0.5
0.16
>>> round(float(soc_to_x(1.0, m)), 2)
0.59
"""

from __future__ import annotations

from typing import Any

import numpy as np

from esim._fields import section_of
from esim._params_materials import MaterialsParams
from esim.errors import InvalidParameters

__all__ = [
    "BOLTZMANN_eV_per_K",
    "NMC_TABLE_X",
    "arrhenius_factor",
    "film_resistance_e",
    "film_resistance_ion",
    "materials_of",
    "nmc_sigma_e",
    "nmc_sigma_e_table",
    "nmc_sigma_ion",
    "se_sigma_e",
    "se_sigma_ion",
    "soc_to_x",
    "x_to_soc",
]

#: Boltzmann constant, eV/K (CODATA 2018, exact by the 2019 SI definition).
BOLTZMANN_eV_per_K = 8.617333262e-5

#: x in Li(1-x)NMC111 of the conductivity table (Amin & Chiang, JES 163, A1512, 2016).
NMC_TABLE_X = np.array([0.0, 0.10, 0.30, 0.50, 0.75])


def materials_of(params: Any) -> MaterialsParams:
    """The :class:`MaterialsParams` of ``params``.

    Accepts a :class:`MaterialsParams` itself, a :class:`~esim.params.Params`, or None (the
    defaults).
    """
    return section_of(params, MaterialsParams, "materials")


def soc_to_x(soc: Any, params: Any = None) -> np.ndarray:
    """Delithiation x in Li(1-x)NMC111 from the state of charge.

    ``x = SOC * x_max``; ``x_max = 164 / 277.8 = 0.59`` by default (Otoyama et al. 2020 first
    charge capacity over the theoretical capacity of NMC111, M = 96.46 g/mol).

    Parameters
    ----------
    soc : float or array_like, 1
        State of charge, 0 (pristine) to 1 (the reference capacity); a particle may pass 1
        locally (a non-uniform charge), up to x = 1, i.e. SOC = 1 / x_max.
    params : Params or MaterialsParams, optional

    Returns
    -------
    x : ndarray, 1
    """
    soc = np.asarray(soc, dtype=np.float64)
    xmax = materials_of(params).nmc_x_max
    if np.any(~np.isfinite(soc)) or np.any(soc < 0) or np.any(soc * xmax > 1 + 1e-12):
        raise InvalidParameters(f"soc: must lie in [0, {1 / xmax:.4g}] (x in [0, 1]), got "
                                f"{_show(soc)}")
    return soc * xmax


def x_to_soc(x: Any, params: Any = None) -> np.ndarray:
    """State of charge from x in Li(1-x)NMC111: ``SOC = x / x_max`` (inverse of soc_to_x).

    Parameters
    ----------
    x : float or array_like, 1
        In [0, 1] (x above x_max gives SOC above 1: a particle charged past the reference).

    Returns
    -------
    soc : ndarray, 1
    """
    x = np.asarray(x, dtype=np.float64)
    xmax = materials_of(params).nmc_x_max
    if np.any(~np.isfinite(x)) or np.any(x < 0) or np.any(x > 1 + 1e-12):
        raise InvalidParameters(f"x: must lie in [0, 1], got {_show(x)}")
    return x / xmax


def _show(a: np.ndarray) -> str:
    a = np.atleast_1d(a)
    return repr(a.tolist()) if a.size <= 4 else f"array with range [{a.min():g}, {a.max():g}]"


def arrhenius_factor(ea_eV: Any, T_K: Any, T_ref_K: float) -> np.ndarray:
    """``exp(-E_a / k_B (1/T - 1/T_ref))``: conductivity at T over that at T_ref.

    Parameters
    ----------
    ea_eV : float or array_like, eV
    T_K : float or array_like, K
    T_ref_K : float, K

    Returns
    -------
    ndarray, 1
    """
    T = np.asarray(T_K, dtype=np.float64)
    if np.any(~(T > 0)):
        raise InvalidParameters(f"temperature_K: must be > 0 K, got {_show(T)}")
    return np.exp(-np.asarray(ea_eV) / BOLTZMANN_eV_per_K * (1.0 / T - 1.0 / T_ref_K))


def nmc_sigma_e_table(params: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The NMC electronic conductivity table in SI units.

    Returns
    -------
    x : (5,) float64, 1
    sigma : (5,) float64, S/m, at ``nmc_sigma_reference_temperature_K``; ``sigma[0]`` is the
        calibrated pristine value ``nmc_sigma_e_pristine_S_per_m``.
    ea : (5,) float64, eV
    """
    m = materials_of(params)
    sigma = np.array([m.nmc_sigma_e_pristine_S_per_m, m.nmc_sigma_e_x010_S_per_m,
                      m.nmc_sigma_e_x030_S_per_m, m.nmc_sigma_e_x050_S_per_m,
                      m.nmc_sigma_e_x075_S_per_m])
    ea = np.array([m.nmc_ea_e_x000_eV, m.nmc_ea_e_x010_eV, m.nmc_ea_e_x030_eV,
                   m.nmc_ea_e_x050_eV, m.nmc_ea_e_x075_eV])
    return NMC_TABLE_X.copy(), sigma, ea


def nmc_sigma_e(value: Any, T_K: Any = None, params: Any = None, *,
                kind: str = "soc") -> np.ndarray:
    """Electronic conductivity of Li(1-x)NMC111.

    log10(sigma) and E_a are interpolated linearly in x between the table points (Amin &
    Chiang 2016, pristine point calibrated), then scaled by Arrhenius from the table's
    temperature (30 C) to ``T_K``.  Beyond x = 0.75 the last point is held.

    Parameters
    ----------
    value : float or array_like, 1
        State of charge (``kind="soc"``, ``x / nmc_x_max``: 1 at the practical capacity, up
        to ``1 / nmc_x_max`` at x = 1) or x in Li(1-x)NMC (``kind="x"``, in [0, 1]).
    T_K : float or array_like, K, optional
        Temperature; defaults to ``materials.temperature_K`` (298.15 K).
    params : Params or MaterialsParams, optional
    kind : {"soc", "x"}

    Returns
    -------
    sigma : ndarray, S/m, the broadcast shape of ``value`` and ``T_K``.
    """
    m = materials_of(params)
    if kind == "soc":
        x = soc_to_x(value, m)
    elif kind == "x":
        x = np.asarray(value, dtype=np.float64)
        if np.any(~np.isfinite(x)) or np.any(x < 0) or np.any(x > 1):
            raise InvalidParameters(f"x: must lie in [0, 1], got {_show(x)}")
    else:
        raise InvalidParameters(f"kind: unknown {kind!r}; valid: soc, x")
    T = m.temperature_K if T_K is None else T_K
    tx, sig, ea = nmc_sigma_e_table(m)
    log_sigma = np.interp(x, tx, np.log10(sig))
    ea_x = np.interp(x, tx, ea)
    return 10.0**log_sigma * arrhenius_factor(ea_x, T, m.nmc_sigma_reference_temperature_K)


def nmc_sigma_ion(value: Any = 0.0, T_K: Any = None, params: Any = None) -> np.ndarray:
    """Li-ion conductivity of NMC111, S/m: ``nmc_sigma_ion_S_per_m`` (~1e-8 S/cm, Amin &
    Chiang 2016), independent of SOC and temperature (the source gives no dependence).

    Parameters
    ----------
    value : float or array_like, state of charge (sets only the output shape)
    T_K : ignored (kept for a uniform signature), K

    Returns
    -------
    sigma : ndarray, S/m
    """
    m = materials_of(params)
    return np.full(np.shape(value), m.nmc_sigma_ion_S_per_m)


def se_sigma_ion(T_K: Any = None, params: Any = None) -> np.ndarray:
    """Li-ion conductivity of the Li3PS4 glass, S/m, with Arrhenius from 25 C.

    3.1e-4 S/cm cold-pressed at 360 MPa (Sakuda, Hayashi & Tatsumisago, Sci. Rep. 3, 2261,
    2013); activation energy ``se_ea_ion_eV`` ([E] estimate).

    Parameters
    ----------
    T_K : float or array_like, K, optional (default ``materials.temperature_K``)

    Returns
    -------
    sigma : ndarray, S/m
    """
    m = materials_of(params)
    T = m.temperature_K if T_K is None else T_K
    return m.se_sigma_ion_S_per_m * arrhenius_factor(m.se_ea_ion_eV, T,
                                                     m.se_sigma_ion_reference_temperature_K)


def se_sigma_e(T_K: Any = None, params: Any = None) -> np.ndarray:
    """Electronic conductivity of the Li3PS4 glass, S/m (1e-9 S/cm [E], T-independent)."""
    m = materials_of(params)
    return np.full(np.shape(T_K) if T_K is not None else (), m.se_sigma_e_S_per_m)


def film_resistance_e(a_m: Any, params: Any = None) -> np.ndarray:
    """Electronic resistance of one LiNbO3 film over a contact of radius a.

    ``R_f = (rho_f t) / (pi a^2)`` with the calibrated product ``film_rho_e_thickness_ohm_m2``
    (a uniform film across the contact disc; edge effects neglected, valid for t << a).

    Parameters
    ----------
    a_m : float or array_like, m
        Contact radius (> 0).

    Returns
    -------
    R : ndarray, ohm
    """
    a = np.asarray(a_m, dtype=np.float64)
    return materials_of(params).film_rho_e_thickness_ohm_m2 / (np.pi * a * a)


def film_resistance_ion(a_m: Any, params: Any = None) -> np.ndarray:
    """Li-ion resistance of one LiNbO3 film over a contact of radius a.

    ``R_f = t / (sigma_f pi a^2)`` with ``film_thickness_m`` and ``film_sigma_ion_S_per_m``.

    Parameters
    ----------
    a_m : float or array_like, m

    Returns
    -------
    R : ndarray, ohm
    """
    m = materials_of(params)
    a = np.asarray(a_m, dtype=np.float64)
    return m.film_thickness_m / (m.film_sigma_ion_S_per_m * np.pi * a * a)
