"""Figures of ``esim compare``: per-particle distributions and pixel histograms, measured beside
simulated, and the segmentation of both.  Each builds its own Figure and saves it atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from esim.packing import PHASE_NMC, PHASE_SE
from esim.plot import PHASE_COLORS, _figure, save_figure, sparse_log_labels

if TYPE_CHECKING:  # pragma: no cover
    from esim.compare import MapSet

__all__ = ["plot_comparison", "plot_segmentation", "plot_fit"]

_UM = 1e6
_MEAS = "black"
_SIM = "tab:orange"


def _ecdf(ax, x: np.ndarray, **kw) -> None:
    x = np.sort(x[np.isfinite(x)])
    if x.size:
        y = np.arange(1, x.size + 1) / x.size
        ax.step(np.concatenate([[x[0]], x]), np.concatenate([[0.0], y]), where="post", **kw)
    else:  # no value to draw: still in the legend, which says why
        ax.plot([], [], **kw)


def plot_comparison(result: dict[str, Any], measured: "MapSet", sims: Sequence["MapSet"],
                    path: str | os.PathLike) -> Path:
    """One row per channel: (left) the per-particle values' cumulative distributions, measured
    and simulated; (right) the pixel histograms of NMC and SE, measured and simulated."""
    from esim.compare import CHANNEL_SPECS

    chans = list(result["channels"])
    fig = _figure(figsize=(11, 3.6 * max(len(chans), 1)), layout="constrained")
    axs = np.atleast_2d(fig.subplots(max(len(chans), 1), 2, squeeze=False))
    for row, c in enumerate(chans):
        spec, r = CHANNEL_SPECS[c], result["channels"][c]
        ax = axs[row, 0]
        pm = np.abs(measured.particle_values(c).peak) if spec.log else \
            measured.particle_values(c).peak
        ps = np.concatenate([s.particle_values(c).peak for s in sims])
        ps = np.abs(ps) if spec.log else ps
        def above(sets) -> str:  # SSRM particles saturated above the range: not drawn
            if c != "ssrm":
                return ""
            k = sum(int(np.isposinf(x.particle_values(c, "inf").peak).sum()) for x in sets)
            return f"; {k} above {spec.histogram['value_range'][1]:.0e} Ω" if k else ""

        _ecdf(ax, pm, color=_MEAS, lw=2,
              label=f"measured (n={r['n_particles_measured']}{above([measured])})")
        _ecdf(ax, ps, color=_SIM, lw=2,
              label=f"simulated (n={r['n_particles_simulated']}{above(sims)})")
        if spec.log:
            ax.set_xscale("log")
            sparse_log_labels(ax.xaxis)
        if c == "ssrm":
            ax.axvline(r["high_threshold_ohm"], color="grey", ls=":", lw=1)
        title = f"({chr(97 + 2 * row)}) {spec.title}: NMC particles (histogram peaks)"
        if "ks_statistic" in r:
            title += f"\nKS D = {r['ks_statistic']:.2f}, p = {r['ks_pvalue']:.2g}"
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(spec.axis_label)
        ax.set_ylabel("cumulative fraction of particles")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8, loc="lower right")
        ax = axs[row, 1]
        lo, hi = spec.histogram["value_range"]
        edges = np.logspace(np.log10(lo), np.log10(hi), 61) if spec.log else \
            np.linspace(lo, hi, 61)
        for ph, name, color in ((PHASE_NMC, "NMC", PHASE_COLORS[PHASE_NMC]),
                                (PHASE_SE, "SE", "#b59b1a")):
            for side, sets, ls in (("measured", [measured], "-"), ("simulated", sims, "--")):
                v = np.concatenate([s.channels[c][s.seg.phase == ph] for s in sets])
                v = np.abs(v) if spec.log else v
                v = v[np.isfinite(v)]
                if v.size:
                    h, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
                    ax.stairs(h / v.size, edges, color=color, ls=ls, lw=1.6,
                              label=f"{name}, {side}")
        if spec.log:
            ax.set_xscale("log")
            sparse_log_labels(ax.xaxis)
        ax.set_title(f"({chr(98 + 2 * row)}) {spec.title}: pixels by phase", fontsize=10,
                     loc="left")
        ax.set_xlabel(spec.axis_label)
        ax.set_ylabel("fraction of the phase's pixels")
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def _panel(fig, ax, ms: "MapSet", channel: str | None, title: str) -> None:
    from matplotlib.colors import ListedColormap, LogNorm
    from skimage.segmentation import find_boundaries

    from esim.compare import CHANNEL_SPECS

    h, w = ms.seg.phase.shape
    ext = (0, w * ms.pixel_size_lateral_m * _UM, 0, h * ms.pixel_size_depth_m * _UM)
    if channel is None:
        im = ax.imshow(ms.seg.phase, origin="lower", extent=ext, interpolation="nearest",
                       cmap=ListedColormap(PHASE_COLORS), vmin=-0.5, vmax=2.5)
        cb = fig.colorbar(im, ax=ax, shrink=0.85, ticks=[0, 1, 2])
        cb.ax.set_yticklabels(["pore", "NMC", "SE"])
    else:
        spec = CHANNEL_SPECS[channel]
        data = ms.channels[channel]
        kw: dict = {"cmap": "jet"}
        if spec.log:
            data = np.abs(data)
            pos = data[np.isfinite(data) & (data > 0)]
            if pos.size:
                kw["norm"] = LogNorm(vmin=float(pos.min()), vmax=float(pos.max()))
        im = ax.imshow(data, origin="lower", extent=ext, interpolation="nearest", **kw)
        fig.colorbar(im, ax=ax, shrink=0.85).set_label(spec.axis_label)
    edge = find_boundaries(ms.seg.particles, mode="inner") & (ms.seg.particles >= 0)
    overlay = np.zeros((h, w, 4))
    overlay[edge] = (1.0, 1.0, 1.0, 1.0)
    ax.imshow(overlay, origin="lower", extent=ext, interpolation="nearest")
    if ms.seg.n_particles:
        pv = ms.particle_values(next(iter(ms.channels)))
        lab = ms.seg.particles
        rows, cols = np.nonzero(lab >= 0)
        ids = lab[rows, cols]
        n = np.bincount(ids, minlength=ms.seg.n_particles)
        cy = np.bincount(ids, weights=rows, minlength=n.size) / np.maximum(n, 1)
        cx = np.bincount(ids, weights=cols, minlength=n.size) / np.maximum(n, 1)
        for k, pid in zip(pv.number, pv.ids):
            ax.annotate(str(int(k)), ((cx[pid] + 0.5) * ms.pixel_size_lateral_m * _UM,
                                      (cy[pid] + 0.5) * ms.pixel_size_depth_m * _UM),
                        color="white", fontsize=7, ha="center", va="center", weight="bold")
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("lateral position (µm)")
    ax.set_ylabel("depth from collector side (µm)")


def plot_segmentation(measured: "MapSet", sim: "MapSet", path: str | os.PathLike) -> Path:
    """Phases and particle outlines (white, numbered from the collector side) on the first
    channel, for the measured area (top) and the first simulated one (bottom)."""
    fig = _figure(figsize=(11, 9.2), layout="constrained")
    axs = fig.subplots(2, 2)
    for row, (ms, label) in enumerate(((measured, "measured"), (sim, "simulated"))):
        ch = next(iter(ms.channels))
        _panel(fig, axs[row, 0], ms, ch,
               f"({chr(97 + 2 * row)}) {label}: {ch.upper()} and NMC particles")
        _panel(fig, axs[row, 1], ms, None,
               f"({chr(98 + 2 * row)}) {label}: phases ({ms.seg.method})")
    return save_figure(fig, path)


def plot_fit(fit: dict[str, Any], path: str | os.PathLike) -> Path:
    """The score and each channel's KS statistic against the first varied field (log axis when
    its values span 20x or more); the best set marked."""
    key = next(iter(fit["vary"]))
    rows = fit["rows"]
    chans = [k[:-3] for k in rows[0] if k.endswith("_ks")]
    fig = _figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    from esim.sweep import _axis_values

    x, labels, numeric = _axis_values([r["overrides"].get(key) for r in rows])
    order = np.argsort(x, kind="stable")
    lines = len(fit["vary"]) == 1  # else several sets share an x: markers only
    for c in chans:
        y = np.array([r[f"{c}_ks"] for r in rows])
        ax.plot(x[order], y[order], "o--" if lines else "o", ms=4, lw=1,
                label=f"{c.upper()} KS D")
    score = np.array([r["score"] for r in rows])
    ax.plot(x[order], score[order], "s-" if lines else "s", color="black", lw=2,
            label="score (mean D)")
    ax.plot([x[0]], [score[0]], "*", ms=16, color="tab:red", label="best")
    pos = x[x > 0]
    if not numeric:  # e.g. network.contact_model: one tick per value
        ax.set_xticks(np.arange(len(labels)), [str(v) for v in labels])
    elif pos.size and pos.max() / pos.min() >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("Kolmogorov-Smirnov D (measured vs simulated)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Sweep points against the measured maps (lower is closer)", fontsize=10,
                 loc="left")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
