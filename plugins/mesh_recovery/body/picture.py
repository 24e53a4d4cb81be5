"""A PNG of a body fit over its scan, drawn with the project's own rasterizer (kernels.trisplat).

Two views (front and side, from the fitted body's own front and up): the body shaded grey (head light)
and the scan points on top as dots coloured by their distance to the body (green 0, red >= ``far``),
hidden where the body is in front of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from facet3d.core.preview import head_light

__all__ = ["fit_picture"]


def _view(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, dist: np.ndarray, eye: np.ndarray,
          target: np.ndarray, up: np.ndarray, size: tuple[int, int], far: float) -> np.ndarray:
    from facet3d.core.structures.cameras import intrinsics_matrix, look_at_R
    from facet3d.kernels.trisplat import rasterize_triangles

    H, W = size
    R = look_at_R(eye, target, up).float()
    t = -(R @ torch.as_tensor(eye, dtype=torch.float32))
    f = 0.5 * H / math.tan(math.radians(20.0))
    K = intrinsics_matrix(f, f, (W - 1) / 2, (H - 1) / 2, dtype=torch.float32)
    v = torch.as_tensor(vertices, dtype=torch.float32) @ R.T + t
    fc = torch.as_tensor(faces, dtype=torch.long)
    tri = v[fc]  # [F, 3, 3]
    shade = head_light(tri)[:, None].expand(-1, 3) * torch.tensor([0.8, 0.82, 0.86])
    out = rasterize_triangles(tri, K, shade, torch.ones(len(tri)), 1e-3, (H, W), torch.ones(3), hard=True,
                              near=0.05)
    img = out["rgb"].clamp(0, 1).numpy()
    depth = out["depth"].numpy()
    alpha = out["alpha"].numpy()
    # the scan points: projected, depth-tested against the body (2 cm slack), nearest last
    p = torch.as_tensor(points, dtype=torch.float32) @ R.T + t
    z = p[:, 2].numpy()
    uv = (p @ K.T).numpy()
    u = np.round(uv[:, 0] / z).astype(int)
    w = np.round(uv[:, 1] / z).astype(int)
    ok = (z > 0.05) & (u >= 1) & (u < W - 1) & (w >= 1) & (w < H - 1)
    u, w, z, d = u[ok], w[ok], z[ok], dist[ok]
    body_z = np.where(alpha[w, u] > 0.5, depth[w, u], np.inf)
    shown = z <= body_z + 0.02
    u, w, d = u[shown], w[shown], d[shown]
    c = np.clip(d / far, 0, 1)[:, None]
    colour = (1 - c) * np.array([0.1, 0.75, 0.2]) + c * np.array([0.9, 0.1, 0.1])
    for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):
        img[w + dv, u + du] = colour
    return img


def fit_picture(path: str | Path, vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                point_residual: np.ndarray, up: np.ndarray, front: np.ndarray, far: float = 0.03,
                size: tuple[int, int] = (480, 320)) -> None:
    """Write the PNG (module docstring). vertices [V, 3], points [N, 3] in one frame; up, front: the
    body's directions in that frame; far: the distance drawn fully red."""
    from PIL import Image

    from facet3d.core.io.api import atomic_output

    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    radius = float(np.linalg.norm(vertices.max(0) - vertices.min(0))) / 2
    up = up / np.linalg.norm(up)
    front = front - (front @ up) * up
    front = front / np.linalg.norm(front)
    side = np.cross(up, front)
    distance = radius / math.tan(math.radians(20.0)) * 1.05
    panels = [_view(vertices, faces, points, point_residual, centre + distance * d, centre, up, size, far)
              for d in (front, side)]
    image = (np.concatenate(panels, 1) * 255).round().astype(np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
