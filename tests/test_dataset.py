"""``esim dataset`` (esim.dataset): files, per-pixel and per-particle truth consistent with the
maps, seeds, the charged state's physics direction, resume, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from esim.cli.main import main
from esim.dataset import generate_dataset
from esim.params import Params

QUICK = {"box_x_m": 24e-6, "box_y_m": 24e-6, "sample_points": 200_000}


@pytest.fixture(scope="module")
def base():
    return Params().replace(structure=QUICK, spm={"pixels_u": 96, "pixels_z": 96})


@pytest.fixture(scope="module")
def dataset(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    return out, generate_dataset(base, 2, out, first_seed=1)


def _csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_manifest_lists_every_sample_and_state(dataset):
    out, res = dataset
    rows = _csv(out / "manifest.csv")
    assert [(r["sample"], r["state"], r["seed"]) for r in rows] == [
        ("0", "pristine", "1"), ("0", "charged", "1"), ("1", "pristine", "2"),
        ("1", "charged", "2")]
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:
        folder = out / r["folder"]
        for name in ("spm.h5", "particles.csv", "gsf/ssrm_ohm.gsf", "gsf/truth_particle.gsf"):
            assert (folder / name).exists(), folder / name
    assert json.loads((out / "manifest.json").read_text())["n_samples"] == 2
    assert (out / "base_params.toml").exists()
    readme = (out / "README.md").read_text()
    assert "gsf/ssrm_ohm.gsf" in readme and "truth_particle" in readme
    assert "2 electrode(s)" in readme
    # EDX maps are counts (their GSF carries no unit: Gwyddion misreads "counts")
    assert "| `gsf/edx_s_counts.gsf` | EDX S (counts) | counts |" in readme


def test_truth_files_agree_with_the_maps(dataset):
    from esim.io.gsf import read_gsf
    from esim.packing import PHASE_NMC
    from esim.spm.maps import CLASS_NAMES, SPMMaps

    out, _ = dataset
    for state in ("pristine", "charged"):
        folder = out / "sample_00000" / state
        maps = SPMMaps.load(folder / "spm.h5")
        np.testing.assert_array_equal(read_gsf(folder / "gsf" / "truth_particle.gsf").data,
                                      maps.particle.astype(np.float32))
        np.testing.assert_array_equal(read_gsf(folder / "gsf" / "phase.gsf").data,
                                      maps.phase.astype(np.float32))
        rows = _csv(folder / "particles.csv")
        assert [int(r["particle"]) for r in rows] == maps.window_particles.tolist()
        pr = maps.particle_readings()
        for k, r in enumerate(rows):
            assert r["connection_class"] == CLASS_NAMES[int(maps.window_class[k])]
            assert int(r["pixels"]) == pr["pixels"][k] == np.count_nonzero(
                maps.particle == maps.window_particles[k])
            r_net = maps.window_resistance_ohm[k]
            assert float(r["network_resistance_ohm"]) == r_net  # full precision, inf as "inf"
            a = maps.window_bottleneck_radius_m[k]  # "" where the particle has no path
            assert (r["bottleneck_contact_radius_m"] == "") == (not np.isfinite(r_net))
            if np.isfinite(r_net):
                assert float(r["bottleneck_contact_radius_m"]) == a > 0
                assert 0 < float(r["bottleneck_kept_fraction"]) <= 1
            if maps.window_phase[k] == PHASE_NMC:
                assert r["phase"] == "NMC"
                assert float(r["soc"]) == maps.window_soc[k]
                assert float(r["ssrm_ohm"]) == pr["ssrm_ohm"][k]
            else:
                assert r["phase"] == "SE" and r["soc"] == ""


def test_samples_differ_and_a_seed_reproduces_its_sample(dataset, base, tmp_path):
    from esim.spm.maps import SPMMaps

    out, _ = dataset
    a = SPMMaps.load(out / "sample_00000" / "pristine" / "spm.h5")
    b = SPMMaps.load(out / "sample_00001" / "pristine" / "spm.h5")
    assert not np.array_equal(a.particle, b.particle)
    again = generate_dataset(base, 1, tmp_path, first_seed=2, states=("pristine",))
    assert again.rows[0]["seed"] == 2
    c = SPMMaps.load(tmp_path / "sample_00000" / "pristine" / "spm.h5")
    for name in ("ssrm_ohm", "kpfm_vcpd_prime_V", "particle", "network_resistance_ohm"):
        np.testing.assert_array_equal(getattr(c, name), getattr(b, name))


def test_the_charge_shows_in_the_maps(dataset):
    out, _ = dataset
    for sample in ("sample_00000", "sample_00001"):
        before = {r["particle"]: r for r in _csv(out / sample / "pristine" / "particles.csv")}
        after = _csv(out / sample / "charged" / "particles.csv")
        conn = [r for r in after if r["phase"] == "NMC" and r["connection_class"] == "connected"]
        assert conn
        for r in conn:
            assert float(r["soc"]) > 0.5
            assert float(before[r["particle"]]["soc"]) == 0.0
            # Otoyama et al. 2020: NMC V_CPD' ~2.1 V before and ~3.2 V after the charge, and the
            # SSRM reading falls from the ~2e9 ohm ceiling
            assert float(r["kpfm_vcpd_prime_V"]) - float(
                before[r["particle"]]["kpfm_vcpd_prime_V"]) > 0.7
            assert float(r["ssrm_ohm"]) < 0.5 * float(before[r["particle"]]["ssrm_ohm"])


def test_resume_reuses_complete_samples(dataset, base):
    out, res = dataset
    stamp = (out / "sample_00001" / "charged" / "spm.h5").stat().st_mtime_ns
    again = generate_dataset(base, 2, out, first_seed=1)
    assert again.reused == 2
    assert again.rows == res.rows
    assert (out / "sample_00001" / "charged" / "spm.h5").stat().st_mtime_ns == stamp


def test_dataset_processes_give_the_same_maps(base, tmp_path):
    from esim.spm.maps import SPMMaps

    b = base.replace(spm={"pixels_u": 48, "pixels_z": 48})
    one = generate_dataset(b, 2, tmp_path / "one", states=("pristine",))
    two = generate_dataset(b, 2, tmp_path / "two", states=("pristine",), workers=2)
    assert one.n_failed == two.n_failed == 0
    for k in range(2):
        a = SPMMaps.load(tmp_path / "one" / f"sample_{k:05d}" / "pristine" / "spm.h5")
        c = SPMMaps.load(tmp_path / "two" / f"sample_{k:05d}" / "pristine" / "spm.h5")
        for name in ("ssrm_ohm", "kpfm_vcpd_prime_V", "particle", "sem"):
            np.testing.assert_array_equal(getattr(a, name), getattr(c, name))


@pytest.mark.parametrize("argv, words", [
    (["--samples", "0"], "--samples"),
    (["--set", "structure.nmc_fraction_of_solid=2"], "nmc_fraction_of_solid"),
    (["--workers", "0"], "--workers"),
    (["--first-seed", "-1"], "--first-seed"),
    (["--set", "structure.seed=5"], "structure.seed: each sample's seeds are --first-seed + i"),
    (["--set", "spm.seed=5"], "use --first-seed instead of setting spm.seed"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "d"
    assert main(["dataset", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("esim: error:") and words in err and "Traceback" not in err
    assert not out.exists()


def test_sample_params_calibrate_kpfm_unless_the_base_set_changes_it():
    """Each sample gets the KPFM coupling calibrated as in esim reproduce, but a coupling key the
    user set (it differs from the built-in default) is kept, not silently overridden."""
    from esim.dataset import sample_params
    from esim.reproduce import kpfm_calibration

    p = sample_params(Params(), 7)
    assert (p.structure.seed, p.spm.seed) == (7, 7)
    for k, v in kpfm_calibration(p).items():
        assert getattr(p.spm, k) == pytest.approx(v)
    assert p.spm.kpfm_beta != Params().spm.kpfm_beta  # the calibration changes it
    mine = sample_params(Params().replace(spm={"kpfm_beta": 1.5}), 7)
    assert mine.spm.kpfm_beta == 1.5
    assert mine.spm.ocp_u0_V == pytest.approx(kpfm_calibration(p)["ocp_u0_V"])


def test_a_regenerated_sample_keeps_nothing_of_the_one_it_replaces(base, tmp_path):
    """Other seeds into the same folder regenerate the sample from nothing: no charged state or
    charge of the earlier electrode stays beside the new one; the sample's record is strict
    JSON (no bare NaN)."""
    out = tmp_path / "ds"
    generate_dataset(base, 1, out, first_seed=1)
    assert (out / "sample_00000" / "charged" / "spm.h5").is_file()
    res = generate_dataset(base, 1, out, first_seed=5, states=("pristine",))
    assert res.reused == 0
    assert not (out / "sample_00000" / "charged").exists()
    assert not (out / "sample_00000" / "charge.h5").exists()

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    doc = json.loads((out / "sample_00000.json").read_text(), parse_constant=no_constants)
    assert doc["seed"] == 5
