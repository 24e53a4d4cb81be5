"""Timing helpers for `facet3d bench`: medians of repeated runs, ratios against a named baseline.

A benchmark's ``run`` returns a `BenchResult`: several `Timing` rows measured in the same process,
one of them named as the baseline; the CLI prints each row's median and its ratio to the baseline.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Timing:
    name: str  # e.g. "triton", "torch-reference", "open3d"
    seconds: list[float]  # one entry per repeat

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class BenchResult:
    benchmark: str
    baseline: str  # name of the Timing every ratio is taken against
    timings: list[Timing]
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ratio(self, name: str) -> float:
        """baseline median / this median: > 1 means faster than the baseline."""
        base = next(t for t in self.timings if t.name == self.baseline).median
        mine = next(t for t in self.timings if t.name == name).median
        return base / mine if mine > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "baseline": self.baseline,
            "params": self.params,
            "notes": self.notes,
            "timings": [
                {"name": t.name, "median_s": t.median, "repeats": len(t.seconds), "speedup_vs_baseline": self.ratio(t.name)}
                for t in self.timings
            ],
        }


def time_repeats(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, sync: Callable[[], None] | None = None) -> list[float]:
    """Wall-clock seconds of `fn()` over `repeats` runs after `warmup` runs.

    `sync` (e.g. ``torch.cuda.synchronize``) is called before each clock read so GPU work counts.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - t0)
    return out
