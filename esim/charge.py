"""Galvanostatic first charge of the composite electrode, particle by particle.

Model
-----
Potentials are in V, measured against a Li reference placed in the electrolyte at the counter
electrode: the In-Li counter electrode is taken as non-polarisable, so the ion potential there
is 0 and the composite's current collector sits at ``V`` = the cell voltage vs Li+/Li (vs In-Li:
``V - charge.counter_electrode_V_vs_Li``).

Unknowns of a step (backward Euler, one Newton solve of the whole nonlinear system):

* ``phi_e`` (V) of every NMC particle joined to the current collector through NMC-NMC contacts
  (the electron network of :func:`esim.network.build_network`, restricted to NMC: the glass's
  electronic leakage, ~1e-9 S/cm, is neglected);
* ``V`` (V), the current collector's potential, with the galvanostatic constraint: the current
  entering through the collector equals ``I = j A_box``;
* ``phi_ion`` (V) of every SE particle joined to the separator through SE-SE contacts (the ion
  network, restricted to the glass: NMC's Li-ion conductivity, ~1e-8 S/cm, is neglected);
  the separator face of the composite is held at ``phi_sep = I R_sep``,
  ``R_sep = t_sep / (sigma_sep A_box)`` (ohm), the series resistance of the SE separator layer:
  all the cell current crosses it, so its drop is known once ``I`` is;
* ``x`` (1) of every such NMC particle, its delithiation in Li(1-x)NMC111.

Reaction at each NMC/SE interface ``k`` (NMC-SE contacts, area = the spherical cap of the NMC
inside the SE sphere, :func:`esim.effective.interface_cap_area`; NMC-separator wall contacts,
the cap beyond the plane z = L), Butler-Volmer with an optional series ASR ``r``::

    Delta = phi_e(NMC) - phi_ion(SE) - U(x_NMC)              (V)
    eta + r j = Delta,  j = i0 [exp(a f eta) - exp(-(1 - a) f eta)],  f = F / (R T)
    I_k = A_k j                                              (A)

Sign convention: ``I_k > 0`` is oxidation, i.e. charging: Li+ leaves the NMC into the glass and
the electron leaves through the NMC's electron network to the collector; conventional current
flows NMC -> SE at the interface and collector -> NMC in the electron network.

Balances (all in A):

* NMC node:       ``sum_j g_e (phi_e,i - phi_e,j) + sum_k I_k = 0``
* collector:      ``sum_walls g_e (V - phi_e,i) = I``
* SE node:        ``sum_j g_ion (phi_ion,m - phi_ion,j) - sum_k I_k = 0``
* Li in NMC i:    ``Q_i (x_i - x_i^old) / dt = sum_k I_k``, ``Q_i = m_i q_theo`` (C per unit x)

Summing the first two and the last gives ``sum_i Q_i dx_i = I dt`` exactly: the charge passed
equals the Li removed, to the Newton tolerance.  The electron conductances depend on each
particle's x (:func:`esim.materials.nmc_sigma_e`); within a step they are evaluated at the
start-of-step x (lagged, first-order like backward Euler; the step-halving test bounds the
error), everything else is implicit.

The reaction current enters and leaves each particle at its node (the particle's potential),
as in the resistor network: the NMC's own resistance between an interface and the rest of the
particle is left out [A].  For a pristine particle (the calibrated 2.2e-4 S/m at the table's
30 C, 1.6e-4 S/m at the cell's 25 C with E_a = 0.48 eV) and an interface cap of radius 0.7 r
(r = 2.5 um) its spreading part rho/(4a) is 8.9e8 ohm, 2.1 times the cap's charge-transfer
resistance (4.2e8 ohm at R_ct = 40 ohm cm2 over pi a^2); at x = 0.1 (sigma eleven times
higher) it is a fifth of it, and from x ~ 0.3 on negligible: it can slow only the onset.

Particles without a path (NMC not joined to the collector, SE not joined to the separator) have
no unknowns: their interfaces carry no current and their x never changes.  An isolated NMC
cluster could in principle shuttle Li between its own particles; starting from one x, it has no
driving force, so nothing is lost.

Solid diffusion: ``charge.solid_diffusion = "uniform"`` (default) keeps one x per particle.
At 0.13 mA/cm2 the charge takes ~5e4 s while ``r^2/D = (2.5 um)^2 / 0.9e-14 m2/s ~ 700 s``
(Amin & Chiang, JES 163, A1512, 2016, the minimum D near x = 0.55): the surface-to-mean excess
of x under a constant flux, ``r^2/(15 D) dx/dt``, is ~6e-4 (~1 mV of U), so shells are not
needed at this rate (:func:`diffusion_estimate`).  ``"shells"`` splits each particle into
``n_shells`` radial shells of equal thickness (finite volumes, x per shell): between shells
``j`` and ``j+1`` flows ``kappa (x_{j+1} - x_j)`` (A), ``kappa = D(x) 4 pi r_f^2 rho q / dr``
with ``D(x)`` from :func:`nmc_diffusivity` (Amin & Chiang 2016, lagged at the start-of-step x
like the conductivities); the interfaces see the surface shell's x.  Measured on the default
electrode: 5 shells give 163.69 mAh/g against 163.83 uniform (0.08 %), OCV 4.367 against 4.369
V, confirming the default.  The x block stays block-tridiagonal per particle, eliminated
exactly in the Schur step (Thomas algorithm, vectorised over particles).

Limits of one x per particle: Li enters and leaves a particle's single x at no cost, so with
very fast kinetics and a very poor glass (i0 >~ 1e3 A/m2 with sigma_SE <~ 1e-5 S/m) an NMC
particle can carry Li+ across itself (reduced on one side, oxidised on the other) and short the
glass.  At the defaults (i0 = 6.4 A/m2, 3.1e-2 S/m) that path is ~1e3 times more resistive than
the glass.  Particles may also take up a little Li (x slightly below 0) near the separator at
the very start; U(x) is continued linearly below x = 0 for this.

Calibration and the two reference numbers (Otoyama et al. 2020: 164 mAh/g at 4.4 V; OCV 3.74 V
vs In-Li = 4.36 V vs Li after the charge).  With the typical half-cell U(x) table as is
(``charge.ocv_x_scale = 1``), the default electrode (40 x 40 x 50 um, 2191 particles, 0.24 %
of the NMC mass isolated) reaches 186.3 mAh/g at 4.4 V (+13.6 %) and rests to 4.371 V vs Li.  The
defaults are calibrated on the **capacity**: ``ocv_x_scale = 1.136`` gives 163.8 mAh/g; the OCV
after the assumed 1 h rest is then a prediction, 4.369 V vs Li (3.749 V vs In-Li), 9 mV above the
paper's.  The table alone cannot give both: it reads 4.13 V at x = 0.59, so a cell that stops at
164 mAh/g and rests at 4.36 V has either ~12 % of its NMC unreacted (this network model finds
< 1 % isolated at the default packing) or a U(x) reached at ~12 % less delithiation than the
table, which is what the scale encodes.

Time stepping: adaptive; a step grows by ``dt_growth`` after a Newton solve in <= 4
iterations, is cut by half on a Newton failure, shortened when any particle's x would move
by more than ``max_dx_per_step``, and the last charge step is shortened (secant on dt) until V
lies within ``cutoff_tolerance_V`` of the cut-off.  Then an optional rest at I = 0 for
``rest_time_s``; the OCV is V at its end.

Linear algebra: each Newton step eliminates the x unknowns (one per particle, coupled only to
its own interfaces) and solves the Schur complement on the potentials, which is a grounded
weighted graph Laplacian (symmetric positive definite, checked against finite differences in
the tests), by CG preconditioned with a SuperLU factorisation (up to 6000 potentials) or a
smoothed-aggregation AMG hierarchy (:mod:`esim.solver`'s, CSR throughout) of an earlier
Jacobian, rebuilt only when CG slows down.  The Schur complement's sparsity never changes, so
its positions are found once and each Newton iteration sums its values in one numba pass
(:class:`_SchurPattern`).  Measured on an idle 2-core machine, one harness run
(``benchmarks/results/charge_amg.md``): 10 188 particles 49 s (255 MiB peak), 107 359
particles (the default packing tiled 7 x 7) 538 s (748 MiB), 189 steps and 588 Newton
iterations; the same run of the previous version (pyamg's hierarchy and V-cycle, scipy's CG
and sparse products): 66 s and 1367 s.  At 1e5 the time is ~75 % CG (~16 iterations a
solve at ~24 ms: four symmetric Gauss-Seidel sweeps over 3.5e6 entries, the restriction and
the exact coarse solve), ~15 % the residual and Jacobian.

Errors: a charge that cannot finish (cut-off unreachable within ``max_time_s`` or
``max_steps``, a particle delithiated beyond ``x_limit``, a Newton failure below ``dt_min_s``,
a current so high that V exceeds the cut-off at once) raises :class:`ChargeIncomplete`, whose
``result`` holds what was computed so far (``partial=True``).

Examples
--------
>>> from esim.params import Params
>>> from esim.packing import pack
>>> p = Params().replace(structure={"box_x_m": 25e-6, "box_y_m": 25e-6,
...                                 "electrode_thickness_m": 20e-6, "sample_points": 50000})
>>> res = charge(pack(p), p)                                      # doctest: +SKIP
>>> round(res.capacity_mAh_per_g)                                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from esim._params_charge import ChargeParams, charge_params_of
from esim.errors import EsimError, InvalidParameters, NotPercolating, SolverDidNotConverge
from esim.materials import arrhenius_factor, materials_of, nmc_sigma_e
from esim.ocv import nmc_ocv
from esim.packing import PHASE_NMC, PHASE_SE, WALL_CC, WALL_SEP, Packing

__all__ = ["ChargeIncomplete", "ChargeResult", "charge", "diffusion_estimate", "params_with_charge",
           "plot_charge", "nmc_diffusivity",
           "FARADAY_C_per_mol", "GAS_J_per_mol_K"]

log = logging.getLogger(__name__)

FARADAY_C_per_mol = 96485.33212
GAS_J_per_mol_K = 8.314462618
_C_PER_mAh = 3.6

SNAP_ONSET, SNAP_END_OF_CHARGE, SNAP_AFTER_REST = 0, 1, 2
PHASE_CHARGE, PHASE_REST = 0, 1


def _arr(unit: str, doc: str) -> Any:
    return field(metadata={"unit": unit, "doc": doc})


@dataclass(frozen=True, eq=False)
class ChargeResult:
    """A galvanostatic charge (and rest) of a packing.

    Attributes
    ----------
    params : Params
    time_s : (T,) float64, s
        Time of every accepted step, from 0 (start of charge); the rest follows the charge.
    voltage_V_vs_Li : (T,) float64, V
        Cell voltage (current collector vs the Li reference at the counter electrode).
    capacity_mAh_per_g : (T,) float64, mAh/g
        Charge passed per gram of all NMC in the box.
    current_A : (T,) float64, A
        Applied current (0 during the rest).
    newton_iterations : (T,) int32
        Newton iterations of each accepted step (0 for t = 0).
    phase_code : (T,) int8
        0 charge, 1 rest.
    snapshot_time_s : (S,) float64, s
    snapshot_kind : (S,) int8
        0 reaction onset (``snapshot_capacity_mAh_per_g``), 1 end of charge, 2 end of rest.
        A partial result ends with the state reached: kind 1 if the charge stopped, 2 if the
        rest did (the end of the charge, its voltage and capacity, are then the finished
        charge's).
    x : (S, N) float64, 1
        Delithiation x of every particle, volume mean over its shells (NaN for SE).
    soc : (S, N) float64, 1
        ``x / materials.nmc_x_max`` (may exceed 1 if x passes x_max; NaN for SE).
    phi_e_V : (S, N) float64, V
        Electron potential of NMC particles joined to the collector (NaN otherwise).
    phi_ion_V : (S, N) float64, V
        Li-ion potential of SE particles joined to the separator (NaN otherwise).
    reaction_current_A : (S, N) float64, A
        Net interfacial current of each particle: NMC, oxidation current leaving it (> 0 on
        charge); SE, the same current received; 0 for particles without an active interface.
    z_bin_edges_m : (B + 1,) float64, m
    soc_vs_z : (S, B) float64, 1
        Mass-weighted mean SOC of the NMC whose centre lies in each depth bin (z = 0: current
        collector), NaN for an empty bin.
    particle_mass_kg : (N,) float64, kg
        Sphere mass of each NMC particle (0 for SE).
    electron_active : (N,) bool
        NMC particles joined to the current collector.
    ion_active : (N,) bool
        SE particles joined to the separator.
    reacting : (N,) bool
        NMC particles with at least one active interface (electron and ion paths).
    capacity_at_end_of_charge_mAh_per_g : float, mAh/g
    voltage_at_end_of_charge_V_vs_Li : float, V
    ocv_after_rest_V_vs_Li, ocv_after_rest_V_vs_InLi : float, V
        NaN when there was no rest.
    unreacted_nmc_fraction : float, 1
        Mass fraction of NMC whose SOC rose by less than ``unreacted_soc_threshold``.
    isolated_nmc_fraction : float, 1
        Mass fraction of NMC not joined to the collector.
    non_reacting_nmc_fraction : float, 1
        Mass fraction of NMC with no active interface (isolated included).
    separator_resistance_ohm_m2 : float, ohm m^2
    charge_passed_C, li_removed_C : float, C
        ``int I dt`` and ``sum_i Q_i (x_i - x_i(0))``.
    conservation_error : float, 1
        ``|li_removed - charge_passed| / charge_passed``.
    n_steps, n_newton, n_rejected, n_factorizations : int
    elapsed_s : float, s
        Wall-clock time of the run; not saved to HDF5 (the same parameters give the same
        bytes), so 0 for a loaded result.
    partial : bool
        True when the run stopped early (see ``stop_reason`` and ``message``).
    stop_reason : str
        ``cutoff``, ``capacity_limit``, ``max_time``, ``max_steps``, ``x_limit``,
        ``newton_failed``, ``impossible_current``.
    message : str
    charge_params_json : str
        The ``charge`` section used, as JSON (kept even where ``params`` lacks the section).
    """

    params: Any
    time_s: np.ndarray = _arr("s", "time")
    voltage_V_vs_Li: np.ndarray = _arr("V", "cell voltage vs Li")
    capacity_mAh_per_g: np.ndarray = _arr("mAh/g", "charge per g NMC")
    current_A: np.ndarray = _arr("A", "applied current")
    newton_iterations: np.ndarray = _arr("1", "Newton iterations per step")
    phase_code: np.ndarray = _arr("1", "0 charge, 1 rest")
    snapshot_time_s: np.ndarray = _arr("s", "snapshot times")
    snapshot_kind: np.ndarray = _arr("1", "0 onset, 1 end of charge, 2 after rest")
    x: np.ndarray = _arr("1", "x in Li(1-x)NMC")
    soc: np.ndarray = _arr("1", "x / x_max")
    phi_e_V: np.ndarray = _arr("V", "electron potential")
    phi_ion_V: np.ndarray = _arr("V", "Li-ion potential")
    reaction_current_A: np.ndarray = _arr("A", "net interfacial current")
    z_bin_edges_m: np.ndarray = _arr("m", "depth bin edges")
    soc_vs_z: np.ndarray = _arr("1", "mean SOC per depth bin")
    particle_mass_kg: np.ndarray = _arr("kg", "NMC sphere mass")
    electron_active: np.ndarray = _arr("1", "NMC joined to the collector")
    ion_active: np.ndarray = _arr("1", "SE joined to the separator")
    reacting: np.ndarray = _arr("1", "NMC with an active interface")
    capacity_at_end_of_charge_mAh_per_g: float = float("nan")
    voltage_at_end_of_charge_V_vs_Li: float = float("nan")
    ocv_after_rest_V_vs_Li: float = float("nan")
    ocv_after_rest_V_vs_InLi: float = float("nan")
    unreacted_nmc_fraction: float = float("nan")
    isolated_nmc_fraction: float = float("nan")
    non_reacting_nmc_fraction: float = float("nan")
    separator_resistance_ohm_m2: float = float("nan")
    charge_passed_C: float = 0.0
    li_removed_C: float = 0.0
    conservation_error: float = 0.0
    n_steps: int = 0
    n_newton: int = 0
    n_rejected: int = 0
    n_factorizations: int = 0
    elapsed_s: float = dataclasses.field(default=0.0, metadata={"saved": False})
    partial: bool = False
    stop_reason: str = ""
    message: str = ""
    charge_params_json: str = ""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                parts.append(f"{f.name}={v.shape}")
            elif f.name in ("capacity_at_end_of_charge_mAh_per_g", "partial", "stop_reason"):
                parts.append(f"{f.name}={v!r}")
        return f"ChargeResult({', '.join(parts)})"

    def save(self, path: str | os.PathLike):
        """Write to HDF5 (atomically)."""
        from esim.io.hdf5 import save_result

        return save_result(self, path, kind="charge")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ChargeResult":
        """Read a result written by :meth:`save`."""
        from esim.io.hdf5 import load_result

        return load_result(cls, path, kind="charge")

    def summary(self) -> dict[str, Any]:
        """Key numbers, keys with units (for ``--json``)."""
        return {
            "capacity_mAh_per_g": float(self.capacity_at_end_of_charge_mAh_per_g),
            "voltage_at_end_of_charge_V_vs_Li": float(self.voltage_at_end_of_charge_V_vs_Li),
            "ocv_after_rest_V_vs_Li": float(self.ocv_after_rest_V_vs_Li),
            "ocv_after_rest_V_vs_InLi": float(self.ocv_after_rest_V_vs_InLi),
            "unreacted_nmc_fraction": float(self.unreacted_nmc_fraction),
            "isolated_nmc_fraction": float(self.isolated_nmc_fraction),
            "non_reacting_nmc_fraction": float(self.non_reacting_nmc_fraction),
            "charge_time_s": float(self.time_s[self.phase_code == PHASE_CHARGE][-1])
            if self.time_s.size else 0.0,
            "conservation_error": float(self.conservation_error),
            "n_steps": int(self.n_steps),
            "n_newton": int(self.n_newton),
            "n_rejected": int(self.n_rejected),
            "n_factorizations": int(self.n_factorizations),
            "elapsed_s": float(self.elapsed_s),
            "partial": bool(self.partial),
            "stop_reason": self.stop_reason,
        }


class ChargeIncomplete(EsimError):
    """The charge stopped before its end; ``result`` holds what was computed (partial=True)."""

    def __init__(self, message: str, result: ChargeResult | None = None):
        super().__init__(message)
        self.result = result


def params_with_charge(params: Any = None, **changes: Any) -> Any:
    """A parameter set whose ``charge`` section has ``changes`` applied, validated.

    Works before and after the ``charge`` section is registered in :class:`esim.params.Params`:
    until then the returned object is a Params subclass carrying the section (stored in result
    files through ``ChargeResult.charge_params_json``).

    Parameters
    ----------
    params : Params, optional
        Defaults to ``Params()``.
    **changes
        ``charge`` fields, e.g. ``current_density_A_per_m2=13.0``.
    """
    from esim.params import Params, _section_from_dict

    params = Params() if params is None else params
    if "charge" in {f.name for f in dataclasses.fields(params)} and \
            type(params) is not _params_with_charge_class():
        return params.replace(charge=changes)
    base = dataclasses.asdict(charge_params_of(params))
    base.update(changes)
    section = _section_from_dict("charge", ChargeParams, base)
    others = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)
              if f.name != "charge"}
    return _params_with_charge_class()(**others, charge=section)


@functools.lru_cache(maxsize=1)
def _params_with_charge_class() -> type:
    from esim.params import Params

    @dataclass(frozen=True)
    class ParamsWithCharge(Params):
        """Params plus the ``charge`` section (until it is registered in esim.params)."""

        charge: ChargeParams = field(default_factory=ChargeParams)

    return ParamsWithCharge


def nmc_diffusivity(x: Any, params: Any = None) -> np.ndarray:
    """Chemical diffusivity of Li in Li(1-x)NMC111, m^2/s.

    log10(D) interpolated linearly in x through the three points of Amin & Chiang, JES 163,
    A1512 (2016) [S] (x = 0.10, 0.55, 0.75: 4.1e-10, 0.9e-10, 1.3e-10 cm2/s), held constant
    outside.

    Parameters
    ----------
    x : array_like, 1
    params : Params or ChargeParams, optional

    Returns
    -------
    D : ndarray, m^2/s, shape of ``x``
    """
    c = charge_params_of(params)
    tx = np.array([0.10, 0.55, 0.75])
    td = np.log10([c.nmc_diffusivity_x010_m2_per_s, c.nmc_diffusivity_x055_m2_per_s,
                   c.nmc_diffusivity_x075_m2_per_s])
    return 10.0 ** np.interp(np.asarray(x, dtype=np.float64), tx, td)


def diffusion_estimate(params: Any = None, radius_m: float = 2.5e-6) -> dict[str, float]:
    """Whether solid diffusion matters at the charge rate: time scales and surface excess.

    Uses the smallest tabulated diffusivity and a charge of x_max at the applied current over
    an electrode of the default loading (NMC mass per area from the structure section).

    Returns
    -------
    dict with ``diffusion_time_s`` (r^2/D), ``charge_time_s``, ``ratio`` and
    ``surface_excess_x`` (``r^2/(15 D) dx/dt``, the pseudo-steady surface-minus-mean x of a
    sphere under constant flux).
    """
    c = charge_params_of(params)
    m = materials_of(params)
    d = min(c.nmc_diffusivity_x010_m2_per_s, c.nmc_diffusivity_x055_m2_per_s,
            c.nmc_diffusivity_x075_m2_per_s)
    s = getattr(params, "structure", None)
    L = s.electrode_thickness_m if s else 50e-6
    solid = s.target_solid_fraction if s else 0.85
    fnmc = s.nmc_fraction_of_solid if s else 0.54
    mass_per_area = L * solid * fnmc * c.nmc_density_kg_per_m3  # kg/m2
    q = m.nmc_x_max * c.nmc_theoretical_capacity_mAh_per_g * _C_PER_mAh * 1e3  # C/kg
    t_charge = mass_per_area * q / c.current_density_A_per_m2
    t_d = radius_m**2 / d
    return {"diffusion_time_s": t_d, "charge_time_s": t_charge, "ratio": t_d / t_charge,
            "surface_excess_x": radius_m**2 / (15 * d) * m.nmc_x_max / t_charge}


# ----------------------------------------------------------------------------------------------
# The model: arrays precomputed once per packing
# ----------------------------------------------------------------------------------------------


def _components_touching(n_nodes: int, a: np.ndarray, b: np.ndarray, terminal: int) -> np.ndarray:
    adj = sp.coo_matrix((np.ones(a.size), (a, b)), shape=(n_nodes, n_nodes))
    _, lab = connected_components(adj, directed=False)
    return lab == lab[terminal]


class _Model:
    """Index maps, fixed conductances, interfaces and capacities of one packing."""

    def __init__(self, packing: Packing, params: Any):
        from esim.effective import interface_cap_area
        from esim.network import build_network, spreading_factor

        c = charge_params_of(params)
        self.c = c
        self.m = materials_of(params)
        n = packing.n_particles
        self.n = n
        ph = packing.phase
        nmc = ph == PHASE_NMC
        se = ph == PHASE_SE
        r = packing.radii_m.astype(np.float64)
        self.nmc = nmc
        box = packing.box_m
        self.area_box = float(box[0] * box[1])
        self.I_app = c.current_density_A_per_m2 * self.area_box
        T = self.m.temperature_K
        # the separator is the same glass: its conductivity, given at the glass's reference
        # temperature, follows the glass's Arrhenius law to the cell's temperature
        sep_sigma = c.separator_sigma_ion_S_per_m * arrhenius_factor(
            self.m.se_ea_ion_eV, T, self.m.se_sigma_ion_reference_temperature_K)
        self.R_sep = c.separator_thickness_m / (float(sep_sigma) * self.area_box)
        self.f = FARADAY_C_per_mol / (GAS_J_per_mol_K * T)

        mp = packing.contacts.shape[0]
        # -- electron network on NMC (and the collector)
        net_e = build_network(packing, params, carrier="electron", soc=0.0, mode="cell")
        ce = net_e.conns
        a_e = net_e.contact_radius_m
        pi_, pj = ce[:, 0], ce[:, 1]
        is_pair = np.arange(ce.shape[0]) < mp
        wall = ~is_pair
        keep_pair = is_pair & nmc[np.minimum(pi_, n - 1)] & nmc[np.minimum(pj, n - 1)]
        wp = packing.wall_particle.astype(np.int64)
        ws = packing.wall_side
        keep_wall = np.zeros(ce.shape[0], bool)
        keep_wall[mp:] = nmc[wp] & (ws == WALL_CC)
        keep = (keep_pair | keep_wall) & (net_e.g > 0)
        ea, eb = pi_[keep], pj[keep]  # eb == n (cc node) for walls
        ewall = wall[keep]
        ae = a_e[keep]
        # spreading coefficient per end: R_half = rho * k, k = F(a/r)/r
        ka = spreading_factor(ae / r[ea]) / r[ea]
        rb_safe = r[np.minimum(eb, n - 1)]
        kb = np.where(ewall, 0.0, spreading_factor(ae / rb_safe) / rb_safe)
        self.e_film = net_e.r_film_ohm[keep]
        # connectivity: NMC joined to the collector
        act_e = _components_touching(n + 1, ea, eb, n)[:n] & nmc
        ok = act_e[ea]  # an edge whose NMC end is active has both ends active (same component)
        ea, eb, ewall, ka, kb = ea[ok], eb[ok], ewall[ok], ka[ok], kb[ok]
        self.e_film = self.e_film[ok]
        self.e_ids = np.flatnonzero(act_e)
        ne = self.e_ids.size
        self.ne = ne
        emap = np.full(n + 1, -1, np.int64)
        emap[self.e_ids] = np.arange(ne)
        emap[n] = ne  # the collector's unknown V
        self.e_ua, self.e_ub = emap[ea], emap[eb]
        self.e_pa, self.e_pb = ea, np.where(ewall, -1, eb)
        self.e_ka, self.e_kb = ka, kb
        self.electron_active = act_e

        # -- ion network on SE (and the separator)
        net_i = build_network(packing, params, carrier="ion", mode="cell")
        ci = net_i.conns
        keep_pair = is_pair & se[np.minimum(ci[:, 0], n - 1)] & se[np.minimum(ci[:, 1], n - 1)]
        keep_wall = np.zeros(ci.shape[0], bool)
        keep_wall[mp:] = se[wp] & (ws == WALL_SEP)
        keep = (keep_pair | keep_wall) & (net_i.g > 0)
        ia, ib, ig, iwall = ci[keep, 0], ci[keep, 1], net_i.g[keep], wall[keep]
        sep = n + 1
        ib_node = np.where(iwall, n, ib)  # separator as node n in an (n+1) graph
        act_i = _components_touching(n + 1, ia, ib_node, n)[:n] & se
        ok = act_i[ia]
        ia, ib, ig, iwall = ia[ok], ib[ok], ig[ok], iwall[ok]
        self.i_ids = np.flatnonzero(act_i)
        ni = self.i_ids.size
        self.ni = ni
        imap = np.full(n + 2, -1, np.int64)
        imap[self.i_ids] = np.arange(ni)
        del sep
        self.ion_active = act_i
        # offsets of the unknown vector [phi_e (ne), V, phi_ion (ni), x (ne)]
        self.oV, self.oi, self.ox = ne, ne + 1, ne + 1 + ni
        # solid diffusion: ns radial shells of equal thickness per NMC (1 = uniform)
        self.ns = c.n_shells if c.solid_diffusion == "shells" else 1
        self.nx = ne * self.ns
        self.n_u = ne + 1 + ni + self.nx
        ua = self.oi + imap[ia]
        pair = ~iwall
        ub = self.oi + imap[ib[pair]]
        rows = np.concatenate([ua[pair], ub, ua[pair], ub, ua[iwall]])
        cols = np.concatenate([ua[pair], ub, ub, ua[pair], ua[iwall]])
        vals = np.concatenate([ig[pair], ig[pair], -ig[pair], -ig[pair], ig[iwall]])
        self.L_ion = (rows, cols, vals)
        # separator Dirichlet: row m gets -g phi_sep
        self.sep_g = np.zeros(self.n_u)
        np.add.at(self.sep_g, ua[iwall], ig[iwall])

        # -- interfaces
        mixed, area = interface_cap_area(packing)
        cm = packing.contacts[mixed].astype(np.int64)
        nmc_first = nmc[cm[:, 0]]
        k_n = np.where(nmc_first, cm[:, 0], cm[:, 1])
        k_s = np.where(nmc_first, cm[:, 1], cm[:, 0])
        wsel = nmc[wp] & (ws == WALL_SEP)
        wn = wp[wsel]
        h = np.clip(-packing.wall_gap_m[wsel], 0.0, 2 * r[wn])
        aw = packing.wall_contact_radius_m[wsel]
        w_area = np.maximum(2 * np.pi * r[wn] * h, np.pi * aw * aw)
        k_n = np.concatenate([k_n, wn])
        k_s = np.concatenate([k_s, np.full(wn.size, -1)])
        area = np.concatenate([area, w_area])
        # a particle's caps may overlap where its SE neighbours crowd it: scale them so their
        # sum stays within the sphere's surface, as esim.effective caps the interface area
        total = np.bincount(k_n, weights=area, minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(total > 4 * np.pi * r * r, 4 * np.pi * r * r / total, 1.0)
        area = area * shrink[k_n]
        act = act_e[k_n] & ((k_s < 0) | act_i[np.maximum(k_s, 0)]) & (area > 0)
        self.k_n, self.k_s, self.k_area = k_n[act], k_s[act], area[act]
        self.k_e = emap[self.k_n]  # 0..ne-1
        self.k_sep = self.k_s < 0
        self.k_i = np.where(self.k_sep, -1, imap[np.maximum(self.k_s, 0)])
        self.n_interfaces = self.k_n.size
        self.reacting = np.zeros(n, bool)
        self.reacting[self.k_n] = True

        # -- capacities
        vol = 4.0 / 3.0 * np.pi * r**3
        self.mass = np.where(nmc, vol * c.nmc_density_kg_per_m3, 0.0)
        self.m_nmc = float(self.mass.sum())
        q = c.nmc_theoretical_capacity_mAh_per_g * _C_PER_mAh * 1e3  # C/kg per unit x
        self.Q = self.mass[self.e_ids] * q  # (ne,) C per unit x
        ns = self.ns
        j = np.arange(ns, dtype=np.float64)
        self.shell_frac = ((j + 1) ** 3 - j**3) / ns**3  # (ns,) volume fraction of each shell
        self.Qs = (self.Q[:, None] * self.shell_frac[None, :])  # (ne, ns) C per unit x
        # diffusion conductance per unit D between shells j and j+1 (A per unit x per m2/s):
        # face area 4 pi r_f^2, capacity density rho q (C/m3 per unit x), distance dr
        re = r[self.e_ids]
        dr = re / ns
        rf = dr[:, None] * (j[None, :-1] + 1.0)
        self.kappa0 = 4 * np.pi * rf**2 * c.nmc_density_kg_per_m3 * q / dr[:, None]  # (ne, ns-1)
        self.z = packing.centers_m[:, 2]
        self.L = float(box[2])

    # -- per step --------------------------------------------------------------------------
    def electron_laplacian(self, x_e: np.ndarray):
        """COO triplets of the electron Laplacian at the particles' x (lagged conductances)."""
        xa = np.full(self.n, 0.0)
        xa[self.e_ids] = np.clip(x_e, 0.0, 1.0)
        rho = np.zeros(self.n)
        rho[self.e_ids] = 1.0 / nmc_sigma_e(xa[self.e_ids], None, self.m, kind="x")
        rb = np.where(self.e_pb >= 0, rho[np.maximum(self.e_pb, 0)] * self.e_kb, 0.0)
        g = 1.0 / (rho[self.e_pa] * self.e_ka + rb + self.e_film)
        a, b = self.e_ua, self.e_ub
        return (np.concatenate([a, b, a, b]), np.concatenate([b, a, a, b]),
                np.concatenate([-g, -g, g, g]))

    def bv(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interface current (A) and its derivative d I / d Delta (A/V)."""
        c = self.c
        i0, al, f, r = c.exchange_current_density_A_per_m2, c.transfer_coefficient, self.f, \
            c.interface_asr_ohm_m2
        cap = 200.0

        def bvj(eta):
            ea = np.exp(np.clip(al * f * eta, -cap, cap))
            ec = np.exp(np.clip(-(1 - al) * f * eta, -cap, cap))
            return i0 * (ea - ec), i0 * f * (al * ea + (1 - al) * ec)

        if r == 0.0:
            j, dj = bvj(delta)
            return self.k_area * j, self.k_area * dj
        # solve eta + r j(eta) = Delta (monotone): safeguarded Newton in the bracket
        lo, hi = np.minimum(delta, 0.0), np.maximum(delta, 0.0)
        eta = delta / (1.0 + r * i0 * f)
        for _ in range(100):
            j, dj = bvj(eta)
            g = eta + r * j - delta
            lo = np.where(g < 0, eta, lo)
            hi = np.where(g > 0, eta, hi)
            step = eta - g / (1.0 + r * dj)
            bad = (step <= lo) | (step >= hi)
            new = np.where(bad, 0.5 * (lo + hi), step)
            if np.max(np.abs(new - eta), initial=0.0) < 1e-13:
                eta = new
                break
            eta = new
        j, dj = bvj(eta)
        return self.k_area * j, self.k_area * dj / (1.0 + r * dj)


class _Preconditioner:
    """An approximate inverse of the Schur complement, built once and reused across Newton
    iterations and steps while it stays good.

    ``S`` is a grounded weighted graph Laplacian (symmetric positive definite, non-positive
    off-diagonals).  ``direct``: SuperLU of the ``S`` it was built from (symmetric ordering),
    the current ``S`` then solved by scipy's CG; a fresh factorisation is exact (no CG).
    ``amg``: the smoothed-aggregation V-cycle of :mod:`esim.solver` (hierarchy in CSR, one
    symmetric Gauss-Seidel sweep each way) of the diagonally scaled ``S``, with that module's
    flexible CG (numba vector kernels), so a slightly stale hierarchy stays a valid
    preconditioner.
    """

    DIRECT_MAX = 6000
    #: Coarsest AMG level solved exactly (sparse LU) up to this size.  The eliminated x couple
    #: each NMC's node with the glass nodes of all its interfaces, so ``S`` has ~33 entries a
    #: row at 1e5 particles and aggregation makes ~34x fewer, denser unknowns (1e5: 3146 with
    #: ~300 entries a row), which aggregate again into a single one.  Solving that first
    #: coarse level exactly instead (measured on a 1e5 Jacobian: 12 CG iterations, 0.34 s,
    #: against 15 and 0.58 s with a 300 limit; setup 1.6 s against 0.5 s, rarely repeated).
    COARSE_MAX = 5000

    def __init__(self, S: sp.csr_matrix, c: Any):
        method = c.linear_solver
        if method == "auto":
            method = "direct" if S.shape[0] <= self.DIRECT_MAX else "amg"
        self.method = method
        self.fresh = True
        self.first_iterations = 0  # CG iterations of the first solve (AMG)
        if method == "direct":
            from esim.solver import splu_checked

            self.lu = splu_checked(sp.csc_matrix(S), permc_spec="MMD_AT_PLUS_A",
                                   diag_pivot_thresh=0.0, options={"SymmetricMode": True})
            self.op = spla.LinearOperator(S.shape, matvec=self.lu.solve, dtype=np.float64)
            return
        from esim.solver import _sa_hierarchy, _vcycle_operator

        dg = S.diagonal()
        if np.any(dg <= 0):
            raise RuntimeError("non-positive diagonal")
        d = 1.0 / np.sqrt(dg)
        Ss = S.copy()
        Ss.data *= np.repeat(d, np.diff(S.indptr)) * d[Ss.indices]
        V = _vcycle_operator(*_sa_hierarchy(Ss, 1.0 / d, max_coarse=self.COARSE_MAX))
        self.precond = lambda r: d * V.matvec(d * r)

    def solve(self, S: sp.spmatrix, b: np.ndarray, rtol: float, maxiter: int
              ) -> tuple[np.ndarray | None, int]:
        """``(y, cg_iterations)``; ``y`` is None when CG did not reach ``rtol``."""
        if self.fresh and self.method == "direct":
            self.fresh = False
            return self.lu.solve(b), 0
        self.fresh = False
        if self.method == "amg":
            from esim.solver import _pcg_threads

            with np.errstate(all="ignore"):  # a stale hierarchy may blow up: rebuilt then
                y, k, ok = _pcg_threads(S, b, self.precond, rtol, maxiter)
            ok = ok and bool(np.all(np.isfinite(y)))
            if self.first_iterations == 0:
                self.first_iterations = k
            return (y if ok else None), k
        count = [0]

        def cb(_):
            count[0] += 1

        with np.errstate(all="ignore"):  # a stale preconditioner may blow up: rebuilt then
            y, info = spla.cg(S, b, rtol=rtol, atol=0.0, maxiter=maxiter, M=self.op,
                              callback=cb)
        ok = info == 0 and bool(np.all(np.isfinite(y)))
        if self.first_iterations == 0:
            self.first_iterations = count[0]
        return (y if ok else None), count[0]

    def max_iterations(self, cap: int) -> int:
        """CG iterations allowed before a rebuild: ``cap``, or twice a fresh AMG solve's."""
        return max(cap, 2 * self.first_iterations)


class _SchurPattern:
    """The fixed sparsity of the Schur complement ``S = A - B D^-1 C`` and where each of its
    contributions lands, found once per charge (the interfaces and contacts never change).

    Contributions, in this order: the Laplacian triplets (``rows``, ``cols`` as given), the
    interface conductances ``d_k`` on ``(e, e)`` for every interface and on ``(s, s)``,
    ``(e, s)``, ``(s, e)`` for those with a glass node ``s``, and the elimination of each NMC's
    x: a dense block on its *slots*, the NMC's own node and the glass nodes of its interfaces,
    ``-b_p c_q / D_e`` for every slot pair, with ``b`` (column ``e`` of ``B``) and ``c`` (row
    ``e`` of ``C``).  :meth:`assemble` sums them into the CSR data in one numba pass
    (:func:`esim._solver_kernels.schur_fill`); nothing is allocated per Newton iteration but
    the matrix's values.
    """

    def __init__(self, n_y: int, rows: np.ndarray, cols: np.ndarray, e: np.ndarray,
                 s_ion: np.ndarray, ion: np.ndarray, ne: int):
        self.n_y, self.ne = n_y, ne
        self.k_ion = np.flatnonzero(ion)
        # slots: per NMC its own node, then the glass nodes of its interfaces
        by_e = np.argsort(e[self.k_ion], kind="stable")
        owner = np.concatenate([np.arange(ne), e[self.k_ion][by_e]])
        node = np.concatenate([np.arange(ne), s_ion[by_e]])
        kslot = np.concatenate([np.full(ne, -1), self.k_ion[by_e]])
        srt = np.argsort(owner, kind="stable")
        self.slot_owner, slot_node, self.slot_k = owner[srt], node[srt], kslot[srt]
        m = np.bincount(self.slot_owner, minlength=ne)
        self.slot_start = np.concatenate([[0], np.cumsum(m)]).astype(np.int64)
        # the block's (p, q) node pairs in the kernel's order: per NMC, slot a-major
        rep = m[self.slot_owner]
        P = np.repeat(np.arange(slot_node.size), rep)
        Q = self.slot_start[self.slot_owner[P]] + (np.arange(P.size)
                                                   - np.repeat(np.cumsum(rep) - rep, rep))
        e_i = e[ion]
        r = np.concatenate([rows, e, s_ion, e_i, s_ion, slot_node[P]]).astype(np.int64)
        c = np.concatenate([cols, e, s_ion, s_ion, e_i, slot_node[Q]])
        del P, Q
        uniq, inv = np.unique(r * n_y + c, return_inverse=True)
        self.pos = inv.astype(np.int32 if uniq.size < 2**31 else np.int64)
        self.indices = (uniq % n_y).astype(np.int32)
        self.indptr = np.zeros(n_y + 1, dtype=np.int64)
        np.cumsum(np.bincount(uniq // n_y, minlength=n_y), out=self.indptr[1:])

    def assemble(self, lvals: np.ndarray, d: np.ndarray, dUd: np.ndarray, e: np.ndarray,
                 piv: np.ndarray) -> sp.csr_matrix:
        """``S`` (CSR, canonical) for Laplacian values ``lvals``, interface conductances ``d``
        (A/V), ``dUd = d dU/dx`` and the surface pivots ``piv`` (``D_e``)."""
        from esim import _solver_kernels as _K

        k, own = self.slot_k, self.slot_k < 0
        kk = np.maximum(k, 0)
        b = np.where(own, -np.bincount(e, dUd, minlength=self.ne)[self.slot_owner], dUd[kk])
        cc = np.where(own, -np.bincount(e, d, minlength=self.ne)[self.slot_owner], d[kk])
        data = np.empty(self.indices.size)
        _K.schur_fill(self.pos, lvals, d, self.k_ion, self.slot_start,
                      b / piv[self.slot_owner], cc, data)
        S = sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n_y, self.n_y))
        S.has_canonical_format = True
        return S


class _Stepper:
    """Residual, Jacobian and Newton of one backward-Euler step."""

    def __init__(self, model: _Model):
        self.M = model
        self.n_factor = 0
        self.n_cg = 0
        self.pre: _Preconditioner | None = None
        self.pattern: _SchurPattern | None = None
        self.last_V = float("nan")  # cell voltage of the last Newton iterate, V

    def begin_step(self, x_old: np.ndarray, dt: float, current: float) -> None:
        """Start a step from the shell x ``x_old`` ((ne * ns,), 1) with lagged coefficients."""
        M = self.M
        xo = x_old.reshape(M.ne, M.ns)
        er, ec, ev = M.electron_laplacian(xo @ M.shell_frac)
        ir, ic, iv = M.L_ion
        self.Lrows = np.concatenate([er, ir])
        self.Lcols = np.concatenate([ec, ic])
        self.Lvals = np.concatenate([ev, iv])
        self.L = sp.csr_matrix((self.Lvals, (self.Lrows, self.Lcols)), shape=(M.n_u, M.n_u))
        self.Lrows_y, self.Lcols_y, self.Lvals_y = self.Lrows, self.Lcols, self.Lvals
        self.x_old, self.dt, self.I = x_old, dt, current
        self.phi_sep = current * M.R_sep
        if M.ns > 1:  # diffusivity lagged at the start-of-step face x
            self.kappa = M.kappa0 * nmc_diffusivity(0.5 * (xo[:, 1:] + xo[:, :-1]), M.c)
        else:
            self.kappa = np.zeros((M.ne, 0))

    def interfaces(self, u: np.ndarray):
        M = self.M
        x_surf = u[M.ox:].reshape(M.ne, M.ns)[:, -1]
        pe = u[M.k_e]
        pi = np.where(M.k_sep, self.phi_sep, u[M.oi + np.maximum(M.k_i, 0)])
        U, dU = nmc_ocv(x_surf[M.k_e], M.c)
        I, dI = M.bv(pe - pi - U)
        return I, dI, dU

    def residual(self, u: np.ndarray, with_jacobian: bool):
        """Residual (A) of every balance; with the Jacobian's pieces for the Schur solve.

        Returns ``R (n_u,)``, interface currents ``I (K,)`` and, if asked, ``(S, D, Bc)``:
        the Schur complement ``S = A - B D^-1 C`` on the potentials (symmetric positive
        definite, see :meth:`solve_linear`), the diagonal ``D (ne,)`` of the x block and the
        x-coupling ``C (ne, n_y)``.
        """
        M = self.M
        ne, oi, ox = M.ne, M.oi, M.ox
        I, dI, dU = self.interfaces(u)
        R = self.L @ u - M.sep_g * self.phi_sep
        R[M.oV] -= self.I
        I_e = np.bincount(M.k_e, I, minlength=ne)
        R[:ne] += I_e
        ion = ~M.k_sep
        R[oi:ox] -= np.bincount(M.k_i[ion], I[ion], minlength=M.ni)
        xs = u[ox:].reshape(ne, M.ns)
        Rx = M.Qs / self.dt * (xs - self.x_old.reshape(ne, M.ns))
        if M.ns > 1:
            flux = self.kappa * (xs[:, 1:] - xs[:, :-1])  # (ne, ns-1) A, into the inner shell
            Rx[:, :-1] -= flux
            Rx[:, 1:] += flux
        Rx[:, -1] -= I_e
        R[ox:] = Rx.ravel()
        if not with_jacobian:
            return R, I, None
        n_y = ox
        e = M.k_e
        s = oi + M.k_i[ion]
        d = dI
        di = d[ion]
        e_i = e[ion]
        # B (n_y, ne): d R_y / d x ;  C (ne, n_y): d R_x / d y ;  D: d R_x / d x (diagonal)
        dUd = d * dU[:]
        B = sp.csr_matrix((np.concatenate([-dUd, dUd[ion]]),
                           (np.concatenate([e, s]), np.concatenate([e, e_i]))),
                          shape=(n_y, ne))
        C = sp.csr_matrix((np.concatenate([-d, di]),
                           (np.concatenate([e, e_i]), np.concatenate([e, s]))),
                          shape=(ne, n_y))
        tri = self.shell_matrix(np.bincount(e, dUd, minlength=ne))
        # S = A - B D^-1 C, A = the Laplacians + the interface conductances d on (e, s) pairs
        # (separator interfaces: e only), summed into a sparsity found once
        if self.pattern is None:
            self.pattern = _SchurPattern(n_y, self.Lrows_y, self.Lcols_y, e, s, ion, ne)
        S = self.pattern.assemble(self.Lvals_y, d, dUd, e, tri[2][:, -1])
        return R, I, (S, tri, B, C)

    def shell_matrix(self, surf_extra: np.ndarray):
        """The x block: per particle a symmetric tridiagonal (ns x ns) matrix, A per unit x.

        Returns ``(diag (ne, ns), off (ne, ns-1), pivots (ne, ns))``; the last pivot is
        ``1 / (block^-1)_ss``, the surface shell's effective diagonal in the Schur complement.
        """
        M = self.M
        diag = M.Qs / self.dt
        diag[:, -1] += surf_extra
        off = -self.kappa
        if M.ns > 1:
            diag = diag.copy()
            diag[:, :-1] += self.kappa
            diag[:, 1:] += self.kappa
        piv = diag.copy()
        for j in range(1, M.ns):  # loop over shells (<= 50), vectorised over particles
            piv[:, j] = diag[:, j] - off[:, j - 1] ** 2 / piv[:, j - 1]
        return diag, off, piv

    @staticmethod
    def shell_solve(tri, rhs: np.ndarray) -> np.ndarray:
        """Solve the block-tridiagonal x system for ``rhs`` ((ne, ns) -> (ne, ns))."""
        diag, off, piv = tri
        ns = diag.shape[1]
        y = rhs.copy()
        for j in range(1, ns):
            y[:, j] -= off[:, j - 1] / piv[:, j - 1] * y[:, j - 1]
        x = np.empty_like(y)
        x[:, -1] = y[:, -1] / piv[:, -1]
        for j in range(ns - 2, -1, -1):
            x[:, j] = (y[:, j] - off[:, j] * x[:, j + 1]) / piv[:, j]
        return x

    def newton(self, u0: np.ndarray) -> tuple[np.ndarray | None, int, float]:
        """Solve the step from ``u0``; return (u or None on failure, iterations, residual).

        Newton on the full system.  The linear step eliminates the x unknowns (each couples
        only to its own particle's interfaces) and solves the symmetric positive-definite
        Schur complement on the potentials by CG, preconditioned by a factorisation (or AMG
        hierarchy) of an earlier Schur complement, kept across iterations and steps and
        rebuilt when CG needs more than ``cg_max_iterations``.
        """
        M, c = self.M, self.M.c
        ox = M.ox
        u = u0.copy()
        tol = c.newton_rtol * M.I_app
        res = np.inf
        for it in range(1, c.newton_max_iterations + 1):
            R, _, (S, tri, B, C) = self.residual(u, True)
            res = float(np.max(np.abs(R)))
            if not np.isfinite(res):
                return None, it, res
            # round-off floor of a current residual: conductance x potential x eps for the
            # potential rows, and (Q / dt) x eps x x for the Li balances, whose terms
            # Q / dt (x - x_old) are large and cancel when dt is short
            eps = np.finfo(float).eps
            floor = 256 * eps * max(
                float(S.diagonal().max()) * float(np.max(np.abs(u[:ox]))),
                float(np.max(M.Qs)) / self.dt * float(np.max(np.abs(u[ox:]), initial=0.0)))
            tol = max(c.newton_rtol * M.I_app, floor)
            if res <= tol:
                return u, it - 1, res
            Ry, Rx = R[:ox], R[ox:].reshape(M.ne, M.ns)
            rhs = -Ry + B @ self.shell_solve(tri, Rx)[:, -1]
            dy = None
            if self.pre is not None:
                dy, k = self.pre.solve(S, rhs, c.krylov_rtol,
                                       self.pre.max_iterations(c.cg_max_iterations))
                self.n_cg += k
            if dy is None:
                self.pre = None  # freed before its successor is built
                try:
                    self.pre = _Preconditioner(S, c)
                except (RuntimeError, SolverDidNotConverge):  # exactly singular: smaller dt
                    return None, it, res
                self.n_factor += 1
                dy, k = self.pre.solve(S, rhs, c.krylov_rtol, 10 * c.cg_max_iterations)
                self.n_cg += k
                if dy is None:
                    return None, it, res
            rx = -Rx
            rx[:, -1] -= C @ dy
            dx = self.shell_solve(tri, rx).ravel()
            du = np.concatenate([dy, dx])
            if not np.all(np.isfinite(du)):
                return None, it, res
            big_phi = np.max(np.abs(dy), initial=0.0)
            big_x = np.max(np.abs(dx), initial=0.0)
            scale = min(1.0, c.max_potential_update_V / max(big_phi, 1e-300),
                        0.05 / max(big_x, 1e-300))
            u = u + scale * du
            self.last_V = float(u[M.oV])
        R, _, _ = self.residual(u, False)
        res = float(np.max(np.abs(R)))
        return (u if res <= tol else None), c.newton_max_iterations, res


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def charge(packing: Packing, params: Any = None, *, quiet: bool = True) -> ChargeResult:
    """Charge a packing at constant current to the cut-off voltage, then rest at open circuit.

    Parameters
    ----------
    packing : Packing
        With walls (current collector at z = 0, separator at z = L).
    params : Params, optional
        Uses the ``charge``, ``materials`` and ``network`` sections (defaults where a section
        is absent); defaults to ``packing.params``.
    quiet : bool
        No progress bar.

    Returns
    -------
    ChargeResult

    Raises
    ------
    NotPercolating
        No NMC particle is joined both to the collector and, through the glass, to the
        separator: no current can flow.
    InvalidParameters
        An unknown option.
    ChargeIncomplete
        The charge could not finish (see the module docstring); ``.result`` holds the partial
        result.
    """
    t_start = time.perf_counter()
    params = packing.params if params is None else params
    c = charge_params_of(params)
    if packing.periodic_z:
        raise InvalidParameters("structure.z_boundary = 'periodic': a charge needs the current "
                                "collector and separator walls")
    if c.solid_diffusion not in ("uniform", "shells"):
        raise InvalidParameters(f"charge.solid_diffusion: unknown {c.solid_diffusion!r}; "
                                "valid: uniform, shells")
    nmc_ocv(0.0, c)  # validates the curve choice early
    M = _Model(packing, params)
    if M.n_interfaces == 0:
        raise NotPercolating("no NMC particle is joined both to the current collector (through "
                             "NMC) and to the separator (through the glass): no current can "
                             f"flow ({M.ne} NMC joined to the collector, {M.ni} SE joined to the "
                             "separator)")
    run = _Run(M, params, quiet, t_start)
    return run.go()


class _Run:
    def __init__(self, M: _Model, params: Any, quiet: bool, t_start: float):
        self.M, self.params, self.quiet, self.t_start = M, params, quiet, t_start
        self.c = M.c
        self.st = _Stepper(M)
        x0 = np.full(M.nx, self.c.initial_x)
        u = np.zeros(M.n_u)
        U0 = float(nmc_ocv(self.c.initial_x, self.c)[0][()])
        u[:M.ne] = U0
        u[M.oV] = U0
        u[M.ox:] = x0
        self.u = u
        self.u_prev, self.dt_prev = None, 0.0
        self.x_init = x0.copy()
        self.t = 0.0
        self.hist: dict[str, list] = {"t": [0.0], "V": [U0], "cap": [0.0], "I": [0.0],
                                      "it": [0], "ph": [PHASE_CHARGE]}
        self.snaps: list[tuple[float, int, np.ndarray, np.ndarray]] = []
        self.n_steps = self.n_newton = self.n_rejected = 0
        self.charge_passed = 0.0
        self.t_end_charge = np.nan
        self.V_end_charge = np.nan
        self.cap_end_charge = np.nan
        self.stop_reason = ""
        self.rate = M.I_app / (M.m_nmc * 1e3) / _C_PER_mAh  # mAh/g per s

    # -- helpers ----------------------------------------------------------------------------
    def capacity(self) -> float:
        return self.charge_passed / _C_PER_mAh / (self.M.m_nmc * 1e3)

    def snapshot(self, kind: int, current: float) -> None:
        self.st.begin_step(self.u[self.M.ox:], 1.0, current)
        _, I, _ = self.st.residual(self.u, False)
        self.snaps.append((self.t, kind, self.u.copy(), I.copy()))

    def record(self, current: float, it: int, phase: int) -> None:
        h = self.hist
        h["t"].append(self.t)
        h["V"].append(float(self.u[self.M.oV]))
        h["cap"].append(self.capacity())
        h["I"].append(current)
        h["it"].append(it)
        h["ph"].append(phase)

    def step(self, dt: float, current: float) -> tuple[np.ndarray | None, int, float]:
        self.st.begin_step(self.u[self.M.ox:].copy(), dt, current)
        guess = self.u
        if self.u_prev is not None and self.dt_prev > 0:  # linear predictor
            guess = self.u + (dt / self.dt_prev) * (self.u - self.u_prev)
        u, it, res = self.st.newton(guess)
        if u is None and guess is not self.u:
            u, it2, res = self.st.newton(self.u)
            it += it2
        self.n_newton += it
        return u, it, res

    def next_dt(self, dt: float, it: int, dx: float) -> float:
        """Grow after a fast Newton solve; aim the largest x change at 0.9 max_dx_per_step."""
        c = self.c
        nxt = dt * c.dt_growth if it <= 4 else dt
        if dx > 0:
            nxt = min(nxt, dt * 0.9 * c.max_dx_per_step / dx)
        return max(nxt, c.dt_min_s)

    def fail(self, reason: str, msg: str) -> None:
        self.stop_reason = reason
        res = self.result(partial=True, message=msg)
        raise ChargeIncomplete(msg + " (partial result kept)", res)

    # -- phases -----------------------------------------------------------------------------
    def go(self) -> ChargeResult:
        from esim._progress import progress

        c, M = self.c, self.M
        with progress(None, "charge", self.quiet, unit="step") as bar:
            self.bar = bar
            self.charge_phase()
            self.snapshot(SNAP_END_OF_CHARGE, M.I_app)
            self.t_end_charge = self.t
            self.V_end_charge = float(self.u[M.oV])
            self.cap_end_charge = self.capacity()
            if c.rest_time_s > 0:
                self.u_prev = None
                self.rest_phase()
                self.snapshot(SNAP_AFTER_REST, 0.0)
        return self.result(partial=False, message="")

    def charge_phase(self) -> None:
        c, M = self.c, self.M
        I = M.I_app
        dt = c.dt_initial_s
        t_snap = (c.snapshot_capacity_mAh_per_g / self.rate
                  if c.snapshot_capacity_mAh_per_g > 0 else np.inf)
        t_cap = c.capacity_limit_mAh_per_g / self.rate if c.capacity_limit_mAh_per_g > 0 else np.inf
        snapped = False
        while True:
            if self.t >= c.max_time_s:
                self.fail("max_time", f"cut-off {c.cutoff_V_vs_Li} V not reached within "
                          f"max_time_s = {c.max_time_s:g} s (V = {self.u[M.oV]:.4f} V, "
                          f"{self.capacity():.1f} mAh/g)")
            if self.n_steps >= c.max_steps:
                self.fail("max_steps", f"cut-off not reached within max_steps = {c.max_steps}")
            if self.n_rejected >= c.max_steps:  # a stall fails by name instead of hanging
                self.fail("max_steps", f"{self.n_rejected} steps rejected (charge.max_steps = "
                          f"{c.max_steps}) after {self.n_steps} accepted ones at t = "
                          f"{self.t:.1f} s")
            dt = min(dt, c.dt_max_s, c.max_time_s - self.t + 1e-9)
            dt_planned = dt
            # a snapshot or the capacity limit shortens the step that would pass it; one that
            # lies within the shortest step of now is taken now (a shorter step would only
            # stall: its Li balances cancel to round-off)
            hit_snap = not snapped and self.t + dt >= t_snap
            if hit_snap:
                if t_snap - self.t < c.dt_min_s:
                    snapped = True
                    self.snapshot(SNAP_ONSET, I)
                    continue
                dt = t_snap - self.t
            hit_cap = self.t + dt >= t_cap
            if hit_cap:
                if t_cap - self.t < c.dt_min_s:
                    self.stop_reason = "capacity_limit"
                    return
                dt = t_cap - self.t
            V_old = float(self.u[M.oV])
            u, it, res = self.step(dt, I)
            if u is None:
                self.n_rejected += 1
                dt *= 0.5
                if dt < c.dt_min_s:
                    if self.t == 0.0 and self.st.last_V > c.cutoff_V_vs_Li:
                        self.fail("impossible_current",
                                  f"the cell voltage runs past the cut-off {c.cutoff_V_vs_Li} V "
                                  f"at once (Newton iterate V = {self.st.last_V:.2f} V, not "
                                  f"converged): the current {c.current_density_A_per_m2:g} A/m2 "
                                  "is too high for this electrode's pristine conduction")
                    hint = (" (at the very start: the current may be too high for this "
                            "electrode's conduction)" if self.t == 0.0 else "")
                    self.fail("newton_failed", f"Newton did not converge (residual {res:.3g} A, "
                              f"tolerance {c.newton_rtol * M.I_app:.3g} A) even with dt < "
                              f"dt_min_s = {c.dt_min_s:g} s at t = {self.t:.1f} s{hint}")
                continue
            dx = float(np.max(np.abs(u[M.ox:] - self.u[M.ox:]), initial=0.0))
            if dx > c.max_dx_per_step * (1 + 1e-9) and dt > c.dt_min_s:
                self.n_rejected += 1
                dt = max(dt * 0.8 * c.max_dx_per_step / dx, c.dt_min_s)
                continue
            V = float(u[M.oV])
            if V > c.cutoff_V_vs_Li + c.cutoff_tolerance_V:
                self.n_rejected += 1
                if self.t == 0.0 and dt <= c.dt_min_s * 1.0001:
                    self.fail("impossible_current",
                              f"the cell voltage exceeds the cut-off {c.cutoff_V_vs_Li} V at "
                              f"once (V = {V:.3f} V after {dt:.3g} s): the current "
                              f"{c.current_density_A_per_m2:g} A/m2 is too high for this "
                              "electrode, or the cut-off lies below the open-circuit potential")
                if dt > c.dt_min_s * (1 + 1e-9):
                    frac = (c.cutoff_V_vs_Li - V_old) / max(V - V_old, 1e-300)
                    dt = max(dt * min(max(frac, 0.02), 0.95), c.dt_min_s)
                    continue
                # the cut-off lies within one shortest step: stop on its far side, as a
                # cycler stops at its first sample past the cut-off
                self.n_rejected -= 1
                log.info("the cut-off lies within one dt_min_s = %g s step: stopped at "
                         "V = %.6f V", c.dt_min_s, V)
            # accept
            self.u_prev, self.dt_prev = self.u, dt
            self.u = u
            self.t += dt
            self.charge_passed += I * dt
            self.n_steps += 1
            self.record(I, it, PHASE_CHARGE)
            self.bar.update(1)
            self.bar.set_postfix(cap=f"{self.capacity():.1f} mAh/g", V=f"{V:.4f} V")
            xmax = float(np.max(u[M.ox:], initial=0.0))
            if xmax > c.x_limit:
                self.fail("x_limit", f"a particle passed charge.x_limit = {c.x_limit} (x = "
                          f"{xmax:.3f}) before the cut-off: the NMC is exhausted at V = "
                          f"{V:.4f} V")
            if hit_snap:
                snapped = True
                self.snapshot(SNAP_ONSET, I)
            if V >= c.cutoff_V_vs_Li - c.cutoff_tolerance_V:
                self.stop_reason = "cutoff"
                log.info("cut-off %.4f V at %.1f mAh/g after %.0f s", V, self.capacity(), self.t)
                return
            if hit_cap:
                self.stop_reason = "capacity_limit"
                return
            # after a step shortened for the snapshot, go on with the step it replaced
            dt = dt_planned if hit_snap else self.next_dt(dt, it, dx)

    def rest_phase(self) -> None:
        c, M = self.c, self.M
        t_end = self.t + c.rest_time_s
        dt = c.dt_initial_s
        while self.t < t_end * (1 - 1e-14):
            dt = min(dt, c.dt_max_s, t_end - self.t)
            u, it, res = self.step(dt, 0.0)
            if u is None:
                self.n_rejected += 1
                dt *= 0.5
                if dt < c.dt_min_s:
                    self.fail("newton_failed", f"Newton did not converge during the rest "
                              f"(residual {res:.3g} A) at t = {self.t:.1f} s")
                continue
            dx = float(np.max(np.abs(u[M.ox:] - self.u[M.ox:]), initial=0.0))
            if dx > c.max_dx_per_step * (1 + 1e-9) and dt > c.dt_min_s:
                self.n_rejected += 1
                dt = max(dt * 0.8 * c.max_dx_per_step / dx, c.dt_min_s)
                continue
            self.u_prev, self.dt_prev = self.u, dt
            self.u = u
            self.t += dt
            self.n_steps += 1
            self.record(0.0, it, PHASE_REST)
            self.bar.update(1)
            self.bar.set_postfix(rest=f"{self.t - self.t_end_charge:.0f} s",
                                 V=f"{u[M.oV]:.4f} V")
            dt = self.next_dt(dt, it, dx)

    # -- result -----------------------------------------------------------------------------
    def result(self, partial: bool, message: str) -> ChargeResult:
        M, c = self.M, self.c
        n = M.n
        snaps = list(self.snaps)
        resting = np.isfinite(self.t_end_charge)  # the charge had ended: a failure in the rest
        if partial:  # the state reached, as the last snapshot (a rest state if in the rest)
            self.snapshot(SNAP_AFTER_REST if resting else SNAP_END_OF_CHARGE, self.hist["I"][-1])
            snaps = list(self.snaps)
        S = len(snaps)
        x = np.full((S, n), np.nan)
        phi_e = np.full((S, n), np.nan)
        phi_i = np.full((S, n), np.nan)
        cur = np.zeros((S, n))
        x_all0 = np.where(M.nmc, c.initial_x, np.nan)
        for s, (_, _, u, I) in enumerate(snaps):
            x[s] = x_all0
            x[s, M.e_ids] = u[M.ox:].reshape(M.ne, M.ns) @ M.shell_frac
            phi_e[s, M.e_ids] = u[:M.ne]
            phi_i[s, M.i_ids] = u[M.oi:M.ox]
            cur[s] = (np.bincount(M.k_n, I, minlength=n)
                      + np.bincount(M.k_s[~M.k_sep], I[~M.k_sep], minlength=n))
        soc = x / materials_of(self.params).nmc_x_max
        edges = np.linspace(0.0, M.L, c.z_bins + 1)
        b = np.clip(np.digitize(M.z, edges) - 1, 0, c.z_bins - 1)
        w = np.bincount(b, M.mass, minlength=c.z_bins)
        prof = np.full((S, c.z_bins), np.nan)
        for s in range(S):  # S <= 3 snapshots
            with np.errstate(invalid="ignore", divide="ignore"):
                prof[s] = np.bincount(b, np.nan_to_num(soc[s]) * M.mass, minlength=c.z_bins) / w
        # end-of-charge state for the unreacted fraction
        x_end = self.u[M.ox:] if not snaps else next(
            (u[M.ox:] for (_, k, u, _) in snaps if k == SNAP_END_OF_CHARGE), self.u[M.ox:])
        dsoc = np.zeros(n)
        dsoc[M.e_ids] = ((x_end - self.x_init).reshape(M.ne, M.ns) @ M.shell_frac
                         / materials_of(self.params).nmc_x_max)
        mn = M.m_nmc
        unreacted = float(M.mass[M.nmc & (dsoc < c.unreacted_soc_threshold)].sum() / mn)
        isolated = float(M.mass[M.nmc & ~M.electron_active].sum() / mn)
        nonreact = float(M.mass[M.nmc & ~M.reacting].sum() / mn)
        li_removed = float(np.sum(M.Qs.ravel() * (self.u[M.ox:] - self.x_init)))
        qp = self.charge_passed
        err = abs(li_removed - qp) / qp if qp > 0 else 0.0
        ocv = np.nan
        if not partial and c.rest_time_s > 0:
            ocv = float(self.u[M.oV])
        h = self.hist
        return ChargeResult(
            params=self.params,
            time_s=np.asarray(h["t"]), voltage_V_vs_Li=np.asarray(h["V"]),
            capacity_mAh_per_g=np.asarray(h["cap"]), current_A=np.asarray(h["I"]),
            newton_iterations=np.asarray(h["it"], np.int32),
            phase_code=np.asarray(h["ph"], np.int8),
            snapshot_time_s=np.asarray([s[0] for s in snaps], np.float64),
            snapshot_kind=np.asarray([s[1] for s in snaps], np.int8),
            x=x, soc=soc, phi_e_V=phi_e, phi_ion_V=phi_i, reaction_current_A=cur,
            z_bin_edges_m=edges, soc_vs_z=prof, particle_mass_kg=M.mass,
            electron_active=M.electron_active, ion_active=M.ion_active, reacting=M.reacting,
            capacity_at_end_of_charge_mAh_per_g=(self.capacity() if partial and not resting
                                                 else float(self.cap_end_charge)),
            voltage_at_end_of_charge_V_vs_Li=(float(self.u[M.oV]) if partial and not resting
                                              else float(self.V_end_charge)),
            ocv_after_rest_V_vs_Li=ocv,
            ocv_after_rest_V_vs_InLi=ocv - c.counter_electrode_V_vs_Li,
            unreacted_nmc_fraction=unreacted, isolated_nmc_fraction=isolated,
            non_reacting_nmc_fraction=nonreact,
            separator_resistance_ohm_m2=M.R_sep * M.area_box,
            charge_passed_C=qp, li_removed_C=li_removed, conservation_error=err,
            n_steps=self.n_steps, n_newton=self.n_newton, n_rejected=self.n_rejected,
            n_factorizations=self.st.n_factor,
            elapsed_s=time.perf_counter() - self.t_start, partial=partial,
            stop_reason=self.stop_reason, message=message,
            charge_params_json=json.dumps(dataclasses.asdict(c), sort_keys=True))


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------

#: Reference points of Otoyama et al. (2020): 164 mAh/g at the 4.4 V cut-off; 4.36 V vs Li
#: (3.74 V vs In-Li) after the charge.
TARGET_CAPACITY_mAh_per_g = 164.0
TARGET_OCV_V_vs_Li = 4.36


def plot_charge(result: ChargeResult, packing: Packing | None = None):
    """Figure of a charge: curve, SOC map on a slice, SOC against depth.

    Panels: (a) cell voltage vs Li against capacity per g of NMC, with the reference paper's
    164 mAh/g at 4.4 V and its 4.36 V vs Li OCV after the charge marked, and the simulated OCV
    after the rest; (b) SOC at the end of charge of the NMC cut by the x-z plane through the
    box centre (SE grey; needs ``packing``); (c) mass-weighted SOC against depth z for each
    snapshot.

    Returns
    -------
    matplotlib.figure.Figure (not pyplot: save with :func:`esim.plot.save_figure`).
    """
    from matplotlib.figure import Figure

    r = result
    ncol = 3 if packing is not None else 2
    fig = Figure(figsize=(5.0 * ncol, 4.2), layout="constrained")
    ax = fig.subplots(1, ncol)
    a = ax[0]
    ch = r.phase_code == PHASE_CHARGE
    a.plot(r.capacity_mAh_per_g[ch], r.voltage_V_vs_Li[ch], "-", color="#3b5b92",
           label="simulated charge")
    rest = r.phase_code == PHASE_REST
    if rest.any():
        a.plot(r.capacity_mAh_per_g[rest], r.voltage_V_vs_Li[rest], ".", ms=3, color="#c0392b",
               label=f"rest: OCV {r.ocv_after_rest_V_vs_Li:.3f} V")
    cut = json.loads(r.charge_params_json).get("cutoff_V_vs_Li", 4.4) \
        if r.charge_params_json else 4.4
    a.plot([TARGET_CAPACITY_mAh_per_g], [cut], "k*", ms=12,
           label=f"Otoyama 2020: {TARGET_CAPACITY_mAh_per_g:g} mAh/g at {cut:g} V")
    a.plot([TARGET_CAPACITY_mAh_per_g], [TARGET_OCV_V_vs_Li], "kx", ms=9,
           label=f"Otoyama 2020: OCV {TARGET_OCV_V_vs_Li} V after charge")
    a.set_xlabel("capacity (mAh per g NMC)")
    a.set_ylabel("cell voltage (V vs Li+/Li)")
    # a partial result stopped in the charge (before the cut-off) or in the rest after it
    in_charge = r.partial and not (r.snapshot_kind == SNAP_AFTER_REST).any()
    in_rest = r.partial and not in_charge
    if in_charge:  # the charge passed so far
        last = float(r.capacity_mAh_per_g[-1]) if r.capacity_mAh_per_g.size else 0.0
        a.set_title(f"(a) stopped at {last:.1f} mAh/g, before the cut-off [partial]")
    else:
        a.set_title(f"(a) {r.capacity_at_end_of_charge_mAh_per_g:.1f} mAh/g at cut-off"
                    + (" [rest interrupted]" if in_rest else ""))
    a.legend(fontsize=7, loc="lower right")
    a.grid(alpha=0.3)
    end = np.flatnonzero(r.snapshot_kind == SNAP_END_OF_CHARGE)
    s_end = int(end[0]) if end.size else r.snapshot_kind.size - 1
    if packing is not None:
        from matplotlib.collections import EllipseCollection

        b = ax[1]
        y0 = packing.box_m[1] / 2
        dy = packing.centers_m[:, 1] - y0
        cutp = np.abs(dy) < packing.radii_m
        rr = np.sqrt(np.maximum(packing.radii_m**2 - dy**2, 0.0))
        um = 1e6
        se = cutp & (packing.phase == PHASE_SE)
        nm = cutp & (packing.phase == PHASE_NMC)

        def discs(sel, **kw):  # the slice's circles, one collection (data units)
            d = 2 * rr[sel] * um
            return EllipseCollection(d, d, np.zeros(d.size), units="xy",
                                     offsets=packing.centers_m[sel][:, [0, 2]] * um,
                                     offset_transform=b.transData, **kw)

        b.add_collection(discs(se, facecolor="#dddddd", edgecolor="none"))
        pc = discs(nm, cmap="viridis", edgecolor="k", linewidth=0.3)
        pc.set_array(np.nan_to_num(r.soc[s_end, nm]))
        pc.set_clim(0.0, max(1.0, float(np.nanmax(r.soc[s_end])) if nm.any() else 1.0))
        b.add_collection(pc)
        fig.colorbar(pc, ax=b, label="SOC (x / x_max)")
        b.set_xlim(0, packing.box_m[0] * um)
        b.set_ylim(0, packing.box_m[2] * um)
        b.set_aspect("equal")
        b.set_xlabel("x (µm)")
        b.set_ylabel("depth z (µm)  [0 = current collector]")
        b.set_title("(b) SOC " + ("when the charge stopped" if in_charge else "at end of charge")
                    + ", slice y = L_y/2")
    c = ax[-1]
    zc = 0.5 * (r.z_bin_edges_m[1:] + r.z_bin_edges_m[:-1]) * 1e6
    names = {SNAP_ONSET: "early charge",
             SNAP_END_OF_CHARGE: "charge stopped" if in_charge else "end of charge",
             SNAP_AFTER_REST: "rest interrupted" if in_rest else "after rest"}
    for s in range(r.snapshot_kind.size):
        name = names.get(int(r.snapshot_kind[s]), "?")
        q = float(np.interp(r.snapshot_time_s[s], r.time_s, r.capacity_mAh_per_g))
        # distinct markers and lines: the end of charge and the rest often coincide
        style = {SNAP_ONSET: dict(marker="o", ls="-"), SNAP_END_OF_CHARGE: dict(marker="s", ls="-"),
                 SNAP_AFTER_REST: dict(marker="^", ls="--", mfc="none", ms=6)}.get(
                     int(r.snapshot_kind[s]), dict(marker="o", ls="-"))
        c.plot(zc, r.soc_vs_z[s], **{"ms": 3, **style},
               label=f"{name} (t = {r.snapshot_time_s[s]:.0f} s, {q:.0f} mAh/g)")
    c.set_xlabel("depth z (µm)  [0 = current collector]")
    c.set_ylabel("mean SOC of NMC")
    c.set_title("(c) SOC against depth")
    c.legend(fontsize=7)
    c.grid(alpha=0.3)
    return fig
