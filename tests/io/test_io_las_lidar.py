"""LAS/LAZ against laspy; KITTI / nuScenes headerless sweeps against np.fromfile."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.errors import FormatError
from facet3d.core.io import api, las
from facet3d.core.io.record import Geometry

laspy = pytest.importorskip("laspy")
LAS = ["simple.las", "simple.laz", "simple1_4.las", "extrabytes.las", "autzen_trim.laz"]


@pytest.mark.parametrize("name", LAS)
def test_las_matches_laspy(shared_data, name):
    path = shared_data / "las" / name
    ref = laspy.read(path)
    g = api.read(path)
    assert g.vertices.dtype == np.float64
    np.testing.assert_array_equal(g.vertices, np.stack([ref.x, ref.y, ref.z], axis=1))
    np.testing.assert_array_equal(g.attributes["intensity"], ref.intensity)
    np.testing.assert_array_equal(g.attributes["classification"], np.asarray(ref.classification))
    np.testing.assert_array_equal(g.attributes["return_number"], np.asarray(ref.return_number))
    for extra in ref.point_format.extra_dimension_names:
        np.testing.assert_array_equal(g.attributes[extra], np.asarray(ref[extra]))
    h = ref.header
    assert g.meta["point_count"] == h.point_count and g.meta["las_version"] == str(h.version)
    np.testing.assert_array_equal(g.meta["mins"], h.mins)
    rgb = np.stack([ref.red, ref.green, ref.blue], axis=1).astype(np.float64)
    np.testing.assert_allclose(g.colors, rgb / (255 if rgb.max() <= 255 else 65535), rtol=1e-6)


def test_las_crs_and_chunks(shared_data):
    g = las.read(shared_data / "las" / "autzen_trim.laz", chunk_size=7000)  # many uneven chunks
    whole = las.read(shared_data / "las" / "autzen_trim.laz")
    np.testing.assert_array_equal(g.vertices, whole.vertices)
    np.testing.assert_array_equal(g.attributes["gps_time"], whole.attributes["gps_time"])
    assert "Lambert" in g.meta["crs"]
    assert "WGS84" in api.read(shared_data / "las" / "simple1_4.las").meta["crs"]


@pytest.mark.parametrize("ext", ["las", "laz"])
def test_las_roundtrip(tmp_path, ext):
    rng = np.random.default_rng(0)
    g = Geometry(vertices=rng.random((500, 3)) * 100 + [637000, 851000, 400], normals=rng.normal(size=(500, 3)),
                 colors=rng.integers(0, 65536, (500, 3)).astype(np.float32) / 65535)
    g.attributes["intensity"] = rng.integers(0, 65535, 500).astype(np.uint16)
    g.attributes["classification"] = rng.integers(0, 30, 500)
    g.attributes["gps_time"] = rng.random(500) * 1e5
    g.attributes["reflectance"] = rng.random(500).astype(np.float32)
    api.write(tmp_path / f"a.{ext}", g)
    ref = laspy.read(tmp_path / f"a.{ext}")
    assert ref.header.are_points_compressed == (ext == "laz") and ref.header.version.minor == 4
    r = api.read(tmp_path / f"a.{ext}")
    np.testing.assert_allclose(r.vertices, g.vertices, rtol=0, atol=r.meta["scales"][0])
    np.testing.assert_allclose(np.stack([ref.x, ref.y, ref.z], 1), g.vertices, rtol=0, atol=r.meta["scales"][0])
    np.testing.assert_allclose(r.colors, g.colors, atol=1e-6)
    np.testing.assert_allclose(r.normals, g.normals)
    for k in ("intensity", "classification", "gps_time", "reflectance"):
        np.testing.assert_array_equal(r.attributes[k], g.attributes[k])


def test_kitti_and_nuscenes(shared_data, tmp_path):
    kitti = shared_data / "driving" / "kitti_000008" / "000008.bin"
    ref = np.fromfile(kitti, np.float32).reshape(-1, 4)
    g = api.read(kitti, format="kitti-bin")
    np.testing.assert_array_equal(g.vertices, ref[:, :3])
    np.testing.assert_array_equal(g.attributes["intensity"], ref[:, 3])
    nus = next((shared_data / "driving" / "nuscenes_sample").glob("*.pcd.bin"))
    ref = np.fromfile(nus, np.float32).reshape(-1, 5)
    g = api.read(nus, format="nuscenes-bin")
    assert g.num_points == 34688
    np.testing.assert_array_equal(g.attributes["ring"], ref[:, 4])
    with pytest.raises(FormatError, match="not a multiple"):
        api.read(nus, format="kitti-bin") if nus.stat().st_size % 16 else api.read(kitti, format="nuscenes-bin")
    api.write(tmp_path / "x.pcd.bin", g, format="nuscenes-bin")
    np.testing.assert_array_equal(np.fromfile(tmp_path / "x.pcd.bin", np.float32).reshape(-1, 5), ref)
    api.write(tmp_path / "y.bin", g, format="kitti-bin")
    np.testing.assert_array_equal(api.read(tmp_path / "y.bin", format="kitti-bin").vertices, ref[:, :3])
