"""OBJ / OFF / STL / GLB / glTF via trimesh: against open3d and a direct count of the file's lines."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.io import api
from facet3d.core.io.record import Geometry

o3d = pytest.importorskip("open3d")
OBJS = ["cow.obj", "fandisk.obj", "fuze.obj", "quadknot.obj", "rocker-arm.obj", "spot.obj", "stanford-bunny.obj",
        "suzanne.obj", "teapot.obj", "bad/wallhole.obj"]


def _obj_direct(path):
    """(positions [V, 3], triangle count) straight from the `v` and `f` lines."""
    pos, tris = [], 0
    for line in path.read_text(errors="replace").replace("\\\n", " ").splitlines():
        tok = line.split()
        if tok[:1] == ["v"]:
            pos.append([float(t) for t in tok[1:4]])
        elif tok[:1] == ["f"]:
            tris += len(tok) - 3
    return np.array(pos), tris


def _unique_rows(a):
    return np.unique(np.round(a, 6), axis=0)


@pytest.mark.parametrize("name", OBJS)
def test_obj_against_its_lines(shared_data, name):
    path = shared_data / "meshes" / name
    pos, tris = _obj_direct(path)
    g = api.read(path)
    assert g.num_faces == tris
    # vertices split by uv keep the same positions; every used position appears
    used = np.unique(g.faces)
    np.testing.assert_array_equal(_unique_rows(g.vertices[used]), _unique_rows(pos[np.unique(_direct_face_ids(path))]))
    np.testing.assert_allclose(g.vertices.min(0), pos[np.unique(_direct_face_ids(path))].min(0))


def _direct_face_ids(path):
    ids, nv = [], 0
    for line in path.read_text(errors="replace").replace("\\\n", " ").splitlines():
        tok = line.split()
        if tok[:1] == ["v"]:
            nv += 1
        elif tok[:1] == ["f"]:
            for t in tok[1:]:
                i = int(t.split("/")[0])
                ids.append(i - 1 if i > 0 else nv + i)
    return np.array(ids)


@pytest.mark.parametrize("rel", ["meshes/cow.obj", "meshes/spot.obj", "modelnet/chair/chair_0001.off",
                                 "modelnet/toilet/toilet_0001.off", "meshes/Duck.glb", "meshes/featuretype.STL",
                                 "meshes/bad/busted.STL", "meshes/bad/soup.stl"])
def test_meshes_match_open3d(shared_data, rel):
    g = api.read(shared_data / rel)
    ref = o3d.io.read_triangle_mesh(str(shared_data / rel))
    rv, rt = np.asarray(ref.vertices), np.asarray(ref.triangles)
    assert g.num_faces == len(rt)
    # open3d merges STL corners and splits by uv differently; the triangles' corner positions must agree
    np.testing.assert_allclose(g.vertices[g.faces], rv[rt], rtol=0, atol=1e-5)


def test_textures(shared_data):
    duck = api.read(shared_data / "meshes" / "Duck.glb")
    assert duck.texture is not None and duck.texture.size == (512, 512)
    assert duck.uv.shape == (duck.num_points, 2)
    fuze = api.read(shared_data / "meshes" / "fuze.obj")  # its .mtl/.jpg are not shipped: loads untextured
    assert fuze.texture is None and fuze.uv is not None


ODD_OBJ = """# comment line
mtllib missing.mtl
o thing
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0   # trailing comment
v 0 0 1
vt 0 0
vn 0 0 1
g group
usemtl nothing
f -5 -4 -3 -2
f 1/1/1 2/1/1 5/1/1

s off
"""


def test_odd_but_valid_files(tmp_path):
    (tmp_path / "odd.obj").write_text(ODD_OBJ)
    g = api.read(tmp_path / "odd.obj")
    assert g.num_faces == 3 and len(np.unique(np.round(g.vertices, 6), axis=0)) == 5
    (tmp_path / "pts.obj").write_text("# only points\nv 0 0 0\nv 1 2 3\nv 4 5 6\n")
    g = api.read(tmp_path / "pts.obj")
    assert g.kind == "point_cloud" and g.num_points == 3
    (tmp_path / "empty.obj").write_text("# nothing at all\n")
    assert api.read(tmp_path / "empty.obj").num_points == 0
    (tmp_path / "a.off").write_text("OFF\n# comment\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n4 0 1 2 3\n3 0 1 4\n")
    assert api.read(tmp_path / "a.off").num_faces == 3
    (tmp_path / "glued.off").write_text("OFF3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")  # ModelNet quirk
    assert api.read(tmp_path / "glued.off").num_faces == 1
    (tmp_path / "nofaces.off").write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    assert api.read(tmp_path / "nofaces.off").kind == "point_cloud"
    (tmp_path / "a.stl").write_text("solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\n"
                                    "vertex 0 1 0\nendloop\nendfacet\nendsolid t\n")
    assert api.read(tmp_path / "a.stl").num_faces == 1


def _mesh():
    rng = np.random.default_rng(0)
    v = rng.random((30, 3))
    f = np.array([[i, (i + 1) % 30, (i + 7) % 30] for i in range(30)])
    return Geometry(vertices=v, faces=f)


@pytest.mark.parametrize("ext", ["obj", "off", "stl", "glb", "gltf"])
def test_mesh_roundtrip(tmp_path, ext):
    g = _mesh()
    if ext in ("obj", "glb", "gltf"):  # OFF and STL writers store geometry only
        g.colors = np.random.default_rng(1).integers(0, 256, (30, 4)).astype(np.float32) / 255
    api.write(tmp_path / f"m.{ext}", g)
    r = api.read(tmp_path / f"m.{ext}")
    assert r.num_faces == g.num_faces
    tol = 1e-6 if ext in ("stl", "glb", "gltf") else 1e-12  # STL and glTF store float32
    np.testing.assert_allclose(r.vertices[r.faces], g.vertices[g.faces], atol=tol)
    if g.colors is not None:
        ch = 3 if ext == "obj" else 4  # OBJ vertex colours have no alpha
        np.testing.assert_allclose(r.colors[r.faces][..., :ch], g.colors[g.faces][..., :ch], atol=1e-6)


def test_obj_normals_and_point_cloud_roundtrip(tmp_path):
    g = _mesh()
    n = np.random.default_rng(2).normal(size=(30, 3))
    g.normals = n / np.linalg.norm(n, axis=1, keepdims=True)
    api.write(tmp_path / "n.obj", g)
    r = api.read(tmp_path / "n.obj")
    np.testing.assert_allclose(r.normals[r.faces], g.normals[g.faces], atol=1e-6)
    p = Geometry(vertices=g.vertices, colors=np.full((30, 3), 0.5, np.float32))
    api.write(tmp_path / "p.obj", p)
    r = api.read(tmp_path / "p.obj")
    assert r.kind == "point_cloud"
    np.testing.assert_array_equal(r.vertices, p.vertices)
    np.testing.assert_allclose(r.colors[:, :3], 0.5, atol=1 / 255)
