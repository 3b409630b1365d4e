"""Instrument models: limits the physics settles, naive twins, seeds and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, optimize

from esim.errors import InvalidParameters
from esim.packing import PHASE_NMC, PHASE_SE, PORE
from esim.spm import instrument as ins


# --- spreading resistance ------------------------------------------------------------------------
def test_spreading_resistance_far_from_edge_is_holm():
    rho = np.array([[1e-2, 1.0], [10.0, 1e4]])
    a = 10e-9
    expected = rho / (4 * a)
    np.testing.assert_allclose(ins.spreading_resistance(rho, a), expected, rtol=1e-15)
    np.testing.assert_allclose(ins.spreading_resistance(rho, a, np.inf), expected, rtol=1e-15)
    # 1e6 radii from the edge the correction is below 1e-6
    np.testing.assert_allclose(ins.spreading_resistance(rho, a, 1e6 * a), expected, rtol=1e-6)


def test_spreading_resistance_edge_limits_and_monotone():
    a, rho = 10e-9, 1.0
    r_inf = rho / (4 * a)
    s = np.linspace(0, 50 * a, 501)
    r = ins.spreading_resistance(rho, a, s)
    assert r[0] == pytest.approx(2 * r_inf, rel=1e-15)  # exact quarter-space limit
    assert np.all(np.diff(r) < 0)  # rises monotonically towards the edge
    assert np.all(r > r_inf)
    # image-method asymptote: f -> 1 + a / (pi s)
    x = np.array([1e2, 1e3, 1e4])
    f = ins.edge_correction(x)
    np.testing.assert_allclose((f - 1) * np.pi * x, 1.0, rtol=2e-2)


def test_flat_disc_is_below_uniform_current_disc():
    # isopotential disc minimises the resistance: rho/(4a) < 8 rho / (3 pi^2 a)
    rho, a = 3.0, 7e-9
    assert ins.spreading_resistance(rho, a) < 8 * rho / (3 * np.pi**2 * a)


def test_resistivity_round_trip():
    rho = np.array([0.1, 2.0, 3e5])
    r = ins.spreading_resistance(rho, 12e-9)
    np.testing.assert_allclose(ins.resistivity_from_spreading(r, 12e-9), rho, rtol=1e-15)


def test_insulator_gives_infinite_spreading_resistance():
    assert np.isinf(ins.spreading_resistance(np.inf, 10e-9, 0.0))


# --- tip contact ---------------------------------------------------------------------------------
def test_ohmic_contact_is_exactly_v_over_r():
    rng = np.random.default_rng(1)
    r = 10 ** rng.uniform(3, 12, size=(16, 16))
    c = ins.TipContact(r_instrument_ohm=500.0, nonohmic=False)
    i = ins.contact_current(-2.0, r, c)
    np.testing.assert_array_equal(i, -2.0 / (r + 500.0))
    assert ins.contact_current(-2.0, np.inf, c) == 0.0


def _naive_sinh_current(v, r, c):
    """Per-value brentq on the Kirchhoff equation V = V0 asinh(I/I0) + I R."""
    v0, i0 = c.barrier_v0_V, c.barrier_i0_A
    f = lambda i: v0 * math.asinh(i / i0) + i * r - abs(v)  # noqa: E731
    hi = abs(v) / r
    return math.copysign(optimize.brentq(f, 0.0, hi, xtol=1e-300, rtol=1e-15), v)


def test_nonohmic_contact_matches_naive_solve_and_kirchhoff():
    c = ins.TipContact(nonohmic=True, r_instrument_ohm=0.0)
    rng = np.random.default_rng(2)
    r = 10 ** rng.uniform(2, 13, size=(8, 8))
    v = rng.uniform(-2, 2, size=(8, 8))
    i = ins.contact_current(v, r, c)
    naive = np.array([_naive_sinh_current(vv, rr, c) for vv, rr in zip(v.ravel(), r.ravel())])
    np.testing.assert_allclose(i.ravel(), naive, rtol=1e-10)
    kvl = c.barrier_v0_V * np.arcsinh(i / c.barrier_i0_A) + i * r
    np.testing.assert_allclose(kvl, v, rtol=1e-11)
    # odd in V, and never more than the ohmic current
    np.testing.assert_allclose(ins.contact_current(-v, r, c), -i, rtol=1e-12)
    assert np.all(np.abs(i) <= np.abs(v) / r)


def test_nonohmic_tends_to_ohmic_when_barrier_vanishes():
    r = np.logspace(3, 12, 10)
    weak = ins.TipContact(nonohmic=True, barrier_r0_ohm=1e-6, r_instrument_ohm=0.0)
    np.testing.assert_allclose(ins.contact_current(2.0, r, weak), 2.0 / r, rtol=1e-6)


def test_ssrm_is_bias_over_current_pixelwise():
    rng = np.random.default_rng(3)
    r = 10 ** rng.uniform(3, 14, size=(12, 12))
    for c in (ins.TipContact(nonohmic=False), ins.TipContact(nonohmic=True)):
        i = ins.contact_current(-2.0, r, c)
        r_app = ins.apparent_resistance(-2.0, r, c)
        np.testing.assert_array_equal(r_app, -2.0 / i)
    ohmic = ins.apparent_resistance(-2.0, r, ins.TipContact(nonohmic=False))
    np.testing.assert_allclose(ohmic, r + 1e3, rtol=1e-15)
    # the barrier only adds resistance, most on the best-conducting paths
    barrier = ins.apparent_resistance(-2.0, r, ins.TipContact(nonohmic=True))
    assert np.all(barrier >= ohmic * (1 - 1e-12))
    assert np.isinf(ins.apparent_resistance(-2.0, np.inf))


# --- amplifiers ----------------------------------------------------------------------------------
def test_log_amplifier_noise_free_identity_and_saturation():
    r = np.array([[0.0, 1.0, 199.0, 200.0, 201.0], [1e5, 1.99e9, 2e9, 2.1e9, np.inf]])
    out = ins.log_amplifier(r, noise_decades_sd=0, saturation_spread_decades=0, rng=None)
    expected = np.array([[200.0, 200.0, 200.0, 200.0, 201.0], [1e5, 1.99e9, 2e9, 2e9, 2e9]])
    np.testing.assert_array_equal(out, expected)
    assert ins.SSRM_R_MIN_OHM == pytest.approx(2e9 / 1e7, rel=1e-12)


def test_log_amplifier_noise_statistics_and_pristine_band():
    r = np.full((200, 200), 1e6)
    out = ins.log_amplifier(r, noise_decades_sd=0.05, saturation_spread_decades=0.0, rng=4)
    assert np.std(np.log10(out)) == pytest.approx(0.05, rel=0.03)
    assert np.mean(np.log10(out)) == pytest.approx(6.0, abs=1e-3)
    # an insulating map saturates at the ceiling with the paper's 1.8-2.2e9 ohm spread
    sat = ins.log_amplifier(np.full((100, 100), 1e15), rng=5)
    assert np.median(sat) == pytest.approx(2e9, rel=0.01)
    frac_in_band = np.mean((sat >= 1.8e9) & (sat <= 2.2e9))
    assert frac_in_band > 0.95


def test_current_amplifier_identity_in_range_and_clip():
    i = np.array([[-1.0, -1e-8, -5e-9, 0.0], [1e-12, 5e-9, 1e-8, 1.0]])
    out = ins.current_amplifier(i, noise_floor_A=0.0, saturation_A=1e-8)
    np.testing.assert_array_equal(out, np.clip(i, -1e-8, 1e-8))
    noisy = ins.current_amplifier(np.zeros((300, 300)), noise_floor_A=1e-12, rng=6)
    assert np.std(noisy) == pytest.approx(1e-12, rel=0.02)


@pytest.mark.parametrize("fn", [
    lambda rng: ins.log_amplifier(np.full((32, 32), 1e6), rng=rng),
    lambda rng: ins.current_amplifier(np.zeros((32, 32)), rng=rng),
    lambda rng: ins.kpfm_noise(np.zeros((32, 32)), rng=rng),
    lambda rng: ins.edx_map(np.full((32, 32), 0.5), pixel_size_m=1e-7, rng=rng),
])
def test_seeds(fn):
    a, b, c = fn(7), fn(7), fn(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(fn(np.random.default_rng(9)), fn(np.random.default_rng(9)))


def test_noise_free_is_deterministic_without_seed():
    r = np.logspace(1, 11, 20).reshape(4, 5)
    a = ins.log_amplifier(r, noise_decades_sd=0, saturation_spread_decades=0)
    b = ins.log_amplifier(r, noise_decades_sd=0, saturation_spread_decades=0)
    np.testing.assert_array_equal(a, b)
    x = np.ones((3, 3))
    np.testing.assert_array_equal(ins.kpfm_noise(x, noise_sd_V=0), x)
    np.testing.assert_array_equal(ins.current_amplifier(x * 1e-9, noise_floor_A=0), x * 1e-9)


# --- SE decomposition ----------------------------------------------------------------------------
def test_se_decomposition_current():
    v = np.linspace(-2, 2, 401)
    i = ins.se_decomposition_current(v)
    assert np.all(np.abs(i[v <= 1.0]) < 1e-15)  # "almost zero current" from -2 to 1 V
    assert ins.se_decomposition_current(2.0) == pytest.approx(1e-12, rel=0.1)
    assert np.all(np.diff(i) >= 0)
    assert 0 < ins.se_decomposition_current(1.5) < 0.5e-12  # "gradually increased"


# --- KPFM ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pixel", [5e-9, 50e-9, 200e-9])
def test_psf_sums_to_one_and_is_symmetric(pixel):
    psf = ins.kpfm_psf(pixel, 25)
    assert psf.shape == (51, 51)
    assert abs(psf.sum() - 1.0) < 1e-12
    assert np.all(psf >= 0)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], rtol=0, atol=1e-18)
    np.testing.assert_allclose(psf, psf.T, rtol=0, atol=1e-18)


def test_psf_second_moment():
    # variance along x of the two-term PSF: (1-w) s1^2 + w s2^2 + p^2/12 (pixel integration)
    p, s1, s2, w = 10e-9, 30e-9, 200e-9, 0.3
    psf = ins.kpfm_psf(p, 150, apex_sigma_m=s1, cantilever_sigma_m=s2, cantilever_weight=w)
    x = (np.arange(psf.shape[1]) - psf.shape[1] // 2) * p
    var = np.sum(psf.sum(axis=0) * x**2)
    assert var == pytest.approx((1 - w) * s1**2 + w * s2**2 + p**2 / 12, rel=1e-3)


def test_non_square_pixels_blur_alike_in_metres():
    """With (dy, dx) = (40, 10) nm pixels the PSF, the EDX blur and the topography slopes are
    isotropic in metres (before, one geometric-mean pixel made a 2 um cantilever 2.8 um along
    one axis and 1.4 um along the other on 2:1 pixels)."""
    dy, dx, s1, s2, w = 40e-9, 10e-9, 30e-9, 200e-9, 0.3
    psf = ins.kpfm_psf((dy, dx), apex_sigma_m=s1, cantilever_sigma_m=s2, cantilever_weight=w)
    assert psf.shape == (2 * math.ceil(4 * s2 / dy) + 1, 2 * math.ceil(4 * s2 / dx) + 1)
    y = (np.arange(psf.shape[0]) - psf.shape[0] // 2) * dy
    x = (np.arange(psf.shape[1]) - psf.shape[1] // 2) * dx
    var_y, var_x = np.sum(psf.sum(axis=1) * y**2), np.sum(psf.sum(axis=0) * x**2)
    want = (1 - w) * s1**2 + w * s2**2
    assert var_y == pytest.approx(want + dy**2 / 12, rel=2e-3)
    assert var_x == pytest.approx(want + dx**2 / 12, rel=2e-3)
    # EDX: an edge along each axis has the same 12-88 % width in metres
    widths = []
    for axis, p in ((0, dy), (1, dx)):
        n = int(round(6e-6 / p))
        f = (np.arange(n) >= n // 2).astype(np.float64)
        f = np.repeat(f[:, None] if axis == 0 else f[None, :], n, axis=1 - axis)
        e = ins.edx_map(f, pixel_size_m=(dy, dx), blur_m=1e-6, counts_per_pixel=1.0,
                        poisson=False)
        prof = e[:, n // 3] if axis == 0 else e[n // 3, :]
        x12, x88 = np.interp([0.12, 0.88], prof, np.arange(n) * p)
        widths.append(x88 - x12)
    assert widths[0] == pytest.approx(widths[1], rel=0.03)
    # topography: a ramp of slope 0.01 along each axis tilts the SEM signal alike
    yy, xx = np.mgrid[:30, :30]
    c = ins.SEM_PHASE_BRIGHTNESS[PHASE_NMC]
    phase = np.full((30, 30), PHASE_NMC, dtype=np.int8)
    for h in (0.01 * yy * dy, 0.01 * xx * dx):
        img = ins.sem_image(phase, False, h, pixel_size_m=(dy, dx))
        np.testing.assert_allclose(img, c * math.sqrt(1 + 1e-4), rtol=1e-12)
    with pytest.raises(InvalidParameters, match="pixel_size_m"):
        ins.kpfm_psf((1e-8, 1e-8, 1e-8))


def test_psf_narrower_than_pixel_tends_to_delta():
    psf = ins.kpfm_psf(1e-6, 3, apex_sigma_m=1e-9, cantilever_weight=0.0)
    assert psf[3, 3] == pytest.approx(1.0, abs=1e-12)


def test_blur_keeps_uniform_map_uniform():
    psf = ins.kpfm_psf(20e-9, apex_sigma_m=30e-9, cantilever_sigma_m=300e-9)
    m = np.full((40, 64), 2.17)
    out = ins.blur(m, psf)
    assert out.shape == m.shape
    np.testing.assert_allclose(out, 2.17, rtol=1e-12, atol=0)
    # a PSF larger than the map still works
    big = ins.kpfm_psf(20e-9, 100, cantilever_sigma_m=1e-6)
    np.testing.assert_allclose(ins.blur(np.full((10, 12), -0.5), big), -0.5, rtol=1e-12)


def test_blur_of_step_keeps_mean_and_smooths():
    m = np.zeros((32, 48))
    m[:, 20:] = 1.0
    psf = ins.kpfm_psf(25e-9, 30, apex_sigma_m=30e-9, cantilever_sigma_m=300e-9)
    out = ins.blur(m, psf)
    assert out.mean() == pytest.approx(m.mean(), rel=1e-12)
    assert out.min() >= -1e-12 and out.max() <= 1 + 1e-12
    assert 0.3 < out[0, 20] < 0.7  # the step is smeared
    assert np.all(np.diff(out[5]) >= -1e-12)  # and stays monotone


def test_blur_matches_direct_convolution_with_asymmetric_psf():
    rng = np.random.default_rng(10)
    m = rng.normal(size=(20, 30))
    psf = rng.uniform(size=(5, 7))
    psf[0, 0] = 5.0  # asymmetric and unnormalised (a "measured" PSF)
    out = ins.blur(m, psf)
    naive = ndimage.convolve(m, psf / psf.sum(), mode="reflect")  # scipy reflect == half-sample
    np.testing.assert_allclose(out, naive, rtol=1e-10, atol=1e-12)


def test_kpfm_measure_noise_free_is_blur():
    m = np.zeros((16, 16))
    m[4:10, 4:10] = 1.1
    out = ins.kpfm_measure(m, pixel_size_m=50e-9, noise_sd_V=0.0)
    np.testing.assert_allclose(out, ins.blur(m, ins.kpfm_psf(50e-9)), rtol=0, atol=0)


# --- SEM / EDX -----------------------------------------------------------------------------------
def test_edx_poisson_mean_and_variance():
    f = np.full((200, 200), 0.5)
    counts = ins.edx_map(f, pixel_size_m=50e-9, counts_per_pixel=100.0, rng=11)
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    assert counts.mean() == pytest.approx(50.0, abs=5 * math.sqrt(50 / counts.size))
    assert counts.var() == pytest.approx(50.0, rel=0.05)  # Poisson: variance = mean


def test_edx_blur_conserves_counts_and_blurs_by_fwhm():
    f = np.zeros((64, 64))
    f[:, 32:] = 1.0
    exp = ins.edx_map(f, pixel_size_m=50e-9, blur_m=1e-6, counts_per_pixel=80.0, poisson=False)
    assert exp.sum() == pytest.approx(80.0 * f.sum(), rel=1e-12)
    # an error-function edge: the 12-88 % width of a Gaussian of FWHM 1 um is 2 * 1.175 sigma
    prof = exp[10] / 80.0
    x = np.arange(64) * 50e-9
    x12, x88 = np.interp([0.12, 0.88], prof, x)
    sigma = 1e-6 / math.sqrt(8 * math.log(2))
    assert x88 - x12 == pytest.approx(2 * 1.175 * sigma, rel=0.05)


def test_sem_image_contrast_edges_and_topography():
    phase = np.full((20, 20), PHASE_SE, dtype=np.int8)
    phase[5:15, 5:15] = PHASE_NMC
    phase[0, 0] = PORE
    flat = ins.sem_image(phase, edges=False)
    assert flat[10, 10] > flat[10, 2] > flat[0, 0]  # NMC > SE > pore
    edged = ins.sem_image(phase)
    assert edged[10, 5] > flat[10, 5] and edged[10, 10] == flat[10, 10]
    uniform = np.full((8, 8), PHASE_NMC)
    np.testing.assert_array_equal(ins.sem_image(uniform), np.full((8, 8), 0.8))
    h = ins.milling_topography(phase, pixel_size_m=20e-9, smooth_m=20e-9)
    assert h[10, 10] > -1e-10 and h[10, 1] == pytest.approx(-30e-9, rel=0.01)  # SE milled lower
    assert np.all(h <= 1e-18)
    sharp = ins.milling_topography(phase, pixel_size_m=20e-9, smooth_m=0)
    np.testing.assert_array_equal(sharp[phase == PHASE_NMC], 0.0)
    tilted = ins.sem_image(phase, edges=False, topography=h, pixel_size_m=20e-9)
    assert np.all(tilted >= flat) and tilted[10, 5] > flat[10, 5]
    np.testing.assert_array_equal(
        ins.sem_image(phase, topography=np.zeros((20, 20)), pixel_size_m=1e-8),
        ins.sem_image(phase))


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: ins.kpfm_psf(-1e-9), "pixel_size_m"),
    (lambda: ins.kpfm_psf(0.0), "pixel_size_m"),
    (lambda: ins.kpfm_psf(1e-8, cantilever_weight=1.5), "cantilever_weight"),
    (lambda: ins.kpfm_psf(1e-8, radius_px=-1), "radius_px"),
    (lambda: ins.blur(np.zeros((0, 5)), np.ones((3, 3))), "map_"),
    (lambda: ins.blur(np.zeros(5), np.ones((3, 3))), "map_"),
    (lambda: ins.blur(np.zeros((5, 5)), np.ones((4, 3))), "psf"),
    (lambda: ins.blur(np.array([[np.nan, 1.0]]), np.ones((1, 1))), "map_"),
    (lambda: ins.log_amplifier(np.array([np.nan])), "resistance_ohm"),
    (lambda: ins.log_amplifier(np.array([-1.0])), "resistance_ohm"),
    (lambda: ins.log_amplifier(1.0, r_min_ohm=1e9, r_max_ohm=1e3), "r_max_ohm"),
    (lambda: ins.current_amplifier(np.ones(2), noise_floor_A=-1.0), "noise_floor_A"),
    (lambda: ins.spreading_resistance(1.0, -1e-9), "a_m"),
    (lambda: ins.spreading_resistance(1.0, 1e-8, -1e-9), "edge_distance_m"),
    (lambda: ins.contact_current(-2.0, 0.0), "r_series_ohm"),
    (lambda: ins.contact_current(np.nan, 1.0), "v_bias_V"),
    (lambda: ins.apparent_resistance(0.0, 1.0), "v_bias_V"),
    (lambda: ins.TipContact(radius_m=0.0), "TipContact.radius_m"),
    (lambda: ins.TipContact(barrier_v0_V=float("nan")), "TipContact.barrier_v0_V"),
    (lambda: ins.edx_map(np.full((4, 4), 1.5), pixel_size_m=1e-8), "phase_fraction_map"),
    (lambda: ins.edx_map(np.full((4, 4), 0.5), pixel_size_m=-1e-8), "pixel_size_m"),
    (lambda: ins.sem_image(np.full((4, 4), 7)), "brightness"),
    (lambda: ins.sem_image(np.full((4, 4), 1.0)), "phase_map"),
    (lambda: ins.sem_image(np.ones((4, 4), int), topography=np.zeros((4, 4))), "pixel_size_m"),
    (lambda: ins.se_decomposition_current(1.0, onset_V=2.5), "onset_V"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(InvalidParameters, match=name.replace(".", r"\.")):
        call()


def test_contact_type_checked():
    with pytest.raises(InvalidParameters, match="contact"):
        ins.contact_current(1.0, 1.0, contact="ohmic")


def test_instrument_defaults_are_the_parameter_defaults():
    """The low-level defaults (module constants, ``TipContact()``, keyword defaults) are the
    parameter set's: a function called without the ``spm`` section measures what the
    pipeline measures."""
    import inspect

    from esim._params_spm import SPMParams

    d = SPMParams()
    tip = ins.TipContact()
    assert (tip.radius_m, tip.r_instrument_ohm, tip.nonohmic, tip.barrier_v0_V,
            tip.barrier_r0_ohm) == (d.tip_radius_m, d.r_instrument_ohm, d.nonohmic,
                                    d.barrier_v0_V, d.barrier_r0_ohm)
    assert (ins.SSRM_R_MAX_OHM, ins.SSRM_DECADES, ins.SSRM_NOISE_DECADES_SD,
            ins.SSRM_SATURATION_SPREAD_DECADES) == (
        d.ssrm_r_max_ohm, d.ssrm_decades, d.ssrm_noise_decades, d.ssrm_saturation_spread_decades)
    assert (ins.CAFM_NOISE_FLOOR_A, ins.CAFM_SATURATION_A, ins.KPFM_NOISE_SD_V) == (
        d.cafm_noise_floor_A, d.cafm_saturation_A, d.kpfm_noise_V)

    def kw(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}

    psf = kw(ins.kpfm_psf)
    assert (psf["apex_sigma_m"], psf["cantilever_sigma_m"], psf["cantilever_weight"]) == (
        d.kpfm_apex_sigma_m, d.kpfm_cantilever_sigma_m, d.kpfm_cantilever_weight)
    se = kw(ins.se_decomposition_current)
    assert (se["onset_V"], se["current_at_2V_A"]) == (d.se_decomposition_onset_V,
                                                      d.se_decomposition_current_2V_A)
