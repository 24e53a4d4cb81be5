"""PLY reader/writer: against open3d/trimesh on the shared files, round trips, odd layouts, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from facet3d.core.io import api, ply
from facet3d.core.io.record import Geometry

o3d = pytest.importorskip("open3d")


@pytest.mark.parametrize("name", ["points_ascii.ply", "points_bin.ply", "octagonal_pocket.ply"])
def test_shared_ply_matches_open3d(shared_data, name):
    path = shared_data / "meshes" / name
    g = api.read(path)
    ref = o3d.io.read_triangle_mesh(str(path))
    np.testing.assert_allclose(g.vertices, np.asarray(ref.vertices), rtol=0, atol=1e-6)
    assert g.num_faces == len(ref.triangles)
    if g.num_faces:
        np.testing.assert_array_equal(g.faces, np.asarray(ref.triangles))


def test_empty_ply_is_a_valid_empty_cloud(shared_data):
    g = api.read(shared_data / "meshes" / "bad" / "empty.ply")
    assert g.num_points == 0 and g.num_faces == 0
    assert g.meta["comments"] == ["Valid ply file without vertices."]


def _cloud(n=200, seed=0):
    rng = np.random.default_rng(seed)
    g = Geometry(vertices=rng.normal(size=(n, 3)), normals=rng.normal(size=(n, 3)).astype(np.float32),
                 colors=rng.integers(0, 256, (n, 4)).astype(np.float32) / 255)
    g.attributes["intensity"] = rng.random(n).astype(np.float32)
    g.attributes["label"] = rng.integers(0, 9, n).astype(np.int32)
    return g


@pytest.mark.parametrize("ascii", [False, True])
def test_roundtrip_cloud_and_mesh(tmp_path, ascii):
    g = _cloud()
    g.faces = np.random.default_rng(1).integers(0, 200, (50, 3))
    g.face_colors = np.random.default_rng(2).integers(0, 256, (50, 3)).astype(np.float32) / 255
    ply.write(tmp_path / "a.ply", g, ascii=ascii)
    r = ply.read(tmp_path / "a.ply")
    np.testing.assert_array_equal(r.vertices, g.vertices)
    np.testing.assert_array_equal(r.faces, g.faces)
    np.testing.assert_allclose(r.normals, g.normals, rtol=1e-6)
    np.testing.assert_allclose(r.colors, g.colors, atol=1e-6)
    np.testing.assert_allclose(r.face_colors, g.face_colors, atol=1e-6)
    np.testing.assert_array_equal(r.attributes["label"], g.attributes["label"])
    np.testing.assert_allclose(r.attributes["intensity"], g.attributes["intensity"], rtol=1e-6)
    # an independent reader agrees
    ref = o3d.io.read_triangle_mesh(str(tmp_path / "a.ply"))
    np.testing.assert_allclose(np.asarray(ref.vertices), g.vertices)
    np.testing.assert_array_equal(np.asarray(ref.triangles), g.faces)


def test_big_endian_polygons_and_extra_props(tmp_path):
    """Hand-built big-endian file: quads + a triangle (variable lists), face props, float colours."""
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], ">f4")
    head = (b"ply\nformat binary_big_endian 1.0\ncomment made by hand\nobj_info test\n"
            b"element vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
            b"property float red\nproperty float green\nproperty float blue\nproperty ushort quality\n"
            b"element face 2\nproperty list uchar int vertex_indices\nproperty uchar red\nproperty uchar green\n"
            b"property uchar blue\nproperty int tag\nelement edge 1\nproperty int v1\nproperty int v2\nend_header\n")
    vrec = np.zeros(5, [("p", ">f4", 3), ("c", ">f4", 3), ("q", ">u2")])
    vrec["p"], vrec["c"], vrec["q"] = verts, 0.5, np.arange(5)
    body = vrec.tobytes()
    body += bytes([4]) + np.array([0, 1, 2, 3], ">i4").tobytes() + bytes([255, 0, 0]) + np.array([7], ">i4").tobytes()
    body += bytes([3]) + np.array([0, 1, 4], ">i4").tobytes() + bytes([0, 255, 0]) + np.array([8], ">i4").tobytes()
    body += np.array([0, 1], ">i4").tobytes()
    (tmp_path / "be.ply").write_bytes(head + body)
    g = api.read(tmp_path / "be.ply")
    np.testing.assert_array_equal(g.vertices, verts.astype(np.float32))
    assert g.vertices.dtype.isnative
    np.testing.assert_array_equal(g.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 4]])  # fan-triangulated quad
    np.testing.assert_allclose(g.colors, 0.5)
    np.testing.assert_array_equal(g.attributes["quality"], np.arange(5))
    np.testing.assert_allclose(g.face_colors, [[1, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(g.face_attributes["tag"], [7, 7, 8])
    assert g.meta["comments"] == ["made by hand", "test"]


def test_ascii_mixed_polygons_and_vertex_index_name(tmp_path):
    text = ("ply\nformat ascii 1.0\nelement vertex 5\nproperty double x\nproperty double y\nproperty double z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\n"
            "element face 3\nproperty list uchar uint vertex_index\nend_header\n"
            "0 0 0 255 0 0\n1 0 0 0 255 0\n1 1 0 0 0 255\n0 1 0 10 20 30\n0 0 1 0 0 0\n"
            "5 0 1 2 3 4\n3 0 1 4\n2 0 1\n")
    (tmp_path / "m.ply").write_text(text)
    g = api.read(tmp_path / "m.ply")
    assert g.vertices.dtype == np.float64
    assert g.num_faces == 3 + 1  # pentagon -> 3, triangle -> 1, a 2-corner face is dropped
    np.testing.assert_allclose(g.colors[3], np.array([10, 20, 30]) / 255, rtol=1e-6)


def test_binary_ply_faster_than_open3d(tmp_path):
    n = 1_000_000
    rng = np.random.default_rng(0)
    g = Geometry(vertices=rng.random((n, 3)).astype(np.float32), colors=rng.random((n, 3)).astype(np.float32))
    ply.write(tmp_path / "big.ply", g)

    def best(fn):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    ours, r = best(lambda: ply.read(tmp_path / "big.ply"))
    theirs, ref = best(lambda: o3d.io.read_point_cloud(str(tmp_path / "big.ply")))
    np.testing.assert_array_equal(r.vertices, np.asarray(ref.points).astype(np.float32))
    np.testing.assert_allclose(r.colors, np.asarray(ref.colors), atol=1e-6)
    assert ours < 1.2 * theirs, f"facet3d {ours:.3f}s vs open3d {theirs:.3f}s (target: within 1.2x)"
