"""Score an exported mesh the way a game engine would show it: a classic ray caster (core's
`facet3d.core.ops.raycast` on open3d's `RaycastingScene`, independent of our rasterizer) with per-vertex colours interpolated by the
hit's barycentrics; PSNR / SSIM against the photos.  Used for TS+ runs (``metrics.json``:
``mesh_psnr`` beside the splat rendering's ``psnr``)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["raycast_colors", "mesh_metrics"]


def raycast_colors(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, cameras, background) -> torch.Tensor:
    """Render a vertex-coloured mesh by ray casting (`facet3d.core.ops.raycast`), one ray per pixel centre.

    vertices [V, 3], faces [T, 3], colors [V, 3] in [0, 1]; cameras: B core `Cameras` (one image size)
    returns [B, H, W, 3] float32 (CPU)
    """
    from facet3d.core.ops.raycast import raycast_mesh

    hit = raycast_mesh(vertices, faces, cameras)
    col = torch.as_tensor(np.asarray(colors, dtype=np.float64))
    tri = torch.as_tensor(np.asarray(faces, dtype=np.int64))[hit["triangle"].clamp_min(0)]  # [B, H, W, 3]
    img = (hit["barycentric"][..., None] * col[tri]).sum(-2)
    bg = torch.as_tensor(background, dtype=torch.float64)
    return torch.where(hit["hit"][..., None], img, bg).float()


def mesh_metrics(geom, views, background) -> dict:
    """Mean PSNR / SSIM of ``geom`` (a mesh `Geometry` with vertex colours) over ``views``."""
    from facet3d.core.ops.image_metrics import psnr, ssim

    imgs = raycast_colors(np.asarray(geom.vertices), np.asarray(geom.faces), np.asarray(geom.colors)[:, :3],
                          views.cameras, background).to(views.images.device)
    ps = [float(psnr(imgs[i], views.images[i])) for i in range(len(imgs))]
    ss = [float(ssim(imgs[i], views.images[i])) for i in range(len(imgs))]
    return dict(mesh_psnr=sum(ps) / len(ps), mesh_ssim=sum(ss) / len(ss), images=imgs)
