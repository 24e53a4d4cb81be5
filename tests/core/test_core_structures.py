"""Pointclouds / Meshes views against naive loops, and Geometry <-> torch / trimesh / open3d."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core import convert
from facet3d.core.errors import GeometryError
from facet3d.core.io.record import Geometry
from facet3d.core.structures.meshes import Meshes
from facet3d.core.structures.pointclouds import Pointclouds


def _clouds(sizes=(5, 0, 9, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = [torch.randn(n, 3, generator=g) for n in sizes]
    nrm = [torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1) for n in sizes]
    col = [torch.rand(n, 3, generator=g) for n in sizes]
    feat = [torch.randn(n, 2, generator=g) for n in sizes]
    return pts, nrm, col, feat


def test_pointclouds_views_match_naive_loops():
    pts, nrm, col, feat = _clouds()
    pc = Pointclouds(pts, normals=nrm, colors=col, features=feat)
    assert len(pc) == 4
    assert pc.num_points_per_cloud().tolist() == [5, 0, 9, 3]
    padded = pc.points_padded(pad_value=-7.0)
    assert padded.shape == (4, 9, 3)
    packed_ref, owner, first = [], [], []
    for i, p in enumerate(pts):
        assert torch.equal(padded[i, : len(p)], p)
        assert (padded[i, len(p):] == -7.0).all()
        first.append(len(packed_ref))
        packed_ref.extend(p.tolist())
        owner.extend([i] * len(p))
    assert torch.allclose(pc.points_packed(), torch.tensor(packed_ref))
    assert pc.packed_to_cloud_idx().tolist() == owner
    assert pc.cloud_to_packed_first_idx().tolist() == first
    assert torch.equal(pc.points_padded().reshape(-1, 3)[pc.padded_to_packed_idx()], pc.points_packed())
    assert torch.equal(pc.padded_mask().sum(1), pc.num_points_per_cloud())
    for getter in ("normals", "colors", "features"):
        assert torch.equal(getattr(pc, f"{getter}_packed")(), torch.cat(locals()[{"normals": "nrm", "colors": "col",
                                                                                  "features": "feat"}[getter]]))
    sub = pc[[2, 0]]
    assert sub.num_points_per_cloud().tolist() == [9, 5] and torch.equal(sub.colors_list()[0], col[2])
    assert len(pc[1:]) == 3 and len(pc[torch.tensor([True, False, True, False])]) == 2
    assert pc[-1].points_list()[0].shape == (3, 3)
    moved = pc.to("cpu", dtype=torch.float64)
    assert moved.points_packed().dtype == torch.float64 and moved.colors_packed().dtype == torch.float32


def test_pointclouds_padded_input_and_update():
    x = torch.randn(2, 6, 3)
    pc = Pointclouds(x, lengths=[6, 4])
    assert pc.num_points_per_cloud().tolist() == [6, 4]
    assert torch.equal(pc.points_list()[1], x[1, :4])
    new = pc.update_padded(pc.points_padded() * 2)
    assert torch.allclose(new.points_list()[1], 2 * x[1, :4])
    bb = pc.bounding_boxes()
    assert torch.equal(bb[1, :, 0], x[1, :4].amin(0))


def test_pointclouds_validation():
    with pytest.raises(GeometryError):
        Pointclouds([torch.randn(4, 2)])
    with pytest.raises(GeometryError):
        Pointclouds([torch.tensor([[0.0, float("nan"), 1.0]])])
    with pytest.raises(GeometryError):
        Pointclouds([torch.randn(4, 3)], normals=[torch.randn(3, 3)])
    with pytest.raises(GeometryError):
        Pointclouds([])


def test_pointclouds_geometry_roundtrip():
    rng = np.random.default_rng(0)
    g = Geometry(vertices=rng.normal(size=(20, 3)), normals=rng.normal(size=(20, 3)),
                 colors=rng.random((20, 3)).astype(np.float32),
                 attributes={"intensity": rng.random(20), "rgb2": rng.random((20, 2))})
    pc = convert.geometry_to_pointclouds([g, g])
    assert len(pc) == 2 and pc.features_packed().shape == (40, 3)
    back = convert.pointclouds_to_geometry(pc, 1)
    assert np.allclose(back.vertices, g.vertices, atol=1e-6)
    assert np.allclose(back.attributes["intensity"], g.attributes["intensity"], atol=1e-6)
    assert back.attributes["rgb2"].shape == (20, 2)
    assert np.allclose(back.colors, g.colors)


def _tetra_and_quad():
    v1 = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    f1 = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])  # outward winding
    v2 = torch.tensor([[0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 3, 0], [5, 5, 5]], dtype=torch.float64)
    f2 = torch.tensor([[0, 1, 2], [0, 2, 3]])  # vertex 4 unused
    return [v1, v2], [f1, f2]


def test_meshes_views_and_normals():
    vs, fs = _tetra_and_quad()
    m = Meshes(vs, fs)
    assert m.num_verts_per_mesh().tolist() == [4, 5] and m.num_faces_per_mesh().tolist() == [4, 2]
    fp = m.faces_packed()
    assert torch.equal(fp[4:], fs[1] + 4)  # offset by the first mesh's vertex count
    assert torch.equal(m.faces_padded()[1, 2:], torch.full((2, 3), -1))
    assert torch.equal(m.verts_packed()[fp], torch.cat([vs[0][fs[0]], vs[1][fs[1]]]))
    assert m.faces_packed_to_mesh_idx().tolist() == [0] * 4 + [1] * 2
    assert m.mesh_to_verts_packed_first_idx().tolist() == [0, 4]
    # areas: three right triangles of 1/2 and the slanted face sqrt(3)/2; the quad 6 = 3 + 3
    assert np.allclose(m.faces_areas_packed().numpy(), [0.5, 0.5, 0.5, np.sqrt(3) / 2, 3, 3])
    assert torch.allclose(m.faces_normals_list()[1], torch.tensor([[0, 0, 1.0]] * 2, dtype=torch.float64))
    # area-weighted vertex normal by hand at vertex 1 of the tetrahedron: faces 0, 1, 3
    fn, fa = m.faces_normals_packed(), m.faces_areas_packed()
    ref = fn[0] * fa[0] + fn[1] * fa[1] + fn[3] * fa[3]
    assert torch.allclose(m.verts_normals_list()[0][1], ref / ref.norm())
    assert torch.equal(m.verts_normals_list()[1][4], torch.zeros(3, dtype=torch.float64))  # isolated vertex
    # padded input drops -1 rows
    m2 = Meshes(m.verts_padded(), m.faces_padded())
    assert m2.num_faces_per_mesh().tolist() == [4, 2]
    with pytest.raises(GeometryError):
        Meshes([vs[0]], [torch.tensor([[0, 1, 9]])])


def test_meshes_vertex_normals_match_trimesh(shared_data):
    import trimesh
    tm = trimesh.load(shared_data / "meshes" / "spot.obj", force="mesh", process=False)
    m = Meshes([torch.as_tensor(tm.vertices)], [torch.as_tensor(tm.faces)])
    assert np.allclose(m.faces_areas_packed().numpy(), tm.area_faces)
    # trimesh's area-weighted vertex normals (same definition) - compare on non-isolated vertices
    ref = trimesh.geometry.weighted_vertex_normals(len(tm.vertices), tm.faces, tm.face_normals,
                                                   tm.face_angles, use_loop=False)
    ours = m.verts_normals_packed().numpy()
    ref_area = np.zeros_like(ours)
    np.add.at(ref_area, tm.faces.reshape(-1), np.repeat(tm.face_normals * tm.area_faces[:, None], 3, axis=0))
    ref_area /= np.linalg.norm(ref_area, axis=1, keepdims=True)
    assert np.allclose(ours, ref_area, atol=1e-9)
    assert (np.einsum("ij,ij->i", ours, ref) > 0.9).mean() > 0.99  # angle-weighted is close too


def test_meshes_geometry_trimesh_open3d_roundtrip(shared_data):
    import trimesh
    tm = trimesh.load(shared_data / "meshes" / "fuze.obj", force="mesh", process=False)
    g = convert.trimesh_to_geometry(tm)
    assert g.num_faces == len(tm.faces)
    m = convert.geometry_to_meshes(g)
    back = convert.meshes_to_geometry(m)
    assert np.allclose(back.vertices, g.vertices, atol=1e-5) and np.array_equal(back.faces, g.faces)
    t2 = convert.geometry_to_trimesh(back)
    assert isinstance(t2, trimesh.Trimesh) and np.isclose(t2.area, tm.area, rtol=1e-5)
    o3 = convert.geometry_to_open3d(back)
    assert np.isclose(o3.get_surface_area(), tm.area, rtol=1e-5)
    g3 = convert.open3d_to_geometry(o3)
    assert np.array_equal(g3.faces, g.faces) and g3.normals is not None


def test_pointcloud_trimesh_open3d_roundtrip():
    import open3d as o3d
    import trimesh
    rng = np.random.default_rng(1)
    g = Geometry(vertices=rng.normal(size=(50, 3)), normals=rng.normal(size=(50, 3)),
                 colors=rng.random((50, 3)).astype(np.float32))
    o3 = convert.geometry_to_open3d(g)
    assert isinstance(o3, o3d.geometry.PointCloud)
    back = convert.open3d_to_geometry(o3)
    assert np.allclose(back.vertices, g.vertices) and np.allclose(back.colors, g.colors, atol=1e-6)
    tp = convert.geometry_to_trimesh(g)
    assert isinstance(tp, trimesh.PointCloud)
    gt = convert.trimesh_to_geometry(tp)
    assert np.allclose(gt.vertices, g.vertices) and np.allclose(gt.colors[:, :3], g.colors, atol=1 / 255)
