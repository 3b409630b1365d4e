"""Shared fixtures: small packings that build in seconds."""

from __future__ import annotations

import pytest

from esim.params import Params

SMALL = {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
         "sample_points": 100_000}


@pytest.fixture(scope="session")
def small_params() -> Params:
    """A 25 x 25 x 20 um default-composition electrode (~330 particles)."""
    return Params().replace(structure=SMALL)


@pytest.fixture(scope="session")
def small_packing(small_params):
    from esim.packing import pack

    return pack(small_params)
