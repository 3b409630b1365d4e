"""Voxelize a packing into labelled 3D images that porespy and other image tools read.

Two images of shape ``(nx, ny, nz)`` (axis 2 is the through-plane depth z, from the current
collector at index 0 to the separator at the last index):

- ``phase``: uint8, 0 pore, 1 NMC, 2 SE (``esim.packing.PORE/PHASE_NMC/PHASE_SE``);
- ``label``: int32, the particle that owns the voxel, -1 for pore.

A voxel belongs to the phase and particle of its centre.  Where phases overlap NMC owns the
volume (the hard oxide keeps its shape; the glass flowed around it).  Within one phase, the
voxel goes to the particle whose surface is farthest away (largest ``r - |x - c|``), which splits
an overlap lens along the plane of the contact circle for equal spheres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from esim.errors import InvalidParameters
from esim.packing import PHASE_NMC, Packing

__all__ = ["VoxelImage", "voxelize"]


@dataclass(frozen=True, eq=False)
class VoxelImage:
    """A voxelized packing.

    Attributes
    ----------
    phase : (nx, ny, nz) uint8
        0 pore, 1 NMC, 2 SE.
    label : (nx, ny, nz) int32
        Owning particle index, -1 for pore.
    voxel_size_m : float, m
        Edge of a cubic voxel.
    """

    phase: np.ndarray
    label: np.ndarray
    voxel_size_m: float

    def __repr__(self) -> str:
        return f"VoxelImage(shape={self.phase.shape}, voxel_size_m={self.voxel_size_m:g})"

    def fractions(self) -> dict[str, float]:
        """Union volume fractions: solid, NMC and SE of the box, and NMC share of solid."""
        n = self.phase.size
        nmc = float(np.count_nonzero(self.phase == 1)) / n
        se = float(np.count_nonzero(self.phase == 2)) / n
        solid = nmc + se
        return {"solid_fraction": solid, "nmc_fraction": nmc, "se_fraction": se,
                "nmc_fraction_of_solid": nmc / solid if solid else 0.0}


@nb.njit(cache=True)
def _voxelize_kernel(centers, radii, phase, box, h, shape, phase_img, label_img, depth_img,
                     periodic_z):
    """Paint spheres into the images.  Each voxel keeps the best (phase priority, depth)."""
    nx, ny, nz = shape[0], shape[1], shape[2]
    for p in range(centers.shape[0]):
        r = radii[p]
        cx, cy, cz = centers[p, 0], centers[p, 1], centers[p, 2]
        i0 = int(math.floor((cx - r) / h[0] - 0.5))
        i1 = int(math.ceil((cx + r) / h[0] - 0.5))
        j0 = int(math.floor((cy - r) / h[1] - 0.5))
        j1 = int(math.ceil((cy + r) / h[1] - 0.5))
        k0 = int(math.floor((cz - r) / h[2] - 0.5))
        k1 = int(math.ceil((cz + r) / h[2] - 0.5))
        if not periodic_z:
            k0 = max(k0, 0)
            k1 = min(k1, nz - 1)
        pr = 2 if phase[p] == PHASE_NMC else 1
        for i in range(i0, i1 + 1):
            x = (i + 0.5) * h[0] - cx
            ii = i % nx
            for j in range(j0, j1 + 1):
                y = (j + 0.5) * h[1] - cy
                jj = j % ny
                for k in range(k0, k1 + 1):
                    z = (k + 0.5) * h[2] - cz
                    kk = k % nz
                    d2 = x * x + y * y + z * z
                    if d2 >= r * r:
                        continue
                    depth = r - math.sqrt(d2)
                    cur = phase_img[ii, jj, kk]
                    cur_pr = 0 if cur == 0 else (2 if cur == PHASE_NMC else 1)
                    if pr > cur_pr or (pr == cur_pr and depth > depth_img[ii, jj, kk]):
                        phase_img[ii, jj, kk] = phase[p]
                        label_img[ii, jj, kk] = p
                        depth_img[ii, jj, kk] = depth


def voxelize(packing: Packing, voxel_size_m: float | None = None, *,
             max_voxels: int = 400_000_000) -> VoxelImage:
    """Rasterise a packing onto a cubic voxel grid.

    Parameters
    ----------
    packing : Packing
    voxel_size_m : float, m, optional
        Voxel edge; defaults to 1/20 of the NMC median diameter.  Each box edge L is divided
        into ``round(L / h)`` voxels of edge ``L / round(L / h)``, so the grid tiles the
        periodic box exactly and voxels are cubic to within ``h / (2 L)`` relative.
    max_voxels : int
        Refuse images larger than this (memory while painting: 9 bytes per voxel, phase +
        label + a float32 depth buffer; 5 bytes per voxel in the result).

    Returns
    -------
    VoxelImage
    """
    h = float(packing.params.structure.nmc_d50_m / 20 if voxel_size_m is None else voxel_size_m)
    if not (h > 0 and math.isfinite(h)):
        raise InvalidParameters(f"voxel_size_m: must be a positive length in m, got {h!r}")
    shape = np.maximum(np.rint(packing.box_m / h).astype(np.int64), 1)
    n = int(np.prod(shape))
    if n > max_voxels:
        raise InvalidParameters(f"voxel_size_m: {h:g} m gives {n:,} voxels (limit "
                                f"{max_voxels:,}); use a larger voxel")
    phase_img = np.zeros(tuple(shape), np.uint8)
    label_img = np.full(tuple(shape), -1, np.int32)
    depth = np.zeros(tuple(shape), np.float32)
    hs = packing.box_m / shape
    _voxelize_kernel(np.ascontiguousarray(packing.centers_m), packing.radii_m, packing.phase,
                     packing.box_m, hs, shape, phase_img, label_img, depth, packing.periodic_z)
    return VoxelImage(phase=phase_img, label=label_img, voxel_size_m=float(hs.mean()))
