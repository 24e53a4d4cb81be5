"""Shared scenes and comparisons for the rasterizer backends' tests (Triton and numba vs the reference).

24 x 40 images (two tile rows, three tile columns, both borders partial) and a few dozen random
camera-space triangles; `run` returns the outputs and the gradients of a random linear loss of every
output; `assert_match` compares two such results (outputs to float32 rounding, gradients relative
to the largest reference gradient).
"""

from __future__ import annotations

import torch

H, W = 24, 40
OUT_KEYS = ("rgb", "alpha", "depth", "depth_acc", "normal")


def intrinsics(H=H, W=W, f=40.0, device="cpu"):
    return torch.tensor([[f, 0.3, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]], device=device)


def scene(n=30, seed=0, per_vertex=False, size=0.3, C=3, device="cpu", spread=(0.8, 0.5, 0.3), depth=3.0):
    """Random triangles in front of the camera: verts_cam [n, 3, 3], colors, opacity [n], sigma [n]."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, 3, generator=g) * torch.tensor(spread) + torch.tensor([0.0, 0.0, depth])
    v = c[:, None] + size * torch.randn(n, 3, 3, generator=g)
    col = torch.rand(n, 3, C, generator=g) if per_vertex else torch.rand(n, C, generator=g)
    op = 0.3 + 0.7 * torch.rand(n, generator=g)
    sg = 0.5 + 1.5 * torch.rand(n, generator=g)
    return [x.to(device) for x in (v, col, op, sg)]


def run(fn, v, col, op, sg, bg=None, seed=1, **kw):
    """Outputs and gradients (verts_cam, colors, opacity, sigma[, background]) of a random linear loss."""
    leaves = [x.detach().clone().requires_grad_() for x in (v, col, op, sg)]
    bgl = None if bg is None else bg.detach().clone().requires_grad_()
    o = fn(*leaves[:1], intrinsics(device=v.device, **kw.pop("k", {})), leaves[1], leaves[2], leaves[3],
           kw.pop("size", (H, W)), bgl, **kw)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o[k] * torch.randn(o[k].shape, generator=g).to(o[k].device)).sum() for k in OUT_KEYS)
    grads = torch.autograd.grad(loss, leaves + ([bgl] if bgl is not None else []), allow_unused=True)
    return o, grads


def assert_match(a, b, rtol=2e-4, atol=2e-5):
    (o0, g0), (o1, g1) = a, b
    for k in OUT_KEYS:
        torch.testing.assert_close(o1[k], o0[k], atol=atol, rtol=1e-4, msg=k)
    torch.testing.assert_close(o1["max_weight"], o0["max_weight"], atol=2e-6, rtol=1e-5)
    assert torch.equal(o1["n_touched"], o0["n_touched"])
    for name, x, y in zip(("verts_cam", "colors", "opacity", "sigma", "background"), g0, g1):
        x = torch.zeros(1) if x is None else x
        y = torch.zeros(1) if y is None else y
        assert torch.isfinite(y).all(), name
        scale = x.abs().max().clamp_min(1.0)
        err = (x - y).abs().max() / scale
        assert err < rtol, f"{name}: max err {err:.2e} relative to {scale:.2e}"


def crowded_scene():
    """16 large, nearly opaque triangles stacked over the image (pixels saturate after a few layers:
    the early stop): verts_cam, colors, opacity, sigma (0.2: a flat window, alpha close to the
    opacity over most of each triangle), background."""
    N, g = 16, torch.Generator().manual_seed(7)
    base = torch.tensor([[-2.5, -2.0, 0.0], [2.5, -1.5, 0.0], [0.2, 2.5, 0.0]])
    v = base + 0.1 * torch.randn(N, 3, 3, generator=g)
    v[..., 2] = 3.0 + 0.05 * torch.arange(float(N))[:, None] + 0.05 * torch.randn(N, 3, generator=g)
    col = torch.rand(N, 3, generator=g)
    op = 0.9 + 0.09 * torch.rand(N, generator=g)
    return v, col, op, torch.full((N,), 0.2), torch.tensor([1.0, 0.0, 0.0])


def culled_scene(not_finite: bool = False):
    """`scene(24, seed=5)` whose first 6 triangles (7 with `not_finite`) must be culled: behind the
    camera, a vertex on the camera plane, nearer than `near`, degenerate, opacity below
    MIN_OPACITY, off screen (and a NaN vertex). returns verts_cam, colors, opacity, sigma."""
    v, col, op, sg = scene(24, seed=5)
    v[0, :, 2] = -2.0
    v[1, 0, 2] = 0.0
    v[2, :, 2] = 0.1
    v[3] = v[3, :1].expand(3, 3)
    op[4] = 0.005
    v[5] += torch.tensor([50.0, 0.0, 0.0])
    if not_finite:
        v[6, :, 0] = float("nan")
    return v, col, op, sg
