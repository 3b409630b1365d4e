"""Packing generator: contacts against brute force, targets on the voxelized union, the
random-close-packing limit, reproducibility, HDF5 round trip."""

from __future__ import annotations

import numpy as np
import pytest

from esim.errors import InputFileError, PackingFailed
from esim.packing import (PHASE_NMC, Packing, _lens_radius, find_contacts, jam_hard_spheres,
                          pack)
from esim.params import Params
from esim.voxel import voxelize


def brute_force_contacts(c, r, box, periodic_z, tol_rel):
    """Naive O(N^2) twin of find_contacts."""
    d = c[None, :, :] - c[:, None, :]
    per = [True, True, periodic_z]
    for k in range(3):
        if per[k]:
            d[..., k] -= box[k] * np.rint(d[..., k] / box[k])
    dist = np.sqrt((d**2).sum(-1))
    gap = dist - r[:, None] - r[None, :]
    tol = tol_rel * np.minimum(r[:, None], r[None, :])
    i, j = np.nonzero(np.triu(gap < tol, k=1))
    return np.stack([i, j], 1), gap[i, j]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("periodic_z", [False, True])
def test_contacts_equal_brute_force(seed, periodic_z):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    box = rng.uniform(8, 15, 3)
    c = rng.random((n, 3)) * box
    r = rng.lognormal(np.log(0.8), 0.3, n).clip(0.2, 1.6)
    tol = float(rng.choice([0.0, 0.01, 0.2]))
    pairs, gap = find_contacts(c, r, box, periodic_z=periodic_z, tol_rel=tol)
    ref_pairs, ref_gap = brute_force_contacts(c, r, box, periodic_z, tol)
    assert len(ref_pairs) > 0
    np.testing.assert_array_equal(pairs, ref_pairs)
    np.testing.assert_allclose(gap, ref_gap, rtol=0, atol=1e-12)


def test_lens_radius_equal_spheres():
    r = np.array([1.0, 2.0])
    d = np.array([1.9, 3.0])
    a = _lens_radius(r, r, d, 0.0)
    np.testing.assert_allclose(a, np.sqrt(r**2 - (d / 2) ** 2))
    # touching or apart: the asperity minimum
    assert _lens_radius(np.array([1.0]), np.array([1.0]), np.array([2.001]), 0.01)[0] == 0.01


def test_default_composite_hits_targets_on_voxel_union(small_packing):
    s = small_packing.params.structure
    img = voxelize(small_packing, s.nmc_d50_m / 40)
    fr = img.fractions()
    assert abs(fr["solid_fraction"] - s.target_solid_fraction) < 0.01
    assert abs(fr["nmc_fraction_of_solid"] - s.nmc_fraction_of_solid) < 0.01
    # sampled and voxel measures of the same union agree
    assert abs(fr["solid_fraction"] - small_packing.solid_fraction) < 0.005


def test_nmc_overlaps_stay_small_and_se_overlaps(small_packing):
    pk = small_packing
    i, j = pk.contacts[:, 0], pk.contacts[:, 1]
    nn = (pk.phase[i] == PHASE_NMC) & (pk.phase[j] == PHASE_NMC)
    rmin = np.minimum(pk.radii_m[i], pk.radii_m[j])
    overlap = -pk.contact_gap_m / rmin
    assert nn.sum() > 10
    assert overlap[nn].max() < 0.02
    # the soft glass does overlap: that is how it fills space
    assert overlap[~nn].max() > 0.05


def test_forces_balance_and_positive(small_packing):
    pk = small_packing
    assert np.all(pk.contact_force >= 0)
    assert pk.mean_stress_model > 0
    assert pk.max_force_residual <= pk.params.structure.force_tolerance * 1.0001
    # the net force on every particle, summed again from the stored contact and wall forces
    # along the centre lines (not the minimiser's own number), is below the tolerance and is
    # the residual the minimiser reported
    i, j = pk.contacts[:, 0], pk.contacts[:, 1]
    d = pk.centers_m[j] - pk.centers_m[i]
    d[:, :2] -= pk.box_m[:2] * np.rint(d[:, :2] / pk.box_m[:2])
    u = d / np.linalg.norm(d, axis=1)[:, None]
    net = np.zeros_like(pk.centers_m)
    np.add.at(net, i, -pk.contact_force[:, None] * u)
    np.add.at(net, j, pk.contact_force[:, None] * u)
    np.add.at(net[:, 2], pk.wall_particle, np.where(pk.wall_side == 0, 1.0, -1.0)
              * pk.wall_force)
    fmax = np.linalg.norm(net, axis=1).max()
    assert fmax <= pk.params.structure.force_tolerance
    assert fmax == pytest.approx(pk.max_force_residual, rel=1e-6)


def test_wall_contacts_on_both_walls(small_packing):
    pk = small_packing
    z, r = pk.centers_m[pk.wall_particle, 2], pk.radii_m[pk.wall_particle]
    cc = pk.wall_side == 0
    assert cc.any() and (~cc).any()
    np.testing.assert_allclose(pk.wall_gap_m[cc], z[cc] - r[cc])
    assert np.all(pk.wall_gap_m < pk.params.structure.contact_tolerance_rel * r)


def test_reproducible_same_bytes(tmp_path, small_params, small_packing):
    again = pack(small_params)
    for name in ("centers_m", "radii_m", "contacts", "contact_force"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small_packing, name))
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    small_packing.save(a)
    again.save(b)
    assert a.read_bytes() == b.read_bytes()
    other = pack(small_params.replace(structure={"seed": small_params.structure.seed + 1}))
    assert other.n_particles != small_packing.n_particles or not np.array_equal(
        other.centers_m, small_packing.centers_m)


def test_hdf5_round_trip(tmp_path, small_packing):
    path = tmp_path / "p.h5"
    small_packing.save(path)
    back = Packing.load(path)
    assert back.params == small_packing.params
    np.testing.assert_array_equal(back.contacts, small_packing.contacts)
    np.testing.assert_array_equal(back.centers_m, small_packing.centers_m)
    assert back.solid_fraction == small_packing.solid_fraction
    assert back.summary()["n_contacts"] == small_packing.summary()["n_contacts"]
    with pytest.raises(InputFileError, match="no such file"):
        Packing.load(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(InputFileError, match="junk.h5"):
        Packing.load(tmp_path / "junk.h5")


def test_summary_keys(small_packing):
    s = small_packing.summary()
    for k in ("n_particles", "solid_fraction", "nmc_fraction_of_solid", "nmc_percolates",
              "electrode_thickness_m", "coordination_nmc_nmc_mean"):
        assert k in s
    assert s["n_nmc"] + s["n_se"] == s["n_particles"]


def test_random_close_packing_limit():
    """Monodisperse spheres in a periodic box jam at phi ~0.64 with Z ~6 (rattlers removed).

    Contacts are the overlapping pairs (tolerance 1e-6 r) just above the jamming point.
    """
    j = jam_hard_spheres(300, seed=3)
    assert 0.63 <= j.solid_fraction <= 0.65
    assert 5.7 <= j.mean_contacts_no_rattlers <= 6.3
    assert j.rattlers.sum() < 0.1 * 300


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_random_close_packing_limit_large(seed):
    j = jam_hard_spheres(2000, seed=seed, dphi_min=2e-5, ftol=1e-9, e_jam=1e-10)
    assert 0.63 <= j.solid_fraction <= 0.65
    assert abs(j.mean_contacts_no_rattlers - 6.0) < 0.1


def test_hard_phase_above_jamming_is_refused():
    p = Params().replace(structure={"box_x_m": 25e-6, "box_y_m": 25e-6,
                                    "electrode_thickness_m": 20e-6,
                                    "nmc_fraction_of_solid": 1.0,
                                    "target_solid_fraction": 0.8})
    with pytest.raises(PackingFailed, match="jam"):
        pack(p)


def test_box_too_small_for_largest_particle():
    p = Params().replace(structure={"box_x_m": 12e-6, "box_y_m": 12e-6,
                                    "electrode_thickness_m": 12e-6})
    with pytest.raises(PackingFailed, match="box_x_m"):
        pack(p)


def test_connectivity_walls_do_not_join_clusters():
    """A chain CC-0-1 and a particle 2 touching only the separator: 2 is not connected, and
    the electrode does not percolate; adding contact 1-2 makes it percolate."""
    from tests.test_voxel import make

    box = [20e-6, 20e-6, 12e-6]
    base = make([[5e-6, 5e-6, 2e-6], [5e-6, 5e-6, 6e-6], [12e-6, 5e-6, 10e-6]],
                [2e-6, 2e-6, 2e-6], [PHASE_NMC] * 3, box)
    import dataclasses

    z = np.zeros(1)
    pk = dataclasses.replace(base, contacts=np.array([[0, 1]], np.int32), contact_gap_m=z,
                             contact_radius_m=z + 1e-8, contact_force=z,
                             wall_particle=np.array([0, 2], np.int32),
                             wall_side=np.array([0, 1], np.int8), wall_gap_m=np.zeros(2),
                             wall_contact_radius_m=np.zeros(2) + 1e-8, wall_force=np.zeros(2))
    c = pk.nmc_connectivity()
    assert not c["nmc_percolates"]
    assert c["nmc_connected_to_cc_fraction"] == pytest.approx(2 / 3)
    assert c["nmc_isolated_fraction"] == pytest.approx(1 / 3)  # the separator is no conductor
    pk2 = dataclasses.replace(pk, contacts=np.array([[0, 1], [1, 2]], np.int32),
                              contact_gap_m=np.zeros(2), contact_radius_m=np.zeros(2) + 1e-8,
                              contact_force=np.zeros(2))
    c2 = pk2.nmc_connectivity()
    assert c2["nmc_percolates"] and c2["nmc_connected_to_cc_fraction"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("periodic_z", [False, True])
def test_pair_search_large_boxes_and_unwrapped_positions(seed, periodic_z):
    """The 5x5x5 pruned stencil (boxes of >= 5 half cut-offs), positions outside the box
    (unwrapped periodic images, centres beyond a wall) and a capacity guess too small."""
    from esim.packing import _pair_list_cap

    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(800, 1500))
    box = rng.uniform(18, 30, 3)
    c = rng.random((n, 3)) * box
    r = rng.lognormal(np.log(0.7), 0.4, n).clip(0.15, 2.0)
    shift = rng.integers(-1, 2, (n, 2)) * box[:2]
    c[:, :2] += shift  # unwrapped images of the same points
    if periodic_z:
        c[:, 2] += rng.integers(-1, 2, n) * box[2]
    else:
        c[:5, 2] = -0.3 * r[:5]  # centres just beyond the walls
        c[5:10, 2] = box[2] + 0.3 * r[5:10]
    extra = 0.4
    pairs = np.sort(_pair_list_cap(c, r, box, periodic_z, extra, 7), axis=1)
    d = c[None, :, :] - c[:, None, :]
    for k in range(3 if periodic_z else 2):
        d[..., k] -= box[k] * np.rint(d[..., k] / box[k])
    dist = np.sqrt((d**2).sum(-1))
    i, j = np.nonzero(np.triu(dist < r[:, None] + r[None, :] + extra, k=1))
    assert len(i) > 1000
    got = set(map(tuple, pairs.tolist()))
    assert len(got) == len(pairs)  # every pair once
    assert got == set(zip(i.tolist(), j.tolist()))


def _runs_on_thread_counts(minimise):
    """``minimise(pos, rad, hard, box)`` on one 600-particle state with the serial kernels, the
    threaded ones on 1 thread and on 2: [(final positions, its return value)] for each."""
    import numba

    import esim.packing as P

    rng = np.random.default_rng(3)
    n = 600
    box = np.array([14.0, 14.0, 10.0])
    pos0 = rng.random((n, 3)) * box
    rad = rng.lognormal(np.log(0.6), 0.3, n).clip(0.2, 1.5)
    hard = rng.random(n) < 0.4
    runs = []
    nt0 = numba.get_num_threads()
    lim = P._PARALLEL_MIN_PARTICLES
    try:
        for threshold, threads in ((10**9, 1), (0, 1), (0, min(2, numba.config.NUMBA_NUM_THREADS))):
            P._PARALLEL_MIN_PARTICLES = threshold
            numba.set_num_threads(threads)
            x = pos0.copy()
            runs.append((x, minimise(x, rad, hard, box)))
    finally:
        P._PARALLEL_MIN_PARTICLES = lim
        numba.set_num_threads(nt0)
    return runs


def test_fire_same_bytes_on_any_thread_count():
    """Serial and threaded FIRE kernels, on 1 or 2 threads, give bit-identical states."""
    import esim.packing as P

    runs = _runs_on_thread_counts(lambda x, rad, hard, box: P._fire(
        x, rad, hard, np.where(hard, 100.0, 1.0), box, False, 1.0, 100.0, 1e-3, 400, 0.5, 0.3))
    assert runs[0][1][0] > 50  # it really iterated
    assert runs[0][1][3] > 0 and runs[0][1][4] > 0  # with full and partial pair-list rebuilds
    for x, out in runs[1:]:
        assert out == runs[0][1]
        np.testing.assert_array_equal(x, runs[0][0])


@pytest.mark.parametrize("periodic_z", [False, True])
def test_threaded_pair_search_equals_serial(periodic_z):
    """Slabs of cells swept on threads and concatenated give the serial list, pair for pair,
    also when the room guessed for a slab is too small."""
    from esim.packing import _pair_list_cap, _pair_list_threaded

    rng = np.random.default_rng(7)
    n = 3000
    box = np.array([40.0, 36.0, 22.0])
    c = rng.random((n, 3)) * box
    r = rng.lognormal(np.log(0.7), 0.4, n).clip(0.15, 2.0)
    serial = _pair_list_cap(c, r, box, periodic_z, 0.5, 8 * n)
    threaded, counts = _pair_list_threaded(c, r, box, periodic_z, 0.5)
    np.testing.assert_array_equal(threaded, serial)
    assert counts.sum() == len(serial) and len(counts) > 1
    tight, _ = _pair_list_threaded(c, r, box, periodic_z, 0.5, np.full(len(counts), 3))
    np.testing.assert_array_equal(tight, serial)


def test_pilot_box_gives_the_se_scale_of_the_large_box(monkeypatch):
    """Large boxes start from the SE radius scale of a small pilot box: the scale is an
    intensive property of the composition, so the large box's own calibration moves it by a
    few per cent at most, and the targets are still met."""
    import esim.packing as P

    monkeypatch.setattr(P, "_PILOT_MIN_PARTICLES", 500)
    monkeypatch.setattr(P, "_PILOT_PARTICLES", 500)
    p = Params().replace(structure={"box_x_m": 45e-6, "box_y_m": 45e-6,
                                    "electrode_thickness_m": 30e-6, "sample_points": 300_000})
    n = P._System(p.structure, np.random.default_rng(p.structure.seed)).rad0.size
    assert n > 1000
    scale = P._pilot_se_scale(p, n)
    assert scale is not None
    sysm, solid, nmc_share, _ = P._pack_state(p, quiet=True)
    assert abs(sysm.se_scale / scale - 1) < 0.03
    assert abs(solid - p.structure.target_solid_fraction) < 0.005
    assert abs(nmc_share - p.structure.nmc_fraction_of_solid) < 0.01
    # below the threshold there is no pilot
    assert P._pilot_se_scale(p, 499) is None


@pytest.mark.parametrize("periodic_z", [False, True])
def test_fire_forces_equal_dense_reference(periodic_z):
    """The branch-free force kernel (serial and threaded twins) gives the energy and net forces
    of a dense numpy evaluation of the same harmonic model: non-overlapping listed pairs add
    nothing, coincident centres add nothing, walls push back only when they overlap."""
    import esim.packing as P

    rng = np.random.default_rng(11)
    n = 300
    box = np.array([9.0, 8.0, 7.0])
    pos = rng.random((n, 3)) * box
    pos[1] = pos[0]  # coincident centres: the kernel skips the pair (direction undefined)
    rad = rng.uniform(0.3, 0.9, n)
    hard = rng.random(n) < 0.5
    k_soft, k_hard = 1.0, 100.0
    pairs = P._pair_list(pos, rad, box, periodic_z, 0.4)
    # dense reference over all pairs i < j
    d = pos[None, :, :] - pos[:, None, :]  # d[i, j] = x_j - x_i
    for a in range(3 if periodic_z else 2):
        d[..., a] -= box[a] * np.rint(d[..., a] / box[a])
    dist = np.sqrt((d**2).sum(-1))
    ov = np.clip(rad[:, None] + rad[None, :] - dist, 0.0, None)
    np.fill_diagonal(ov, 0.0)
    ov[0, 1] = ov[1, 0] = 0.0
    k = np.where(hard[:, None] & hard[None, :], k_hard, k_soft)
    energy = 0.25 * (k * ov**2).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        fpair = np.where(ov > 0, k * ov / dist, 0.0)
    force = -(fpair[..., None] * d).sum(1)
    if not periodic_z:
        kw = np.where(hard, k_hard, k_soft)
        lo = np.clip(rad - pos[:, 2], 0.0, None)
        hi = np.clip(pos[:, 2] + rad - box[2], 0.0, None)
        force[:, 2] += kw * (lo - hi)
        energy += 0.5 * (kw * (lo**2 + hi**2)).sum()
    assert (ov > 0).sum() > 100 and len(pairs) > (ov > 0).sum() // 2  # non-overlapping pairs too
    vel = rng.normal(size=(n, 3))
    shuffled = pairs[rng.permutation(len(pairs))]  # any order: the same forces up to rounding
    for kern, pairs in ((P._SER[0], pairs), (P._PAR[0], pairs), (P._SER[0], shuffled)):
        buf = np.zeros((P._NCHUNK, n, 3))
        frc = np.zeros((n, 3))
        e, fmax, pw, vn, fn = kern(pos, rad, hard, pairs, box, periodic_z, k_soft, k_hard, vel,
                                   buf, frc, np.zeros((P._NCHUNK, 6)))
        assert e == pytest.approx(energy, rel=1e-12)
        np.testing.assert_allclose(frc, force, rtol=1e-10, atol=1e-10)
        assert fmax == pytest.approx(np.sqrt((force**2).sum(1)).max(), rel=1e-10)
        assert pw == pytest.approx((force * vel).sum(), rel=1e-10)
        assert vn == pytest.approx(np.sqrt((vel**2).sum()), rel=1e-12)
        assert fn == pytest.approx(np.sqrt((force**2).sum()), rel=1e-10)
        assert not buf.any()  # buffers are left zeroed for the next call


@pytest.mark.parametrize("periodic_z", [False, True])
def test_partial_rebuild_keeps_the_verlet_list_valid(periodic_z):
    """After partial rebuilds, every pair closer than r_i + r_j + skin - D_i - D_j (D: each
    particle's displacement since its pairs were searched) is listed, once: so the list holds
    every overlapping pair until the two largest D add up to the skin.  Checked by brute force
    over 12 rounds of small moves for all particles and large moves for a few."""
    import esim.packing as P

    rng = np.random.default_rng(5)
    n = 500
    box = np.array([10.0, 9.0, 8.0])
    pos = rng.random((n, 3)) * box
    rad = rng.uniform(0.3, 0.9, n)
    skin = 0.4
    pairs = P._pair_list(pos, rad, box, periodic_z, skin)
    ref = pos.copy()

    def mi(d):
        for a in range(3 if periodic_z else 2):
            d[..., a] -= box[a] * np.rint(d[..., a] / box[a])
        return d

    def check():
        disp = np.sqrt((mi(pos - ref) ** 2).sum(1))
        assert np.sort(disp)[-2:].sum() <= skin  # the list is declared valid now
        d = np.sqrt((mi(pos[None, :, :] - pos[:, None, :]) ** 2).sum(-1))
        need = d < rad[:, None] + rad[None, :] + skin - disp[:, None] - disp[None, :]
        need = np.triu(need, 1)
        listed = np.zeros((n, n), bool)
        i, j = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
        assert (i != j).all()
        assert len(np.unique(i * n + j)) == len(pairs)  # no pair twice
        listed[i, j] = True
        assert not (need & ~listed).any()

    partial = 0
    for _ in range(12):
        step = rng.normal(size=(n, 3))
        step *= (0.04 * skin / np.linalg.norm(step, axis=1))[:, None]
        fast = rng.choice(n, 4, replace=False)
        step[fast] *= 15.0  # 0.6 skin
        pos += step
        P._wrap(pos, box, periodic_z)
        d2 = (mi(pos - ref) ** 2).sum(1)
        fresh = P._partial_rebuild(pos, rad, box, periodic_z, skin, ref, d2, pairs)
        if fresh is None:  # too many fast particles: a full rebuild
            pairs = P._pair_list(pos, rad, box, periodic_z, skin)
            ref[:] = pos
        else:
            partial += 1
            pairs = fresh
        check()
        # Particles that kept their reference walk halfway back to it: their D shrinks, while
        # they still moved relative to the positions the fresh pairs were searched at.
        back = ~np.isin(np.arange(n), fast)
        pos[back] -= 0.5 * mi(pos - ref)[back]
        P._wrap(pos, box, periodic_z)
        check()
    assert partial >= 8


_CACHE_PROBE = """
import numpy as np
import esim.packing as P
rng = np.random.default_rng(3)
n = 3000
box = np.array([24.0, 24.0, 24.0])
pos = rng.random((n, 3)) * box
rad = rng.uniform(0.8, 1.2, n)
hard = rng.random(n) < 0.5
out = []
for kern in (P._SER[0], P._PAR[0]):
    pairs = P._sort_pairs(P._pair_list_cap(pos, rad, box, False, 0.5, 8 * n), n)
    frc = np.zeros((n, 3))
    kern(pos, rad, hard, pairs, box, False, 1.0, 100.0, np.zeros((n, 3)),
         np.zeros((P._NCHUNK, n, 3)), frc, np.zeros((P._NCHUNK, 6)))
    out.append(frc)
for kern in (P._SER[1], P._PAR[1]):
    p = pos.copy()
    kern(p, np.ones((n, 3)), out[0], np.ones(n), pos.copy(), box, False, 0.9, 0.1, 0.01,
         np.zeros(n))
    out.append(p)
threaded, _ = P._pair_list_threaded(pos, rad, box, False, 0.5)
hits = sum(k.stats.cache_hits.get(k.signatures[0], 0)
           for k in (*P._PAR, P._pair_chunks_par) if k.signatures)
print(max(float(np.abs(out[0] - out[1]).max()), float(np.abs(out[2] - out[3]).max())),
      len(threaded), hits)
"""


def test_threaded_kernels_load_from_the_disk_cache():
    """The threaded FIRE and pair-search kernels have their own on-disk cache (``_twin``): a
    second process loads them instead of compiling (~4 s saved per process), and the loaded
    code gives the serial kernels' forces and moves."""
    import subprocess
    import sys

    import esim.packing as P

    assert P._PAR[0].py_func.__qualname__ != P._SER[0].py_func.__qualname__
    runs = [subprocess.run([sys.executable, "-c", _CACHE_PROBE], capture_output=True, text=True,
                           check=True, env={**__import__("os").environ,
                                            "NUMBA_NUM_THREADS": "2"}).stdout.split()
            for _ in range(2)]
    for diff, _, _ in runs:
        assert float(diff) < 1e-12
    assert runs[0][1] == runs[1][1]
    assert int(runs[1][2]) == 3  # all three threaded kernels came from the cache


def test_threaded_union_sampling_gives_the_serial_labels():
    """Union sampling labels each point on its own: the threaded twin gives the serial labels,
    and they are those of a brute-force check against every sphere."""
    import esim.packing as P

    rng = np.random.default_rng(11)
    n = 400
    box = np.array([12.0, 12.0, 8.0])
    pos = rng.random((n, 3)) * box
    rad = rng.uniform(0.5, 1.2, n)
    phase = np.where(rng.random(n) < 0.5, P.PHASE_NMC, P.PHASE_SE).astype(np.int8)
    pts = rng.random((20_000, 3)) * box
    serial = P._union_sample(pts, pos, rad, phase, box, False)
    np.testing.assert_array_equal(P._union_sample_par(pts, pos, rad, phase, box, False), serial)
    d = pts[:, None, :] - pos[None, :, :]
    d[..., :2] -= box[:2] * np.rint(d[..., :2] / box[:2])
    inside = (d**2).sum(-1) < rad**2
    want = np.where((inside & (phase == P.PHASE_NMC)).any(1), P.PHASE_NMC,
                    np.where(inside.any(1), P.PHASE_SE, P.PORE))
    np.testing.assert_array_equal(serial, want)
    assert len(set(serial.tolist())) == 3


# ------------------------------------------------------------------------------------------
# the fire-imex minimiser (esim/_fire_imex.py)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threaded", [False, True])
def test_implicit_step_builds_and_solves_the_contact_system(threaded):
    """_prepare's system against a dense assembly of I + dt^2 K_h (normal stiffness of the
    overlapping hard pairs and hard-wall contacts), and _pcg's solution against a dense solve,
    for the serial kernels and their threaded twins."""
    from esim import _fire_imex as F

    hard_pairs, prepare, pcg, _ = F._kernels(threaded)
    rng = np.random.default_rng(5)
    n = 80
    box = np.array([6.0, 6.0, 6.0])
    pos = rng.random((n, 3)) * box
    rad = rng.uniform(0.4, 0.8, n)
    hard = rng.random(n) < 0.6
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], np.int64)
    hp = hard_pairs(pairs, hard)
    assert (hard[hp[:, 0]] & hard[hp[:, 1]]).all() and hp.shape[0] == np.count_nonzero(
        hard[pairs[:, 0]] & hard[pairs[:, 1]])
    sub, loc, lij, gptr = F._implicit_set(n, hp, hard, pos, rad, box, False, 0.0)
    k, m = sub.shape[0], lij.shape[0]
    assert (np.diff(sub) > 0).all() and (loc[sub] == np.arange(k)).all()
    assert np.count_nonzero(loc >= 0) == k
    # the hard pairs, grouped: internal to a row chunk (both rows in it), then the rest
    assert sorted(map(tuple, sub[lij].tolist())) == sorted(map(tuple, hp.tolist()))
    chunk = np.searchsorted([k * c // F._NCH for c in range(1, F._NCH)], np.arange(k), "right")
    group = np.repeat(np.arange(F._NCH + 1), np.diff(gptr))
    ci, cj = chunk[lij[:, 0]], chunk[lij[:, 1]]
    np.testing.assert_array_equal(group, np.where(ci == cj, ci, F._NCH))
    assert (group < F._NCH).any() and (group == F._NCH).any()
    vel, frc = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    keep, mixdt, c = 0.9, 0.35, 9.0
    lpos, apair, nrm = np.empty((k, 4)), np.empty_like(lij), np.empty((m, 3))
    acnt, lwall, blk, binv = np.zeros(F._NCH + 1, np.int64), np.zeros(k, bool), *np.empty((2, k, 6))
    rhs, x = np.empty((k, 3)), np.empty((k, 3))
    work = np.zeros((F._NCH, 3))
    na, bn = prepare(pos, rad, sub, lij, gptr, box, False, vel, frc, keep, mixdt, c, lpos, apair,
                     nrm, acnt, lwall, blk, binv, rhs, x, work)
    # dense reference
    A = np.eye(3 * k)
    d = pos[sub[lij[:, 1]]] - pos[sub[lij[:, 0]]]
    d[:, :2] -= box[:2] * np.rint(d[:, :2] / box[:2])
    dist = np.linalg.norm(d, axis=1)
    over = dist < rad[sub[lij[:, 0]]] + rad[sub[lij[:, 1]]]
    assert na == np.count_nonzero(over) > 5 and (~over).any()
    active = np.concatenate([np.arange(gptr[g], gptr[g] + acnt[g]) for g in range(F._NCH + 1)])
    np.testing.assert_array_equal(apair[active], lij[over])  # compacted, in order, per group
    np.testing.assert_allclose(nrm[active], (d / dist[:, None])[over])
    for (i, j), u in zip(lij[over], (d / dist[:, None])[over]):
        B = c * np.outer(u, u)
        for a_, b_, sgn in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
            A[3 * a_:3 * a_ + 3, 3 * b_:3 * b_ + 3] += sgn * B
    wall = hard[sub] & ((rad[sub] > pos[sub, 2]) | (pos[sub, 2] + rad[sub] > box[2]))
    np.testing.assert_array_equal(lwall, wall)
    A[3 * np.flatnonzero(wall) + 2, 3 * np.flatnonzero(wall) + 2] += c
    sym = [[0, 3, 4], [3, 1, 5], [4, 5, 2]]  # packed xx yy zz xy xz yz
    for q in range(k):
        np.testing.assert_allclose(binv[q][sym], np.linalg.inv(A[3 * q:3 * q + 3, 3 * q:3 * q + 3]),
                                   rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rhs, keep * vel[sub] + mixdt * frc[sub])
    assert bn == pytest.approx(float((rhs**2).sum()), rel=1e-12)
    its = pcg(rhs, x, bn, apair, gptr, acnt, nrm, lwall, c, binv, 1e-12, 1000,
              *np.empty((4, k, 3)), work)
    assert its > 1
    np.testing.assert_allclose(x.ravel(), np.linalg.solve(A, rhs.ravel()), rtol=1e-8,
                               atol=1e-10)


def test_minimiser_choice():
    from esim.packing import minimiser_used
    from esim.params import PackingParams

    s = PackingParams()
    assert minimiser_used(s, 30_000, 6_000) == "fire-imex"
    assert minimiser_used(s, 19_999, 6_000) == "fire"  # the default box and small packings
    assert minimiser_used(s, 30_000, 0) == "fire"  # nothing stiff to treat implicitly
    assert minimiser_used(s, 30_000, 30_000) == "fire"
    assert minimiser_used(PackingParams(minimiser="fire"), 30_000, 6_000) == "fire"
    assert minimiser_used(PackingParams(minimiser="fire-imex"), 100, 50) == "fire-imex"


def test_implicit_minimiser_packs_the_default_composite_as_fire_does():
    """The default box packed by both minimisers: both meet the packing's acceptance (fractions
    on the voxel union within 1 point, NMC-NMC overlaps below 2 %, residual force below the
    tolerance) and give the same contact statistics within the seed-to-seed spread."""
    p = Params()
    fire = pack(p.replace(structure={"minimiser": "fire"}))
    imex = pack(p.replace(structure={"minimiser": "fire-imex"}))
    sf, si = fire.summary(), imex.summary()
    assert (sf["minimiser"], si["minimiser"]) == ("fire", "fire-imex")
    assert si["max_force_residual"] <= p.structure.force_tolerance
    img = voxelize(imex, voxel_size_m=0.25e-6)
    fr = img.fractions()
    assert abs(fr["solid_fraction"] - 0.85) <= 0.01
    assert abs(fr["nmc_fraction_of_solid"] - 0.54) <= 0.01
    assert si["nmc_nmc_overlap_max_rel"] < 0.02
    for key, rel in (("coordination_mean", 0.03), ("coordination_nmc_nmc_mean", 0.08),
                     ("coordination_nmc_se_mean", 0.05), ("nmc_nmc_contact_radius_median_m", 0.1),
                     ("nmc_connected_to_cc_fraction", 0.02)):
        assert si[key] == pytest.approx(sf[key], rel=rel), key


def test_implicit_minimiser_is_reproducible(small_params):
    p = small_params.replace(structure={"minimiser": "fire-imex"})
    a, b = pack(p), pack(p)
    np.testing.assert_array_equal(a.centers_m, b.centers_m)
    np.testing.assert_array_equal(a.contact_force, b.contact_force)
    c = pack(p.replace(structure={"seed": p.structure.seed + 1}))
    assert not np.array_equal(a.centers_m[:10], c.centers_m[:10])


def test_implicit_minimiser_same_bytes_on_any_thread_count():
    """fire-imex with the serial or the threaded force kernels, on 1 or 2 threads: identical."""
    from esim._fire_imex import fire_imex

    runs = _runs_on_thread_counts(lambda x, rad, hard, box: fire_imex(
        x, rad, hard, box, False, 1.0, 100.0, 1e-3, 400, 0.5, 0.3))
    assert runs[0][1][0] > 50 and runs[0][1][3] + runs[0][1][4] > 0
    for x, out in runs[1:]:
        assert out == runs[0][1]
        np.testing.assert_array_equal(x, runs[0][0])


@pytest.mark.parametrize("n", [0, 1, 2.5, True])
def test_jam_refuses_fewer_than_two_spheres(n):
    """With no sphere the FIRE kernel read past its arrays (garbage, or IndexError with
    bounds checking on)."""
    from esim.errors import InvalidParameters

    with pytest.raises(InvalidParameters, match="n: at least 2"):
        jam_hard_spheres(n, seed=0)


def _edit(path, name, fn):
    import h5py

    with h5py.File(path, "r+") as h5:
        if name in h5.attrs:
            h5.attrs[name] = fn(h5.attrs[name])
        else:
            data = fn(h5[name][()])
            del h5[name]
            h5[name] = data


@pytest.mark.parametrize("name, fn, needle", [
    ("radii_m", lambda a: a[:3], "'radii_m' (3,), 'centers_m' ("),
    ("contacts", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 1, 99999, a),
     "'contacts' must pair two different particles"),
    ("radii_m", lambda a: np.where(np.arange(a.size) == 4, np.nan, a),
     "'radii_m' must be positive and finite"),
    ("phase", lambda a: np.where(np.arange(a.size) == 0, 7, a).astype(a.dtype),
     "'phase' holds codes other than 1 (NMC) and 2 (SE): [7]"),
    ("wall_side", lambda a: np.full_like(a, 5), "'wall_side' must be 0"),
    ("esim_format", lambda v: 999, "esim_format 999: this esim reads formats 1 to"),
])
def test_a_damaged_packing_file_is_refused_naming_the_field(small_packing, tmp_path, capsys,
                                                            name, fn, needle):
    """A damaged or edited packing file crashed solve (IndexError) or ran on (NaN radius, phase
    7, a newer format); now one line naming the file and the field, exit 2."""
    from esim.cli.main import main

    f = tmp_path / "pk.h5"
    small_packing.save(f)
    _edit(f, name, fn)
    with pytest.raises(InputFileError) as err:
        Packing.load(f)
    assert str(f) in str(err.value) and needle in str(err.value)
    assert main(["solve", str(f), "--soc", "0", "-q", "-o", str(tmp_path / "s")]) == 2
    msg = capsys.readouterr().err
    assert needle in msg and len(msg.strip().splitlines()) == 1
