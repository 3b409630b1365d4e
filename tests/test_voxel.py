"""Voxelization: volumes, ownership of overlaps, periodic wrap."""

from __future__ import annotations

import numpy as np
import pytest

from esim.errors import InvalidParameters
from esim.packing import PHASE_NMC, PHASE_SE, Packing
from esim.params import Params
from esim.voxel import voxelize


def make(centers, radii, phase, box, z_boundary="walls"):
    p = Params().replace(structure={"box_x_m": box[0], "box_y_m": box[1],
                                    "electrode_thickness_m": box[2], "z_boundary": z_boundary,
                                    "nmc_d50_m": 1e-6, "se_d50_m": 1e-6})
    z = np.zeros(0)
    return Packing(params=p, box_m=np.asarray(box, float), centers_m=np.asarray(centers, float),
                   radii_m=np.asarray(radii, float), phase=np.asarray(phase, np.int8),
                   contacts=np.zeros((0, 2), np.int32), contact_gap_m=z, contact_radius_m=z,
                   contact_force=z, wall_particle=np.zeros(0, np.int32),
                   wall_side=np.zeros(0, np.int8), wall_gap_m=z, wall_contact_radius_m=z,
                   wall_force=z)


def test_sphere_volume_converges():
    box = [10e-6, 10e-6, 10e-6]
    pk = make([[5e-6, 5e-6, 5e-6]], [3e-6], [PHASE_NMC], box)
    exact = 4 / 3 * np.pi * 27e-18
    errs = []
    for h in (0.5e-6, 0.25e-6, 0.125e-6):
        img = voxelize(pk, h)
        errs.append(abs(np.count_nonzero(img.phase) * h**3 - exact) / exact)
    assert errs[-1] < 0.01
    assert errs[-1] < errs[0]


def test_nmc_owns_overlap_and_labels():
    box = [10e-6, 10e-6, 10e-6]
    pk = make([[4e-6, 5e-6, 5e-6], [6e-6, 5e-6, 5e-6]], [2e-6, 2e-6], [PHASE_SE, PHASE_NMC], box)
    img = voxelize(pk, 0.1e-6)
    # the full NMC sphere is NMC, labelled 1
    nmc = img.phase == PHASE_NMC
    assert np.all(img.label[nmc] == 1)
    assert abs(nmc.sum() * 1e-21 - 4 / 3 * np.pi * 8e-18) / (4 / 3 * np.pi * 8e-18) < 0.02
    se = img.phase == PHASE_SE
    assert np.all(img.label[se] == 0)
    assert se.sum() < nmc.sum()
    assert np.all(img.label[img.phase == 0] == -1)


def test_periodic_wrap_in_x_not_in_z():
    box = [10e-6, 10e-6, 10e-6]
    pk = make([[0.5e-6, 5e-6, 0.5e-6]], [1.5e-6], [PHASE_SE], box)
    img = voxelize(pk, 0.25e-6)
    assert img.phase[-1, 20, 2] == PHASE_SE  # wrapped across x = 0
    assert img.phase[2, 20, -1] == 0  # z is bounded by walls


def test_bad_voxel_size(small_packing):
    with pytest.raises(InvalidParameters, match="voxel_size_m"):
        voxelize(small_packing, -1.0)
    with pytest.raises(InvalidParameters, match="voxel_size_m"):  # 0 is not "the default"
        voxelize(small_packing, 0.0)
    with pytest.raises(InvalidParameters, match="voxel_size_m"):
        voxelize(small_packing, 1e-9)
