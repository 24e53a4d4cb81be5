"""PCD: the shared PCL scans (ascii + binary_compressed) against open3d; binary round trips."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.errors import FormatError
from facet3d.core.io import api, pcd
from facet3d.core.io.record import Geometry

o3d = pytest.importorskip("open3d")
SCANS = ["bunny.pcd", "car6.pcd", "milk.pcd", "sac_plane_test.pcd", "table_scene_mug_stereo_textured.pcd"]


@pytest.mark.parametrize("name", SCANS)
def test_scans_match_open3d(shared_data, name):
    path = shared_data / "scans" / name
    g = api.read(path)
    ref = o3d.io.read_point_cloud(str(path))
    pts = np.asarray(ref.points)
    assert g.num_points == len(pts)
    np.testing.assert_allclose(g.vertices, pts, rtol=0, atol=1e-6, equal_nan=True)
    if ref.has_normals():
        np.testing.assert_allclose(g.normals, np.asarray(ref.normals), atol=1e-6)
    if ref.has_colors():
        np.testing.assert_allclose(g.colors[:, :3], np.asarray(ref.colors), atol=1e-6)


def test_modes_of_shared_scans(shared_data):
    modes = {n: api.read(shared_data / "scans" / n).meta["pcd_data"] for n in SCANS}
    assert modes["bunny.pcd"] == "ascii" and modes["car6.pcd"] == "binary_compressed"
    g = api.read(shared_data / "scans" / "table_scene_mug_stereo_textured.pcd")
    assert g.meta["height"] == 480 and g.meta["non_finite_points"] > 0  # organized stereo cloud keeps NaNs
    assert "curvature" in api.read(shared_data / "scans" / "sac_plane_test.pcd").attributes


def test_roundtrip_binary(tmp_path):
    rng = np.random.default_rng(0)
    g = Geometry(vertices=rng.random((300, 3)).astype(np.float32), normals=rng.random((300, 3)).astype(np.float32),
                 colors=rng.integers(0, 256, (300, 3)).astype(np.float32) / 255)
    g.attributes["intensity"] = rng.random(300).astype(np.float32)
    g.attributes["label"] = rng.integers(0, 5, 300).astype(np.uint16)
    g.attributes["feat"] = rng.random((300, 4)).astype(np.float32)
    api.write(tmp_path / "a.pcd", g)
    r = api.read(tmp_path / "a.pcd")
    np.testing.assert_array_equal(r.vertices, g.vertices)
    np.testing.assert_array_equal(r.normals, g.normals)
    np.testing.assert_allclose(r.colors, g.colors, atol=1e-6)
    for k in ("intensity", "label", "feat"):
        np.testing.assert_array_equal(r.attributes[k], g.attributes[k])
    ref = o3d.io.read_point_cloud(str(tmp_path / "a.pcd"))
    np.testing.assert_allclose(np.asarray(ref.points), g.vertices)
    np.testing.assert_allclose(np.asarray(ref.colors), g.colors, atol=1e-6)


def test_ascii_packed_rgb_and_rgba(tmp_path):
    packed = np.array([(10 << 16) | (20 << 8) | 30], np.uint32)
    text = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgba\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\n"
            f"WIDTH 1\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 1\nDATA ascii\n1 2 3 {int(packed[0] | (40 << 24))}\n")
    (tmp_path / "a.pcd").write_text(text)
    g = api.read(tmp_path / "a.pcd")
    np.testing.assert_allclose(g.colors, [[10 / 255, 20 / 255, 30 / 255, 40 / 255]], rtol=1e-6)


def test_lzf_roundtrip_and_corruption(shared_data, tmp_path):
    raw = (shared_data / "scans" / "milk.pcd").read_bytes()
    (tmp_path / "bad.pcd").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match="bad.pcd"):
        api.read(tmp_path / "bad.pcd")
    assert pcd.lzf_decompress(bytes([2]) + b"abc" + bytes([0xE0, 3, 2]), 15) == b"abc" * 5  # overlapping back-ref
