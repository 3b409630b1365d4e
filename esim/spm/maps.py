"""The maps a microscopist measures on the milled cross-section: SSRM, C-AFM, KPFM, SEM, EDX.

:func:`simulate_spm` takes the electrode state as plain inputs (per-particle SOC, optional OCP
and floating potentials, the cell OCV), so it images the pristine electrode (uniform SOC 0) and
any charged state.  Reference experiment: Otoyama et al., Research Square preprint (2020), doi
10.21203/rs.3.rs-57856/v1 ("Otoyama 2020").

Models
------
**Network.**  The electron network of the half-space behind the face, its contacts milled
(:func:`esim.spm.section.milled_network`), current collector grounded.  One sparse LU factorisation
serves all particles in the window: the unit-injection solve ``A x = e_p`` gives the particle's
resistance to ground ``R_p = x_p`` (the same number as :func:`esim.solver.resistance_to_terminal`)
and every edge's voltage drop for that injection.

**Connection class** (NMC particles; SE pixels get :data:`CLASS_ELECTROLYTE`):

* ``CLASS_ISOLATED``: no path to the current collector through NMC-NMC and NMC-collector
  contacts (the electronic skeleton) in the intact electrode, so it takes no part in the charge;
  its only route is through the glass (1e-9 S/cm, so ``R_p`` > 1e11 ohm and its SSRM reading
  sits at the ceiling);
* ``CLASS_CUT_OFF``: connected in the intact electrode (it charged), but its section kept no
  skeleton path: the milling took away the part of the particle that held its contacts (a
  section whose centre lay beyond the plane keeps only the contacts on its remaining cap).  It
  reads like an isolated particle, yet it charged;
* ``CLASS_POINT_CONTACT``: connected, but one particle-particle edge dissipates more than
  ``point_contact_share`` (0.5) of the path's power: ``max_e g_e (x_i - x_j)^2 / x_p > 0.5``
  for the unit injection at ``p`` (with ``R_p = x_p``), i.e. most of its path resistance sits
  in one contact with another particle, the one whose widening would lower the reading most
  (the share is ``d ln R_p / d ln R_e``; :func:`network_paths`).  A particle whose limiting edge
  is its own contact with the current collector is counted as connected (the paper's point
  contacts are "with other NMC particles");
* ``CLASS_CONNECTED``: the others.

**SSRM.**  At each pixel over a particle, the ohmic series path is
``R_series = R_tip + R_p`` with ``R_tip = rho_p / (4 a) f(s / a)``
(:func:`esim.spm.instrument.spreading_resistance`: tip radius ``a``, distance ``s`` from the pixel
to the particle's section edge, ``rho_p`` from its SOC).  The current at the bias is
``I = contact_current(V, R_series, TipContact)`` (which adds the instrument resistance and the
optional non-ohmic barrier) plus, on SE, the decomposition current at ``V`` (zero at -2 V);
SSRM reads ``V / I`` through the log amplifier (ceiling ~2e9 ohm, 7 decades, log-normal noise).
Pores carry no current and read the ceiling.  SSRM and C-AFM use this one current, so
``SSRM = V / I_CAFM`` wherever neither amplifier saturates.

**C-AFM.**  The same current ``I`` through the linear current amplifier (noise floor, clipping).
I-V curves at chosen pixels sweep ``V`` from -2 to +2 V at 4 V/s; the displacement current of the
tip capacitance (~1e-15 F x 4 V/s = 4 fA) is neglected [A].

**KPFM** (positive electrode grounded through the holder, negative side open, at rest).  Every
NMC particle electronically connected to the current collector sits at the holder's Fermi level,
so its contrast is the work function: ``V_CPD = (W_tip - W_NMC(x)) / e`` with
``W_NMC(x) = W_NMC(0) + beta e (U(x) - U(0))``, i.e.
``V_CPD = kpfm_nmc_offset_V - beta (U_p - ocp_u0_V)``; less-delithiated particles read higher.
An isolated NMC particle floats: its own potential ``phi_p`` (relative to ground) adds,
``V_CPD += phi_p``.  ``U_p`` is an input (``ocp_V``) or the placeholder
``U = ocp_u0_V + ocp_slope_V x``.  SE (our assumption, stated): the glass is electronically
insulating and ionically coupled through the separator to the open negative electrode at
``-V_OCV``; its electric potential follows a fraction ``kpfm_se_coupling`` of it, plus a
constant work-function offset: ``V_CPD = kpfm_se_offset_V - kpfm_se_coupling V_OCV``.  Pores show
the glass value (the floor of a milled pore is smeared glass) [A].  The paper's conversion is
``V_CPD' = V_CPD + V_OCV`` with ``V_OCV`` vs In-Li; an OCV vs Li is converted first
(``- in_li_vs_li_V``), never added as is.  The map is blurred by the PSF (apex + cantilever),
then 10 mV noise is added.  Near the window's edges the cantilever term reaches beyond it: with
``spm.kpfm_surroundings = "section"`` (default) the PSF averages over the milled section around
the window (:func:`kpfm_surroundings`: the composite laterally and towards the collector, the
separator's glass beyond the electrode); ``"mirror"`` reflects the window into itself.

Pixels may be non-square (the defaults are square): the PSF, the EDX blur and the topography
slopes are isotropic in metres, each axis with its own pixel size.

**SEM / EDX.**  :func:`esim.spm.instrument.sem_image` of the phase map with the ion-milling
topography (the soft glass mills faster), plus Gaussian detector noise; EDX Ni on NMC and S on
SE, 1 um blur, Poisson counts.

Randomness: one ``numpy.random.SeedSequence(seed)`` spawns one stream per noisy channel; the same
seed gives the same maps, ``noise=False`` gives deterministic noise-free maps.  Scan ``k >= 1``
of the same section (``scan=k``, e.g. after the charge) draws from
``SeedSequence(seed, spawn_key=(k,))`` instead, so two scans have independent noise, as two
measurements do: before 2026-11-27 the pristine and charged maps of one section had the same
noise, which cancelled in their differences.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esim._params_spm import SPMParams, check_kpfm_psf_size, spm_params_of
from esim.errors import InvalidParameters
from esim.materials import materials_of, nmc_sigma_e, se_sigma_e, soc_to_x
from esim.packing import PHASE_NMC, PHASE_SE, PORE, Packing
from esim.solver import laplacian, network_components, splu_checked
from esim.spm import instrument as ins
from esim.spm.section import SectionGrid, milled_network, plane_geometry, rasterize_section

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_PORE", "CLASS_CONNECTED", "CLASS_POINT_CONTACT", "CLASS_ISOLATED",
    "CLASS_ELECTROLYTE", "CLASS_CUT_OFF", "CLASS_NAMES", "SPMMaps", "simulate_spm", "network_paths",
    "window_of", "tip_contact_of", "nmc_ocp_placeholder", "kpfm_surface_potential",
    "kpfm_surroundings",
    "CHANNELS",
]

CLASS_PORE = -1
CLASS_CONNECTED = 0
CLASS_POINT_CONTACT = 1
CLASS_ISOLATED = 2
CLASS_ELECTROLYTE = 3
CLASS_CUT_OFF = 4
CLASS_NAMES = {CLASS_PORE: "pore", CLASS_CONNECTED: "connected",
               CLASS_POINT_CONTACT: "point-contact-limited", CLASS_ISOLATED: "isolated",
               CLASS_ELECTROLYTE: "electrolyte", CLASS_CUT_OFF: "cut off by the milling"}

#: Measured channels: field name -> (GSF unit, title).  EDX counts carry no SI unit: Gwyddion
#: reads a unit "counts" as centi-"ounts" (gwysiunit.c before 2022) or drops it, so the GSF unit
#: is empty and the title says counts.
CHANNELS = {
    "sem": ("", "SEM (a.u.)"),
    "edx_s_counts": ("", "EDX S (counts)"),
    "edx_ni_counts": ("", "EDX Ni (counts)"),
    "ssrm_ohm": ("Ohm", "SSRM resistance"),
    "cafm_A": ("A", "C-AFM current"),
    "kpfm_vcpd_V": ("V", "KPFM V_CPD"),
    "kpfm_vcpd_prime_V": ("V", "KPFM V_CPD' (V_CPD + V_OCV)"),
    "topography_m": ("m", "Topography"),
}


def _arr(unit: str):
    return field(metadata={"unit": unit})


def _arr_added(unit: str):
    """A per-window-particle array added after the first release: files written before it
    load with NaN for it (see ``SPMMaps.__post_init__``)."""
    return field(default_factory=lambda: np.zeros(0), metadata={"unit": unit})


@dataclass(frozen=True, eq=False)
class SPMMaps:
    """Measured maps of the cross-section and their ground truth.

    All maps are ``(nz, nu)``: row 0 nearest the current collector (z grows with the row),
    column along the lateral axis.  Measured channels are listed in :data:`CHANNELS`.

    Attributes
    ----------
    params : Params
        The parameter set of the packing and materials.
    spm : dict
        The :class:`SPMParams` used, as a plain dict (``spm_params`` rebuilds it).
    sem : (nz, nu) float64, a.u.
    edx_s_counts, edx_ni_counts : (nz, nu) float64, counts
    ssrm_ohm : (nz, nu) float64, ohm
        SSRM reading (log amplifier).
    cafm_A : (nz, nu) float64, A
        C-AFM current at the bias (negative at a negative bias).
    kpfm_vcpd_V, kpfm_vcpd_prime_V : (nz, nu) float64, V
        Measured V_CPD and V_CPD' = V_CPD + V_OCV (vs In-Li).
    topography_m : (nz, nu) float64, m
    phase : (nz, nu) int8
        Ground truth: 0 pore, 1 NMC, 2 SE.
    particle : (nz, nu) int64
        Packing index of the particle under each pixel, -1 for pore.
    soc : (nz, nu) float64, 1
        SOC of that particle (NaN on pore; SE entries are the input's, unused).
    network_resistance_ohm : (nz, nu) float64, ohm
        Particle's resistance to the grounded collector through the half-space network
        (inf: no path; NaN on pore).
    tip_resistance_ohm : (nz, nu) float64, ohm
        Tip spreading term (inf on pore).
    connection_class : (nz, nu) int8
        :data:`CLASS_NAMES` codes.
    edge_distance_m : (nz, nu) float64, m
    z_m : (nz,) float64, m ; u_m : (nu,) float64, m
        Pixel-centre coordinates.
    ssrm_true_ohm : (nz, nu) float64, ohm
        ``V / I`` before the amplifier.
    cafm_true_A : (nz, nu) float64, A
        Current before the amplifier.
    kpfm_true_vcpd_V : (nz, nu) float64, V
        V_CPD before blur and noise.
    window_particles : (K,) int64
        Packing indices of the particles seen in the window.
    window_phase : (K,) int8 ; window_soc : (K,) float64, 1
    window_resistance_ohm : (K,) float64, ohm
    window_max_edge_share : (K,) float64, 1
        Largest single-edge share of the path's power, unit injection (:func:`network_paths`;
        NaN: no path).  Files written before esim 0.1.0's 2026-11-27 change hold the largest
        single-edge share of the voltage drop here (the same on a series path).
    window_bottleneck_radius_m : (K,) float64, m
        Radius of that contact, the one that limits the path, as it conducts behind the face
        (``a sqrt(f)``; NaN: no path).
    window_bottleneck_kept_fraction : (K,) float64, 1
        The part of that contact's area the milling left (1: not cut; NaN: no path).
    window_class : (K,) int8
    window_ocp_V : (K,) float64, V ; window_floating_potential_V : (K,) float64, V
    iv_pixels : (P, 2) int64
        (row, column) of each I-V point.
    iv_voltage_V, iv_time_s : (T,) float64, V and s
    iv_current_A : (P, T) float64, A
        Measured (amplifier); ``iv_true_current_A`` before the amplifier.
    pixel_size_z_m, pixel_size_u_m, origin_z_m, origin_u_m : float, m
    plane_axis : int ; plane_position_m : float, m
    bias_V : float, V
    ocv_vs_inli_V : float, V
        The V_OCV added for V_CPD'.
    beta : float, 1
    noise : bool
    seed : int
    """

    params: Any
    spm: dict
    sem: np.ndarray = _arr("")
    edx_s_counts: np.ndarray = _arr("counts")
    edx_ni_counts: np.ndarray = _arr("counts")
    ssrm_ohm: np.ndarray = _arr("Ohm")
    cafm_A: np.ndarray = _arr("A")
    kpfm_vcpd_V: np.ndarray = _arr("V")
    kpfm_vcpd_prime_V: np.ndarray = _arr("V")
    topography_m: np.ndarray = _arr("m")
    phase: np.ndarray = _arr("1")
    particle: np.ndarray = _arr("1")
    soc: np.ndarray = _arr("1")
    network_resistance_ohm: np.ndarray = _arr("Ohm")
    tip_resistance_ohm: np.ndarray = _arr("Ohm")
    connection_class: np.ndarray = _arr("1")
    edge_distance_m: np.ndarray = _arr("m")
    z_m: np.ndarray = _arr("m")
    u_m: np.ndarray = _arr("m")
    ssrm_true_ohm: np.ndarray = _arr("Ohm")
    cafm_true_A: np.ndarray = _arr("A")
    kpfm_true_vcpd_V: np.ndarray = _arr("V")
    window_particles: np.ndarray = _arr("1")
    window_phase: np.ndarray = _arr("1")
    window_soc: np.ndarray = _arr("1")
    window_resistance_ohm: np.ndarray = _arr("Ohm")
    window_max_edge_share: np.ndarray = _arr("1")
    window_class: np.ndarray = _arr("1")
    window_ocp_V: np.ndarray = _arr("V")
    window_floating_potential_V: np.ndarray = _arr("V")
    iv_pixels: np.ndarray = _arr("1")
    iv_voltage_V: np.ndarray = _arr("V")
    iv_time_s: np.ndarray = _arr("s")
    iv_current_A: np.ndarray = _arr("A")
    iv_true_current_A: np.ndarray = _arr("A")
    pixel_size_z_m: float = 0.0
    pixel_size_u_m: float = 0.0
    origin_z_m: float = 0.0
    origin_u_m: float = 0.0
    plane_axis: int = 1
    plane_position_m: float = 0.0
    bias_V: float = -2.0
    ocv_vs_inli_V: float = 0.0
    beta: float = 0.0
    noise: bool = True
    seed: int = 0
    window_bottleneck_radius_m: np.ndarray = _arr_added("m")
    window_bottleneck_kept_fraction: np.ndarray = _arr_added("1")

    KIND = "spm_maps"

    def __post_init__(self):
        k = np.asarray(self.window_particles).size
        for name in ("window_bottleneck_radius_m", "window_bottleneck_kept_fraction"):
            if np.asarray(getattr(self, name)).size != k:  # a file from before the field
                object.__setattr__(self, name, np.full(k, np.nan))

    def __repr__(self) -> str:
        return (f"SPMMaps(shape={self.ssrm_ohm.shape}, pixel_size_m=({self.pixel_size_z_m:.3g}, "
                f"{self.pixel_size_u_m:.3g}), particles={self.window_particles.shape}, "
                f"iv_points={self.iv_pixels.shape[0]}, noise={self.noise})")

    @property
    def spm_params(self) -> SPMParams:
        """The :class:`SPMParams` of this run."""
        return SPMParams(**self.spm)

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """``(u_min, u_max, z_min, z_max)`` of the window, m."""
        nz, nu = self.ssrm_ohm.shape
        return (self.origin_u_m, self.origin_u_m + nu * self.pixel_size_u_m,
                self.origin_z_m, self.origin_z_m + nz * self.pixel_size_z_m)

    # -- output ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write all maps, the ground truth and the parameters to HDF5 (atomically)."""
        from esim.io.hdf5 import save_result

        return save_result(self, path, kind=self.KIND)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SPMMaps":
        """Read a file written by :meth:`save`."""
        from esim.io.hdf5 import load_result

        return load_result(cls, path, kind=cls.KIND)

    def export_gsf(self, folder: str | os.PathLike) -> list[Path]:
        """One Gwyddion ``.gsf`` per measured channel (and the phase map), with units.

        Files are ``<folder>/<channel>.gsf``; the y axis of the file is the depth z, the x axis
        the lateral axis; offsets are the window corner; values are stored as float32.

        Returns
        -------
        paths : list of Path
        """
        from esim.io.gsf import write_gsf

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        chans = dict(CHANNELS)
        chans["phase"] = ("", "Phase (0 pore, 1 NMC, 2 SE)")
        for name, (unit, title) in chans.items():
            p = folder / f"{name}.gsf"
            write_gsf(p, np.asarray(getattr(self, name), dtype=np.float64),
                      pixel_size_m=(self.pixel_size_z_m, self.pixel_size_u_m), z_unit=unit,
                      title=title, x_offset_m=self.origin_u_m, y_offset_m=self.origin_z_m)
            out.append(p)
        return out

    def summary(self) -> dict[str, Any]:
        """Per-phase medians and particle counts (SI units in the keys)."""
        solid = self.phase != PORE
        nmc = self.phase == PHASE_NMC
        se = self.phase == PHASE_SE
        conn_nmc = nmc & (self.connection_class == CLASS_CONNECTED)

        def med(a, m):
            return float(np.median(a[m])) if m.any() else float("nan")

        wc = self.window_class
        pr = self.particle_readings()

        def pmed(cls):
            sel = (pr["connection_class"] == cls) & (pr["pixels"] > 0)
            return float(np.median(pr["ssrm_ohm"][sel])) if sel.any() else float("nan")

        return {
            "pixels": int(self.ssrm_ohm.size),
            "pixel_size_m": float(self.pixel_size_u_m),
            "nmc_area_fraction": float(nmc.mean()),
            "se_area_fraction": float(se.mean()),
            "pore_area_fraction": float(1.0 - solid.mean()),
            "window_nmc_particles": int(np.count_nonzero(self.window_phase == PHASE_NMC)),
            "window_nmc_connected": int(np.count_nonzero(wc == CLASS_CONNECTED)),
            "window_nmc_point_contact": int(np.count_nonzero(wc == CLASS_POINT_CONTACT)),
            "window_nmc_isolated": int(np.count_nonzero(wc == CLASS_ISOLATED)),
            "window_nmc_cut_off": int(np.count_nonzero(wc == CLASS_CUT_OFF)),
            "ssrm_median_nmc_ohm": med(self.ssrm_ohm, nmc),
            "ssrm_median_nmc_connected_ohm": med(self.ssrm_ohm, conn_nmc),
            "ssrm_median_se_ohm": med(self.ssrm_ohm, se),
            "ssrm_particle_median_connected_ohm": pmed(CLASS_CONNECTED),
            "ssrm_particle_median_point_contact_ohm": pmed(CLASS_POINT_CONTACT),
            "ssrm_particle_median_isolated_ohm": pmed(CLASS_ISOLATED),
            "ssrm_particle_median_cut_off_ohm": pmed(CLASS_CUT_OFF),
            "cafm_median_nmc_A": med(self.cafm_A, nmc),
            "cafm_median_se_A": med(self.cafm_A, se),
            "kpfm_vcpd_prime_median_nmc_V": med(self.kpfm_vcpd_prime_V, nmc),
            "kpfm_vcpd_prime_median_se_V": med(self.kpfm_vcpd_prime_V, se),
            "kpfm_vcpd_median_nmc_V": med(self.kpfm_vcpd_V, nmc),
            "kpfm_vcpd_median_se_V": med(self.kpfm_vcpd_V, se),
            "ocv_vs_inli_V": float(self.ocv_vs_inli_V),
            "bias_V": float(self.bias_V),
        }

    def particle_readings(self) -> dict[str, np.ndarray]:
        """Per-particle readings of the window, as in Otoyama 2020, Figure 5(e).

        Each particle's value is the median over its pixels (the paper takes the peak of each
        particle's histogram; for the narrow per-particle distributions here the two agree).

        Returns
        -------
        dict of (K,) arrays, one entry per ``window_particles``:
            ``particle`` (packing index), ``phase``, ``connection_class``, ``soc``,
            ``network_resistance_ohm``, ``bottleneck_contact_radius_m`` and
            ``bottleneck_kept_fraction`` (the contact that limits its path, as the
            milling left it), ``pixels`` (count), ``z_m`` (mean depth of its pixels,
            m), ``ssrm_ohm`` (median reading, ohm), ``cafm_A`` (median current, A),
            ``kpfm_vcpd_prime_V`` (median, V).
        """
        pid = self.particle.ravel()
        solid = np.flatnonzero(pid >= 0)
        k = np.searchsorted(self.window_particles, pid[solid])
        nk = self.window_particles.size
        count = np.bincount(k, minlength=nk)
        z = np.broadcast_to(self.z_m[:, None], self.particle.shape).ravel()[solid]
        out = {"particle": self.window_particles, "phase": self.window_phase,
               "connection_class": self.window_class, "soc": self.window_soc,
               "network_resistance_ohm": self.window_resistance_ohm,
               "bottleneck_contact_radius_m": self.window_bottleneck_radius_m,
               "bottleneck_kept_fraction": self.window_bottleneck_kept_fraction,
               "pixels": count,
               "z_m": np.bincount(k, weights=z, minlength=nk) / np.maximum(count, 1)}
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        mid_lo = start + (count - 1) // 2
        mid_hi = start + count // 2
        for name in ("ssrm_ohm", "cafm_A", "kpfm_vcpd_prime_V"):
            v = getattr(self, name).ravel()[solid]
            order = np.lexsort((v, k))  # grouped by particle, sorted within
            vs = v[order]
            med = np.full(nk, np.nan)
            ok = count > 0
            med[ok] = 0.5 * (vs[mid_lo[ok]] + vs[mid_hi[ok]])
            out[name] = med
        return out

    def plot(self, path: str | os.PathLike, **kw: Any) -> Path:
        """Figure laid out like Otoyama 2020, Figures 2/3: SEM, EDX S, EDX Ni / SSRM, C-AFM,
        KPFM, with colour bars and units (SSRM and |I| on log scales); ``kw``: ``numbers``
        and ``iv_prefix`` of :func:`esim.spm.figures.plot_maps`."""
        from esim.spm.figures import plot_maps

        return plot_maps(self, path, **kw)

    def plot_truth(self, path: str | os.PathLike) -> Path:
        """Ground-truth figure: phase, connection class, network resistance, SOC."""
        from esim.spm.figures import plot_truth

        return plot_truth(self, path)

    def plot_iv(self, path: str | os.PathLike, title: str = "", **kw: Any) -> Path:
        """I-V curves of the chosen points (linear and log |I|); ``kw``: ``numbers`` and
        ``prefix`` of :func:`esim.spm.figures.plot_iv`."""
        from esim.spm.figures import plot_iv

        return plot_iv(self, path, title, **kw)

    def write_iv_csv(self, path: str | os.PathLike) -> Path:
        """I-V curves as CSV: time, voltage, then one measured current column per point (A)."""
        from esim.io.atomic import atomic_write_text

        cols = ["time_s", "voltage_V"]
        for k, (r, c) in enumerate(self.iv_pixels):
            pid = int(self.particle[r, c])
            cls = CLASS_NAMES[int(self.connection_class[r, c])]
            ph = {PHASE_NMC: "NMC", PHASE_SE: "SE"}.get(int(self.phase[r, c]), "pore")
            cols.append(f"I{k + 1}_{ph}_p{pid}_{cls}_row{r}_col{c}_A")  # as on the figures
        data = np.column_stack([self.iv_time_s, self.iv_voltage_V, self.iv_current_A.T])
        lines = [",".join(cols)] + [",".join(f"{v:.9g}" for v in row) for row in data]
        path = Path(path)
        atomic_write_text(path, "\n".join(lines) + "\n")
        return path


# --------------------------------------------------------------------------------------------
# pieces
# --------------------------------------------------------------------------------------------
def tip_contact_of(spm: SPMParams) -> ins.TipContact:
    """The :class:`esim.spm.instrument.TipContact` of the parameters."""
    return ins.TipContact(radius_m=spm.tip_radius_m, r_instrument_ohm=spm.r_instrument_ohm,
                          nonohmic=spm.nonohmic, barrier_v0_V=spm.barrier_v0_V,
                          barrier_r0_ohm=spm.barrier_r0_ohm)


def window_of(packing: Packing, spm: SPMParams) -> tuple[float, float, float, float]:
    """``(origin_u, origin_z, width, height)`` of the imaging window, m."""
    Lz = float(packing.box_m[2])
    if spm.fov_z_anchor == "full":
        return float(spm.fov_u_offset_m), 0.0, float(spm.fov_width_m), Lz
    h = float(spm.fov_height_m)
    z0 = Lz - h if spm.fov_z_anchor == "separator" else 0.0
    if h > Lz * (1 + 1e-9):
        raise InvalidParameters(f"spm.fov_height_m: the field of view ({h:g} m) is larger than "
                                f"the section's thickness ({Lz:g} m)")
    return float(spm.fov_u_offset_m), max(z0, 0.0), float(spm.fov_width_m), h


def nmc_ocp_placeholder(soc, params: Any = None, spm: SPMParams | None = None) -> np.ndarray:
    """Placeholder NMC open-circuit potential vs Li, ``U = ocp_u0_V + ocp_slope_V x``; V.

    ``x = soc_to_x(soc)``.  A documented stand-in until the charge module's U(x) is passed as
    ``ocp_V``: 3.70 V at x = 0, 4.36 V at x = 0.59 (the relaxed charged cell of Otoyama 2020).
    """
    s = spm or SPMParams()
    return s.ocp_u0_V + s.ocp_slope_V * soc_to_x(soc, params)


def network_paths(n_nodes: int, conns: np.ndarray, g: np.ndarray, ground: int,
                  query: np.ndarray, *, chunk_bytes: int = 128 * 2**20
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resistance to a grounded node, and the edge that limits the path with its share.

    For each query node ``p`` a unit current is injected at ``p`` with ``ground`` at 0 V:
    ``R_p = x_p``, and each edge dissipates ``g_e (x_i - x_j)^2`` of the path's power ``x_p``.
    ``share_p = max_e g_e (x_i - x_j)^2 / x_p``: the shares sum to 1, and an edge's share is
    the elasticity of ``R_p`` to that edge's resistance, ``d ln R_p / d ln R_e`` (Tellegen:
    ``dR_p/dR_e = (I_e / I)^2``), so a share above 1/2 means that halving that one contact's
    resistance lowers the reading by about a quarter or more.  On a series path it is the
    edge's share of the drop; an edge in parallel with a thin contact drops as much but carries
    next to no current (a contact with the glass beside a thin NMC-NMC contact, ~1e-4 of the
    current), and its share is next to zero.  One sparse LU factorisation, then blocks of
    right-hand sides (``chunk_bytes`` each).

    Parameters
    ----------
    n_nodes : int
    conns : (M, 2) int64
    g : (M,) float64, S
    ground : int
        Grounded node.
    query : (Q,) int64

    Returns
    -------
    R : (Q,) float64, ohm
        ``inf`` for nodes with no path to ground, 0 for the ground itself.
    share : (Q,) float64, 1
        The largest single-edge share of the path's power, in ``(0, 1]``; NaN where ``R`` is 0
        or inf.
    bottleneck : (Q,) int64
        Index into ``conns`` of that edge (-1 where ``share`` is NaN).
    """
    conns = np.asarray(conns, dtype=np.int64)
    g = np.asarray(g, dtype=np.float64)
    query = np.asarray(query, dtype=np.int64)
    R = np.full(query.size, np.inf)
    share = np.full(query.size, np.nan)
    bottleneck = np.full(query.size, -1, dtype=np.int64)
    out = (R, share, bottleneck)
    R[query == ground] = 0.0
    _, labels = network_components(n_nodes, conns, g)
    active = labels == labels[ground]
    free = active.copy()
    free[ground] = False
    qsel = np.flatnonzero(free[query])
    if qsel.size == 0:
        return out
    free_idx = np.flatnonzero(free)
    pos = np.full(n_nodes, -1, dtype=np.int64)
    pos[free_idx] = np.arange(free_idx.size)
    A = laplacian(n_nodes, conns, g)[free_idx][:, free_idx].tocsc()
    lu = splu_checked(A)
    uq, inv = np.unique(pos[query[qsel]], return_inverse=True)
    # edges inside the grounded cluster, as positions (ground -> index nf, held at 0 V)
    e_on = (g > 0) & active[conns[:, 0]] & active[conns[:, 1]]
    e_idx = np.flatnonzero(e_on)
    ce = conns[e_on]
    nf = free_idx.size
    pe = np.where(ce == ground, nf, pos[ce])
    r_u = np.empty(uq.size)
    s_u = np.empty(uq.size)
    b_u = np.full(uq.size, -1, dtype=np.int64)
    ge = g[e_on][:, None]
    k = max(1, min(uq.size, int(chunk_bytes // (8 * (nf + 1)))))
    for start in range(0, uq.size, k):  # memory-bounded blocks of columns, not particles
        cols = uq[start:start + k]
        rhs = np.zeros((nf, cols.size))
        rhs[cols, np.arange(cols.size)] = 1.0
        x = np.vstack([lu.solve(rhs), np.zeros((1, cols.size))])
        rp = x[cols, np.arange(cols.size)]
        if pe.size:
            d = x[pe[:, 0]] - x[pe[:, 1]]
            power = ge * d * d
            arg = power.argmax(axis=0)
            top = power[arg, np.arange(cols.size)]
            b_u[start:start + cols.size] = e_idx[arg]
        else:
            top = np.zeros(cols.size)
        r_u[start:start + cols.size] = rp
        s_u[start:start + cols.size] = top / rp
    R[qsel] = r_u[inv]
    share[qsel] = s_u[inv]
    bottleneck[qsel] = b_u[inv]
    return out


def _skeleton_connected(n_nodes: int, conns: np.ndarray, g: np.ndarray, cc_node: int,
                        phase_local: np.ndarray) -> np.ndarray:
    """(n_nodes,) bool: nodes joined to the collector through NMC-NMC/NMC-collector edges, in a
    network whose particle nodes (``phase_local``) come first, then the collector and the
    separator."""
    ok = np.concatenate([phase_local == PHASE_NMC, [True, False]])  # cc yes, separator no
    on = (g > 0) & ok[conns[:, 0]] & ok[conns[:, 1]]
    _, labels = network_components(n_nodes, conns, np.where(on, 1.0, 0.0))
    return labels == labels[cc_node]


def kpfm_surface_potential(phase: np.ndarray, ocp_V: np.ndarray, floating_V: np.ndarray,
                           isolated: np.ndarray, ocv_vs_inli_V: float,
                           spm: SPMParams) -> np.ndarray:
    """Raw V_CPD of particles (before blur), V; see the module docstring.

    Parameters
    ----------
    phase : (K,) int
    ocp_V : (K,) float64, V vs Li
        NMC open-circuit potential (unused for SE).
    floating_V : (K,) float64, V
        Potential of each particle relative to ground; only isolated NMC use it.
    isolated : (K,) bool
    ocv_vs_inli_V : float, V
    spm : SPMParams

    Returns
    -------
    v : (K,) float64, V
    """
    v_nmc = (spm.kpfm_nmc_offset_V - spm.kpfm_beta * (ocp_V - spm.ocp_u0_V)
             + np.where(isolated, floating_V, 0.0))
    v_se = spm.kpfm_se_offset_V - spm.kpfm_se_coupling * ocv_vs_inli_V
    return np.where(phase == PHASE_NMC, v_nmc, v_se)


def kpfm_surroundings(packing: Packing, spm: SPMParams, grid: SectionGrid,
                      v_particle: np.ndarray, v_glass: float, py: int, px: int) -> np.ndarray:
    """The surface potential of the window and of what lies around it, ``py`` rows and ``px``
    columns on every side: what the KPFM probe averages over near the window's edges.

    * Laterally, and towards the collector, the milled section goes on: the same section
      circles, rendered on the window's pixel grid extended (the box is periodic laterally; a
      margin wider than the box's spare width is completed by reflection).
    * Beyond the electrode (``z > L``) lies the separator: the glass's potential ``v_glass``.
    * Below the collector (``z < 0``) the map is reflected (the collector's own contact
      potential is not modelled).

    Pores show the glass, as in the window.

    Parameters
    ----------
    packing : Packing
    spm : SPMParams
        ``plane_axis`` and ``plane_position_m`` of the section.
    grid : SectionGrid
        The window's grid (:func:`esim.spm.section.rasterize_section`).
    v_particle : (N,) float64, V
        Raw V_CPD of every particle (:func:`kpfm_surface_potential`).
    v_glass : float, V
        Raw V_CPD of the glass (the pores and the separator).
    py, px : int
        Rows and columns added on each side (the PSF's half-widths).

    Returns
    -------
    (nz + 2 py, nu + 2 px) float64, V
        The window at ``[py:-py, px:-px]`` (when ``py, px > 0``).
    """
    _, lat = plane_geometry(spm.plane_axis)
    lu, lz = float(packing.box_m[lat]), float(packing.box_m[2])
    nz, nu = grid.phase.shape
    du, dz = grid.pixel_size_u_m, grid.pixel_size_z_m
    u0, z0 = grid.origin_u_m, grid.origin_z_m
    eps = 1e-9
    mu = max(min(px, int(math.floor((lu - nu * du) / (2 * du) + eps))), 0)
    mb = max(min(py, int(math.floor(z0 / dz + eps))), 0)  # composite rows below the window
    mt = max(min(py, int(math.floor((lz - (z0 + nz * dz)) / dz + eps))), 0)  # and above it
    ext = rasterize_section(packing, plane_axis=spm.plane_axis,
                            plane_position_m=spm.plane_position_m, origin_u_m=u0 - mu * du,
                            origin_z_m=z0 - mb * dz, width_m=(nu + 2 * mu) * du,
                            height_m=(nz + mb + mt) * dz, pixels_u=nu + 2 * mu,
                            pixels_z=nz + mb + mt)
    v = np.where(ext.particle >= 0, np.asarray(v_particle, np.float64)[
        np.maximum(ext.particle, 0)], float(v_glass))
    v = np.pad(v, ((0, py - mt), (0, 0)), constant_values=float(v_glass))  # the separator
    return np.pad(v, ((py - mb, 0), (px - mu, px - mu)), mode="symmetric")


def _per_particle(x, n: int, name: str, default: float) -> np.ndarray:
    if x is None:
        return np.full(n, default)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise InvalidParameters(f"{name}: expected a scalar or shape ({n},), one per particle, "
                                f"got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InvalidParameters(f"{name}: must be finite")
    return a


def _default_iv_pixels(grid: SectionGrid, phase_k: np.ndarray, r_k: np.ndarray,
                       ids_k: np.ndarray, choice: tuple[int, int, int] = (1, 1, 2)) -> np.ndarray:
    """Centre pixels (largest edge distance) of: the ``choice[0]`` lowest- and ``choice[1]``
    highest-resistance NMC with a path, and the ``choice[2]`` largest SE sections, in that
    order (a particle is listed once); (P, 2) int64 rows of (row, column).  Candidates of each
    phase are the sections wholly inside the window if there are enough of them, else those
    whose centre pixel is inside, else all."""
    pid = grid.particle.ravel()
    solid = np.flatnonzero(pid >= 0)
    if solid.size == 0:
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((grid.edge_distance_m.ravel()[solid], pid[solid]))
    s = solid[order]
    last = np.r_[pid[s][1:] != pid[s][:-1], True]
    centre_pix = s[last]                      # one pixel per particle present, sorted by id
    centre_pid = pid[centre_pix]
    area = np.bincount(pid[solid], minlength=int(pid.max()) + 1)[centre_pid]
    k = np.searchsorted(ids_k, centre_pid)
    ph, rr = phase_k[k], r_k[k]
    rows, cols = np.unravel_index(centre_pix, grid.phase.shape)
    interior = ((rows > 0) & (rows < grid.phase.shape[0] - 1) & (cols > 0)
                & (cols < grid.phase.shape[1] - 1))
    # prefer, per phase, sections that lie wholly inside the window (as a microscopist probes
    # a particle seen whole) if there are enough, else those whose centre is inside, else all
    p2 = grid.particle
    on_edge = np.unique(np.r_[p2[0], p2[-1], p2[:, 0], p2[:, -1]])
    whole = ~np.isin(centre_pid, on_edge)
    n_low, n_high, n_se = choice
    keep = np.zeros(centre_pid.size, bool)
    for of, need in (((ph == PHASE_NMC) & np.isfinite(rr), n_low + n_high),  # NMC with a path
                     (ph == PHASE_SE, n_se)):
        enough = [pref for pref in (whole & of, interior & of) if pref.sum() >= need]
        keep |= enough[0] if enough else of
    centre_pix, centre_pid, area = centre_pix[keep], centre_pid[keep], area[keep]
    ph, rr = ph[keep], rr[keep]
    chosen = []
    nmc = np.flatnonzero((ph == PHASE_NMC) & np.isfinite(rr))
    by_r = nmc[np.argsort(rr[nmc], kind="stable")]
    chosen += list(by_r[:n_low]) + list(by_r[::-1][:n_high][::-1])
    se = np.flatnonzero(ph == PHASE_SE)
    chosen += list(se[np.argsort(-area[se], kind="stable")[:n_se]])
    chosen = list(dict.fromkeys(int(c) for c in chosen))
    flat = centre_pix[chosen]
    return np.stack(np.unravel_index(flat, grid.phase.shape), axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------------------------
def simulate_spm(packing: Packing, params: Any = None, *, soc: Any = 0.0, ocp_V: Any = None,
                 floating_potential_V: Any = None, ocv_vs_inli_V: float | None = None,
                 ocv_vs_li_V: float | None = None, spm: SPMParams | None = None,
                 iv_pixels: Any = None, iv_choice: tuple[int, int, int] = (1, 1, 2),
                 noise: bool = True, point_contact_share: float = 0.5,
                 scan: int = 0) -> SPMMaps:
    """Image the milled cross-section of an electrode in a given state.

    Parameters
    ----------
    packing : Packing
        With walls (current collector at z = 0).
    params : Params, optional
        Materials and network sections; default ``packing.params``.  Its ``spm`` section is used
        when present and ``spm`` is not given.
    soc : float or (N,) array_like, 1
        SOC of each particle (NMC entries used; 0 = pristine).
    ocp_V : (N,) array_like, V vs Li, optional
        NMC open-circuit potential (e.g. from the charge simulation); default the placeholder
        :func:`nmc_ocp_placeholder` of ``soc``.
    floating_potential_V : (N,) array_like, V, optional
        Potential relative to ground of particles with no electronic path; default 0.
    ocv_vs_inli_V, ocv_vs_li_V : float, V, optional
        Cell OCV for ``V_CPD' = V_CPD + V_OCV``, vs In-Li, or vs Li (converted by subtracting
        ``spm.in_li_vs_li_V``); give at most one.  Default: ``spm.ocv_pristine_vs_inli_V``
        (1.16 V) when every NMC SOC is 0, else the placeholder OCP of the connected NMC's mean
        SOC vs In-Li (a stand-in for the simulated OCV).
    spm : SPMParams, optional
    iv_pixels : (P, 2) array_like of int, optional
        (row, column) of the I-V points; default: chosen by ``iv_choice``.
    iv_choice : (int, int, int)
        Without ``iv_pixels``: the centres of this many lowest-resistance NMC with a path, this
        many highest-resistance ones (by their resistance to the current collector) and this
        many of the largest SE sections.  Default (1, 1, 2), Otoyama et al. 2020's Fig. 4b
        (pristine: two NMC, two SE); their Fig. 4d (charged) is (2, 2, 0).
    noise : bool
        False: noise-free, deterministic maps (no random number is drawn).
    point_contact_share : float, 1
        Threshold of the largest single-edge share of the path's power for
        ``CLASS_POINT_CONTACT``.
    scan : int
        Which scan of the section this is, ``>= 0`` (e.g. 0 before the charge, 1 after it):
        each scan draws its own noise from ``spm.seed`` (see the module's "Randomness").

    Returns
    -------
    SPMMaps

    Raises
    ------
    InvalidParameters
        Cut plane outside the box, field of view larger than the section, zero pixels, inputs
        of the wrong shape.
    """
    params = packing.params if params is None else params
    spm = spm or spm_params_of(params)
    if not isinstance(spm, SPMParams):
        raise InvalidParameters(f"spm: expected SPMParams, got {type(spm).__name__}")
    m = materials_of(params)
    n = packing.n_particles
    soc_all = _per_particle(soc, n, "soc", 0.0)
    soc_to_x(soc_all, m)  # range check
    if ocv_vs_inli_V is not None and ocv_vs_li_V is not None:
        raise InvalidParameters("give the OCV once: ocv_vs_inli_V or ocv_vs_li_V, not both")

    # -- geometry: window, half-space network, pixels ----------------------------------------
    u0, z0, w, h = window_of(packing, spm)
    grid = rasterize_section(packing, plane_axis=spm.plane_axis,
                             plane_position_m=spm.plane_position_m, origin_u_m=u0,
                             origin_z_m=z0, width_m=w, height_m=h, pixels_u=spm.pixels_u,
                             pixels_z=spm.pixels_z)
    net, hs = milled_network(packing, params, soc=soc_all, plane_axis=spm.plane_axis,
                             plane_position_m=spm.plane_position_m,
                             mill_contacts=spm.mill_contacts)
    ids = np.unique(grid.particle[grid.particle >= 0]).astype(np.int64)  # window particles
    loc = hs.local[ids]
    phase_k = packing.phase[ids].astype(np.int8)
    R_k, share_k, bott_k = network_paths(hs.n_nodes, hs.conns, hs.g, hs.cc_node, loc)
    skel = _skeleton_connected(hs.n_nodes, hs.conns, hs.g, hs.cc_node, packing.phase[hs.index])
    # connected in the intact electrode (so it took part in the charge) but not behind the face
    intact = _skeleton_connected(net.n_nodes, net.conns, net.g, net.cc_node, packing.phase)
    isolated_k = (phase_k == PHASE_NMC) & ~intact[ids]
    cut_off_k = (phase_k == PHASE_NMC) & intact[ids] & ~skel[loc]
    # the bottleneck must be a particle-particle contact ("point-contacted with other
    # particles", Otoyama 2020), not the particle's own contact with the collector
    bott_pp = (bott_k >= 0) & (hs.conns[np.maximum(bott_k, 0)] < hs.cc_node).all(axis=1)
    # the contact that limits the path (largest share of its power), as the milling left it
    # (a segment of a cut contact is a point contact the milling made)
    bott_a = np.where(bott_k >= 0, hs.contact_radius_m[np.maximum(bott_k, 0)], np.nan) \
        if hs.conns.shape[0] else np.full(ids.size, np.nan)
    bott_f = np.where(bott_k >= 0, hs.kept_fraction[np.maximum(bott_k, 0)], np.nan) \
        if hs.conns.shape[0] else np.full(ids.size, np.nan)
    cls_k = np.where(phase_k != PHASE_NMC, CLASS_ELECTROLYTE,
                     np.where(isolated_k, CLASS_ISOLATED,
                     np.where(cut_off_k, CLASS_CUT_OFF,
                              np.where((share_k > point_contact_share) & bott_pp,
                                       CLASS_POINT_CONTACT, CLASS_CONNECTED)))).astype(np.int8)

    # -- per-particle state ---------------------------------------------------------------------
    soc_k = soc_all[ids]
    nmc_k = phase_k == PHASE_NMC
    sigma_k = np.where(nmc_k, nmc_sigma_e(np.where(nmc_k, soc_k, 0.0), m.temperature_K, m),
                       se_sigma_e(None, m))
    rho_k = 1.0 / sigma_k
    ocp_k = (_per_particle(ocp_V, n, "ocp_V", 0.0)[ids] if ocp_V is not None
             else nmc_ocp_placeholder(soc_k, m, spm))
    float_k = _per_particle(floating_potential_V, n, "floating_potential_V", 0.0)[ids]
    if ocv_vs_li_V is not None:
        ocv = float(ocv_vs_li_V) - spm.in_li_vs_li_V
    elif ocv_vs_inli_V is not None:
        ocv = float(ocv_vs_inli_V)
    elif not (soc_all[packing.phase == PHASE_NMC] > 0).any():
        ocv = spm.ocv_pristine_vs_inli_V
    else:
        conn_soc = soc_all[hs.index][skel[:-2] & (packing.phase[hs.index] == PHASE_NMC)]
        s_mean = float(conn_soc.mean()) if conn_soc.size else float(soc_all.mean())
        ocv = float(nmc_ocp_placeholder(s_mean, m, spm)) - spm.in_li_vs_li_V
    if not math.isfinite(ocv):
        raise InvalidParameters(f"ocv: must be finite, got {ocv!r}")

    # -- pixel maps -------------------------------------------------------------------------------
    pid = grid.particle
    solid = pid >= 0
    kpix = np.where(solid, np.searchsorted(ids, np.where(solid, pid, ids[0] if ids.size else 0)),
                    0)
    contact = tip_contact_of(spm)
    shape = pid.shape
    r_tip = np.full(shape, np.inf)
    r_net = np.full(shape, np.nan)
    soc_map = np.full(shape, np.nan)
    cls_map = np.full(shape, CLASS_PORE, np.int8)
    if ids.size:
        r_tip[solid] = ins.spreading_resistance(rho_k[kpix[solid]], spm.tip_radius_m,
                                                grid.edge_distance_m[solid])
        r_net[solid] = R_k[kpix[solid]]
        soc_map[solid] = soc_k[kpix[solid]]
        cls_map[solid] = cls_k[kpix[solid]]
    r_series = np.where(solid, r_tip + np.where(solid, r_net, 0.0), np.inf)
    is_se = grid.phase == PHASE_SE
    bias = spm.bias_V
    i_true = _tip_current(bias, r_series, is_se, contact, spm)
    with np.errstate(divide="ignore"):
        ssrm_true = np.where(i_true != 0, bias / np.where(i_true != 0, i_true, 1.0), np.inf)

    if isinstance(scan, bool) or not isinstance(scan, (int, np.integer)) or scan < 0:
        raise InvalidParameters(f"scan: expected an int >= 0, got {scan!r}")
    ss = np.random.SeedSequence(spm.seed, spawn_key=(int(scan),) if scan else ()).spawn(7)
    rngs = [np.random.default_rng(s) for s in ss]
    nz_ = 1.0 if noise else 0.0
    ssrm = ins.log_amplifier(ssrm_true, r_min_ohm=spm.ssrm_r_max_ohm / 10.0**spm.ssrm_decades,
                             r_max_ohm=spm.ssrm_r_max_ohm,
                             noise_decades_sd=nz_ * spm.ssrm_noise_decades,
                             saturation_spread_decades=nz_ * spm.ssrm_saturation_spread_decades,
                             rng=rngs[0])
    cafm = ins.current_amplifier(i_true, noise_floor_A=nz_ * spm.cafm_noise_floor_A,
                                 saturation_A=spm.cafm_saturation_A, rng=rngs[1])

    # KPFM
    # every particle's raw V_CPD (the section around the window needs them all); the window's
    # particles are the same values at ids
    ocp_all = (_per_particle(ocp_V, n, "ocp_V", 0.0) if ocp_V is not None
               else nmc_ocp_placeholder(soc_all, m, spm))
    v_all = kpfm_surface_potential(
        packing.phase, ocp_all, _per_particle(floating_potential_V, n, "floating_potential_V",
                                              0.0), (packing.phase == PHASE_NMC) & ~intact[:n],
        ocv, spm)
    v_k = v_all[ids]
    v_se = spm.kpfm_se_offset_V - spm.kpfm_se_coupling * ocv
    v_true = np.where(solid, v_k[kpix] if ids.size else v_se, v_se)
    p_kpfm = (grid.pixel_size_z_m, grid.pixel_size_u_m)  # (rows, columns)
    psf = kpfm_psf_of(spm, p_kpfm)
    if spm.kpfm_surroundings == "section":
        ext = kpfm_surroundings(packing, spm, grid, v_all, v_se, psf.shape[0] // 2,
                                psf.shape[1] // 2)
        vcpd = ins.kpfm_noise(ins.blur_extended(ext, psf), noise_sd_V=nz_ * spm.kpfm_noise_V,
                              rng=rngs[2])
    else:
        vcpd = ins.kpfm_measure(v_true, pixel_size_m=p_kpfm, psf=psf,
                                noise_sd_V=nz_ * spm.kpfm_noise_V, rng=rngs[2])

    # SEM / EDX
    phase_i = grid.phase.astype(np.int64)
    topo = ins.milling_topography(phase_i, pixel_size_m=p_kpfm)
    sem = ins.sem_image(phase_i, True, topo, pixel_size_m=p_kpfm)
    if noise and spm.sem_noise > 0:
        sem = sem + rngs[6].normal(0.0, spm.sem_noise, size=sem.shape)
    edx_s = ins.edx_map((grid.phase == PHASE_SE).astype(np.float64), pixel_size_m=p_kpfm,
                        blur_m=spm.edx_blur_m, counts_per_pixel=spm.edx_counts, poisson=noise,
                        rng=rngs[3])
    edx_ni = ins.edx_map((grid.phase == PHASE_NMC).astype(np.float64), pixel_size_m=p_kpfm,
                         blur_m=spm.edx_blur_m, counts_per_pixel=spm.edx_counts, poisson=noise,
                         rng=rngs[4])

    # I-V curves
    if iv_pixels is None:
        choice = tuple(int(c) for c in np.asarray(iv_choice).ravel())
        if len(choice) != 3 or min(choice) < 0:
            raise InvalidParameters(f"iv_choice: expected three counts >= 0 (lowest- and "
                                    f"highest-resistance NMC, SE), got {iv_choice!r}")
        ivp = _default_iv_pixels(grid, phase_k, R_k, ids, choice)
        if len(ivp) < sum(choice):
            n_nmc = int(np.count_nonzero((phase_k == PHASE_NMC) & np.isfinite(R_k)))
            n_se = int(np.count_nonzero(phase_k == PHASE_SE))
            log.warning("iv_choice %s: the window holds %d NMC sections with a path and %d SE "
                        "sections; %d I-V points drawn", " ".join(map(str, choice)), n_nmc,
                        n_se, len(ivp))
    else:
        ivp = np.asarray(iv_pixels, dtype=np.int64).reshape(-1, 2)
        if ((ivp < 0) | (ivp >= np.array(shape))).any():
            raise InvalidParameters(f"iv_pixels: (row, column) must lie in the {shape} map")
    v_iv = np.linspace(spm.iv_v_start_V, spm.iv_v_end_V, spm.iv_samples)
    t_iv = np.abs(v_iv - v_iv[0]) / spm.iv_rate_V_per_s
    rs_iv = r_series[ivp[:, 0], ivp[:, 1]]
    i_iv = _tip_current(v_iv[None, :], rs_iv[:, None], is_se[ivp[:, 0], ivp[:, 1]][:, None],
                        contact, spm)
    i_iv_meas = ins.current_amplifier(i_iv, noise_floor_A=nz_ * spm.cafm_noise_floor_A,
                                      saturation_A=spm.cafm_saturation_A, rng=rngs[5])
    if i_iv.size == 0:
        i_iv = i_iv.reshape(ivp.shape[0], v_iv.size)
        i_iv_meas = i_iv

    return SPMMaps(
        params=params, spm=dataclasses.asdict(spm),
        sem=sem, edx_s_counts=edx_s, edx_ni_counts=edx_ni, ssrm_ohm=ssrm, cafm_A=cafm,
        kpfm_vcpd_V=vcpd, kpfm_vcpd_prime_V=vcpd + ocv, topography_m=topo,
        phase=grid.phase, particle=pid, soc=soc_map, network_resistance_ohm=r_net,
        tip_resistance_ohm=r_tip, connection_class=cls_map, edge_distance_m=grid.edge_distance_m,
        z_m=grid.z_m, u_m=grid.u_m, ssrm_true_ohm=ssrm_true, cafm_true_A=i_true,
        kpfm_true_vcpd_V=v_true, window_particles=ids, window_phase=phase_k, window_soc=soc_k,
        window_resistance_ohm=R_k, window_max_edge_share=share_k,
        window_bottleneck_radius_m=bott_a, window_bottleneck_kept_fraction=bott_f,
        window_class=cls_k,
        window_ocp_V=np.where(nmc_k, ocp_k, np.nan), window_floating_potential_V=float_k,
        iv_pixels=ivp, iv_voltage_V=v_iv, iv_time_s=t_iv, iv_current_A=i_iv_meas,
        iv_true_current_A=i_iv, pixel_size_z_m=grid.pixel_size_z_m,
        pixel_size_u_m=grid.pixel_size_u_m, origin_z_m=grid.origin_z_m,
        origin_u_m=grid.origin_u_m, plane_axis=int(spm.plane_axis),
        plane_position_m=float(hs_plane(packing, spm)), bias_V=float(bias),
        ocv_vs_inli_V=float(ocv), beta=float(spm.kpfm_beta), noise=bool(noise),
        seed=int(spm.seed))


def hs_plane(packing: Packing, spm: SPMParams) -> float:
    """Resolved plane position (the middle of the box for a negative setting), m."""
    from esim.spm.section import check_plane

    return check_plane(packing, spm.plane_axis, spm.plane_position_m)


def kpfm_psf_of(spm: SPMParams, pixel_size_m: tuple[float, float]) -> np.ndarray:
    """The KPFM point-spread function of ``spm`` on a map of ``(dz, du)`` pixels, whole (never
    cut short: the weight of its far tail averages the far surroundings).

    Raises
    ------
    InvalidParameters
        When its half-width exceeds :data:`esim._params_spm.KPFM_PSF_MAX_HALF_PX`.
    """
    check_kpfm_psf_size(spm, pixel_size_m)
    return ins.kpfm_psf(pixel_size_m, apex_sigma_m=spm.kpfm_apex_sigma_m,
                        cantilever_sigma_m=spm.kpfm_cantilever_sigma_m,
                        cantilever_weight=spm.kpfm_cantilever_weight)


def _tip_current(v, r_series, is_se, contact: ins.TipContact, spm: SPMParams) -> np.ndarray:
    """Tip current, A: shared contact model, plus the SE's decomposition current on SE."""
    v = np.asarray(v, dtype=np.float64)
    i = _contact_current_unique(v, r_series, contact)
    dec = ins.se_decomposition_current(np.atleast_1d(v), onset_V=spm.se_decomposition_onset_V,
                                       current_at_2V_A=spm.se_decomposition_current_2V_A)
    dec = dec.reshape(np.shape(v))
    return i + np.where(is_se, dec, 0.0)


def _contact_current_unique(v, r_series, contact: ins.TipContact) -> np.ndarray:
    """:func:`instrument.contact_current` evaluated once per distinct (V, R) pair."""
    vb, rb = np.broadcast_arrays(np.asarray(v, dtype=np.float64),
                                 np.asarray(r_series, dtype=np.float64))
    if not contact.nonohmic:
        return ins.contact_current(vb, rb, contact)
    pairs = np.stack([vb.ravel(), rb.ravel()], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    cur = ins.contact_current(uniq[:, 0], uniq[:, 1], contact)
    return cur[inv.ravel()].reshape(vb.shape)
