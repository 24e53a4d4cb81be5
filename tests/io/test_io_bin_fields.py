"""`--format bin --fields ...`: any headerless record layout; kitti-bin warns about other column counts.

numpy.fromfile with the same record dtype is the independent reader.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from facet3d.core.errors import Facet3DWarning, FormatError, UsageError
from facet3d.core.io import api, lidar_bin
from facet3d.core.io.record import Geometry


def _sweep(n=20000, seed=0):
    """A lidar-like sweep in scan order: ring by ring, azimuth increasing. -> [n, 3] float64."""
    rng = np.random.default_rng(seed)
    ring = np.repeat(np.arange(32), n // 32 + 1)[:n]
    az = np.tile(np.linspace(0, 2 * np.pi, n // 32 + 1, endpoint=False), 32)[:n]
    r = 4 + 0.5 * ring + 0.05 * rng.random(n)
    return np.stack([r * np.cos(az), r * np.sin(az), -1.7 + 0.04 * ring], axis=1)


def _scannet(path, n=20000):
    """x y z r g b float32, colours 0..255 (ScanNet as mmdetection3d stores it)."""
    rng = np.random.default_rng(1)
    table = np.hstack([_sweep(n), rng.integers(0, 256, (n, 3))]).astype(np.float32)
    table.tofile(path)
    return table


def test_scannet_layout_reads_and_writes_back_identically(tmp_path):
    table = _scannet(tmp_path / "scene.bin")
    g = api.read(tmp_path / "scene.bin", format="bin", fields="x,y,z,r,g,b")
    np.testing.assert_array_equal(g.vertices, table[:, :3])
    np.testing.assert_allclose(g.colors, table[:, 3:] / 255, rtol=1e-6)
    assert g.vertices.dtype == np.float32 and not g.attributes
    api.write(tmp_path / "out.bin", g, format="bin")  # the source layout is reused
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "scene.bin").read_bytes()


def test_unit_range_colours_stay_floats(tmp_path):
    rng = np.random.default_rng(2)
    table = np.hstack([rng.random((100, 3)), rng.random((100, 3))]).astype(np.float32)  # SUN RGB-D: 0..1
    table.tofile(tmp_path / "s.bin")
    g = api.read(tmp_path / "s.bin", format="bin", fields="x,y,z,red,green,blue")
    np.testing.assert_array_equal(g.colors, table[:, 3:])
    api.write(tmp_path / "o.bin", g, format="bin")
    assert (tmp_path / "o.bin").read_bytes() == (tmp_path / "s.bin").read_bytes()


def test_typed_fields_normals_and_padding(tmp_path):
    rng = np.random.default_rng(3)
    dt = np.dtype([("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"),
                   ("ring", "<u2"), ("pad", "u1", (2,)), ("t", "<f8"), ("label", "u1")])
    rec = np.zeros(50, dt)
    for k in dt.names:
        rec[k] = rng.integers(0, 200, rec[k].shape) if dt[k].kind in "iu" else rng.random(rec[k].shape)
    rec["pad"] = 0
    rec.tofile(tmp_path / "t.bin")
    fields = "x:f8,y:f8,z:f8,nx,ny,nz,ring:u2,_:u1,_:u1,t:f8,label:u1"
    g = api.read(tmp_path / "t.bin", format="bin", fields=fields)
    assert g.vertices.dtype == np.float64
    np.testing.assert_array_equal(g.vertices, np.stack([rec["x"], rec["y"], rec["z"]], axis=1))
    np.testing.assert_array_equal(g.normals, np.stack([rec["nx"], rec["ny"], rec["nz"]], axis=1))
    for k in ("ring", "t", "label"):
        assert g.attributes[k].dtype == rec[k].dtype, k
        np.testing.assert_array_equal(g.attributes[k], rec[k])
    assert set(g.attributes) == {"ring", "t", "label"}
    api.write(tmp_path / "o.bin", g, format="bin")
    assert (tmp_path / "o.bin").read_bytes() == (tmp_path / "t.bin").read_bytes()


def test_dtype_option(tmp_path):
    a = np.random.default_rng(4).random((10, 4))
    a.tofile(tmp_path / "d.bin")
    g = api.read(tmp_path / "d.bin", format="bin", fields="x,y,z,intensity", dtype="float64")
    np.testing.assert_array_equal(g.vertices, a[:, :3])
    np.testing.assert_array_equal(g.attributes["intensity"], a[:, 3])
    with pytest.raises(UsageError, match="float32 or float64"):
        api.read(tmp_path / "d.bin", format="bin", fields="x,y,z", dtype="int8")


def test_size_not_a_multiple_names_the_record(tmp_path):
    (tmp_path / "odd.bin").write_bytes(b"\0" * 50)
    with pytest.raises(FormatError, match=r"odd\.bin.*not a multiple of the 24-byte bin record"):
        api.read(tmp_path / "odd.bin", format="bin", fields="x,y,z,r,g,b")


@pytest.mark.parametrize("fields, match", [
    (None, "--format bin needs --fields"), ("", "--format bin needs --fields"),
    ("x,y,intensity", "missing: z"), ("x,y,z,x", "twice"), ("x,y,z,i:f16", "unknown type"), ("x,y,z,a b", "not a field"),
])
def test_bad_fields_are_usage_errors(tmp_path, fields, match):
    (tmp_path / "a.bin").write_bytes(b"\0" * 48)
    with pytest.raises(UsageError, match=match):
        api.read(tmp_path / "a.bin", format="bin", fields=fields)


def test_writer_for_a_foreign_geometry_warns_about_gaps(tmp_path):
    rng = np.random.default_rng(5)
    g = Geometry(vertices=rng.random((20, 3)), normals=rng.random((20, 3)), colors=rng.random((20, 3)).astype(np.float32),
                 attributes={"intensity": rng.random(20), "label": np.arange(20)})
    with pytest.warns(Facet3DWarning) as rec:
        api.write(tmp_path / "o.bin", g, format="bin", fields="x,y,z,red:u1,green:u1,blue:u1,intensity,ring:u2")
    msgs = " | ".join(str(w.message) for w in rec)
    assert "no ring; written as 0" in msgs and "normals" in msgs and "'label'" in msgs
    out = np.fromfile(tmp_path / "o.bin", np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                                      ("green", "u1"), ("blue", "u1"), ("intensity", "<f4"),
                                                      ("ring", "<u2")]))
    np.testing.assert_array_equal(out["x"], g.vertices[:, 0].astype(np.float32))
    np.testing.assert_array_equal(out["green"], np.rint(g.colors[:, 1].astype(np.float64) * 255))
    np.testing.assert_array_equal(out["intensity"], g.attributes["intensity"].astype(np.float32))
    assert not out["ring"].any()
    with pytest.raises(UsageError, match="needs --fields"):
        api.write(tmp_path / "p.bin", g, format="bin")


# -- kitti-bin: is it really 4 floats a point? -------------------------------------------------
def test_six_column_file_read_as_kitti_warns(tmp_path):
    _scannet(tmp_path / "six.bin")
    assert (tmp_path / "six.bin").stat().st_size % 16 == 0  # kitti-bin's size check alone cannot tell
    with pytest.warns(Facet3DWarning, match=r"6 float32 columns.*--format bin --fields x,y,z,r,g,b"):
        api.read(tmp_path / "six.bin", format="kitti-bin")


def test_size_that_fits_another_column_count_is_named(tmp_path):
    _scannet(tmp_path / "odd.bin", n=20001)  # 20001 * 24 bytes: not a multiple of 16
    with pytest.raises(FormatError, match=r"not a multiple of the 16-byte kitti-bin record.*fits 6 float32 columns\? "
                                          r"try --format bin --fields x,y,z,r,g,b"):
        api.read(tmp_path / "odd.bin", format="kitti-bin")


def test_real_kitti_sweep_does_not_warn(shared_data):
    path = shared_data / "driving" / "kitti_000008" / "000008.bin"
    assert path.stat().st_size % 24 == 0  # a multiple of 6 floats too: the content has to decide
    with warnings.catch_warnings():
        warnings.simplefilter("error", Facet3DWarning)
        g = api.read(path, format="kitti-bin")
    ref = np.fromfile(path, np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(g.vertices, ref[:, :3])


def test_shuffled_kitti_and_random_points_do_not_warn(shared_data, tmp_path):
    ref = np.fromfile(shared_data / "driving" / "kitti_000008" / "000008.bin", np.float32).reshape(-1, 4)
    np.random.default_rng(0).permutation(ref).tofile(tmp_path / "shuffled.bin")  # no scan order to judge by
    np.random.default_rng(1).random((3000, 4)).astype(np.float32).tofile(tmp_path / "random.bin")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Facet3DWarning)
        api.read(tmp_path / "shuffled.bin", format="kitti-bin")
        api.read(tmp_path / "random.bin", format="kitti-bin")


def test_real_nuscenes_sweep_read_as_kitti_warns(shared_data):
    path = next((shared_data / "driving" / "nuscenes_sample").glob("*.pcd.bin"))
    if path.stat().st_size % 16:
        pytest.skip("this sample is caught by the size check already")
    with pytest.warns(Facet3DWarning, match="5 float32 columns.*nuscenes-bin"):
        api.read(path, format="kitti-bin")
    assert lidar_bin.likely_columns(path) == 5
