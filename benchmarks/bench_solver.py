"""Resistor-network solver benchmarks: esim's solver on particle-like random networks and on
voxel images, and its peers on the same images.

Cases (``work`` pairs rows that do the same job, for the time ratio):

* ``particle_<n>``: :func:`esim.testing.random_particle_network` (mean degree 6, log-normal
  conductances), two-terminal conductance; scipy's ``spsolve`` on the same reduced system where
  SuperLU can finish (<= 1e5 unknowns).
* ``voxel_<n>^3``: ``porespy.generators.blobs`` (porosity 0.5, blobiness 1, seed 0), one phase
  of 1 S/m, current along axis 2.  Two conventions, each compared with the peer that uses it:

  - ``face`` (terminals on the outer faces, ``L = n dx``, ``eps`` = total volume fraction):
    esim, TauFactor CPU (axis moved to its x), plain scipy ``spsolve``;
  - ``centre`` (first/last layers are the terminals, ``L = (n - 1) dx``, ``eps`` = percolating
    fraction): esim, ``porespy.simulations.tortuosity_fd`` (OpenPNM + pyamg).

Every row reports ``tau`` in its convention, ``flux_mismatch`` where the tool exposes it, and
``iterations``; the harness measures peak memory (one subprocess per case).  ``AGREE``: a peer
row whose ``tau`` differs from esim's by more than 1 % (``conductance_S``: 1e-6) gets no time
ratio.  The tolerances differ by tool and favour the peers: TauFactor stops at a flux
mismatch of 1e-3 (``conv_crit``), porespy/OpenPNM at ``ftol`` 1e-4, esim at a relative
residual of 1e-10 (AMG-CG) or exactly (LU).  Every voxel case builds its input with porespy in
the case's process, so ``peak_rss_MiB`` holds porespy's import (~350 MiB here) for every tool.
Each tool's solve is warmed up on a small image before timing (esim on both its LU and its
AMG path: a fresh numba cache otherwise compiles AMG kernels inside the first timed solve).
"""

from __future__ import annotations

import numpy as np

from benchmarks._util import timed

SUITE = "solver"
AGREE = {"tau": 0.01, "conductance_S": 1e-6}

_SCIPY_MAX_UNKNOWNS = 100_000  # SuperLU on 3-D graphs: minutes and GBs of fill-in above this


def cases(quick: bool) -> list[dict]:
    if quick:
        particles, voxels, reps = [2_000], [24], 3
    else:
        particles, voxels, reps = [10_000, 100_000, 1_000_000], [50, 100, 200], 3
    out: list[dict] = []
    for n in particles:
        r = 1 if n >= 1_000_000 else reps
        out.append({"name": f"esim_particle_{n}", "tool": "esim", "kind": "particle",
                    "n": n, "work": f"particle_{n}", "repeats": r})
        out.append({"name": f"scipy_particle_{n}", "tool": "scipy", "kind": "particle",
                    "n": n, "work": f"particle_{n}", "repeats": r})
    for n in voxels:
        r = 1 if n >= 200 else reps
        base = {"shape": n, "repeats": r}
        out.append({**base, "name": f"esim_voxel_{n}^3_face", "tool": "esim", "kind": "voxel",
                    "boundary": "face", "work": f"voxel_{n}_face"})
        out.append({**base, "name": f"taufactor_voxel_{n}^3_face", "tool": "taufactor",
                    "kind": "taufactor", "work": f"voxel_{n}_face", "repeats": 1})
        out.append({**base, "name": f"scipy_voxel_{n}^3_face", "tool": "scipy",
                    "kind": "voxel_scipy", "work": f"voxel_{n}_face"})
        out.append({**base, "name": f"esim_voxel_{n}^3_centre", "tool": "esim",
                    "kind": "voxel", "boundary": "centre", "work": f"voxel_{n}_centre"})
        out.append({**base, "name": f"porespy_voxel_{n}^3_centre", "tool": "porespy+openpnm",
                    "kind": "porespy", "work": f"voxel_{n}_centre", "repeats": 1})
    return out


def _image(n: int) -> np.ndarray:
    import porespy as ps

    return np.asarray(ps.generators.blobs([n, n, n], porosity=0.5, blobiness=1, seed=0),
                      dtype=bool)


def _base(case: dict, t: float, times: list[float]) -> dict:
    return {"tool": case["tool"], "work": case["work"], "time_s": t, "repeats": len(times),
            "times_s": [round(x, 4) for x in times]}


def run(case: dict) -> dict:
    kind = case["kind"]
    if kind == "particle":
        return _run_particle(case)
    if kind == "voxel":
        return _run_voxel(case)
    if kind == "voxel_scipy":
        return _run_voxel_scipy(case)
    if kind == "porespy":
        return _run_porespy(case)
    if kind == "taufactor":
        return _run_taufactor(case)
    raise ValueError(f"unknown case kind {kind!r}")


def _run_particle(case: dict) -> dict:
    from esim import solver as S
    from esim import testing as T

    net = T.random_particle_network(case["n"], rng=0)
    if case["tool"] == "esim":
        S.conductance_between(net.n_nodes, net.conns, net.g, net.source, net.sink)  # warm-up

        def body():
            return S.conductance_between(net.n_nodes, net.conns, net.g, net.source, net.sink)

        t, times, r = timed(body, case["repeats"])
        return {**_base(case, t, times), "n_nodes": net.n_nodes, "n_edges": int(net.g.size),
                "conductance_S": r.conductance_S, "flux_mismatch": r.flux_mismatch,
                "iterations": r.iterations, "residual": r.residual,
                "method": r.solution.method,
                "n_excluded_clusters": r.solution.n_excluded_clusters}
    return _scipy_two_terminal(case, net.n_nodes, net.conns, net.g, net.source, net.sink)


def _scipy_two_terminal(case, n_nodes, conns, g, source, sink, extra=None) -> dict:
    """Plain ``scipy.sparse.linalg.spsolve`` on esim's reduced system (assembly untimed)."""
    import scipy.sparse.linalg as spla

    from esim import solver as S

    n_comp, labels = S.network_components(n_nodes, conns, g)
    touching = np.zeros(n_comp, bool)
    touching[labels[np.concatenate([source, sink])]] = True
    active = touching[labels]
    vfix = np.full(n_nodes, np.nan)
    vfix[source], vfix[sink] = 1.0, 0.0
    free = active & np.isnan(vfix)
    A, b, free_idx = S._reduced_system(n_nodes, conns, g, free, vfix)
    if free_idx.size > _SCIPY_MAX_UNKNOWNS:
        return {"tool": "scipy", "work": case["work"],
                "skipped": f"{free_idx.size} unknowns: SuperLU fill-in on a 3-D graph makes "
                           f"spsolve take minutes to hours above {_SCIPY_MAX_UNKNOWNS}"}
    A = A.tocsc()
    t, times, x = timed(lambda: spla.spsolve(A, b), case["repeats"])
    v = vfix.copy()
    v[free_idx] = x
    i, j = conns.T
    live = active[i] & active[j]
    cur = np.where(live, g * (np.nan_to_num(v[i]) - np.nan_to_num(v[j])), 0.0)
    out = np.bincount(i, cur, n_nodes) - np.bincount(j, cur, n_nodes)
    i_in, i_out = out[source].sum(), -out[sink].sum()
    res = {**_base(case, t, times), "conductance_S": float(i_in),
           "flux_mismatch": float(abs(i_in - i_out) / max(abs(i_in), abs(i_out))),
           "iterations": 0}
    if extra:
        res.update(extra(float(i_in)))
    return res


def _run_voxel(case: dict) -> dict:
    from esim.voxel_network import voxel_network

    im = _image(case["shape"]).view(np.uint8)
    w = min(40, case["shape"])  # AMG builds several levels from 40^3 (20^3 left kernels cold)
    small = voxel_network(im[:w, :w, :w], {0: 0.0, 1: 1.0}, 1e-6, axis=2,
                          boundary=case["boundary"])
    small.effective_conductivity(method="direct")  # warm-up of both solver paths
    small.effective_conductivity(method="amg")

    def body():
        net = voxel_network(im, {0: 0.0, 1: 1.0}, 1e-6, axis=2, boundary=case["boundary"])
        return net.effective_conductivity()

    t, times, r = timed(body, case["repeats"])
    tau = r.tau if case["boundary"] == "face" else r.tau_percolating
    return {**_base(case, t, times), "shape": case["shape"], "boundary": case["boundary"],
            "n_nodes": int(r.conductance.solution.potential.size) if r.conductance.solution
            is not None else 0,
            "tau": tau, "sigma_eff_S_per_m": r.sigma_eff_S_per_m,
            "porosity": r.volume_fraction, "percolating_fraction": r.percolating_fraction,
            "flux_mismatch": r.flux_mismatch, "iterations": r.iterations,
            "residual": r.residual, "method": r.method}


def _run_voxel_scipy(case: dict) -> dict:
    from esim.solver import effective_conductivity, tortuosity_factor
    from esim.voxel_network import voxel_network

    im = _image(case["shape"]).view(np.uint8)
    net = voxel_network(im, {0: 0.0, 1: 1.0}, 1e-6, axis=2, boundary="face")

    def extra(G):
        sig = effective_conductivity(G, net.area_m2, net.length_m)
        return {"tau": tortuosity_factor(net.volume_fraction, 1.0, sig),
                "sigma_eff_S_per_m": sig, "shape": case["shape"]}

    return _scipy_two_terminal(case, net.n_nodes, net.conns, net.g,
                               np.array([net.inlet_node]), np.array([net.outlet_node]), extra)


def _run_porespy(case: dict) -> dict:
    try:
        import openpnm  # noqa: F401
        import porespy as ps
    except ImportError as e:
        return {"tool": case["tool"], "work": case["work"],
                "skipped": f"openpnm/porespy not installed ({e}); pip install esim[bench]"}
    import logging

    logging.getLogger("porespy").setLevel(logging.ERROR)
    im = _image(case["shape"])
    ps.simulations.tortuosity_fd(im[:20, :20, :20], axis=2)  # warm-up (imports, caches)
    t, times, r = timed(lambda: ps.simulations.tortuosity_fd(im, axis=2, ftol=1e-4),
                        case["repeats"])
    return {**_base(case, t, times), "shape": case["shape"], "tau": float(r.tortuosity),
            "percolating_fraction": float(r.effective_porosity),
            "converged_ftol_1e-4": bool(r.converged)}


def _run_taufactor(case: dict) -> dict:
    try:
        import taufactor as tau_mod
        import torch  # noqa: F401  (TauFactor needs it; checked here to skip cleanly)
    except ImportError as e:
        return {"tool": case["tool"], "work": case["work"],
                "skipped": f"taufactor/torch not installed ({e})"}
    im = _image(case["shape"])
    img = np.ascontiguousarray(np.moveaxis(im, 2, 0)).astype(np.uint8)  # current along x
    crit = 1e-3
    # warm-up: torch's first solve in a process costs more (50^3: 0.50 s cold, 0.10 s warm)
    tau_mod.Solver(np.ones((20, 20, 20), np.uint8), device="cpu").solve(verbose=False,
                                                                        conv_crit=crit)

    def body():
        s = tau_mod.Solver(img, device="cpu")
        tau = s.solve(verbose=False, conv_crit=crit)
        return s, tau

    t, times, (s, tau) = timed(body, case["repeats"])
    tau = float(np.asarray(tau).ravel()[0])
    return {**_base(case, t, times), "shape": case["shape"], "tau": tau,
            "iterations": int(s.iter), "conv_crit_flux": crit,
            "porosity": float(np.mean(img))}
