"""Score an exported mesh the way a game engine would show it: a classic ray caster (open3d's
`RaycastingScene`, independent of our rasterizer) with per-vertex colours interpolated by the
hit's barycentrics; PSNR / SSIM against the photos.  Used for TS+ runs (``metrics.json``:
``mesh_psnr`` beside the splat rendering's ``psnr``)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["raycast_colors", "mesh_metrics"]


def raycast_colors(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, cameras, background) -> torch.Tensor:
    """Render a vertex-coloured mesh with open3d ray casting, one ray per pixel centre.

    vertices [V, 3], faces [T, 3], colors [V, 3] in [0, 1]; cameras: B core `Cameras` (one image size)
    returns [B, H, W, 3] float32
    """
    import open3d as o3d

    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
                     o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)))
    H, W = (int(x) for x in cameras.image_size[0].tolist())
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    pix = torch.as_tensor(np.stack([jj.ravel(), ii.ravel()], -1))
    cams = cameras.to(dtype=torch.float64)
    bg = np.asarray(background, dtype=np.float32)
    out = []
    for b in range(len(cams)):
        o, d = cams[b].rays(pix)
        rays = np.concatenate([o[0].numpy(), d[0].numpy()], -1).astype(np.float32)
        hit = rc.cast_rays(o3d.core.Tensor(rays))
        t = hit["t_hit"].numpy()
        prim = hit["primitive_ids"].numpy().astype(np.int64)
        uv = hit["primitive_uvs"].numpy()
        ok = np.isfinite(t)
        img = np.broadcast_to(bg, (H * W, 3)).copy()
        f = faces[prim[ok]]
        u, v = uv[ok, 0:1], uv[ok, 1:2]
        img[ok] = (1 - u - v) * colors[f[:, 0]] + u * colors[f[:, 1]] + v * colors[f[:, 2]]
        out.append(torch.as_tensor(img.reshape(H, W, 3)))
    return torch.stack(out).float()


def mesh_metrics(geom, views, background) -> dict:
    """Mean PSNR / SSIM of ``geom`` (a mesh `Geometry` with vertex colours) over ``views``."""
    from facet3d.core.ops.image_metrics import psnr, ssim

    imgs = raycast_colors(np.asarray(geom.vertices), np.asarray(geom.faces), np.asarray(geom.colors)[:, :3],
                          views.cameras, background)
    ps = [float(psnr(imgs[i], views.images[i])) for i in range(len(imgs))]
    ss = [float(ssim(imgs[i], views.images[i])) for i in range(len(imgs))]
    return dict(mesh_psnr=sum(ps) / len(ps), mesh_ssim=sum(ss) / len(ss), images=imgs)
