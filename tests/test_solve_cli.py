"""``esim solve``: JSON keys in SI units, table and figure files, SOC dependence, bad inputs."""

from __future__ import annotations

import json
import math

import pytest

from esim.cli.main import main

SMALL_TOML = """\
[structure]
box_x_m = 25e-6
box_y_m = 25e-6
electrode_thickness_m = 20e-6
sample_points = 50000
"""

REQUIRED_KEYS = ["sigma_e_S_per_m", "sigma_ion_S_per_m", "nmc_connected_fraction",
                 "se_connected_fraction", "tau_e", "tau_ion", "active_interface_area_m2"]


@pytest.fixture(scope="module")
def small_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "small.toml"
    path.write_text(SMALL_TOML)
    return path


@pytest.fixture(scope="module")
def small_packing(tmp_path_factory, small_config):
    from esim.cli._common import params_from_arg
    from esim.packing import pack

    path = tmp_path_factory.mktemp("pk") / "packing.h5"
    pack(params_from_arg(str(small_config))).save(path)
    return path


def _solve_json(capsys, *argv):
    rc = main(["solve", *map(str, argv), "--json", "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, "--json prints exactly one JSON object"
    return json.loads(lines[0])


def test_solve_config_json_and_files(small_config, tmp_path, capsys):
    outdir = tmp_path / "out"
    d = _solve_json(capsys, small_config, "--soc", "1", "-o", outdir)
    for k in REQUIRED_KEYS:
        assert k in d
    for k in ("sigma_e", "sigma_ion"):  # solver checks beside every conductivity
        assert d[f"{k}_flux_mismatch"] < 1e-6
        assert d[f"{k}_residual"] < 1e-6
        assert isinstance(d[f"{k}_iterations"], int)
    # SI magnitudes: S/m (glass ~0.03 S/m bulk, the composite below it), m^2
    assert 0 < d["sigma_ion_S_per_m"] < d["se_sigma_ion_bulk_S_per_m"] < 1.0
    assert 0 < d["sigma_e_S_per_m"] < d["nmc_sigma_e_bulk_S_per_m"]
    assert 0 < d["active_interface_area_m2"] <= d["interface_area_m2"] < 1e-6
    assert 0 <= d["nmc_connected_fraction"] <= 1 and 0 <= d["se_connected_fraction"] <= 1
    assert d["tau_ion"] >= 1 and d["tau_e"] >= 1
    assert math.isclose(d["x"], 0.59, rel_tol=1e-12)
    assert d["packing_source"] == "packed"
    for name in ("solve.csv", "solve.md", "solve.json", "solve.png"):
        assert (outdir / name).stat().st_size > 0
    md = (outdir / "solve.md").read_text()
    assert "| sigma_e_S_per_m |" in md and "flux_mismatch" in md
    saved = json.loads((outdir / "solve.json").read_text())
    assert saved["sigma_e_S_per_m"] == d["sigma_e_S_per_m"]
    assert not list(outdir.glob(".*tmp*")), "no temporary files left behind"


def test_solve_packing_sigma_e_rises_with_soc(small_packing, tmp_path, capsys):
    d0 = _solve_json(capsys, small_packing, "--soc", "0", "-o", tmp_path / "s0", "--no-figure")
    d1 = _solve_json(capsys, small_packing, "--soc", "1", "-o", tmp_path / "s1", "--no-figure")
    assert d0["packing_source"] == "loaded"
    assert d1["sigma_e_S_per_m"] > 10 * d0["sigma_e_S_per_m"]
    # the ionic path does not depend on the NMC state of charge
    assert d1["sigma_ion_S_per_m"] == pytest.approx(d0["sigma_ion_S_per_m"], rel=1e-9)


def test_solve_soc_sweep(small_packing, tmp_path, capsys):
    outdir = tmp_path / "sw"
    d = _solve_json(capsys, small_packing, "--soc", "0.5", "--soc-sweep", "4", "-o", outdir)
    assert d["sweep_soc"] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    s = d["sweep_sigma_e_S_per_m"]
    assert len(s) == 4 and all(b > a for a, b in zip(s, s[1:]))
    for name in ("soc_sweep.csv", "soc_sweep.md", "soc_sweep.png"):
        assert (outdir / name).stat().st_size > 0
    assert (outdir / "soc_sweep.csv").read_text().count("\n") == 5


def test_solve_table_output(small_packing, tmp_path, capsys):
    rc = main(["solve", str(small_packing), "--soc", "1", "-o", str(tmp_path / "t"),
               "--no-figure", "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "sigma_e_S_per_m" in out and "nmc_connected_fraction" in out


def _bad(capsys, tmp_path, argv, needle):
    outdir = tmp_path / "bad_out"
    rc = main(["solve", *argv, "-o", str(outdir)])
    cap = capsys.readouterr()
    assert rc == 2
    err = [ln for ln in cap.err.splitlines() if ln.startswith("esim: error:")]
    assert len(err) == 1 and needle in err[0]
    assert "Traceback" not in cap.err
    assert not outdir.exists(), "a bad input leaves no output behind"


def test_missing_file(tmp_path, capsys):
    _bad(capsys, tmp_path, [str(tmp_path / "nope.h5"), "--soc", "0"], "nope.h5")
    _bad(capsys, tmp_path, [str(tmp_path / "nope.toml"), "--soc", "0"], "nope.toml")


def test_soc_out_of_range(small_packing, tmp_path, capsys):
    _bad(capsys, tmp_path, [str(small_packing), "--soc", "1.5"], "--soc")
    _bad(capsys, tmp_path, [str(small_packing), "--soc", "nan"], "--soc")
    _bad(capsys, tmp_path, [str(small_packing), "--soc", "0", "--soc-sweep", "1"],
         "--soc-sweep")


def test_corrupt_h5(tmp_path, capsys):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00garbage" * 50)
    _bad(capsys, tmp_path, [str(bad), "--soc", "0"], "corrupt.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5 at all\n")
    _bad(capsys, tmp_path, [str(text), "--soc", "0"], "text.h5")


def test_truncated_packing(small_packing, tmp_path, capsys):
    data = small_packing.read_bytes()
    cut = tmp_path / "truncated.h5"
    cut.write_bytes(data[: len(data) // 2])
    _bad(capsys, tmp_path, [str(cut), "--soc", "0"], "truncated.h5")


def test_hdf5_detected_by_signature(small_packing, tmp_path, capsys):
    renamed = tmp_path / "packing.dat"
    renamed.write_bytes(small_packing.read_bytes())
    d = _solve_json(capsys, renamed, "--soc", "0", "-o", tmp_path / "o", "--no-figure")
    assert d["packing_source"] == "loaded"
