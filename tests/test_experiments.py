"""Every experiment script runs in its small mode and gives the physics it is about."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np

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
