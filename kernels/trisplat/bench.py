"""`facet3d bench trisplat`: every rasterizer backend that accepts the inputs vs the torch reference.

Soft triangle splatting of random camera-space triangles in front of the camera (one view). On CPU
the numba kernels vs the reference (Triton needs CUDA); on CUDA the Triton kernels vs the reference. The
plugin's `ts-render` benchmark times whole scenes against open3d instead.
"""

from __future__ import annotations

import torch

from facet3d.core.bench import BenchResult
from facet3d.kernels._benchutil import bench_backends


def scene(n: int, size: int, seed: int = 0, device: str = "cpu") -> tuple:
    """The rasterizer's positional arguments for `n` random triangles on a size x size image."""
    g = torch.Generator().manual_seed(seed)
    f = 1.2 * size
    centres = torch.randn(n, 3, generator=g) * torch.tensor([0.8, 0.8, 0.3]) + torch.tensor([0.0, 0.0, 3.0])
    extent = max(0.15, 18.0 / f)  # at least ~6 pixels across, so tiny images are not all culled
    verts = centres[:, None] + extent * torch.randn(n, 3, 3, generator=g)
    K = torch.tensor([[f, 0.0, (size - 1) / 2], [0.0, f, (size - 1) / 2], [0.0, 0.0, 1.0]])
    colors = torch.rand(n, 3, generator=g)
    opacity = 0.3 + 0.7 * torch.rand(n, generator=g)
    sigma = 0.5 + 1.5 * torch.rand(n, generator=g)
    tensors = [t.to(device) for t in (verts, K, colors, opacity, sigma)]
    return (*tensors, (size, size))


def _same(out: dict, ref: dict) -> bool:
    return all(torch.allclose(out[k], ref[k], rtol=1e-4, atol=1e-4) for k in ("rgb", "alpha", "depth"))


def run(repeats: int = 5, device: str = "cpu", n: int | None = None, size: int | None = None,
        seed: int = 0) -> BenchResult:
    """Render n triangles on a size x size image (forward pass).

    Defaults: n=20000, size=512 on CUDA; n=2000, size=128 on CPU.
    """
    gpu = device.startswith("cuda")
    n = n or (20000 if gpu else 2000)
    size = size or (512 if gpu else 128)
    return bench_backends("trisplat", scene(n, size, seed, device), repeats, device, {"n": n, "size": size}, _same)
