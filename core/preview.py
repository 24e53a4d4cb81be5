"""Preview pictures of meshes and point clouds (reports, the demo): a few shaded views side by side.

Meshes are drawn by the project's rasterizer (`facet3d.kernels.trisplat`, hard z-buffer) with a head
light: ambient plus the |cosine| between the face normal and the line of sight, times the vertex colours
(or a light grey), so shape reads even on uncoloured meshes. Point clouds are drawn as small z-buffered
squares in their colours, slightly darkened with depth. Views orbit the object's centre around ``up``
at 30 degrees elevation (`core.structures.cameras.orbit_cameras`), framed to its bounding sphere.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["head_light", "preview_views", "save_preview"]

GREY = (0.78, 0.8, 0.84)


def head_light(tri, ambient: float = 0.25):
    """Brightness [F] of camera-frame triangles [F, 3, 3] lit from the eye: ambient + the rest by the
    |cosine| between each face's normal and its line of sight (both windings lit alike)."""
    import torch

    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    view = tri.mean(1) / tri.mean(1).norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return ambient + (1 - ambient) * (n * view).sum(-1).abs()


def _mesh_view(v, faces, colors, cam, size, background):
    import torch

    from facet3d.kernels.trisplat import rasterize_triangles

    R, t, K = (x[0].float() for x in (cam.R, cam.t, cam.K))
    vc = torch.as_tensor(v, dtype=torch.float32) @ R.T + t
    tri = vc[torch.as_tensor(faces, dtype=torch.long)]  # [F, 3, 3]
    light = head_light(tri)
    if colors is None:
        albedo = torch.tensor(GREY).expand(len(tri), 3, 3)
    else:
        albedo = torch.as_tensor(colors, dtype=torch.float32)[torch.as_tensor(faces, dtype=torch.long)]  # [F, 3, 3]
    near = max(float(vc[:, 2].min()) * 0.5, 1e-4)
    out = rasterize_triangles(tri, K, albedo * light[:, None, None], torch.ones(len(tri)), 1e-3, size,
                              torch.as_tensor(background, dtype=torch.float32), hard=True, near=near)
    return out["rgb"].clamp(0, 1).numpy()


def _points_view(p, colors, cam, size, background, radius_px: int = 1):
    H, W = size
    R, t, K = (x[0].double().numpy() for x in (cam.R, cam.t, cam.K))
    pc = np.asarray(p, dtype=np.float64) @ R.T + t
    z = pc[:, 2]
    ok = z > 1e-6
    uv = pc[ok] @ K.T
    u = np.round(uv[:, 0] / uv[:, 2]).astype(np.int64)
    w = np.round(uv[:, 1] / uv[:, 2]).astype(np.int64)
    col = (np.asarray(colors, dtype=np.float64)[ok] if colors is not None else np.tile(GREY, (int(ok.sum()), 1)))
    zz = z[ok]
    shade = 1.0 - 0.35 * (zz - zz.min()) / max(float(np.ptp(zz)), 1e-12)  # nearer is brighter
    col = col * shade[:, None]
    img = np.empty((H, W, 3))
    img[:] = background
    depth = np.full((H, W), np.inf)
    order = np.argsort(-zz)  # far first, near last: near points overwrite
    for du in range(-radius_px, radius_px + 1):
        for dv in range(-radius_px, radius_px + 1):
            uu, ww = u[order] + du, w[order] + dv
            inside = (uu >= 0) & (uu < W) & (ww >= 0) & (ww < H)
            uu, ww, zo, co = uu[inside], ww[inside], zz[order][inside], col[order][inside]
            nearer = zo < depth[ww, uu]
            img[ww[nearer], uu[nearer]] = co[nearer]
            depth[ww[nearer], uu[nearer]] = zo[nearer]
    return img


def preview_views(vertices: np.ndarray, faces: np.ndarray | None = None, colors: np.ndarray | None = None,
                  views: int = 3, size: tuple[int, int] = (240, 240), up=(0.0, 0.0, 1.0),
                  background=(1.0, 1.0, 1.0), fov: float = 40.0, point_radius: int = 1) -> np.ndarray:
    """``views`` pictures of a mesh (``faces`` [F, 3]) or a cloud side by side -> [H, W * views, 3] uint8.

    vertices: [N, 3]; colors: [N, 3] in [0, 1] (per vertex / point) or None.
    """
    from facet3d.core.structures.cameras import orbit_cameras

    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-9)
    distance = radius / math.sin(math.radians(fov / 2)) * 1.05
    # square panels: fov is both ways; views start 30 degrees round from the side, 30 above
    cams = orbit_cameras(np.zeros(3), distance, views, size, fov=fov, elevation=30.0, up=up, start_azimuth=120.0)
    panels = []
    for i in range(views):
        if faces is not None and len(faces):
            panels.append(_mesh_view(v - centre, faces, colors, cams[i], size, background))
        else:
            panels.append(_points_view(v - centre, colors, cams[i], size, background, point_radius))
    return (np.concatenate(panels, 1) * 255 + 0.5).astype(np.uint8)


def save_preview(path: str | Path, geometry, views: int = 3, size: tuple[int, int] = (240, 240), up=(0.0, 0.0, 1.0),
                 colors: np.ndarray | None = None) -> Path:
    """`preview_views` of a `Geometry` written as PNG (atomic); ``colors`` [N, 3] in [0, 1] replaces the
    file's own (e.g. labels or normals shown as colours)."""
    from PIL import Image

    from facet3d.core.io.api import atomic_output

    from facet3d.core.viewing import rgb8

    cols = colors if colors is not None else geometry.colors
    cols = None if cols is None else rgb8(cols) / 255.0
    img = preview_views(geometry.vertices, geometry.faces, cols, views, size, up)
    with atomic_output(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    return Path(path)
