"""Every benchmark module runs once at toy size through the harness (timings are not
asserted: machines are noisy; see benchmarks/)."""

from __future__ import annotations

import importlib
import json

import pytest

from benchmarks import run as harness


@pytest.mark.parametrize("module", harness.modules())
def test_benchmark_module_quick(module, tmp_path):
    mod = importlib.import_module(f"benchmarks.{module}")
    cases = mod.cases(True)
    assert cases and all("name" in c for c in cases)
    assert len({c["name"] for c in cases}) == len(cases)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The whole suite once at toy size (~50 s on 2 cores): every module, every case."""
    out = tmp_path_factory.mktemp("bench")
    assert harness.main(["--quick", "--out", str(out)]) == 0
    return out, json.loads((out / "quick.json").read_text())["results"]


def test_every_quick_case_runs_without_error(quick_run):
    _, rows = quick_run
    expected = {(importlib.import_module(f"benchmarks.{m}").SUITE, c["name"])
                for m in harness.modules() for c in importlib.import_module(
                    f"benchmarks.{m}").cases(True)}
    assert {(r["suite"], r["case"]) for r in rows} == expected
    esim_rows = [r for r in rows if r.get("tool") == "esim"]
    assert {r["suite"] for r in esim_rows} == {s for s, _ in expected}
    assert all("error" not in r for r in esim_rows), [r for r in esim_rows if "error" in r]
    for r in esim_rows:
        assert r["time_s"] > 0 and r["peak_rss_MiB"] > 0
    # a peer either ran or says why not (e.g. not installed): never a silent gap
    for r in rows:
        assert r.get("error") or r.get("skipped") or r["time_s"] > 0, r


def test_harness_quick_packing(quick_run):
    tmp_path, rows = quick_run
    esim_rows = [r for r in rows if r.get("tool") == "esim" and r["suite"] == "packing"]
    comp = [r for r in esim_rows if r["case"].startswith("esim_composite")][0]
    assert abs(comp["solid_fraction"] - 0.85) < 0.01
    # per-seed figures: one seed in quick mode, its iterations and time per iteration
    assert comp["iterations_per_seed"] == str(comp["iterations"])
    assert comp["ms_per_iteration"] == pytest.approx(1e3 * comp["time_s"] / comp["iterations"])
    assert (tmp_path / "quick.md").read_text().count("|") > 10


def test_harness_quick_reproduce(quick_run):
    """The main job is timed as a user runs it: the command's wall time holds the report's own
    elapsed time (figures included) plus the interpreter's start; memory is the command's."""
    _, rows = quick_run
    r = next(r for r in rows if r["suite"] == "reproduce")
    assert r["n_windows"] == 1 and r["n_seeds"] == 1
    assert 0 < r["report_elapsed_s"] < r["time_s"]
    # the subprocess's own peak (wait4), not the harness's: a process that imports numba,
    # scipy and matplotlib holds > 150 MiB, whatever the pytest process ran before this test
    # (comparing with the harness's peak failed when heavier test modules ran first)
    assert 150 < r["reproduce_peak_rss_MiB"] < 4096
    assert r["reproduce_peak_rss_MiB"] != r["peak_rss_MiB"]
    assert r["peak_rss_children_MiB"] >= r["reproduce_peak_rss_MiB"]  # the harness's column
    within, total = map(int, r["predictions_within"].split("/"))
    assert 0 <= within <= total > 0


def test_fire_alpha_study_toy(tmp_path):
    """The alpha0 study runs at toy size, writes its tables, and its alpha0 reaches the FIRE
    loop (two values on the same seed minimise along different paths)."""
    from benchmarks import fire_alpha

    assert fire_alpha.main(["--alphas", "0.05", "0.1", "--seeds", "3", "--box-m", "25e-6",
                            "--jobs", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "fire_alpha.json").read_text())
    runs = {r["alpha0"]: r for r in data["runs"]}
    assert set(runs) == {0.05, 0.1}
    assert runs[0.05]["iterations"] != runs[0.1]["iterations"]
    assert all(abs(r["solid_fraction"] - 0.85) < 0.01 for r in runs.values())
    assert "| 0.05 | 100 | 1 |" in (tmp_path / "fire_alpha.md").read_text()
    # the NMC-NMC overlap is measured on the packing and stays below 2 % of the smaller radius
    assert all(0 < r["max_nmc_overlap_rel"] < 0.02 for r in runs.values())
    assert not list(tmp_path.glob("*.tmp"))
    # the cascade step reaches the minimiser too: 0.1 straight to the tolerance
    assert fire_alpha.main(["--alphas", "0.1", "--seeds", "3", "--box-m", "25e-6",
                            "--cascade-step", "1e-3", "--jobs", "1", "--tag", "single",
                            "--out", str(tmp_path)]) == 0
    single = json.loads((tmp_path / "single.json").read_text())["runs"][0]
    assert single["cascade_step"] == 1e-3
    assert single["iterations"] != runs[0.1]["iterations"]
    # the stiffness ratio reaches the packing: a softer NMC-NMC spring, larger overlaps
    assert fire_alpha.main(["--alphas", "0.1", "--seeds", "3", "--box-m", "25e-6",
                            "--stiffness-ratios", "10", "--jobs", "1", "--tag", "soft",
                            "--out", str(tmp_path)]) == 0
    soft = json.loads((tmp_path / "soft.json").read_text())["runs"][0]
    assert soft["nmc_stiffness_ratio"] == 10
    assert soft["max_nmc_overlap_rel"] > 3 * runs[0.1]["max_nmc_overlap_rel"]
    with pytest.raises(SystemExit) as exc:
        fire_alpha.main(["--cascade-step", "1.5", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_harness_quick_sweep(quick_run):
    """Both sweep rows do the same work and get the same numbers; the two-worker row's ratio is
    its time over the one-worker time."""
    _, rows = quick_run
    sw = {r["case"]: r for r in rows if r["suite"] == "sweep"}
    one, two = sw["esim_sweep_1_worker"], sw["esim_sweep_2_worker"]
    assert one["points"] == two["points"] == 2 and one["n_failed"] == two["n_failed"] == 0
    assert one["sigma_e_S_per_m_first"] == two["sigma_e_S_per_m_first"]
    assert two["ratio_to_esim"] == pytest.approx(two["time_s"] / one["time_s"])


def test_ratios_only_for_rows_that_agree_with_esim():
    """A peer whose result differs from esim's by more than the suite's tolerance did other
    work: it gets its difference and a note, not a time ratio (a tau of 99 against esim's 2.0
    was given ratio 0.5)."""
    rows = [{"suite": "s", "tool": "esim", "work": "w", "time_s": 2.0, "tau": 2.0},
            {"suite": "s", "tool": "peer", "work": "w", "time_s": 1.0, "tau": 99.0},
            {"suite": "s", "tool": "good", "work": "w", "time_s": 4.0, "tau": 2.002},
            {"suite": "s", "tool": "mute", "work": "w", "time_s": 3.0},
            {"suite": "s", "tool": "other", "work": "v", "time_s": 3.0, "tau": 5.0},
            {"suite": "s", "tool": "nan", "work": "w", "time_s": 3.0, "tau": float("nan")}]
    harness.add_ratios(rows, {"s": {"tau": 0.01}})
    esim, bad, good, mute, other, nan = rows
    assert esim["ratio_to_esim"] == 1.0
    assert "ratio_to_esim" not in bad and bad["rel_diff_to_esim"] == pytest.approx(48.5)
    assert "tau 99 vs esim 2" in bad["agreement"]
    assert good["ratio_to_esim"] == 2.0 and good["rel_diff_to_esim"] == pytest.approx(1e-3)
    for r in (mute, nan):  # a result not reported, or NaN, is not agreement
        assert "ratio_to_esim" not in r and "no ratio: tau" in r["agreement"], r
    assert "not reported" in mute["agreement"]
    assert "ratio_to_esim" not in other  # no esim row of that work
    md = harness.markdown(rows)
    assert "above 1: slower than esim" in md and "no ratio: tau 99" in md


def test_a_failing_case_keeps_its_name_and_exit_status(monkeypatch):
    """A case killed (e.g. for memory) or timed out was reported as 'index 17 | no output'."""
    import sys

    module = harness.modules()[0]
    case = importlib.import_module(f"benchmarks.{module}").cases(True)[0]
    monkeypatch.setattr(sys, "executable", "/bin/false")
    r = harness.spawn(module, 0, True, 60.0)
    assert (r["case"], r.get("tool"), r.get("work")) == (case["name"], case.get("tool"),
                                                         case.get("work"))
    assert r["returncode"] == 1 and r["error"].startswith("exit status 1")
    monkeypatch.setattr(harness.subprocess, "Popen", _SlowPopen)
    r = harness.spawn(module, 0, True, 0.2)
    assert r["case"] == case["name"] and r["error"].startswith("timeout after")


_POPEN = harness.subprocess.Popen


class _SlowPopen:
    """A child that outlives the harness's timeout."""

    def __init__(self, *a, **k):
        self._p = _POPEN(["sleep", "30"], stdout=harness.subprocess.PIPE,
                         stderr=harness.subprocess.PIPE, text=True)

    def communicate(self, timeout=None):
        return self._p.communicate(timeout=timeout)

    def kill(self):
        self._p.kill()
