"""Virtual SPM of the milled cross-section: SSRM, C-AFM (map and I-V), KPFM, SEM and EDX maps.

Input: a TOML parameter file (the packing is generated) or a packing HDF5 file.  The electrode
is pristine (uniform SOC 0) unless ``--soc`` sets a uniform state of charge.  The TOML may hold
an ``[spm]`` table (esim.spm SPMParams).  Writes ``spm.h5`` (maps, ground truth, parameters),
``gsf/<channel>.gsf``, ``spm_maps.png``, ``spm_truth.png``, ``iv.png`` and ``iv.csv`` to the
output folder, and prints a summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from esim.cli._common import add_set_argument, apply_overrides, print_json, print_table

HELP = "virtual SPM of a cross-section: SSRM, C-AFM, KPFM, SEM/EDX maps (HDF5 + GSF + PNG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?",
                   help="TOML parameter file or packing .h5 (default: built-in parameters)")
    p.add_argument("-o", "--output", default="spm_out", help="output folder (default: %(default)s)")
    p.add_argument("--soc", type=float, default=0.0,
                   help="uniform state of charge of the NMC, 0..1 (default: 0, pristine)")
    p.add_argument("--plane-position", type=float,
                   help="cut plane position along its normal, m (a negative value: the middle "
                        "of the box, the default; write a negative value as "
                        "--plane-position=-1)")
    p.add_argument("--pixels", type=int, help="pixels along each image axis")
    p.add_argument("--seed", type=int, help="seed of the noisy channels")
    p.add_argument("--iv-choice", type=int, nargs=3, metavar=("LOW", "HIGH", "SE"),
                   default=(1, 1, 2),
                   help="I-V points: this many lowest- and highest-resistance NMC and largest "
                        "SE sections (default: 1 1 2, as Otoyama 2020 Fig. 4b; 2 2 0 is their "
                        "Fig. 4d after charge)")
    p.add_argument("--no-noise", action="store_true", help="noise-free maps")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_set_argument(p, "the parameter set (e.g. --set spm.tip_radius_m=2e-8)")


def _load(arg: str | None, overrides: list[str] | tuple[str, ...] = ()):
    """(packing, params, spm) from the input argument, with the ``--set`` items applied (checked
    before anything is packed)."""
    from esim._params_spm import SPMParams
    from esim.errors import InputFileError
    from esim.packing import Packing, pack
    from esim.params import Params

    if arg is None:
        params = apply_overrides(Params(), overrides)
        return pack(params), params, params.spm
    path = Path(arg)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        pk = Packing.load(path)
        params = apply_overrides(pk.params, overrides, packing_input=str(path))
        return pk, params, getattr(params, "spm", None) or SPMParams()
    from esim.params import load_params

    params = apply_overrides(load_params(path), overrides)
    return pack(params), params, params.spm


#: I-V points the command draws at most (20 distinct colours)
MAX_IV_POINTS = 20


def run(args: argparse.Namespace) -> int:
    from esim.errors import InvalidParameters
    from esim.io.atomic import check_not_input, check_output_dir
    from esim.spm.maps import simulate_spm

    if not 0.0 <= args.soc <= 1.0:
        raise InvalidParameters(f"--soc: must lie in [0, 1], got {args.soc}")
    if min(args.iv_choice) < 0 or sum(args.iv_choice) == 0:
        raise InvalidParameters("--iv-choice: three counts >= 0, at least one I-V point, got "
                                + " ".join(map(str, args.iv_choice)))
    if sum(args.iv_choice) > MAX_IV_POINTS:
        raise InvalidParameters(f"--iv-choice: at most {MAX_IV_POINTS} I-V points in all (a "
                                "figure of more curves cannot be read; iv_pixels of "
                                "esim.spm.maps.simulate_spm takes any number), got "
                                + " ".join(map(str, args.iv_choice)))
    files = ("spm.h5", "iv.csv", "spm_maps.png", "spm_truth.png", "iv.png")
    check_output_dir(args.output, "--output", subfolders=("gsf",), files=files)
    check_not_input([Path(args.output) / f for f in files], [args.input])
    t0 = time.perf_counter()
    packing, params, spm = _load(args.input, args.set)
    changes = {}
    if args.plane_position is not None:
        changes["plane_position_m"] = args.plane_position
    if args.pixels is not None:
        changes["pixels_u"] = changes["pixels_z"] = args.pixels
    if args.seed is not None:
        changes["seed"] = args.seed
    if changes:  # validated like a parameter file (names the field and its range)
        spm = params.replace(spm=changes).spm
    t1 = time.perf_counter()
    maps = simulate_spm(packing, params, soc=args.soc, spm=spm, noise=not args.no_noise,
                        iv_choice=tuple(args.iv_choice))
    t2 = time.perf_counter()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    maps.save(out / "spm.h5")
    maps.export_gsf(out / "gsf")
    maps.write_iv_csv(out / "iv.csv")
    if not args.no_figures:
        maps.plot(out / "spm_maps.png")
        maps.plot_truth(out / "spm_truth.png")
        maps.plot_iv(out / "iv.png")
    summary = maps.summary()
    summary.update({"soc": args.soc, "n_particles": packing.n_particles,
                    "setup_s": t1 - t0, "spm_s": t2 - t1, "output": str(out)})
    if args.json:
        print_json(summary)
    else:
        print_table(f"esim spm: {out}", summary)
    return 0
