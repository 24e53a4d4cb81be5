"""Render a `TriangleScene` through a batch of `Cameras`; orbit camera helper.

`render` transforms the scene's triangles into each camera's frame, evaluates the view-dependent
colours and calls `facet3d.kernels.trisplat.rasterize_triangles` (torch reference today; a
Triton backend later).  Everything is differentiable w.r.t. the scene's tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facet3d.core.errors import GeometryError
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R

__all__ = ["render", "orbit_cameras"]

_KEYS = ("rgb", "alpha", "depth", "depth_acc", "normal")


def render(scene, cameras: Cameras, image_size=None, background=(0.0, 0.0, 0.0), hard: bool = False,
           tile: int = 16, **raster_kwargs) -> dict[str, Tensor]:
    """Render every camera.

    scene: TriangleScene
    cameras: Cameras          # B cameras (OpenCV convention, pixel centres at integer coordinates)
    image_size: (H, W)        # default: the cameras' image_size (must be equal for all cameras)
    background: [3]           # colour behind the scene
    hard: bool                # z-buffer limit (alpha cap 1, per-pixel depth order; see kernels/trisplat)
    returns dict: rgb [B, H, W, 3], alpha [B, H, W], depth [B, H, W] (normalised expected z),
                  depth_acc [B, H, W], normal [B, H, W, 3] (camera frame), max_weight [B, N],
                  n_touched [B, N] (tiles each triangle's footprint touches; 0 = culled / off screen)
    """
    from facet3d.kernels.trisplat import rasterize_triangles

    if image_size is None:
        if cameras.image_size is None:
            raise GeometryError("render needs image_size (cameras have none)")
        sizes = {tuple(s) for s in cameras.image_size.tolist()}
        if len(sizes) != 1:
            raise GeometryError(f"cameras have different image sizes {sorted(sizes)}; render them separately")
        image_size = sizes.pop()
    dtype, dev = scene.dtype, scene.device
    cams = cameras.to(dev, dtype)
    tri = scene.triangle_vertices()
    opacity, sigma = scene.triangle_opacity(), scene.triangle_sigma()
    centers = cams.centers()
    outs: dict[str, list[Tensor]] = {k: [] for k in _KEYS + ("max_weight", "n_touched")}
    for b in range(len(cams)):
        vc = tri @ cams.R[b].T + cams.t[b]
        colors = scene.triangle_colors(centers[b])
        o = rasterize_triangles(vc, cams.K[b], colors, opacity, sigma, image_size, background, tile=tile,
                                hard=hard, **raster_kwargs)
        for k in outs:
            outs[k].append(o[k])
    return {k: torch.stack(v) for k, v in outs.items()}


def orbit_cameras(center, radius: float, n: int, image_size, fov: float = 50.0, elevation: float = 20.0,
                  up=(0.0, 0.0, 1.0), start_azimuth: float = 0.0, dtype=torch.float64) -> Cameras:
    """n cameras evenly spaced on a circle around ``center`` looking at it.

    image_size: (H, W) or one int; fov: horizontal field of view in degrees; elevation in degrees
    above the plane orthogonal to ``up``; principal point at the image centre ((W-1)/2, (H-1)/2 in
    the integer-pixel-centre convention).
    """
    H, W = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    c = torch.as_tensor(center, dtype=torch.float64).reshape(3)
    u = torch.as_tensor(up, dtype=torch.float64)
    u = u / u.norm()
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(a @ u)) > 0.9:
        a = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    e1 = a - (a @ u) * u
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(u, e1)
    el = math.radians(elevation)
    f = 0.5 * W / math.tan(0.5 * math.radians(fov))
    K = intrinsics_matrix(f, f, (W - 1) / 2.0, (H - 1) / 2.0)
    Rs, ts = [], []
    for i in range(n):
        az = math.radians(start_azimuth) + 2 * math.pi * i / n
        eye = c + radius * (math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * u)
        R = look_at_R(eye, c, u)
        Rs.append(R)
        ts.append(-(R @ eye))
    return Cameras(K.expand(n, 3, 3), torch.stack(Rs), torch.stack(ts), (H, W), dtype=dtype)
