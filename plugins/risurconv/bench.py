"""Benchmarks: ``facet3d bench risurconv-infer`` and ``facet3d bench risurconv-train``.

Both time the same model twice in one process: with the default kernel dispatch (the best knn /
fps / gather backend for the device: scipy kNN on CPU, Triton on CUDA) and with every kernel
forced to its plain-PyTorch reference (`layers.plain_torch`), which is the baseline.
Reference point (see the project notes): the official code with a pure-torch FPS takes ~1.3 s per
1024-point cloud at batch 1 on a 2-core CPU.
"""

from __future__ import annotations

import contextlib
from typing import Any

from facet3d.core.bench import BenchResult, Timing, time_repeats


def _inputs(batch: int, num_points: int, device: str, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(batch, num_points, 3, generator=g)
    xyz = xyz / xyz.norm(dim=-1).amax(-1)[:, None, None]
    nrm = torch.nn.functional.normalize(torch.randn(batch, num_points, 3, generator=g), dim=-1)
    return xyz.to(device), nrm.to(device)


def _modes():
    from facet3d.plugins.risurconv.layers import plain_torch

    return {"kernels": contextlib.nullcontext, "plain-pytorch": plain_torch}


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else None


def infer(repeats: int = 5, device: str = "cpu", config: str = "modelnet40", num_points: int = 1024,
          batch: int = 16, batch_repeats: int = 2) -> BenchResult:
    """Latency at batch 1 and per-cloud time at batch ``batch`` (``batch_repeats`` runs: they are slow on a CPU)."""
    import torch

    from facet3d.plugins.risurconv.models import build_model

    model = build_model(config).eval().to(device)
    x1, n1 = _inputs(1, num_points, device)
    xb, nb = _inputs(batch, num_points, device, seed=1)
    timings, notes = [], []
    with torch.no_grad():
        for name, ctx in _modes().items():
            with ctx():
                timings.append(Timing(name, time_repeats(lambda: model(x1, n1), repeats, warmup=1, sync=_sync(device))))
        for name, ctx in _modes().items():
            with ctx():
                secs = time_repeats(lambda: model(xb, nb), max(1, batch_repeats), warmup=0, sync=_sync(device))
            t = Timing(f"{name} (batch {batch}, per cloud)", [s / batch for s in secs])
            timings.append(t)
            notes.append(f"{name}: batch {batch} throughput {1 / t.median:.2f} clouds/s")
    params = {"config": config, "num_points": num_points, "batch": batch, "device": device,
              "parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads()}
    notes.append("rows 1-2: batch-1 latency; rows 3-4: batch time / batch size; official code ~1.3 s per cloud on 2 CPU cores")
    return BenchResult("risurconv-infer", "plain-pytorch", timings, params, notes)


def train(repeats: int = 3, device: str = "cpu", config: str = "small", num_points: int = 1024, batch: int = 16,
          num_classes: int = 40) -> BenchResult:
    """Seconds per training step (forward + backward + Adam) at ``batch``; notes give samples/s."""
    import torch
    import torch.nn.functional as F

    from facet3d.plugins.risurconv.train import build_for

    model, _ = build_for(config, "classification", num_classes)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    xyz, nrm = _inputs(batch, num_points, device)
    label = torch.arange(batch, device=device) % num_classes

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.nll_loss(model(xyz, nrm), label).backward()
        opt.step()

    timings, notes = [], []
    for name, ctx in _modes().items():
        with ctx():
            t = Timing(name, time_repeats(step, repeats, warmup=1, sync=_sync(device)))
        timings.append(t)
        notes.append(f"{name}: {batch / t.median:.2f} training samples/s")
    params: dict[str, Any] = {"config": config, "num_points": num_points, "batch": batch, "device": device,
                              "parameters": sum(p.numel() for p in model.parameters())}
    return BenchResult("risurconv-train", "plain-pytorch", timings, params, notes)
