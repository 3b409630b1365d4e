"""The esim command as a user runs it: outputs, JSON, and bad input (exit 2, one line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("argv,field", [
    (["pack", "-o", "{f}/p.h5"], "--output"),
    (["charge", "-o", "{f}/c.h5"], "--output"),
    (["spm", "--soc", "0.5", "-o", "{f}"], "--output"),
    (["spm", "--soc", "0.5", "-o", "{f}/maps"], "--output"),
    (["solve", "--soc", "0.5", "-o", "{f}"], "--outdir"),
    (["reproduce", "otoyama2020", "--quick", "-o", "{f}"], "--output"),
    (["reproduce", "otoyama2020", "--quick", "-o", "{f}/r"], "--output"),
    (["sweep", "--stage", "pack", "--vary", "structure.seed=1,2", "-o", "{f}/s"], "--outdir"),
    (["dataset", "-n", "1", "-o", "{f}"], "--outdir"),
    (["compare", "--ssrm", "{f}", "--sem", "{f}", "--sim", "{f}", "-o", "{f}"], "--outdir"),
])
def test_output_under_a_file_is_refused_before_any_work(tmp_path, capsys, argv, field):
    """An output path that is, or lies under, an existing file: exit 2 with one line naming the
    field, at once (the default parameter set would take minutes to pack and charge), and the
    file is untouched."""
    f = tmp_path / "a_file"
    f.write_text("keep me")
    assert main([a.replace("{f}", str(f)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"esim: error: {field}: ") and len(err.strip().splitlines()) == 1
    assert "a_file" in err and "Traceback" not in err
    assert f.read_text() == "keep me" and list(tmp_path.iterdir()) == [f]


@pytest.mark.parametrize("argv, needle", [
    (["pack", "-o", "{d}/p.h5", "--figure", "{d}/p.txt"], "--figure: expected a .png"),
    (["pack", "-o", "{d}/p.h5", "--figure", "{d}/p.h5"], "--figure: expected a .png"),
    (["pack", "-o", "{d}/p.h5", "--figure", "{d}/a_file/f.png"], "--figure: "),
    (["pack", "-o", "{d}/p.h5", "--no-figure", "--figure", "{d}/f.png"], "with --no-figure"),
    (["spm", "--soc", "0.5", "-o", "{d}"], "{d}/gsf exists and is not a folder"),
    (["spm", "--iv-choice", "0", "0", "0", "-o", "{d}/m"], "--iv-choice: three counts >= 0, at "
     "least one"),
    (["spm", "--iv-choice", "50", "50", "50", "-o", "{d}/m"], "--iv-choice: at most 20 I-V "
     "points"),
    (["dataset", "-n", "1", "--states", "charged", "charged", "-o", "{d}/ds"],
     "--states: a state is given twice"),
])
def test_figure_and_inner_paths_are_checked_before_any_work(tmp_path, capsys, argv, needle):
    """A figure path esim cannot draw (a suffix matplotlib does not take, under a file, or
    beside --no-figure) and a file where spm writes its gsf/ folder: exit 2 at once, not after
    the packing with the HDF5 already written."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "gsf").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.replace("{d}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert needle.replace("{d}", str(tmp_path)) in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_file_that_is_a_folder_is_refused(tmp_path, capsys):
    (tmp_path / "p.h5").mkdir()
    assert main(["pack", "-o", str(tmp_path / "p.h5")]) == 2
    assert "--output: " in capsys.readouterr().err


def test_a_refused_write_is_one_line_exit_2(monkeypatch, capsys):
    """The file system's refusals (a full disk, a permission) end like bad input: one line."""
    import esim.cli.params_cmd as params_cmd

    def refuse(args):
        raise PermissionError(13, "Permission denied", "/results/report.md")

    monkeypatch.setattr(params_cmd, "run", refuse)
    assert main(["params", "--default"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "esim: error: /results/report.md: Permission denied"


def test_console_script_runs_as_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "esim.cli.main", "pack", str(tmp_path / "x.toml")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("esim: error:") and "Traceback" not in r.stderr


def test_help_imports_no_compute_stack():
    """``esim --help`` and argument errors answer at once: building the parser imports none of
    scipy, numba or matplotlib (each subcommand imports its stage when it runs)."""
    code = ("import sys; from esim.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('scipy', 'numba', 'matplotlib') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


# -- --set SECTION.KEY=VALUE, the same on every subcommand --------------------------------------

SMALL_SET = ["--set", "structure.box_x_m=2e-5", "--set", "structure.box_y_m=2e-5",
             "--set", "structure.electrode_thickness_m=2e-5",
             "--set", "structure.sample_points=50000"]


@pytest.fixture(scope="module")
def small_packing(tmp_path_factory):
    """A ~190-particle packing made with ``esim pack --set`` (the box from the command line)."""
    out = tmp_path_factory.mktemp("pk") / "p.h5"
    assert main(["pack", "-q", "-o", str(out), "--no-figure", *SMALL_SET]) == 0
    return out


def test_params_set_prints_the_changed_set(tmp_path, capsys):
    assert main(["params", "--default", "--set", "charge.rest_time_s=7",
                 "--set", "network.contact_model=mechanical"]) == 0
    f = tmp_path / "my.toml"
    f.write_text(capsys.readouterr().out)
    p = load_params(f)
    assert p.charge.rest_time_s == 7.0 and p.network.contact_model == "mechanical"


def test_pack_set_changes_the_box(small_packing):
    from esim.packing import Packing

    pk = Packing.load(small_packing)
    assert pk.params.structure.box_x_m == 2e-5
    assert pk.box_m[0] == pytest.approx(2e-5) and pk.box_m[2] == pytest.approx(2e-5)


def test_solve_set_applies_to_a_saved_packing(small_packing, tmp_path, capsys):
    """A materials change on a saved packing reaches the solve: the pristine NMC conduction is
    thermally activated, so 320 K conducts better than 298.15 K on the same electrode."""
    sig = {}
    for t in (298.15, 320.0):
        assert main(["solve", str(small_packing), "-o", str(tmp_path / f"s{t}"), "--no-figure",
                     "--json", "--set", f"materials.temperature_K={t}"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["temperature_K"] == t
        sig[t] = d["sigma_e_S_per_m"]
    assert sig[320.0] > 1.5 * sig[298.15]


def test_spm_set_reaches_the_maps(small_packing, tmp_path):
    from esim.spm.maps import SPMMaps

    out = tmp_path / "spm"
    assert main(["spm", str(small_packing), "-q", "-o", str(out), "--no-figures", "--pixels", "64",
                 "--no-noise", "--set", "spm.tip_radius_m=5e-8"]) == 0
    maps = SPMMaps.load(out / "spm.h5")
    assert maps.spm["tip_radius_m"] == 5e-8 and maps.spm["pixels_u"] == 64


@pytest.mark.parametrize("cmd", ["solve", "charge", "spm"])
def test_saved_packing_refuses_structure_set(cmd, small_packing, tmp_path, capsys):
    """The structure of a saved packing is fixed: a structure.* item is an error naming the field
    and the file, not silently ignored, and nothing is written."""
    out = tmp_path / ("o.h5" if cmd == "charge" else "o")
    flag = "--outdir" if cmd == "solve" else "--output"
    assert main([cmd, str(small_packing), flag, str(out), "--set", "structure.seed=3"]) == 2
    err = capsys.readouterr().err
    assert "structure.seed" in err and "p.h5" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("cmd", ["params", "pack", "solve", "charge", "spm"])
@pytest.mark.parametrize("item,needle", [
    ("charge.rest_time_s=-5", "charge.rest_time_s (allowed range"),
    ("materials.colour=blue", "materials.colour: unknown parameter"),
    ("rest_time_s=5", "expected SECTION.KEY=VALUE"),
])
def test_bad_set_exit_2_before_any_work(cmd, item, needle, tmp_path, capsys):
    """A bad --set item is refused before anything is packed or written, on every command."""
    args = {"params": ["params", "--default"],
            "pack": ["pack", "-o", str(tmp_path / "o.h5")],
            "solve": ["solve", "--outdir", str(tmp_path / "o")],
            "charge": ["charge", "-o", str(tmp_path / "o.h5")],
            "spm": ["spm", "-o", str(tmp_path / "o")]}[cmd]
    assert main([*args, "--set", item]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    if cmd == "params":
        assert captured.out == ""


@pytest.mark.parametrize("argv", [
    ["charge", "{pk}", "-o", "{pk}"],
    ["charge", "{d}/pk_partial.h5", "-o", "{d}/pk.h5"],  # where a stopped charge would go
    ["spm", "{d}/spm.h5", "-o", "{d}"],
])
def test_a_command_does_not_write_over_its_input(tmp_path, capsys, small_packing, argv):
    """``esim charge pk.h5 -o pk.h5`` replaced the packing by the charge (exit 0); now it is
    refused at once, naming the field, and the input is untouched."""
    pk = tmp_path / "pk.h5"
    pk.write_bytes(small_packing.read_bytes())
    for name in ("pk_partial.h5", "spm.h5"):
        (tmp_path / name).write_bytes(pk.read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = [a.replace("{pk}", str(pk)).replace("{d}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--output: " in err and "is the input" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("argv, needle", [
    (["solve", "x.h5", "--soc", "abc"], "invalid float value: 'abc' (see esim solve -h)"),
    (["pack", "--bogus"], "unrecognized arguments: --bogus (see esim pack -h)"),
    (["reproduce", "foo"], "invalid choice: 'foo'"),
    ([], "required: COMMAND (see esim -h)"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, needle):
    """argparse printed its usage block before the error line."""
    with pytest.raises(SystemExit) as ex:
        main(argv)
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("esim: error: ") and needle in err
    assert len(err.strip().splitlines()) == 1


_WARN = """
import sys
import esim.cli.params_cmd as params_cmd
from esim.cli.main import main
from tests._warn import run
params_cmd.run = run
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("quiet", [True, False])
def test_python_warnings_are_log_lines_silenced_by_quiet(quiet):
    """numpy's RuntimeWarnings reached stderr under -q, two lines each with the source line."""
    argv = [sys.executable, "-c", _WARN, *(["-q"] if quiet else []), "params", "--default"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert r.returncode == 0, r.stderr
    if quiet:
        assert r.stderr == ""
    else:
        assert r.stderr.startswith("warning: RuntimeWarning: Mean of empty slice (_warn.py:")
        assert len(r.stderr.strip().splitlines()) == 1


def test_main_puts_back_the_hosts_warning_capture():
    """A host that captured warnings itself keeps its capture and logger level after main()."""
    import logging
    import warnings

    logging.captureWarnings(True)
    try:
        shown, lvl = warnings.showwarning, logging.getLogger("py.warnings").level
        assert main(["-q", "params", "--default"]) == 0
        assert warnings.showwarning is shown
        assert logging.getLogger("py.warnings").level == lvl
    finally:
        logging.captureWarnings(False)


@pytest.mark.parametrize("quiet", [True, False])
def test_sweep_workers_show_warnings_as_the_cli_does(quiet):
    """Sweep and dataset workers (spawned processes) printed numpy's two-line warnings under -q."""
    code = ("from esim.sweep import _init_worker; import numpy as np\n"
            f"_init_worker(None, {quiet})\nnp.nanmean(np.full(2, np.nan))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if quiet:
        assert r.stderr == ""
    else:
        assert r.stderr.startswith("warning: RuntimeWarning: Mean of empty slice")
        assert len(r.stderr.strip().splitlines()) == 1
