"""`facet3d bench trisplat`: every rasterizer backend that accepts the inputs vs the torch reference.

Soft triangle splatting of random camera-space triangles in front of the camera (one view). On CPU
the numba kernels vs the reference (Triton needs CUDA); on CUDA the Triton kernels vs the reference. The
plugin's `ts-render` benchmark times whole scenes against open3d instead.
"""

from __future__ import annotations

import torch

from facet3d.core.bench import BenchResult
from facet3d.kernels._benchutil import BASELINE, bench_backends


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
        seed: int = 0, grad: int = 0) -> BenchResult:
    """Render n triangles on a size x size image: the forward pass, or with ``grad=1`` forward and
    backward (gradients of a random linear loss of rgb, alpha and depth w.r.t. vertices, colours,
    opacity and sigma).

    Defaults: n=20000, size=512 on CUDA; n=2000, size=128 on CPU.
    """
    gpu = device.startswith("cuda")
    n = n or (20000 if gpu else 2000)
    size = size or (512 if gpu else 128)
    args = scene(n, size, seed, device)
    params = {"n": n, "size": size, "grad": int(bool(grad))}
    if grad:
        return _forward_backward(args, repeats, device, params)
    return bench_backends("trisplat", args, repeats, device, params, _same)


def _forward_backward(args: tuple, repeats: int, device: str, params: dict) -> BenchResult:
    """Forward + backward on every backend that accepts the inputs, against the reference."""
    from facet3d.core.bench import Timing, time_repeats
    from facet3d.kernels.dispatch import explain
    from facet3d.kernels.trisplat import rasterize_triangles

    verts, K, colors, opacity, sigma, size = args
    g = torch.Generator().manual_seed(1)
    H, W = size
    weights = {k: torch.randn(shape, generator=g).to(device) for k, shape in
               (("rgb", (H, W, colors.shape[-1])), ("alpha", (H, W)), ("depth", (H, W)))}
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    timings, notes, ref = [], [], None
    for name, reasons in sorted(explain("trisplat", *args), key=lambda nr: nr[0] != "torch"):
        if reasons:
            notes.append(f"{name}: skipped ({'; '.join(reasons)})")
            continue
        leaves = [x.detach().clone().requires_grad_() for x in (verts, colors, opacity, sigma)]

        def step():
            for x in leaves:
                x.grad = None
            o = rasterize_triangles(leaves[0], K, leaves[1], leaves[2], leaves[3], size, backend=name)
            sum((o[k] * w).sum() for k, w in weights.items()).backward()

        secs = time_repeats(step, repeats=repeats, warmup=1, sync=sync)
        grads = [x.grad.clone() for x in leaves]
        if name == "torch":
            ref = grads
        elif ref is not None:
            err = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(grads, ref))
            notes.append(f"{name}: largest gradient difference from the reference, relative: {err:.1e}")
        timings.append(Timing(BASELINE if name == "torch" else name, secs))
    params = dict(params, device=device)
    return BenchResult(benchmark="trisplat", baseline=BASELINE, timings=timings, params=params, notes=notes)
