"""`facet3d bench knn`: every knn backend that accepts the inputs vs the torch reference.

On CPU that is scipy's KD-tree vs the reference; on CUDA the Triton kernel vs the reference.
"""

from __future__ import annotations

import torch

from facet3d.core.bench import BenchResult
from facet3d.kernels._benchutil import bench_backends


def run(repeats: int = 5, device: str = "cpu", B: int | None = None, N: int | None = None,
        M: int | None = None, k: int = 16, seed: int = 0) -> BenchResult:
    """Random clouds in the unit cube: query [B, M, 3] against points [B, N, 3], k neighbours.

    Defaults: B=8, N=16384, M=4096 on CUDA; B=2, N=16384, M=2048 on CPU (reference is O(M*N)).
    """
    gpu = device.startswith("cuda")
    B = B or (8 if gpu else 2)
    N = N or 16384
    M = M or (4096 if gpu else 2048)
    g = torch.Generator().manual_seed(seed)
    query = torch.rand(B, M, 3, generator=g).to(device)
    points = torch.rand(B, N, 3, generator=g).to(device)
    args = (query, points, k, None, None)

    def same(out, ref):
        return bool(torch.equal(out[1], ref[1]))

    return bench_backends("knn", args, repeats, device, {"B": B, "N": N, "M": M, "k": k}, same)
