"""``esim sweep`` (esim.sweep): points, validation, numbers equal to a direct run, Dask processes,
resume, failures recorded per point, bad input."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest

from esim.cli.main import main
from esim.errors import EsimError, InvalidParameters
from esim.params import Params
from esim.sweep import expand_points, parse_vary, run_sweep

SMALL = {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
         "sample_points": 50000}
SMALL_SET = [f"--set=structure.{k}={v}" for k, v in SMALL.items()]


@pytest.fixture(scope="module")
def base():
    return Params().replace(structure=SMALL)


@pytest.fixture(scope="module")
def solved(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    vary = {"structure.nmc_fraction_of_solid": [0.4, 0.7], "structure.seed": [1, 2]}
    return out, run_sweep(base, vary, "solve", out, soc=1.0)


def test_parse_vary_values_and_spacings():
    v = parse_vary(["structure.seed=1, 2,3", "network.contact_model=geometric,mechanical",
                    "materials.x=lin(0, 1, 3)", "materials.y=log(1e-3, 1e-1, 3)",
                    "spm.flag=true,false", 'spm.name="a b"'])
    assert v["structure.seed"] == [1, 2, 3]
    assert v["network.contact_model"] == ["geometric", "mechanical"]
    assert v["materials.x"] == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(v["materials.y"], [1e-3, 1e-2, 1e-1], rtol=1e-12)
    assert v["spm.flag"] == [True, False]
    assert v["spm.name"] == ["a b"]


@pytest.mark.parametrize("item, words", [
    ("structure.seed", "SECTION.KEY"), ("seed=1,2", "SECTION.KEY"), ("structure.seed=", "KEY"),
    ("structure.seed=lin(1, 2)", "lin(START"), ("structure.seed=log(0, 1, 3)", "positive"),
    ("structure.seed=lin(0, 1, 0)", "COUNT"), ("structure.seed=,", "no values")])
def test_parse_vary_rejects_malformed_items(item, words):
    with pytest.raises(InvalidParameters) as exc:
        parse_vary([item])
    assert words in str(exc.value)


def test_parse_vary_rejects_a_key_given_twice():
    with pytest.raises(InvalidParameters, match="twice"):
        parse_vary(["structure.seed=1", "structure.seed=2"])


def test_grid_and_zip_points(base):
    vary = {"structure.seed": [1, 2, 3], "structure.nmc_fraction_of_solid": [0.5, 0.6]}
    grid = expand_points(base, vary)
    assert len(grid) == 6 and len({json.dumps(p, sort_keys=True) for p in grid}) == 6
    assert grid[0] == {"structure.seed": 1, "structure.nmc_fraction_of_solid": 0.5}
    with pytest.raises(InvalidParameters, match="same number"):
        expand_points(base, vary, mode="zip")
    zipped = expand_points(base, {"structure.seed": [1, 2], "structure.nmc_gsd": [1.2, 1.3]},
                           mode="zip")
    assert zipped == [{"structure.seed": 1, "structure.nmc_gsd": 1.2},
                      {"structure.seed": 2, "structure.nmc_gsd": 1.3}]


def test_a_bad_point_names_the_point_and_the_field(base):
    with pytest.raises(InvalidParameters) as exc:
        expand_points(base, {"structure.nmc_fraction_of_solid": [0.5, 1.5]})
    msg = str(exc.value)
    assert "point 1" in msg and "nmc_fraction_of_solid" in msg
    with pytest.raises(InvalidParameters, match="no_such_key"):
        expand_points(base, {"structure.no_such_key": [1]})


def test_numbers_equal_a_direct_run(solved, base):
    from esim.effective import effective_properties
    from esim.packing import pack

    _, res = solved
    assert [r["status"] for r in res.rows] == ["ok"] * 4
    row = res.rows[3]
    assert row["overrides"] == {"structure.nmc_fraction_of_solid": 0.7, "structure.seed": 2}
    p = base.replace(structure={"nmc_fraction_of_solid": 0.7, "seed": 2})
    direct = effective_properties(pack(p), p, 1.0)
    for key in ("sigma_e_S_per_m", "sigma_ion_S_per_m", "tau_e", "nmc_connected_fraction"):
        assert row[key] == direct[key], key


def test_more_nmc_conducts_electrons_better_and_ions_worse(solved):
    _, res = solved
    f = np.array([r["overrides"]["structure.nmc_fraction_of_solid"] for r in res.rows])
    se, si = res.column("sigma_e_S_per_m"), res.column("sigma_ion_S_per_m")
    assert se[f == 0.7].min() > 3 * se[f == 0.4].max()
    assert si[f == 0.7].max() < si[f == 0.4].min()


def test_tables_and_figure(solved):
    out, res = solved
    with open(out / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert {"structure.nmc_fraction_of_solid", "structure.seed", "status",
            "sigma_e_S_per_m"} <= set(rows[0])
    assert float(rows[2]["sigma_e_S_per_m"]) == res.rows[2]["sigma_e_S_per_m"]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["n_points"] == 4 and doc["stage"] == "solve" and doc["soc"] == 1.0
    assert doc["vary"] == {"structure.nmc_fraction_of_solid": [0.4, 0.7],
                           "structure.seed": [1, 2]}
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| index |" in (out / "sweep.md").read_text()
    assert len(list((out / "points").glob("point_*.json"))) == 4


def test_an_unknown_metric_is_named_with_the_stage_numbers(solved, tmp_path, caplog):
    from esim.sweep import plot_sweep

    _, res = solved
    with caplog.at_level("WARNING", logger="esim.sweep"):
        plot_sweep(res, tmp_path / "m.png", metrics=["foo", "sigma_e_S_per_m"])
    assert "--metric foo: not a number of the solve stage" in caplog.text
    assert "sigma_e_S_per_m" in caplog.text.split("its numbers are")[1]
    caplog.clear()
    with caplog.at_level("WARNING", logger="esim.sweep"):
        plot_sweep(res, tmp_path / "n.png", metrics=["sigma_e_S_per_m"])
    assert not caplog.text


def test_a_length_below_a_millimetre_is_drawn_in_nm_or_um(tmp_path, monkeypatch):
    """A tip radius of 5e-9 m is drawn at 5 on an axis in nm (it was 0.5 with a 1e-8 offset
    on an axis in m); a box of 2e-5 m in um; a length above a millimetre stays in m."""
    import esim.plot
    from esim.sweep import SweepResult, plot_sweep

    drawn = {}

    def keep(fig, path, dpi=150):
        ax = fig.axes[0]
        drawn[str(path)] = (ax.get_xlabel(), sorted(ax.lines[0].get_xdata()))
        return path

    monkeypatch.setattr(esim.plot, "save_figure", keep)
    for key, values, label, xs in (("spm.tip_radius_m", [5e-9, 2e-8], "spm.tip_radius (nm)",
                                    [5.0, 20.0]),
                                   ("structure.box_x_m", [2e-5, 4e-5], "structure.box_x (µm)",
                                    [20.0, 40.0]),
                                   ("charge.separator_thickness_m", [2e-3, 4e-3],
                                    "charge.separator_thickness (m)", [2e-3, 4e-3])):
        rows = [{"index": i, "status": "ok", "overrides": {key: v}, "n_particles": 10 + i}
                for i, v in enumerate(values)]
        res = SweepResult(keys=[key], stage="pack", rows=rows, vary={key: values}, reused=0,
                          elapsed_s=0.0)
        plot_sweep(res, tmp_path / f"{key}.png", metrics=["n_particles"])
        got_label, got_x = drawn[str(tmp_path / f"{key}.png")]
        assert got_label == label
        np.testing.assert_allclose(got_x, xs, rtol=1e-12)


def test_resume_reuses_matching_points_only(solved, base):
    out, res = solved
    vary = {"structure.nmc_fraction_of_solid": [0.4, 0.7], "structure.seed": [1, 2]}
    again = run_sweep(base, vary, "solve", out, soc=1.0, figure=False)
    assert again.reused == 4
    assert [r["sigma_e_S_per_m"] for r in again.rows] == [r["sigma_e_S_per_m"] for r in res.rows]
    # a different SOC is a different point: nothing reused, other numbers
    other = run_sweep(base, vary, "solve", out, soc=0.0, figure=False)
    assert other.reused == 0
    assert other.rows[0]["sigma_e_S_per_m"] < res.rows[0]["sigma_e_S_per_m"]


def test_entries_of_an_earlier_larger_run_are_named(tmp_path, caplog):
    from esim.sweep import warn_stale

    for name in ("point_0000.json", "point_0001.json", "point_0002.json", "point_0002",
                 "point_0010.json", "notes.txt"):
        (tmp_path / name).mkdir() if "." not in name else (tmp_path / name).write_text("{}")
    with caplog.at_level("WARNING", logger="esim.sweep"):
        assert warn_stale(tmp_path, "point_", 2, "sweep") == ["point_0002", "point_0002.json",
                                                              "point_0010.json"]
    assert "3 entries from an earlier, larger run remain" in caplog.text
    caplog.clear()
    assert warn_stale(tmp_path, "point_", 11, "sweep") == [] and not caplog.text


def test_processes_give_the_same_numbers(solved, base, tmp_path):
    _, res = solved
    vary = {"structure.nmc_fraction_of_solid": [0.4, 0.7], "structure.seed": [1, 2]}
    par = run_sweep(base, vary, "solve", tmp_path, soc=1.0, workers=2, figure=False)
    for a, b in zip(res.rows, par.rows):
        assert a["overrides"] == b["overrides"]
        assert a["sigma_e_S_per_m"] == b["sigma_e_S_per_m"]
        assert a["sigma_ion_S_per_m"] == b["sigma_ion_S_per_m"]


def test_a_failing_point_is_recorded_and_the_others_run(base, tmp_path, monkeypatch):
    import esim.sweep as sw

    real = sw._stage_numbers

    def fake(stage, packing, params, soc, save_dir, quick=False, overrides=None):
        if params.structure.seed == 2:
            raise EsimError("no NMC touches the collector")
        return real(stage, packing, params, soc, save_dir, quick, overrides)

    monkeypatch.setattr(sw, "_stage_numbers", fake)
    res = run_sweep(base, {"structure.seed": [1, 2, 3]}, "pack", tmp_path, figure=False)
    assert [r["status"] for r in res.rows] == ["ok", "failed", "ok"]
    assert res.rows[1]["error"] == "no NMC touches the collector"
    assert res.n_failed == 1
    assert "Point 1 failed: no NMC" in (tmp_path / "sweep.md").read_text()


def test_cli_pack_stage_json(tmp_path, capsys):
    rc = main(["-q", "sweep", *SMALL_SET, "--stage", "pack", "--vary", "structure.seed=1,2",
               "-o", str(tmp_path / "s"), "--json", "--save", "--no-figure"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_points"] == 2 and d["n_failed"] == 0
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())["rows"]
    assert rows[0]["solid_fraction"] != rows[1]["solid_fraction"]  # two seeds, two packings
    assert abs(rows[0]["solid_fraction"] - 0.85) < 0.01
    assert (tmp_path / "s" / "points" / "point_0001" / "packing.h5").exists()


@pytest.mark.parametrize("argv, words", [
    (["--vary", "structure.nmc_fraction_of_solid=0.5,2"], "nmc_fraction_of_solid"),
    (["--vary", "structure.bogus=1"], "bogus"),
    (["--vary", "seed=1"], "SECTION.KEY"),
    ([], "--vary"),
    (["--vary", "structure.seed=1,2", "--workers", "0"], "--workers"),
    (["--vary", "structure.seed=1,2", "--soc", "2"], "--soc"),
    (["--vary", "structure.seed=1,2", "--zip", "--vary", "structure.nmc_gsd=1.2"], "same number"),
    (["--stage", "otoyama2020", "--quick", "--vary", "spm.plane_position_m=1e-5,2e-5"],
     "spm.plane_position_m: the otoyama2020 stage sets it"),
    (["--stage", "otoyama2020", "--quick", "--vary", "spm.seed=1,2"], "vary structure.seed"),
    (["--quick", "--stage", "solve", "--vary", "structure.seed=1,2"], "--quick: applies to the "
     "otoyama2020 stage only"),
    (["--vary", "structure.seed=1,2,1"], "sweep point 2 (structure.seed=1): the same parameters "
     "as point 0"),
    (["--zip", "--vary", "structure.seed=1,1", "--vary", "spm.tip_radius_m=1e-8,1e-8"],
     "the same parameters as point 0"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "s"
    assert main(["sweep", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("esim: error:") and words in err and "Traceback" not in err
    assert not out.exists()


def test_charge_stage_a_current_too_high_is_an_incomplete_result(tmp_path):
    base = Params().replace(structure={"box_x_m": 24e-6, "box_y_m": 24e-6,
                                       "sample_points": 200_000})
    res = run_sweep(base, {"charge.current_density_A_per_m2": [1.3, 13.0]}, "charge", tmp_path,
                    figure=False)
    ok, high = res.rows
    assert ok["status"] == "ok" and ok["stop_reason"] == "cutoff"
    assert abs(ok["capacity_mAh_per_g"] - 164) < 16  # Otoyama et al. 2020: 164 mAh/g
    assert high["status"] == "incomplete" and high["error"]
    assert high["capacity_mAh_per_g"] < 0.5 * ok["capacity_mAh_per_g"]
    assert res.n_failed == 0 and res.n_incomplete == 1


def test_differences_from_defaults():
    from esim.sweep import differences_from_defaults

    assert differences_from_defaults(Params()) == {}
    p = Params().replace(spm={"tip_radius_m": 5e-8}, structure={"seed": 7})
    assert differences_from_defaults(p) == {"spm": {"tip_radius_m": 5e-8},
                                            "structure": {"seed": 7}}


def test_otoyama2020_stage_keeps_a_varied_value_equal_to_its_default():
    """A point's varied value reaches the preset even when it equals the built-in default: the
    quick preset's 24 um box used to replace a varied box_x_m = 40 um (the default), silently."""
    from esim.reproduce import preset_variant
    from esim.sweep import otoyama2020_overrides

    default_box = Params().structure.box_x_m
    assert preset_variant(True).structure.box_x_m != default_box  # the quick preset's box
    base = Params().replace(spm={"tip_radius_m": 2e-8})  # a base-set change also reaches it
    point = {"structure.box_x_m": default_box}
    ovr = otoyama2020_overrides(base.replace(structure={"box_x_m": default_box}), point)
    assert ovr == {"structure": {"box_x_m": default_box}, "spm": {"tip_radius_m": 2e-8}}
    p = preset_variant(True, ovr)
    assert p.structure.box_x_m == default_box and p.spm.tip_radius_m == 2e-8
    # the resume key tells the two apart: the same parameters, different preset changes
    from esim.sweep import point_hash

    assert point_hash(Params(), "otoyama2020", 0.0, True, ovr) != point_hash(
        Params(), "otoyama2020", 0.0, True, None)


def test_otoyama2020_stage_is_esim_reproduce_and_responds_to_the_tip(tmp_path):
    from esim.reproduce import run_otoyama2020

    res = run_sweep(Params(), {"spm.tip_radius_m": [10e-9, 50e-9]}, "otoyama2020",
                    tmp_path / "s", quick=True, figure=False)
    default, wide = res.rows
    assert default["status"] == wide["status"] == "ok"
    rep = run_otoyama2020(tmp_path / "r", quick=True, figures=False)  # the preset, unchanged
    assert not list((tmp_path / "r").glob("*.png"))
    for key in ("high_r_fraction", "ssrm_nmc_after_low_ohm", "vcpd_gradient_cc_minus_se_V",
                "kpfm_nmc_after_V"):
        assert default[key] == rep["aggregate"][key]["mean"], key
    assert default["capacity_mAh_per_g"] == rep["charge"]["capacity_mAh_per_g"]
    assert default["rows_within"] == sum(r["within"] for r in rep["rows"])
    assert default["rows_total"] == len(rep["rows"])
    pred = [r for r in rep["rows"] if r["kind"] == "prediction"]
    assert default["predictions_total"] == len(pred) < len(rep["rows"])
    assert default["predictions_within"] == sum(r["within"] for r in pred)
    # a wider tip lowers the spreading part rho/(4a) of the charged NMC reading, and nothing
    # upstream of the imaging changes
    assert wide["ssrm_nmc_after_low_ohm"] < 0.8 * default["ssrm_nmc_after_low_ohm"]
    assert wide["capacity_mAh_per_g"] == default["capacity_mAh_per_g"]


def test_figure_draws_a_second_varied_field_as_series(tmp_path, monkeypatch):
    """A second varied non-seed field is one series per value, averaged over the seeds only,
    not pooled into the spread; a single varied field keeps one pooled series."""
    import esim.plot
    from esim.sweep import SweepResult, plot_sweep

    figs = []
    monkeypatch.setattr(esim.plot, "save_figure", lambda fig, path: figs.append(fig) or path)
    rows = []
    for k, (a, barrier, seed) in enumerate(itertools.product([1e-8, 2e-8], [True, False], [1, 2])):
        rows.append({"index": k, "status": "ok", "y_ohm": a * 1e16 * (2 if barrier else 1) + seed,
                     "overrides": {"spm.tip_radius_m": a, "spm.nonohmic": barrier,
                                   "structure.seed": seed}})
    keys = ["spm.tip_radius_m", "spm.nonohmic", "structure.seed"]
    plot_sweep(SweepResult(keys=keys, stage="spm", rows=rows), tmp_path / "a.png", ["y_ohm"])
    ax = figs[-1].axes[0]
    (legend,) = figs[-1].legends  # one legend for the panels, below them
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["nonohmic = False: mean ± std (2 points each)",
                      "nonohmic = True: mean ± std (2 points each)"]
    means = sorted(np.ptp(c.get_children()[0].get_ydata()) for c in ax.containers)
    assert means == pytest.approx([1e8, 2e8])  # each series rises with the radius on its own
    one = [r | {"overrides": {k: v for k, v in r["overrides"].items() if k != "spm.nonohmic"}}
           for r in rows if r["overrides"]["spm.nonohmic"]]
    plot_sweep(SweepResult(keys=[keys[0], keys[2]], stage="spm", rows=one), tmp_path / "b.png",
               ["y_ohm"])
    labels = [t.get_text() for t in figs[-1].legends[0].get_texts()]
    assert labels == ["points", "mean ± std (2 points each)"]


def test_an_unknown_metric_ends_the_sweep_with_exit_2_keeping_its_points(base, solved,
                                                                          tmp_path, capsys):
    """A --metric typo ran the sweep, warned, drew another metric and exited 0; now it exits 2
    naming the stage's numbers, the points and tables kept (a re-run reuses them)."""
    import shutil

    from esim.cli.main import main
    from esim.errors import InvalidParameters

    out = tmp_path / "copy"
    shutil.copytree(solved[0], out)
    vary = {"structure.nmc_fraction_of_solid": [0.4, 0.7], "structure.seed": [1, 2]}
    with pytest.raises(InvalidParameters, match="--metric bogus: not a number of the solve "
                                                "stage .*sigma_e_S_per_m.* reuses them"):
        run_sweep(base, vary, "solve", out, soc=1.0, metrics=["bogus"])
    assert (out / "sweep.csv").is_file() and not (out / "sweep.png").exists()
    assert len(list((out / "points").glob("point_*.json"))) == 4
    toml = tmp_path / "base.toml"
    toml.write_text(base.to_toml())
    assert main(["sweep", str(toml), "--stage", "solve", "--soc", "1", "-q", "--metric",
                 "bogus", "--vary", "structure.nmc_fraction_of_solid=0.4,0.7",
                 "--vary", "structure.seed=1,2", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--metric bogus" in err and len(err.strip().splitlines()) == 1


def test_a_sweep_whose_points_all_failed_reports_the_failures_not_the_metric(base, tmp_path,
                                                                             monkeypatch):
    """With every point failed the rows hold no numbers: a correct --metric was called unknown
    (exit 2), hiding the failures; now the sweep ends as without --metric."""
    import esim.sweep as sw

    def failing(params_json, stage, soc=0.0, save_dir=None, quick=False, overrides=None):
        return {"status": "failed", "error": "PackingFailed: test", "pack_s": None,
                "stage_s": None}

    monkeypatch.setattr(sw, "run_point", failing)
    res = run_sweep(base, {"structure.seed": [1, 2]}, "solve", tmp_path / "f",
                    metrics=["sigma_e_S_per_m"], figure=False)
    assert res.n_failed == 2
