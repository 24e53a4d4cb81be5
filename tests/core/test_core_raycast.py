"""core.ops.raycast against closed forms: a plane at a known depth (depth, distance, triangle id,
barycentrics) and a sphere seen from outside (the first hit of a ray is the near root)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import GeometryError
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R

pytest.importorskip("open3d")
from facet3d.core.ops.raycast import MeshRaycaster, pixel_centres, raycast_mesh  # noqa: E402

H, W = 12, 16
PLANE_V = np.array([[-10, -10, 5], [10, -10, 5], [10, 10, 5], [-10, 10, 5]], dtype=np.float64)
PLANE_F = np.array([[0, 1, 2], [0, 2, 3]])


def _camera(R=None, t=None) -> Cameras:
    K = intrinsics_matrix(20.0, 25.0, 7.0, 5.5)
    return Cameras(K, torch.eye(3) if R is None else R, torch.zeros(3) if t is None else t, (H, W))


def test_plane_depth_distance_triangle_and_barycentrics():
    out = raycast_mesh(PLANE_V, PLANE_F, _camera())
    assert out["depth"].shape == (1, H, W) and out["barycentric"].shape == (1, H, W, 3)
    assert bool(out["hit"].all())
    # z = 5 everywhere: depth is z; distance is the ray length 5 |K^-1 [u, v, 1]|
    uv = pixel_centres(H, W).reshape(H, W, 2)
    x, y = (uv[..., 0] - 7.0) / 20.0, (uv[..., 1] - 5.5) / 25.0
    X = torch.stack([5 * x, 5 * y, torch.full_like(x, 5.0)], -1)
    torch.testing.assert_close(out["depth"][0], torch.full((H, W), 5.0, dtype=torch.float64), atol=2e-5, rtol=0)
    torch.testing.assert_close(out["distance"][0], X.norm(dim=-1), atol=2e-5, rtol=0)
    # triangle 0 holds x >= y, triangle 1 x <= y (the diagonal itself is either)
    tri = out["triangle"][0]
    off = (X[..., 0] - X[..., 1]).abs() > 1e-3
    assert torch.equal(tri[off], torch.where(X[..., 0] > X[..., 1], 0, 1)[off])
    # barycentrics rebuild the hit point and sum to 1
    V = torch.as_tensor(PLANE_V)[torch.as_tensor(PLANE_F)[tri]]  # [H, W, 3, 3]
    w = out["barycentric"][0]
    torch.testing.assert_close(w.sum(-1), torch.ones(H, W, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close((w[..., None] * V).sum(-2), X, atol=5e-5, rtol=0)


def test_sphere_near_root_and_misses():
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=6, radius=1.0)
    eye = torch.tensor([0.0, 0.0, -4.0], dtype=torch.float64)
    R = look_at_R(eye, torch.zeros(3), up=(0.0, 1.0, 0.0))
    cam = _camera(R, -(R @ eye))
    out = MeshRaycaster(m.vertices, m.faces).render(cam)
    o, d = cam.rays(pixel_centres(H, W))
    o, d = o[0], d[0]
    # |o + s d| = 1: s = -b - sqrt(b^2 - c), b = o.d, c = |o|^2 - 1
    b = (o * d).sum(-1)
    disc = b ** 2 - ((o * o).sum(-1) - 1.0)
    hit = (disc > 0.02).reshape(H, W)  # away from the silhouette (the mesh is a polytope)
    miss = (disc < -0.02).reshape(H, W)
    assert hit.any() and miss.any()
    s = (-b - disc.clamp_min(0).sqrt()).reshape(H, W)
    # an inscribed icosphere (level 6) is within ~1e-3 of the sphere
    assert (out["distance"][0][hit] - s[hit]).abs().max() < 2e-3
    cos = (d @ cam.R[0, 2]).reshape(H, W)
    torch.testing.assert_close(out["depth"][0][hit], (out["distance"][0] * cos)[hit])
    assert bool(out["hit"][0][hit].all()) and not bool(out["hit"][0][miss].any())
    assert torch.all(out["depth"][0][miss] == 0) and torch.all(out["triangle"][0][miss] == -1)
    assert torch.all(out["barycentric"][0][miss] == 0) and torch.isinf(out["distance"][0][miss]).all()


def test_bad_inputs():
    with pytest.raises(GeometryError, match="faces"):
        MeshRaycaster(PLANE_V, np.array([[0, 1, 7]]))
    cams = Cameras(intrinsics_matrix(20.0, 20.0, 7.0, 5.5), torch.eye(3), torch.zeros(3))
    with pytest.raises(GeometryError, match="image size"):
        raycast_mesh(PLANE_V, PLANE_F, cams)
