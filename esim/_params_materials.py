"""Parameter sections ``materials`` and ``network``: material laws and resistor-network options.

Units are SI inside esim.  Several literature values are quoted in S/cm; they are converted
where the default is defined (1 S/cm = 100 S/m), with the S/cm value in a comment beside it.

Confidence tags in the sources follow ``shared/reference/materials_literature.md``: [P] primary
text, [S] detailed secondary digest, [E] estimate to verify.  A value marked **calibrated** is not
a measurement of this material but chosen within the stated literature bracket so that the
simulation reproduces a reference observation; its bracket is given in the source.
"""

from __future__ import annotations

from dataclasses import dataclass

from esim._fields import param

__all__ = ["MaterialsParams", "NetworkParams", "S_PER_CM"]

S_PER_CM = 100.0  # 1 S/cm = 100 S/m

_AMIN = "Amin & Chiang, J. Electrochem. Soc. 163, A1512 (2016), sintered pellets, 30 C [S]"


@dataclass(frozen=True)
class MaterialsParams:
    """Material laws of LiNbO3-coated NMC111, Li3PS4 glass (75Li2S-25P2S5) and the coating.

    NMC electronic conductivity is tabulated against x in Li(1-x)NMC111 (Amin & Chiang 2016);
    esim interpolates log10(sigma) and the activation energy linearly in x.  The x = 0 point of
    the table is replaced by ``nmc_sigma_e_pristine_S_per_m``, a calibrated parameter.
    """

    # -- conditions --------------------------------------------------------------------------
    temperature_K: float = param(
        298.15, unit="K", range=(150.0, 430.0),
        source="25 C, room temperature of the reference measurements (Otoyama et al. 2020). "
               "Upper bound 430 K: the activation energy at x = 0 (0.48 eV) belongs to Amin & "
               "Chiang's 5e-8 S/cm sample, paired here with the calibrated, 44x higher pristine "
               "conductivity, so above ~440 K the pristine NMC would conduct better than at "
               "x = 0.1, against the table's trend")
    stack_pressure_Pa: float = param(
        360e6, unit="Pa", range=(0.0, 5e9),
        source="pressing pressure of the reference cell, 360 MPa (Otoyama et al. 2020, Methods)")

    # -- NMC111 electronic conductivity vs x (Amin & Chiang 2016, table at 30 C) ---------------
    nmc_sigma_e_pristine_S_per_m: float = param(
        2.2e-4, unit="S/m", range=(5e-6, 1e-2),  # 2.2e-6 S/cm; bracket 5e-8..1e-4 S/cm
        source="CALIBRATED, bracket 5e-8..1e-4 S/cm (5e-6..1e-2 S/m): Amin & Chiang, JES 163, "
               "A1512 (2016) 5e-8 S/cm [S]; Wang et al., J. Power Sources 393, 75 (2018) "
               "2.2e-6 S/cm, spark-plasma-sintered NMC333 [S]; pressed LiNbO3-coated NMC111 of "
               "the reference group 1e-5..1e-4 S/cm [S]. Default 2.2e-6 S/cm = Wang 2018 "
               "(a room-temperature value, taken as the table's 30 C one: 1.6e-6 S/cm at 25 C "
               "with E_a 0.48 eV), the "
               "log-middle of the bracket; the pristine SSRM maps saturate (~2e9 ohm) anywhere "
               "in it, so the reference paper's maps do not pin it. Its charge at 0.13 mA/cm2 "
               "bounds it from below: in this model the charge starts only above 0.3-1.8e-4 "
               "S/m (3 seeds, both contact models; experiments/pristine_sigma_bound.py)")
    nmc_sigma_e_x010_S_per_m: float = param(
        2.1e-3, unit="S/m", range=(1e-8, 1e4),  # 2.1e-5 S/cm
        source=f"{_AMIN}: 2.1e-5 S/cm at x = 0.10")
    nmc_sigma_e_x030_S_per_m: float = param(
        6.1e-2, unit="S/m", range=(1e-8, 1e4),  # 6.1e-4 S/cm
        source=f"{_AMIN}: 6.1e-4 S/cm at x = 0.30")
    nmc_sigma_e_x050_S_per_m: float = param(
        1.6e-1, unit="S/m", range=(1e-8, 1e4),  # 1.6e-3 S/cm
        source=f"{_AMIN}: 1.6e-3 S/cm at x = 0.50")
    nmc_sigma_e_x075_S_per_m: float = param(
        7.9e-1, unit="S/m", range=(1e-8, 1e4),  # 7.9e-3 S/cm
        source=f"{_AMIN}: 7.9e-3 S/cm at x = 0.75")
    nmc_ea_e_x000_eV: float = param(0.48, unit="eV", range=(0.0, 2.0),
                                    source=f"{_AMIN}: activation energy 0.48 eV at x = 0")
    nmc_ea_e_x010_eV: float = param(0.29, unit="eV", range=(0.0, 2.0),
                                    source=f"{_AMIN}: 0.29 eV at x = 0.10")
    nmc_ea_e_x030_eV: float = param(0.13, unit="eV", range=(0.0, 2.0),
                                    source=f"{_AMIN}: 0.13 eV at x = 0.30")
    nmc_ea_e_x050_eV: float = param(0.12, unit="eV", range=(0.0, 2.0),
                                    source=f"{_AMIN}: 0.12 eV at x = 0.50")
    nmc_ea_e_x075_eV: float = param(0.10, unit="eV", range=(0.0, 2.0),
                                    source=f"{_AMIN}: 0.10 eV at x = 0.75")
    nmc_sigma_reference_temperature_K: float = param(
        303.15, unit="K", range=(150.0, 600.0),
        source=f"{_AMIN}: the conductivity table is at 30 C")

    # -- NMC111 Li-ion conductivity -----------------------------------------------------------
    nmc_sigma_ion_S_per_m: float = param(
        1e-6, unit="S/m", range=(1e-12, 1.0),  # 1e-8 S/cm
        source="Amin & Chiang, JES 163, A1512 (2016): 4e-9..9e-9 S/cm at 50 C [S]; 1e-8 S/cm "
               "(1e-6 S/m) is that range's order of magnitude rounded up (at 25-30 C it would "
               "be lower still), taken as x- and T-independent (no activation energy given). "
               "It barely matters: the charge leaves NMC's ionic path out, and in the ion "
               "network NMC conducts 3e4x below the glass")

    # -- Li3PS4 glass --------------------------------------------------------------------------
    se_sigma_ion_S_per_m: float = param(
        3.1e-2, unit="S/m", range=(1e-8, 1e3),  # 3.1e-4 S/cm
        source="Sakuda, Hayashi & Tatsumisago, Sci. Rep. 3, 2261 (2013): 3.1e-4 S/cm at 25 C, "
               "75Li2S-25P2S5 glass cold-pressed at 360 MPa [S]")
    se_sigma_ion_reference_temperature_K: float = param(
        298.15, unit="K", range=(150.0, 600.0), source="Sakuda et al. 2013: measured at 25 C")
    se_ea_ion_eV: float = param(
        0.37, unit="eV", range=(0.0, 2.0),
        source="[E] typical activation energy of 75Li2S-25P2S5 glass (~35-38 kJ/mol, "
               "Tatsumisago group); estimate, verify against a primary source")
    se_sigma_e_S_per_m: float = param(
        1e-7, unit="S/m", range=(0.0, 1.0),  # 1e-9 S/cm
        source="[E] 1e-9..1e-8 S/cm for sulfide glasses (no primary value found; "
               "materials_literature.md); 1e-9 S/cm = 1e-7 S/m, T-independent")

    # -- LiNbO3 coating -----------------------------------------------------------------------
    film_thickness_m: float = param(
        7.5e-9, unit="m", range=(0.0, 1e-6),
        source="[E] LiNbO3 coatings of 5-10 nm on NMC for sulfide cells; middle value")
    film_sigma_ion_S_per_m: float = param(
        1e-4, unit="S/m", range=(1e-10, 1.0),  # 1e-6 S/cm
        source="[E] amorphous LiNbO3 Li+ conductivity 1e-6..1e-5 S/cm; lower end, 1e-4 S/m")
    film_rho_e_thickness_ohm_m2: float = param(
        3e-7, unit="ohm m2", range=(0.0, 10.0),
        source="CALIBRATED product rho_f*t of the LiNbO3 film in the electron path (one film per "
               "coated surface of a contact). Bracket 0 (film broken by pressing: coated "
               "carbon-free composites do conduct electrons) .. ~1 ohm m2 (an intact 5-10 nm "
               "film of an insulator with rho ~1e8 ohm m [E]). Default chosen so that an "
               "asperity-limited (10 nm) charged NMC-NMC point contact is of the order of the "
               "~1e9 ohm of the point-contact particles after charge in Otoyama et al. (2020) "
               "SSRM maps: two films of 0.95e9 ohm and the constriction's 0.19e9 ohm (x = "
               "0.59) give 2.1e9 ohm")

    # -- mechanics -----------------------------------------------------------------------------
    nmc_youngs_modulus_Pa: float = param(
        140e9, unit="Pa", range=(1e8, 1e12),
        source="Xu et al., J. Electrochem. Soc. 164, A3333 (2017), NMC532 secondary "
               "particles, nanoindentation [S]")
    nmc_hardness_Pa: float = param(
        8.6e9, unit="Pa", range=(1e7, 1e11),
        source="Xu et al., J. Electrochem. Soc. 164, A3333 (2017), NMC532 [S]")
    nmc_poisson_ratio: float = param(
        0.25, unit="1", range=(0.0, 0.5), source="[E] typical layered oxide; assumption")
    se_youngs_modulus_Pa: float = param(
        24e9, unit="Pa", range=(1e8, 1e12),
        source="Li3PS4 glass, ultrasonic (Sakuda, Hayashi & Tatsumisago, Sci. Rep. 3, "
               "2261, 2013) [S]")
    se_hardness_Pa: float = param(
        1.9e9, unit="Pa", range=(1e7, 1e11),
        source="75Li2S-25P2S5 glass, ~1.9 GPa (materials_literature.md lists it, without a "
               "paper of its own, beside Sakuda, Hayashi & Tatsumisago, Sci. Rep. 3, 2261, "
               "2013) [S]")
    se_poisson_ratio: float = param(
        0.30, unit="1", range=(0.0, 0.5), source="[E] sulfide glass; assumption")
    cc_youngs_modulus_Pa: float = param(
        200e9, unit="Pa", range=(1e8, 1e13),
        source="[E] stainless-steel current collector / die (~200 GPa)")
    cc_poisson_ratio: float = param(0.30, unit="1", range=(0.0, 0.5),
                                    source="[E] stainless steel")
    cc_hardness_Pa: float = param(
        2.0e9, unit="Pa", range=(1e7, 1e11),
        source="[E] stainless steel 304L, ~150-200 HV (1.5-2 GPa); the reference cell's "
               "collector is pressed SUS304L powder (Otoyama et al. 2020, Methods). The softer "
               "body yields first, so an NMC-collector contact is capped at min(H_NMC, H_cc)")

    # -- capacity and state of charge ---------------------------------------------------------
    nmc_x_max: float = param(
        0.59, unit="1", range=(0.01, 1.0),
        source="x at SOC = 1: 164 mAh/g first-charge capacity to 4.4 V (Otoyama et al. 2020) / "
               "277.8 mAh/g theoretical of NMC111 (M = 96.46 g/mol) = 0.590")


@dataclass(frozen=True)
class NetworkParams:
    """Options of the particle resistor network."""

    contact_model: str = param(
        "geometric", unit="", choices=("geometric", "mechanical"),
        source="geometric: lens circle of the packing's overlap with the asperity minimum; "
               "mechanical: Hertz with a hardness cap from the packing forces scaled to the "
               "stack pressure (hard NMC-NMC and NMC-wall contacts; SE contacts stay area "
               "contacts). Geometric is the default because it needs no force calibration; "
               "its NMC-NMC radii scale as structure.nmc_stiffness_ratio^(-1/2), a numerical "
               "parameter (median 99 nm at the default 100), while the mechanical radii do not "
               "(~330 nm at 360 MPa)")
