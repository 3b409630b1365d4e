"""Parameter sweeps: the same flow run for many parameter sets, in parallel with Dask.

A sweep is a base parameter set plus the values of one or more fields to vary, each named
``SECTION.KEY`` as in the TOML file (``structure.nmc_fraction_of_solid``, ``structure.seed``).
The points are the Cartesian product of the value lists (``mode="grid"``) or the lists taken
element by element (``mode="zip"``, all of one length).  Every point is validated before anything
runs, so a bad value fails the whole sweep with the field and the point named, and no output.

Each point packs the electrode from its own parameters and runs one stage:

* ``pack``: the packing's summary (fractions, coordination, contact radii, percolation);
* ``solve``: effective electronic and ionic conductivity, tortuosity and connected fractions at
  a uniform state of charge (:func:`esim.effective.effective_properties`);
* ``charge``: the galvanostatic first charge and rest (:func:`esim.charge.charge`);
* ``spm``: the virtual SPM maps of the cross-section at a uniform state of charge
  (:func:`esim.spm.maps.simulate_spm`), summarised per phase;
* ``otoyama2020``: the reference experiment (:func:`esim.reproduce.run_otoyama2020`) on the
  point's packing seed, with the point's differences from the built-in defaults applied to the
  paper's preset as ``esim reproduce --set`` applies them: the means over its windows of the
  per-window numbers (``high_r_fraction``, ``ssrm_nmc_after_low_ohm``,
  ``vcpd_gradient_cc_minus_se_V``, ...), the charge's numbers, ``rows_within`` of
  ``rows_total`` rows of the paper's table within their tolerance, and of these rows the
  predictions alone (``predictions_within`` of ``predictions_total``; the others check
  calibrations, inputs and the instrument's range).  ``quick`` runs it in its
  quick mode (24 x 24 um box unless the point sets one, 2 windows, 128^2 pixels).

Results
-------
Each point writes ``points/point_NNNN.json`` atomically as soon as it finishes, holding its
overrides, a hash of its full parameter set and stage, its status and its numbers (SI units in
the keys).  A sweep that is interrupted or re-run with the same output folder reuses the points
whose hash matches and runs only the rest.  The table of all points is ``sweep.csv`` /
``sweep.md`` / ``sweep.json``, with one column per varied field, ``status``, ``error``,
``pack_s``, ``stage_s`` and the stage's scalar numbers.

A point that fails for a physical reason (an :class:`esim.errors.EsimError`, e.g. a charge that
cannot start because no NMC touches the collector) is recorded with ``status = "failed"`` and
its message; the other points go on.  A programming error stops the sweep (the finished points
stay on disk).

Parallelism
-----------
``workers > 1`` runs the points on a Dask ``processes`` scheduler over a
:class:`concurrent.futures.ProcessPoolExecutor` whose workers run numba single-threaded (one
point per core; the numba kernels' own threads would otherwise oversubscribe the cores).
``workers = 1`` uses Dask's synchronous scheduler in this process.  Workers are spawned, so a
script that calls :func:`run_sweep` with ``workers > 1`` needs the usual
``if __name__ == "__main__":`` guard around its top level.  Each point's random numbers
come from its own parameters' seeds, so the numbers do not depend on the scheduler or on the
order in which points finish.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from esim.errors import EsimError, InvalidParameters
from esim.io.atomic import atomic_write_text, check_output_dir
from esim.params import Params, params_from_dict

log = logging.getLogger(__name__)

__all__ = ["STAGES", "SweepResult", "parse_vary", "expand_points", "run_point", "run_sweep"]

#: stage name -> (what it computes, default figure metrics)
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "pack": ("packing summary", ("solid_fraction", "nmc_fraction_of_solid",
                                 "nmc_connected_fraction")),
    "solve": ("effective conductivities at a uniform SOC", ("sigma_e_S_per_m",
                                                             "sigma_ion_S_per_m")),
    "charge": ("galvanostatic first charge and rest", ("capacity_mAh_per_g",
                                                       "ocv_after_rest_V_vs_Li")),
    "spm": ("virtual SPM maps at a uniform SOC", ("ssrm_median_nmc_ohm",
                                                   "kpfm_vcpd_prime_median_nmc_V")),
    "otoyama2020": ("the reference experiment's numbers (esim reproduce)",
                    ("high_r_fraction", "ssrm_nmc_after_low_ohm",
                     "vcpd_gradient_cc_minus_se_V")),
}
#: quantities drawn on a log axis (resistances, conductivities)
_LOG_SUFFIXES = ("_S_per_m", "_ohm")
#: unit suffixes of the keys, as axis labels
_UNITS = (("_S_per_m", "S/m"), ("_mAh_per_g", "mAh/g"), ("_m_inv", "1/m"), ("_m2", "m$^2$"),
          ("_ohm", "Ω"), ("_V_vs_Li", "V vs Li"), ("_V_vs_InLi", "V vs In-Li"), ("_V", "V"),
          ("_A", "A"), ("_K", "K"), ("_s", "s"), ("_m", "m"))


def axis_label(key: str) -> str:
    """``"sigma_e_S_per_m"`` as ``"sigma_e (S/m)"``: the unit suffix of a key as a unit."""
    section, dot, name = key.rpartition(".")
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return f"{section}{dot}{name[:-len(suffix)]} ({unit})"
    return key


# ----------------------------------------------------------------------------------------------
# Points
# ----------------------------------------------------------------------------------------------


def _toml_scalar(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _spaced(spec: str, key: str) -> list[float] | None:
    """``lin(a, b, n)`` / ``log(a, b, n)``: n values from a to b, evenly or geometrically."""
    spec = spec.strip()
    for name, fn in (("lin", np.linspace), ("log", np.geomspace)):
        if spec.startswith(name + "(") and spec.endswith(")"):
            parts = [p.strip() for p in spec[len(name) + 1:-1].split(",")]
            try:
                a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
                if len(parts) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                raise InvalidParameters(f"--vary {key}: expected {name}(START, STOP, COUNT), "
                                        f"got {spec!r}") from None
            if not 1 <= n <= 10_000:
                raise InvalidParameters(f"--vary {key}: COUNT must lie in [1, 10000], got {n}")
            if name == "log" and (a <= 0 or b <= 0):
                raise InvalidParameters(f"--vary {key}: log() needs positive bounds, got {spec!r}")
            return [float(v) for v in fn(a, b, n)]
    return None


def parse_vary(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["structure.seed=1,2,3", "materials.x=log(1e-3, 1, 4)"]`` as ``{key: values}``.

    Values are comma-separated TOML scalars (``3``, ``2.5e-8``, ``true``, ``"mechanical"``, or a
    bare word, taken as a string), or ``lin(START, STOP, COUNT)`` / ``log(START, STOP, COUNT)``
    for evenly / geometrically spaced floats.  Keys are ``SECTION.KEY``; they are checked against
    the parameter set by :func:`expand_points`.

    Raises
    ------
    InvalidParameters
        A malformed item, an empty value list or a key given twice.
    """
    out: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        section, dot, name = key.partition(".")
        if not (sep and dot and section and name and text.strip()):
            raise InvalidParameters(f"--vary: expected SECTION.KEY=V1,V2,..., got {item!r}")
        if key in out:
            raise InvalidParameters(f"--vary {key}: given twice")
        values = _spaced(text, key)
        if values is None:
            values = [_toml_scalar(v) for v in text.split(",") if v.strip()]
        if not values:
            raise InvalidParameters(f"--vary {key}: no values")
        out[key] = values
    return out


def _nested(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


def expand_points(base: Params, vary: Mapping[str, Sequence[Any]], *, mode: str = "grid"
                  ) -> list[dict[str, Any]]:
    """The sweep's points as flat ``{"SECTION.KEY": value}`` overrides, each validated.

    Parameters
    ----------
    base : Params
    vary : mapping of ``"SECTION.KEY"`` to a sequence of values
    mode : {"grid", "zip"}
        Cartesian product of the value lists, or element by element (equal lengths).

    Raises
    ------
    InvalidParameters
        Unknown mode, unequal lengths in zip mode, a point whose parameters do not validate
        (the message names the point and the field), or two points with the same parameters.
    """
    if mode not in ("grid", "zip"):
        raise InvalidParameters(f"mode: must be 'grid' or 'zip', got {mode!r}")
    keys = list(vary)
    if not keys:
        return [{}]
    lists = [list(vary[k]) for k in keys]
    if mode == "zip":
        if len({len(v) for v in lists}) != 1:
            raise InvalidParameters("--zip: every --vary needs the same number of values, got "
                                    + ", ".join(f"{k}: {len(v)}" for k, v in zip(keys, lists)))
        combos = list(zip(*lists))
    else:
        combos = list(itertools.product(*lists))
    points = [dict(zip(keys, c)) for c in combos]
    seen: dict[str, int] = {}
    for i, point in enumerate(points):
        desc = ", ".join(f"{k}={v!r}" for k, v in point.items())
        try:
            p = base.replace(**_nested(point))
        except InvalidParameters as exc:
            raise InvalidParameters(f"sweep point {i} ({desc}): {exc}") from None
        j = seen.setdefault(p.to_json(), i)
        if j != i:  # it would be run twice and counted twice in the mean and spread
            raise InvalidParameters(f"sweep point {i} ({desc}): the same parameters as point "
                                    f"{j}; a --vary list repeats a value")
    return points


def point_hash(params: Params, stage: str, soc: float, quick: bool = False,
               overrides: Mapping[str, Any] | None = None) -> str:
    """Hash of everything that determines a point's result (its resume key); ``overrides``:
    the ``otoyama2020`` stage's changes to the preset, which the parameters alone do not fix."""
    from esim import __version__

    text = json.dumps({"params": params.to_dict(), "stage": stage, "soc": soc,
                       "esim": __version__, **({"quick": True} if quick else {}),
                       **({"preset_changes": overrides} if overrides else {})},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# One point
# ----------------------------------------------------------------------------------------------


def _scalars(d: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able scalar entries of ``d`` (NaN and inf as None)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = float(v) if math.isfinite(v) else None
        elif isinstance(v, str):
            out[k] = v
    return out


def differences_from_defaults(params: Params) -> dict[str, dict[str, Any]]:
    """The fields of ``params`` that differ from the built-in defaults, as ``{section: {key:
    value}}`` (what ``esim reproduce --set`` would have to set to make them)."""
    mine, default = params.to_dict(), Params().to_dict()
    out: dict[str, dict[str, Any]] = {}
    for section, values in mine.items():
        for key, value in values.items():
            if default[section][key] != value:
                out.setdefault(section, {})[key] = value
    return out


def otoyama2020_overrides(params: Params, point: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The changes a point makes to the paper's preset: the base set's differences from the
    built-in defaults, and every value the point varies, even one equal to its default (the
    preset's value, e.g. the quick box, would otherwise replace it)."""
    out = differences_from_defaults(params)
    for section, values in _nested(point).items():
        out.setdefault(section, {}).update(values)
    return out


def _otoyama2020_numbers(params: Params, quick: bool, save_dir: Path | None,
                         overrides: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    import tempfile

    from esim.reproduce import run_otoyama2020

    with tempfile.TemporaryDirectory() as tmp:
        rep = run_otoyama2020(save_dir or tmp, quick=quick, seeds=[params.structure.seed],
                              overrides=(differences_from_defaults(params) if overrides is None
                                         else overrides),
                              figures=save_dir is not None)
    numbers: dict[str, Any] = {k: v["mean"] for k, v in rep["aggregate"].items()}
    # a ratio's mean is one window's: the report reads the median, and so does the sweep
    numbers["cafm_low_to_high_r_current_ratio"] = (
        rep["aggregate"]["cafm_low_to_high_r_current_ratio"]["median"])
    numbers.update(rep["charge"])
    numbers["rows_within"] = sum(bool(r["within"]) for r in rep["rows"])
    numbers["rows_total"] = len(rep["rows"])
    pred = rep["summary"].get("prediction", {"n": 0, "within": 0})
    numbers["predictions_within"] = pred["within"]  # the rows that test the model
    numbers["predictions_total"] = pred["n"]
    numbers["n_windows"] = rep["n_windows"]
    return numbers


def _stage_numbers(stage: str, packing: Any, params: Params, soc: float,
                   save_dir: Path | None, quick: bool = False,
                   overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    if stage == "pack":
        return packing.summary()
    if stage == "solve":
        from esim.effective import effective_properties

        return effective_properties(packing, params, soc)
    if stage == "charge":
        from esim.charge import ChargeIncomplete, charge

        note = ""
        try:
            result = charge(packing, params)
        except ChargeIncomplete as exc:  # a partial charge is a result: keep its numbers
            result, note = exc.result, str(exc)
        if save_dir is not None:
            result.save(save_dir / "charge.h5")
        return {**result.summary(), "_note": note}
    if stage == "spm":
        from esim.spm.maps import simulate_spm

        maps = simulate_spm(packing, params, soc=soc)
        if save_dir is not None:
            maps.save(save_dir / "spm.h5")
        return maps.summary()
    if stage == "otoyama2020":
        return _otoyama2020_numbers(params, quick, save_dir, overrides)
    raise InvalidParameters(f"stage: must be one of {', '.join(STAGES)}, got {stage!r}")


def run_point(params_json: str, stage: str, soc: float = 0.0,
              save_dir: str | None = None, quick: bool = False,
              overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Pack the electrode of one parameter set and run one stage (the ``otoyama2020`` stage packs
    the preset's electrodes itself; its ``pack_s`` is None).

    Parameters
    ----------
    params_json : str
        :meth:`Params.to_json` of the point (a string, so it travels to worker processes).
    stage : str
        One of :data:`STAGES`.
    soc : float, 1
        Uniform state of charge for ``solve`` and ``spm``.
    save_dir : str, optional
        Folder for the point's files (``packing.h5`` and, for ``charge`` / ``spm``, the
        stage's result; for ``otoyama2020`` its report and figures).
    quick : bool
        The ``otoyama2020`` stage in its quick mode.
    overrides : dict, optional
        The ``otoyama2020`` stage's changes to the preset (:func:`otoyama2020_overrides`);
        default: the point's differences from the built-in defaults.

    Returns
    -------
    dict
        ``status`` ("ok"; "incomplete": a charge that stopped early, e.g. a current the pristine
        electrode cannot carry, with its numbers so far; "failed"), ``error`` (the message or
        ""), ``pack_s``, ``stage_s`` (s) and the stage's scalar numbers (SI units in the keys).
    """
    params = params_from_dict(json.loads(params_json))
    out: dict[str, Any] = {"status": "ok", "error": "", "pack_s": None, "stage_s": None}
    folder = Path(save_dir) if save_dir is not None else None
    try:
        from esim.packing import pack

        t0 = time.perf_counter()
        packing = None
        if stage != "otoyama2020":  # the reference experiment packs its own (preset) box
            packing = pack(params)
            out["pack_s"] = time.perf_counter() - t0
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                packing.save(folder / "packing.h5")
        numbers = _stage_numbers(stage, packing, params, soc, folder, quick, overrides)
        out["stage_s"] = time.perf_counter() - t0 - (out["pack_s"] or 0.0)
        if packing is not None and stage != "pack":  # the structure behind the numbers
            s = packing.summary()
            for k in ("n_particles", "solid_fraction", "nmc_fraction_of_solid",
                      "nmc_percolates"):
                numbers.setdefault(k, s[k])
        note = numbers.pop("_note", "")
        out.update(_scalars(numbers))
        if note:
            out["status"], out["error"] = "incomplete", note
    except EsimError as exc:
        out["status"] = "failed"
        out["error"] = str(exc)
    return out


# ----------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """Rows of a finished sweep (one dict per point) and where they were written."""

    keys: list[str]
    stage: str
    rows: list[dict[str, Any]]
    vary: dict[str, list[Any]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    reused: int = 0
    elapsed_s: float = 0.0

    @property
    def n_failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)

    @property
    def n_incomplete(self) -> int:
        return sum(r["status"] == "incomplete" for r in self.rows)

    def column(self, name: str) -> np.ndarray:
        """One column as floats (NaN where missing)."""
        return np.array([np.nan if r.get(name) is None else float(r[name]) for r in self.rows])


def warn_stale(folder: Path, prefix: str, n: int, what: str) -> list[str]:
    """Warn about, and return, the entries ``{prefix}NNN[.json]`` of ``folder`` numbered ``n``
    or more: left by an earlier, larger run into the same folder (kept, not deleted, but not
    part of this one's tables)."""
    import re

    pat = re.compile(re.escape(prefix) + r"(\d+)(\.json)?$")
    stale = sorted(e.name for e in folder.iterdir() if (m := pat.match(e.name))
                   and int(m.group(1)) >= n) if folder.is_dir() else []
    if stale:
        log.warning("%s: %d entries from an earlier, larger run remain (%s%s); they are not "
                    "part of this %s", folder, len(stale), ", ".join(stale[:3]),
                    ", ..." if len(stale) > 3 else "", what)
    return stale


def _init_worker(parent_pid: int | None = None, quiet: bool = False) -> None:
    """A worker runs numba single-threaded, shows Python warnings as the CLI does (one line
    each, none when ``quiet``), and dies with its driver: killed alone (SIGTERM from a scheduler
    or ``kill PID``), the driver would otherwise leave its workers computing and writing into
    the output folder, racing a resumed run."""
    import numba

    from esim._progress import warnings_as_log_lines

    numba.set_num_threads(1)
    import logging
    import sys

    # the worker's log to stderr as the CLI's (warnings; its progress lines stay quiet)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    warnings_as_log_lines(quiet)
    if parent_pid is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the driver died before the line above took effect
        os._exit(1)

    def watch() -> None:  # elsewhere (and as a second guard): poll the parent
        import time

        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="esim-parent-watch").start()


class _Terminated(BaseException):
    """SIGTERM delivered to the driver while its workers compute."""


def _compute(tasks: list[Any], workers: int, quiet: bool, desc: str = "sweep points"
             ) -> list[dict[str, Any]]:
    """Compute Dask tasks that each return a dict, with a progress bar: synchronously for one
    worker, else on a pool of spawned processes running numba single-threaded."""
    import dask
    from dask.callbacks import Callback

    from esim._progress import progress

    bar = progress(total=len(tasks), desc=desc, quiet=quiet)
    finals = {t.key for t in tasks}

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in finals:
                bar.update(1)

    try:
        with _Bar():
            if workers <= 1:
                return list(dask.compute(*tasks, scheduler="synchronous"))
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from concurrent.futures.process import BrokenProcessPool

            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                       initializer=_init_worker, initargs=(os.getpid(), quiet))

            def on_term(signum, frame):
                raise _Terminated()

            main = threading.current_thread() is threading.main_thread()
            old = signal.signal(signal.SIGTERM, on_term) if main else None
            try:
                return list(dask.compute(*tasks, scheduler="processes", pool=pool))
            except (_Terminated, KeyboardInterrupt):
                # stop the workers now (shutdown alone would wait for their running tasks);
                # finished points are on disk, and a re-run resumes from them
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise KeyboardInterrupt from None
            except BrokenProcessPool:
                raise EsimError(
                    "the worker processes stopped abruptly (out of memory?, or a script that "
                    "starts workers at import: guard its top level with "
                    "'if __name__ == \"__main__\":'); finished points are kept, re-run to "
                    "resume, or use one worker") from None
            finally:
                if main:
                    signal.signal(signal.SIGTERM, old)
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _finish_point(index: int, overrides: dict[str, Any], digest: str, path: Path,
                  numbers: dict[str, Any], save_dir: str | None = None) -> dict[str, Any]:
    """Write one point's JSON atomically (run inside the task, so a finished point survives an
    interruption of the sweep).  A saved point's folder gets its hash first
    (``HASH_FILE``): the JSON, written last, vouches for a complete folder."""
    if save_dir is not None and Path(save_dir).is_dir():
        atomic_write_text(Path(save_dir) / HASH_FILE, digest + "\n")
    row = {"index": index, "params_hash": digest, "overrides": overrides, **numbers}
    atomic_write_text(path, json.dumps(row, indent=1) + "\n")
    return row


HASH_FILE = "params_hash.txt"
"""The hash of the parameters a saved point's files were made with."""


def folder_hash(folder: Path) -> str | None:
    """The parameter hash written into a saved point's folder (None if absent)."""
    try:
        return (Path(folder) / HASH_FILE).read_text().strip()
    except OSError:
        return None


def forget(marker: Path, folder: Path) -> None:
    """Remove a point's (or a dataset sample's) marker and files before it is computed again: an
    interrupted run must not leave a marker of one parameter set beside the files of another,
    nor the files of an earlier run where this one saves none."""
    import shutil

    marker.unlink(missing_ok=True)
    if folder.is_dir():
        shutil.rmtree(folder)
    elif folder.exists():
        folder.unlink()


def _load_point(path: Path, digest: str) -> dict[str, Any] | None:
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and row.get("params_hash") == digest else None


def run_sweep(base: Params, vary: Mapping[str, Sequence[Any]], stage: str, outdir: str | Path,
              *, mode: str = "grid", soc: float = 0.0, workers: int = 1, save: bool = False,
              quiet: bool = True, figure: bool = True,
              metrics: Sequence[str] | None = None, quick: bool = False) -> SweepResult:
    """Run a sweep and write its table (see the module docstring).

    Parameters
    ----------
    base : Params
        Parameters shared by every point.
    vary : mapping of ``"SECTION.KEY"`` to values
    stage : str
        One of :data:`STAGES`.
    outdir : path
        Output folder (created); a previous sweep's points there are reused when their hash
        matches.
    mode : {"grid", "zip"}
    soc : float, 1
        Uniform state of charge of the ``solve`` and ``spm`` stages.
    workers : int
        Processes (1: in this process).
    save : bool
        Also keep each point's packing and stage result under ``points/point_NNNN/``.
    metrics : sequence of str, optional
        Numbers drawn in ``sweep.png`` (default: the stage's, see :data:`STAGES`).
    quick : bool
        The ``otoyama2020`` stage in its quick mode.

    Returns
    -------
    SweepResult
    """
    import dask

    if stage not in STAGES:
        raise InvalidParameters(f"stage: must be one of {', '.join(STAGES)}, got {stage!r}")
    if not (math.isfinite(soc) and 0.0 <= soc <= 1.0):
        raise InvalidParameters(f"--soc: must lie in [0, 1], got {soc!r}")
    if not 1 <= int(workers) <= 256:
        raise InvalidParameters(f"--workers: must lie in [1, 256], got {workers!r}")
    if quick and stage != "otoyama2020":
        raise InvalidParameters(f"--quick: applies to the otoyama2020 stage only (the {stage} "
                                "stage runs the parameters as given)")
    out = check_output_dir(outdir, subfolders=("points",),
                           files=("sweep.csv", "sweep.md", "sweep.json", "sweep.png",
                                  "base_params.toml"), marker="sweep.json")
    points = expand_points(base, vary, mode=mode)
    setups = []
    for point in points:  # every point's set (and the experiment's changes) checked first
        params = base.replace(**_nested(point))
        ovr = None
        if stage == "otoyama2020":
            from esim.reproduce import PER_WINDOW_SPM_KEYS, preset_variant

            ovr = otoyama2020_overrides(params, point)
            for key in PER_WINDOW_SPM_KEYS:
                if key in ovr.get("spm", {}):
                    raise InvalidParameters(
                        f"spm.{key}: the otoyama2020 stage sets it for each window (planes "
                        "evenly spaced, the maps' noise from the packing seed); vary "
                        "structure.seed instead, or use esim reproduce --windows")
            preset_variant(quick, ovr)  # the point's changes to the preset, validated
        setups.append((params, ovr))
    t0 = time.perf_counter()
    folder = out / "points"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any] | None] = [None] * len(points)
    tasks, slots = [], []
    finish = dask.delayed(_finish_point, pure=True)
    compute = dask.delayed(run_point, pure=True)
    for i, (point, (params, ovr)) in enumerate(zip(points, setups)):
        digest = point_hash(params, stage, soc, quick and stage == "otoyama2020", ovr)
        path, pdir = folder / f"point_{i:04d}.json", folder / f"point_{i:04d}"
        old = _load_point(path, digest)
        if old is not None and (not save or folder_hash(pdir) == digest):
            if old.get("index") != i or old.get("overrides") != point:
                # the same parameters reached by another --vary: this run's labels
                old = {**old, "index": i, "overrides": point}
                atomic_write_text(path, json.dumps(old, indent=1) + "\n")
            rows[i] = old
            continue
        forget(path, pdir)
        save_dir = str(pdir) if save else None
        numbers = compute(params.to_json(), stage, soc, save_dir, quick, ovr,
                          dask_key_name=f"point-{i}")
        tasks.append(finish(i, point, digest, path, numbers, save_dir,
                            dask_key_name=f"row-{i}"))
        slots.append(i)
    reused = len(points) - len(tasks)
    for i, row in zip(slots, _compute(tasks, workers, quiet) if tasks else []):
        rows[i] = row
    warn_stale(folder, "point_", len(points), "sweep")
    result = SweepResult(keys=list(vary), stage=stage, rows=[r for r in rows if r is not None],
                         vary={k: list(v) for k, v in vary.items()}, reused=reused,
                         elapsed_s=time.perf_counter() - t0)
    result.files = write_tables(result, out, soc=soc, mode=mode, base=base)
    known = sorted({*_numeric_keys(result), *STAGES[stage][1]})
    unknown = [m for m in (metrics or ()) if m not in known]
    ran = any(r["status"] != "failed" for r in result.rows)
    if unknown and ran:  # the metric names are known once a point has run
        (out / "sweep.png").unlink(missing_ok=True)
        raise InvalidParameters(
            f"--metric {', '.join(unknown)}: not a number of the {stage} stage (its numbers: "
            f"{', '.join(known)}); the points and tables are saved in {out}, and a re-run with "
            "a known --metric reuses them")
    if figure:
        result.files["figure"] = plot_sweep(result, out / "sweep.png", metrics=metrics)
    else:  # an earlier run's figure would not show this run's points
        (out / "sweep.png").unlink(missing_ok=True)
    return result


# ----------------------------------------------------------------------------------------------
# Tables and figure
# ----------------------------------------------------------------------------------------------


def _columns(result: SweepResult) -> list[str]:
    cols = ["index", *result.keys, "status", "error", "pack_s", "stage_s"]
    for row in result.rows:
        for k in row:
            if k not in cols and k not in ("overrides", "params_hash"):
                cols.append(k)
    return cols


def _cell(row: dict[str, Any], col: str, keys: list[str]) -> Any:
    if col in keys:
        return row["overrides"].get(col)
    return row.get(col)


def write_tables(result: SweepResult, out: Path, *, soc: float, mode: str,
                 base: Params) -> dict[str, Path]:
    """``sweep.csv``, ``sweep.md``, ``sweep.json`` and ``base_params.toml``, atomically."""
    import csv
    import io

    from esim import __version__
    from esim.cli._common import format_value
    from esim.io.atomic import atomic_write_text

    cols = _columns(result)
    table = [[_cell(r, c, result.keys) for c in cols] for r in result.rows]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows([["" if v is None else v for v in row] for row in table])
    files = {"csv": out / "sweep.csv", "md": out / "sweep.md", "json": out / "sweep.json",
             "base_params": out / "base_params.toml"}
    atomic_write_text(files["csv"], buf.getvalue())
    varied = ", ".join(result.keys) or "nothing"
    shown = [c for c in cols if c != "error"]
    md = [f"# esim sweep: {result.stage} ({STAGES[result.stage][0]})", "",
          f"esim {__version__}; varied: {varied} ({mode}); "
          + (f"SOC {soc:g}; " if result.stage in ("solve", "spm") else "") +
          f"{len(result.rows)} points, {result.n_failed} failed, {result.n_incomplete} "
          f"incomplete, {result.reused} reused; "
          f"{result.elapsed_s:.1f} s.", "",
          *[f"- `{k}`: {', '.join(str(v) for v in vals)}" for k, vals in result.vary.items()],
          "",
          "| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for r in result.rows:
        md.append("| " + " | ".join("" if (v := _cell(r, c, result.keys)) is None
                                    else format_value(v) for c in shown) + " |")
    for r in result.rows:
        if r["status"] != "ok":
            md.append(f"\nPoint {r['index']} {r['status']}: {r['error']}")
    atomic_write_text(files["md"], "\n".join(md) + "\n")
    doc = {"esim_version": __version__, "stage": result.stage, "mode": mode, "soc": soc,
           "vary": result.vary, "base_params_file": files["base_params"].name,
           "n_points": len(result.rows), "n_failed": result.n_failed,
           "n_incomplete": result.n_incomplete, "reused": result.reused,
           "elapsed_s": result.elapsed_s, "rows": result.rows}
    atomic_write_text(files["json"], json.dumps(doc, indent=1) + "\n")
    atomic_write_text(files["base_params"], base.to_toml())
    return files


def _is_seed(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


#: at most this many series (values of a second varied field) in one panel of the sweep figure
MAX_SERIES = 8


def _axis_values(raw: list[Any]) -> tuple[np.ndarray, list[Any], bool]:
    """Plot coordinates of one field's values: ``(x, labels, numeric)``; non-numeric values are
    placed at the index of their sorted label."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    if numeric:
        return np.array(raw, float), [], True
    labels = sorted(set(raw), key=lambda v: (str(type(v)), v))
    return np.array([labels.index(v) for v in raw], float), labels, False


def _numeric_keys(result: SweepResult) -> list[str]:
    """The numbers the sweep's points report (what ``--metric`` may name)."""
    return sorted({k for r in result.rows for k, v in r.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})


def plot_sweep(result: SweepResult, path: str | Path,
               metrics: Sequence[str] | None = None) -> Path:
    """Each metric against the first non-seed field given more than one value (log axes for
    conductivities and resistances): one marker per point, and the mean with its standard
    deviation over seeds where a value repeats.  A second varied non-seed field (up to
    :data:`MAX_SERIES` values) is drawn as one series per value, so its effect is not pooled
    into the spread; further fields are pooled, and the legend says over how many points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from esim.cli._common import format_value
    from esim.plot import save_figure

    asked = list(metrics or STAGES[result.stage][1])
    known = _numeric_keys(result)
    unknown = [m for m in asked if m not in known]
    if unknown and metrics:
        log.warning("--metric %s: not a number of the %s stage; its numbers are %s",
                    ", ".join(unknown), result.stage, ", ".join(known))
    metrics = [m for m in asked if m in known and np.isfinite(result.column(m)).any()]
    metrics = metrics or [m for m in STAGES[result.stage][1] if m in known][:1] or asked[:1]
    distinct = {k: len({json.dumps(r["overrides"].get(k)) for r in result.rows})
                for k in result.keys}
    xkeys = ([k for k in result.keys if not _is_seed(k) and distinct[k] > 1]
             or [k for k in result.keys if distinct[k] > 1] or result.keys)
    xkey = xkeys[0] if xkeys else None
    gkey = next((k for k in xkeys[1:] if not _is_seed(k) and distinct[k] <= MAX_SERIES), None)
    ok = np.array([r["status"] != "failed" for r in result.rows], bool)
    x, labels, numeric = _axis_values(
        [r["overrides"].get(xkey) if xkey else r["index"] for r in result.rows])
    if gkey is None:
        series = [(np.ones(len(result.rows), bool), None)]
    else:
        graw = [r["overrides"].get(gkey) for r in result.rows]
        gx, glabels, gnum = _axis_values(graw)
        series = [(gx == u, u if gnum else glabels[int(u)]) for u in np.unique(gx)]
    xlabel = axis_label(xkey) if xkey else "point"
    if numeric and xkey and xkey.endswith("_m") and np.nanmax(np.abs(x)) < 1e-3:
        # lengths below a millimetre on a readable scale: 10 nm, not 1e-8 m
        factor, unit = (1e9, "nm") if np.nanmax(np.abs(x)) < 1e-6 else (1e6, "µm")
        x = x * factor
        xlabel = xlabel.removesuffix("(m)") + f"({unit})"
    ux_all = np.unique(x)
    log_x = bool(numeric and ux_all.size > 2 and np.all(ux_all > 0)
                 and ux_all.max() / ux_all.min() >= 20)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False,
                             layout="constrained")
    show_legend = False
    for ax, m in zip(axes[0], metrics):
        y = result.column(m)
        good = ok & np.isfinite(y)
        repeats = False
        for k, (gm, gval) in enumerate(series):
            sel = good & gm
            name = None if gkey is None else f"{gkey.rsplit('.', 1)[-1]} = {format_value(gval)}"
            ax.plot(x[sel], y[sel], "o", ms=4, alpha=0.5,
                    color="0.45" if gkey is None else f"C{k}",
                    label="points" if gkey is None else None)
            ux = np.unique(x[sel])
            if ux.size < sel.sum():
                repeats = True
                mean = np.array([y[sel & (x == u)].mean() for u in ux])
                std = np.array([y[sel & (x == u)].std() for u in ux])
                each = f"mean ± std ({sel.sum() / ux.size:.3g} points each)"
                ax.errorbar(ux, mean, yerr=std, fmt="-s" if numeric else "s", ms=5, capsize=3,
                            color=f"C{k}", label=each if name is None else f"{name}: {each}")
            elif name is not None:
                ax.plot(x[sel][np.argsort(x[sel])], y[sel][np.argsort(x[sel])],
                        "-" if numeric else "", color=f"C{k}", label=name)
        if (~ok).any():  # where the failed points lie, along the bottom edge
            ax.plot(x[~ok], np.zeros(int((~ok).sum())), "x", color="C3", ms=7, mew=1.5,
                    clip_on=False, transform=ax.get_xaxis_transform(),
                    label=f"failed ({int((~ok).sum())}, see sweep.md)")
        show_legend = show_legend or repeats or gkey is not None or bool((~ok).any())
        if m.endswith(_LOG_SUFFIXES) and np.all(y[good] > 0) and good.any():
            ax.set_yscale("log")
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(labels)), [str(v) for v in labels])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(axis_label(m))
    fig.suptitle(f"esim sweep: {result.stage} ({len(result.rows)} points)")
    if show_legend:  # the same series in every panel: one legend, below them, over no data
        handles, names = {}, []
        for ax in axes[0]:
            for h, n in zip(*ax.get_legend_handles_labels()):
                if n not in handles:
                    handles[n] = h
                    names.append(n)
        fig.legend([handles[n] for n in names], names, loc="outside lower center",
                   ncols=min(len(names), 3), fontsize=8, frameon=False)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)

