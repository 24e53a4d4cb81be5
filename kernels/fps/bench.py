"""`facet3d bench fps`: every fps backend that accepts the inputs vs the torch reference.

Run with ``ordered=False`` (the set is what is compared), so open3d's C++ loop takes part on CPU;
on CUDA the Triton kernel vs the reference.
"""

from __future__ import annotations

import torch

from facet3d.core.bench import BenchResult
from facet3d.kernels._benchutil import bench_backends


def run(repeats: int = 5, device: str = "cpu", B: int | None = None, N: int | None = None,
        n: int | None = None, seed: int = 0) -> BenchResult:
    """Sample n of N random points per batch element, starting at index 0.

    Defaults: B=8, N=16384, n=1024 on CUDA; B=2, N=8192, n=256 on CPU.
    """
    gpu = device.startswith("cuda")
    B = B or (8 if gpu else 2)
    N = N or (16384 if gpu else 8192)
    n = n or (1024 if gpu else 256)
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(B, N, 3, generator=g).to(device)
    lengths = torch.full((B,), N, dtype=torch.int64, device=device)
    start = torch.zeros(B, dtype=torch.int64, device=device)
    same_set = lambda out, ref: bool(torch.equal(out.sort(dim=1).values, ref.sort(dim=1).values))  # noqa: E731
    return bench_backends("fps", (points, n, lengths, start), repeats, device, {"B": B, "N": N, "n": n},
                          same_set, kwargs={"ordered": False})
