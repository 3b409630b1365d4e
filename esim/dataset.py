"""Synthetic ground-truth datasets: virtual SPM maps of many electrodes, with what lies beneath.

For image-analysis work (segmentation, per-particle statistics, denoising, resistance
classification) a measured map never comes with its truth.  A dataset here is ``n`` electrodes,
each packed from its own seed and cut at the same plane, imaged before and/or after the first
charge exactly as ``esim reproduce`` images them, and stored with:

* the measured channels (SEM, EDX S and Ni, SSRM, C-AFM, KPFM V_CPD and V_CPD', topography), as
  Gwyddion ``.gsf`` files with units and pixel sizes (``<state>/gsf/``) and in ``spm.h5``;
* the ground truth per pixel in ``spm.h5`` (phase, particle index, SOC, network and tip
  resistance, connection class, the channels before the amplifiers and the blur), the phase and
  particle labels also as ``.gsf`` (``phase.gsf``, ``truth_particle.gsf``; -1 = pore);
* the ground truth per particle of the window, ``particles.csv``: packing index, phase,
  connection class, SOC (NMC only), resistance to the collector through the half-space network
  (``inf``: no path), the radius and kept area fraction of the contact that limits that path
  (the largest share of its power, as the milling left it; empty: no path), pixel count, mean
  depth, and the median reading of SSRM, C-AFM and V_CPD' over its pixels, all in SI units at
  full precision;
* the packing (``packing.h5``) and, for charged samples, the charge (``charge.h5``).

``manifest.csv`` / ``manifest.json`` list every sample and state with its seeds, its files and
its summary numbers; ``base_params.toml`` is the parameter set shared by all samples.

Seeds: sample ``i`` uses ``structure.seed = first_seed + i`` (its packing) and
``spm.seed = first_seed + i`` (its noise); everything else comes from the base set.  The KPFM
work-function coupling is calibrated from the base set as ``esim reproduce`` does
(:func:`esim.reproduce.kpfm_calibration`), so V_CPD' reads on the paper's scale.  A sample that
is written completely is reused when the dataset is generated again into the same folder with
the same parameters (the resume key is a hash of the sample's parameters and states).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esim.errors import EsimError, InvalidParameters
from esim.io.atomic import check_output_dir
from esim.params import Params, params_from_dict

__all__ = ["STATES", "DatasetResult", "sample_params", "generate_sample", "generate_dataset"]

STATES = ("pristine", "charged")


def sample_params(base: Params, seed: int) -> Params:
    """The parameters of one sample: the base set with its packing and noise seeds, and the KPFM
    coupling calibrated as in ``esim reproduce``, except for a coupling key the base set changes
    from the built-in default (the user's ``--set`` or parameter file wins)."""
    from esim.reproduce import kpfm_calibration

    p = base.replace(structure={"seed": int(seed)}, spm={"seed": int(seed)})
    default = Params().spm
    cal = {k: v for k, v in kpfm_calibration(p).items()
           if getattr(base.spm, k) == getattr(default, k)}
    return p.replace(spm=cal) if cal else p


def _write_particles_csv(maps: Any, path: Path) -> None:
    from esim.io.atomic import atomic_write_text
    from esim.io.table import csv_text
    from esim.packing import PHASE_NMC, PHASE_SE
    from esim.spm.maps import CLASS_NAMES

    pr = maps.particle_readings()
    cols = {c: pr[c] for c in ("particle", "phase", "connection_class", "soc",
                               "network_resistance_ohm", "bottleneck_contact_radius_m",
                               "bottleneck_kept_fraction", "pixels", "z_m", "ssrm_ohm", "cafm_A",
                               "kpfm_vcpd_prime_V")}
    phase = np.asarray(pr["phase"]).astype(int)
    cols["phase"] = np.where(phase == PHASE_NMC, "NMC", np.where(phase == PHASE_SE, "SE",
                                                                    phase.astype(str)))
    codes = np.array(sorted(CLASS_NAMES))
    cols["connection_class"] = np.array([CLASS_NAMES[c] for c in codes])[
        np.searchsorted(codes, np.asarray(pr["connection_class"], int))]
    # the SE carries no state of charge; full precision; "inf" = no path to the collector,
    # "" = no value
    cols["soc"] = np.where(phase == PHASE_NMC, np.asarray(pr["soc"], float), np.nan)
    atomic_write_text(path, csv_text(cols))


def _export_state(maps: Any, folder: Path, figures: bool) -> dict[str, Any]:
    from esim.io.gsf import write_gsf

    folder.mkdir(parents=True, exist_ok=True)
    maps.save(folder / "spm.h5")
    gsf = folder / "gsf"
    maps.export_gsf(gsf)
    write_gsf(gsf / "truth_particle.gsf", np.asarray(maps.particle, np.float64),
              pixel_size_m=(maps.pixel_size_z_m, maps.pixel_size_u_m), z_unit="",
              title="Particle index (-1 pore)", x_offset_m=maps.origin_u_m,
              y_offset_m=maps.origin_z_m)
    _write_particles_csv(maps, folder / "particles.csv")
    if figures:
        maps.plot(folder / "maps.png")
        maps.plot_truth(folder / "truth.png")
    return maps.summary()


def generate_sample(params_json: str, states: tuple[str, ...], folder: str,
                    figures: bool = False) -> dict[str, Any]:
    """Pack, charge (when a charged state is asked for) and image one sample.

    Returns ``{"status", "error", "seconds", "<state>": summary, ...}``; an
    :class:`~esim.errors.EsimError` (e.g. no NMC touches the collector, so the charge cannot
    run) makes ``status = "failed"`` with its message.  Files are written under ``folder``.
    """
    from esim.packing import pack
    from esim.reproduce import image_states

    params = params_from_dict(json.loads(params_json))
    out: dict[str, Any] = {"status": "ok", "error": ""}
    t0 = time.perf_counter()
    root = Path(folder)
    try:
        packing = pack(params)
        root.mkdir(parents=True, exist_ok=True)
        packing.save(root / "packing.h5")
        chg = None
        if "charged" in states:
            from esim.charge import charge

            chg = charge(packing, params)
            chg.save(root / "charge.h5")
        images = image_states(packing, params, chg, params.spm)
        for state in states:
            out[state] = _export_state(images[state], root / state, figures)
        out["n_particles"] = packing.n_particles
        out["solid_fraction"] = packing.solid_fraction
        if chg is not None:
            out["capacity_mAh_per_g"] = float(chg.capacity_at_end_of_charge_mAh_per_g)
            out["ocv_after_rest_V_vs_Li"] = float(chg.ocv_after_rest_V_vs_Li)
    except EsimError as exc:
        out["status"] = "failed"
        out["error"] = str(exc)
    out["seconds"] = time.perf_counter() - t0
    return out


@dataclass
class DatasetResult:
    """The manifest rows of a generated dataset and its files."""

    rows: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)
    reused: int = 0
    elapsed_s: float = 0.0

    @property
    def n_failed(self) -> int:
        return len({r["sample"] for r in self.rows if r["status"] != "ok"})


def _finish_sample(index: int, seed: int, digest: str, states: tuple[str, ...], folder: str,
                   record: dict[str, Any]) -> dict[str, Any]:
    from esim.io.atomic import atomic_write_text, json_safe

    doc = {"sample": index, "seed": seed, "params_hash": digest, "states": list(states),
           "folder": Path(folder).name, **record}
    atomic_write_text(Path(folder).parent / f"{Path(folder).name}.json",
                      json.dumps(json_safe(doc), indent=1, default=_json_default) + "\n")
    return doc


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    raise TypeError(type(v).__name__)


def _manifest_rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in docs:
        for state in d["states"]:
            row = {"sample": d["sample"], "state": state, "seed": d["seed"],
                   "status": d["status"], "error": d["error"],
                   "folder": f"{d['folder']}/{state}"}
            for k in ("n_particles", "solid_fraction", "capacity_mAh_per_g",
                      "ocv_after_rest_V_vs_Li"):
                if k in d:
                    row[k] = d[k]
            for k, v in (d.get(state) or {}).items():
                row[k] = None if isinstance(v, float) and not np.isfinite(v) else v
            rows.append(row)
    return rows


def generate_dataset(base: Params, n: int, outdir: str | Path, *, first_seed: int = 1,
                     states: tuple[str, ...] = STATES, workers: int = 1, figures: bool = False,
                     quiet: bool = True) -> DatasetResult:
    """Generate ``n`` samples (see the module docstring) into ``outdir``.

    Parameters
    ----------
    base : Params
    n : int
        Number of electrodes (samples), 1..100000.
    outdir : path
        Output folder; complete samples already there with the same parameters are reused.
    first_seed : int
        Seed of sample 0; sample i uses ``first_seed + i``.
    states : tuple of {"pristine", "charged"}
    workers : int
        Processes (1: in this process).
    figures : bool
        Draw ``maps.png`` and ``truth.png`` for every sample and state.
    """
    import dask

    from esim.sweep import _compute, _load_point, forget, point_hash, warn_stale

    if not 1 <= int(n) <= 100_000:
        raise InvalidParameters(f"--samples: must lie in [1, 100000], got {n!r}")
    if not states or any(s not in STATES for s in states):
        raise InvalidParameters(f"--states: choose from {', '.join(STATES)}, got {states!r}")
    if len(set(states)) != len(states):
        raise InvalidParameters(f"--states: a state is given twice, got {' '.join(states)}")
    if not 1 <= int(workers) <= 256:
        raise InvalidParameters(f"--workers: must lie in [1, 256], got {workers!r}")
    if not (0 <= int(first_seed) and int(first_seed) + int(n) <= 2**32):
        raise InvalidParameters(f"--first-seed: must lie in [0, 2^32 - n], got {first_seed!r}")
    out = check_output_dir(outdir, files=("manifest.csv", "manifest.json", "README.md",
                                          "base_params.toml"), marker="manifest.json")
    default = Params()
    for name, got, dflt in (("structure.seed", base.structure.seed, default.structure.seed),
                            ("spm.seed", base.spm.seed, default.spm.seed)):
        if got != dflt:  # refused, not overridden: each sample's seed is FIRST_SEED + i
            raise InvalidParameters(f"{name}: each sample's seeds are --first-seed + i; use "
                                    f"--first-seed instead of setting {name}")
    states = tuple(s for s in STATES if s in states)
    all_params = [sample_params(base, first_seed + i) for i in range(n)]  # validates all first
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    docs: list[dict[str, Any] | None] = [None] * n
    tasks, slots = [], []
    run = dask.delayed(generate_sample, pure=True)
    finish = dask.delayed(_finish_sample, pure=True)
    for i, p in enumerate(all_params):
        # figures are part of the key: asking for them again redraws them
        digest = point_hash(p, f"dataset:{','.join(states)}:figures={figures}", 0.0)
        folder = out / f"sample_{i:05d}"
        old = _load_point(out / f"sample_{i:05d}.json", digest)
        if old is not None:
            docs[i] = old
            continue
        # a regenerated sample starts from nothing: no marker of an earlier run beside files of
        # this one (if interrupted), no state or charge of another electrode beside its own
        forget(out / f"sample_{i:05d}.json", folder)
        rec = run(p.to_json(), states, str(folder), figures, dask_key_name=f"sample-{i}")
        tasks.append(finish(i, first_seed + i, digest, states, str(folder), rec,
                            dask_key_name=f"row-{i}"))
        slots.append(i)
    reused = n - len(tasks)
    for i, doc in zip(slots, _compute(tasks, workers, quiet, "samples") if tasks else []):
        docs[i] = doc
    warn_stale(out, "sample_", n, "dataset (manifest.csv lists this one's samples)")
    rows = _manifest_rows([d for d in docs if d is not None])
    result = DatasetResult(rows=rows, reused=reused, elapsed_s=time.perf_counter() - t0)
    result.files = _write_manifest(result, out, base, states, first_seed)
    return result


def _write_manifest(result: DatasetResult, out: Path, base: Params, states: tuple[str, ...],
                    first_seed: int) -> dict[str, Path]:
    import csv
    import io

    from esim import __version__
    from esim.io.atomic import atomic_write_text

    cols: list[str] = []
    for r in result.rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in result.rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    files = {"manifest_csv": out / "manifest.csv", "manifest_json": out / "manifest.json",
             "base_params": out / "base_params.toml"}
    atomic_write_text(files["manifest_csv"], buf.getvalue())
    c = base.charge
    doc = {"esim_version": __version__, "states": list(states), "first_seed": first_seed,
           "charge": f"at {c.current_density_A_per_m2 / 10:g} mA/cm2 to {c.cutoff_V_vs_Li:g} V "
                     f"vs Li and a {c.rest_time_s:g} s rest at open circuit",
           "n_samples": len({r["sample"] for r in result.rows}), "n_failed": result.n_failed,
           "reused": result.reused, "elapsed_s": result.elapsed_s, "rows": result.rows}
    atomic_write_text(files["manifest_json"],
                      json.dumps(doc, indent=1, default=_json_default) + "\n")
    atomic_write_text(files["base_params"], base.to_toml())
    files["readme"] = out / "README.md"
    atomic_write_text(files["readme"], _readme(doc))
    return files


def _readme(doc: dict[str, Any]) -> str:
    """What a receiver of the dataset needs to read it: layout, channels, truth, units."""
    import dataclasses

    from esim.spm.maps import CHANNELS, CLASS_NAMES, SPMMaps

    # the quantity's unit (EDX: counts, which its GSF leaves out as Gwyddion misreads it)
    units = {f.name: f.metadata.get("unit") for f in dataclasses.fields(SPMMaps)}
    chans = "\n".join(f"| `gsf/{k}.gsf` | {title} | {units.get(k) or unit or '1'} |"
                       for k, (unit, title) in CHANNELS.items())
    classes = ", ".join(f"{k} {v}" for k, v in CLASS_NAMES.items())
    truth = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in (
        ("`gsf/phase.gsf`", "ground truth: 0 pore, 1 NMC, 2 SE", "1"),
        ("`gsf/truth_particle.gsf`",
         "ground truth: packing index of the particle under the pixel, -1 pore", "1"),
        ("`spm.h5`", "all maps and the per-pixel truth (SOC, network and tip resistance, "
         "connection class, signals before the amplifiers and the blur), with the parameters",
         "SI"),
        ("`particles.csv`", "per particle of the window: truth (phase, connection class, SOC, "
         "resistance to the collector through the half-space network, `inf` for no path; the "
         "radius and kept fraction of the contact that limits that path) beside "
         "its median readings", "SI")))
    return f"""# Synthetic SPM dataset (esim {doc['esim_version']})

{doc['n_samples']} electrode(s) of LiNbO3-coated NMC111 and Li3PS4 glass, each packed from its own
seed (sample i: seed {doc['first_seed']} + i), cut by ion milling at the same plane and imaged
{' and '.join(doc['states'])} (pristine: before the first charge; charged: after the charge
{doc['charge']}), the way Otoyama et al. (2020) imaged their electrode.
{doc['n_failed']} sample(s) failed (see `manifest.csv`, column `error`).

## Layout

`sample_NNNNN/packing.h5` (the electrode), `charge.h5` (its charge), and per state
`sample_NNNNN/<state>/`:

| file | content | unit |
|---|---|---|
{chans}
{truth}

Maps are `(nz, nu)`: row 0 nearest the current collector, columns along the cut.  Connection
classes: {classes}.  Read `.gsf` with Gwyddion, `gsffile` or `esim.io.gsf.read_gsf`, and
`spm.h5` with `esim.spm.maps.SPMMaps.load`.

To put your own measured maps beside these, `esim compare --ssrm YOUR.gsf --sem YOUR_SEM.tif
--source-pixel-size-m P --sim sample_00000/charged/spm.h5 --sim sample_00001/charged/spm.h5 -o cmp/`
segments both sides alike and compares them particle by particle.

`manifest.csv` has one row per sample and state with its seed, folder and summary numbers
(units in the column names).  Regenerate with `esim dataset base_params.toml --samples
{doc['n_samples']} --first-seed {doc['first_seed']} --states {' '.join(doc['states'])}`.
"""
