"""Run the esim benchmark suite beside its peers; write JSON and a Markdown table.

Usage::

    python -m benchmarks.run               # full suite (minutes; the sizes of the issues)
    python -m benchmarks.run --quick       # toy sizes, seconds (what CI runs)
    python -m benchmarks.run --suite packing --out benchmarks/results

Each ``benchmarks/bench_*.py`` module defines ``SUITE``, ``cases(quick) -> list[dict]`` and
``run(case) -> dict``, and optionally ``AGREE`` (result key -> relative tolerance).  Every case
runs in its own subprocess, so its peak resident memory is its own: ``peak_rss_MiB`` is that
process's ``ru_maxrss``, ``peak_rss_children_MiB`` the largest of the processes it started and
waited for (a command run in a subprocess, sweep workers; a total over parallel workers is at
most their number times it).  ``run`` does its set-up (JIT warm-up of the paths it times, input
generation) outside the timed body and reports the median of its repeats as ``time_s``.

``ratio_to_esim`` is a row's time over the time of the esim row of the same ``work`` key:
above 1, that row is slower than esim.  Where the suite names result keys in ``AGREE``, the
row's ``rel_diff_to_esim`` is its largest relative difference from the esim row's results, and
a row outside a tolerance gets no ratio (it did not do the same work), only a note.  A case that
fails or times out keeps its name, tool and work, with the error and the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
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
    from benchmarks._util import peak_rss_children_mib, peak_rss_mib

    res["peak_rss_MiB"] = peak_rss_mib()
    if peak_rss_children_mib() > 0:
        res["peak_rss_children_MiB"] = peak_rss_children_mib()
    out = {"suite": mod.SUITE, "case": case["name"], **{k: v for k, v in case.items()
                                                         if k != "name"}, **res}
    print(json.dumps(out, default=float))


def spawn(module: str, index: int, quick: bool, timeout: float) -> dict:
    mod = importlib.import_module(f"benchmarks.{module}")
    case = mod.cases(quick)[index]
    failed = {"suite": mod.SUITE, "case": case["name"],
              **{k: case[k] for k in ("tool", "work") if k in case}}
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
        return {**failed, "error": f"timeout after {timeout:.0f} s"}
    # the child has been reaped by communicate(); its rusage is in RUSAGE_CHILDREN only as a
    # running maximum, so the child reports its own peak below instead.
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = "killed by signal %d" % -proc.returncode if proc.returncode < 0 else \
            "exit status %d" % proc.returncode
        return {**failed, "returncode": proc.returncode,
                "error": f"{why}: " + (err.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def markdown(rows: list[dict]) -> str:
    cols = ["suite", "case", "tool", "work", "time_s", "ratio_to_esim", "peak_rss_MiB"]
    extra = sorted({k for r in rows for k in r} - set(cols) - {"error", "skipped", "wall_s",
                                                                "agreement"})
    head = cols + extra + ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for k in head[:-1]:
            v = r.get(k, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        cells.append(r.get("error") or r.get("skipped") or r.get("agreement") or "")
        lines.append("| " + " | ".join(cells) + " |")
    return LEGEND + "\n".join(lines) + "\n"


LEGEND = ("`ratio_to_esim`: the row's time over the esim row's of the same `work` (above 1: "
          "slower than esim); withheld where the row's results differ from esim's by more than "
          "the suite's tolerance (`rel_diff_to_esim`, note).  `time_s`: median of the repeats "
          "(`times_s`), compilation and set-up outside.  `peak_rss_MiB`: the case's process; "
          "`peak_rss_children_MiB`: the largest process it started.\n\n")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def add_ratios(rows: list[dict], agree: dict[str, dict[str, float]] | None = None) -> None:
    """Time ratio of each row to the esim row doing the same ``work``; with ``agree`` (suite ->
    result key -> relative tolerance) the results are compared first, and a row that differs
    by more than a tolerance gets ``rel_diff_to_esim`` and a note, not a ratio."""
    agree = agree or {}
    ref = {r["work"]: r for r in rows if r.get("tool") == "esim" and "work" in r
           and _number(r.get("time_s"))}
    for r in rows:
        e = ref.get(r.get("work"))
        if e is None or not _number(r.get("time_s")) or not e["time_s"]:
            continue
        if r is not e:
            tol = {k: t for k, t in agree.get(r.get("suite"), {}).items()
                   if _number(e.get(k)) and math.isfinite(e[k]) and e[k] != 0}
            diffs = {k: abs(r[k] - e[k]) / abs(e[k]) if _number(r.get(k)) else math.nan
                     for k in tol}
            if diffs:
                r["rel_diff_to_esim"] = max(diffs.values())  # NaN if a result is missing
                off = [k for k, d in diffs.items() if not d <= tol[k]]  # NaN is off too
                if off:
                    r["agreement"] = "no ratio: " + ", ".join(
                        f"{k} {r.get(k, 'not reported')} vs esim {e[k]:.4g} (tolerance "
                        f"{tol[k]:g})" if not _number(r.get(k)) else
                        f"{k} {r[k]:.4g} vs esim {e[k]:.4g} (tolerance {tol[k]:g})"
                        for k in off)
                    continue
        r["ratio_to_esim"] = r["time_s"] / e["time_s"]


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
    rows, agree = [], {}
    for name in modules():
        mod = importlib.import_module(f"benchmarks.{name}")
        if a.suite and mod.SUITE not in a.suite:
            continue
        agree[mod.SUITE] = dict(getattr(mod, "AGREE", {}))
        for i, case in enumerate(mod.cases(a.quick)):
            if a.case and case["name"] not in a.case:
                continue
            print(f"[{mod.SUITE}] {case['name']} ...", file=sys.stderr, flush=True)
            r = spawn(name, i, a.quick, a.timeout)
            print(f"    {json.dumps(r, default=float)}", file=sys.stderr, flush=True)
            rows.append(r)
    add_ratios(rows, agree)
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
