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
