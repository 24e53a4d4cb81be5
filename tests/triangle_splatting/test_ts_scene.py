"""TriangleScene: SH evaluation, mesh conversion, PLY round trips readable by generic readers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import FormatError, GeometryError
from facet3d.core.io.record import Geometry
from facet3d.plugins.triangle_splatting.scene import SH_C0, TriangleScene, eval_sh


def _ts_scene(n=5, deg=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = (deg + 1) ** 2 - 1
    return TriangleScene("ts", torch.randn(n, 3, generator=g), torch.randn(n, m, 3, generator=g) * 0.1,
                         torch.rand(n, generator=g), torch.rand(n, generator=g) + 0.01,
                         triangles=torch.randn(n, 3, 3, generator=g))


def _tsp_scene(deg=1):
    g = torch.Generator().manual_seed(1)
    m = (deg + 1) ** 2 - 1
    return TriangleScene("ts+", torch.randn(6, 3, generator=g), torch.randn(6, m, 3, generator=g) * 0.1,
                         torch.rand(6, generator=g), torch.tensor(0.37), vertices=torch.randn(6, 3, generator=g),
                         faces=torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 0], [1, 3, 5]]))


def test_sh_constants_and_degrees():
    dirs = torch.nn.functional.normalize(torch.randn(200, 3, dtype=torch.float64), dim=-1)
    dc = torch.randn(200, 3, dtype=torch.float64)
    assert torch.allclose(eval_sh(0, dc, None, dirs), SH_C0 * dc)
    # orthonormality of the real SH basis: integral over the sphere of Y_i Y_j = delta_ij
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(100000, 3, generator=g, dtype=torch.float64), dim=-1)
    # one evaluation with 16 "channels": channel i has coefficient i set to 1
    dc1 = torch.zeros(1, 16, dtype=torch.float64)
    dc1[0, 0] = 1
    rest = torch.zeros(1, 15, 16, dtype=torch.float64)
    rest[0, torch.arange(15), torch.arange(1, 16)] = 1
    Y = eval_sh(3, dc1.expand(len(d), 16), rest.expand(len(d), 15, 16), d)
    gram = 4 * np.pi * (Y.T @ Y) / len(d)
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.04)
    # lower degrees ignore the higher coefficients
    rest = torch.randn(200, 15, 3, dtype=torch.float64)
    full1 = eval_sh(1, dc, rest, dirs)
    assert torch.allclose(full1, eval_sh(1, dc, rest[:, :3], dirs))
    with pytest.raises(GeometryError):
        eval_sh(4, dc, rest, dirs)


def test_colours_and_conversion():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    vc = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], dtype=np.float32)
    s = TriangleScene.from_geometry(Geometry(verts, faces, colors=vc))
    assert s.form == "ts+" and len(s) == 2 and float(s.sigma) < 1e-3 and bool((s.opacity == 1).all())
    cols = s.triangle_colors(torch.tensor([0.0, 0.0, 5.0]))
    assert cols.shape == (2, 3, 3) and torch.allclose(cols[0], torch.as_tensor(vc[:3]), atol=1e-6)
    fc = np.array([[0.2, 0.4, 0.6], [0.9, 0.1, 0.0]], dtype=np.float32)
    s2 = TriangleScene.from_geometry(Geometry(verts, faces, face_colors=fc))
    assert s2.form == "ts" and s2.triangles.shape == (2, 3, 3)
    assert torch.allclose(s2.triangle_colors(torch.zeros(3)), torch.as_tensor(fc), atol=1e-6)
    s3 = TriangleScene.from_geometry(Geometry(verts, faces))
    assert torch.allclose(s3.triangle_colors(torch.zeros(3)), torch.full((2, 3, 3), 0.7))
    with pytest.raises(GeometryError):
        TriangleScene.from_geometry(Geometry(verts))
    ts = s.to_ts()
    assert ts.form == "ts" and torch.equal(ts.triangles, s.vertices[s.faces])


@pytest.mark.parametrize("ascii", [False, True])
def test_ply_round_trip_ts(tmp_path, ascii):
    s = _ts_scene()
    path = s.save_ply(tmp_path / "scene.ply", ascii=ascii)
    r = TriangleScene.load_ply(path)
    assert r.form == "ts" and r.sh_degree == 3
    for name in ("triangles", "sh_dc", "sh_rest", "opacity", "sigma"):
        assert torch.allclose(getattr(r, name), getattr(s, name), atol=1e-6), name


def test_ply_round_trip_ts_plus(tmp_path):
    s = _tsp_scene()
    r = TriangleScene.load_ply(s.save_ply(tmp_path / "plus.ply"))
    assert r.form == "ts+" and r.sh_degree == 1 and torch.equal(r.faces, s.faces)
    for name in ("vertices", "sh_dc", "sh_rest", "opacity", "sigma"):
        assert torch.allclose(getattr(r, name), getattr(s, name), atol=1e-6), name


def test_ply_opens_in_generic_readers(tmp_path):
    o3d = pytest.importorskip("open3d")
    trimesh = pytest.importorskip("trimesh")
    s = _ts_scene(n=4, deg=1)
    p = s.save_ply(tmp_path / "ts.ply")
    m = o3d.io.read_triangle_mesh(str(p))
    assert len(m.triangles) == 4 and len(m.vertices) == 12
    np.testing.assert_allclose(np.asarray(m.vertices).reshape(4, 3, 3), s.triangles.numpy(), atol=1e-6)
    tm = trimesh.load(str(p), process=False)
    assert tm.faces.shape == (4, 3)
    sp = _tsp_scene()
    p2 = sp.save_ply(tmp_path / "plus.ply")
    m2 = o3d.io.read_triangle_mesh(str(p2))
    assert len(m2.triangles) == 4 and m2.has_vertex_colors()
    rgb = np.clip(sp.sh_dc.numpy() * SH_C0 + 0.5, 0, 1)
    np.testing.assert_allclose(np.asarray(m2.vertex_colors), rgb, atol=1 / 255 + 1e-6)
    # a hand-rolled numpy reader: the header lists plain scalar properties + one face list
    raw = p2.read_bytes()
    head, body = raw.split(b"end_header\n", 1)
    lines = head.decode().splitlines()
    assert "format binary_little_endian 1.0" in lines and "element vertex 6" in lines
    names = {"float": "<f4", "uchar": "u1", "int": "<i4", "double": "<f8"}
    vprops = []
    in_vertex = False
    for ln in lines:
        if ln.startswith("element"):
            in_vertex = ln.split()[1] == "vertex"
        elif ln.startswith("property") and in_vertex:
            _, t, name = ln.split()
            vprops.append((name, names[t]))
    rec = np.frombuffer(body, dtype=np.dtype(vprops), count=6)
    np.testing.assert_allclose(rec["opacity"], sp.opacity.numpy(), atol=1e-7)
    np.testing.assert_allclose(np.stack([rec["x"], rec["y"], rec["z"]], 1), sp.vertices.numpy(), atol=1e-7)


def test_load_rejects_plain_ply(tmp_path):
    from facet3d.core.io.ply import write

    p = tmp_path / "plain.ply"
    write(p, Geometry(np.zeros((3, 3)), np.array([[0, 1, 2]])))
    with pytest.raises(FormatError):
        TriangleScene.load_ply(p)


def test_scene_validation():
    with pytest.raises(GeometryError):
        TriangleScene("ts", torch.zeros(2, 3), torch.zeros(2, 0, 3), torch.ones(2), torch.ones(3),
                      triangles=torch.zeros(2, 3, 3))
    with pytest.raises(GeometryError):
        TriangleScene("xx", torch.zeros(2, 3), torch.zeros(2, 0, 3), torch.ones(2), torch.ones(2),
                      triangles=torch.zeros(2, 3, 3))
