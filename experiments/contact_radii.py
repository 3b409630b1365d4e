"""NMC-NMC contact radii against the packing's numerical stiffness ratio, for both contact models.

The packing is a soft-sphere energy minimum in which an NMC-NMC contact is
``structure.nmc_stiffness_ratio`` times stiffer than any contact involving the glass (README,
the packing).  The ratio is numerical: it keeps the NMC-NMC overlaps near 1 % of the radius.
The geometric contact model (``network.contact_model = "geometric"``, the default) takes the
lens circle of each overlap as the contact, so its radii follow the overlaps F / k and scale as
the ratio's inverse square root; the mechanical model (Hertz with the hardness cap, the
packing's forces scaled to the 360 MPa stack pressure) takes them from the forces and does not
depend on it.  This experiment packs the default electrode at several ratios and records, per
packing, the median NMC-NMC radius of both models and the share below 25 nm (a point contact:
one such contact with its two LiNbO3 films costs ~4e8 ohm in charged NMC, README).

Usage::

    python experiments/contact_radii.py [-o OUTDIR] [--quick]

writes ``OUTDIR/contact_radii.{json,md}``.  Full: the default 40 x 40 x 50 um box, ratios 30,
100, 300 and 1000, two seeds (~5 min on 2 cores).  ``--quick`` (a 25 x 25 x 20 um box, ratios 30
and 300, one seed; ~15 s) is what the tests run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

A_POINT_M = 25e-9  # below this an NMC-NMC contact is a point contact (README)
MODES = {
    "quick": {"structure": {"box_x_m": 25e-6, "box_y_m": 25e-6, "electrode_thickness_m": 20e-6,
                            "sample_points": 50_000},
              "ratios": [30.0, 300.0], "seeds": 1},
    "full": {"structure": {}, "ratios": [30.0, 100.0, 300.0, 1000.0], "seeds": 2},
}


def radii(packing: Any, params: Any) -> dict[str, Any]:
    """The NMC-NMC contact radii the electron network uses, under both contact models."""
    from esim.network import build_network
    from esim.packing import PHASE_NMC

    nmc = packing.phase == PHASE_NMC
    i, j = packing.contacts[:, 0], packing.contacts[:, 1]
    hard = nmc[i] & nmc[j]
    mp = len(packing.contacts)
    out: dict[str, Any] = {"n_nmc_nmc_contacts": int(hard.sum()),
                           "nmc_nmc_overlap_max_rel": float(np.max(
                               -packing.contact_gap_m[hard]
                               / np.minimum(packing.radii_m[i], packing.radii_m[j])[hard],
                               initial=0.0))}
    for model in ("geometric", "mechanical"):
        net = build_network(packing, params.replace(network={"contact_model": model}),
                            carrier="electron", soc=1.0)
        a = net.contact_radius_m[:mp][hard]
        out[model] = {"median_m": float(np.median(a)),
                      "p5_m": float(np.percentile(a, 5)),
                      "fraction_below_25nm": float(np.mean(a < A_POINT_M))}
    return out


def run(out: Path, quick: bool) -> dict[str, Any]:
    from esim import __version__
    from esim.io.atomic import atomic_write_text
    from esim.packing import pack
    from esim.params import Params

    t0 = time.perf_counter()
    mode = MODES["quick" if quick else "full"]
    base = Params().replace(structure=mode["structure"]) if mode["structure"] else Params()
    seed0 = base.structure.seed
    rows = []
    for ratio in mode["ratios"]:
        for s in range(mode["seeds"]):
            p = base.replace(structure={"nmc_stiffness_ratio": ratio, "seed": seed0 + s})
            pk = pack(p)
            rows.append({"nmc_stiffness_ratio": ratio, "seed": seed0 + s,
                         "n_particles": int(pk.n_particles), **radii(pk, p)})
    report = {"esim_version": __version__, "quick": quick, "box_m": list(pk.box_m),
              "stack_pressure_Pa": base.materials.stack_pressure_Pa, "rows": rows,
              "elapsed_s": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "contact_radii.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "contact_radii.md", _markdown(report))
    return report


def _markdown(r: dict[str, Any]) -> str:
    box = " x ".join(f"{1e6 * x:g}" for x in r["box_m"])
    lines = [
        "# NMC-NMC contact radii against the numerical stiffness ratio", "",
        f"esim {r['esim_version']}; box {box} um; quick={r['quick']}; {r['elapsed_s']:.0f} s.  "
        "Geometric: the lens circles of the overlaps (at least the 10 nm asperity radius); "
        "mechanical: Hertz with the hardness cap, the packing's forces scaled to the "
        f"{r['stack_pressure_Pa'] / 1e6:g} MPa stack pressure.", "",
        "| stiffness ratio | seed | NMC-NMC contacts | largest overlap (% of the smaller radius) "
        "| geometric median (nm) | geometric below 25 nm | mechanical median (nm) | "
        "mechanical below 25 nm |",
        "|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        g, m = x["geometric"], x["mechanical"]
        lines.append(
            f"| {x['nmc_stiffness_ratio']:g} | {x['seed']} | {x['n_nmc_nmc_contacts']} | "
            f"{100 * x['nmc_nmc_overlap_max_rel']:.2f} | {g['median_m'] * 1e9:.0f} | "
            f"{100 * g['fraction_below_25nm']:.1f} % | {m['median_m'] * 1e9:.0f} | "
            f"{100 * m['fraction_below_25nm']:.1f} % |")
    lines += ["", "The geometric radii follow the overlaps, so they scale as the ratio's "
              "inverse square root; the mechanical ones come from the forces and do not."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--outdir", default="results/contact_radii")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    r = run(Path(a.outdir), a.quick)
    print(_markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
