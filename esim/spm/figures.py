"""Figures of the virtual SPM: the paper-style map panel, the ground truth, the I-V curves.

Each function builds its own matplotlib Figure (no pyplot state) and saves it atomically with
:func:`esim.plot.save_figure`.  Layout of :func:`plot_maps` follows Otoyama et al., Research
Square preprint (2020), Figures 2 and 3: (a) SEM, (b) EDX S, (c) EDX Ni, (d) SSRM, (e) C-AFM,
(f) KPFM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from esim.packing import PHASE_NMC, PHASE_SE
from esim.plot import PHASE_COLORS, _figure, save_figure

if TYPE_CHECKING:  # pragma: no cover
    from esim.spm.maps import SPMMaps

__all__ = ["plot_maps", "plot_truth", "plot_iv"]

_UM = 1e6


def _show(ax, fig, data, m: "SPMMaps", title: str, label: str, **kw):
    u0, u1, z0, z1 = (v * _UM for v in m.extent_m)
    im = ax.imshow(data, origin="lower", extent=(u0, u1, z0, z1), interpolation="nearest", **kw)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("lateral position (µm)")
    ax.set_ylabel("depth z from collector (µm)")
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(label)
    return cb


def _mark_iv(ax, m: "SPMMaps", prefix: str = "") -> None:
    for k, (r, c) in enumerate(m.iv_pixels):
        ax.plot(m.u_m[c] * _UM, m.z_m[r] * _UM, "o", mfc="none", mec="red", ms=7)
        ax.annotate(f"{prefix}{k + 1}", (m.u_m[c] * _UM, m.z_m[r] * _UM), color="red",
                    fontsize=8, xytext=(4, 4), textcoords="offset points")


def _number_particles(ax, m: "SPMMaps", numbers: dict[int, str]) -> None:
    """Write each numbered particle's label at the centroid of its section in the window
    (white on a dark outline: readable on any colour of the map)."""
    import matplotlib.patheffects as pe

    ids = np.array(sorted(numbers), dtype=np.int64)
    if ids.size == 0:
        return
    lab = m.particle.ravel()
    row = np.searchsorted(ids, lab)
    row = np.clip(row, 0, ids.size - 1)
    hit = ids[row] == lab
    rr, cc = np.divmod(np.flatnonzero(hit), m.particle.shape[1])
    n = np.bincount(row[hit], minlength=ids.size)
    has = n > 0
    zc = np.bincount(row[hit], weights=m.z_m[rr], minlength=ids.size)[has] / n[has]
    uc = np.bincount(row[hit], weights=m.u_m[cc], minlength=ids.size)[has] / n[has]
    for pid, u, z in zip(ids[has].tolist(), uc, zc):  # a loop over the labels drawn (~10-20)
        ax.text(u * _UM, z * _UM, numbers[pid], color="white", fontsize=8, ha="center",
                va="center", fontweight="bold",
                path_effects=[pe.withStroke(linewidth=2, foreground="black")])


def plot_maps(m: "SPMMaps", path: str | os.PathLike, *, numbers: dict[int, str] | None = None,
              iv_prefix: str = "") -> Path:
    """Six panels: SEM, EDX S, EDX Ni, SSRM (log), C-AFM |I| (log), KPFM V_CPD'.

    ``numbers`` maps particle ids to the labels written on the SSRM and KPFM panels (as the
    paper numbers its particles on its maps, Fig. 5a-d); ``iv_prefix`` goes before the I-V
    points' numbers on the C-AFM panel (the paper's "a" before and "c" after the charge)."""
    from matplotlib.colors import LogNorm

    fig = _figure(figsize=(15, 9.4), layout="constrained")
    axs = fig.subplots(2, 3)
    spm = m.spm
    _show(axs[0, 0], fig, m.sem, m, "(a) SEM", "brightness (a.u.)", cmap="gray")
    _show(axs[0, 1], fig, m.edx_s_counts, m, "(b) EDX S (SE)", "counts", cmap="inferno")
    _show(axs[0, 2], fig, m.edx_ni_counts, m, "(c) EDX Ni (NMC)", "counts", cmap="viridis")
    r_max = spm["ssrm_r_max_ohm"]
    lo = max(float(np.nanmin(m.ssrm_ohm)), r_max / 10.0**spm["ssrm_decades"])
    lo = min(10.0 ** np.floor(np.log10(lo)), r_max / 100.0)
    _show(axs[1, 0], fig, m.ssrm_ohm, m, f"(d) SSRM at {m.bias_V:g} V", "resistance (Ω)",
          cmap="jet", norm=LogNorm(vmin=lo, vmax=r_max * 1.15))
    floor = max(spm["cafm_noise_floor_A"], 1e-15)
    cur = np.clip(np.abs(m.cafm_A), floor, None)
    hi = max(float(cur.max()), floor * 10)
    _show(axs[1, 1], fig, cur, m, f"(e) C-AFM |I| at {m.bias_V:g} V", "|current| (A)",
          cmap="magma", norm=LogNorm(vmin=floor, vmax=hi))
    _mark_iv(axs[1, 1], m, iv_prefix)
    _show(axs[1, 2], fig, m.kpfm_vcpd_prime_V, m,
          f"(f) KPFM V_CPD' = V_CPD + {m.ocv_vs_inli_V:.2f} V", "V_CPD' (V)", cmap="jet")
    if numbers:
        for ax in (axs[1, 0], axs[1, 2]):
            _number_particles(ax, m, numbers)
    fig.suptitle("Virtual SPM of the milled cross-section (separator side at the top)")
    return save_figure(fig, path)


def plot_truth(m: "SPMMaps", path: str | os.PathLike) -> Path:
    """Ground truth: phase, connection class, network resistance (log), SOC."""
    from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm

    from esim.spm.maps import CLASS_NAMES

    fig = _figure(figsize=(12, 10), layout="constrained")
    axs = fig.subplots(2, 2)
    cmap = ListedColormap(PHASE_COLORS)
    cb = _show(axs[0, 0], fig, m.phase, m, "phase", "", cmap=cmap,
               norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3))
    cb.set_ticks([0, 1, 2], labels=["pore", "NMC", "SE"])
    codes = sorted(CLASS_NAMES)
    ccol = ["#000000", "#2a9d8f", "#f4a261", "#e63946", "#d9d9d9", "#7b2cbf"]
    cb = _show(axs[0, 1], fig, m.connection_class, m, "connection class of the particle", "",
               cmap=ListedColormap(ccol),
               norm=BoundaryNorm(np.arange(len(codes) + 1) - 1.5, len(codes)))
    cb.set_ticks(codes, labels=[CLASS_NAMES[c] for c in codes])
    r = np.where(np.isfinite(m.network_resistance_ohm), m.network_resistance_ohm, np.nan)
    ok = np.isfinite(r) & (r > 0)
    lo = float(np.nanmin(r[ok])) if ok.any() else 1.0
    hi = float(np.nanmax(r[ok])) if ok.any() else 10.0
    _show(axs[1, 0], fig, np.where(ok, r, np.nan), m, "network resistance to the collector",
          "resistance (Ω)", cmap="jet", norm=LogNorm(vmin=lo, vmax=max(hi, lo * 10)))
    _show(axs[1, 1], fig, np.where(m.phase == PHASE_NMC, m.soc, np.nan), m, "NMC state of charge",
          "SOC", cmap="viridis", vmin=0.0, vmax=1.0)
    fig.suptitle("Ground truth of the imaged window")
    return save_figure(fig, path)


def _distinct_colors(n: int) -> list:
    """``n`` distinct colours: matplotlib's default cycle up to 10, tab20 beyond."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]


def plot_iv(m: "SPMMaps", path: str | os.PathLike, title: str = "", *,
            numbers: dict[int, str] | None = None, prefix: str = "") -> Path:
    """I-V curves at the chosen points: current (linear, pA or nA) and |I| (log); ``title``
    goes before the sweep rate.  The points are numbered from 1 after ``prefix`` (as on the
    C-AFM map of :func:`plot_maps`); a point on a particle of ``numbers`` names its number."""
    from esim.spm.maps import CLASS_NAMES

    fig = _figure(figsize=(11, 4.5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    floor = max(m.spm["cafm_noise_floor_A"], 1e-15)
    big = m.iv_current_A.size and np.abs(m.iv_current_A).max() > 1e-9
    scale, unit = (1e9, "nA") if big else (1e12, "pA")
    # up to 10 curves in the default cycle, up to 20 in tab20 (the CLI allows 20): distinct
    colours = _distinct_colors(len(m.iv_pixels))
    for k, (r, c) in enumerate(m.iv_pixels):
        ph = {PHASE_NMC: "NMC", PHASE_SE: "SE"}.get(int(m.phase[r, c]), "pore")
        cls = CLASS_NAMES[int(m.connection_class[r, c])]
        pid = int(m.particle[r, c])
        name = f"{ph} {numbers[pid]}" if numbers and pid in numbers else ph
        lab = f"{prefix}{k + 1}: {name}, {cls}, R_net={m.network_resistance_ohm[r, c]:.2g} Ω"
        i = m.iv_current_A[k]
        ax1.plot(m.iv_voltage_V, i * scale, label=lab, color=colours[k])
        ax2.semilogy(m.iv_voltage_V, np.clip(np.abs(i), floor, None), label=lab,
                     color=colours[k])
    ax1.set_xlabel("sample bias (V)")
    ax1.set_ylabel(f"current ({unit})")
    ax1.set_title(f"{title + ': ' if title else ''}I-V at {m.spm['iv_rate_V_per_s']:g} V/s",
                  loc="left", fontsize=10)
    ax2.set_xlabel("sample bias (V)")
    ax2.set_ylabel("|current| (A)")
    if len(m.iv_pixels):  # one legend for both panels, below them: clear of every curve
        fig.legend(*ax2.get_legend_handles_labels(), loc="outside lower center", ncols=2,
                   fontsize=8, frameon=False)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
