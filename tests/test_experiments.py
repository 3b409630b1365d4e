"""Every experiment script runs in its small mode and gives the physics it is about."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cubic_bonds_count_and_uniqueness():
    perc = _load("percolation_sc")
    for L in (2, 3, 5):
        c = perc.cubic_bonds(L)
        assert c.shape == (3 * L * L * (L - 1), 2)
        # every bond joins nearest neighbours, and no bond appears twice
        i, j = np.unravel_index(c[:, 0], (L,) * 3), np.unravel_index(c[:, 1], (L,) * 3)
        assert np.all(np.abs(np.subtract(i, j)).sum(axis=0) == 1)
        assert len(np.unique(c, axis=0)) == len(c)


def test_spanning_limits():
    perc = _load("percolation_sc")
    u = np.random.default_rng(0).random((5, len(perc.cubic_bonds(6))))
    assert perc.spanning(6, u, 1.01).all()   # every bond open
    assert not perc.spanning(6, u, 0.0).any()  # every bond closed
    # only the z bonds of one column open: spans exactly along that column
    L = 4
    c = perc.cubic_bonds(L)
    u = np.ones((1, len(c)))
    i0, j0 = np.unravel_index(c[:, 0], (L,) * 3)[:2], np.unravel_index(c[:, 1], (L,) * 3)[:2]
    col = (i0[0] == 1) & (i0[1] == 2) & (j0[0] == 1) & (j0[1] == 2)
    u[0, col] = 0.0
    assert perc.spanning(L, u, 0.5).all()
    u[0, np.flatnonzero(col)[1]] = 1.0  # cut the column
    assert not perc.spanning(L, u, 0.5).any()


def test_percolation_quick(tmp_path):
    perc = _load("percolation_sc")
    assert perc.main(["--quick", "-o", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "percolation_sc.json").read_text())
    assert (tmp_path / "percolation_sc.png").stat().st_size > 0
    assert res["mode"] == "quick" and len(res["sizes"]) >= 2
    p = np.array(res["p"])
    for L in res["sizes"]:
        c = res["curves"][str(L)]
        r = np.array(c["spanning_probability"])
        assert r.shape == p.shape and np.all(np.diff(r) >= 0)  # coupled samples: monotone
        assert r[0] < 0.5 < r[-1]
    assert len(res["pairs"]) == len(res["sizes"]) - 1
    for pr in res["pairs"]:
        assert math.isfinite(pr["p_cross"])
        assert abs(pr["p_cross"] - 0.2488) < 0.03, pr


def test_nmc_percolation_threshold_tools():
    perc = _load("nmc_percolation")
    # Bielefeld et al. 2019: p_c = 7.83 ln(d/um) + 36.67 vol%, about 49 vol% for 5 um NMC
    assert perc.bielefeld_threshold_volpct(5e-6) == pytest.approx(math.log(5) * 7.83 + 36.67)
    assert 49.0 < perc.bielefeld_threshold_volpct(5e-6) < 49.5
    assert perc.crossing([1, 2, 3], [0.0, 0.25, 1.0]) == 2 + 0.25 / 0.75
    assert perc.crossing([1, 2, 3], [0.0, 0.2, 0.4]) is None
    assert perc.crossing([1, 2, 3], [0.6, 0.8, 1.0]) is None
    rows = [{"overrides": {"structure.nmc_fraction_of_solid": s}, "status": "ok",
             "solid_fraction": 0.85, "nmc_fraction_of_solid": s, "nmc_percolates": p,
             "nmc_connected_fraction": c, "sigma_e_S_per_m": g}
            for s, p, c, g in ((0.3, False, 0.2, 1e-7), (0.3, True, 0.6, 1e-4),
                               (0.5, True, 1.0, 1e-3))]
    t = perc.summarise(rows)
    assert [x["spanning_probability"] for x in t] == [0.5, 1.0]
    assert t[0]["connected_fraction_mean"] == 0.4 and t[0]["nmc_volpct_of_total"] == 25.5


def test_nmc_percolation_quick(tmp_path):
    """The NMC network stops spanning the electrode as its share falls, in esim's packing and in
    the rigid-sphere control: quick mode, one seed, a 20 um thick box."""
    perc = _load("nmc_percolation")
    assert perc.main(["--quick", "--workers", "1", "-o", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "nmc_percolation.json").read_text())
    assert set(r["series"]) == {"soft glass (default)", "rigid spheres"}
    rigid = r["series"]["rigid spheres"]["table"]
    assert [x["spanning_probability"] for x in rigid] == [0.0, 1.0]
    assert all(abs(x["nmc_volpct_of_total"] / x["nmc_fraction_of_solid"] - 62) < 1 for x in rigid)
    t = r["series"]["soft glass (default)"]["table"]
    assert [x["nmc_fraction_of_solid"] for x in t] == [0.2, 0.3, 0.45]
    assert t[0]["spanning_probability"] == 0.0 and t[-1]["spanning_probability"] == 1.0
    conn = [x["connected_fraction_mean"] for x in t]
    assert conn[0] < 0.5 < conn[-1] and conn == sorted(conn)
    sig = [x["sigma_e_S_per_m_median"] for x in t]
    assert sig[-1] > 1e3 * sig[0]  # below the threshold only the SE's leak conducts
    assert t[0]["nmc_volpct_of_total"] < r["esim_threshold_volpct"] < t[-1]["nmc_volpct_of_total"]
    assert (tmp_path / "nmc_percolation.png").stat().st_size > 0
    assert "Bielefeld" in (tmp_path / "nmc_percolation.md").read_text()
    assert perc.main(["--quick", "--seeds", "0", "-o", str(tmp_path)]) == 2


# the scan reaches the bracket's top, above Amin & Chiang's x = 0.1 point (params warns)
@pytest.mark.filterwarnings("ignore:materials.nmc_sigma_e_pristine_S_per_m")
def test_pristine_sigma_bound_quick(tmp_path):
    """The charge starts above one pristine conductivity and not below it; the start voltage
    falls as the conductivity rises; and the pristine NMC-collector contacts, in series with the
    rest of the cell, explain most but not more than all of the start's resistance."""
    psb = _load("pristine_sigma_bound")
    assert psb.main(["--quick", "-o", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "pristine_sigma_bound.json").read_text())
    (row,) = r["rows"]
    lo, hi = row["sigma_min_bracket"]
    assert row["crossings"] == 1 and hi / lo <= 1.25 and hi == row["sigma_min_S_per_m"]
    assert r["bracket_S_per_m"][0] < lo < hi < r["bracket_S_per_m"][1]
    scan = row["scan"]
    assert [x["starts"] for x in scan] == [x["sigma_S_per_m"] >= hi for x in scan]
    v = [x["v_start_V"] for x in scan if x["starts"]]
    assert len(v) >= 3 and v == sorted(v, reverse=True)
    assert r["u_pristine_V_vs_Li"] < v[-1] < v[0] < r["cutoff_V_vs_Li"]
    assert row["default_sigma_starts"] == (r["default_sigma_S_per_m"] >= hi)
    assert 0.5 * row["r_start_ohm_m2"] < row["r_cc_ohm_m2"] <= row["r_start_ohm_m2"]
    assert (tmp_path / "pristine_sigma_bound.png").stat().st_size > 0


def test_kpfm_separator_edge_quick(tmp_path):
    kse = _load("kpfm_separator_edge")
    assert kse.main(["--quick", "-o", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "kpfm_separator_edge.json").read_text())
    (w,) = r["windows"]
    assert w["n_particles"] >= 3 and len(w["z_m"]) == w["n_particles"]
    assert math.isfinite(w["gradient_mirror_V"]) and math.isfinite(w["gradient_section_V"])
    # the glass reads 2.76 V after charge in the paper; the particles' readings differ between
    # the two settings by at most what the cantilever term can move them (weight 0.3 of the
    # ~0.4 V between charged NMC and glass), and the summary is the per-window difference
    assert 2.6 < w["glass_vcpd_prime_V"] < 3.0
    sec, mirror = np.array(w["vcpd_prime_section_V"]), np.array(w["vcpd_prime_mirror_V"])
    assert np.abs(sec - mirror).max() <= 0.3 * 0.5
    assert r["added_by_surroundings_V"]["mean"] == pytest.approx(
        w["gradient_section_V"] - w["gradient_mirror_V"], abs=1e-12)
    assert (tmp_path / "kpfm_separator_edge.png").stat().st_size > 0


def test_particle_vs_voxel_quick(tmp_path):
    """Both voxel references see the same packing: the periodic one conducts better (wrapping
    only adds faces), the two fractions agree with the particle network's, and the particle
    network's excess over the periodic reference grows with density, as its overlapping SE
    spheres do (sum / union)."""
    pv = _load("particle_vs_voxel")
    assert pv.main(["--quick", "-o", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "particle_vs_voxel.json").read_text())
    rows = r["rows"]
    assert [x["target_solid_fraction"] for x in rows] == [0.85, 0.95]
    for x in rows:
        assert (x["sigma_ion_voxel_periodic_S_per_m"] > x["sigma_ion_voxel_insulating_S_per_m"]
                > 0)
        assert x["flux_mismatch_max"] < 1e-6
        assert x["se_fraction_voxel"] == pytest.approx(x["se_fraction_particle"], rel=0.04)
        assert x["solid_fraction"] == pytest.approx(x["target_solid_fraction"], abs=0.01)
        assert x["sum_over_union"] > 1.0
    lo, hi = rows
    assert hi["ratio_periodic"] - lo["ratio_periodic"] > 0.5 * (hi["sum_over_union"]
                                                                - lo["sum_over_union"])
    assert (tmp_path / "particle_vs_voxel.png").stat().st_size > 0


def test_contact_radii_quick(tmp_path):
    """The lens radii follow the overlaps F / k: ten times the stiffness ratio gives ~sqrt(10)
    times smaller geometric radii and ~10x smaller overlaps, while the mechanical radii, from
    the forces at the stack pressure, stay put."""
    cr = _load("contact_radii")
    assert cr.main(["--quick", "-o", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "contact_radii.json").read_text())
    lo, hi = r["rows"]  # ratios 30 and 300
    g = lo["geometric"]["median_m"] / hi["geometric"]["median_m"]
    m = lo["mechanical"]["median_m"] / hi["mechanical"]["median_m"]
    assert 0.6 * math.sqrt(10) < g < 1.5 * math.sqrt(10)
    assert 0.8 < m < 1.25
    assert 4 < lo["nmc_nmc_overlap_max_rel"] / hi["nmc_nmc_overlap_max_rel"] < 25
    assert hi["geometric"]["fraction_below_25nm"] > lo["geometric"]["fraction_below_25nm"]
    assert "mechanical median" in (tmp_path / "contact_radii.md").read_text()
