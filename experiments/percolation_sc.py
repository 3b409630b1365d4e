"""Bond percolation on the simple cubic lattice: spanning probability near p_c = 0.2488.

For cubes of L x L x L sites (free boundaries) every nearest-neighbour bond is open with
probability p.  A realisation *spans* when an open path joins the bottom face (z = 0) to the top
face (z = L - 1).  The spanning probability R_L(p) steepens with L, and the curves of different
L cross near the bond threshold p_c = 0.248812 (Lorenz & Ziff, Phys. Rev. E 57, 230, 1998); the
crossing of each pair (L, 2L) converges to p_c as L grows.

Method (no Python loop over sites or bonds): each realisation draws one uniform number per bond
(float32), shared by all p ("coupled" realisations, so R_L(p) is monotone in p for each sample).
For each p, all realisations are stacked into one block-diagonal graph, with two terminal nodes
per realisation joined to its bottom and top faces, and labelled with
``scipy.sparse.csgraph.connected_components``; a realisation spans when its two terminals share a
label.  The crossing of two curves is the root of their difference R_L2 - R_L1 (linear
interpolation between grid points, where it changes sign from - to +); its uncertainty is the
standard deviation over bootstrap resamples of the realisations.  With free boundaries the curves
cross at R ~ 0.4, not 1/2; the p where R_L = 1/2 also tends to p_c, more slowly (reported too).

Usage::

    python experiments/percolation_sc.py [--quick] [-o OUTDIR] [--seed S]

writes ``OUTDIR/percolation_sc.json`` (all numbers) and ``OUTDIR/percolation_sc.png``.
``--quick`` (L = 8, 16, 24; a few hundred realisations) runs in a few seconds and is what the
test suite runs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

P_C_BOND_SC = 0.248812  # Lorenz & Ziff 1998, simple cubic bond percolation threshold

#: (L, realisations) and the p grid of each mode.
MODES = {
    "quick": {"sizes": [(8, 400), (16, 300), (24, 120)],
              "p": np.round(np.linspace(0.20, 0.30, 21), 6)},
    "full": {"sizes": [(8, 2000), (16, 1000), (32, 300), (48, 120)],
             "p": np.round(np.linspace(0.22, 0.28, 25), 6)},
}


def cubic_bonds(L: int) -> np.ndarray:
    """Bonds of an L^3 simple cubic lattice with free boundaries.

    Parameters
    ----------
    L : int
        Sites per edge.

    Returns
    -------
    conns : (3 L^2 (L-1), 2) int64
        Site pairs; site index ``(i * L + j) * L + k`` for position (i, j, k), k along z.
    """
    idx = np.arange(L**3, dtype=np.int64).reshape(L, L, L)
    parts = [np.stack([idx[:-1, :, :].ravel(), idx[1:, :, :].ravel()], axis=1),
             np.stack([idx[:, :-1, :].ravel(), idx[:, 1:, :].ravel()], axis=1),
             np.stack([idx[:, :, :-1].ravel(), idx[:, :, 1:].ravel()], axis=1)]
    return np.concatenate(parts)


def spanning(L: int, u: np.ndarray, p: float, conns: np.ndarray | None = None) -> np.ndarray:
    """Which realisations span along z at bond probability ``p``.

    Parameters
    ----------
    L : int
        Sites per edge.
    u : (R, M) float
        One uniform number per bond and realisation; bond open when ``u < p``.
    p : float
        Bond occupation probability.
    conns : (M, 2) int64, optional
        :func:`cubic_bonds` ``(L)`` (computed when omitted).

    Returns
    -------
    spans : (R,) bool
    """
    conns = cubic_bonds(L) if conns is None else conns
    R = u.shape[0]
    n = L**3
    stride = n + 2  # sites, bottom terminal (n), top terminal (n + 1)
    r, e = np.nonzero(u < p)
    off = r.astype(np.int64) * stride
    idx = np.arange(n, dtype=np.int64).reshape(L, L, L)
    bottom, top = idx[:, :, 0].ravel(), idx[:, :, -1].ravel()
    roff = (np.arange(R, dtype=np.int64) * stride)[:, None]
    rows = np.concatenate([conns[e, 0] + off, (bottom[None, :] + roff).ravel(),
                           (top[None, :] + roff).ravel()])
    cols = np.concatenate([conns[e, 1] + off, np.repeat(roff[:, 0] + n, bottom.size),
                           np.repeat(roff[:, 0] + n + 1, top.size)])
    g = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)),
                   shape=(R * stride, R * stride)).tocsr()
    _, lab = connected_components(g, directed=False)
    t = np.arange(R, dtype=np.int64) * stride + n
    return lab[t] == lab[t + 1]


def spanning_matrix(L: int, n_real: int, p_grid: np.ndarray, rng: np.random.Generator,
                    chunk_bonds: int = 20_000_000) -> np.ndarray:
    """Spanning indicator of ``n_real`` coupled realisations at every p.

    Returns
    -------
    spans : (n_real, P) bool
    """
    conns = cubic_bonds(L)
    per_chunk = max(1, chunk_bonds // len(conns))
    out = np.zeros((n_real, len(p_grid)), dtype=bool)
    for s in range(0, n_real, per_chunk):  # chunks bound the memory, not a loop over sites
        u = rng.random((min(per_chunk, n_real - s), len(conns)), dtype=np.float32)
        for k, p in enumerate(p_grid):
            out[s:s + len(u), k] = spanning(L, u, float(p), conns)
    return out


def crossing(p: np.ndarray, r_small: np.ndarray, r_large: np.ndarray,
             window: tuple[float, float] = (0.05, 0.95)) -> float:
    """Where two spanning curves cross, by linear interpolation of their difference.

    Parameters
    ----------
    p : (P,) float
    r_small, r_large : (P,) float
        Spanning probabilities of the smaller and the larger system.
    window : (float, float)
        Only grid intervals where both curves lie inside ``window`` count (outside it both
        curves sit at 0 or 1 and their difference is noise).

    Returns
    -------
    p_cross : float
        The root of ``r_large - r_small`` where it changes sign from - to + (the larger system
        spans less below p_c and more above it); the median root when noise gives several;
        NaN when there is none.
    """
    d = r_large - r_small
    inside = ((r_small > window[0]) & (r_small < window[1])
              & (r_large > window[0]) & (r_large < window[1]))
    k = np.flatnonzero((d[:-1] < 0) & (d[1:] >= 0) & (inside[:-1] | inside[1:]))
    if not k.size:
        return math.nan
    roots = p[k] + (p[k + 1] - p[k]) * d[k] / (d[k] - d[k + 1])
    return float(np.median(roots))


def p_half(p: np.ndarray, r: np.ndarray) -> float:
    """p at which the (monotone) spanning curve ``r`` passes 1/2, by linear interpolation."""
    k = np.flatnonzero((r[:-1] < 0.5) & (r[1:] >= 0.5))
    if not k.size:
        return math.nan
    i = k[0]
    return float(p[i] + (p[i + 1] - p[i]) * (0.5 - r[i]) / (r[i + 1] - r[i]))


def run(mode: str = "full", seed: int = 2488, n_boot: int = 200) -> dict[str, Any]:
    """Run the experiment; return all numbers (see module docstring)."""
    cfg = MODES[mode]
    p = cfg["p"]
    ss = np.random.SeedSequence(seed)
    streams = ss.spawn(len(cfg["sizes"]) + 1)
    t0 = time.perf_counter()
    curves: dict[int, np.ndarray] = {}
    res: dict[str, Any] = {"mode": mode, "seed": seed, "p_c_reference": P_C_BOND_SC,
                           "p": p.tolist(), "sizes": [], "curves": {}, "pairs": []}
    for (L, n_real), st in zip(cfg["sizes"], streams):
        t = time.perf_counter()
        curves[L] = spanning_matrix(L, n_real, p, np.random.default_rng(st))
        r = curves[L].mean(axis=0)
        res["sizes"].append(L)
        res["curves"][str(L)] = {"n_realisations": n_real, "spanning_probability": r.tolist(),
                                 "stderr": np.sqrt(r * (1 - r) / n_real).tolist(),
                                 "p_half": p_half(p, r), "time_s": time.perf_counter() - t}
    boot = np.random.default_rng(streams[-1])
    sizes = res["sizes"]
    for L1, L2 in zip(sizes[:-1], sizes[1:]):
        m1, m2 = curves[L1], curves[L2]
        pc = crossing(p, m1.mean(0), m2.mean(0))
        bs = np.array([crossing(p, m1[boot.integers(0, len(m1), len(m1))].mean(0),
                                m2[boot.integers(0, len(m2), len(m2))].mean(0))
                       for _ in range(n_boot)])
        res["pairs"].append({"L_small": L1, "L_large": L2, "p_cross": pc,
                             "p_cross_stderr": float(np.nanstd(bs)),
                             "deviation_from_p_c": pc - P_C_BOND_SC})
    res["time_s"] = time.perf_counter() - t0
    return res


def figure(res: dict[str, Any]):
    """Spanning probability against p for every L, with the crossings and p_c marked."""
    from matplotlib.figure import Figure

    p = np.array(res["p"])
    fig = Figure(figsize=(6.2, 4.4), layout="constrained")
    ax = fig.subplots()
    cmap = [f"C{i}" for i in range(10)]
    for i, L in enumerate(res["sizes"]):
        c = res["curves"][str(L)]
        r, e = np.array(c["spanning_probability"]), np.array(c["stderr"])
        ax.fill_between(p, r - e, r + e, color=cmap[i], alpha=0.2, lw=0)
        ax.plot(p, r, "o-", ms=3, color=cmap[i],
                label=f"L = {L} ({c['n_realisations']} samples)")
    ax.axvline(res["p_c_reference"], color="k", ls="--", lw=1,
               label=f"p$_c$ = {res['p_c_reference']} (Lorenz & Ziff 1998)")
    for pr in res["pairs"]:
        if math.isfinite(pr["p_cross"]):
            ax.plot([pr["p_cross"]], [0.03], marker="v", color="0.3", ms=6)
    ax.plot([], [], "v", color="0.3", label="crossing of successive L")
    ax.set_xlabel("bond occupation probability p")
    ax.set_ylabel("spanning probability R$_L$(p) (z direction)")
    ax.set_ylim(0, 1)
    ax.set_xlim(p[0], p[-1])
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Bond percolation on the simple cubic lattice (free boundaries)", fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small run (< 20 s) for the tests")
    ap.add_argument("-o", "--outdir", default="percolation_sc_out", help="output folder")
    ap.add_argument("--seed", type=int, default=2488)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from esim.io.atomic import atomic_write_json
    from esim.plot import save_figure

    res = run("quick" if args.quick else "full", seed=args.seed)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "percolation_sc.json", res, indent=1)
    save_figure(figure(res), out / "percolation_sc.png")
    for pr in res["pairs"]:
        print(f"L = {pr['L_small']:>2} / {pr['L_large']:>2}: crossing p = {pr['p_cross']:.4f} "
              f"+- {pr['p_cross_stderr']:.4f}  (p_c = {P_C_BOND_SC})")
    for L in res["sizes"]:
        c = res["curves"][str(L)]
        print(f"L = {L:>2}: R_L = 1/2 at p = {c['p_half']:.4f}  ({c['time_s']:.1f} s)")
    print(f"total {res['time_s']:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
