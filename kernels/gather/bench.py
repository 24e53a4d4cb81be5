"""`facet3d bench gather`: every gather backend that accepts the inputs vs the torch reference.

The shape is RISurConv's grouping step: features of M centres' K neighbours out of N points.
On CPU only the reference runs (Triton needs CUDA); on CUDA the Triton kernel vs the reference.
"""

from __future__ import annotations

import torch

from facet3d.core.bench import BenchResult
from facet3d.kernels._benchutil import bench_backends


def run(repeats: int = 5, device: str = "cpu", B: int | None = None, N: int | None = None,
        M: int | None = None, K: int = 32, C: int = 64, seed: int = 0) -> BenchResult:
    """Gather features [B, N, C] at random indices [B, M, K].

    Defaults: B=16, N=4096, M=1024 on CUDA; B=4, N=4096, M=512 on CPU.
    """
    gpu = device.startswith("cuda")
    B = B or (16 if gpu else 4)
    N = N or 4096
    M = M or (1024 if gpu else 512)
    g = torch.Generator().manual_seed(seed)
    features = torch.rand(B, N, C, generator=g).to(device)
    idx = torch.randint(0, N, (B, M, K), generator=g).to(device)
    same = lambda out, ref: bool(torch.equal(out, ref))  # noqa: E731 - a copy: bit-identical
    return bench_backends("gather", (features, idx), repeats, device, {"B": B, "N": N, "M": M, "K": K, "C": C}, same)
