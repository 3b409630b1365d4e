"""Figures a researcher would put in a paper.  Matplotlib with the Agg backend, no pyplot state
leaks: every function builds its own Figure and writes it atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from esim.packing import PHASE_NMC, PHASE_SE, Packing

__all__ = ["plot_packing", "PHASE_COLORS"]

# pore black, NMC dark grey-blue, SE light yellow (SEM-like: oxide brighter than glass in BSE is
# not attempted here; this is a phase map)
PHASE_COLORS = ["#000000", "#3b5b92", "#e8d67a"]


def _figure(*args, **kw):
    from matplotlib.figure import Figure

    return Figure(*args, **kw)


def sparse_log_labels(axis) -> None:
    """Label a log axis's minor ticks only at 2 and 5 times a power of ten when it spans 0.4 to
    1 decade (matplotlib's default also labels 3, 4 and 6 there: long labels such as 3x10^8
    and 4x10^8 collide in a narrow panel); ``axis`` is ``ax.xaxis`` or ``ax.yaxis``."""
    import math

    from matplotlib.ticker import FuncFormatter

    def label(x: float, pos=None) -> str:
        lo, hi = sorted(axis.get_view_interval())
        if not (x > 0 and lo > 0) or math.log10(hi / lo) >= 1.0:
            return ""  # several decades: the major labels suffice
        e = math.floor(math.log10(x) + 1e-9)
        m = round(x / 10.0**e, 6)
        if math.log10(hi / lo) > 0.4 and m not in (2.0, 5.0):
            return ""
        return f"${m:g}\\times10^{{{e}}}$"

    axis.set_minor_formatter(FuncFormatter(label))


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save a matplotlib Figure atomically (temporary file, then rename)."""
    from esim.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def plot_packing(packing: Packing, path: str | os.PathLike, *, voxel_size_m: float | None = None
                 ) -> Path:
    """Cross-section (x-z plane through the box centre) and contact statistics of a packing.

    Panels: (a) phase map of the section, current collector at the bottom; (b) distribution of
    NMC-NMC contact radii (log scale); (c) coordination numbers by partner phase for NMC.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from matplotlib.transforms import ScaledTranslation

    from esim.voxel import voxelize

    s = packing.params.structure
    h = (min(s.nmc_d50_m / 20, max(packing.box_m) / 400) if voxel_size_m is None
         else voxel_size_m)
    img = voxelize(packing, h)
    j = img.phase.shape[1] // 2
    sec = img.phase[:, j, :].T  # (z, x)
    um = 1e6
    fig = _figure(figsize=(13, 4.2), layout="constrained")
    ax = fig.subplots(1, 3, width_ratios=[1.2, 1, 1])
    ext = [0, packing.box_m[0] * um, 0, packing.box_m[2] * um]
    ax[0].imshow(sec, origin="lower", extent=ext, cmap=ListedColormap(PHASE_COLORS),
                 vmin=0, vmax=2, interpolation="nearest")
    ax[0].set_xlabel("x (µm)")
    ax[0].set_ylabel("depth z (µm)  [0 = current collector]")
    ax[0].set_title(f"(a) section y = {packing.box_m[1] * um / 2:.1f} µm")
    ax[0].legend(handles=[Patch(color=PHASE_COLORS[k], label=n) for k, n in
                          [(1, "NMC"), (2, "Li3PS4 (SE)"), (0, "pore")]],
                 loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7,
                 frameon=False,  # a fixed 0.4 inch below the axes: clear of the x label at any
                 bbox_transform=ax[0].transAxes  # box aspect (a wide box's section is flat)
                 + ScaledTranslation(0.0, -0.4, fig.dpi_scale_trans))

    pi, pj = packing.phase[packing.contacts[:, 0]], packing.phase[packing.contacts[:, 1]]
    nn = (pi == PHASE_NMC) & (pj == PHASE_NMC)
    a = packing.contact_radius_m[nn] * 1e9
    if a.size:
        bins = np.logspace(np.log10(max(a.min(), 1e-3)), np.log10(a.max() * 1.01), 30)
        ax[1].hist(a, bins=bins, color=PHASE_COLORS[1])
        ax[1].set_xscale("log")
    ax[1].axvline(s.asperity_radius_m * 1e9, color="k", ls="--", lw=0.8,
                  label="asperity minimum")
    ax[1].set_xlabel("NMC–NMC contact radius a (nm)")
    ax[1].set_ylabel("contacts")
    ax[1].set_title(f"(b) {int(nn.sum())} NMC–NMC contacts")
    ax[1].legend(fontsize=7)

    nmc = packing.phase == PHASE_NMC
    z_nn = packing.coordination(phase_j=PHASE_NMC)[nmc]
    z_ns = packing.coordination(phase_j=PHASE_SE)[nmc]
    top = int(max(z_nn.max(initial=0), z_ns.max(initial=0))) + 1
    bins = np.arange(top + 1) - 0.5
    ax[2].hist([z_nn, z_ns], bins=bins, label=["NMC–NMC", "NMC–SE"],
               color=[PHASE_COLORS[1], "#c9a227"])
    ax[2].set_xlabel("contacts per NMC particle")
    ax[2].set_ylabel("NMC particles")
    ax[2].set_title(f"(c) mean Z: NMC–NMC {z_nn.mean():.2f}, NMC–SE {z_ns.mean():.2f}",
                    fontsize="medium")
    ax[2].legend(fontsize=7)
    fr = img.fractions()
    fig.suptitle(f"esim packing: {packing.n_particles} particles, solid fraction "
                 f"{fr['solid_fraction']:.3f} (voxels), NMC:SE = "
                 f"{100 * fr['nmc_fraction_of_solid']:.1f}:"
                 f"{100 * (1 - fr['nmc_fraction_of_solid']):.1f} vol%", fontsize=10)
    return save_figure(fig, path)
