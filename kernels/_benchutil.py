"""Shared benchmark loop: time every backend that accepts the inputs, against the torch reference."""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from facet3d.core.bench import BenchResult, Timing, time_repeats

BASELINE = "torch-reference"


def bench_backends(op: str, args: tuple, repeats: int, device: str, params: dict[str, Any],
                   same: Callable[[Any, Any], bool], kwargs: dict[str, Any] | None = None) -> BenchResult:
    """Time `op` on each backend that can take the inputs; `same(out, ref_out)` records agreement."""
    from facet3d.kernels.dispatch import explain, pick

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    notes, timings = [], []
    ref_out = None
    kwargs = kwargs or {}
    # by_name: time every backend that *can* run these inputs, even where automatic dispatch would
    # pass it over for speed (that is what the benchmark is there to show).
    for name, reasons in sorted(explain(op, *args, by_name=True, **kwargs), key=lambda nr: nr[0] != "torch"):
        if name == "triton" and device == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
            reasons = reasons or ["Triton interpreter timings are meaningless"]
        if reasons:
            notes.append(f"{name}: skipped ({'; '.join(reasons)})")
            continue
        _, fn = pick(op, *args, backend=name, **kwargs)
        try:
            out = fn(*args, **kwargs)
            secs = time_repeats(lambda: fn(*args, **kwargs), repeats=repeats, warmup=1, sync=sync)
        except Exception as exc:  # noqa: BLE001 - one failing backend must not hide the others
            notes.append(f"{name}: failed ({type(exc).__name__}: {exc})")
            continue
        if name == "torch":
            ref_out = out
        elif ref_out is not None:
            notes.append(f"{name}: output equals the reference: {same(out, ref_out)}")
        timings.append(Timing(BASELINE if name == "torch" else name, secs))
    params = dict(params, device=device)
    if device.startswith("cuda"):
        params["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return BenchResult(benchmark=op, baseline=BASELINE, timings=timings, params=params, notes=notes)
