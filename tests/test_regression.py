"""Versioned regression data: results must not drift silently from one esim version to the next.

Users of peer tools saw network extraction change its results between releases
(shared/reference/peer_lessons.md, item 9).  ``tests/data/regression/`` keeps a small electrode
(20 x 20 x 20 um, seed 2024: ~170 particles) packed by the esim version named in
``numbers.json``, and the numbers every later stage gives on it:

* the stages downstream of the packing (effective properties at SOC 0 and 1, the first charge
  and its rest, the virtual SPM maps at SOC 1) are deterministic functions of the
  stored packing and its stored parameters, so they are compared tightly (the solvers'
  tolerances: 1e-6 relative, the charge's adaptive stepping and cut-off search 1e-4);
* the packing itself is chaotic in the rounding of its minimiser (another CPU, compiler or
  summation order gives another minimum of the same statistics), so a new packing from the
  same parameters is compared statistically: the same particles (sizes drawn from the seed),
  the same fractions to the calibration tolerance, the contacts to 15 %.

A deliberate change of results regenerates the data (``python tests/test_regression.py``, or
with ``--downstream`` to keep the stored packing when only later stages changed) and says why
in its commit; the diff of ``numbers.json`` is the record of what changed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data" / "regression"
PACKING = DATA / "packing.h5"
NUMBERS = DATA / "numbers.json"


def small_params():
    """The regression electrode: the default parameters on a 20 x 20 x 20 um box."""
    from esim.params import Params

    return Params().replace(structure={"box_x_m": 20e-6, "box_y_m": 20e-6,
                                       "electrode_thickness_m": 20e-6, "sample_points": 50_000,
                                       "seed": 2024})


def packing_numbers(pk) -> dict[str, float]:
    """Statistics of a packing (compared with tolerances: the packing is chaotic)."""
    from esim.packing import PHASE_NMC

    nmc = pk.phase == PHASE_NMC
    i, j = pk.contacts[:, 0], pk.contacts[:, 1]
    nn = nmc[i] & nmc[j]
    return {"n_particles": pk.n_particles, "n_nmc": int(nmc.sum()),
            "radii_sum_m": float(pk.radii_m.sum()),
            "solid_fraction": float(pk.solid_fraction),
            "nmc_fraction_of_solid": float(pk.nmc_fraction_of_solid),
            "n_contacts": int(len(pk.contacts)), "n_nmc_nmc_contacts": int(nn.sum()),
            "nmc_nmc_contact_radius_median_m": float(np.median(pk.contact_radius_m[nn]))}


def downstream_numbers(pk) -> dict[str, float]:
    """What the later stages make of one packing (compared tightly: deterministic)."""
    from esim.charge import charge
    from esim.effective import effective_properties
    from esim.spm.maps import simulate_spm

    out: dict[str, float] = {}
    for soc in (0.0, 1.0):
        eff = effective_properties(pk, soc=soc)
        for k in ("sigma_e_S_per_m", "sigma_ion_S_per_m", "tau_ion", "nmc_connected_fraction",
                  "active_interface_area_m2"):
            out[f"soc{soc:g}_{k}"] = float(eff[k])
    chg = charge(pk)
    out.update({"charge_capacity_mAh_per_g": float(chg.capacity_at_end_of_charge_mAh_per_g),
                "charge_ocv_after_rest_V_vs_Li": float(chg.ocv_after_rest_V_vs_Li),
                "charge_unreacted_nmc_fraction": float(chg.unreacted_nmc_fraction),
                "charge_mean_soc_after_rest": float(np.nanmean(chg.soc[-1]))})
    # the maps at a uniform SOC of 1, not the charge's: they stay as tight as the solvers
    spm = pk.params.replace(spm={"pixels_u": 128, "pixels_z": 128}).spm
    m = simulate_spm(pk, soc=1.0, spm=spm)
    for k, v in m.summary().items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"spm_{k}"] = float(v)
    return out


def write(downstream_only: bool = False) -> None:
    """Regenerate the data with this esim version (a deliberate change of results).

    ``downstream_only``: keep the stored packing and its numbers, recompute the stages after
    it (a change that leaves the packing alone: a new packing would differ in its rounding).
    """
    from esim import __version__
    from esim.packing import Packing, pack

    DATA.mkdir(parents=True, exist_ok=True)
    if downstream_only:
        pk = Packing.load(PACKING)
        packed = _stored()["packing"]
    else:
        pk = pack(small_params(), quiet=True)
        pk.save(PACKING)
        packed = packing_numbers(pk)
    doc = {"esim_version": __version__, "packing": packed,
           "downstream": downstream_numbers(pk)}
    NUMBERS.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _stored() -> dict:
    return json.loads(NUMBERS.read_text())


def _differences(now: dict[str, float], then: dict[str, float], rtol: float,
                 rtol_of: dict[str, float] | None = None) -> list[str]:
    bad = [f"{k}: missing now" for k in then if k not in now]
    for k, v in then.items():
        if k not in now:
            continue
        tol = (rtol_of or {}).get(k.split("_")[0], rtol)
        a, b = now[k], v
        if isinstance(b, float) and math.isnan(b):
            ok = math.isnan(a)
        else:
            ok = math.isclose(a, b, rel_tol=tol, abs_tol=1e-12 * max(1.0, abs(b)))
        if not ok:
            bad.append(f"{k}: {a!r} now, {b!r} in the data")
    return bad


def test_downstream_of_the_stored_packing_is_unchanged():
    from esim.packing import Packing

    pk = Packing.load(PACKING)
    bad = _differences(downstream_numbers(pk), _stored()["downstream"], rtol=1e-6,
                       rtol_of={"charge": 1e-4})
    assert not bad, ("results changed against the regression data of esim "
                     f"{_stored()['esim_version']} (regenerate on purpose: python "
                     "tests/test_regression.py):\n" + "\n".join(bad))


def test_a_new_packing_has_the_stored_statistics():
    from esim.packing import PHASE_NMC, Packing, pack

    pk = pack(small_params(), quiet=True)
    now = packing_numbers(pk)
    then = _stored()["packing"]
    # the particles are drawn from the seed: the same ones, in the same order
    for k in ("n_particles", "n_nmc"):
        assert now[k] == then[k], k
    old = Packing.load(PACKING)
    np.testing.assert_array_equal(pk.phase, old.phase)
    nmc = pk.phase == PHASE_NMC
    np.testing.assert_allclose(pk.radii_m[nmc], old.radii_m[nmc], rtol=1e-12)
    # the glass's radii up to the one scale its volume calibration chose, which depends on
    # the minimiser's rounding (another numba or CPU): within the calibration's tolerance
    scale = pk.radii_m[~nmc] / old.radii_m[~nmc]
    assert np.ptp(scale) < 1e-12 * scale.mean()
    assert scale.mean() == pytest.approx(1.0, abs=0.01)
    # fractions: within the calibration's tolerance (structure.fraction_tolerance 0.002, plus
    # the sampling error of 5e4 points)
    for k in ("solid_fraction", "nmc_fraction_of_solid"):
        assert now[k] == pytest.approx(then[k], abs=0.006), k
    for k in ("n_contacts", "n_nmc_nmc_contacts", "nmc_nmc_contact_radius_median_m"):
        assert now[k] == pytest.approx(then[k], rel=0.15), k


def test_regression_data_are_small_and_name_their_version():
    doc = _stored()
    assert doc["esim_version"]
    assert PACKING.stat().st_size < 512 * 1024
    assert len(doc["downstream"]) > 20 and len(doc["packing"]) == 8


if __name__ == "__main__":
    if "--help" in sys.argv:
        print(__doc__)
    else:
        only = "--downstream" in sys.argv
        write(downstream_only=only)
        print(f"wrote {NUMBERS}" if only else f"wrote {PACKING} and {NUMBERS}")
