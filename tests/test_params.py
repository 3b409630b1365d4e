"""Parameter sets: defaults, TOML round trip, and errors that name the field and its range."""

from __future__ import annotations

import dataclasses

import pytest

from esim.errors import InputFileError, InvalidParameters
from esim.params import SECTIONS, Params, load_params, params_from_dict


def test_every_field_has_unit_and_source():
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert "unit" in f.metadata, f"{name}.{f.name} has no unit"
            assert len(f.metadata.get("source", "")) > 10, f"{name}.{f.name} has no source"


def test_toml_round_trip(tmp_path):
    p = Params().replace(structure={"seed": 11, "nmc_d50_m": 4e-6, "z_boundary": "periodic"})
    path = tmp_path / "p.toml"
    p.save(path)
    q = load_params(path)
    assert q == p
    assert q.to_json() == p.to_json()


def test_default_toml_loads_to_defaults(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text(Params().to_toml())
    assert load_params(path) == Params()


@pytest.mark.parametrize("section,key,value,needle", [
    ("structure", "nmc_d50_m", -1e-6, "structure.nmc_d50_m (allowed range [1e-08, 0.001] m)"),
    ("structure", "target_solid_fraction", 1.2, "structure.target_solid_fraction"),
    ("structure", "nmc_fraction_of_solid", 1.5, "allowed range [0, 1]"),
    ("structure", "seed", 1.5, "expected an integer"),
    ("structure", "seed", True, "expected an integer"),
    ("structure", "nmc_gsd", "wide", "expected a number"),
    ("structure", "z_boundary", "open", "one of walls, periodic"),
    ("structure", "se_overlap_allowed", 1, "expected true or false"),
    ("structure", "nmc_d50_m", float("nan"), "must be finite"),
    # above ~440 K the x = 0 activation energy would make pristine NMC out-conduct x = 0.1
    ("materials", "temperature_K", 500.0, "materials.temperature_K (allowed range [150, 430] K)"),
])
def test_bad_values_name_field_and_range(section, key, value, needle):
    with pytest.raises(InvalidParameters) as e:
        params_from_dict({section: {key: value}})
    assert needle in str(e.value)
    assert f"{section}.{key}" in str(e.value)


def test_unknown_key_and_section():
    with pytest.raises(InvalidParameters, match=r"structure\.nmc_d50: unknown parameter"):
        params_from_dict({"structure": {"nmc_d50": 5e-6}})
    with pytest.raises(InvalidParameters, match=r"strucutre: unknown section"):
        params_from_dict({"strucutre": {}})


def test_box_must_hold_particles():
    with pytest.raises(InvalidParameters, match="box_x_m"):
        params_from_dict({"structure": {"box_x_m": 5e-6}})


@pytest.mark.parametrize("charge, needle", [
    ({"initial_x": 0.5, "x_limit": 0.4}, r"charge\.initial_x: must lie below charge\.x_limit"),
    ({"dt_min_s": 0.5, "dt_initial_s": 0.1}, r"charge\.dt_initial_s: .*0\.5 <= 0\.1"),
    ({"dt_initial_s": 100.0, "dt_max_s": 10.0}, r"charge\.dt_initial_s"),
])
def test_charge_fields_that_contradict_each_other(charge, needle):
    """Caught when the set is read, naming both fields (they failed later, as 'NMC exhausted'
    or 'impossible current')."""
    with pytest.raises(InvalidParameters, match=needle):
        params_from_dict({"charge": charge})
    params_from_dict({"charge": {"initial_x": 0.3, "dt_min_s": 1e-3}})  # consistent: accepted


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputFileError, match="nope.toml: no such parameter file"):
        load_params(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[structure\nseed = 1\n")
    with pytest.raises(InputFileError, match="bad.toml: not a valid TOML"):
        load_params(bad)
    unk = tmp_path / "unk.toml"
    unk.write_text("[structure]\nfoo = 1\n")
    with pytest.raises(InvalidParameters, match="unk.toml: structure.foo"):
        load_params(unk)


def test_parse_overrides_types_and_errors():
    from esim.params import parse_overrides

    got = parse_overrides(["network.contact_model=mechanical", "structure.seed=3",
                           "spm.tip_radius_m = 2.5e-8", "spm.nonohmic=false",
                           'network.contact_model="geometric"'])
    assert got == {"network": {"contact_model": "geometric"},
                   "structure": {"seed": 3}, "spm": {"tip_radius_m": 2.5e-8, "nonohmic": False}}
    assert type(got["structure"]["seed"]) is int
    p = Params().replace(**parse_overrides(["structure.seed=3", "spm.tip_radius_m=2.5e-8"]))
    assert p.structure.seed == 3 and p.spm.tip_radius_m == 2.5e-8
    for bad in ("seed=3", "structure.seed", "structure.seed=", ".seed=3", "structure.=3"):
        with pytest.raises(InvalidParameters, match="SECTION.KEY=VALUE"):
            parse_overrides([bad])
    with pytest.raises(InvalidParameters, match="nope"):
        Params().replace(**parse_overrides(["structure.nope=1"]))


def test_a_pristine_nmc_above_the_x010_point_warns_naming_the_fields():
    """log10 sigma_e and E_a are linear in x between the table's points, so the points decide
    whether charging raises the NMC's conductivity; the bracket of the calibrated pristine value
    reaches above Amin & Chiang's x = 0.1 point: warned, not refused."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Params()  # the default rises with x
        Params().replace(materials={"nmc_sigma_e_pristine_S_per_m": 2e-3})  # 1.5e-3 < 1.7e-3
    with pytest.warns(UserWarning, match=r"nmc_sigma_e_pristine_S_per_m / materials\."
                                         r"nmc_sigma_e_x010_S_per_m / materials\.temperature_K"
                                         r".* from 0\.00735 S/m at x = 0 to 0\.00174 S/m"
                                         r".*another sample") as rec:
        Params().replace(materials={"nmc_sigma_e_pristine_S_per_m": 1e-2})
    assert rec[0].filename == __file__  # points at the caller's line, not into esim
    # a drop further up the table names its own two points, not the pristine one
    with pytest.warns(UserWarning, match=r"^materials\.nmc_sigma_e_x050_S_per_m / materials\."
                                         r"nmc_sigma_e_x075_S_per_m .*at x = 0\.75, so") as rec:
        Params().replace(materials={"nmc_sigma_e_x075_S_per_m": 1e-3})
    assert "another sample" not in str(rec[0].message)
    with pytest.warns(UserWarning, match="falls on delithiation at 360 K"):
        Params().replace(materials={"nmc_sigma_e_pristine_S_per_m": 1e-3, "temperature_K": 360.0})
