"""Compare measured SPM maps of a cross-section with esim's virtual ones, particle by particle.

The measured side is what a microscopist brings: an SSRM resistance map, a KPFM map, a C-AFM
current map (any of them, of one area), and something to tell the phases apart: a phase-label
map (0 pore, 1 NMC, 2 SE), an SEM (backscattered-electron) image, or EDX Ni and S maps.  The
simulated side is one or more ``spm.h5`` files written by ``esim spm``, ``esim dataset`` or
:meth:`esim.spm.maps.SPMMaps.save`.

Both sides go through the same analysis, so the comparison is like for like:

1. **Orientation and registration.** Maps are turned so that row 0 lies at the current
   collector (esim's convention); the measured file's side is given (``cc_side``).  With
   ``register=True`` each measured channel is first shifted by whole pixels onto the phase
   source (:func:`register_to`).
2. **Phases.** From the label map as given, from the SEM by Otsu thresholds on its brightness
   (multi-Otsu with three classes: pore, SE, NMC; NMC is the brightest, as in BSE where the
   oxide's mean atomic number is higher than the glass's), or from EDX by an Otsu threshold on
   Ni (NMC) and then on S (SE); each image is smoothed by a one-pixel Gaussian first.
   Otsu, IEEE Trans. Syst. Man Cybern. 9, 62 (1979); Liao, Chen & Chung, J. Inf. Sci. Eng. 17,
   713 (2001) for the multi-level form (``skimage.filters``).
3. **Particles.** Touching NMC sections are split by a watershed of the distance transform,
   seeded at its maxima no closer than half the smallest particle diameter (``min_diameter_m``);
   sections smaller than a disc of half that diameter are left out.
4. **Per-particle values** by the paper's histogram-peak method (:mod:`esim.analysis`), numbered
   from the current-collector side.  On the simulated maps the segmentation is also scored
   against the ground truth (phase accuracy, particle precision and recall at IoU > 0.5), which
   says how far the segmentation method can be trusted on this kind of image.
5. **Comparison.** Per channel: the per-particle distributions (medians, quartiles, the
   two-sample Kolmogorov-Smirnov statistic and p-value, the 1-Wasserstein distance, in decades
   for SSRM and C-AFM, in volts for KPFM), the fraction of NMC at or above ``high_ohm`` with its
   Wilson 95 % interval (SSRM), the per-phase pixel medians, and the depth gradient (value on
   the collector side minus value on the SE side, from a least-squares line).

Assumptions (stated in every report): the measured channels and the phase source image the same
area; with ``register=True`` each channel is shifted by whole pixels onto the phase source
(cross-correlation of edge images), otherwise they must already be aligned (rotation, scale and
drift within a scan are never corrected); the areas of the measured and simulated maps need not
be the same, since only distributions are compared; a KPFM map is compared as V_CPD' (add the
cell's V_OCV with ``kpfm_offset_V`` if the file holds V_CPD, as Otoyama et al. 2020 did).

Parameters are chosen by a grid search, not fitted: :func:`rank_sweep` compares the measured
area with every parameter set of an ``esim sweep --stage spm --save`` folder and ranks them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage, stats

from esim.analysis import (CAFM_HISTOGRAM, HIGH_R_OHM, KPFM_HISTOGRAM, SSRM_HISTOGRAM,
                           ParticleValues, linear_gradient, particle_table, wilson_interval)
from esim.errors import InputFileError, InvalidParameters
from esim.io.atomic import atomic_write_json, atomic_write_text
from esim.io.maps import CC_SIDES, MapChannel, _split_spec, read_map
from esim.io.table import csv_text
from esim.packing import PHASE_NMC, PHASE_SE, PORE

__all__ = ["ChannelSpec", "CHANNEL_SPECS", "Segmentation", "MapSet", "CC_SIDES",
           "phase_from_labels", "phase_from_sem", "phase_from_edx", "split_particles",
           "segmentation_scores", "load_measured", "simulated_mapset", "compare_maps",
           "write_comparison", "rank_sweep", "write_fit", "register_to", "shift_map"]

log = logging.getLogger(__name__)

SEGMENT_METHODS = ("phase", "sem", "edx")


@dataclass(frozen=True)
class ChannelSpec:
    """How a channel is read and compared."""

    unit: str  # the unprefixed SI unit its file must carry (or none)
    sim_attr: str  # SPMMaps attribute of the simulated reading
    histogram: dict  # particle_table keywords: bins, log, value_range
    title: str
    axis_label: str
    key_unit: str  # suffix of JSON keys: ohm, A, V

    @property
    def log(self) -> bool:
        return bool(self.histogram["log"])

    @property
    def spread_unit(self) -> str:
        """Unit of distances between distributions: decades for log channels."""
        return "decades" if self.log else self.key_unit


CHANNEL_SPECS: dict[str, ChannelSpec] = {
    "ssrm": ChannelSpec("Ohm", "ssrm_ohm", SSRM_HISTOGRAM, "SSRM", "resistance (Ohm)", "ohm"),
    "cafm": ChannelSpec("A", "cafm_A", CAFM_HISTOGRAM, "C-AFM", "|current| (A)", "A"),
    "kpfm": ChannelSpec("V", "kpfm_vcpd_prime_V", KPFM_HISTOGRAM, "KPFM",
                        "V_CPD' (V vs In-Li)", "V"),
}


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Phases and NMC particles of a map.

    Attributes
    ----------
    phase : (H, W) int8
        0 pore, 1 NMC, 2 SE.
    particles : (H, W) int64
        NMC particle label 0..K-1 of each pixel, -1 elsewhere (and on NMC sections too small
        to count).
    method : str
        ``phase``, ``sem`` or ``edx``.
    """

    phase: np.ndarray
    particles: np.ndarray
    method: str

    @property
    def n_particles(self) -> int:
        return int(self.particles.max()) + 1 if self.particles.size else 0


@dataclass(frozen=True, eq=False)
class MapSet:
    """Channels of one imaged area in esim's orientation (row 0 at the current collector).

    Attributes
    ----------
    name : str
    channels : dict str -> (H, W) float64
        Keys of :data:`CHANNEL_SPECS`; values in the channel's SI unit (C-AFM as measured,
        signed).
    seg : Segmentation
    pixel_size_depth_m, pixel_size_lateral_m : float, m
    sources : dict str -> str
        Where each channel and the phase source came from.
    truth : dict
        Simulated sets only: ``phase`` and ``particle`` (packing index) maps of the truth.
    registration : dict
        Measured sets read with ``register=True``: per channel the shift applied, in pixels
        (rows, columns of the file) and metres, and the edge correlation that accepted it.
    """

    name: str
    channels: dict
    seg: Segmentation
    pixel_size_depth_m: float
    pixel_size_lateral_m: float
    sources: dict = field(default_factory=dict)
    truth: dict = field(default_factory=dict)
    registration: dict = field(default_factory=dict)

    @property
    def depth_m(self) -> np.ndarray:
        """(H, W) depth of each pixel centre from the map's collector-side edge, m."""
        h, w = self.seg.phase.shape
        z = (np.arange(h) + 0.5) * self.pixel_size_depth_m
        return np.broadcast_to(z[:, None], (h, w))

    def particle_values(self, channel: str, out_of_range: str = "nan") -> ParticleValues:
        """Histogram-peak value of every segmented NMC particle (C-AFM: of |I|);
        ``out_of_range`` as :func:`esim.analysis.histogram_peak`."""
        spec = CHANNEL_SPECS[channel]
        values = self.channels[channel]
        if channel == "cafm":
            values = np.abs(values)
        ids = np.arange(self.seg.n_particles)
        return particle_table(values, self.seg.particles, self.depth_m, ids, **spec.histogram,
                              out_of_range=out_of_range)


# --- segmentation ---------------------------------------------------------------------------
def phase_from_labels(labels: np.ndarray, source: str = "phase map") -> np.ndarray:
    """A label map (0 pore, 1 NMC, 2 SE) checked and cast to int8."""
    a = np.asarray(labels, dtype=np.float64)
    ok = np.isin(a, (PORE, PHASE_NMC, PHASE_SE))
    if not ok.all():
        bad = np.unique(a[~ok])[:5]
        raise InputFileError(f"{source}: a phase map holds only 0 (pore), 1 (NMC) and 2 (SE); "
                             f"found {bad.tolist()}")
    return a.astype(np.int8)


def _smooth(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    fill = np.nanmedian(a) if np.isfinite(a).any() else 0.0
    return ndimage.gaussian_filter(np.where(np.isfinite(a), a, fill), 1.0, mode="nearest")


def phase_from_sem(sem: np.ndarray, classes: int = 3, source: str = "SEM image") -> np.ndarray:
    """Phases from an SEM brightness image by Otsu thresholds (NMC brightest).

    ``classes=3``: pore < SE < NMC (multi-Otsu); ``classes=2``: SE < NMC (an image with no
    visible pores).
    """
    from skimage.filters import threshold_multiotsu, threshold_otsu

    if classes not in (2, 3):
        raise InvalidParameters(f"sem_classes: 2 or 3, got {classes!r}")
    s = _smooth(sem)
    if np.ptp(s) <= 0:
        raise InputFileError(f"{source}: the image is uniform; its phases cannot be told apart")
    out = np.full(s.shape, PHASE_SE, np.int8)
    if classes == 3:
        t_lo, t_hi = threshold_multiotsu(s, classes=3)
        out[s <= t_lo] = PORE
        out[s > t_hi] = PHASE_NMC
    else:
        out[s > threshold_otsu(s)] = PHASE_NMC
    return out


def phase_from_edx(ni: np.ndarray, s: np.ndarray, source: str = "EDX maps") -> np.ndarray:
    """Phases from EDX maps: NMC where Ni is above its Otsu threshold, SE where S is (and Ni is
    not), pore elsewhere."""
    from skimage.filters import threshold_otsu

    ni_s, s_s = _smooth(ni), _smooth(s)
    if np.ptp(ni_s) <= 0 or np.ptp(s_s) <= 0:
        raise InputFileError(f"{source}: a uniform EDX map; its phases cannot be told apart")
    nmc = ni_s > threshold_otsu(ni_s)
    se = ~nmc & (s_s > threshold_otsu(s_s))
    return np.where(nmc, PHASE_NMC, np.where(se, PHASE_SE, PORE)).astype(np.int8)


def split_particles(nmc: np.ndarray, pixel_size_m: float, min_diameter_m: float) -> np.ndarray:
    """Label the NMC particles of a mask: watershed of the distance transform.

    Seeds are the maxima of the (one-pixel Gaussian smoothed) distance to the nearest non-NMC
    pixel, at least ``min_diameter_m / 2`` apart; sections with less area than a disc of
    diameter ``min_diameter_m / 2`` get no label.

    Returns
    -------
    (H, W) int64
        0..K-1 numbered in raster order of their seeds, -1 elsewhere.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    nmc = np.asarray(nmc, bool)
    out = np.full(nmc.shape, -1, np.int64)
    if not nmc.any():
        return out
    if not (min_diameter_m > 0 and math.isfinite(min_diameter_m)):
        raise InvalidParameters(f"min_diameter_m: must be positive, got {min_diameter_m!r}")
    dist = ndimage.gaussian_filter(ndimage.distance_transform_edt(nmc), 1.0)
    # a seed distance beyond the map is the map (peak_local_max allocates its footprint: a
    # diameter given in the wrong unit asked for terabytes)
    r_px = min(max(1, int(round(0.5 * min_diameter_m / pixel_size_m))), max(nmc.shape))
    comp, _ = ndimage.label(nmc)
    peaks = peak_local_max(dist, min_distance=r_px, labels=comp, exclude_border=False)
    markers = np.zeros(nmc.shape, np.int64)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, peaks.shape[0] + 1)
    lab = watershed(-dist, markers, mask=nmc)
    area = np.bincount(lab.ravel(), minlength=peaks.shape[0] + 1)
    min_area = math.pi * (0.25 * min_diameter_m / pixel_size_m) ** 2
    keep = area >= min_area
    keep[0] = False
    new = np.full(area.size, -1, np.int64)
    new[keep] = np.arange(int(keep.sum()))
    return new[lab]


def segment(phase: np.ndarray, method: str, pixel_size_m: float,
            min_diameter_m: float) -> Segmentation:
    """Split the NMC of a phase map into particles."""
    return Segmentation(phase=phase, method=method,
                        particles=split_particles(phase == PHASE_NMC, pixel_size_m,
                                                  min_diameter_m))


def segmentation_scores(seg: Segmentation, truth_phase: np.ndarray, truth_particle: np.ndarray,
                        min_pixels: float) -> dict[str, float]:
    """How well a segmentation recovers the truth: the share of pixels whose phase is right,
    the intersection over union of the NMC masks, and the precision and recall of particles
    matched at IoU > 0.5 (a one-to-one match), counting truth particles with at least
    ``min_pixels`` NMC pixels in the map."""
    tp = np.where(truth_phase == PHASE_NMC, truth_particle, -1).ravel()
    sp = seg.particles.ravel()
    nmc_s, nmc_t = seg.phase == PHASE_NMC, truth_phase == PHASE_NMC
    union = np.count_nonzero(nmc_s | nmc_t)
    t_ids, t_area = np.unique(tp[tp >= 0], return_counts=True)
    s_ids, s_area = np.unique(sp[sp >= 0], return_counts=True)
    both = (tp >= 0) & (sp >= 0)
    pairs, inter = np.unique(np.stack([tp[both], sp[both]]), axis=1, return_counts=True)
    if pairs.size:
        at = t_area[np.searchsorted(t_ids, pairs[0])]
        as_ = s_area[np.searchsorted(s_ids, pairs[1])]
        matched = inter / (at + as_ - inter) > 0.5
    else:
        matched = np.zeros(0, bool)
    n_truth = int(np.count_nonzero(t_area >= min_pixels))
    n_match_t = int(np.count_nonzero(matched & (at >= min_pixels))) if pairs.size else 0
    n_seg = int(s_ids.size)
    return {
        "phase_accuracy": float(np.mean(seg.phase == truth_phase)),
        "nmc_iou": float(np.count_nonzero(nmc_s & nmc_t) / union) if union else float("nan"),
        "particles_segmented": n_seg,
        "particles_truth": n_truth,
        "particle_precision": float(np.count_nonzero(matched) / n_seg) if n_seg else float("nan"),
        "particle_recall": float(n_match_t / n_truth) if n_truth else float("nan"),
    }


# --- loading --------------------------------------------------------------------------------
def _orient(a: np.ndarray, cc_side: str) -> np.ndarray:
    if cc_side == "first-row":
        return a
    if cc_side == "last-row":
        return a[::-1]
    if cc_side == "first-column":
        return a.T
    return a.T[::-1]


def _check_unit(ch: MapChannel, name: str, unit: str) -> None:
    if ch.z_unit == "":
        if _split_spec(ch.source)[0].suffix.lower() in (".gsf", ".gwy"):
            log.warning("%s: the file names no unit; taken to be %s", ch.source, unit)
        return
    if ch.z_unit != unit:
        raise InputFileError(f"{ch.source}: the {name} map is in {ch.z_unit!r}; expected "
                             f"{unit!r} (unprefixed SI, as Gwyddion writes it)")


def _same_area(a: MapChannel, b: MapChannel) -> None:
    ha, wa = a.extent_m
    hb, wb = b.extent_m
    if not (math.isclose(ha, hb, rel_tol=0.02) and math.isclose(wa, wb, rel_tol=0.02)):
        raise InputFileError(f"{b.source}: covers {wb * 1e6:.3g} x {hb * 1e6:.3g} um, but "
                             f"{a.source} covers {wa * 1e6:.3g} x {ha * 1e6:.3g} um; the maps "
                             "must image one area (register them first)")


def _to_grid(ch: MapChannel, ref: MapChannel, order: int) -> np.ndarray:
    """``ch`` resampled onto ``ref``'s pixels (same area, checked even when the pixel counts
    agree; order 0 for labels)."""
    _same_area(ref, ch)
    if ch.data.shape == ref.data.shape:
        return ch.data
    from skimage.transform import resize

    return resize(ch.data, ref.data.shape, order=order, preserve_range=True,
                  anti_aliasing=order > 0, mode="edge")


def _edges(a: np.ndarray, log: bool) -> np.ndarray:
    """Edge strength of a map (gradient magnitude of the smoothed, rank-clipped image), zero
    mean: particle and phase boundaries, whatever the channel's contrast."""
    a = np.asarray(a, np.float64)
    if log:
        a = np.log10(np.clip(np.abs(a), 1e-300, None))
    ok = np.isfinite(a)
    a = np.where(ok, a, np.median(a[ok]) if ok.any() else 0.0)
    lo, hi = np.percentile(a, [1, 99])
    a = ndimage.gaussian_filter(np.clip((a - lo) / ((hi - lo) or 1.0), 0, 1), 1.0)
    g = np.hypot(ndimage.sobel(a, 0), ndimage.sobel(a, 1))
    return g - g.mean()


def shift_map(a: np.ndarray, shift: Sequence[int]) -> np.ndarray:
    """``a`` moved by whole pixels (rows, columns); pixels moved in from outside are NaN."""
    a = np.asarray(a, np.float64)
    out = np.full(a.shape, np.nan)
    dy, dx = (int(v) for v in shift)
    h, w = a.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        a[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _correlation(ref: np.ndarray, mov: np.ndarray) -> float:
    ok = np.isfinite(mov)
    if np.count_nonzero(ok) < 16:
        return float("nan")
    a, b = ref[ok] - ref[ok].mean(), mov[ok] - mov[ok].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else float("nan")


def register_to(reference: np.ndarray, moving: np.ndarray, log: bool,
                max_shift_px: float) -> tuple[tuple[int, int], float, float]:
    """Whole-pixel shift that aligns ``moving`` with ``reference`` (both on one grid): the peak
    of the cross-correlation of their edge images (computed by FFT, ``skimage.registration``;
    plain rather than phase-normalised, which was less robust on noisy EDX maps).

    Returns ((rows, columns), correlation of the edge images after the shift, and before it).
    A shift beyond ``max_shift_px``, or one that does not raise the correlation, is (0, 0).
    """
    from skimage.registration import phase_cross_correlation

    ref, mov = _edges(reference, False), _edges(moving, log)
    found = phase_cross_correlation(ref, mov, normalization=None)[0]
    shift = (int(round(found[0])), int(round(found[1])))
    before = _correlation(ref, mov)
    after = _correlation(ref, shift_map(mov, shift))
    if max(abs(shift[0]), abs(shift[1])) > max_shift_px or not after > before:
        return (0, 0), before, before
    return shift, after, before


def load_measured(*, ssrm: str | None = None, kpfm: str | None = None, cafm: str | None = None,
                  phase: str | None = None, sem: str | None = None, edx_ni: str | None = None,
                  edx_s: str | None = None, particles: str | None = None,
                  cc_side: str = "first-row",
                  pixel_size_m: float | None = None, source_pixel_size_m: float | None = None,
                  kpfm_offset_V: float = 0.0,
                  min_diameter_m: float = 1e-6, sem_classes: int = 3,
                  register: bool = False, max_shift_m: float = 2e-6,
                  name: str = "measured") -> MapSet:
    """Read a measured area: its channels and one phase source (label map, SEM, or EDX Ni + S).

    All channels must have one shape (the phase source may have another pixel size over the
    same area, ``source_pixel_size_m`` if its files carry none; it is resampled).  ``cc_side``
    says where the current collector is in the files.
    ``particles``, optional: a label map of the NMC particles (0 none, 1, 2, ... one per
    particle, e.g. drawn by hand) used instead of the watershed split.  ``register``: shift each
    channel by whole pixels onto the phase source image (the label map, the SEM image, or the
    EDX Ni map; :func:`register_to`, at most ``max_shift_m``);
    a channel without common edges (e.g. a pristine SSRM map, all at the amplifier's ceiling)
    stays where it is, with a warning.
    """
    if cc_side not in CC_SIDES:
        raise InvalidParameters(f"cc_side: one of {', '.join(CC_SIDES)}, got {cc_side!r}")
    given = {k: v for k, v in (("ssrm", ssrm), ("kpfm", kpfm), ("cafm", cafm)) if v}
    if not given:
        raise InvalidParameters("measured maps: give at least one of --ssrm, --kpfm, --cafm")
    sources_given = [k for k, v in (("phase", phase), ("sem", sem)) if v]
    if edx_ni or edx_s:
        if not (edx_ni and edx_s):
            raise InvalidParameters("EDX segmentation needs both --edx-ni and --edx-s")
        sources_given.append("edx")
    if len(sources_given) != 1:
        raise InvalidParameters("phases: give exactly one of --phase, --sem, or --edx-ni with "
                                f"--edx-s (got {sources_given or 'none'})")
    if not math.isfinite(kpfm_offset_V):
        raise InvalidParameters(f"kpfm_offset_V: must be finite, got {kpfm_offset_V!r}")
    chans = {k: read_map(v, pixel_size_m=pixel_size_m) for k, v in given.items()}
    ref = next(iter(chans.values()))
    for k, ch in chans.items():
        _check_unit(ch, k, CHANNEL_SPECS[k].unit)
        if k == "ssrm":
            bad = int(np.count_nonzero(np.asarray(ch.data) <= 0))
            if bad:
                raise InputFileError(f"{ch.source}: {bad} pixels hold a resistance <= 0 ohm; an "
                                     "SSRM map holds positive resistances")
        if ch.data.shape != ref.data.shape:
            raise InputFileError(f"{ch.source}: shape {ch.data.shape}, but {ref.source} has "
                                 f"{ref.data.shape}; the channels must share one pixel grid")
        _same_area(ref, ch)
    method = sources_given[0]
    p_src = pixel_size_m if source_pixel_size_m is None else source_pixel_size_m
    if method == "phase":
        src = read_map(phase, pixel_size_m=p_src)
        ph = phase_from_labels(_to_grid(src, ref, order=0), src.source)
        srcs, reg_ref = {"phase": src.source}, ph.astype(np.float64)
    elif method == "sem":
        src = read_map(sem, pixel_size_m=p_src)
        reg_ref = _to_grid(src, ref, order=1)
        ph = phase_from_sem(reg_ref, sem_classes, src.source)
        srcs = {"sem": src.source}
    else:
        ni = read_map(edx_ni, pixel_size_m=p_src)
        s = read_map(edx_s, pixel_size_m=p_src)
        reg_ref = _to_grid(ni, ref, order=1)
        ph = phase_from_edx(reg_ref, _to_grid(s, ref, order=1), f"{ni.source} and {s.source}")
        srcs = {"edx_ni": ni.source, "edx_s": s.source}
    registration: dict[str, Any] = {}
    if register:
        if not (max_shift_m > 0 and math.isfinite(max_shift_m)):
            raise InvalidParameters(f"max_shift_m: must be positive, got {max_shift_m!r}")
        max_px = max_shift_m / min(ref.pixel_size_m, ref.pixel_size_y_m)
        for k, ch in chans.items():
            shift, after, before = register_to(reg_ref, ch.data, CHANNEL_SPECS[k].log, max_px)
            if shift == (0, 0) and not after > 0.2:
                log.warning("%s: no edges in common with the phase source (correlation %.2f); "
                            "not registered", ch.source, after)
            chans[k] = MapChannel(data=shift_map(ch.data, shift), pixel_size_m=ch.pixel_size_m,
                                  pixel_size_y_m=ch.pixel_size_y_m, z_unit=ch.z_unit,
                                  source=ch.source)
            registration[k] = {"shift_px": list(shift),
                               "shift_m": [shift[0] * ch.pixel_size_y_m,
                                           shift[1] * ch.pixel_size_m],
                               "edge_correlation": after, "edge_correlation_before": before}
    data = {k: _orient(ch.data, cc_side).astype(np.float64) for k, ch in chans.items()}
    if "kpfm" in data:
        data["kpfm"] = data["kpfm"] + kpfm_offset_V
    ph = _orient(ph, cc_side)
    p_depth, p_lat = ((ref.pixel_size_y_m, ref.pixel_size_m) if cc_side.endswith("row")
                      else (ref.pixel_size_m, ref.pixel_size_y_m))
    seg = segment(np.ascontiguousarray(ph), method, math.sqrt(p_depth * p_lat), min_diameter_m)
    if particles:
        src = read_map(particles, pixel_size_m=p_src)
        lab = _to_grid(src, ref, order=0)
        if not (np.isfinite(lab).all() and (lab >= 0).all() and (lab == np.round(lab)).all()):
            raise InputFileError(f"{src.source}: a particle label map holds whole numbers >= 0 "
                                 "(0: no particle)")
        o = np.ascontiguousarray(_orient(lab, cc_side)).astype(np.int64)
        ids, inv = np.unique(o.ravel(), return_inverse=True)
        new = np.arange(ids.size, dtype=np.int64) - (1 if ids[0] == 0 else 0)
        seg = Segmentation(phase=seg.phase, method=f"{method} + labels",
                           particles=new[inv.ravel()].reshape(o.shape))
        srcs["particles"] = src.source
    if seg.n_particles == 0:
        raise InputFileError(f"{' and '.join(srcs.values())}: no NMC particle of at least "
                             f"{min_diameter_m:g} m (--min-diameter-m) in the measured area; "
                             "nothing to compare")
    ms = MapSet(name=name, channels=data, seg=seg, pixel_size_depth_m=p_depth,
                pixel_size_lateral_m=p_lat, registration=registration,
                sources={**{k: ch.source for k, ch in chans.items()}, **srcs})
    _check_readable(ms)
    return ms


def _check_readable(ms: MapSet) -> None:
    """Every channel's particles must read inside its histogram range: a particle whose pixels
    lie mostly outside it has no value (NaN) there; none readable is an error naming the file."""
    if ms.seg.n_particles == 0:
        return
    for k in ms.channels:
        spec = CHANNEL_SPECS[k]
        lo, hi = spec.histogram["value_range"]
        bad = int(np.count_nonzero(np.isnan(ms.particle_values(k).peak)))
        if not bad:
            continue
        hint = (" (a file of raw V_CPD needs --kpfm-offset-V, the cell's V_OCV vs In-Li)"
                if k == "kpfm" else "")
        msg = (f"{ms.sources[k]}: {bad} of {ms.seg.n_particles} NMC particles read outside the "
               f"{spec.title} histogram range {lo:g}-{hi:g} {spec.unit}")
        above = (int(np.count_nonzero(np.isposinf(ms.particle_values(k, "inf").peak)))
                 if k == "ssrm" else 0)
        if bad == ms.seg.n_particles and above < bad:
            raise InputFileError(f"{msg}; no particle can be read{hint}")
        if above == ms.seg.n_particles:  # all saturated: each a high-resistance particle
            log.warning("%s: every one of its %d NMC particles reads above the SSRM histogram "
                        "range (%g ohm): all count as high-resistance; there is no median or "
                        "distribution to compare", ms.sources[k], above, hi)
            continue
        left = ("left out of the medians and distances; above the range they count as "
                "high-resistance particles" if k == "ssrm" else "left out of the comparison")
        log.warning("%s (or hold no data); they are %s%s", msg, left, hint)


def simulated_mapset(maps: Any, method: str = "phase", *, min_diameter_m: float = 1e-6,
                     sem_classes: int = 3, channels: Sequence[str] = tuple(CHANNEL_SPECS),
                     name: str = "simulated") -> MapSet:
    """An :class:`esim.spm.maps.SPMMaps` as a :class:`MapSet`, segmented by ``method`` (the
    measured side's, for a like-for-like comparison) from its own SEM, EDX or truth phases."""
    if method not in SEGMENT_METHODS:
        raise InvalidParameters(f"method: one of {SEGMENT_METHODS}, got {method!r}")
    if method == "phase":
        ph = np.asarray(maps.phase, np.int8)
    elif method == "sem":
        ph = phase_from_sem(maps.sem, sem_classes, name)
    else:
        ph = phase_from_edx(maps.edx_ni_counts, maps.edx_s_counts, name)
    p = math.sqrt(maps.pixel_size_z_m * maps.pixel_size_u_m)
    return MapSet(name=name, seg=segment(ph, method, p, min_diameter_m),
                  channels={k: np.asarray(getattr(maps, CHANNEL_SPECS[k].sim_attr), np.float64)
                            for k in channels},
                  pixel_size_depth_m=float(maps.pixel_size_z_m),
                  pixel_size_lateral_m=float(maps.pixel_size_u_m),
                  truth={"phase": np.asarray(maps.phase), "particle": np.asarray(maps.particle)})


# --- comparison -----------------------------------------------------------------------------
def _transform(x: np.ndarray, spec: ChannelSpec) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if spec.log:
        x = np.abs(x)
        x = np.log10(x[x > 0])
    return x[np.isfinite(x)]


def _back(v: float, spec: ChannelSpec) -> float:
    return float(10.0**v) if spec.log and math.isfinite(v) else float(v)


def _quartiles(t: np.ndarray, spec: ChannelSpec) -> dict[str, float]:
    if t.size == 0:
        return {"median": float("nan"), "q25": float("nan"), "q75": float("nan")}
    q = np.percentile(t, [50, 25, 75])
    return {"median": _back(q[0], spec), "q25": _back(q[1], spec), "q75": _back(q[2], spec)}


def _channel_comparison(channel: str, measured: MapSet, sims: Sequence[MapSet],
                        high_ohm: float) -> dict[str, Any]:
    spec = CHANNEL_SPECS[channel]
    u, du = spec.key_unit, spec.spread_unit
    pm = measured.particle_values(channel)
    ps = [s.particle_values(channel) for s in sims]
    a = _transform(pm.peak, spec)
    b = _transform(np.concatenate([p.peak for p in ps]), spec)
    out: dict[str, Any] = {"unit": spec.unit, "n_particles_measured": int(a.size),
                           "n_particles_simulated": int(b.size)}
    for side, t in (("measured", a), ("simulated", b)):
        for k, v in _quartiles(t, spec).items():
            out[f"particle_{k}_{side}_{u}"] = v
    if a.size and b.size:
        ks = stats.ks_2samp(a, b)
        out["ks_statistic"] = float(ks.statistic)
        out["ks_pvalue"] = float(ks.pvalue)
        out[f"wasserstein_{du}"] = float(stats.wasserstein_distance(a, b))
        out[f"median_difference_{du}"] = float(np.median(b) - np.median(a))
    if channel == "ssrm":
        # a particle that reads above the histogram's range (an amplifier saturating above
        # 1e10 ohm) is a high-resistance one: counted, not dropped
        for side, peaks in (("measured", measured.particle_values(channel, "inf").peak),
                            ("simulated", np.concatenate([s.particle_values(channel,
                                                                            "inf").peak
                                                          for s in sims]))):
            ok = ~np.isnan(peaks)
            k, n = int(np.count_nonzero(peaks[ok] >= high_ohm)), int(np.count_nonzero(ok))
            out[f"high_fraction_{side}"] = k / n if n else float("nan")
            out[f"high_fraction_{side}_wilson95"] = wilson_interval(k, n)
        out["high_threshold_ohm"] = float(high_ohm)
    # depth gradient of the per-particle values: collector side minus SE side
    def grad(p: ParticleValues) -> float:
        v = np.log10(np.abs(p.peak)) if spec.log else p.peak
        return linear_gradient(p.z_m, v)["cc_minus_se"]

    out[f"gradient_cc_minus_se_measured_{du}"] = grad(pm)
    g = np.array([grad(p) for p in ps])
    g = g[np.isfinite(g)]
    out[f"gradient_cc_minus_se_simulated_{du}"] = float(g.mean()) if g.size else float("nan")
    out[f"gradient_cc_minus_se_simulated_std_{du}"] = float(g.std()) if g.size > 1 else 0.0
    # per-phase pixel medians
    for ph_name, ph in (("nmc", PHASE_NMC), ("se", PHASE_SE)):
        for side, sets in (("measured", [measured]), ("simulated", list(sims))):
            t = _transform(np.concatenate([s.channels[channel][s.seg.phase == ph]
                                           for s in sets]), spec)
            out[f"pixel_median_{ph_name}_{side}_{u}"] = (_back(float(np.median(t)), spec)
                                                        if t.size else float("nan"))
    return out


def compare_maps(measured: MapSet, sims: Sequence[MapSet], *,
                 high_ohm: float = HIGH_R_OHM, min_diameter_m: float = 1e-6) -> dict[str, Any]:
    """Compare a measured area with simulated ones (pooled), channel by channel.

    Returns a JSON-ready dict: ``channels`` (per channel, see the module docstring),
    ``segmentation`` (counts, and for the simulated sets the scores against their truth), and
    ``sources``.
    """
    if not sims:
        raise InvalidParameters("simulated maps: give at least one spm.h5 (--sim)")
    if not (high_ohm > 0 and math.isfinite(high_ohm)):
        raise InvalidParameters(f"high_ohm: must be positive, got {high_ohm!r}")
    common = [c for c in CHANNEL_SPECS if c in measured.channels
              and all(c in s.channels for s in sims)]
    min_px = [math.pi * (0.25 * min_diameter_m) ** 2
              / (s.pixel_size_depth_m * s.pixel_size_lateral_m) for s in sims]
    scores = [segmentation_scores(s.seg, s.truth["phase"], s.truth["particle"], mp)
              for s, mp in zip(sims, min_px) if s.truth]
    seg = {"method": measured.seg.method, "min_diameter_m": float(min_diameter_m),
           "particles_measured": measured.seg.n_particles,
           "particles_simulated": [s.seg.n_particles for s in sims]}
    if scores:
        for k in ("phase_accuracy", "nmc_iou", "particle_precision", "particle_recall"):
            seg[f"simulated_{k}"] = float(np.nanmean([sc[k] for sc in scores]))
    return {"channels": {c: _channel_comparison(c, measured, sims, high_ohm) for c in common},
            "segmentation": seg, "sources": dict(measured.sources),
            "registration": dict(measured.registration),
            "simulated": [s.name for s in sims]}


# --- output ---------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _markdown(result: dict[str, Any]) -> str:
    from esim import __version__

    seg = result["segmentation"]
    lines = ["# esim compare: measured vs simulated maps", "",
             f"esim {__version__}.  Measured: "
             + ", ".join(f"{k} `{v}`" for k, v in result["sources"].items()) + ".",
             f"Simulated: {len(result['simulated'])} map set(s): "
             + ", ".join(f"`{s}`" for s in result["simulated"]) + ".", ""]
    for c, r in result["channels"].items():
        spec = CHANNEL_SPECS[c]
        u, du = spec.key_unit, spec.spread_unit
        lines += [f"## {spec.title} ({spec.axis_label})", "",
                  "| quantity | measured | simulated |", "|---|---|---|",
                  f"| NMC particles | {r['n_particles_measured']} | "
                  f"{r['n_particles_simulated']} |"]
        for k in ("median", "q25", "q75"):
            lines.append(f"| per-particle {k} ({u}) | {_fmt(r[f'particle_{k}_measured_{u}'])} | "
                         f"{_fmt(r[f'particle_{k}_simulated_{u}'])} |")
        if c == "ssrm":
            lines.append(f"| NMC at >= {r['high_threshold_ohm']:.3g} ohm (Wilson 95 %) | "
                         f"{_fmt(r['high_fraction_measured'])} "
                         f"{_fmt(r['high_fraction_measured_wilson95'])} | "
                         f"{_fmt(r['high_fraction_simulated'])} "
                         f"{_fmt(r['high_fraction_simulated_wilson95'])} |")
        lines.append(f"| depth gradient, CC - SE ({du}) | "
                     f"{_fmt(r[f'gradient_cc_minus_se_measured_{du}'])} | "
                     f"{_fmt(r[f'gradient_cc_minus_se_simulated_{du}'])} ± "
                     f"{_fmt(r[f'gradient_cc_minus_se_simulated_std_{du}'])} |")
        for ph in ("nmc", "se"):
            lines.append(f"| pixel median, {ph.upper()} ({u}) | "
                         f"{_fmt(r[f'pixel_median_{ph}_measured_{u}'])} | "
                         f"{_fmt(r[f'pixel_median_{ph}_simulated_{u}'])} |")
        if "ks_statistic" in r:
            lines += ["", f"Kolmogorov-Smirnov D = {r['ks_statistic']:.3f} "
                      f"(p = {r['ks_pvalue']:.3g}); Wasserstein distance "
                      f"{r[f'wasserstein_{du}']:.3g} {du}; simulated minus measured median "
                      f"{r[f'median_difference_{du}']:+.3g} {du}."]
        lines.append("")
    lines += ["## Segmentation", "",
              f"Phases from `{seg['method']}`; NMC particles split by a distance-transform "
              f"watershed, smallest diameter {seg['min_diameter_m'] * 1e6:.3g} um.  Particles: "
              f"{seg['particles_measured']} measured, {seg['particles_simulated']} simulated."]
    if "simulated_phase_accuracy" in seg:
        lines.append(f"The same method on the simulated maps, scored against their truth: "
                     f"phase accuracy {seg['simulated_phase_accuracy']:.3f}, NMC IoU "
                     f"{seg['simulated_nmc_iou']:.3f}, particle precision "
                     f"{seg['simulated_particle_precision']:.2f} and recall "
                     f"{seg['simulated_particle_recall']:.2f} (IoU > 0.5).")
    reg = result.get("registration") or {}
    if reg:
        lines += ["", "Registration onto the phase source (cross-correlation of edge images), "
                  "shift in rows, columns of the file: " + "; ".join(
                      f"{k} {v['shift_px']} px (edge correlation {_fmt(v['edge_correlation'])}"
                      f", before {_fmt(v['edge_correlation_before'])})" for k, v in reg.items())
                  + "."]
    lines += ["", "## Assumptions", "",
              ("- The channels were shifted by whole pixels onto the phase map (above); "
               "rotation, scale and drift within a scan are not corrected." if reg else
               "- The measured channels and the phase source image one area, registered to "
               "each other (`--register` corrects whole-pixel shifts)."),
              "- Only distributions are compared: the measured and simulated areas need not "
              "coincide.",
              "- Per-particle values are the peaks of each particle's pixel histogram "
              "(Otoyama et al., Research Square preprint, 2020, Methods), numbered from the "
              "current-collector side; C-AFM is compared as |I|.",
              "- KPFM is compared as V_CPD' = V_CPD + V_OCV (vs In-Li), as in the paper.", ""]
    return "\n".join(lines)


def _particles_csv(sets: Sequence[MapSet]) -> str:
    chans = [c for c in CHANNEL_SPECS if all(c in s.channels for s in sets)]
    names = ["set", "number", "label", "pixels", "depth_m",
             *[f"{c}_{CHANNEL_SPECS[c].key_unit}" for c in chans]]
    if not chans:
        return ",".join(names) + "\n"
    parts = []
    for s in sets:  # a loop over map sets; each set's particles at once
        vals = {c: s.particle_values(c) for c in chans}
        first = vals[chans[0]]
        parts.append([np.full(first.ids.size, s.name), first.number, first.ids, first.n_pixels,
                      np.asarray(first.z_m, float),
                      *[np.asarray(vals[c].peak, float) for c in chans]])
    return csv_text({k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(names)})


def write_comparison(result: dict[str, Any], measured: MapSet, sims: Sequence[MapSet],
                     out_dir: str | os.PathLike, *, figures: bool = True) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.md``, ``particles.csv`` and (``figures``)
    ``compare.png`` and ``segmentation.png`` into ``out_dir``, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "compare.json", "markdown": out / "compare.md",
             "particles_csv": out / "particles.csv"}
    atomic_write_text(files["particles_csv"], _particles_csv([measured, *sims]))
    atomic_write_text(files["markdown"], _markdown(result))
    if figures:
        from esim.plot_compare import plot_comparison, plot_segmentation

        files["figure"] = plot_comparison(result, measured, sims, out / "compare.png")
        files["segmentation_figure"] = plot_segmentation(measured, sims[0],
                                                         out / "segmentation.png")
    else:  # an earlier run's figures would not show this comparison
        for name in ("compare.png", "segmentation.png"):
            (out / name).unlink(missing_ok=True)
    # the JSON last: its presence means the comparison is complete
    atomic_write_json(files["json"], result)
    return files


# --- ranking the points of a sweep ----------------------------------------------------------
def rank_sweep(measured: MapSet, sweep_dir: str | os.PathLike, *, min_diameter_m: float = 1e-6,
               sem_classes: int = 3, sim_phases: str = "same",
               high_ohm: float = HIGH_R_OHM, quiet: bool = True) -> dict[str, Any]:
    """Compare a measured area with every parameter set of an ``esim sweep --stage spm --save``
    folder (the seeds of one set pooled) and rank the sets by the mean Kolmogorov-Smirnov
    statistic of their per-particle distributions over the common channels.

    This is a grid search, not a fit: the score has steps of 1/n for n particles, so sets
    within a step or two of the best are not told apart; the report lists each set's p-values.

    Returns
    -------
    dict
        ``vary`` (the sweep's varied fields), ``rows`` (one per parameter set, best first:
        ``overrides``, ``points``, ``score``, per-channel ``<channel>_ks``,
        ``<channel>_ks_pvalue``, ``<channel>_median_difference_<unit>``), ``best`` (the
        comparison of the best set, as :func:`compare_maps` returns it) and the best set's
        :class:`MapSet` list under ``best_sets`` (not JSON).
    """
    from esim.spm.maps import SPMMaps
    from esim.sweep import _is_seed, folder_hash

    folder = Path(sweep_dir)
    doc_path = folder / "sweep.json"
    try:
        doc = json.loads(doc_path.read_text())
        rows, vary = doc["rows"], doc["vary"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(f"{doc_path}: not the sweep.json of an esim sweep ({exc})") from exc
    if doc.get("stage") != "spm":
        raise InputFileError(f"{folder}: a sweep of stage {doc.get('stage')!r}; ranking needs "
                             "maps: run `esim sweep --stage spm --save`")
    method = "phase" if sim_phases == "truth" else measured.seg.method.split(" ")[0]
    groups: dict[str, dict[str, Any]] = {}
    stale, unchecked = [], []
    for r in rows:
        f = folder / "points" / f"point_{int(r['index']):04d}" / "spm.h5"
        if r.get("status") != "ok" or not f.is_file():
            continue
        h = folder_hash(f.parent)
        if h is None:  # saved before esim wrote the hash: cannot be checked
            unchecked.append(f.parent.name)
        elif h != r.get("params_hash"):  # maps of another parameter set
            stale.append(f.parent.name)
            continue
        key = {k: v for k, v in r["overrides"].items() if not _is_seed(k)}
        g = groups.setdefault(json.dumps(key, sort_keys=True), {"overrides": key, "files": []})
        g["files"].append(f)
    if unchecked:
        log.warning("%s: %d saved point(s) carry no parameter hash (a sweep saved by an earlier "
                    "esim), so their maps cannot be checked against their rows (%s); re-run the "
                    "sweep with --save to be sure", folder, len(unchecked),
                    ", ".join(unchecked[:5]))
    if stale:
        log.warning("%s: %d saved point(s) hold maps of other parameters than their rows "
                    "(%s): left out; re-run the sweep with --save", folder, len(stale),
                    ", ".join(stale[:5]))
    if not groups:
        raise InputFileError(f"{folder}: no finished point with saved maps (points/*/spm.h5); "
                             "run the sweep with --save")
    from esim._progress import progress

    ranked = []
    bar = progress(total=len(groups), desc="ranking", quiet=quiet)
    for g in groups.values():
        sets = [simulated_mapset(SPMMaps.load(f), method, min_diameter_m=min_diameter_m,
                                 sem_classes=sem_classes, channels=tuple(measured.channels),
                                 name=str(f)) for f in g["files"]]
        res = compare_maps(measured, sets, high_ohm=high_ohm, min_diameter_m=min_diameter_m)
        row: dict[str, Any] = {"overrides": g["overrides"], "points": len(sets)}
        ks = []
        for c, r in res["channels"].items():
            du = CHANNEL_SPECS[c].spread_unit
            row[f"{c}_ks"] = r.get("ks_statistic", float("nan"))
            row[f"{c}_ks_pvalue"] = r.get("ks_pvalue", float("nan"))
            row[f"{c}_median_difference_{du}"] = r.get(f"median_difference_{du}", float("nan"))
            ks.append(row[f"{c}_ks"])
        row["score"] = float(np.mean(ks)) if ks and np.isfinite(ks).all() else float("inf")
        ranked.append((row, res, sets))
        bar.update(1)
    bar.close()
    ranked.sort(key=lambda t: t[0]["score"])
    return {"vary": {k: v for k, v in vary.items() if not _is_seed(k)}, "sweep": str(folder),
            "rows": [t[0] for t in ranked], "best": ranked[0][1], "best_sets": ranked[0][2]}


def _fit_markdown(fit: dict[str, Any]) -> str:
    rows = fit["rows"]
    chans = [k[:-3] for k in rows[0] if k.endswith("_ks")]
    keys = list(fit["vary"])
    head = [*keys, "points", "score", *[f"{c} KS D (p)" for c in chans]]
    lines = ["# esim compare: sweep points ranked against the measured maps", "",
             f"Sweep `{fit['sweep']}`; score = mean Kolmogorov-Smirnov D of the per-particle "
             "distributions over the channels (0: indistinguishable, 1: disjoint).  A grid "
             "search, not a fit: D moves in steps of 1/n for n particles, so sets within a "
             "step or two of the best are not told apart.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([*[_fmt(r["overrides"].get(k)) for k in keys],
                                        str(r["points"]), _fmt(r["score"]),
                                        *[f"{_fmt(r[f'{c}_ks'])} ({_fmt(r[f'{c}_ks_pvalue'])})"
                                          for c in chans]]) + " |")
    lines += ["", f"Best: {json.dumps(rows[0]['overrides'])} (its full comparison: "
              "`compare.md`).", ""]
    return "\n".join(lines)


def _fit_csv(fit: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = list(fit["vary"])
    cols = [k for k in fit["rows"][0] if k not in ("overrides",)]
    w.writerow([*keys, *cols])
    for r in fit["rows"]:
        w.writerow([*[r["overrides"].get(k) for k in keys],
                    *[repr(v) if isinstance(v, float) else v for v in (r[c] for c in cols)]])
    return buf.getvalue()


def remove_fit(out_dir: str | os.PathLike) -> None:
    """Remove a ranking's ``fit.*`` from a folder a plain comparison is written into: they
    would describe another run."""
    for name in ("fit.json", "fit.csv", "fit.md", "fit.png"):
        (Path(out_dir) / name).unlink(missing_ok=True)


def write_fit(fit: dict[str, Any], measured: MapSet, out_dir: str | os.PathLike, *,
              figures: bool = True) -> dict[str, Path]:
    """``fit.csv``, ``fit.md``, ``fit.json`` (and ``fit.png``) of :func:`rank_sweep`, plus the
    full comparison of the best set (:func:`write_comparison`)."""
    out = Path(out_dir)
    files = write_comparison(fit["best"], measured, fit["best_sets"], out, figures=figures)
    files["fit_csv"] = out / "fit.csv"
    files["fit_markdown"] = out / "fit.md"
    atomic_write_text(files["fit_csv"], _fit_csv(fit))
    atomic_write_text(files["fit_markdown"], _fit_markdown(fit))
    if figures and fit["vary"]:
        from esim.plot_compare import plot_fit

        files["fit_figure"] = plot_fit(fit, out / "fit.png")
    else:
        (out / "fit.png").unlink(missing_ok=True)
    files["fit_json"] = out / "fit.json"
    doc = {k: v for k, v in fit.items() if k not in ("best", "best_sets")}
    atomic_write_json(files["fit_json"], doc)
    return files
