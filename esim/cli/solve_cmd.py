"""Effective electronic and ionic conductivity, tortuosity and percolation of a composite electrode.

The input is either a TOML parameter file (the packing is generated first, as ``esim pack`` does)
or a packing saved by ``esim pack`` (``.h5``/``.hdf5``, or any file with the HDF5 signature).
Without an input the built-in default parameters are packed.

State of charge
---------------
``--soc X`` is a uniform state of charge in [0, 1]: 0 is the pristine, as-made Li1.0NMC111 and 1 is
charged to the reference cut-off of 164 mAh/g.  It maps linearly to the delithiation x in
Li(1-x)Ni1/3Mn1/3Co1/3O2::

    x = SOC * x_max,   x_max = 164 mAh/g / 277.8 mAh/g = 0.59

(277.8 mAh/g is the theoretical capacity of NMC111, M = 96.46 g/mol; ``materials.nmc_x_max``).

Reported (SI units, named in the keys; definitions in :mod:`esim.effective`)
----------------------------------------------------------------------------
* ``sigma_e_S_per_m``: through-plane electronic conductivity, as in an ion-blocking cell with
  electronic electrodes on both faces;
* ``sigma_ion_S_per_m``: through-plane ionic conductivity, as in an electron-blocking cell;
* each conductivity with its solver checks beside it: ``*_flux_mismatch`` (relative difference
  of the currents into and out of the sample), ``*_iterations`` (0 for the direct solver) and
  ``*_residual`` (relative Kirchhoff residual);
* ``tau_e``, ``tau_ion``: tortuosity factors (``sigma_eff = eps sigma_bulk / tau``), and the
  same as Bruggeman exponents ``bruggeman_e``, ``bruggeman_ion`` (``sigma_eff = sigma_bulk
  eps^b``), the form cell models such as PyBaMM take;
* ``nmc_connected_fraction``: NMC volume fraction electronically connected to the current
  collector; ``se_connected_fraction``: SE volume fraction ionically connected to the separator;
* ``active_interface_area_m2``: NMC/SE interface of connected NMC touching connected SE
  (``active_interface_area_per_volume_m_inv`` per electrode volume).

Outputs (in ``-o OUTDIR``, default ``solve_out``; every file written atomically)
-----------------------------------------------------------------------------
``solve.csv``, ``solve.md`` (table), ``solve.json`` (all numbers), ``solve.png`` (figure); with
``--soc-sweep N`` also ``soc_sweep.csv``, ``soc_sweep.md`` and ``soc_sweep.png``: the electronic
conductivity at N states of charge evenly spaced in [0, 1] (log axis) with the ionic conductivity
as a reference line.  Every input is checked before anything is computed or written, so a bad
input leaves no file behind.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from esim.cli._common import add_set_argument, format_value, print_json, print_table
from esim.io.atomic import check_output_dir

HELP = "effective electronic/ionic conductivity, tortuosity and percolation at a state of charge"
log = logging.getLogger("esim")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: (key, unit, solver-diagnostics prefix or None) of the rows of the results table.
TABLE_ROWS: list[tuple[str, str, str | None]] = [
    ("soc", "1", None),
    ("x", "1", None),
    ("temperature_K", "K", None),
    ("sigma_e_S_per_m", "S/m", "sigma_e"),
    ("sigma_ion_S_per_m", "S/m", "sigma_ion"),
    ("nmc_sigma_e_bulk_S_per_m", "S/m", None),
    ("se_sigma_ion_bulk_S_per_m", "S/m", None),
    ("tau_e", "1", None),
    ("tau_ion", "1", None),
    ("bruggeman_e", "1", None),
    ("bruggeman_ion", "1", None),
    ("nmc_volume_fraction", "1", None),
    ("se_volume_fraction", "1", None),
    ("nmc_connected_fraction", "1", None),
    ("se_connected_fraction", "1", None),
    ("active_interface_area_m2", "m^2", None),
    ("interface_area_m2", "m^2", None),
    ("active_interface_area_per_volume_m_inv", "1/m", None),
]

SWEEP_COLUMNS = ["soc", "x", "sigma_e_S_per_m", "sigma_e_flux_mismatch", "sigma_e_iterations",
                 "sigma_e_residual", "tau_e", "nmc_sigma_e_bulk_S_per_m", "sigma_ion_S_per_m"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?",
                   help="TOML parameter file (packed first) or packing .h5 from 'esim pack' "
                        "(default: built-in parameters)")
    p.add_argument("--soc", type=float, default=0.0,
                   help="uniform state of charge in [0, 1]; x = 0.59*SOC in Li(1-x)NMC111 "
                        "(164 / 277.8 mAh/g) (default: %(default)s)")
    p.add_argument("--soc-sweep", type=int, metavar="N",
                   help="also compute sigma_e at N states of charge evenly spaced in [0, 1]")
    p.add_argument("-o", "--outdir", default="solve_out",
                   help="folder of the table and figures (default: %(default)s)")
    p.add_argument("--no-figure", action="store_true", help="do not draw the figures")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    add_set_argument(p)


def _check_args(args: argparse.Namespace) -> None:
    from esim.errors import InvalidParameters

    if not (math.isfinite(args.soc) and 0.0 <= args.soc <= 1.0):
        raise InvalidParameters(f"--soc: must lie in [0, 1], got {args.soc!r}")
    if args.soc_sweep is not None and not (2 <= args.soc_sweep <= 1000):
        raise InvalidParameters(f"--soc-sweep: must be an integer in [2, 1000], "
                                f"got {args.soc_sweep!r}")
    check_output_dir(args.outdir, files=("solve.csv", "solve.md", "solve.json", "solve.png",
                                         "soc_sweep.csv", "soc_sweep.md", "soc_sweep.png"),
                     marker="solve.json")


def _is_hdf5(path: Path) -> bool:
    """True when ``path`` should be read as a packing: an .h5/.hdf5 suffix or the HDF5 signature."""
    if path.suffix.lower() in (".h5", ".hdf5"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def load_input(arg: str | None, quiet: bool = True,
               overrides: list[str] | tuple[str, ...] = ()) -> tuple[Any, Any, str]:
    """The packing and parameters named by the command-line input.

    Parameters
    ----------
    arg : str or None
        TOML parameter file, packing HDF5 file, or None for the built-in defaults.
    overrides : list of str
        ``--set SECTION.KEY=VALUE`` items, validated before anything is packed; a saved
        packing refuses ``structure.*`` items (its structure is fixed).

    Returns
    -------
    packing : Packing
    params : Params
    source : str
        ``"packed"`` or ``"loaded"``.

    Raises
    ------
    InputFileError
        Missing, unreadable or corrupt file (named in the message).
    """
    from esim.cli._common import apply_overrides, params_from_arg
    from esim.errors import EsimError, InputFileError
    from esim.packing import Packing, pack

    if arg is not None:
        path = Path(arg)
        if not path.exists():
            raise InputFileError(f"{path}: no such file")
        if path.is_dir():
            raise InputFileError(f"{path}: is a folder, expected a TOML or HDF5 file")
        if _is_hdf5(path):
            try:
                packing = Packing.load(path)
            except EsimError:
                raise
            except (OSError, KeyError, ValueError, TypeError) as exc:
                raise InputFileError(f"{path}: not a readable esim packing "
                                     f"({type(exc).__name__}: {exc})") from None
            return packing, apply_overrides(packing.params, overrides,
                                            packing_input=str(path)), "loaded"
    params = params_from_arg(arg, overrides)
    return pack(params, quiet=quiet), params, "packed"


def _fmt(v: Any) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    return format_value(v)


def results_table(res: dict[str, Any]) -> list[list[str]]:
    """Rows ``[quantity, value, unit, flux_mismatch, iterations, residual]`` (header first)."""
    rows = [["quantity", "value", "unit", "flux_mismatch", "iterations", "residual"]]
    for key, unit, diag in TABLE_ROWS:
        if key not in res:
            continue
        d = ([_fmt(res[f"{diag}_flux_mismatch"]), _fmt(res[f"{diag}_iterations"]),
              _fmt(res[f"{diag}_residual"])] if diag else ["", "", ""])
        rows.append([key, _fmt(res[key]), unit, *d])
    return rows


def to_csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        [[_fmt(v) if not isinstance(v, str) else v for v in r] for r in rows])
    return buf.getvalue()


def to_markdown(rows: list[list[Any]], title: str) -> str:
    cells = [[_fmt(v) if not isinstance(v, str) else v for v in r] for r in rows]
    lines = [f"# {title}", "", "| " + " | ".join(cells[0]) + " |",
             "|" + "|".join("---" for _ in cells[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines) + "\n"


def _json_value(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


def run(args: argparse.Namespace) -> int:
    import json

    from esim import __version__
    from esim.effective import effective_properties
    from esim.io.atomic import atomic_write_text

    _check_args(args)
    quiet = bool(args.quiet or args.json)
    t0 = time.perf_counter()
    packing, params, source = load_input(args.input, quiet=quiet, overrides=args.set)
    t_pack = time.perf_counter() - t0

    t1 = time.perf_counter()
    res = effective_properties(packing, params, args.soc)
    t_solve = time.perf_counter() - t1
    box = packing.box_m
    volume = float(box[0] * box[1] * box[2])
    res["active_interface_area_per_volume_m_inv"] = res["active_interface_area_m2"] / volume

    summary: dict[str, Any] = {"input": args.input or "(built-in parameters)",
                               "packing_source": source, "n_particles": packing.n_particles,
                               "box_x_m": float(box[0]), "box_y_m": float(box[1]),
                               "electrode_thickness_m": float(box[2]),
                               "seed": packing.params.structure.seed}
    summary.update(res)
    summary["pack_time_s"] = t_pack
    summary["solve_time_s"] = t_solve

    sweep: list[dict[str, Any]] | None = None
    if not args.soc_sweep and (Path(args.outdir) / "soc_sweep.csv").exists():
        log.warning("%s: soc_sweep.* are from an earlier run with --soc-sweep; this run "
                    "writes no SOC sweep", args.outdir)
    if args.soc_sweep:
        t2 = time.perf_counter()
        socs = np.linspace(0.0, 1.0, args.soc_sweep)
        sweep = [effective_properties(packing, params, float(s)) for s in socs]
        summary["sweep_time_s"] = time.perf_counter() - t2
        for col in ("soc", "x", "sigma_e_S_per_m", "sigma_e_flux_mismatch",
                    "sigma_e_iterations", "sigma_e_residual", "tau_e"):
            summary[f"sweep_{col}"] = [r[col] for r in sweep]

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    title = (f"esim solve: {summary['input']} at SOC {args.soc:g} "
             f"(x = {res['x']:.3f} in Li(1-x)NMC111)")
    rows = results_table(res)
    files = {"table_csv": outdir / "solve.csv", "table_md": outdir / "solve.md",
             "json": outdir / "solve.json"}
    atomic_write_text(files["table_csv"], to_csv(rows))
    atomic_write_text(files["table_md"], to_markdown(rows, title))
    if sweep is not None:
        srows = [SWEEP_COLUMNS] + [[r[c] for c in SWEEP_COLUMNS] for r in sweep]
        files["sweep_csv"] = outdir / "soc_sweep.csv"
        files["sweep_md"] = outdir / "soc_sweep.md"
        atomic_write_text(files["sweep_csv"], to_csv(srows))
        atomic_write_text(files["sweep_md"], to_markdown(
            srows, f"esim solve: electronic conductivity vs state of charge ({summary['input']})"))
    if not args.no_figure:
        from esim.plot_network import plot_effective, plot_soc_sweep

        name = Path(summary["input"]).name
        files["figure"] = plot_effective(res, outdir / "solve.png", label=name)
        if sweep is not None:
            files["sweep_figure"] = plot_soc_sweep(sweep, outdir / "soc_sweep.png", label=name)
    summary.update({f"{k}_path": str(v) for k, v in files.items()})
    summary["esim_version"] = __version__
    atomic_write_text(files["json"], json.dumps({k: _json_value(v) for k, v in summary.items()},
                                                indent=1) + "\n")
    if args.json:
        print_json({k: _json_value(v) for k, v in summary.items()})
    else:
        print_table(title, {k: v for k, v in summary.items() if not k.startswith("sweep_")
                            or k == "sweep_time_s"})
        if sweep is not None:
            print("  SOC sweep (soc, sigma_e_S_per_m): " + ", ".join(
                f"({r['soc']:.2f}, {r['sigma_e_S_per_m']:.3g})" for r in sweep))
    return 0
