"""Parameter section ``spm``: the virtual ion-milled cross-section and its microscopes.

Every number from the reference paper carries its source: Otoyama et al., Research Square
preprint (2020), doi 10.21203/rs.3.rs-57856/v1 ("Otoyama 2020" below).  Tags: [P] from a
paper, [E] an engineering estimate, [A] an assumption of ours, **calibrated** a value chosen so
the model reproduces a stated reference number.

KPFM model constants (see :mod:`esim.spm.maps` for the model):

* ``kpfm_nmc_offset_V = 0.93`` V is the raw pristine NMC V_CPD, ``(W_tip - W_NMC(x=0)) / e``
  (Otoyama 2020: V_CPD' 2.06-2.12 V minus V_OCV 1.16 V).
* ``kpfm_beta = 2.227`` is calibrated on the one NMC shift: raw V_CPD +0.93 V before and -0.54 V
  after charge (Otoyama 2020), ``beta = 1.47 V / (U(x_max) - U(0))`` with the placeholder OCP
  ``U(x) = 3.70 V + 1.1186 V * x`` (so ``U(0.59) = 4.36 V`` vs Li, the relaxed cell voltage
  3.74 V vs In-Li + 0.62 V).
* SE: ``V_CPD = kpfm_se_offset_V - kpfm_se_coupling * V_OCV``; the two constants are the unique
  solution through the SE's two raw values, +1.06 V at V_OCV = 1.16 V and -0.98 V at 3.74 V
  (Otoyama 2020): coupling ``2.04 / 2.58 = 0.7907``, offset ``1.06 + 0.7907 * 1.16 = 1.9772`` V.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from esim._fields import param, section_of

__all__ = ["SPMParams", "OTOYAMA2020", "spm_params_of"]

OTOYAMA2020 = "Otoyama et al., Research Square preprint (2020), doi 10.21203/rs.3.rs-57856/v1"


@dataclass(frozen=True)
class SPMParams:
    """The cut plane, the imaging window and the instrument settings of the virtual SPM.

    The image plane is spanned by the lateral axis ``u`` (x when the plane normal is y, y when it
    is x) and the depth z (current collector at z = 0, separator at z = L); the kept material
    lies on the low side of the plane (coordinate below ``plane_position_m`` along the normal).
    """

    # -- section and window ---------------------------------------------------------------------
    plane_axis: int = param(1, unit="", choices=(0, 1),
                            source="normal of the milled plane: 1 = plane y = const (image x-z), "
                                   "0 = plane x = const (image y-z); the cut is perpendicular to "
                                   "the electrode layer as in Otoyama 2020, Figure 1")
    plane_position_m: float = param(
        -1.0, unit="m", range=(-1.0, 1.0),
        source="coordinate of the plane along its normal; a negative value means the middle of "
               "the box [A]; must lie inside the box")
    mill_contacts: bool = param(
        True, unit="",
        source="the milling takes away the part of every contact beyond the face with the part "
               "of the particle that held it, so a section keeps only the contacts, or the parts "
               "of them, on its remaining part (esim.spm.section.milled_network; a cut contact "
               "conducts as a disc of its remaining area [A]); false keeps every contact of a "
               "particle the face cuts, as if the material beyond it had been lifted off the "
               "contacts: a counterfactual for the causal checks, not a sample one can make")
    fov_width_m: float = param(15e-6, unit="m", range=(1e-9, 1.0),
                               source=f"lateral size of the window: 15 x 15 um, '15 um^2 near the "
                                      f"SE layer' holding 14 NMC particles of ~5 um "
                                      f"({OTOYAMA2020})")
    fov_height_m: float = param(15e-6, unit="m", range=(1e-9, 1.0),
                                source=f"depth (z) size of the window, 15 um ({OTOYAMA2020}); "
                                       "ignored with fov_z_anchor = 'full'")
    fov_z_anchor: str = param("separator", unit="", choices=("separator", "collector", "full"),
                              source=f"window next to the separator as in {OTOYAMA2020}; "
                                     "'full' images the whole thickness")
    fov_u_offset_m: float = param(0.0, unit="m", range=(0.0, 1.0),
                                  source="lateral start of the window (the box is periodic) [A]")
    pixels_u: int = param(256, unit="", range=(2, 8192),
                          source="pixels along the lateral axis; 256 is a usual AFM scan [E]; at "
                                 "least 2 (the SEM's edge contrast is a gradient)")
    pixels_z: int = param(256, unit="", range=(2, 8192),
                          source="pixels along z; 256 is a usual AFM scan [E]; at least 2")

    # -- tip contact and bias (SSRM and C-AFM share them) ------------------------------------
    tip_radius_m: float = param(10e-9, unit="m", range=(1e-10, 1e-6),
                                source="effective electrical radius of a doped-diamond tip, "
                                       "5-20 nm [E] (esim.spm.instrument.TipContact)")
    r_instrument_ohm: float = param(1e3, unit="Ohm", range=(0.0, 1e9),
                                    source="tip body, coating and wiring, 1-10 kohm [E]")
    nonohmic: bool = param(True, unit="",
                           source="non-ohmic tip-NMC contact, I = I0 sinh(Vc/V0) [A] "
                                  "(esim.spm.instrument.TipContact)")
    barrier_v0_V: float = param(0.25, unit="V", range=(1e-3, 10.0),
                                source="voltage scale of the sinh barrier [A]")
    barrier_r0_ohm: float = param(1e8, unit="Ohm", range=(1.0, 1e15),
                                  source="zero-bias barrier resistance [A]")
    bias_V: float = param(-2.0, unit="V", range=(-10.0, 10.0),
                          source=f"-2 V on the sample holder for C-AFM and SSRM ({OTOYAMA2020})")

    # -- SSRM log amplifier ------------------------------------------------------------------------
    ssrm_r_max_ohm: float = param(2.0e9, unit="Ohm", range=(1.0, 1e18),
                                  source=f"ceiling: every pristine area reads 1.8-2.2e9 ohm "
                                         f"({OTOYAMA2020}); read as the top of the range [A]")
    ssrm_decades: float = param(7.0, unit="1", range=(1.0, 20.0),
                                source=f"'a wide measurement range of 7 orders of magnitude' "
                                       f"({OTOYAMA2020})")
    ssrm_noise_decades: float = param(0.02, unit="1", range=(0.0, 2.0),
                                      source="log-normal read noise, 0.02 decades rms (~5 %) [E]")
    ssrm_saturation_spread_decades: float = param(
        0.02, unit="1", range=(0.0, 1.0),
        source=f"spread of saturated readings: 95 % within 1.82-2.2e9 ohm ({OTOYAMA2020}) [A]")

    # -- C-AFM -------------------------------------------------------------------------------------
    cafm_noise_floor_A: float = param(0.1e-12, unit="A", range=(0.0, 1e-6),
                                      source="0.05-1 pA rms for low-noise C-AFM amplifiers [E]; "
                                             f"the SE's 1 pA at +2 V is resolved ({OTOYAMA2020}, "
                                             "Figure S3)")
    cafm_saturation_A: float = param(100e-9, unit="A", range=(1e-15, 1.0),
                                     source="current amplifier saturation, 1-100 nA [E]; 100 nA "
                                            "keeps well-connected charged NMC (~1e8 ohm at 2 V, "
                                            "20 nA) in range")
    iv_v_start_V: float = param(-2.0, unit="V", range=(-10.0, 10.0),
                                source=f"I-V sweep from -2 V ({OTOYAMA2020})")
    iv_v_end_V: float = param(2.0, unit="V", range=(-10.0, 10.0),
                              source=f"I-V sweep to +2 V ({OTOYAMA2020})")
    iv_rate_V_per_s: float = param(4.0, unit="V/s", range=(1e-6, 1e6),
                                   source=f"sweep rate 4 V/s ({OTOYAMA2020})")
    iv_samples: int = param(401, unit="", range=(2, 100000),
                            source="samples per sweep (10 mV steps) [A]")
    se_decomposition_onset_V: float = param(1.0, unit="V", range=(-10.0, 1.99),
                                            source=f"SE current ~0 from -2 to 1 V ({OTOYAMA2020}, "
                                                   "Figure S3)")
    se_decomposition_current_2V_A: float = param(1e-12, unit="A", range=(0.0, 1e-6),
                                                 source=f"SE oxidation current 1 pA at +2 V "
                                                        f"({OTOYAMA2020}, Figure S3)")

    # -- KPFM --------------------------------------------------------------------------------------
    kpfm_nmc_offset_V: float = param(
        0.93, unit="V", range=(-10.0, 10.0),
        source=f"(W_tip - W_NMC(x=0))/e, calibrated: raw pristine NMC V_CPD +0.93 V "
               f"({OTOYAMA2020}: V_CPD' 2.06-2.12 V minus V_OCV 1.16 V)")
    kpfm_beta: float = param(
        2.227, unit="1", range=(0.0, 10.0),
        source=f"Delta W_NMC = beta e Delta U; calibrated on the NMC shift only, raw V_CPD +0.93 V "
               f"-> -0.54 V ({OTOYAMA2020}): beta = 1.47 V / (U(0.59) - U(0)) with the "
               "placeholder U below (0.66 V)")
    ocp_u0_V: float = param(
        3.70, unit="V", range=(0.0, 6.0),
        source="placeholder NMC111 OCP U(x) = u0 + slope x vs Li: ~3.7 V at the start of charge "
               "(typical NMC111 curves, e.g. Noh et al., J. Power Sources 233, 121, 2013) [E]; "
               "replace by the charge module's U via ocp_V; esim reproduce sets it to the "
               "charge's U(0) = 3.60 V (esim.reproduce.kpfm_calibration)")
    ocp_slope_V: float = param(
        1.1186, unit="V", range=(0.0, 10.0),
        source=f"placeholder slope: U(0.59) = 4.36 V vs Li, the relaxed charged cell (3.74 V vs "
               f"In-Li + 0.62 V, {OTOYAMA2020}) [A]")
    kpfm_se_offset_V: float = param(
        1.9772, unit="V", range=(-10.0, 10.0),
        source=f"SE: V_CPD = offset - coupling V_OCV, through +1.06 V at 1.16 V and -0.98 V at "
               f"3.74 V ({OTOYAMA2020}), calibrated")
    kpfm_se_coupling: float = param(
        0.7907, unit="1", range=(0.0, 1.0),
        source="fraction of -V_OCV (the open negative side) that the SE's electric potential "
               f"follows; calibrated on the same two SE values ({OTOYAMA2020}) [A]")
    ocv_pristine_vs_inli_V: float = param(
        1.16, unit="V", range=(-10.0, 10.0),
        source=f"V_OCV of the as-made cell vs In-Li used for V_CPD' ({OTOYAMA2020}); an input, "
               "an as-made cell has no defined OCV")
    in_li_vs_li_V: float = param(0.62, unit="V", range=(0.0, 2.0),
                                 source="In-Li counter electrode vs Li+/Li, 0.62 V (two-phase "
                                        "plateau; materials_literature.md, Cell: [P], quoted in "
                                        "two sources it does not name); with it the paper's "
                                        f"3.74 V vs In-Li after the charge ({OTOYAMA2020}) is "
                                        "4.36 V vs Li")
    kpfm_apex_sigma_m: float = param(30e-9, unit="m", range=(1e-10, 1e-5),
                                     source="PSF apex term, tip radius tens of nm [E]")
    kpfm_cantilever_sigma_m: float = param(2e-6, unit="m", range=(1e-9, 1e-4),
                                           source="PSF cantilever term [E] (AM-KPFM, Cohen et al., "
                                                  "Nanotechnology 2013)")
    kpfm_cantilever_weight: float = param(0.3, unit="1", range=(0.0, 1.0),
                                          source="weight of the broad term, 0.1-0.5 in AM-KPFM [E]")
    kpfm_noise_V: float = param(10e-3, unit="V", range=(0.0, 1.0),
                                source="KPFM noise 10 mV rms, 5-20 mV typical [E]")
    kpfm_surroundings: str = param(
        "section", unit="", choices=("section", "mirror"),
        source="what the PSF sees beyond the window's edges: 'section' renders the milled "
               "section around the window (the composite laterally and towards the collector, "
               "the separator's glass beyond the electrode) as far as the PSF reaches; "
               "'mirror' reflects the window into itself (the first releases)")

    # -- SEM / EDX ---------------------------------------------------------------------------------
    sem_noise: float = param(0.03, unit="1", range=(0.0, 1.0),
                             source="SEM detector noise, rms in units of the NMC brightness (0.8) "
                                    "scale, a few % at usual dwell times [E]")
    edx_blur_m: float = param(1e-6, unit="m", range=(0.0, 1e-4),
                              source="X-ray generation volume ~1 um FWHM at 10-15 kV [E]")
    edx_counts: float = param(100.0, unit="counts", range=(0.0, 1e9),
                              source="expected counts of a pure-phase pixel [A]")

    seed: int = param(20200824, unit="", range=(0, 2**63 - 1),
                      source="seed of every noisy channel (numpy Generator) [A]")

    def __post_init__(self) -> None:
        from esim.params import _coerce

        for f in dataclasses.fields(self):
            _coerce("spm", f, getattr(self, f.name))
        heights = () if self.fov_z_anchor == "full" else (self.fov_height_m / self.pixels_z,)
        check_kpfm_psf_size(self, (self.fov_width_m / self.pixels_u, *heights))


#: Largest half-width of the KPFM point-spread function, px per axis.  The PSF is never cut
#: short (the weight of its far tail is what averages the far surroundings, and renormalising a
#: cut kernel hands that weight to the near field); a pixel this small against the PSF's reach
#: is refused instead of convolving a kernel of > 8193^2 entries.
KPFM_PSF_MAX_HALF_PX = 4096


def check_kpfm_psf_size(spm: "SPMParams", pixel_sizes_m) -> int:
    """The KPFM PSF's half-width in pixels (4 sigma of its broader term over the smallest of
    ``pixel_sizes_m``); raises InvalidParameters, naming the term that sets it, above
    :data:`KPFM_PSF_MAX_HALF_PX`.  Checked with the parameters (the field of view's pixels;
    ``fov_z_anchor = "full"``: with the electrode thickness, in esim.params) and again on the
    map."""
    from esim.errors import InvalidParameters

    cant = spm.kpfm_cantilever_weight > 0 and spm.kpfm_cantilever_sigma_m > spm.kpfm_apex_sigma_m
    reach = spm.kpfm_cantilever_sigma_m if cant else spm.kpfm_apex_sigma_m
    pixel = min(pixel_sizes_m)
    half = math.ceil(4.0 * reach / pixel)
    if half > KPFM_PSF_MAX_HALF_PX:
        name = "kpfm_cantilever_sigma_m" if cant else "kpfm_apex_sigma_m"
        raise InvalidParameters(
            f"spm.{name}: the KPFM point-spread function would be {half} px wide on each side "
            f"(4 x {reach:.3g} m over {pixel:.3g} m pixels; at most {KPFM_PSF_MAX_HALF_PX}): "
            "use larger pixels (fov_*_m / pixels_*)"
            + (" or set spm.kpfm_cantilever_weight = 0 (FM-KPFM)" if cant else ""))
    return half


def spm_params_of(params) -> SPMParams:
    """The :class:`SPMParams` of a Params, the section itself, or None (defaults)."""
    return section_of(params, SPMParams, "spm")
