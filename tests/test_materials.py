"""Material laws: table interpolation, monotonicity, Arrhenius, SOC mapping, films, units."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from esim._params_materials import S_PER_CM, MaterialsParams, NetworkParams
from esim.errors import InvalidParameters
from esim.materials import (BOLTZMANN_eV_per_K, film_resistance_e, film_resistance_ion,
                            nmc_sigma_e, nmc_sigma_e_table, nmc_sigma_ion, se_sigma_e,
                            se_sigma_ion, soc_to_x, x_to_soc)

M = MaterialsParams()
T_REF = M.nmc_sigma_reference_temperature_K


def test_table_points_are_hit_at_reference_temperature():
    # Amin & Chiang, JES 163, A1512 (2016), S/cm at 30 C; x = 0 replaced by the calibrated value
    x = np.array([0.10, 0.30, 0.50, 0.75])
    s_cm = np.array([2.1e-5, 6.1e-4, 1.6e-3, 7.9e-3])
    np.testing.assert_allclose(nmc_sigma_e(x, T_REF, M, kind="x"), s_cm * S_PER_CM, rtol=1e-12)
    np.testing.assert_allclose(nmc_sigma_e(0.0, T_REF, M, kind="x"),
                               M.nmc_sigma_e_pristine_S_per_m, rtol=1e-12)


def test_pristine_parameter_replaces_the_table_point_and_stays_in_bracket():
    m = dataclasses.replace(M, nmc_sigma_e_pristine_S_per_m=5e-8 * S_PER_CM)
    assert nmc_sigma_e(0.0, T_REF, m, kind="x") == pytest.approx(5e-6)
    lo, hi = [f for f in dataclasses.fields(M) if f.name == "nmc_sigma_e_pristine_S_per_m"][0] \
        .metadata["range"]
    assert (lo, hi) == pytest.approx((5e-8 * S_PER_CM, 1e-4 * S_PER_CM))  # 5e-8..1e-4 S/cm
    assert "CALIBRATED" in [f for f in dataclasses.fields(M)
                            if f.name == "nmc_sigma_e_pristine_S_per_m"][0].metadata["source"]


def test_log_interpolation_between_points():
    # midway in x between 0.3 and 0.5 the log10 conductivity is the mean of the two
    mid = nmc_sigma_e(0.4, T_REF, M, kind="x")
    assert mid == pytest.approx(np.sqrt(6.1e-4 * 1.6e-3) * S_PER_CM, rel=1e-12)


def test_monotone_in_x_and_soc():
    x = np.linspace(0, 0.75, 301)
    s = nmc_sigma_e(x, M.temperature_K, M, kind="x")
    assert np.all(np.diff(s) > 0)
    soc = np.linspace(0, 1, 101)
    assert np.all(np.diff(nmc_sigma_e(soc, None, M)) > 0)
    # charged (SOC 1) over pristine (SOC 0): several orders of magnitude
    assert nmc_sigma_e(1.0, None, M) / nmc_sigma_e(0.0, None, M) > 1e2


def test_arrhenius_ratio():
    x = 0.3
    ea = 0.13  # eV at x = 0.3 (Amin & Chiang 2016)
    t1, t2 = 280.0, 340.0
    ratio = nmc_sigma_e(x, t2, M, kind="x") / nmc_sigma_e(x, t1, M, kind="x")
    assert ratio == pytest.approx(np.exp(-ea / BOLTZMANN_eV_per_K * (1 / t2 - 1 / t1)),
                                  rel=1e-12)
    # interpolated activation energy halfway between x = 0 and 0.1: (0.48 + 0.29)/2
    r2 = nmc_sigma_e(0.05, t2, M, kind="x") / nmc_sigma_e(0.05, t1, M, kind="x")
    assert r2 == pytest.approx(np.exp(-0.385 / BOLTZMANN_eV_per_K * (1 / t2 - 1 / t1)))
    # the glass: Arrhenius from 25 C
    assert se_sigma_ion(M.se_sigma_ion_reference_temperature_K, M) == pytest.approx(3.1e-2)
    assert se_sigma_ion(350.0, M) > se_sigma_ion(300.0, M)


def test_soc_x_mapping():
    assert soc_to_x(1.0, M) == pytest.approx(164 / 277.8, abs=1e-3)
    soc = np.linspace(0, 1, 7)
    np.testing.assert_allclose(x_to_soc(soc_to_x(soc, M), M), soc)
    assert soc_to_x(1.2, M) == pytest.approx(1.2 * 164 / 277.8, abs=1e-3)  # past the reference
    with pytest.raises(InvalidParameters, match="soc"):
        soc_to_x(1.0 / M.nmc_x_max + 0.01, M)  # x > 1: no Li left to remove
    with pytest.raises(InvalidParameters, match="soc"):
        soc_to_x(-0.1, M)
    with pytest.raises(InvalidParameters, match="x"):
        x_to_soc(1.1, M)


def test_other_conductivities_in_si():
    assert nmc_sigma_ion(0.5, None, M) == pytest.approx(1e-8 * S_PER_CM)
    assert se_sigma_e(None, M) == pytest.approx(1e-9 * S_PER_CM)
    assert M.se_sigma_ion_S_per_m == pytest.approx(3.1e-4 * S_PER_CM)


def test_film_resistances():
    a = np.array([1e-8, 1e-7, 1e-6])
    np.testing.assert_allclose(film_resistance_e(a, M),
                               M.film_rho_e_thickness_ohm_m2 / (np.pi * a**2))
    np.testing.assert_allclose(film_resistance_ion(a, M),
                               M.film_thickness_m / (M.film_sigma_ion_S_per_m * np.pi * a**2))
    # a 10 nm asperity contact through the default film: ~1e9 ohm (the calibration target)
    assert 3e8 < film_resistance_e(1e-8, M) < 3e9
    m0 = dataclasses.replace(M, film_rho_e_thickness_ohm_m2=0.0)  # the "off" option
    assert film_resistance_e(1e-7, m0) == 0.0


def test_every_field_has_unit_source_and_range():
    for cls in (MaterialsParams, NetworkParams):
        for f in dataclasses.fields(cls):
            md = f.metadata
            assert md["source"], f.name
            assert md["range"] or md["choices"], f.name
            default = getattr(cls(), f.name)
            if md["range"]:
                lo, hi = md["range"]
                assert lo <= default <= hi, f.name
            if "CALIBRATED" in md["source"]:
                assert "racket" in md["source"], f.name


def test_table_accessor_shapes():
    x, s, ea = nmc_sigma_e_table(M)
    assert x.shape == s.shape == ea.shape == (5,)
    assert s[0] == M.nmc_sigma_e_pristine_S_per_m
