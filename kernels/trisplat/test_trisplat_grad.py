"""torch.autograd.gradcheck (float64) of the reference rasterizer on tiny camera-space scenes."""

from __future__ import annotations

import torch

from facet3d.kernels.trisplat.reference import rasterize_triangles

D = torch.float64
K16 = torch.tensor([[14.0, 0.0, 7.3], [0.0, 14.0, 7.6], [0.0, 0.0, 1.0]], dtype=D)


def _tris():
    return torch.tensor([[[-0.45, -0.4, 0.1], [0.5, -0.35, -0.05], [0.02, 0.48, 0.0]],
                         [[-0.25, -0.55, 0.6], [0.6, 0.12, 0.75], [-0.33, 0.41, 0.5]],
                         [[-0.6, 0.1, -0.3], [0.1, -0.2, -0.25], [0.05, 0.5, -0.2]]], dtype=D)


def _weights(size, c):
    g = torch.Generator().manual_seed(1)
    return [torch.rand(size, size, k, generator=g, dtype=D) for k in (c, 1, 1, 3)]


def test_gradcheck_soft_every_input():
    """Soft mode: verts_cam, per-triangle colours, opacity, sigma and background, through every output."""
    vc0 = _tris() + torch.tensor([0.03, -0.02, 3.0], dtype=D)
    wr, wa, wd, wn = _weights(16, 3)

    def f(vc, col, op, sg, bg):
        o = rasterize_triangles(vc, K16, col, op, sg, (16, 16), bg)
        return ((o["rgb"] * wr).sum() + (o["alpha"] * wa[..., 0]).sum()
                + (o["depth_acc"] * wd[..., 0]).sum() + (o["normal"] * wn).sum())

    args = (vc0.clone(), torch.tensor([[0.3, 0.2, 0.5], [0.4, 0.1, 0.2], [0.0, 0.6, 0.3]], dtype=D),
            torch.tensor([0.8, 0.6, 0.7], dtype=D), torch.tensor([1.3, 0.7, 2.2], dtype=D),
            torch.tensor([0.2, 0.3, 0.4], dtype=D))
    args = tuple(a.requires_grad_() for a in args)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5, rtol=1e-4)
    f(*args).backward()
    for a in args:  # every input really receives a gradient
        assert a.grad is not None and float(a.grad.abs().sum()) > 0


def test_gradcheck_soft_per_vertex_colour():
    vc0 = _tris()[:2] + torch.tensor([0.03, -0.02, 3.0], dtype=D)
    wr, wa, wd, _ = _weights(16, 3)

    def f(vc, col):
        o = rasterize_triangles(vc, K16, col, torch.tensor([0.9, 0.7], dtype=D), 0.9, (16, 16))
        return (o["rgb"] * wr).sum() + (o["alpha"] * wa[..., 0]).sum() + (o["depth"] * wd[..., 0]).sum()

    col = torch.rand(2, 3, 3, dtype=D, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(f, (vc0.clone().requires_grad_(), col.requires_grad_()), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_hard_depth_wrt_vertices():
    """Hard mode: coverage is piecewise constant; depth and per-vertex colour are differentiable."""
    K = K16
    vc0 = _tris()[:2] + torch.tensor([0.03, -0.02, 3.0], dtype=D)
    cols = torch.rand(2, 3, 3, dtype=D, generator=torch.Generator().manual_seed(3))

    def f(vc, c):
        o = rasterize_triangles(vc, K, c, torch.ones(2, dtype=D), 1.0, (16, 16), hard=True)
        return o["depth"].sum() + o["rgb"].sum()

    assert torch.autograd.gradcheck(f, (vc0.clone().requires_grad_(), cols.requires_grad_()), eps=1e-6, atol=1e-5)


def test_culled_and_degenerate_triangles_get_finite_zero_gradients():
    K = torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]], dtype=D)
    v = torch.tensor([[[-0.5, -0.5, 3], [0.5, -0.4, 3], [0, 0.5, 3]],  # visible
                      [[-0.5, -0.5, -1], [0.5, -0.4, -1], [0, 0.5, -1]],  # behind the camera
                      [[-0.5, -0.5, 0], [0.5, -0.4, 1], [0, 0.5, 1]],  # a vertex at z = 0
                      [[0.1, 0.1, 2], [0.1, 0.1, 2], [0.1, 0.1, 2]],  # a point
                      [[0.1, 0.1, 2], [0.2, 0.2, 2], [0.3, 0.3, 2]]], dtype=D, requires_grad=True)  # collinear
    c = torch.rand(5, 3, dtype=D, requires_grad=True)
    o = torch.full((5,), 0.8, dtype=D, requires_grad=True)
    s = torch.full((5,), 1.0, dtype=D, requires_grad=True)
    for hard in (False, True):
        out = rasterize_triangles(v, K, c, o, s, (16, 16), hard=hard)
        assert float(out["alpha"].detach().max()) > 0.5
        (out["rgb"].sum() + out["depth"].sum() + out["normal"].sum() + out["alpha"].sum()).backward()
        for t in (v, c, o, s):
            if t.grad is not None:
                assert bool(torch.isfinite(t.grad).all())
                assert float(t.grad[1:].abs().max()) == 0  # culled: exactly zero
                t.grad = None
