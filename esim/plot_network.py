"""Figures of the effective transport properties of a packing (``esim solve``).

Each ``figure_*`` function builds and returns a matplotlib :class:`~matplotlib.figure.Figure`
(no pyplot state); each ``plot_*`` function draws it and writes it atomically with
:func:`esim.plot.save_figure`.  Conductivities are in S/m; the axes say so.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from esim.plot import PHASE_COLORS, _figure, save_figure

__all__ = ["figure_effective", "figure_soc_sweep", "plot_effective", "plot_soc_sweep"]

#: electron (NMC) and Li-ion (SE) colours; the SE yellow of the phase maps is too light for lines.
COLOR_E = PHASE_COLORS[1]
COLOR_ION = "#c47f00"


def _positive(v: float) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _um2(area_m2: float) -> str:
    """An area in m^2 as readable µm² text (thousands separated, no exponent)."""
    a = area_m2 * 1e12
    return f"{a:,.0f} µm²" if a >= 100 else f"{a:.3g} µm²"


def figure_effective(res: dict[str, Any], *, label: str | None = None):
    """Effective conductivities against the bulk values, and the connected fractions.

    Parameters
    ----------
    res : dict
        Output of :func:`esim.effective.effective_properties` (S/m, m^2, 1).
    label : str, optional
        Name of the structure, shown in the title.

    Returns
    -------
    matplotlib.figure.Figure
        (a) bulk and effective electronic and ionic conductivity, S/m, log axis, with the
        tortuosity factors; (b) NMC and SE volume fractions connected to their terminal, with
        the active NMC/SE interface area.
    """
    fig = _figure(figsize=(10.5, 3.9), layout="constrained")
    ax = fig.subplots(1, 2, width_ratios=[1.6, 1])
    names = ["NMC bulk (e⁻)", "electrode σ$_e$", "SE bulk (Li⁺)", "electrode σ$_{ion}$"]
    vals = [res["nmc_sigma_e_bulk_S_per_m"], res["sigma_e_S_per_m"],
            res["se_sigma_ion_bulk_S_per_m"], res["sigma_ion_S_per_m"]]
    colors = [COLOR_E, COLOR_E, COLOR_ION, COLOR_ION]
    hatches = ["//", "", "//", ""]
    y = np.arange(len(names))[::-1]
    pos = [v for v in vals if _positive(v)]
    floor = (min(pos) / 30.0) if pos else 1e-12
    for yi, v, c, h in zip(y, vals, colors, hatches):
        width = v if _positive(v) else floor
        ax[0].barh(yi, width - floor, left=floor, color=c if h == "" else "white",
                   edgecolor=c, hatch=h, height=0.6)
        ax[0].text(width * 1.3, yi, f"{v:.3g} S/m" if _positive(v) else "0 (no path)",
                   va="center", fontsize=8)
    ax[0].set_xscale("log")
    if pos:
        ax[0].set_xlim(floor, max(pos) * 15)
    ax[0].set_yticks(y, names)
    ax[0].set_xlabel("conductivity (S/m)")
    tau = f"tortuosity factors τ$_e$ = {res['tau_e']:.3g},  τ$_{{ion}}$ = {res['tau_ion']:.3g}"
    ax[0].set_title(f"(a) through-plane conductivity at SOC {res['soc']:.2f} "
                    f"(x = {res['x']:.2f})\n{tau}", fontsize=10)

    fr = [res["nmc_connected_fraction"], res["se_connected_fraction"]]
    ax[1].bar([0, 1], fr, color=[COLOR_E, PHASE_COLORS[2]], edgecolor=["none", COLOR_ION],
              width=0.55)
    for xi, f in enumerate(fr):
        ax[1].text(xi, min(f, 1.0) + 0.02, f"{f:.3f}", ha="center", va="bottom", fontsize=9)
    ax[1].set_xticks([0, 1], ["NMC → current\ncollector (e⁻)", "SE → separator\n(Li⁺)"])
    ax[1].set_ylim(0, 1.15)
    ax[1].set_ylabel("connected volume fraction")
    ax[1].set_title(f"(b) percolation; active NMC/SE interface\n"
                    f"{_um2(res['active_interface_area_m2'])} "
                    f"({_um2(res['interface_area_m2'])} in total)", fontsize=10)
    if label:
        fig.suptitle(label, fontsize=9, color="0.35")
    return fig


def plot_effective(res: dict[str, Any], path: str | os.PathLike, *, label: str | None = None
                   ) -> Path:
    """Draw :func:`figure_effective` and write it atomically to ``path``."""
    return save_figure(figure_effective(res, label=label), path)


def figure_soc_sweep(rows: Sequence[dict[str, Any]], *, label: str | None = None):
    """Electronic conductivity of the electrode against state of charge.

    Parameters
    ----------
    rows : sequence of dict
        Outputs of :func:`esim.effective.effective_properties`, one per SOC.
    label : str, optional
        Name of the structure, shown in the title.

    Returns
    -------
    matplotlib.figure.Figure
        sigma_e (S/m, log axis) against SOC (bottom axis) and x in Li(1-x)NMC111 (top axis);
        the NMC bulk conductivity of the material law (dotted) and the electrode's ionic
        conductivity (horizontal line) as references; the SOC where sigma_e reaches sigma_ion is
        marked when the curves cross.
    """
    rows = sorted(rows, key=lambda r: r["soc"])
    soc = np.array([r["soc"] for r in rows])
    x = np.array([r["x"] for r in rows])
    se = np.array([r["sigma_e_S_per_m"] for r in rows], dtype=float)
    bulk = np.array([r["nmc_sigma_e_bulk_S_per_m"] for r in rows], dtype=float)
    sion = float(np.median([r["sigma_ion_S_per_m"] for r in rows]))

    fig = _figure(figsize=(6.0, 4.3), layout="constrained")
    ax = fig.subplots()
    ok = np.isfinite(se) & (se > 0)
    ax.plot(soc, bulk, ls=":", color="0.45", lw=1.3, label="NMC111 bulk (material law)")
    ax.plot(soc[ok], se[ok], "o-", color=COLOR_E, lw=1.8, ms=5,
            label="electrode σ$_e$ (ion-blocking cell)")
    if _positive(sion):
        ax.axhline(sion, color=COLOR_ION, ls="--", lw=1.5,
                   label="electrode σ$_{ion}$ (electron-blocking cell)")
        d = np.log(se[ok]) - math.log(sion)
        cross = np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)
        if cross.size:
            i = cross[0]
            s0, s1 = soc[ok][i], soc[ok][i + 1]
            sc = s0 + (s1 - s0) * d[i] / (d[i] - d[i + 1])
            ax.axvline(sc, color="0.6", lw=0.8)
            ax.annotate(f"σ$_e$ = σ$_{{ion}}$\nat SOC ≈ {sc:.2f}", (sc, sion),
                        xytext=(8, -30), textcoords="offset points", fontsize=8, color="0.3")
    ax.set_yscale("log")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("state of charge SOC (1 = 164 mAh/g)")
    ax.set_ylabel("through-plane conductivity (S/m)")
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    xmax = x[-1] / soc[-1] if soc[-1] > 0 else 0.59
    top = ax.secondary_xaxis("top", functions=(lambda s: s * xmax, lambda v: v / xmax))
    top.set_xlabel("x in Li$_{1-x}$Ni$_{1/3}$Mn$_{1/3}$Co$_{1/3}$O$_2$")
    t = rows[0].get("temperature_K")
    ttl = "Electronic conductivity vs state of charge"
    if t is not None:
        ttl += f", T = {t:.0f} K"
    ax.set_title(ttl + (f"\n{label}" if label else ""), fontsize=10, pad=8)
    return fig


def plot_soc_sweep(rows: Sequence[dict[str, Any]], path: str | os.PathLike, *,
                   label: str | None = None) -> Path:
    """Draw :func:`figure_soc_sweep` and write it atomically to ``path``."""
    return save_figure(figure_soc_sweep(rows, label=label), path)
