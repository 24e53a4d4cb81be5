"""Normal estimation, surface sampling and voxel down-sampling against analytic / independent answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import GeometryError
from facet3d.core.ops import normals as nrm
from facet3d.core.ops.sampling import sample_mesh_surface, sample_points_from_meshes, voxel_downsample
from facet3d.core.structures.meshes import Meshes


def _sphere(n=3000, seed=0):
    p = np.random.default_rng(seed).normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def _torus(n=6000, R=1.0, r=0.35, seed=1):
    rng = np.random.default_rng(seed)
    # rejection sampling for area-uniform points (area element ~ R + r cos v)
    u, v = rng.uniform(0, 2 * np.pi, (2, 4 * n))
    keep = rng.uniform(0, R + r, 4 * n) < R + r * np.cos(v)
    u, v = u[keep][:n], v[keep][:n]
    centre = np.stack([R * np.cos(u), R * np.sin(u), np.zeros_like(u)], 1)
    normal = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], 1)
    return centre + r * normal, normal


def test_normals_sphere_outward():
    p = _sphere()
    n = nrm.estimate_normals(p, k=20)
    cos = np.einsum("ij,ij->i", n, p)
    assert np.abs(cos).min() > 0.99     # PCA axis right
    assert (cos > 0).all()              # consistent orientation, outwards
    raw = nrm.estimate_normals(p, k=20, orient=None)
    assert np.abs(np.einsum("ij,ij->i", raw, p)).min() > 0.99


def test_normals_torus_outward_nonconvex():
    p, n_true = _torus()
    n = nrm.estimate_normals(p, k=16)
    cos = np.einsum("ij,ij->i", n, n_true)
    assert np.abs(cos).min() > 0.95 and (cos > 0).mean() > 0.999


def test_normals_plane_towards_viewpoint_torch_and_radius():
    rng = np.random.default_rng(2)
    p = np.c_[rng.uniform(-1, 1, (2000, 2)), np.zeros(2000)]
    up = nrm.estimate_normals(torch.as_tensor(p, dtype=torch.float32), k=12, orient="viewpoint",
                              viewpoint=[0.3, 0.2, 5.0])
    assert isinstance(up, torch.Tensor) and up.dtype == torch.float32
    assert torch.allclose(up, torch.tensor([0.0, 0.0, 1.0]).expand_as(up), atol=1e-5)
    down, curv = nrm.estimate_normals(p, radius=0.15, k=30, orient="viewpoint", viewpoint=[0, 0, -3.0],
                                      return_curvature=True)
    assert np.allclose(down, [0, 0, -1], atol=1e-6) and curv.max() < 1e-9
    with pytest.raises(GeometryError):
        nrm.estimate_normals(np.zeros((2, 3)))
    with pytest.raises(GeometryError):
        nrm.estimate_normals(np.full((10, 3), np.nan))


def _pca_normals(p, neighbours):
    """Smallest-eigenvalue axis of each point's neighbour covariance (the independent answer)."""
    out = np.empty_like(p)
    for i, nb in enumerate(neighbours):
        q = p[nb] - p[nb].mean(0)
        out[i] = np.linalg.eigh(q.T @ q)[1][:, 0]
    return out


def test_normals_axes_match_ckdtree_neighbourhoods():
    from scipy.spatial import cKDTree

    p = _sphere(1500, seed=4) * (1 + 0.02 * np.random.default_rng(5).normal(size=(1500, 1)))
    tree = cKDTree(p)
    knn = tree.query(p, k=12)[1]
    d, ball = tree.query(p, k=20, distance_upper_bound=0.2)
    for n, nb in ((nrm.estimate_normals(p, k=12, orient=None), knn),
                  (nrm.estimate_normals(p, k=20, radius=0.2, orient=None), [b[np.isfinite(r)] for b, r in zip(ball, d)])):
        ok = np.array([len(b) >= 6 for b in nb])  # with few neighbours the plane is ill-posed
        ref = _pca_normals(p, nb)
        assert ok.mean() > 0.9 and np.abs(np.einsum("ij,ij->i", n[ok], ref[ok])).min() > 1 - 1e-9
    assert np.isfinite(d).sum(1).min() < 20  # the radius really cuts some neighbourhoods short


def _read_ascii_pcd(path):
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("DATA")) + 1
    return np.loadtxt(lines[start:])[:, :3]


def test_normals_real_scan_consistent(shared_data):
    p = _read_ascii_pcd(shared_data / "scans" / "bunny.pcd")
    n = nrm.estimate_normals(p, k=16)
    assert np.allclose(np.linalg.norm(n, axis=1), 1)
    assert nrm.neighbour_sign_agreement(p, n, k=10) > 0.98
    # bunny is a closed-ish shape: normals point away from its centre on the whole
    assert (np.einsum("ij,ij->i", n, p - p.mean(0)) > 0).mean() > 0.8
    # same axes as open3d's PCA, orientation as consistent as open3d's MST propagation (within 1%)
    import open3d as o3d
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
    pc.orient_normals_consistent_tangent_plane(16)
    ref = np.asarray(pc.normals)
    assert np.abs(np.einsum("ij,ij->i", n, ref)).mean() > 0.999
    assert nrm.neighbour_sign_agreement(p, n) > nrm.neighbour_sign_agreement(p, ref) - 0.01


# ------------------------------------------------------------------ sampling

def _random_soup(F=40, seed=3):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(3 * F, 3)) * rng.uniform(0.05, 1.0, (3 * F, 1)).repeat(3, 1)
    return v, np.arange(3 * F).reshape(F, 3)


def test_sampling_density_proportional_to_area():
    v, f = _random_soup()
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    S = 100_000
    s = sample_mesh_surface(v, f, S, seed=0)
    counts = np.bincount(s.face_index, minlength=len(f))
    expected = S * area / area.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 80  # 39 dof: p ~ 1e-4
    # points are their barycentric combination and lie in the face's plane
    tri = v[f[s.face_index]]
    assert np.allclose((s.barycentrics[..., None] * tri).sum(1), s.points)
    assert (s.barycentrics >= 0).all() and np.allclose(s.barycentrics.sum(1), 1)
    assert np.abs(np.einsum("ij,ij->i", s.points - tri[:, 0], s.normals)).max() < 1e-12


def test_sampling_uniform_within_triangle():
    v = np.array([[0.0, 0, 0], [4, 0, 0], [1, 3, 0]])
    s = sample_mesh_surface(v, np.array([[0, 1, 2]]), 40_000, seed=1)
    assert np.allclose(s.points.mean(0), v.mean(0), atol=0.03)
    # the midpoint subdivision splits the triangle into 4 equal areas; the centre one has all
    # barycentrics <= 1/2, each corner one has one barycentric > 1/2
    frac = np.bincount(np.where(s.barycentrics.max(1) > 0.5, s.barycentrics.argmax(1), 3), minlength=4) / 40_000
    assert np.allclose(frac, 0.25, atol=0.015)


def test_sampling_on_real_mesh_surface_and_colours(shared_data):
    import trimesh
    tm = trimesh.load(shared_data / "meshes" / "fuze.obj", force="mesh", process=False)
    v, f = np.asarray(tm.vertices), np.asarray(tm.faces)
    # vertex colours = positions, so the interpolated colour must equal the sample position
    s = sample_mesh_surface(torch.as_tensor(v), torch.as_tensor(f), 1500, seed=2, vert_colors=torch.as_tensor(v))
    pts = s.points.numpy()
    # distance to the mesh from open3d's raycasting scene (trimesh.proximity needs rtree)
    import open3d as o3d
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(
        o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f.astype(np.int32)))))
    dist = scene.compute_distance(o3d.core.Tensor(pts.astype(np.float32))).numpy()
    assert dist.max() < 1e-5 * tm.scale  # float32 inside open3d
    assert np.allclose(s.colors.numpy(), pts)
    assert np.allclose(s.normals.numpy(), tm.face_normals[s.face_index.numpy()], atol=1e-9)
    again = sample_mesh_surface(torch.as_tensor(v), torch.as_tensor(f), 1500, seed=2)
    assert torch.equal(again.points, s.points)  # seeded


def test_sample_points_from_meshes_batch_and_errors():
    v1 = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    v2 = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    m = Meshes([v1, v2], [torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 1], [0, 1, 3]])],
               face_colors=[torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 1, 0], [0, 0, 1.0]])])
    pts, n, c = sample_points_from_meshes(m, 200, seed=0)
    assert pts.shape == (2, 200, 3) and n.shape == (2, 200, 3) and c.shape == (2, 200, 3)
    assert torch.allclose(n[0], torch.tensor([0.0, 0, 1]).expand(200, 3))
    assert (pts[0, :, 2] == 0).all()
    with pytest.raises(GeometryError):
        sample_mesh_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 10)


# ------------------------------------------------------------------ voxel down-sampling

def test_voxel_downsample_matches_open3d():
    import open3d as o3d
    rng = np.random.default_rng(4)
    p = rng.random((20_000, 3)) * [2.0, 1.0, 0.5] - 0.3
    n = rng.normal(size=p.shape)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    c = rng.random(p.shape)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    pc.normals, pc.colors = o3d.utility.Vector3dVector(n), o3d.utility.Vector3dVector(c)
    for vs in (0.05, 0.137):
        ref = pc.voxel_down_sample(vs)
        out = voxel_downsample(p, vs, normals=n, colors=c, features=p[:, :1])
        q = np.asarray(ref.points)
        assert len(q) == len(out.points) == len(out.counts) and out.counts.sum() == len(p)
        # pair voxels through their integer coordinates (open3d's order is a hash map's)
        key = np.floor((q - (p.min(0) - vs / 2)) / vs).astype(np.int64)
        order = np.lexsort(key.T[::-1])
        assert np.array_equal(key[order], out.voxel_index)
        assert np.allclose(q[order], out.points, atol=1e-12)
        assert np.allclose(np.asarray(ref.colors)[order], out.colors, atol=1e-12)
        rn = np.asarray(ref.normals)[order]  # open3d leaves averaged normals un-normalised
        assert np.allclose(rn / np.linalg.norm(rn, axis=1, keepdims=True), out.normals, atol=1e-9)
        assert np.allclose(out.features[:, 0], out.points[:, 0])
        assert np.array_equal(out.voxel_index[out.inverse], np.floor((p - (p.min(0) - vs / 2)) / vs))


def test_voxel_downsample_torch_and_errors():
    p = torch.tensor([[0.0, 0, 0], [0.01, 0, 0], [1, 1, 1], [1.02, 1, 1]], dtype=torch.float32)
    out = voxel_downsample(p, 0.1)
    assert isinstance(out.points, torch.Tensor) and out.points.dtype == torch.float32
    assert torch.allclose(out.points, torch.tensor([[0.005, 0, 0], [1.01, 1, 1]]))
    with pytest.raises(GeometryError):
        voxel_downsample(p, 0.0)
    with pytest.raises(GeometryError):
        voxel_downsample(torch.zeros(0, 3), 0.1)
