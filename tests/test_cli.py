"""The esim command as a user runs it: outputs, JSON, and bad input (exit 2, one line)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from esim.cli.main import main
from esim.params import load_params

SMALL_TOML = """
[structure]
box_x_m = 25e-6
box_y_m = 25e-6
electrode_thickness_m = 20e-6
sample_points = 50000
"""


def test_params_default_round_trips(tmp_path, capsys):
    assert main(["params", "--default"]) == 0
    out = capsys.readouterr().out
    f = tmp_path / "my.toml"
    f.write_text(out)
    load_params(f)


def test_pack_json_and_outputs(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_TOML)
    out = tmp_path / "out.h5"
    assert main(["pack", str(cfg), "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("n_particles", "solid_fraction", "nmc_fraction_of_solid", "nmc_percolates",
              "electrode_thickness_m"):
        assert k in d
    assert d["electrode_thickness_m"] == pytest.approx(20e-6)
    assert abs(d["solid_fraction"] - 0.85) < 0.01
    assert out.exists() and out.with_suffix(".png").exists()
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("toml,needle", [
    ("[structure]\nnmc_d50_m = -5e-6\n", "structure.nmc_d50_m"),
    ("[structure]\ntarget_solid_fraction = 1.2\n", "structure.target_solid_fraction"),
    ("[structure]\nnmc_fraction_of_solid = 1.01\n", "structure.nmc_fraction_of_solid"),
    ("[structure]\ncolour = 'blue'\n", "structure.colour: unknown parameter"),
])
def test_bad_input_exit_2_no_output(tmp_path, capsys, toml, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    out = tmp_path / "out.h5"
    assert main(["pack", str(cfg), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [cfg]  # no temporary files left behind


def test_missing_file_exit_2(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such parameter file" in capsys.readouterr().err


def test_console_script_runs_as_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "esim.cli.main", "pack", str(tmp_path / "x.toml")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("esim: error:") and "Traceback" not in r.stderr
