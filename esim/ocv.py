"""Open-circuit potential U(x) of NMC111, Li(1-x)Ni1/3Mn1/3Co1/3O2, in V vs Li+/Li.

No traceable NMC111 fit covering x = 0..0.6 is known (``shared/reference/materials_literature.md``):
the widely reused "NMC111" rational fit is a LiCoO2 fit (Ramadass et al., J. Electrochem. Soc.
151, A196, 2004) valid only to x = 0.5, and BattMo's "nmc111_Chen" is the NMC811 fit of Chen et
al. (J. Electrochem. Soc. 167, 080534, 2020).  esim therefore offers:

``"typical_halfcell"`` (default, **low confidence [E]**)
    A monotone cubic Hermite interpolant (PCHIP, Fritsch & Carlson 1980: no overshoot, C1) in x
    through the typical liquid half-cell values of the literature digest

    ====  =====  =====  =====  =====  =====
    x     0.1    0.3    0.5    0.6    0.7
    U/V   3.73   3.81   3.97   4.15   4.45
    ====  =====  =====  =====  =====  =====

    extended by esim's own estimates (not measurements) to x = 0 (3.60 V: the steep rise at
    the start of the first charge) and beyond 0.7 (4.65 V at 0.8, 4.90 V at 1.0, only so that the
    curve is defined and monotone where Newton iterates may wander; a charge to 4.4 V never
    reaches them).  With this curve U(0.59) = 4.13 V, while the reference cell rests at 4.36 V vs
    Li after a charge of 164 mAh/g (x = 0.59): the two cannot both hold unless part of the NMC
    never reacted, or the table is off for this material.  See esim.charge for what the
    simulation makes of it.
``"table"``
    The same interpolant through the user's points ``charge.ocv_table = "x:U, x:U, ..."``.

Either curve is evaluated at ``x * charge.ocv_x_scale`` (**calibrated**, default 1.136):
``U(x) = U_curve(k x)``.  With k = 1 the default electrode charges to 186 mAh/g at 4.4 V, 13.6 %
above the reference paper's 164 mAh/g; k = 1.136 = 186.3/164 matches it.  The potentials of
the table are kept, only the amount of Li removed to reach them shrinks: the same voltage
curve as if ~12 % of each particle's Li (or of the NMC) could not be extracted.  The OCV after
the charge is not fitted; see esim.charge for what it predicts.

Outside the table U is extended linearly with its end slopes, so U stays defined and monotone
for any x a Newton iterate may visit.

Examples
--------
>>> import numpy as np
>>> from esim.charge import params_with_charge
>>> raw = params_with_charge(None, ocv_x_scale=1.0)      # the table itself
>>> u, du = nmc_ocv(np.array([0.1, 0.59]), raw)
>>> np.round(u, 3).tolist()
[3.73, 4.128]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from esim._params_charge import OCV_CURVES, charge_params_of
from esim.errors import InvalidParameters

__all__ = ["TYPICAL_HALFCELL_X", "TYPICAL_HALFCELL_U", "nmc_ocv", "ocv_table", "x_at_ocv"]

#: x of the default curve: the literature digest's table [E] plus esim's extension points.
TYPICAL_HALFCELL_X = (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 1.0)
#: U (V vs Li) of the default curve.  0.1..0.7: typical half-cell values [E, low confidence];
#: 0.0, 0.8, 1.0: esim's extension (estimates, see the module docstring).
TYPICAL_HALFCELL_U = (3.60, 3.73, 3.81, 3.97, 4.15, 4.45, 4.65, 4.90)


def _parse_table(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    where = "charge.ocv_table"
    try:
        pts = [tuple(float(v) for v in item.split(":")) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InvalidParameters(f"{where}: expected 'x:U, x:U, ...' with numbers, got {text!r}"
                                ) from None
    if any(len(p) != 2 for p in pts) or len(pts) < 3:
        raise InvalidParameters(f"{where}: expected at least 3 points 'x:U, x:U, ...', "
                                f"got {text!r}")
    x, u = (tuple(v) for v in zip(*pts))
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(u))):
        raise InvalidParameters(f"{where}: values must be finite, got {text!r}")
    if np.any(np.diff(x) <= 0) or np.any(np.diff(u) <= 0):
        raise InvalidParameters(f"{where}: x and U must both increase strictly, got {text!r}")
    return x, u


def ocv_table(params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The (x, U) points of the chosen curve.

    Returns
    -------
    x : (K,) float64, 1
    U : (K,) float64, V vs Li+/Li
    """
    c = charge_params_of(params)
    if c.ocv_curve == "typical_halfcell":
        x, u = TYPICAL_HALFCELL_X, TYPICAL_HALFCELL_U
    elif c.ocv_curve == "table":
        x, u = _parse_table(c.ocv_table)
    else:
        raise InvalidParameters(f"charge.ocv_curve: unknown {c.ocv_curve!r}; valid: "
                                f"{', '.join(OCV_CURVES)}")
    return np.asarray(x, dtype=np.float64), np.asarray(u, dtype=np.float64)


@lru_cache(maxsize=16)
def _interpolant(x: tuple, u: tuple):
    from scipy.interpolate import PchipInterpolator

    f = PchipInterpolator(np.asarray(x), np.asarray(u), extrapolate=False)
    return f, f.derivative()


def nmc_ocv(x: Any, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Open-circuit potential of Li(1-x)NMC111 and its slope.

    Parameters
    ----------
    x : float or array_like, 1
        Delithiation x (any real: outside the table U continues linearly).
    params : Params or ChargeParams, optional
        ``charge.ocv_curve`` / ``charge.ocv_table``; defaults to ``"typical_halfcell"``.

    Returns
    -------
    U : ndarray, V vs Li+/Li, shape of ``x``
    dU_dx : ndarray, V, shape of ``x`` (> 0)
    """
    tx, tu = ocv_table(params)
    f, df = _interpolant(tuple(tx), tuple(tu))
    k = charge_params_of(params).ocv_x_scale
    x = np.asarray(x, dtype=np.float64) * k
    xc = np.clip(x, tx[0], tx[-1])
    u = f(xc)
    du = df(xc)
    lo, hi = x < tx[0], x > tx[-1]
    if np.any(lo | hi):
        s0, s1 = float(df(tx[0])), float(df(tx[-1]))
        s0 = s0 if s0 > 0 else (tu[1] - tu[0]) / (tx[1] - tx[0])
        s1 = s1 if s1 > 0 else (tu[-1] - tu[-2]) / (tx[-1] - tx[-2])
        u = np.where(lo, tu[0] + s0 * (x - tx[0]), np.where(hi, tu[-1] + s1 * (x - tx[-1]), u))
        du = np.where(lo, s0, np.where(hi, s1, du))
    # PCHIP may have a zero slope at a point; keep the Jacobian regular
    du = np.maximum(du * k, 1e-6)
    return u, du


def x_at_ocv(u_V: float, params: Any = None) -> float:
    """The x at which U(x) = ``u_V`` (V vs Li), by bisection on the monotone curve."""
    tx, _ = ocv_table(params)
    k = charge_params_of(params).ocv_x_scale
    lo, hi = (tx[0] - 1.0) / k, (tx[-1] + 1.0) / k
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if nmc_ocv(mid, params)[0] < u_V:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
