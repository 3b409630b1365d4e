"""The main job as a user runs it: ``esim reproduce otoyama2020`` on the default preset.

Issue 6's goals: the full run in under 10 minutes on 2 cores on a fresh machine, and
``--quick`` (what CI runs) in under 2 minutes.  Each timed body is the installed command in a
subprocess (``-q``, into a fresh folder): interpreter start, imports, packing, charge, imaging,
analysis, figures and report.  "Fresh machine" means no compiled kernels yet: the ``cold`` cases
point ``NUMBA_CACHE_DIR`` at an empty folder, so every numba kernel the run uses is compiled in
it (once; a second run in the same folder would be warm).  The ``warm`` cases use the normal
cache after one untimed run, as every later run on that machine.  Peak memory is the
command's (``reproduce_peak_rss_MiB``, its ``os.wait4``; also the harness's
``peak_rss_children_MiB``), not the harness process's (``peak_rss_MiB``, ~30 MiB).  No peer
tool reproduces this experiment, so the suite is esim alone; ``ratio_to_esim`` of a cold row
is over its warm row (the share of the first run spent compiling).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "reproduce"


def cases(quick: bool) -> list[dict]:
    if quick:  # the CI mode with one window, warm: seconds
        return [{"name": "esim_reproduce_quick_1window_warm", "tool": "esim", "mode": "quick",
                 "windows": 1, "cold": False, "work": "reproduce_quick_1window", "repeats": 1}]
    out = []
    for mode in ("quick", "full"):
        out.append({"name": f"esim_reproduce_{mode}_warm", "tool": "esim", "mode": mode,
                    "cold": False, "work": f"reproduce_{mode}", "repeats": 3})
        out.append({"name": f"esim_reproduce_{mode}_cold", "tool": "esim (cold JIT cache)",
                    "mode": mode, "cold": True, "work": f"reproduce_{mode}", "repeats": 1})
    return out


def _command(case: dict, out: Path) -> list[str]:
    cmd = [sys.executable, "-c", "from esim.cli.main import entry; entry()", "-q",
           "reproduce", "otoyama2020", "-o", str(out)]
    if case["mode"] == "quick":
        cmd.append("--quick")
    if case.get("windows"):
        cmd += ["--windows", str(case["windows"])]
    return cmd


def _once(case: dict, env: dict) -> tuple[float, float, dict]:
    """Wall time (s) and peak resident memory (MiB) of one run, and its report."""
    with tempfile.TemporaryDirectory() as d:
        out, log = Path(d) / "res", Path(d) / "stderr.txt"
        with log.open("wb") as err:  # a file, not a pipe: a full pipe would block the child
            t = time.perf_counter()
            proc = subprocess.Popen(_command(case, out), env=env, stdout=subprocess.DEVNULL,
                                    stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t
        proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if code != 0:
            last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"esim reproduce exited {code}: {last}")
        report = json.loads((out / "report.json").read_text())
    kib = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes
    return wall, kib / 1024, report


def run(case: dict) -> dict:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if case["cold"]:
            env["NUMBA_CACHE_DIR"] = cache  # empty: every kernel is compiled in the timed run
        else:
            _once(case, env)  # the cache is filled (or already was)
        runs = [_once(case, env) for _ in range(case["repeats"])]
    times = [r[0] for r in runs]
    report = runs[-1][2]
    pred = report["summary"]["prediction"]
    return {"time_s": statistics.median(times), "times_s": times,
            "reproduce_peak_rss_MiB": max(r[1] for r in runs),
            "report_elapsed_s": report["elapsed_s"], "n_windows": report["n_windows"],
            "n_seeds": len(report["seeds"]),
            "predictions_within": f"{pred['within']}/{pred['n']}",
            "capacity_mAh_per_g": report["charge"]["capacity_mAh_per_g"]}
