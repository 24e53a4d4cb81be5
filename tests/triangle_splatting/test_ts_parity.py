"""Hard triangles (sigma -> 0, opacity 1) against open3d's RaycastingScene: a z-buffer rasterizer.

256x256 images, 2 cameras per mesh (spot, fandisk, Stanford bunny), on the compiled CPU backend
(numba) and, for the bunny, the torch reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

o3d = pytest.importorskip("open3d")

from facet3d.core.io.api import read  # noqa: E402
from facet3d.plugins.triangle_splatting.render import orbit_cameras, render  # noqa: E402
from facet3d.plugins.triangle_splatting.scene import TriangleScene  # noqa: E402

SIZE = 256


def raycast(geom, cams, size, colors=None):
    """open3d depth (z along the camera axis, inf on miss) through the same pixel centres, and
    with per-vertex ``colors`` the colour interpolated at the hit (open3d's barycentrics)."""
    scene = o3d.t.geometry.RaycastingScene()
    mesh = o3d.t.geometry.TriangleMesh()
    mesh.vertex.positions = o3d.core.Tensor(np.asarray(geom.vertices, dtype=np.float32))
    mesh.triangle.indices = o3d.core.Tensor(np.asarray(geom.faces, dtype=np.int32))
    scene.add_triangles(mesh)
    ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    pix = np.stack([jj, ii, np.ones_like(ii)], -1).reshape(-1, 3).astype(np.float64)  # (u, v, 1)
    out, rgb = [], []
    faces = np.asarray(geom.faces)
    for b in range(len(cams)):
        K, R = cams.K[b].numpy(), cams.R[b].numpy()
        d_cam = pix @ np.linalg.inv(K).T  # z = 1: t_hit is the z-depth
        d = d_cam @ R  # R^T d
        o = np.broadcast_to(cams.centers()[b].numpy(), d.shape)
        rays = o3d.core.Tensor(np.concatenate([o, d], 1).astype(np.float32))
        hit = scene.cast_rays(rays)
        out.append(hit["t_hit"].numpy().reshape(size, size))
        if colors is not None:
            prim = hit["primitive_ids"].numpy().astype(np.int64)
            uv = hit["primitive_uvs"].numpy().astype(np.float64)
            ok = prim < len(faces)
            f = faces[np.where(ok, prim, 0)]
            lam = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1)
            c = (lam[..., None] * colors[f]).sum(1)
            rgb.append(np.where(ok[:, None], c, 0).reshape(size, size, -1))
    return np.stack(out) if colors is None else (np.stack(out), np.stack(rgb))


@pytest.mark.parametrize("name, backend", [("spot.obj", "numba"), ("fandisk.obj", "numba"),
                                           ("stanford-bunny.obj", "numba"), ("stanford-bunny.obj", "torch")])
def test_hard_matches_raycasting(shared_data, name, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    geom = read(shared_data / "meshes" / name)
    geom.colors = np.random.default_rng(0).uniform(0, 1, (len(geom.vertices), 3)).astype(np.float32)
    scene = TriangleScene.from_geometry(geom, dtype=torch.float32)  # ts+ form: per-vertex colours
    lo, hi = geom.vertices.min(0), geom.vertices.max(0)
    cams = orbit_cameras((lo + hi) / 2, 1.3 * float(np.linalg.norm(hi - lo)), 2, SIZE, fov=40, up=(0, 1, 0),
                         elevation=25, start_azimuth=30)
    out = render(scene, cams, hard=True, backend=backend)
    ref, ref_rgb = raycast(geom, cams, SIZE, geom.colors.astype(np.float64))
    mine_hit = out["alpha"].numpy() > 0.5
    ref_hit = np.isfinite(ref)
    agree = mine_hit == ref_hit
    assert ref_hit.mean() > 0.1  # the object fills a good part of the image
    assert agree.mean() >= 0.995, f"coverage agrees on {agree.mean():.4f}"
    both = mine_hit & ref_hit
    rel = np.abs(out["depth"].numpy()[both] - ref[both]) / ref[both]
    print(f"{name}: coverage agreement {agree.mean():.5f}, depth rel err max {rel.max():.2e}, "
          f"frac < 1e-3 {(rel < 1e-3).mean():.5f}")
    assert (rel < 1e-3).all(), f"max rel {rel.max():.2e}"
    # perspective-correct interpolation of the vertex colours matches the ray hit's barycentrics
    col_err = np.abs(out["rgb"].numpy()[both] - ref_rgb[both]).max(-1)
    print(f"  colour err max {col_err.max():.2e}, 99.9% {np.quantile(col_err, 0.999):.2e}")
    assert np.quantile(col_err, 0.999) < 1e-3 and col_err.max() < 5e-3
    # hard + opaque: alpha is exactly 0 or 1
    a = out["alpha"].numpy()
    assert np.all((a == 0) | (np.abs(a - 1) < 1e-6))


def test_soft_limit_approaches_hard(shared_data):
    """Tiny sigma, opacity 1, small-size culls off: the soft path converges to the hard image (alpha 0.99)."""
    geom = read(shared_data / "meshes" / "spot.obj")
    scene = TriangleScene.from_geometry(geom, dtype=torch.float32)
    lo, hi = geom.vertices.min(0), geom.vertices.max(0)
    cams = orbit_cameras((lo + hi) / 2, 1.3 * float(np.linalg.norm(hi - lo)), 1, 64, fov=40, up=(0, 1, 0))
    hard = render(scene, cams, hard=True)
    soft = render(scene, cams, hard=False, min_size=0.0, min_inradius=0.0)
    inner = hard["alpha"] > 0.5
    assert int(inner.sum()) > 500
    assert float(soft["alpha"][inner].min()) >= 0.99 - 1e-5  # the soft cap, reached everywhere
    assert float(soft["alpha"][~inner].max()) == 0.0  # same coverage
    assert float((soft["rgb"] - hard["rgb"]).abs()[inner].max()) < 0.02
    rel = ((soft["depth"] - hard["depth"]).abs() / hard["depth"])[inner]
    assert float((rel < 1e-3).float().mean()) > 0.99  # centroid order may differ from z-buffer order
