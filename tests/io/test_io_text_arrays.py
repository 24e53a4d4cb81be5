"""XYZ/CSV text and NPY/NPZ arrays."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.io import api, xyz
from facet3d.core.io.record import Geometry


def test_agisoft_xyz_rgb(shared_data):
    path = shared_data / "meshes" / "points_agisoft.xyz"
    ref = np.loadtxt(path)
    g = api.read(path)
    np.testing.assert_array_equal(g.vertices, ref[:, :3])
    np.testing.assert_allclose(g.colors, ref[:, 3:6] / 255, rtol=1e-6)  # 0..255 integers -> RGB
    assert g.normals is None


def test_six_column_rules(tmp_path):
    n = np.array([[0, 0, 1.0], [0.6, 0.8, 0], [1, 0, 0]])
    (tmp_path / "n.txt").write_text("# no names here\n// nor here\n" + "\n".join(f"{i} 0 0 " + " ".join(map(str, r)) for i, r in enumerate(n)))
    assert api.read(tmp_path / "n.txt").normals is not None
    (tmp_path / "c.txt").write_text("0 0 0 0.2 0.3 0.4\n1,1,1,0.5,0.1,0.0\n")
    g = api.read(tmp_path / "c.txt")
    np.testing.assert_allclose(g.colors, [[0.2, 0.3, 0.4], [0.5, 0.1, 0.0]], rtol=1e-6)
    (tmp_path / "o.txt").write_text("0 0 0 5 6 7.5\n")
    assert api.read(tmp_path / "o.txt").attributes.keys() == {"col3", "col4", "col5"}


def test_csv_header_and_chunks(tmp_path):
    rows = np.random.default_rng(0).random((1000, 4))
    (tmp_path / "a.csv").write_text("X,Y,Z,Intensity\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in rows))
    g = xyz.read(tmp_path / "a.csv", chunk_lines=64)
    np.testing.assert_array_equal(g.vertices, rows[:, :3])
    np.testing.assert_array_equal(g.attributes["intensity"], rows[:, 3])


def test_xyz_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    nrm = rng.normal(size=(100, 3))
    g = Geometry(vertices=rng.normal(size=(100, 3)) * 1e5, normals=nrm / np.linalg.norm(nrm, axis=1, keepdims=True),
                 colors=rng.random((100, 3)).astype(np.float32))
    g.attributes["intensity"] = rng.random(100)
    api.write(tmp_path / "a.xyz", g)
    r = api.read(tmp_path / "a.xyz")
    np.testing.assert_array_equal(r.vertices, g.vertices)
    np.testing.assert_allclose(r.normals, g.normals, rtol=1e-6)
    np.testing.assert_allclose(r.colors, g.colors, rtol=1e-6)
    np.testing.assert_array_equal(r.attributes["intensity"], g.attributes["intensity"])


def test_npy(tmp_path):
    a = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    g = api.read(tmp_path / "a.npy")
    np.testing.assert_array_equal(g.vertices, a)
    np.save(tmp_path / "b.npy", np.hstack([a, np.full((50, 1), 7.0, np.float32)]))
    np.testing.assert_array_equal(api.read(tmp_path / "b.npy").attributes["intensity"], 7.0)
    np.save(tmp_path / "c.npy", np.zeros((2, 3, 3)))
    with pytest.raises(Exception, match="c.npy"):
        api.read(tmp_path / "c.npy")
    api.write(tmp_path / "d.npy", Geometry(vertices=a))
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), a)


def test_npz_keys_and_roundtrip(shared_data, tmp_path):
    z = np.load(shared_data / "multiview" / "gsplat_test_garden.npz")
    g = api.read(shared_data / "multiview" / "gsplat_test_garden.npz")
    np.testing.assert_array_equal(g.vertices, z["means3d"])
    np.testing.assert_allclose(g.colors, z["colors"] / 255, rtol=1e-6)
    assert g.meta["npz"]["height"] == int(z["height"])
    rng = np.random.default_rng(0)
    m = Geometry(vertices=rng.random((10, 3)), faces=rng.integers(0, 10, (6, 3)), normals=rng.random((10, 3)),
                 colors=rng.random((10, 4)).astype(np.float32), face_colors=rng.random((6, 3)).astype(np.float32))
    m.attributes["faces"] = np.arange(10)  # a clashing name survives under attr_
    m.face_attributes["area"] = rng.random(6)
    api.write(tmp_path / "m.npz", m)
    r = api.read(tmp_path / "m.npz")
    for k in ("vertices", "faces", "normals", "colors", "face_colors"):
        np.testing.assert_array_equal(getattr(r, k), getattr(m, k))
    np.testing.assert_array_equal(r.attributes["faces"], np.arange(10))
    np.testing.assert_array_equal(r.face_attributes["area"], m.face_attributes["area"])
