"""Resuming sweeps and datasets never mixes the files of one parameter set with the marker
(or the labels) of another, and esim's commands do not overwrite each other's folders."""

from __future__ import annotations

import json

import pytest

from esim.errors import InvalidParameters
from esim.params import Params
from esim.sweep import HASH_FILE, run_sweep

SMALL = {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
         "sample_points": 20000}


@pytest.fixture(scope="module")
def base():
    return Params().replace(structure=SMALL)


def test_a_recomputed_point_drops_the_folder_of_the_point_it_replaces(base, tmp_path):
    out = tmp_path / "sw"
    run_sweep(base, {"structure.seed": [1, 2]}, "pack", out, save=True, figure=False)
    pts = out / "points"
    first = (pts / "point_0000" / HASH_FILE).read_text().strip()
    assert first == json.loads((pts / "point_0000.json").read_text())["params_hash"]
    # the same sweep with the values the other way round and no --save: both points are
    # computed again, and the saved files of the earlier seeds must not stay under their names
    res = run_sweep(base, {"structure.seed": [2, 1]}, "pack", out, figure=False)
    assert res.reused == 0
    assert not (pts / "point_0000").exists() and not (pts / "point_0001").exists()
    assert not (out / "sweep.png").exists()  # an earlier run's figure: removed, not left


def test_save_is_honoured_on_a_rerun_and_labels_are_this_runs(base, tmp_path):
    out = tmp_path / "sw"
    run_sweep(base, {"structure.seed": [1]}, "pack", out, figure=False)
    # asked again with --save: the point's files do not exist, so it is computed again
    res = run_sweep(base, {"structure.seed": [1]}, "pack", out, save=True, figure=False)
    assert res.reused == 0 and (out / "points" / "point_0000" / "packing.h5").is_file()
    # the same parameters reached by another --vary are reused, under this run's label
    frac = base.structure.nmc_fraction_of_solid
    seed = base.structure.seed
    res = run_sweep(base.replace(structure={"seed": 1}),
                    {"structure.nmc_fraction_of_solid": [frac]}, "pack", out, save=True,
                    figure=False)
    assert seed != 1 and res.reused == 1
    assert res.rows[0]["overrides"] == {"structure.nmc_fraction_of_solid": frac}
    row = json.loads((out / "points" / "point_0000.json").read_text())
    assert row["overrides"] == {"structure.nmc_fraction_of_solid": frac}
    assert f"\n0,{frac}," in (out / "sweep.csv").read_text()


def test_commands_do_not_overwrite_each_others_folders(base, tmp_path):
    from esim.dataset import generate_dataset

    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "manifest.json").write_text("{}")
    (ds / "base_params.toml").write_text("# the dataset's\n")
    with pytest.raises(InvalidParameters, match="esim dataset.*base_params.toml"):
        run_sweep(base, {"structure.seed": [1]}, "pack", ds, figure=False)
    assert (ds / "base_params.toml").read_text() == "# the dataset's\n"
    sw = tmp_path / "sw"
    sw.mkdir()
    (sw / "sweep.json").write_text("{}")
    (sw / "base_params.toml").write_text("# the sweep's\n")
    with pytest.raises(InvalidParameters, match="esim sweep.*base_params.toml"):
        generate_dataset(base, 1, sw)
    # a folder where a result file goes is refused before any work, naming it
    blocked = tmp_path / "blocked"
    (blocked / "sweep.csv").mkdir(parents=True)
    with pytest.raises(InvalidParameters, match=r"sweep\.csv is a folder"):
        run_sweep(base, {"structure.seed": [1]}, "pack", blocked, figure=False)
    assert not (blocked / "points").exists()


def test_an_atomic_write_onto_a_folder_names_the_target(tmp_path):
    from esim.io.atomic import atomic_write_text

    (tmp_path / "x.json").mkdir()
    with pytest.raises(InvalidParameters, match=r"x\.json is a folder"):
        atomic_write_text(tmp_path / "x.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="uses /proc")
def test_sigterm_to_the_driver_stops_its_workers(tmp_path):
    """A scheduler's SIGTERM reaches the driver alone: its worker processes must stop with it,
    not go on writing into the folder (they did, reparented to init, for minutes)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def children(pid):
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as fh:
                        if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                            out.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    sets = [a for k, v in SMALL.items() for a in ("--set", f"structure.{k}={v}")]
    proc = subprocess.Popen([sys.executable, "-m", "esim.cli.main", "-q", "sweep", "--stage",
                             "pack", "--workers", "2", "-o", str(tmp_path / "sw"), "--vary",
                             "structure.seed=" + ",".join(map(str, range(1, 41))), *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    kids: list[int] = []
    while time.time() < deadline and len(kids) < 2:  # the pool's two workers (and a tracker)
        time.sleep(0.5)
        kids = children(proc.pid)
    assert len(kids) >= 2 and proc.poll() is None
    time.sleep(2.0)  # the workers are computing points
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    end = time.time() + 10
    while time.time() < end and any(os.path.exists(f"/proc/{k}") for k in kids):
        time.sleep(0.2)
    alive = []
    for k in kids:
        try:
            with open(f"/proc/{k}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(k)
        except OSError:
            pass
    for k in alive:  # do not leave them behind if the test fails
        os.kill(k, signal.SIGKILL)
    assert not alive


def test_a_command_may_rerun_into_its_own_folder_beside_another_commands(tmp_path):
    """compare -o into an esim spm folder works, and so does the same compare again (its own
    files there are its own); a folder of another command alone is refused."""
    from esim.io.atomic import check_output_dir

    d = tmp_path / "run1"
    d.mkdir()
    (d / "spm.h5").write_bytes(b"")  # esim spm's folder
    files = ("compare.json", "compare.md", "particles.csv")
    check_output_dir(d, files=files, marker="compare.json")  # first compare: nothing clashes
    for f in files:
        (d / f).write_text("")
    check_output_dir(d, files=files, marker="compare.json")  # again: its own files
    (d / "compare.json").unlink()  # particles.csv now is not compare's (a dataset state's)
    with pytest.raises(InvalidParameters, match="esim spm"):
        check_output_dir(d, files=files, marker="compare.json")


def test_solve_names_a_blocked_result_file_before_any_work(tmp_path, capsys):
    from esim.cli.main import main

    out = tmp_path / "s"
    (out / "solve.json").mkdir(parents=True)
    sets = [a for k, v in SMALL.items() for a in ("--set", f"structure.{k}={v}")]
    assert main(["solve", *sets, "-o", str(out), "--no-figure"]) == 2
    assert "solve.json is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["solve.json"]  # nothing written
