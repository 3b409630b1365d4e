"""Timing and memory helpers for benchmark modules."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any, Callable


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def peak_rss_children_mib() -> float:
    """Peak resident memory of the largest process this one started and waited for, MiB (0
    when none)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median wall time of ``repeats`` calls, all times, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out
