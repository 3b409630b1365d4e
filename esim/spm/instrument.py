"""Instrument models of the virtual microscopes: what the probe and the electronics do to a map.

Everything here is a pure, vectorised function of arrays (no loops over pixels) or a frozen
dataclass of parameters.  The maps that go in are the "true" local quantities (path resistance,
current, surface potential, phase fraction); what comes out is what the instrument would display.

Models and their sources (tags as in ``/work/shared/reference/materials_literature.md``: [P] from
a paper, [E] an engineering estimate from typical instrument data, [A] an assumption of ours):

* **Tip spreading resistance** (SSRM and C-AFM): a flat isopotential disc of radius ``a`` on a
  half-space of resistivity ``rho`` gives ``R = rho / (4 a)`` (Maxwell 1891; Holm, *Electric
  Contacts*, Springer 1967) [E, classical], with an edge correction for a tip near the particle
  boundary (:func:`spreading_resistance`).
* **Tip contact** (:class:`TipContact`): effective electrical radius 10 nm (doped-diamond tips,
  5-20 nm, although the nominal radius is ~100 nm) [E]; a non-ohmic barrier
  ``I = I0 sinh(V_c / V0)`` (on by default, ``spm.nonohmic``) in series with the ohmic path
  (:func:`contact_current`).  The SSRM reading is ``bias / current`` from the same function, so
  a non-ohmic contact shows in SSRM and C-AFM consistently.
* **SSRM log amplifier** (:func:`log_amplifier`): 7 decades, ceiling 2.0e9 ohm (Otoyama et al.,
  Research Square preprint, 2020) [P]+[A]; log-normal noise.
* **C-AFM current amplifier** (:func:`current_amplifier`): Gaussian noise floor, clipping [E].
* **SE oxidative decomposition** (:func:`se_decomposition_current`): ~0 A up to +1 V, 1 pA at
  +2 V (Otoyama et al., Research Square preprint, 2020, Figure S3) [P].
* **KPFM**: the measured potential is a weighted average of the surface potential, a convolution
  with a point-spread function (Jacobs et al., J. Appl. Phys. 84, 1168, 1998; Cohen et al.,
  Nanotechnology 2013) [P], modelled as a sharp apex term plus a broad cantilever term
  (:func:`kpfm_psf`, :func:`blur`), with Gaussian noise (:func:`kpfm_noise`) [E].
* **SEM/EDX** (:func:`edx_map`, :func:`sem_image`, :func:`milling_topography`): interaction-volume
  blur with Poisson counting; phase contrast, edge brightening and tilt contrast ``1/cos(theta)``
  (Reimer, *Scanning Electron Microscopy*, Springer 1998) [P].

Randomness: every noisy function takes ``rng: numpy.random.Generator | int | None`` and calls
``np.random.default_rng(rng)``; the same seed gives the same map.  With the noise amplitude set
to zero no random number is drawn and the result is deterministic whatever ``rng`` is.

Examples
--------
>>> import numpy as np
>>> from esim.spm import instrument as ins
>>> r_path = np.array([[1e5, 1e12]])                       # ohm
>>> i = ins.contact_current(-2.0, r_path, ins.TipContact(nonohmic=False))  # A, ohmic
>>> ins.log_amplifier(-2.0 / i, noise_decades_sd=0.0, saturation_spread_decades=0.0, rng=0)
array([[1.01e+05, 2.00e+09]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import ndimage, signal, special

from esim.errors import InvalidParameters, SolverDidNotConverge
from esim.packing import PHASE_NMC, PHASE_SE, PORE

__all__ = [
    "SSRM_R_MAX_OHM", "SSRM_DECADES", "SSRM_R_MIN_OHM",
    "CAFM_NOISE_FLOOR_A", "CAFM_SATURATION_A", "KPFM_NOISE_SD_V",
    "TIP_NOMINAL_RADIUS_M", "DIAMOND_YOUNGS_MODULUS_PA", "DIAMOND_POISSON_RATIO",
    "TipContact", "spreading_resistance", "edge_correction", "resistivity_from_spreading",
    "contact_current", "apparent_resistance",
    "log_amplifier", "current_amplifier", "se_decomposition_current",
    "kpfm_psf", "blur", "blur_extended", "kpfm_noise", "kpfm_measure",
    "edx_map", "sem_image", "milling_topography",
]

# --- instrument defaults, each with its source ------------------------------------------------
SSRM_DECADES = 7.0
"""Usable range of the SSRM log amplifier, decades: "a wide measurement range of 7 orders of
magnitude" (Otoyama et al., Research Square preprint, 2020) [P]."""
SSRM_R_MAX_OHM = 2.0e9
"""Ceiling of the SSRM log amplifier, ohm.  Every pristine area, NMC and SE alike, reads
1.8-2.2e9 ohm in Otoyama et al., Research Square preprint, 2020 [P]; we read that as the top
of the usable range under the paper's settings, not as a material property [A]."""
SSRM_R_MIN_OHM = SSRM_R_MAX_OHM / 10.0**SSRM_DECADES
"""Floor of the SSRM log amplifier, ohm: ceiling / 1e7 = 200 ohm [A] (7 decades below the
ceiling; typical commercial log amplifiers span about 1e4 to 1e11-1e12 ohm [E])."""
SSRM_NOISE_DECADES_SD = 0.02
"""SSRM read noise, decades (log10 units) rms: 0.02 decades is about 5 % [E]."""
SSRM_SATURATION_SPREAD_DECADES = 0.02
"""Spread of a saturated SSRM reading about the ceiling, decades rms.  With 0.02, 95 % of
saturated pixels read 1.82-2.2e9 ohm, the band of the pristine maps of Otoyama et al.,
Research Square preprint, 2020 [P] (log10(2.2/2.0) = 0.041 = 2 sd)."""
CAFM_NOISE_FLOOR_A = 0.1e-12
"""C-AFM current noise floor, A rms: 0.05-1 pA rms for low-noise C-AFM amplifiers [E]."""
CAFM_SATURATION_A = 100e-9
"""C-AFM current amplifier saturation, A: 1-100 nA depending on gain [E]; 100 nA keeps
well-connected charged NMC (~1e8 ohm at 2 V, 20 nA) in range (``spm.cafm_saturation_A``)."""
KPFM_NOISE_SD_V = 10e-3
"""KPFM potential noise, V rms: 5-20 mV typical [E]."""

TIP_NOMINAL_RADIUS_M = 100e-9
"""Nominal radius of a doped-diamond-coated tip, m: about 100 nm [E]
(materials_literature.md, probe physics).  Not the electrical radius (``TipContact``); used
only to say what force a contact of a given radius takes (contact mechanics in the report)."""
DIAMOND_YOUNGS_MODULUS_PA = 1050e9
"""Young's modulus of diamond, Pa: ~1050 GPa (textbook) [E]."""
DIAMOND_POISSON_RATIO = 0.1
"""Poisson ratio of diamond: ~0.1 (textbook) [E]."""

_SQRT8LN2 = math.sqrt(8.0 * math.log(2.0))  # FWHM / sigma of a Gaussian


# --- input checking ----------------------------------------------------------------------------
def _array(x, name: str, *, ndim: int | None = None, positive: bool = False,
           nonneg: bool = False, allow_posinf: bool = False) -> np.ndarray:
    """``x`` as a float64 array after checking it; raises InvalidParameters naming ``name``."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameters(f"{name}: expected real numbers, got {type(x).__name__}") from exc
    if ndim is not None and a.ndim != ndim:
        raise InvalidParameters(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    if a.size == 0:
        raise InvalidParameters(f"{name}: empty array (zero pixels)")
    if np.isnan(a).any():
        raise InvalidParameters(f"{name}: contains NaN")
    if np.isneginf(a).any() or (not allow_posinf and np.isposinf(a).any()):
        raise InvalidParameters(f"{name}: contains infinite values"
                                + (" (only +inf is allowed)" if allow_posinf else ""))
    if positive and (a <= 0).any():
        raise InvalidParameters(f"{name}: must be > 0, min is {a.min()!r}")
    if nonneg and (a < 0).any():
        raise InvalidParameters(f"{name}: must be >= 0, min is {a.min()!r}")
    return a


def _scalar(x, name: str, *, positive: bool = False, nonneg: bool = False,
            allow_posinf: bool = False) -> float:
    """``x`` as a finite float after checking it; raises InvalidParameters naming ``name``."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise InvalidParameters(f"{name}: expected a real number, got {x!r}")
    v = float(x)
    if math.isnan(v) or v == -math.inf or (v == math.inf and not allow_posinf):
        raise InvalidParameters(f"{name}: must be finite, got {v!r}")
    if positive and not v > 0:
        raise InvalidParameters(f"{name}: must be > 0, got {v!r}")
    if nonneg and not v >= 0:
        raise InvalidParameters(f"{name}: must be >= 0, got {v!r}")
    return v


def _pixel_size(x, name: str = "pixel_size_m") -> float:
    return _scalar(x, name, positive=True)


def _pixel_sizes(x, name: str = "pixel_size_m") -> tuple[float, float]:
    """``(row, column)`` pixel sizes from one size (square pixels) or a pair ``(dy, dx)``."""
    if isinstance(x, (tuple, list, np.ndarray)):
        if len(x) != 2:
            raise InvalidParameters(f"{name}: one size or a pair (dy, dx), got {x!r}")
        return _pixel_size(x[0], name), _pixel_size(x[1], name)
    p = _pixel_size(x, name)
    return p, p


# --- tip contact and spreading resistance ------------------------------------------------------
def edge_correction(x):
    """Factor ``f(s/a)`` by which a nearby insulating edge raises the spreading resistance.

    ``f(x) = 1 + 1 / (1 + pi x)`` with ``x = s / a``, ``s`` the distance from the contact's
    centre to the particle edge and ``a`` the contact radius.

    * ``x = 0`` (centre on the edge): ``f = 2`` exactly.  A half-disc on a quarter-space
      reflected in the insulating wall is a full disc on a half-space carrying twice the current,
      so its resistance is ``2 rho / (4a)``.
    * ``x >> 1``: ``f -> 1 + 1 / (pi x)``, the method of images: an insulating wall at distance
      ``s`` acts as an equal source at ``2s``, which adds the far-field potential
      ``I rho / (2 pi 2s)`` to the disc's own ``I rho / (4a)``.
    * In between the formula is an interpolation between the two exact limits; it is monotone
      decreasing.  It is to be checked against a voxel solve.

    Parameters
    ----------
    x : array_like float64, 1
        Edge distance over contact radius, ``>= 0``; ``+inf`` means far from any edge.

    Returns
    -------
    f : ndarray float64, 1
        Correction factor in ``(1, 2]``; exactly 1 at ``x = inf``.
    """
    x = np.asarray(x, dtype=np.float64)
    return 1.0 + 1.0 / (1.0 + np.pi * x)


def spreading_resistance(rho_ohm_m, a_m, edge_distance_m=None):
    """Spreading (constriction) resistance of a tip contact into a particle.

    ``R = rho / (4 a) * f(s / a)``: Maxwell's / Holm's flat isopotential disc of radius ``a`` on a
    half-space of resistivity ``rho`` (Holm, *Electric Contacts*, Springer 1967) [E, classical],
    times the
    edge correction :func:`edge_correction` when the contact centre lies at distance ``s`` from
    the particle edge (an insulating wall perpendicular to the section plane) [A].

    Assumptions: the particle is much larger than ``a`` (micrometre particles, nanometre
    contacts), and its edge is locally a plane wall perpendicular to the surface; a cut sphere's
    wall is inclined, which the formula ignores.  Only the nearest edge counts.

    Parameters
    ----------
    rho_ohm_m : array_like float64, ohm m
        Resistivity under the tip, ``> 0``; ``+inf`` (insulator) gives ``R = inf``.
    a_m : array_like float64, m
        Effective electrical contact radius, ``> 0``.
    edge_distance_m : array_like float64, m, optional
        Distance from the contact centre to the particle edge, ``>= 0`` (``+inf`` allowed).
        ``None``: far from any edge.

    Returns
    -------
    R : ndarray float64, ohm
        Broadcast shape of the inputs.

    Examples
    --------
    >>> float(spreading_resistance(1.0, 10e-9))   # 1 ohm m under a 10 nm contact
    25000000.0
    >>> float(spreading_resistance(1.0, 10e-9, 0.0) / spreading_resistance(1.0, 10e-9))
    2.0
    """
    rho = _array(rho_ohm_m, "rho_ohm_m", positive=True, allow_posinf=True)
    a = _array(a_m, "a_m", positive=True)
    r = rho / (4.0 * a)
    if edge_distance_m is None:
        return r
    s = _array(edge_distance_m, "edge_distance_m", nonneg=True, allow_posinf=True)
    return r * edge_correction(s / a)


def resistivity_from_spreading(r_ohm, a_m):
    """Invert the flat-disc law: ``rho = 4 a R``, as it has been used to read SSRM maps of
    sulfide cathodes (materials_literature.md, probe physics) [S].

    Parameters
    ----------
    r_ohm : array_like float64, ohm
        Spreading resistance, ``> 0``.
    a_m : array_like float64, m
        Contact radius, ``> 0``.

    Returns
    -------
    rho : ndarray float64, ohm m
    """
    return 4.0 * _array(a_m, "a_m", positive=True) * _array(r_ohm, "r_ohm", positive=True,
                                                               allow_posinf=True)


@dataclass(frozen=True)
class TipContact:
    """The electrical tip-sample contact shared by SSRM and C-AFM.

    Attributes
    ----------
    radius_m : float, m
        Effective electrical contact radius ``a``.  Default 10 nm: doped-diamond tips conduct
        through a few asperities, 5-20 nm effective radius although the nominal tip radius is
        about 100 nm [E].
    r_instrument_ohm : float, ohm
        Series resistance of the instrument: tip body, cantilever coating, wiring.  Default
        1 kohm [E] (doped-diamond tips, 1-10 kohm).
    nonohmic : bool
        On (default, as ``spm.nonohmic``): a barrier at the contact obeys
        ``I = I0 sinh(V_c / V0)`` (symmetric back-to-back Schottky / Simmons-like tunnelling
        law) [A], in series with the ohmic path.  Off: the contact is ohmic, ``I = V / R``.
    barrier_v0_V : float, V
        Voltage scale ``V0`` of the sinh law.  Default 0.25 V [A].
    barrier_r0_ohm : float, ohm
        Zero-bias differential resistance of the barrier, ``V0 / I0``.  Default 1e8 ohm [A]:
        at the paper's 2 V the barrier then passes up to ``I0 sinh(8)`` = 3.7 uA, so it shows
        only on well-conducting paths.
    """

    radius_m: float = 10e-9
    r_instrument_ohm: float = 1e3
    nonohmic: bool = True
    barrier_v0_V: float = 0.25
    barrier_r0_ohm: float = 1e8

    def __post_init__(self):
        _scalar(self.radius_m, "TipContact.radius_m", positive=True)
        _scalar(self.r_instrument_ohm, "TipContact.r_instrument_ohm", nonneg=True)
        if not isinstance(self.nonohmic, (bool, np.bool_)):
            raise InvalidParameters(f"TipContact.nonohmic: expected a bool, got {self.nonohmic!r}")
        _scalar(self.barrier_v0_V, "TipContact.barrier_v0_V", positive=True)
        _scalar(self.barrier_r0_ohm, "TipContact.barrier_r0_ohm", positive=True)

    @property
    def barrier_i0_A(self) -> float:
        """``I0 = V0 / R0``, A: the current scale of the sinh law."""
        return self.barrier_v0_V / self.barrier_r0_ohm

    def spreading_resistance(self, rho_ohm_m, edge_distance_m=None):
        """:func:`spreading_resistance` with this tip's radius; ohm."""
        return spreading_resistance(rho_ohm_m, self.radius_m, edge_distance_m)


_NEWTON_MAX_ITER = 200
_NEWTON_RTOL = 1e-13


def _sinh_barrier_kernel(v: np.ndarray, r: np.ndarray, v0: float, i0: float) -> np.ndarray:
    """Solve ``V0 asinh(I / I0) + I R = V`` for ``I`` (1-D arrays, ``v > 0``, finite ``r >= 0``).

    Safeguarded Newton: the residual is increasing in ``I`` and the root lies in
    ``[0, min(V / R, I0 sinh(V / V0))]``; a Newton step that leaves the bracket is replaced by
    bisection, so the iteration always converges.
    """
    with np.errstate(divide="ignore", over="ignore"):
        hi = np.minimum(np.where(r > 0, v / r, np.inf), i0 * np.sinh(np.minimum(v / v0, 700.0)))
    lo = np.zeros_like(v)
    x = 0.5 * hi
    for _ in range(_NEWTON_MAX_ITER):
        f = v0 * np.arcsinh(x / i0) + x * r - v
        lo = np.where(f < 0, x, lo)
        hi = np.where(f > 0, x, hi)
        fp = v0 / np.hypot(i0, x) + r
        x_new = x - f / fp
        out = ~((x_new > lo) & (x_new < hi))
        x_new = np.where(out, 0.5 * (lo + hi), x_new)
        done = np.abs(x_new - x) <= _NEWTON_RTOL * x_new
        x = x_new
        if done.all():
            break
    resid = np.abs(v0 * np.arcsinh(x / i0) + x * r - v)
    if not (resid <= 1e-9 * v).all():
        raise SolverDidNotConverge(
            f"contact_current: sinh-barrier solve left a relative residual "
            f"{float((resid / v).max()):.3g} after {_NEWTON_MAX_ITER} iterations")
    return x


def contact_current(v_bias_V, r_series_ohm, contact: TipContact | None = None):
    """Current through the tip for a bias and an ohmic path resistance (SSRM and C-AFM).

    Ohmic contact (``contact.nonohmic`` False)::

        I = V / (R_series + R_instrument)

    exactly.  Non-ohmic contact: the barrier voltage ``V_c`` and the ohmic drop share the bias,
    ``V = V_c + I (R_series + R_instrument)`` with ``I = I0 sinh(V_c / V0)``; the current is
    found by a vectorised safeguarded Newton solve on ``V0 asinh(I / I0) + I R = V``.  The law is
    odd in ``V``, so ``I(-V) = -I(V)``.

    Parameters
    ----------
    v_bias_V : array_like float64, V
        Sample bias (tip grounded); scalar or map.
    r_series_ohm : array_like float64, ohm
        Ohmic path resistance at each pixel: spreading + network path + back contact, ``> 0``;
        ``+inf`` (no conducting path) gives zero current.
    contact : TipContact, optional
        Default ``TipContact()`` (with the barrier, 1 kohm instrument resistance).

    Returns
    -------
    I : ndarray float64, A
        Broadcast shape of the inputs; same sign as the bias.

    Raises
    ------
    InvalidParameters
        NaN, infinite bias, or a path resistance that is not ``> 0``.
    SolverDidNotConverge
        The non-ohmic solve failed (not expected: the solve is bracketed).
    """
    contact = TipContact() if contact is None else contact
    if not isinstance(contact, TipContact):
        raise InvalidParameters(f"contact: expected a TipContact, got {type(contact).__name__}")
    v = _array(v_bias_V, "v_bias_V")
    r = _array(r_series_ohm, "r_series_ohm", positive=True, allow_posinf=True)
    v, r = np.broadcast_arrays(v, r)
    r_tot = r + contact.r_instrument_ohm
    if not contact.nonohmic:
        return v / r_tot
    i = np.zeros(v.shape)
    active = np.isfinite(r_tot) & (v != 0)
    va = np.abs(v[active])
    i[active] = np.sign(v[active]) * _sinh_barrier_kernel(
        va, r_tot[active], contact.barrier_v0_V, contact.barrier_i0_A)
    return i


def apparent_resistance(v_bias_V, r_series_ohm, contact: TipContact | None = None):
    """What SSRM measures before its amplifier: bias / current, ohm.

    ``R_app = V / contact_current(V, R_series, contact)``: the same contact model as C-AFM, so a
    non-ohmic barrier shows in both.  An ohmic contact gives ``R_series + R_instrument``; a pixel
    with no current (``R_series = inf``) gives ``inf``, which the log amplifier saturates.

    Parameters
    ----------
    v_bias_V : array_like float64, V
        Sample bias, nonzero (-2 V in Otoyama et al., Research Square preprint, 2020).
    r_series_ohm : array_like float64, ohm
        Ohmic path resistance, ``> 0`` (``+inf`` allowed).
    contact : TipContact, optional

    Returns
    -------
    R_app : ndarray float64, ohm
        Broadcast shape, ``> 0``.
    """
    v = _array(v_bias_V, "v_bias_V")
    if (v == 0).any():
        raise InvalidParameters("v_bias_V: SSRM needs a nonzero bias")
    i = contact_current(v, r_series_ohm, contact)
    with np.errstate(divide="ignore"):
        return v / i


# --- amplifiers --------------------------------------------------------------------------------
def log_amplifier(resistance_ohm, *, r_min_ohm: float = SSRM_R_MIN_OHM,
                  r_max_ohm: float = SSRM_R_MAX_OHM,
                  noise_decades_sd: float = SSRM_NOISE_DECADES_SD,
                  saturation_spread_decades: float = SSRM_SATURATION_SPREAD_DECADES,
                  rng: np.random.Generator | int | None = None):
    """SSRM logarithmic amplifier: log-normal noise, then saturation at both ends.

    In ``y = log10(R)``::

        y1 = y + N(0, noise_decades_sd)                     read noise, log-normal in R
        y2 = clip(y1, log10(r_min), log10(r_max))           saturation
        y3 = y2 + N(0, saturation_spread_decades)  only where y1 was clipped

    The saturated output is not perfectly flat on a real instrument: the pristine maps of
    Otoyama et al. (Research Square preprint, 2020) read 1.8-2.2e9 ohm everywhere, which we
    model as a ceiling of 2.0e9 ohm with a 0.02-decade spread.  Set both spreads to 0 for the
    noise-free amplifier: identity in range, exactly ``r_max`` / ``r_min`` outside.

    Parameters
    ----------
    resistance_ohm : array_like float64, ohm
        True apparent resistance, ``>= 0``; ``+inf`` reads the ceiling, 0 the floor.
    r_min_ohm, r_max_ohm : float, ohm
        Floor and ceiling.  Defaults 200 ohm and 2.0e9 ohm: 7 decades ("a wide measurement range
        of 7 orders of magnitude", Otoyama et al., Research Square preprint, 2020) below the
        ceiling read from the same paper (see :data:`SSRM_R_MAX_OHM`).
    noise_decades_sd : float, decades
        Read noise in log10 units, rms.  Default 0.02 [E].
    saturation_spread_decades : float, decades
        Spread of saturated readings, rms.  Default 0.02 [P]+[A].
    rng : numpy.random.Generator | int | None
        Random source; unused when both spreads are 0.

    Returns
    -------
    measured : ndarray float64, ohm
        Same shape as ``resistance_ohm``.
    """
    r = _array(resistance_ohm, "resistance_ohm", nonneg=True, allow_posinf=True)
    lo = _scalar(r_min_ohm, "r_min_ohm", positive=True)
    hi = _scalar(r_max_ohm, "r_max_ohm", positive=True)
    if not hi > lo:
        raise InvalidParameters(f"r_max_ohm ({hi!r}) must exceed r_min_ohm ({lo!r})")
    sd = _scalar(noise_decades_sd, "noise_decades_sd", nonneg=True)
    sd_sat = _scalar(saturation_spread_decades, "saturation_spread_decades", nonneg=True)
    # log10 of a clamped copy: 0 and inf stay far outside the range without warnings
    y = np.log10(np.clip(r, lo * 1e-30, hi * 1e30))
    gen = np.random.default_rng(rng) if (sd > 0 or sd_sat > 0) else None
    if sd > 0:
        y = y + gen.normal(0.0, sd, size=y.shape)
    ylo, yhi = math.log10(lo), math.log10(hi)
    saturated = (y >= yhi) | (y <= ylo)
    out = np.clip(y, ylo, yhi)
    if sd_sat > 0:
        out = out + np.where(saturated, gen.normal(0.0, sd_sat, size=y.shape), 0.0)
    measured = 10.0**out
    # exact in range and at the rails when noise-free: 10**log10(R) may differ from R by an ulp
    if sd == 0:
        measured = np.where(saturated, measured, r)
    if sd_sat == 0:
        measured = np.where(y >= yhi, hi, np.where(y <= ylo, lo, measured))
    return measured


def current_amplifier(current_A, *, noise_floor_A: float = CAFM_NOISE_FLOOR_A,
                      saturation_A: float = CAFM_SATURATION_A,
                      rng: np.random.Generator | int | None = None):
    """C-AFM linear current amplifier: additive Gaussian noise, then clipping at ``±saturation``.

    ``I_meas = clip(I + N(0, noise_floor_A), -saturation_A, +saturation_A)``.

    The noise floor (default 0.1 pA rms, 0.05-1 pA typical [E]) is a different limit from the
    detection statement of Otoyama et al. (Research Square preprint, 2020): "-2 V was suitable
    for detecting small currents (10 pA)", i.e. a C-AFM floor of 2 V / 10 pA = 2e11 ohm, far
    above the SSRM ceiling of about 2e9 ohm.

    Parameters
    ----------
    current_A : array_like float64, A
        True current (finite).
    noise_floor_A : float, A
        Noise rms, ``>= 0``; 0 gives a deterministic amplifier.
    saturation_A : float, A
        Output clips at this magnitude.  Default 100 nA (1-100 nA depending on gain [E];
        ``spm.cafm_saturation_A``).
    rng : numpy.random.Generator | int | None

    Returns
    -------
    measured : ndarray float64, A
        Same shape as ``current_A``.
    """
    i = _array(current_A, "current_A")
    sd = _scalar(noise_floor_A, "noise_floor_A", nonneg=True)
    sat = _scalar(saturation_A, "saturation_A", positive=True)
    if sd > 0:
        i = i + np.random.default_rng(rng).normal(0.0, sd, size=i.shape)
    return np.clip(i, -sat, sat)


def se_decomposition_current(v_V, *, onset_V: float = 1.0, current_at_2V_A: float = 1e-12,
                             e_fold_V: float = 0.25):
    """Oxidative decomposition current of the Li3PS4 glass under the C-AFM tip.

    Otoyama et al. (Research Square preprint, 2020, Figure S3) [P]: "almost zero current" from
    -2 to +1 V, gradually increasing to about 1 pA at +2 V.  Model: an exponential (Tafel-like)
    onset above ``onset_V``, zero below it::

        I(V) = I_2 (exp((V - V_on) / b) - 1) / (exp((2 V - V_on) / b) - 1)   for V > V_on
        I(V) = 0                                                                otherwise

    which is continuous at ``V_on``, increasing, and passes ``I_2`` at exactly 2 V.  The
    e-folding voltage ``b = 0.25 V`` [A] gives 0.12 pA at 1.5 V ("gradually").  The reductive
    side is taken as zero over the paper's sweep (-2 V).

    Parameters
    ----------
    v_V : array_like float64, V
        Sample bias.
    onset_V : float, V
        Onset voltage, ``< 2``.  Default 1.0 V [P].
    current_at_2V_A : float, A
        Current at +2 V.  Default 1e-12 A [P].
    e_fold_V : float, V
        Exponential voltage scale ``b``, ``> 0``.

    Returns
    -------
    I : ndarray float64, A
        Same shape as ``v_V``, ``>= 0``.
    """
    v = _array(v_V, "v_V")
    von = _scalar(onset_V, "onset_V")
    if not von < 2.0:
        raise InvalidParameters(f"onset_V must be < 2 V (the current is pinned at 2 V), got {von}")
    i2 = _scalar(current_at_2V_A, "current_at_2V_A", nonneg=True)
    b = _scalar(e_fold_V, "e_fold_V", positive=True)
    x = np.clip((v - von) / b, 0.0, 700.0)  # 700: no overflow; exp(700) is far beyond any sweep
    return i2 * np.expm1(x) / math.expm1((2.0 - von) / b)


# --- KPFM ----------------------------------------------------------------------------------------
def _gauss_weights_1d(half: int, pixel: float, sigma: float) -> np.ndarray:
    """Pixel-integrated 1-D Gaussian weights on ``-half..half``, normalised to sum 1."""
    edges = (np.arange(-half, half + 2) - 0.5) * pixel / (sigma * math.sqrt(2.0))
    w = np.diff(special.erf(edges))
    return w / w.sum()


def kpfm_psf(pixel_size_m: float | tuple[float, float], radius_px: int | None = None, *,
             apex_sigma_m: float = 30e-9, cantilever_sigma_m: float = 2e-6,
             cantilever_weight: float = 0.3):
    """KPFM point-spread function: a sharp apex term plus a broad cantilever term.

    ``h = (1 - w) G(sigma_apex) + w G(sigma_cantilever)``, each Gaussian integrated over the
    pixel area (so a term narrower than a pixel tends to a delta, not to zero) and normalised
    on the truncated grid; the total is renormalised so ``h.sum() == 1`` to rounding.

    The measured potential is a weighted average of the surface potential (Jacobs et al., J.
    Appl. Phys. 84, 1168, 1998) [P]; the weights go as dC/dz in amplitude-modulation KPFM, which
    averages strongly through the cantilever, and as d2C/dz2 in frequency-modulation KPFM, which
    barely does (Cohen et al., Nanotechnology 2013) [P].  Weights of the broad term of 0.1-0.5
    are typical of AM-KPFM [E]; use ``cantilever_weight=0`` for FM-KPFM.  A computed (Strassburg
    et al., Rev. Sci. Instrum. 76, 083705, 2005) or measured PSF can be passed to :func:`blur`
    instead.

    Parameters
    ----------
    pixel_size_m : float or (float, float), m
        Pixel size of the map to blur, ``> 0``: one size, or ``(dy, dx)`` for non-square
        pixels (the Gaussians are isotropic in metres, so their widths in pixels differ).
    radius_px : int, optional
        Half-width of the kernel in pixels along both axes; shape ``(2 r + 1, 2 r + 1)``.
        Default ``ceil(4 max(sigma) / pixel)`` per axis, at least 1.
    apex_sigma_m : float, m
        Standard deviation of the apex term.  Default 30 nm [E] (tip radius tens of nm).
    cantilever_sigma_m : float, m
        Standard deviation of the cantilever term.  Default 2 um [E].
    cantilever_weight : float, 1
        Weight of the cantilever term, in ``[0, 1]``.  Default 0.3 [E].

    Returns
    -------
    psf : (2 ry + 1, 2 rx + 1) float64, 1
        Symmetric, non-negative, sums to 1.

    Examples
    --------
    >>> psf = kpfm_psf(50e-9, 20)
    >>> psf.shape, round(float(psf.sum()), 12)
    ((41, 41), 1.0)
    """
    py, px = _pixel_sizes(pixel_size_m)
    s_apex = _scalar(apex_sigma_m, "apex_sigma_m", positive=True)
    s_cant = _scalar(cantilever_sigma_m, "cantilever_sigma_m", positive=True)
    w = _scalar(cantilever_weight, "cantilever_weight", nonneg=True)
    if w > 1:
        raise InvalidParameters(f"cantilever_weight must be in [0, 1], got {w}")
    if radius_px is None:
        reach = max(s_apex, s_cant if w > 0 else 0.0)
        hy, hx = (max(1, math.ceil(4.0 * reach / q)) for q in (py, px))
    else:
        if isinstance(radius_px, bool) or not isinstance(radius_px, (int, np.integer)):
            raise InvalidParameters(f"radius_px: expected an int, got {radius_px!r}")
        hy = hx = int(radius_px)
        if hy < 0:
            raise InvalidParameters(f"radius_px must be >= 0, got {hy}")
    psf = ((1.0 - w) * np.outer(_gauss_weights_1d(hy, py, s_apex),
                                _gauss_weights_1d(hx, px, s_apex))
           + w * np.outer(_gauss_weights_1d(hy, py, s_cant), _gauss_weights_1d(hx, px, s_cant)))
    return psf / psf.sum()


def _check_psf(psf) -> np.ndarray:
    k = _array(psf, "psf", ndim=2)
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise InvalidParameters(f"psf: needs odd dimensions (a centre pixel), got shape {k.shape}")
    total = k.sum()
    if not total > 0:
        raise InvalidParameters(f"psf: must have a positive sum, got {total!r}")
    return k / total


def blur(map_, psf):
    """Convolve a map with a point-spread function; the output has the map's shape.

    The map is extended by half-sample symmetric reflection (``numpy.pad(mode="symmetric")``),
    then convolved by FFT (``scipy.signal.fftconvolve``, ``mode="valid"``).  With the PSF
    normalised to sum 1 (done here, so a measured PSF may come unnormalised):

    * a uniform map stays uniform (to rounding);
    * the map's mean is kept exactly (to rounding) for a point-symmetric PSF, because the
      pixels a shift pushes out of one side are mirrored back on the same side.  An asymmetric
      measured PSF keeps the mean only approximately near the borders.

    Parameters
    ----------
    map_ : (ny, nx) array_like float64, any unit
        Finite map.
    psf : (ky, kx) array_like float64, 1
        Odd dimensions, centre at ``(ky // 2, kx // 2)``, positive sum (it is normalised).  It may
        be larger than the map.

    Returns
    -------
    blurred : (ny, nx) ndarray float64, unit of ``map_``
    """
    m = _array(map_, "map_", ndim=2)
    k = _check_psf(psf)
    py, px = k.shape[0] // 2, k.shape[1] // 2
    return blur_extended(np.pad(m, ((py, py), (px, px)), mode="symmetric"), k)


def blur_extended(extended_map, psf):
    """Convolve a map given with its surroundings: the PSF's half-widths of extra rows and
    columns on every side (what the probe sees beyond the window).  The output is the window,
    ``(ny - 2 (ky // 2), nx - 2 (kx // 2))`` (``scipy.signal.fftconvolve``, ``mode="valid"``).

    Parameters
    ----------
    extended_map : (ny, nx) array_like float64, any unit
        Finite map of the window and its surroundings.
    psf : (ky, kx) array_like float64, 1
        Odd dimensions, positive sum (it is normalised); at most the extended map's size.

    Returns
    -------
    blurred : ndarray float64, unit of ``extended_map``
    """
    m = _array(extended_map, "extended_map", ndim=2)
    k = _check_psf(psf)
    if k.shape[0] > m.shape[0] or k.shape[1] > m.shape[1]:
        raise InvalidParameters(f"psf: shape {k.shape} is larger than the extended map "
                                f"{m.shape}")
    return signal.fftconvolve(m, k, mode="valid")


def kpfm_noise(potential_V, *, noise_sd_V: float = KPFM_NOISE_SD_V,
               rng: np.random.Generator | int | None = None):
    """Add Gaussian KPFM read noise: ``V + N(0, noise_sd_V)``.

    Parameters
    ----------
    potential_V : array_like float64, V
    noise_sd_V : float, V
        Noise rms, ``>= 0``.  Default 10 mV (5-20 mV typical [E]); 0 returns a copy.
    rng : numpy.random.Generator | int | None

    Returns
    -------
    noisy : ndarray float64, V
        Same shape as ``potential_V``.
    """
    v = _array(potential_V, "potential_V")
    sd = _scalar(noise_sd_V, "noise_sd_V", nonneg=True)
    if sd == 0:
        return v.copy()
    return v + np.random.default_rng(rng).normal(0.0, sd, size=v.shape)


def kpfm_measure(surface_potential_V, *, pixel_size_m: float | tuple[float, float], psf=None,
                 noise_sd_V: float = KPFM_NOISE_SD_V,
                 rng: np.random.Generator | int | None = None):
    """The KPFM map a microscopist sees: PSF blur of the surface potential, then noise.

    Parameters
    ----------
    surface_potential_V : (ny, nx) array_like float64, V
        Local contact potential difference ``V_CPD'`` at each pixel.
    pixel_size_m : float or (float, float), m
        One size, or ``(dy, dx)``.
    psf : (ky, kx) array_like float64, optional
        Default ``kpfm_psf(pixel_size_m)``; a measured or computed PSF may be given.
    noise_sd_V : float, V
    rng : numpy.random.Generator | int | None

    Returns
    -------
    measured : (ny, nx) ndarray float64, V
    """
    p = _pixel_sizes(pixel_size_m)
    kernel = kpfm_psf(p) if psf is None else psf
    return kpfm_noise(blur(surface_potential_V, kernel), noise_sd_V=noise_sd_V, rng=rng)


# --- SEM / EDX -----------------------------------------------------------------------------------
def edx_map(phase_fraction_map, *, pixel_size_m: float | tuple[float, float],
            blur_m: float = 1e-6,
            counts_per_pixel: float = 100.0, poisson: bool = True,
            rng: np.random.Generator | int | None = None):
    """EDX elemental map of one phase: interaction-volume blur, then Poisson counting.

    ``counts = Poisson(counts_per_pixel * G_sigma * f)``, with ``f`` the local fraction of the
    phase that carries the element (e.g. Ni for NMC, S or P for the SE) and ``G_sigma`` a
    Gaussian of FWHM ``blur_m`` (``sigma = FWHM / 2.355``), applied with half-sample reflection at
    the borders (``scipy.ndimage.gaussian_filter(mode="reflect")``).  The X-ray generation volume
    of a 10-15 kV beam in these oxides and sulfides is about 1 um across [E].

    Parameters
    ----------
    phase_fraction_map : (ny, nx) array_like float64, 1
        Fraction of the element-bearing phase at each pixel, in ``[0, 1]``.
    pixel_size_m : float or (float, float), m
        One size, or ``(dy, dx)``.
    blur_m : float, m
        FWHM of the lateral excitation distribution, ``>= 0``.  Default 1 um [E].
    counts_per_pixel : float, counts
        Expected counts of a pixel of pure phase, ``>= 0``.
    poisson : bool
        False: return the expected counts (noise-free, deterministic).
    rng : numpy.random.Generator | int | None

    Returns
    -------
    counts : (ny, nx) ndarray float64, counts
        Integers stored as float64 when ``poisson``; the expected counts otherwise.
    """
    f = _array(phase_fraction_map, "phase_fraction_map", ndim=2, nonneg=True)
    if (f > 1).any():
        raise InvalidParameters(f"phase_fraction_map: must be in [0, 1], max is {f.max()!r}")
    py, px = _pixel_sizes(pixel_size_m)
    fwhm = _scalar(blur_m, "blur_m", nonneg=True)
    n = _scalar(counts_per_pixel, "counts_per_pixel", nonneg=True)
    sigma_px = (fwhm / _SQRT8LN2 / py, fwhm / _SQRT8LN2 / px)
    expected = n * (ndimage.gaussian_filter(f, sigma_px, mode="reflect") if fwhm > 0 else f)
    expected = np.clip(expected, 0.0, None)  # filter rounding can give -1e-17
    if not poisson:
        return expected
    return np.random.default_rng(rng).poisson(expected).astype(np.float64)


SEM_PHASE_BRIGHTNESS: Mapping[int, float] = {PORE: 0.05, PHASE_SE: 0.35, PHASE_NMC: 0.8}
"""Default SEM brightness of each phase label, 1: NMC (Ni, Mn, Co; high mean Z) brighter than the
Li3PS4 glass, pores dark [A] (BSE yield rises with mean atomic number, Reimer 1998)."""
MILLING_RECESS_M: Mapping[int, float] = {PHASE_NMC: 0.0, PHASE_SE: 30e-9, PORE: 100e-9}
"""Default depth of each phase below the NMC after Ar-ion cross-section milling, m [A]: the soft
sulfide glass mills faster than the hard oxide, so it sits lower; pores are deeper still."""


def _phase_lookup(phase_map: np.ndarray, table: Mapping[int, float], name: str) -> np.ndarray:
    labels = np.unique(phase_map)
    missing = [int(x) for x in labels if int(x) not in table]
    if missing:
        raise InvalidParameters(f"{name}: no value for phase label(s) {missing}; "
                                f"known labels are {sorted(table)}")
    keys = np.array(sorted(table), dtype=np.int64)
    vals = np.array([float(table[k]) for k in keys])
    return vals[np.searchsorted(keys, phase_map)]


def _phase_labels(phase_map) -> np.ndarray:
    a = np.asarray(phase_map)
    if a.ndim != 2:
        raise InvalidParameters(f"phase_map: expected a 2-D array, got shape {a.shape}")
    if a.size == 0:
        raise InvalidParameters("phase_map: empty array (zero pixels)")
    if not np.issubdtype(a.dtype, np.integer):
        raise InvalidParameters(f"phase_map: expected integer phase labels, got dtype {a.dtype}")
    return a.astype(np.int64)


def milling_topography(phase_map, *, pixel_size_m: float | tuple[float, float],
                       recess_m: Mapping[int, float] | None = None,
                       smooth_m: float = 50e-9):
    """Height map of an ion-milled cross-section, m (0 at the NMC surface, negative below).

    Each phase sits ``recess_m[label]`` below the NMC because the soft Li3PS4 glass mills faster
    than the hard NMC [A]; the steps are smoothed by a Gaussian of standard deviation
    ``smooth_m`` so the walls have finite slopes.

    Parameters
    ----------
    phase_map : (ny, nx) int
        Phase labels (``esim.packing.PORE``, ``PHASE_NMC``, ``PHASE_SE``).
    pixel_size_m : float or (float, float), m
        One size, or ``(dy, dx)``.
    recess_m : mapping int -> float, m, optional
        Depth of each label; default :data:`MILLING_RECESS_M`.
    smooth_m : float, m
        Wall smoothing, ``>= 0``.

    Returns
    -------
    height : (ny, nx) ndarray float64, m
    """
    labels = _phase_labels(phase_map)
    py, px = _pixel_sizes(pixel_size_m)
    s = _scalar(smooth_m, "smooth_m", nonneg=True)
    h = -_phase_lookup(labels, MILLING_RECESS_M if recess_m is None else recess_m, "recess_m")
    return ndimage.gaussian_filter(h, (s / py, s / px), mode="reflect") if s > 0 else h


def sem_image(phase_map, edges: bool = True, topography=None, *,
              pixel_size_m: float | tuple[float, float] | None = None,
              brightness: Mapping[int, float] | None = None, edge_gain: float = 0.5):
    """Synthetic SEM image of a phase map: phase contrast, edge brightening, tilt contrast.

    ``S = c(phase) * sqrt(1 + |grad h|^2) + edge_gain * |Sobel(c)| / 4``

    * ``c(phase)``: brightness of each phase (:data:`SEM_PHASE_BRIGHTNESS`).
    * Tilt contrast: the secondary-electron yield goes as ``1 / cos(theta)`` of the local surface
      tilt (Reimer, *Scanning Electron Microscopy*, Springer 1998) [P], and
      ``1 / cos(theta) = sqrt(1 + |grad h|^2)`` for a height map ``h``.
    * Edge effect: electrons escape through the side walls at phase boundaries, which appear
      bright; modelled as the Sobel gradient magnitude of ``c`` (divided by 4, so a unit step
      gives 1) [A].

    Parameters
    ----------
    phase_map : (ny, nx) int
        Phase labels.
    edges : bool
        Add the edge brightening.
    topography : (ny, nx) array_like float64, m, optional
        Surface height (e.g. :func:`milling_topography`); needs ``pixel_size_m``.
    pixel_size_m : float or (float, float), m, optional
        Needed only with ``topography``; one size, or ``(dy, dx)``.
    brightness : mapping int -> float, 1, optional
        Brightness of each label; default :data:`SEM_PHASE_BRIGHTNESS`.
    edge_gain : float, 1
        Weight of the edge term, ``>= 0``.

    Returns
    -------
    image : (ny, nx) ndarray float64, arbitrary brightness units (about 0-1)
    """
    labels = _phase_labels(phase_map)
    c = _phase_lookup(labels, SEM_PHASE_BRIGHTNESS if brightness is None else brightness,
                      "brightness")
    img = c.copy()
    if topography is not None:
        if pixel_size_m is None:
            raise InvalidParameters("pixel_size_m: needed to turn topography into slopes")
        py, px = _pixel_sizes(pixel_size_m)
        h = _array(topography, "topography", ndim=2)
        if h.shape != labels.shape:
            raise InvalidParameters(f"topography: shape {h.shape} differs from phase_map "
                                    f"{labels.shape}")
        gy, gx = np.gradient(h, py, px)
        img = img * np.sqrt(1.0 + gx * gx + gy * gy)
    if edges:
        g = _scalar(edge_gain, "edge_gain", nonneg=True)
        sx = ndimage.sobel(c, axis=1, mode="nearest")
        sy = ndimage.sobel(c, axis=0, mode="nearest")
        img = img + g * np.hypot(sx, sy) / 4.0
    return img
