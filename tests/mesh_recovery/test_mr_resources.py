"""Up-front memory refusals (Poisson octree, 2-D Delaunay, TSDF grid) before any work starts."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.errors import ResourceError
from facet3d.core.io.api import write
from facet3d.core.io.record import Geometry
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix
from facet3d.plugins.mesh_recovery.surface_delaunay import delaunay_memory
from facet3d.plugins.mesh_recovery.surface_points import PointsToMesh, poisson_memory, reconstruct_points
from facet3d.plugins.mesh_recovery.surface_tsdf import fuse_depth, tsdf_memory


def _sphere(n=3000):
    p = np.random.default_rng(0).normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def test_estimates_follow_their_documented_formulas():
    # finest-level cells: min(6 x 4^D, 8 per point); 400 B a cell + 1 kB a point
    assert poisson_memory(1000, 5) == 1000 * 1000 + min(6 * 4 ** 5, 8000) * 400
    assert poisson_memory(10**7, 12) == 10**7 * 1000 + 8 * 10**7 * 400
    assert poisson_memory(100, 16) == 100 * 1000 + 800 * 400  # sparse input: depth alone costs nothing
    assert delaunay_memory(10**6) == 10**9
    assert tsdf_memory(200) == int(200 ** 3 * 48 * 1.25)


def test_poisson_and_delaunay_refused_up_front(monkeypatch):
    monkeypatch.setenv("FACET3D_MEMORY_LIMIT", "1M")
    seen = []
    with pytest.raises(ResourceError, match=r"Poisson reconstruction at --depth 8 of 3000 points needs about"):
        reconstruct_points(Geometry(_sphere()), PointsToMesh(), progress=lambda *a: seen.append(a))
    assert not any(s and "normals" in s for _, _, s in seen)   # refused before normal estimation
    xy = np.random.default_rng(0).random((3000, 2))
    with pytest.raises(ResourceError, match="2-D Delaunay of 3000 points"):
        reconstruct_points(Geometry(np.c_[xy, np.zeros(3000)]), PointsToMesh())
    monkeypatch.setenv("FACET3D_MEMORY_LIMIT", "20G")
    assert reconstruct_points(Geometry(np.c_[xy, np.zeros(3000)]), PointsToMesh()).num_faces > 5000


def test_cli_memory_refusal_is_one_line(tmp_path, cli):
    src = tmp_path / "pts.ply"
    write(src, Geometry(_sphere()))
    out = tmp_path / "out.ply"
    r = cli("mesh", str(src), "-o", str(out), "--depth", "12", env={"FACET3D_MEMORY_LIMIT": "2M"})
    assert r.returncode == 1 and "needs about" in r.stderr and "--depth 12" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_tsdf_grid_refused_up_front(tmp_path, monkeypatch):
    H, W = 24, 32
    K = intrinsics_matrix(30.0, 30.0, (W - 1) / 2, (H - 1) / 2).numpy()
    cams = Cameras(K[None], np.eye(3)[None], np.zeros((1, 3)), (H, W), names=["v0.png"])
    np.save(tmp_path / "v0.npy", np.ones((H, W), np.float32))  # a wall 1 unit in front of the camera
    monkeypatch.setenv("FACET3D_MEMORY_LIMIT", "1M")
    info = {}
    with pytest.raises(ResourceError, match=r"TSDF fusion on a \d+\^3 grid"):
        fuse_depth(tmp_path, cams, info=info)
    assert "resolution" not in info  # refused before the volume was set up
