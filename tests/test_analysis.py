"""Histogram-peak method against ground truth, vectorised against a naive per-particle loop."""

from __future__ import annotations

import numpy as np
import pytest

from esim.analysis import histogram_peak, linear_gradient, particle_table
from esim.errors import InvalidParameters


def blobs(seed=0, n=12, shape=(96, 96)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cx, cy = rng.uniform(0, shape[1], n), rng.uniform(0, shape[0], n)
    d = (xx[..., None] - cx) ** 2 + (yy[..., None] - cy) ** 2
    lab = np.argmin(d, axis=-1)
    lab[np.min(d, axis=-1) > 15**2] = -1
    return lab, rng


def test_noise_free_peak_equals_truth():
    lab, rng = blobs()
    truth = 10 ** rng.uniform(6, 10, lab.max() + 1)
    m = np.where(lab >= 0, truth[np.clip(lab, 0, None)], np.nan)
    ids = np.unique(lab[lab >= 0])
    peak = histogram_peak(m, lab, ids, bins=400, log=True)
    # within half a bin in log space
    half_bin = 0.5 * (np.log10(truth[ids]).max() - np.log10(truth[ids]).min()) / 400
    np.testing.assert_allclose(np.log10(peak), np.log10(truth[ids]), atol=half_bin + 1e-12)


def test_peak_is_mode_not_mean_with_outliers():
    lab, rng = blobs(1)
    ids = np.unique(lab[lab >= 0])
    base = rng.uniform(2.0, 3.0, lab.max() + 1)
    m = base[np.clip(lab, 0, None)] + rng.normal(0, 0.005, lab.shape)
    edge = rng.random(lab.shape) < 0.2  # edge artefacts far off the mode
    m[edge] += 1.0
    peak = histogram_peak(m, lab, ids, bins=200)
    np.testing.assert_allclose(peak, base[ids], atol=0.03)
    mean = np.array([m[lab == i].mean() for i in ids])
    assert np.abs(mean - base[ids]).max() > 0.1  # the mean would have been wrong


def test_matches_naive_loop():
    lab, rng = blobs(2)
    m = rng.normal(0, 1, lab.shape)
    ids = np.unique(lab[lab >= 0])
    got = histogram_peak(m, lab, ids, bins=16, value_range=(-3, 3))
    edges = np.linspace(-3, 3, 17)
    want = []
    for i in ids:  # the naive twin
        x = m[lab == i]
        c, _ = np.histogram(x, bins=edges)
        k = int(np.argmax(c))
        below, above = np.count_nonzero(x < -3), np.count_nonzero(x > 3)
        centre = 0.5 * (edges[k] + edges[k + 1])
        if 1 <= k <= 14:  # the vertex of a parabola through the (log) counts around the mode
            y = np.log(c[k - 1:k + 2].astype(float)) if min(c[k - 1], c[k + 1]) > 0 else \
                c[k - 1:k + 2].astype(float)
            curv = y[0] - 2 * y[1] + y[2]
            if curv < 0:
                centre += 0.5 * (y[0] - y[2]) / curv * (edges[1] - edges[0])
        want.append(centre if c[k] > max(below, above) else np.nan)
    np.testing.assert_allclose(got, want)
    plain = histogram_peak(m, lab, ids, bins=16, value_range=(-3, 3), refine=False)
    assert np.isin(np.round(plain, 12), np.round(0.5 * (edges[1:] + edges[:-1]), 12)).all()


def test_refined_peak_is_finer_than_a_bin():
    """Gaussian pixels (sigma 0.4 bin) around a value anywhere in its bin: the refined peak
    reads it to a small fraction of a bin; a bin centre is off by up to half a bin."""
    rng = np.random.default_rng(7)
    lab = np.repeat(np.arange(200), 1500).reshape(300, 1000)
    true = rng.uniform(2.0, 4.0, 200)
    m = true[lab] + rng.normal(0.0, 0.010, lab.shape)
    ids = np.arange(200)
    fine = histogram_peak(m, lab, ids, bins=200, value_range=(0.0, 5.0))
    coarse = histogram_peak(m, lab, ids, bins=200, value_range=(0.0, 5.0), refine=False)
    err_f, err_c = np.abs(fine - true), np.abs(coarse - true)
    assert np.sqrt(np.mean(err_c**2)) > 0.006  # ~ 25 mV / sqrt(12) = 7.2 mV
    assert np.sqrt(np.mean(err_f**2)) < 0.002
    assert err_f.max() < 0.0125  # never further than half a bin


def test_values_outside_the_range_are_not_clipped_into_it():
    """A particle whose pixels lie below or above the histogram range reads NaN, not the
    range's edge bin; a few out-of-range pixels do not move an in-range peak."""
    from esim.analysis import KPFM_HISTOGRAM, SSRM_HISTOGRAM

    lab = np.repeat(np.arange(4), 25).reshape(10, 10)
    m = np.empty(lab.shape)
    m[lab == 0] = 3e4        # below the SSRM range (1e5-1e10 ohm)
    m[lab == 1] = 5e10       # above it
    m[lab == 2] = 3e7        # inside
    m[lab == 3] = 3e7
    m.ravel()[75:80] = 3e4   # particle 3: 5 of 25 pixels below the range
    peak = histogram_peak(m, lab, np.arange(4), **SSRM_HISTOGRAM)
    assert np.isnan(peak[0]) and np.isnan(peak[1])
    np.testing.assert_allclose(np.log10(peak[2:]), np.log10(3e7), atol=5 / 140 / 2 + 1e-12)
    # a raw V_CPD map (negative, before adding V_OCV) is not read as 0.0125 V
    assert np.isnan(histogram_peak(np.full((4, 4), -0.6), np.zeros((4, 4), int),
                                   np.array([0]), **KPFM_HISTOGRAM)).all()
    # the range's closed upper edge is inside
    assert histogram_peak(np.full((2, 2), 5.0), np.zeros((2, 2), int), np.array([0]),
                          **KPFM_HISTOGRAM)[0] == pytest.approx(5.0 - 0.0125)


def test_numbering_from_current_collector():
    lab = np.full((10, 30), -1)
    lab[:, 0:10], lab[:, 10:20], lab[:, 20:30] = 7, 3, 5
    depth = np.tile(np.arange(30.0), (10, 1)) * 1e-6  # z grows along columns
    vals = np.where(lab == 7, 1.0, np.where(lab == 3, 2.0, 3.0))
    t = particle_table(vals, lab, depth, np.array([3, 5, 7]), bins=30)
    np.testing.assert_array_equal(t.ids, [7, 3, 5])
    np.testing.assert_array_equal(t.number, [1, 2, 3])
    g = linear_gradient(t.z_m, t.peak)
    assert g["cc_minus_se"] == pytest.approx(-2.0, abs=2 / 30)  # peaks are bin centres


def test_out_of_range_choice_is_checked_even_without_pixels():
    with pytest.raises(InvalidParameters, match="out_of_range"):
        histogram_peak(np.ones((3, 3)), np.zeros((3, 3), int), np.array([5]), out_of_range="x")


def test_no_particle_to_read_is_an_empty_answer():
    assert histogram_peak(np.ones((3, 3)), np.zeros((3, 3), int), np.array([], int)).shape == (0,)


def test_bad_shapes():
    with pytest.raises(InvalidParameters):
        histogram_peak(np.zeros((3, 3)), np.zeros((3, 4), int), np.array([0]))


def test_poisson_interval_covers_the_mean_at_its_level():
    """The exact (Garwood) interval is conservative: for any Poisson mean, the intervals of the
    counts it produces cover it with probability >= 95 % (summed exactly over the counts),
    and not much more (a too-wide interval would pass every window count)."""
    from scipy import stats

    from esim.analysis import poisson_interval

    ks = np.arange(0, 80)
    lo, hi = np.array([poisson_interval(int(k)) for k in ks]).T
    assert lo[0] == 0.0 and hi[0] == pytest.approx(3.689, abs=1e-3)  # -ln(0.025)
    for lam in (0.5, 2.0, 9.0, 14.0, 30.0):
        cover = stats.poisson.pmf(ks, lam)[(lo <= lam) & (lam <= hi)].sum()
        assert 0.95 <= cover < 0.99, (lam, cover)
    with pytest.raises(InvalidParameters, match="count"):
        poisson_interval(-1)


def test_log_histogram_counts_zeros_below_the_range():
    """A particle reading mostly exactly 0 A (a measured |I| map) lies below a log range: NaN,
    or 0 with out_of_range="inf", as a particle at 0.1 fA does; it was read at its 1 pA noise
    tail because log10(0) was dropped.  NaN and infinite pixels are still left out."""
    lab = np.zeros(10, int)
    zeros = np.array([0.0] * 8 + [1e-12] * 2)
    tiny = np.array([1e-16] * 8 + [1e-12] * 2)
    for rng, v in ((None, zeros), ((1e-13, 1e-9), zeros), ((1e-13, 1e-9), tiny)):
        a = histogram_peak(v, lab, np.array([0]), log=True, value_range=rng)
        b = histogram_peak(v, lab, np.array([0]), log=True, value_range=rng, out_of_range="inf")
        assert np.isnan(a[0]) and b[0] == 0.0, (rng, v[0], a, b)
    gaps = np.array([np.nan] * 5 + [np.inf] * 4 + [2e-12])
    assert histogram_peak(gaps, lab, np.array([0]), log=True)[0] == pytest.approx(2e-12)
    # linear histograms keep zeros as values
    assert histogram_peak(zeros, lab, np.array([0]), bins=4)[0] < 0.2e-12
