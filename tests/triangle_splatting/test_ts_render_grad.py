"""torch.autograd.gradcheck (float64) of the plugin's `render` (world space, SH colour, TS+ meshes).

The rasterizer's own gradient tests live beside it in kernels/trisplat/test_trisplat_grad.py; these
check the plugin's camera transform and colour model on top of it.
"""

from __future__ import annotations

import torch

from facet3d.core.structures.cameras import Cameras, intrinsics_matrix
from facet3d.plugins.triangle_splatting.render import render
from facet3d.plugins.triangle_splatting.scene import TriangleScene

D = torch.float64


def _camera(size=16):
    K = intrinsics_matrix(14.0, 14.0, 7.3, 7.6)
    return Cameras(K, torch.eye(3, dtype=D), torch.tensor([0.03, -0.02, 3.0], dtype=D), (size, size))


def _tris():
    return torch.tensor([[[-0.45, -0.4, 0.1], [0.5, -0.35, -0.05], [0.02, 0.48, 0.0]],
                         [[-0.25, -0.55, 0.6], [0.6, 0.12, 0.75], [-0.33, 0.41, 0.5]],
                         [[-0.6, 0.1, -0.3], [0.1, -0.2, -0.25], [0.05, 0.5, -0.2]]], dtype=D)


def _weights(size, c):
    g = torch.Generator().manual_seed(1)
    return [torch.rand(size, size, k, generator=g, dtype=D) for k in (c, 1, 1, 3)]


def test_gradcheck_ts_world_vertices_colour_opacity_sigma():
    cams = _camera()
    rest = torch.randn(3, 3, 3, dtype=D, generator=torch.Generator().manual_seed(0)) * 0.1
    tri0 = _tris()
    wr, wa, wd, wn = _weights(16, 3)

    def f(tri, dc, rest_, op, sg):
        scene = TriangleScene("ts", dc, rest_, op, sg, triangles=tri)
        o = render(scene, cams, background=(0.2, 0.3, 0.4))
        return ((o["rgb"][0] * wr).sum() + (o["alpha"][0] * wa[..., 0]).sum()
                + (o["depth_acc"][0] * wd[..., 0]).sum() + (o["normal"][0] * wn).sum())

    args = (tri0.clone(), torch.tensor([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.2], [0.0, 0.6, -0.3]], dtype=D), rest,
            torch.tensor([0.8, 0.6, 0.7], dtype=D), torch.tensor([1.3, 0.7, 2.2], dtype=D))
    args = tuple(a.requires_grad_() for a in args)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5, rtol=1e-4)
    # every input really receives a gradient
    f(*args).backward()
    for a in args:
        assert a.grad is not None and float(a.grad.abs().sum()) > 0


def test_gradcheck_ts_plus_per_vertex_colour():
    cams = _camera()
    verts0 = torch.tensor([[-0.5, -0.45, 0.0], [0.55, -0.35, 0.1], [0.05, 0.5, -0.05], [0.6, 0.45, 0.3]], dtype=D)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    wr, wa, wd, _ = _weights(16, 3)

    def f(v, dc, op, sg):
        scene = TriangleScene("ts+", dc, torch.zeros(4, 0, 3, dtype=D), op, sg, vertices=v, faces=faces)
        o = render(scene, cams)
        return (o["rgb"][0] * wr).sum() + (o["alpha"][0] * wa[..., 0]).sum() + (o["depth"][0] * wd[..., 0]).sum()

    args = (verts0.clone(), torch.randn(4, 3, dtype=D, generator=torch.Generator().manual_seed(2)) * 0.3,
            torch.tensor([0.9, 0.7, 0.8, 0.6], dtype=D), torch.tensor(0.9, dtype=D))
    args = tuple(a.requires_grad_() for a in args)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5, rtol=1e-4)
