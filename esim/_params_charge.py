"""Parameter section ``charge``: the galvanostatic first charge of the composite electrode.

Units are SI inside esim except where the key names another unit explicitly
(``nmc_theoretical_capacity_mAh_per_g``, the unit every battery paper quotes).  Literature
values quoted in mA/cm2, S/cm or ohm cm2 are converted where the default is defined, with the
original value in a comment beside it.

Confidence tags follow ``shared/reference/materials_literature.md``: [P] primary text, [S]
secondary digest, [E] estimate to verify.  **CALIBRATED** marks a value chosen so that the
simulation reproduces a reference observation; its bracket is stated.

The section is read with ``getattr(params, "charge", None) or ChargeParams()`` so that a
parameter set without it (before the section is registered) gets these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from esim._fields import param, section_of

__all__ = ["ChargeParams", "charge_params_of", "OCV_CURVES", "SOLID_DIFFUSION"]

#: Named open-circuit-potential curves of NMC111 (see :mod:`esim.ocv`).
OCV_CURVES = ("typical_halfcell", "table")
#: Solid-diffusion models inside NMC particles.
SOLID_DIFFUSION = ("uniform", "shells")

_OTOYAMA = "Otoyama et al., Research Square preprint rs-57856 (2020)"
_FARADAY_RT = 0.025693  # RT/F at 298.15 K, V


@dataclass(frozen=True)
class ChargeParams:
    """Protocol, cell and numerics of the constant-current first charge (see esim.charge)."""

    # -- protocol ----------------------------------------------------------------------------
    current_density_A_per_m2: float = param(
        1.3, unit="A/m2", range=(1e-6, 1e4),  # 0.13 mA/cm2
        source=f"{_OTOYAMA}, Results: 0.13 mA/cm2 (= 1.3 A/m2); the Methods say 1.3 mA/cm2, "
               "which would be 13 A/m2. Positive = charge (oxidation of NMC)")
    cutoff_V_vs_Li: float = param(
        4.4, unit="V", range=(2.0, 6.0),
        source=f"{_OTOYAMA}: charged to 4.4 V vs Li+/Li (3.78 V vs In-Li with the In-Li "
               "plateau at 0.62 V vs Li)")
    counter_electrode_V_vs_Li: float = param(
        0.62, unit="V", range=(0.0, 3.0),
        source="In-Li two-phase plateau, 0.62 V vs Li+/Li (materials_literature.md, Cell: [P], "
               "quoted in two sources it does not name); taken as "
               "non-polarisable (fast kinetics, no concentration change)")
    rest_time_s: float = param(
        3600.0, unit="s", range=(0.0, 1e7),
        source="ASSUMED: 1 h at open circuit after the charge (the paper does not state how "
               "long its cell rested before the 3.74 V vs In-Li reading); fixed before any "
               "comparison. 0 = no rest")
    capacity_limit_mAh_per_g: float = param(
        0.0, unit="mAh/g", range=(0.0, 1000.0),
        source="optional capacity-limited charge: stop when this much charge per g of NMC has "
               "passed (0 = off, charge to the cut-off voltage)")
    initial_x: float = param(
        0.0, unit="1", range=(0.0, 0.9),
        source="x in Li(1-x)NMC111 of every particle before the charge: 0 = as made (pristine)")

    # -- cell in series ------------------------------------------------------------------------
    separator_thickness_m: float = param(
        0.34e-3, unit="m", range=(0.0, 1e-2),
        source="50 mg of Li3PS4 glass (1.88 g/cm3) in the 10 mm cell: 0.050/(1.88*0.785) cm "
               f"= 0.34 mm ({_OTOYAMA}, Methods; density materials_literature.md [S])")
    separator_sigma_ion_S_per_m: float = param(
        3.1e-2, unit="S/m", range=(1e-8, 1e3),  # 3.1e-4 S/cm
        source="Sakuda, Hayashi & Tatsumisago, Sci. Rep. 3, 2261 (2013): 3.1e-4 S/cm cold-"
               "pressed at 360 MPa [S]; with 0.34 mm: 110 ohm cm2, 14 mV at 0.13 mA/cm2; at "
               "materials.se_sigma_ion_reference_temperature_K, scaled to materials."
               "temperature_K with the glass's activation energy materials.se_ea_ion_eV. The "
               "separator's layer only: the spreading resistance of the composite's contacts "
               "into it (esim.network) uses the composite's glass, materials."
               "se_sigma_ion_S_per_m (the same 3.1e-2 S/m by default); change both together")

    # -- NMC/SE interface kinetics ---------------------------------------------------------------
    exchange_current_density_A_per_m2: float = param(
        6.4, unit="A/m2", range=(1e-8, 1e8),  # 0.64 mA/cm2
        source="from the NMC/SE charge-transfer area-specific resistance R_ct ~ 40 ohm cm2 "
               "(Bielefeld et al., ACS Appl. Mater. Interfaces 12, 12821, 2020, after Braun "
               "2018) [S], linearised Butler-Volmer i0 = RT/(F R_ct) = 0.02569 V / 4e-3 ohm m2 "
               "= 6.4 A/m2, constant in x (assumption); it includes the LiNbO3 coating; at 25 C, "
               "not scaled with materials.temperature_K (assumption)")
    transfer_coefficient: float = param(
        0.5, unit="1", range=(0.05, 0.95),
        source="symmetric Butler-Volmer, alpha_a = alpha, alpha_c = 1 - alpha [E]")
    interface_asr_ohm_m2: float = param(
        0.0, unit="ohm m2", range=(0.0, 10.0),
        source="optional area-specific resistance in series with the Butler-Volmer kinetics "
               "(coating film, charge-transfer), 0 = none because i0 already represents the "
               "40 ohm cm2 of Bielefeld 2020; a LiNbO3 film of 7.5 nm at 1e-6 S/cm would add "
               "7.5e-5 ohm m2 (0.75 ohm cm2) [E]")

    # -- NMC capacity --------------------------------------------------------------------------
    nmc_theoretical_capacity_mAh_per_g: float = param(
        277.8, unit="mAh/g", range=(1.0, 1000.0),
        source="LiNi1/3Mn1/3Co1/3O2, M = 96.46 g/mol, one Li: F/(3.6 M) = 277.8 mAh/g")
    nmc_density_kg_per_m3: float = param(
        4750.0, unit="kg/m3", range=(1000.0, 10000.0),  # 4.75 g/cm3
        source="NMC111 X-ray density 4.75 g/cm3 (materials_literature.md, NMC111)")
    se_density_kg_per_m3: float = param(
        1880.0, unit="kg/m3", range=(500.0, 10000.0),  # 1.88 g/cm3
        source="Li3PS4 glass 1.88 g/cm3 (Sakuda, Hayashi & Tatsumisago, Sci. Rep. 3, 2261, "
               "2013; materials_literature.md [S]); only for the electrode's mass and weight "
               "ratio in reports")
    x_limit: float = param(
        0.98, unit="1", range=(0.1, 1.0),
        source="numerical guard: a particle delithiated beyond this x stops the run with an "
               "error (SOC exhausted before the cut-off)")

    # -- open-circuit potential U(x) -------------------------------------------------------------
    ocv_curve: str = param(
        "typical_halfcell", unit="", choices=OCV_CURVES,
        source="typical_halfcell: PCHIP through the typical NMC111 half-cell table of "
               "materials_literature.md [E, low confidence], extended to x = 0 and 1 (see "
               "esim.ocv); table: the points of ocv_table")
    ocv_x_scale: float = param(
        1.136, unit="1", range=(0.5, 2.0),
        source="CALIBRATED: U(x) = U_curve(x * ocv_x_scale). With the typical half-cell table "
               "unscaled (1.0) the default electrode (40x40x50 um, 2191 particles) reaches "
               "186.3 mAh/g at 4.4 V (OCV after 1 h rest 4.371 V vs Li); 1.136 = 186.3/164 "
               "brings the capacity to the 164 mAh/g of Otoyama et al. (2020). Calibrated on "
               "the capacity target only; the OCV after the rest is then a prediction. "
               "Reading: each particle reaches a given potential with ~12 % less Li removed "
               "than the liquid half-cell table says (inaccessible capacity), equivalent for "
               "the voltage curve to ~12 % of the NMC never reacting")
    ocv_table: str = param(
        "", unit="", source="custom U(x) as 'x:U, x:U, ...' (x in Li(1-x)NMC, U in V vs Li), "
                            "strictly increasing in x and U, at least 3 points covering the "
                            "charge; used when ocv_curve = 'table'. Evaluated at x * "
                            "ocv_x_scale like the default curve: set ocv_x_scale = 1 to use a "
                            "measured curve as it is")

    # -- solid diffusion ----------------------------------------------------------------------
    solid_diffusion: str = param(
        "uniform", unit="", choices=SOLID_DIFFUSION,
        source="uniform: one Li content per particle. Justified at 0.13 mA/cm2: r^2/D = "
               "(2.5 um)^2 / 0.9e-14 m2/s = 700 s << 5e4 s charge, and the surface-to-mean "
               "excess x is r^2/(15 D) dx/dt ~ 6e-4 (~1 mV); shells: radial finite volumes "
               "with D(x) (5 shells change the default capacity by 0.08 %)")
    n_shells: int = param(
        5, unit="", range=(2, 50),
        source="radial shells of equal thickness per particle when solid_diffusion = 'shells'")
    nmc_diffusivity_x010_m2_per_s: float = param(
        4.1e-14, unit="m2/s", range=(1e-22, 1e-8),  # 4.1e-10 cm2/s
        source="Amin & Chiang, JES 163, A1512 (2016): 4.1e-10 cm2/s at x = 0.1 [S]")
    nmc_diffusivity_x055_m2_per_s: float = param(
        0.9e-14, unit="m2/s", range=(1e-22, 1e-8),  # 0.9e-10 cm2/s
        source="Amin & Chiang (2016): minimum ~0.9e-10 cm2/s near x = 0.55 [S]")
    nmc_diffusivity_x075_m2_per_s: float = param(
        1.3e-14, unit="m2/s", range=(1e-22, 1e-8),  # 1.3e-10 cm2/s
        source="Amin & Chiang (2016): 1.3e-10 cm2/s at x = 0.75 [S]")

    # -- time stepping and Newton --------------------------------------------------------------
    dt_initial_s: float = param(1.0, unit="s", range=(1e-9, 1e5),
                                source="first step; adaptive afterwards (numerical)")
    dt_max_s: float = param(1200.0, unit="s", range=(1e-6, 1e6),
                            source="largest step (numerical; ~1/40 of the 13-15 h charge; "
                                   "halving it and max_dx_per_step moves the capacity < 0.1 %)")
    dt_min_s: float = param(1e-7, unit="s", range=(1e-15, 1.0),
                            source="a step cut below this ends the run with an error")
    dt_growth: float = param(1.5, unit="1", range=(1.01, 10.0),
                             source="step growth after a fast Newton convergence (numerical)")
    max_dx_per_step: float = param(
        0.03, unit="1", range=(1e-5, 0.5),
        source="largest change of any particle's x in one step; a larger step is redone "
               "shorter (accuracy control of backward Euler and of the lagged conductivities)")
    cutoff_tolerance_V: float = param(
        2e-4, unit="V", range=(1e-7, 0.1),
        source="the last charge step is shortened until the voltage lies within this of the "
               "cut-off (numerical)")
    max_time_s: float = param(
        3e5, unit="s", range=(1.0, 1e9),
        source="longest charge before giving up (83 h; the reference charge takes ~13 h)")
    max_steps: int = param(100_000, unit="", range=(1, 10**8),
                           source="largest number of accepted steps before giving up")
    newton_rtol: float = param(
        1e-10, unit="1", range=(1e-15, 1e-3),
        source="Newton stops when every current residual is below this times the applied "
               "current (and every Li-balance residual likewise); sets the conservation error")
    newton_max_iterations: int = param(25, unit="", range=(2, 1000),
                                       source="Newton iterations before the step is cut")
    linear_solver: str = param(
        "auto", unit="", choices=("auto", "direct", "amg"),
        source="preconditioner of the CG solves of Newton's linear step (the Schur complement "
               "on the potentials, a grounded graph Laplacian): direct = SuperLU "
               "factorisation (symmetric ordering), amg = smoothed-aggregation AMG "
               "(esim.solver's CSR hierarchy, pyamg's aggregation) with a flexible CG; "
               "either is built from one Jacobian and reused while CG converges fast; "
               "auto = direct up to 6000 potentials")
    krylov_rtol: float = param(
        1e-6, unit="1", range=(1e-14, 1e-2),
        source="relative residual of the preconditioned CG solves (inexact Newton; the "
               "Newton tolerance, not this, sets the final accuracy)")
    cg_max_iterations: int = param(
        12, unit="", range=(1, 10000),
        source="CG iterations with a reused preconditioner before it is rebuilt (numerical)")
    max_potential_update_V: float = param(
        0.2, unit="V", range=(1e-4, 10.0),
        source="damping: a Newton update is scaled so no potential moves more than this")

    # -- outputs -------------------------------------------------------------------------------
    unreacted_soc_threshold: float = param(
        0.01, unit="1", range=(0.0, 1.0),
        source="a particle whose SOC rose by less than this (1 %) during the charge counts as "
               "never reacted")
    snapshot_capacity_mAh_per_g: float = param(
        10.0, unit="mAh/g", range=(0.0, 1000.0),
        source="an early snapshot (reaction onset) is stored when this capacity is passed "
               "(0 = none)")
    z_bins: int = param(10, unit="", range=(1, 1000),
                        source="depth bins of the SOC-vs-z profile")


def charge_params_of(params) -> ChargeParams:
    """The :class:`ChargeParams` of a Params, the section itself, or None (defaults)."""
    return section_of(params, ChargeParams, "charge")
