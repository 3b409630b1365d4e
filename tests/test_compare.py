"""``esim compare``: reading measured maps, segmentation, per-particle comparison, CLI.

Checks: a map compared with itself through its files agrees to a histogram bin; the segmented
particles' histogram peaks equal those of the true particles; SEM and EDX segmentation recover
the true phases and particles; pristine and charged electrodes are told apart while two charged
electrodes are not; the collector side may be on any edge; .gwy, TIFF and .npy read like .gsf;
bad input exits 2 before anything is written.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from esim import compare as C
from esim._params_spm import SPMParams
from esim.analysis import SSRM_HISTOGRAM, particle_table
from esim.cli.main import main
from esim.errors import InputFileError, InvalidParameters
from esim.io.maps import read_map
from esim.packing import PHASE_NMC, pack
from esim.spm.maps import simulate_spm

PIX = 128
SSRM_BIN_DECADES = 5.0 / SSRM_HISTOGRAM["bins"]


def _spm(**kw) -> SPMParams:
    return SPMParams(**{"pixels_u": PIX, "pixels_z": PIX, **kw})


@pytest.fixture(scope="module")
def charged(small_packing):
    return simulate_spm(small_packing, soc=1.0, spm=_spm())


@pytest.fixture(scope="module")
def pristine(small_packing):
    return simulate_spm(small_packing, soc=0.0, spm=_spm())


@pytest.fixture(scope="module")
def charged_other(small_params):
    p = small_params.replace(structure={"seed": small_params.structure.seed + 11})
    return simulate_spm(pack(p), soc=1.0, spm=_spm(seed=5))


@pytest.fixture(scope="module")
def gsf(charged, tmp_path_factory):
    folder = tmp_path_factory.mktemp("charged_gsf")
    charged.export_gsf(folder)
    return folder


@pytest.fixture(scope="module")
def pristine_gsf(pristine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pristine_gsf")
    pristine.export_gsf(folder)
    return folder


def _measured(folder, **kw):
    args = {"ssrm": str(folder / "ssrm_ohm.gsf"), "kpfm": str(folder / "kpfm_vcpd_prime_V.gsf"),
            "cafm": str(folder / "cafm_A.gsf"), "phase": str(folder / "phase.gsf")}
    args.update(kw)
    return C.load_measured(**{k: v for k, v in args.items() if v is not None})


# ------------------------------------------------------------------------------------------
# segmentation
# ------------------------------------------------------------------------------------------
def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_watershed_splits_touching_discs_and_drops_specks():
    shape = (120, 160)
    a, b = _disc(shape, 60, 45, 30), _disc(shape, 60, 100, 28)  # overlapping by 3 px
    speck = _disc(shape, 10, 150, 2)
    lab = C.split_particles(a | b | speck, pixel_size_m=0.1e-6, min_diameter_m=1e-6)
    assert lab.max() + 1 == 2  # the speck (area of a 0.2 um radius disc < a 0.25 um one) drops
    assert (lab[speck] == -1).all()
    for disc in (a, b):
        ids, n = np.unique(lab[disc & ~(a & b)], return_counts=True)
        assert n.max() / n.sum() > 0.97  # each disc is (almost) one label
    assert np.unique(lab[a & ~b])[0] != np.unique(lab[b & ~a])[0]
    assert (C.split_particles(np.zeros(shape, bool), 0.1e-6, 1e-6) == -1).all()


def test_segmentation_scores_are_one_on_the_truth_and_low_on_a_wrong_map(charged):
    s = C.simulated_mapset(charged, "phase")
    sc = C.segmentation_scores(s.seg, charged.phase, charged.particle, 10)
    assert sc["phase_accuracy"] == 1.0 and sc["nmc_iou"] == 1.0
    assert sc["particle_precision"] == 1.0 and sc["particle_recall"] == 1.0
    wrong = C.segment(np.where(charged.phase == PHASE_NMC, 2, 1).astype(np.int8), "phase",
                      charged.pixel_size_u_m, 1e-6)
    sw = C.segmentation_scores(wrong, charged.phase, charged.particle, 10)
    assert sw["phase_accuracy"] < 0.5 and sw["nmc_iou"] < 0.7


@pytest.mark.parametrize("method", ["sem", "edx"])
def test_sem_and_edx_segmentation_recover_the_true_phases_and_particles(charged, method):
    """Noisy maps (SEM shot noise, EDX Poisson counts and 1 um interaction blur)."""
    s = C.simulated_mapset(charged, method)
    min_px = math.pi * (0.25e-6) ** 2 / charged.pixel_size_u_m ** 2
    sc = C.segmentation_scores(s.seg, charged.phase, charged.particle, min_px)
    assert sc["phase_accuracy"] > 0.9, sc
    assert sc["nmc_iou"] > 0.9, sc
    assert sc["particle_recall"] >= 0.8 and sc["particle_precision"] >= 0.75, sc


def test_segmented_particles_read_as_the_true_particles(small_packing):
    """Histogram peaks of the watershed particles equal those of the true particle labels
    (noise-free maps, the label with the largest overlap), to one bin."""
    m = simulate_spm(small_packing, soc=1.0, spm=_spm(), noise=False)
    s = C.simulated_mapset(m, "phase")
    seg_vals = s.particle_values("ssrm")
    depth = s.depth_m
    truth_ids = np.unique(m.particle[m.phase == PHASE_NMC])
    truth_vals = particle_table(m.ssrm_ohm, m.particle, depth, truth_ids, **SSRM_HISTOGRAM)
    lab = s.seg.particles
    agree = []
    for k, sid in enumerate(seg_vals.ids):  # a handful of particles: fine in a test
        tid, n = np.unique(m.particle[lab == sid], return_counts=True)
        best = tid[np.argmax(n)]
        t = truth_vals.peak[np.flatnonzero(truth_vals.ids == best)[0]]
        agree.append(abs(math.log10(seg_vals.peak[k] / t)) <= SSRM_BIN_DECADES + 1e-9)
    assert len(agree) >= 5 and np.mean(agree) >= 0.9


# ------------------------------------------------------------------------------------------
# comparison
# ------------------------------------------------------------------------------------------
def test_a_map_compared_with_itself_through_its_files_agrees(charged, gsf):
    meas = _measured(gsf)
    sim = C.simulated_mapset(charged, "phase")
    assert meas.seg.n_particles == sim.seg.n_particles >= 5
    for c in ("ssrm", "cafm"):
        a, b = meas.particle_values(c).peak, sim.particle_values(c).peak
        np.testing.assert_allclose(np.log10(np.abs(a)), np.log10(np.abs(b)),
                                   atol=SSRM_BIN_DECADES)  # float32 files: at most one bin
    np.testing.assert_allclose(meas.particle_values("kpfm").peak,
                               sim.particle_values("kpfm").peak, atol=0.025 + 1e-9)
    res = C.compare_maps(meas, [sim])
    r = res["channels"]["ssrm"]
    assert r["wasserstein_decades"] <= SSRM_BIN_DECADES
    assert r["ks_statistic"] <= 2.0 / meas.seg.n_particles
    assert r["pixel_median_se_measured_ohm"] == pytest.approx(r["pixel_median_se_simulated_ohm"],
                                                              rel=1e-6)


def test_pristine_and_charged_are_told_apart_two_charged_electrodes_are_not(
        pristine_gsf, charged, charged_other):
    meas = _measured(pristine_gsf)
    res_pc = C.compare_maps(meas, [C.simulated_mapset(charged, "phase")])["channels"]
    r = res_pc["ssrm"]
    assert r["ks_statistic"] == 1.0 and r["ks_pvalue"] < 0.01
    assert r["median_difference_decades"] < -0.5  # charged NMC conducts far better
    assert res_pc["kpfm"]["median_difference_V"] > 0.5  # and reads ~1 V higher in V_CPD'
    cc = C.compare_maps(C.simulated_mapset(charged, "phase"),
                        [C.simulated_mapset(charged_other, "phase")])["channels"]
    assert cc["ssrm"]["ks_statistic"] < 0.8
    assert abs(cc["ssrm"]["median_difference_decades"]) < 0.3


@pytest.mark.parametrize("side", ["last-row", "first-column", "last-column"])
def test_the_collector_may_lie_on_any_edge(charged, tmp_path, side):
    turn = {"last-row": lambda a: a[::-1], "first-column": lambda a: a.T,
            "last-column": lambda a: a[::-1].T}[side]
    names = {"ssrm": "ssrm_ohm", "kpfm": "kpfm_vcpd_prime_V", "phase": "phase"}
    plain_files, turned_files = {}, {}
    for k, attr in names.items():
        a = np.asarray(getattr(charged, attr), np.float64)
        plain_files[k], turned_files[k] = str(tmp_path / f"p_{k}.npy"), str(tmp_path / f"{k}.npy")
        np.save(plain_files[k], a)
        np.save(turned_files[k], turn(a))
    p = charged.pixel_size_u_m
    turned = C.load_measured(cc_side=side, pixel_size_m=p, **turned_files)
    plain = C.load_measured(cc_side="first-row", pixel_size_m=p, **plain_files)
    assert plain.seg.n_particles >= 5
    for c in ("ssrm", "kpfm"):
        a, b = turned.particle_values(c), plain.particle_values(c)
        np.testing.assert_array_equal(a.peak, b.peak)
        np.testing.assert_allclose(a.z_m, b.z_m)


def test_kpfm_offset_turns_vcpd_into_vcpd_prime(charged, gsf):
    off = float(charged.ocv_vs_inli_V)
    a = _measured(gsf, kpfm=str(gsf / "kpfm_vcpd_V.gsf"), kpfm_offset_V=off)
    b = _measured(gsf)
    np.testing.assert_allclose(a.channels["kpfm"], b.channels["kpfm"], atol=1e-5)


def test_maps_outside_the_histogram_range_are_named_not_clipped(gsf, tmp_path, caplog):
    """Raw V_CPD (negative, V_OCV not added) lies below the KPFM range 0-5 V: before, every
    particle read the first bin, 0.0125 V; now the file is refused with the hint.  An SSRM map
    with some particles below 1e5 ohm warns and leaves just those out."""
    with pytest.raises(InputFileError, match=r"kpfm_vcpd_V\.gsf.*no particle.*--kpfm-offset-V"):
        _measured(gsf, kpfm=str(gsf / "kpfm_vcpd_V.gsf"))
    from esim.io.gsf import read_gsf, write_gsf

    ch = read_gsf(gsf / "ssrm_ohm.gsf")
    ref = _measured(gsf)
    pv = ref.particle_values("ssrm")
    low = np.isin(ref.seg.particles, pv.ids[:2])  # two particles read 1e3 times lower, < 1e5
    d = np.where(low, ch.data * 1e-5, ch.data)
    write_gsf(tmp_path / "ssrm_low.gsf", d, pixel_size_m=(ch.pixel_size_y_m, ch.pixel_size_m),
              z_unit="Ohm", title="SSRM", x_offset_m=ch.x_offset_m, y_offset_m=ch.y_offset_m)
    with caplog.at_level("WARNING", logger="esim.compare"):
        m = _measured(gsf, ssrm=str(tmp_path / "ssrm_low.gsf"))
    assert "2 of" in caplog.text and "ssrm_low.gsf" in caplog.text
    got = m.particle_values("ssrm").peak
    assert np.isnan(got[:2]).all()
    np.testing.assert_array_equal(got[2:], pv.peak[2:])
    # particles above the range (an amplifier saturating above 1e10 ohm) are high-resistance
    # ones: counted in the share at >= 5e8 ohm, not dropped from it
    d = np.where(low, 5e10, ch.data)
    write_gsf(tmp_path / "ssrm_sat.gsf", d, pixel_size_m=(ch.pixel_size_y_m, ch.pixel_size_m),
              z_unit="Ohm", title="SSRM", x_offset_m=ch.x_offset_m, y_offset_m=ch.y_offset_m)
    sat = _measured(gsf, ssrm=str(tmp_path / "ssrm_sat.gsf"))
    peaks = sat.particle_values("ssrm", "inf").peak
    assert np.isinf(peaks[:2]).all() and (peaks[:2] > 0).all()
    res = C.compare_maps(sat, [sat])
    n = peaks.size
    k = int(np.count_nonzero(peaks >= 5e8))
    assert k >= 2
    assert res["channels"]["ssrm"]["high_fraction_measured"] == pytest.approx(k / n)


# ------------------------------------------------------------------------------------------
# file formats
# ------------------------------------------------------------------------------------------
def test_gwy_tiff_and_npy_read_like_gsf(charged, gsf, tmp_path):
    import tifffile
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    ref = read_map(gsf / "ssrm_ohm.gsf")
    h, w = ref.data.shape
    c = GwyContainer()
    for k, (title, unit, data) in enumerate((("Topo", "m", ref.data * 0),
                                             ("SSRM", "Ohm", ref.data))):
        c[f"/{k}/data"] = GwyDataField(np.array(data, np.float64),
                                       xreal=w * ref.pixel_size_m, yreal=h * ref.pixel_size_y_m,
                                       si_unit_xy=GwySIUnit(unitstr="m"),
                                       si_unit_z=GwySIUnit(unitstr=unit))
        c[f"/{k}/data/title"] = title
    c.tofile(str(tmp_path / "scan.gwy"))
    g = read_map(f"{tmp_path / 'scan.gwy'}#SSRM")
    np.testing.assert_array_equal(g.data, ref.data)
    assert g.z_unit == "Ohm" and g.pixel_size_m == pytest.approx(ref.pixel_size_m)
    with pytest.raises(InputFileError, match="'SSRM'"):  # two channels: name one
        read_map(tmp_path / "scan.gwy")
    with pytest.raises(InputFileError, match="no channel titled"):
        read_map(f"{tmp_path / 'scan.gwy'}#KPFM")
    # a unit object without its (empty) unit string: a unitless channel, not a KeyError
    nounit = GwySIUnit(unitstr="")
    del nounit["unitstr"]
    c["/0/data"]["si_unit_z"] = nounit
    c.tofile(str(tmp_path / "nounit.gwy"))
    assert read_map(f"{tmp_path / 'nounit.gwy'}#Topo").z_unit == ""
    tifffile.imwrite(tmp_path / "ssrm.tif", ref.data.astype(np.float32))
    t = read_map(tmp_path / "ssrm.tif", pixel_size_m=ref.pixel_size_m)
    np.testing.assert_array_equal(t.data, ref.data)
    with pytest.raises(InputFileError, match="pixel size"):
        read_map(tmp_path / "ssrm.tif")
    with pytest.raises(InputFileError, match="pixel size"):  # in conflict with the file's
        read_map(gsf / "ssrm_ohm.gsf", pixel_size_m=2 * ref.pixel_size_m)
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    with pytest.raises(InputFileError, match="2-D"):
        read_map(tmp_path / "cube.npy", pixel_size_m=1e-7)


def test_a_coarser_phase_map_of_the_same_area_is_resampled(charged, gsf, tmp_path):
    from esim.io.gsf import write_gsf

    p = charged.pixel_size_u_m
    write_gsf(tmp_path / "coarse.gsf", np.asarray(charged.phase[::2, ::2], np.float64),
              pixel_size_m=2 * p, z_unit="", title="phase")
    m = _measured(gsf, phase=str(tmp_path / "coarse.gsf"))
    assert np.mean(m.seg.phase == charged.phase) > 0.95
    write_gsf(tmp_path / "other_area.gsf", np.asarray(charged.phase[::2, ::2], np.float64),
              pixel_size_m=3 * p, z_unit="", title="phase")
    with pytest.raises(InputFileError, match="one area"):
        _measured(gsf, phase=str(tmp_path / "other_area.gsf"))


def test_bad_measured_input_names_the_file_or_field(gsf, tmp_path):
    with pytest.raises(InputFileError, match="ssrm map is in 'V'"):
        _measured(gsf, ssrm=str(gsf / "kpfm_vcpd_V.gsf"))
    with pytest.raises(InputFileError, match="only 0 \\(pore\\)"):
        _measured(gsf, phase=str(gsf / "sem.gsf"))
    with pytest.raises(InvalidParameters, match="exactly one"):
        _measured(gsf, sem=str(gsf / "sem.gsf"))
    with pytest.raises(InvalidParameters, match="cc_side"):
        _measured(gsf, cc_side="top")
    with pytest.raises(InputFileError, match="unknown map format"):
        read_map(tmp_path / "scan.bmp")


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def test_cli_compare_writes_its_report(charged, charged_other, gsf, tmp_path, capsys):
    sims = []
    for k, m in enumerate((charged, charged_other)):
        sims += ["--sim", str(m.save(tmp_path / f"sim{k}.h5"))]
    out = tmp_path / "cmp"
    rc = main(["-q", "compare", "--ssrm", str(gsf / "ssrm_ohm.gsf"),
               "--kpfm", str(gsf / "kpfm_vcpd_prime_V.gsf"), "--sem", str(gsf / "sem.gsf"),
               *sims, "-o", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["particles_simulated"] > summary["particles_measured"] > 0
    assert 0 <= summary["ssrm_ks_statistic"] <= 1
    for f in ("compare.json", "compare.md", "particles.csv", "compare.png", "segmentation.png"):
        assert (out / f).stat().st_size > 0
    rep = json.loads((out / "compare.json").read_text())
    assert set(rep["channels"]) == {"ssrm", "kpfm"}
    assert rep["segmentation"]["method"] == "sem"
    assert rep["segmentation"]["simulated_phase_accuracy"] > 0.9
    rows = (out / "particles.csv").read_text().splitlines()
    assert rows[0].startswith("set,number,label,pixels,depth_m,ssrm_ohm,kpfm_V")
    assert len(rows) == 1 + summary["particles_measured"] + summary["particles_simulated"]


@pytest.mark.parametrize("bad", [
    ["--ssrm", "{g}/missing.gsf", "--sem", "{g}/sem.gsf"],
    ["--ssrm", "{g}/kpfm_vcpd_V.gsf", "--sem", "{g}/sem.gsf"],
    ["--ssrm", "{g}/ssrm_ohm.gsf"],
    ["--ssrm", "{g}/ssrm_ohm.gsf", "--edx-ni", "{g}/edx_ni_counts.gsf"],
    ["--ssrm", "{g}/ssrm_ohm.gsf", "--sem", "{g}/sem.gsf", "--min-diameter-m", "0"],
    # 1 m for 1e-6: the watershed asked numpy for 265 TiB; now no particle is that large
    ["--ssrm", "{g}/ssrm_ohm.gsf", "--sem", "{g}/sem.gsf", "--min-diameter-m", "1"],
    ["--ssrm", "{g}/empty.npy", "--sem", "{g}/sem.gsf", "--pixel-size-m", "5e-8"],
])
def test_cli_compare_bad_input_exits_2_and_writes_nothing(gsf, tmp_path, capsys, bad, charged):
    (gsf / "empty.npy").write_bytes(b"")  # an empty file: EOFError in numpy
    sim = charged.save(tmp_path / "sim.h5")
    out = tmp_path / "cmp"
    rc = main(["compare", *[a.format(g=gsf) for a in bad], "--sim", str(sim), "-o", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("esim: error:") and "Traceback" not in err
    assert not out.exists()


def test_refused_measured_inputs_name_the_file(gsf, charged, tmp_path, capsys):
    """A phase source of another area with the same pixel count, an area without any NMC
    particle, and one simulated file given twice: one line each, exit 2, nothing written."""
    from esim.io.gsf import read_gsf, write_gsf

    ph = read_gsf(gsf / "phase.gsf")
    write_gsf(tmp_path / "phase_2x.gsf", ph.data, pixel_size_m=2 * ph.pixel_size_m,
              z_unit="", title="phase")  # same pixels, twice the area
    with pytest.raises(InputFileError, match=r"phase_2x\.gsf: covers .* must image one area"):
        _measured(gsf, phase=str(tmp_path / "phase_2x.gsf"))
    write_gsf(tmp_path / "phase_se.gsf", np.full(ph.data.shape, 2.0), pixel_size_m=(
        ph.pixel_size_y_m, ph.pixel_size_m), z_unit="", title="phase")
    with pytest.raises(InputFileError, match=r"phase_se\.gsf: no NMC particle"):
        _measured(gsf, phase=str(tmp_path / "phase_se.gsf"))
    ss = read_gsf(gsf / "ssrm_ohm.gsf")
    write_gsf(tmp_path / "ssrm_neg.gsf", -ss.data, pixel_size_m=(ss.pixel_size_y_m,
                                                                 ss.pixel_size_m),
              z_unit="Ohm", title="SSRM")
    with pytest.raises(InputFileError, match=r"ssrm_neg\.gsf: \d+ pixels hold a resistance <= 0"):
        _measured(gsf, ssrm=str(tmp_path / "ssrm_neg.gsf"))
    sim = charged.save(tmp_path / "sim.h5")
    out = tmp_path / "cmp"
    assert main(["compare", "--ssrm", str(gsf / "ssrm_ohm.gsf"), "--phase",
                 str(gsf / "phase.gsf"), "--sim", str(sim), "--sim",
                 str(tmp_path / "." / "sim.h5"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sim.h5: given twice" in err and "Traceback" not in err and not out.exists()


def test_hand_made_particle_labels_replace_the_watershed(charged, gsf, tmp_path):
    """The true particles given as labels: every true NMC particle of the window is read, and
    the watershed's own particles agree with them."""
    truth = np.where(charged.phase == PHASE_NMC, charged.particle + 1, 0).astype(np.float64)
    np.save(tmp_path / "labels.npy", truth[::-1])  # the collector on the last row
    files = {k: str(tmp_path / f"{k}.npy") for k in ("ssrm", "phase")}
    np.save(files["ssrm"], np.asarray(charged.ssrm_ohm, np.float64)[::-1])
    np.save(files["phase"], np.asarray(charged.phase, np.float64)[::-1])
    p = charged.pixel_size_u_m
    m = C.load_measured(particles=str(tmp_path / "labels.npy"), cc_side="last-row",
                        pixel_size_m=p, **files)
    assert m.seg.method == "phase + labels"
    assert m.seg.n_particles == np.unique(charged.particle[charged.phase == PHASE_NMC]).size
    assert ((m.seg.particles >= 0) == (charged.phase == PHASE_NMC)).all()
    np.save(tmp_path / "bad.npy", truth[::-1] - 0.5)
    with pytest.raises(InputFileError, match="whole numbers"):
        C.load_measured(particles=str(tmp_path / "bad.npy"), pixel_size_m=p, **files)


def test_ranking_a_sweep_recovers_the_tip_radius_of_the_measured_maps(small_params, tmp_path,
                                                                      capsys, caplog):
    """Maps "measured" with a 20 nm tip on one electrode; a sweep of the tip radius over two
    other electrodes; the grid search ranks 20 nm first, by a clear margin."""
    p = small_params.replace(structure={"seed": small_params.structure.seed + 5},
                             spm={"tip_radius_m": 2e-8, "pixels_u": PIX, "pixels_z": PIX})
    measured = simulate_spm(pack(p), p, soc=1.0)
    measured.export_gsf(tmp_path / "meas")
    sets = [f"structure.{k}={v}" for k, v in (("box_x_m", 25e-6), ("box_y_m", 25e-6),
                                               ("electrode_thickness_m", 20e-6),
                                               ("sample_points", 100_000))]
    sets += [f"spm.pixels_u={PIX}", f"spm.pixels_z={PIX}"]
    rc = main(["-q", "sweep", "--stage", "spm", "--soc", "1", "--save", "-o",
               str(tmp_path / "sw"), "--vary", "spm.tip_radius_m=5e-9,2e-8,8e-8",
               "--vary", "structure.seed=1,2", *[a for s in sets for a in ("--set", s)]])
    assert rc == 0
    capsys.readouterr()
    g = tmp_path / "meas"
    rc = main(["-q", "compare", "--ssrm", str(g / "ssrm_ohm.gsf"), "--cafm", str(g / "cafm_A.gsf"),
               "--sem", str(g / "sem.gsf"), "--sweep", str(tmp_path / "sw"), "-o",
               str(tmp_path / "fit"), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["best_spm.tip_radius_m"] == 2e-8
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    scores = [r["score"] for r in fit["rows"]]
    assert [r["points"] for r in fit["rows"]] == [2, 2, 2]
    assert scores == sorted(scores) and scores[1] - scores[0] > 0.3
    for f in ("fit.csv", "fit.md", "fit.png", "compare.md", "compare.png"):
        assert (tmp_path / "fit" / f).stat().st_size > 0
    # a saved folder whose maps are not its row's parameters (left by another run) is left
    # out, with a warning, not ranked under the row's label
    (tmp_path / "sw" / "points" / "point_0000" / "params_hash.txt").write_text("another\n")
    rc = main(["-q", "compare", "--ssrm", str(g / "ssrm_ohm.gsf"), "--cafm", str(g / "cafm_A.gsf"),
               "--sem", str(g / "sem.gsf"), "--sweep", str(tmp_path / "sw"), "-o",
               str(tmp_path / "fit"), "--json", "--no-figures"])
    assert rc == 0
    capsys.readouterr()
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert sorted(r["points"] for r in fit["rows"]) == [1, 2, 2]
    assert not (tmp_path / "fit" / "fit.png").exists()  # not this run's: removed
    # a folder saved before esim wrote hashes cannot be checked: ranked, with a warning
    (tmp_path / "sw" / "points" / "point_0000" / "params_hash.txt").unlink()
    with caplog.at_level("WARNING", logger="esim.compare"):
        rc = main(["compare", "--ssrm", str(g / "ssrm_ohm.gsf"), "--cafm",
                   str(g / "cafm_A.gsf"), "--sem", str(g / "sem.gsf"), "--sweep",
                   str(tmp_path / "sw"), "-o", str(tmp_path / "fit"), "--json", "--no-figures"])
    assert rc == 0
    capsys.readouterr()
    assert "carry no parameter hash" in caplog.text
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert sorted(r["points"] for r in fit["rows"]) == [2, 2, 2]
    # a plain comparison into the same folder removes the ranking's fit.* files
    rc = main(["-q", "compare", "--ssrm", str(g / "ssrm_ohm.gsf"), "--sem", str(g / "sem.gsf"),
               "--sim", str(tmp_path / "sw" / "points" / "point_0001" / "spm.h5"), "-o",
               str(tmp_path / "fit"), "--no-figures"])
    assert rc == 0
    assert not any((tmp_path / "fit" / f).exists() for f in ("fit.json", "fit.csv", "fit.md"))
    # a sweep without maps cannot be ranked
    rc = main(["-q", "sweep", "--stage", "pack", "-o", str(tmp_path / "sw_pack"),
               "--vary", "structure.seed=1", *[a for s in sets[:4] for a in ("--set", s)]])
    assert rc == 0
    capsys.readouterr()
    rc = main(["compare", "--ssrm", str(g / "ssrm_ohm.gsf"), "--sem", str(g / "sem.gsf"),
               "--sweep", str(tmp_path / "sw_pack"), "-o", str(tmp_path / "fit2")])
    assert rc == 2 and "--stage spm --save" in capsys.readouterr().err
    assert not (tmp_path / "fit2").exists()


def _shifted_files(maps, tmp_path, shifts):
    """The maps' channels as .npy files, each moved by whole pixels (edge pixels filled with
    the map's median, as an instrument would record something there)."""
    files = {}
    for k, attr in (("ssrm", "ssrm_ohm"), ("kpfm", "kpfm_vcpd_prime_V"), ("cafm", "cafm_A")):
        a = C.shift_map(getattr(maps, attr), shifts.get(k, (0, 0)))
        files[k] = str(tmp_path / f"{k}.npy")
        np.save(files[k], np.where(np.isfinite(a), a, np.nanmedian(a)))
    for k, a in (("phase", maps.phase), ("sem", maps.sem), ("edx_ni", maps.edx_ni_counts),
                 ("edx_s", maps.edx_s_counts)):
        files[k] = str(tmp_path / f"{k}_src.npy")
        np.save(files[k], np.asarray(a, np.float64))
    return files


@pytest.mark.parametrize("source,tol_px", [("sem", 0), ("phase", 0), ("edx", 1)])
def test_registration_undoes_whole_pixel_shifts(charged, tmp_path, source, tol_px):
    shifts = {"ssrm": (7, -4), "kpfm": (-3, 5)}
    f = _shifted_files(charged, tmp_path, shifts)
    src = {"edx": ("edx_ni", "edx_s")}.get(source, (source,))
    m = C.load_measured(ssrm=f["ssrm"], kpfm=f["kpfm"], cafm=f["cafm"], register=True,
                        pixel_size_m=charged.pixel_size_u_m, **{k: f[k] for k in src})
    for k, (dy, dx) in {**shifts, "cafm": (0, 0)}.items():
        got = m.registration[k]["shift_px"]
        assert abs(got[0] + dy) <= tol_px and abs(got[1] + dx) <= tol_px, (k, got)
        assert m.registration[k]["edge_correlation"] > 0.3
    # registered, the particles read as on the unshifted maps; shifted, they do not
    if source == "sem":
        plain = C.simulated_mapset(charged, "sem")
        a, b = m.particle_values("ssrm").peak, plain.particle_values("ssrm").peak
        assert a.size == b.size
        close = np.abs(np.log10(a / b)) <= SSRM_BIN_DECADES + 1e-9
        assert close.mean() >= 0.9
        raw = C.load_measured(ssrm=f["ssrm"], sem=f["sem"], pixel_size_m=charged.pixel_size_u_m)
        r = raw.particle_values("ssrm").peak
        assert np.mean(np.abs(np.log10(r / b)) <= SSRM_BIN_DECADES + 1e-9) < close.mean()


def test_a_channel_without_common_edges_is_left_in_place(pristine, tmp_path, caplog):
    """Pristine SSRM: every pixel at the amplifier's ceiling, nothing to register on."""
    f = _shifted_files(pristine, tmp_path, {"ssrm": (5, 5), "kpfm": (5, 5)})
    with caplog.at_level("WARNING", logger="esim.compare"):
        m = C.load_measured(ssrm=f["ssrm"], kpfm=f["kpfm"], sem=f["sem"], register=True,
                            pixel_size_m=pristine.pixel_size_u_m)
    assert m.registration["ssrm"]["shift_px"] == [0, 0]
    assert "no edges in common" in caplog.text
    assert m.registration["kpfm"]["shift_px"] == [-5, -5]
    with pytest.raises(InvalidParameters, match="max_shift_m"):
        C.load_measured(ssrm=f["ssrm"], sem=f["sem"], register=True, max_shift_m=0.0,
                        pixel_size_m=pristine.pixel_size_u_m)


def test_a_tiff_sem_of_another_resolution_beside_gsf_channels(charged, gsf, tmp_path):
    """The channels carry their pixel size (.gsf); the SEM is a TIFF at twice the resolution
    over the same area, with its own pixel size."""
    import tifffile
    from skimage.transform import resize

    sem = resize(np.asarray(charged.sem, np.float64), (2 * PIX, 2 * PIX), order=1)
    tifffile.imwrite(tmp_path / "sem.tif", sem.astype(np.float32))
    m = _measured(gsf, phase=None, sem=str(tmp_path / "sem.tif"),
                  source_pixel_size_m=charged.pixel_size_u_m / 2)
    assert m.seg.phase.shape == charged.phase.shape
    assert np.mean(m.seg.phase == charged.phase) > 0.9
    with pytest.raises(InputFileError, match="pixel size"):  # the TIFF's size is not known
        _measured(gsf, phase=None, sem=str(tmp_path / "sem.tif"))


def test_a_measured_ssrm_map_above_its_range_everywhere_counts_all_particles_high(
        gsf, charged, tmp_path, caplog):
    """Every particle saturated above 1e10 ohm was refused ("no particle can be read"), though
    each such particle counts as a high-resistance one: now they are counted, with a warning."""
    from esim.io.gsf import read_gsf, write_gsf

    ref = read_gsf(gsf / "ssrm_ohm.gsf")
    write_gsf(tmp_path / "sat.gsf", np.full(ref.data.shape, 3e10),
              pixel_size_m=(ref.pixel_size_y_m, ref.pixel_size_m), z_unit="Ohm", title="SSRM")
    with caplog.at_level("WARNING", logger="esim.compare"):
        m = _measured(gsf, ssrm=str(tmp_path / "sat.gsf"), kpfm=None, cafm=None)
    assert "all count as high-resistance" in caplog.text
    r = C.compare_maps(m, [C.simulated_mapset(charged, channels=("ssrm",))])["channels"]["ssrm"]
    assert r["high_fraction_measured"] == 1.0 and r["n_particles_measured"] == 0
    # a map whose particles read nowhere (below the range) is still refused
    write_gsf(tmp_path / "low.gsf", np.full(ref.data.shape, 10.0),
              pixel_size_m=(ref.pixel_size_y_m, ref.pixel_size_m), z_unit="Ohm", title="SSRM")
    with pytest.raises(InputFileError, match="no particle can be read"):
        _measured(gsf, ssrm=str(tmp_path / "low.gsf"), kpfm=None, cafm=None)
