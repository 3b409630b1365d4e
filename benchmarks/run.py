"""Run the esim benchmark suite beside its peers; write JSON and a Markdown table.

Usage::

    python -m benchmarks.run               # full suite (minutes; the sizes of the issues)
    python -m benchmarks.run --quick       # toy sizes, seconds (what CI runs)
    python -m benchmarks.run --suite packing --out benchmarks/results

Each ``benchmarks/bench_*.py`` module defines ``SUITE``, ``cases(quick) -> list[dict]`` and
``run(case) -> dict``.  Every case runs in its own subprocess, so its peak resident memory
(``ru_maxrss`` of that process, via ``os.wait4``) is its own.  ``run`` does its set-up (JIT
warm-up, input generation) outside the timed body and reports the median of its repeats as
``time_s``.  Ratios are reported against the esim case of the same ``work`` key.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))


def run_one(module: str, index: int, quick: bool) -> None:
    """Child process: run one case and print its metrics as JSON on the last line."""
    mod = importlib.import_module(f"benchmarks.{module}")
    case = mod.cases(quick)[index]
    t0 = time.perf_counter()
    try:
        res = mod.run(case)
    except Exception as exc:  # a failing peer must not stop the suite; report it
        res = {"error": f"{type(exc).__name__}: {exc}"}
    res.setdefault("wall_s", time.perf_counter() - t0)
    from benchmarks._util import peak_rss_mib

    res["peak_rss_MiB"] = peak_rss_mib()
    out = {"suite": mod.SUITE, "case": case["name"], **{k: v for k, v in case.items()
                                                         if k != "name"}, **res}
    print(json.dumps(out, default=float))


def spawn(module: str, index: int, quick: bool, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.run", "--one", module, str(index)]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get(
        "PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=HERE.parent, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"module": module, "index": index, "error": f"timeout after {timeout:.0f} s"}
    # the child has been reaped by communicate(); its rusage is in RUSAGE_CHILDREN only as a
    # running maximum, so the child reports its own peak below instead.
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"module": module, "index": index,
                "error": (err.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def markdown(rows: list[dict]) -> str:
    cols = ["suite", "case", "tool", "work", "time_s", "ratio_to_esim", "peak_rss_MiB"]
    extra = sorted({k for r in rows for k in r} - set(cols) - {"error", "skipped", "wall_s"})
    head = cols + extra + ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for k in head[:-1]:
            v = r.get(k, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        cells.append(r.get("error") or r.get("skipped") or "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def add_ratios(rows: list[dict]) -> None:
    """time ratio of each row to the esim row doing the same ``work``."""
    ref = {r["work"]: r["time_s"] for r in rows if r.get("tool") == "esim" and "work" in r
           and isinstance(r.get("time_s"), (int, float))}
    for r in rows:
        if r.get("work") in ref and isinstance(r.get("time_s"), (int, float)) and ref[r["work"]]:
            r["ratio_to_esim"] = r["time_s"] / ref[r["work"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="toy sizes (CI)")
    ap.add_argument("--suite", action="append", help="only these suites (repeatable)")
    ap.add_argument("--case", action="append",
                    help="only the case of this exact name (repeatable)")
    ap.add_argument("--tag", help="name of the output files (default: quick or full)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per case, s")
    ap.add_argument("--one", nargs=2, metavar=("MODULE", "INDEX"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        run_one(a.one[0], int(a.one[1]), a.quick)
        return 0
    rows = []
    for name in modules():
        mod = importlib.import_module(f"benchmarks.{name}")
        if a.suite and mod.SUITE not in a.suite:
            continue
        for i, case in enumerate(mod.cases(a.quick)):
            if a.case and case["name"] not in a.case:
                continue
            print(f"[{mod.SUITE}] {case['name']} ...", file=sys.stderr, flush=True)
            r = spawn(name, i, a.quick, a.timeout)
            print(f"    {json.dumps(r, default=float)}", file=sys.stderr, flush=True)
            rows.append(r)
    add_ratios(rows)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from esim import __version__
    from esim.io.atomic import atomic_write_text

    meta = {"esim_version": __version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "quick": a.quick,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tag = a.tag or ("quick" if a.quick else "full")
    atomic_write_text(out / f"{tag}.json", json.dumps({"meta": meta, "results": rows},
                                                      indent=1, default=float))
    atomic_write_text(out / f"{tag}.md", f"# esim benchmarks ({tag})\n\n{json.dumps(meta)}\n\n"
                      + markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
