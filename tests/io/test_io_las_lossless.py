"""LAS/LAZ -> LAS/LAZ keeps what the file carries (laspy as the independent reader)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from facet3d.core.io import api
from facet3d.core.io.record import Geometry

laspy = pytest.importorskip("laspy")
FILES = ["simple.las", "simple1_4.las", "extrabytes.las", "autzen_trim.laz", "sample:simple.las"]


def _path(shared_data, sample_data, name):
    return sample_data / "las" / name.split(":", 1)[1] if name.startswith("sample:") else shared_data / "las" / name


def _vlr_ids(records):
    return [(v.user_id, v.record_id) for v in (records or []) if str(v.user_id).lower() != "copc"]


def _bytes(vlr):
    return vlr.record_data_bytes() if hasattr(vlr, "record_data_bytes") else bytes(vlr.record_data)


def _assert_same(ref, out):
    h, o = ref.header, out.header
    assert str(o.version) == str(h.version) and o.point_format.id == h.point_format.id
    np.testing.assert_array_equal(o.scales, h.scales)
    np.testing.assert_array_equal(o.offsets, h.offsets)
    assert _vlr_ids(o.vlrs) == _vlr_ids(h.vlrs)
    assert _vlr_ids(o.evlrs) == _vlr_ids(h.evlrs)
    for mine, theirs in ((o.vlrs, h.vlrs), (o.evlrs or [], h.evlrs or [])):  # the CRS records byte for byte
        assert [_bytes(v) for v in mine if v.user_id != "LASF_Spec"] == [_bytes(v) for v in theirs if v.user_id != "LASF_Spec"]
    assert list(o.point_format.dimension_names) == list(h.point_format.dimension_names)
    for d in h.point_format.dimensions:
        e = o.point_format.dimension_by_name(d.name)
        assert (e.dtype, e.num_bits) == (d.dtype, d.num_bits), d.name
        for mine, theirs in ((e.scales, d.scales), (e.offsets, d.offsets)):
            assert (mine is None) == (theirs is None), d.name
            if theirs is not None:
                np.testing.assert_array_equal(mine, theirs, err_msg=d.name)
        a, b = np.asarray(ref[d.name]), np.asarray(out[d.name])
        assert a.shape == b.shape and a.dtype == b.dtype, d.name
        np.testing.assert_array_equal(b, a, err_msg=d.name)
    np.testing.assert_array_equal(out.points.array, ref.points.array)  # every raw byte of every point


@pytest.mark.parametrize("ext", ["las", "laz"])
@pytest.mark.parametrize("name", FILES)
def test_las_to_las_keeps_everything(shared_data, sample_data, tmp_path, name, ext):
    src = _path(shared_data, sample_data, name)
    if not src.exists():
        pytest.skip(f"{src} absent")
    ref = laspy.read(src)
    api.write(tmp_path / f"out.{ext}", api.read(src))
    out = laspy.read(tmp_path / f"out.{ext}")
    assert out.header.are_points_compressed == (ext == "laz")
    _assert_same(ref, out)


def test_cli_convert_keeps_crs_and_format(shared_data, cli, tmp_path):
    src = shared_data / "las" / "simple1_4.las"
    r = cli("convert", str(src), str(tmp_path / "o.laz"))
    assert r.returncode == 0, r.stderr
    ref, out = laspy.read(src), laspy.read(tmp_path / "o.laz")
    _assert_same(ref, out)
    assert "WGS" in out.header.evlrs[0].string and out.header.evlrs[0].string == ref.header.evlrs[0].string
    assert [v.record_id for v in out.header.evlrs] == [2112]


def test_copc_records_dropped_with_warning(shared_data, tmp_path):
    las = laspy.read(shared_data / "las" / "simple1_4.las")
    las.header.vlrs.append(laspy.VLR(user_id="copc", record_id=1, description="copc info", record_data=b"\0" * 160))
    las.write(tmp_path / "fake_copc.laz")
    g = api.read(tmp_path / "fake_copc.laz")
    with pytest.warns(UserWarning, match="COPC"):
        api.write(tmp_path / "o.laz", g)
    out = laspy.read(tmp_path / "o.laz")
    assert all(v.user_id != "copc" for v in out.header.vlrs)
    assert _vlr_ids(out.header.vlrs) == _vlr_ids(las.header.vlrs)


def test_transform_recomputes_scales_only_when_needed(shared_data, tmp_path):
    g = api.read(shared_data / "las" / "simple.las")
    g.vertices = g.vertices + 0.5  # still fits at 0.01
    api.write(tmp_path / "a.las", g)
    np.testing.assert_array_equal(laspy.read(tmp_path / "a.las").header.scales, [0.01] * 3)
    g.vertices = g.vertices * 1e4  # 6e9 / 0.01 overflows int32
    with pytest.warns(UserWarning, match="int32"):
        api.write(tmp_path / "b.las", g)
    out = laspy.read(tmp_path / "b.las")
    np.testing.assert_allclose(np.stack([out.x, out.y, out.z], 1), g.vertices, rtol=0, atol=out.header.scales.max())


def test_voxel_like_subset_writes_matching_arrays(shared_data, tmp_path):
    g = api.read(shared_data / "las" / "extrabytes.las")
    idx = np.arange(0, g.num_points, 3)
    sub = Geometry(vertices=g.vertices[idx], colors=g.colors[idx], meta=dict(g.meta), source=g.source,
                   attributes={k: np.asarray(v)[idx] for k, v in g.attributes.items()})
    api.write(tmp_path / "s.las", sub)
    ref, out = laspy.read(shared_data / "las" / "extrabytes.las"), laspy.read(tmp_path / "s.las")
    assert len(out.points) == len(idx) and out.point_format.id == ref.point_format.id
    np.testing.assert_array_equal(out.points.array, ref.points.array[idx])


def test_scan_angle_mapping_format1_to_6(shared_data, tmp_path):
    src = shared_data / "las" / "autzen_trim.laz"
    ref = laspy.read(src)
    ref = laspy.convert(ref, point_format_id=1)
    ref.write(tmp_path / "f1.las")
    ref = laspy.read(tmp_path / "f1.las")
    assert ref.point_format.id == 1 and np.any(np.asarray(ref.scan_angle_rank) != 0)
    api.write(tmp_path / "f6.las", api.read(tmp_path / "f1.las"), point_format=6)
    out = laspy.read(tmp_path / "f6.las")
    assert out.point_format.id == 6 and str(out.header.version) == "1.4"
    assert "scan_angle_rank" not in out.point_format.dimension_names
    np.testing.assert_array_equal(out.scan_angle, np.rint(np.asarray(ref.scan_angle_rank) / 0.006).astype(np.int16))
    np.testing.assert_array_equal(out.header.scales, ref.header.scales)
    assert _vlr_ids(out.header.vlrs) == _vlr_ids(ref.header.vlrs)
    for d in ("intensity", "return_number", "number_of_returns", "classification", "gps_time", "point_source_id"):
        np.testing.assert_array_equal(np.asarray(out[d]), np.asarray(ref[d]), err_msg=d)
    # and back: 6 -> 1 gives the degrees again
    api.write(tmp_path / "back.las", api.read(tmp_path / "f6.las"), point_format=1, las_version="1.2")
    back = laspy.read(tmp_path / "back.las")
    np.testing.assert_array_equal(back.scan_angle_rank, ref.scan_angle_rank)


def test_kitti_float_intensity_scaled_to_16_bits(tmp_path):
    rng = np.random.default_rng(0)
    inten = rng.random(1000).astype(np.float32)
    inten[:2] = [0.0, 1.0]
    g = Geometry(vertices=rng.random((1000, 3)) * 50, attributes={"intensity": inten,
                 "ring": rng.integers(0, 64, 1000).astype(np.uint8),
                 "features": rng.random((1000, 3)).astype(np.float32)})
    api.write(tmp_path / "k.las", g)
    out = laspy.read(tmp_path / "k.las")
    np.testing.assert_array_equal(out.intensity, np.clip(np.rint(inten.astype(np.float64) * 65535), 0, 65535))
    assert np.asarray(out["ring"]).dtype == np.uint8
    f = np.asarray(out["features"])
    assert f.shape == (1000, 3) and f.dtype == np.float32
    np.testing.assert_array_equal(f, g.attributes["features"])


def test_out_of_range_standard_attribute_clipped_with_warning(tmp_path):
    g = Geometry(vertices=np.zeros((3, 3)), attributes={"classification": np.array([1, 300, -2])})
    with pytest.warns(UserWarning, match="classification"):
        api.write(tmp_path / "c.las", g)
    np.testing.assert_array_equal(laspy.read(tmp_path / "c.las").classification, [1, 255, 0])


def test_16_bit_colour_exact_and_8_bit_stays(shared_data, tmp_path):
    for name in ("simple.las", "autzen_trim.laz"):
        ref = laspy.read(shared_data / "las" / name)
        api.write(tmp_path / "c.las", api.read(shared_data / "las" / name))
        out = laspy.read(tmp_path / "c.las")
        for c in ("red", "green", "blue"):
            np.testing.assert_array_equal(out[c], ref[c])
    las = laspy.read(shared_data / "las" / "simple.las")
    las.red[:] = np.arange(len(las.points)) % 200  # 8-bit values in the 16-bit field
    las.write(tmp_path / "eight.las")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.write(tmp_path / "e2.las", api.read(tmp_path / "eight.las"))
    np.testing.assert_array_equal(laspy.read(tmp_path / "e2.las").red, las.red)


@pytest.mark.parametrize("fmt", [4, 8, 10])
def test_waveform_nir_and_scaled_extra_bytes_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(fmt)
    n = 300
    h = laspy.LasHeader(point_format=fmt, version="1.4" if fmt >= 6 else "1.3")
    h.scales, h.offsets = np.array([0.001, 0.002, 0.0005]), np.array([1000.0, 2000.0, -5.0])
    h.add_extra_dims([laspy.ExtraBytesParams("height", "u2", scales=[0.01], offsets=[-10.0]),
                      laspy.ExtraBytesParams("vec", "3i2", scales=[0.1, 0.2, 0.3], offsets=[0, 1, 2]),
                      laspy.ExtraBytesParams("normal_x", "f4"), laspy.ExtraBytesParams("normal_y", "f4"),
                      laspy.ExtraBytesParams("normal_z", "f4")])
    las = laspy.LasData(h)
    las.x, las.y, las.z = rng.random(n) * 100 + 1000, rng.random(n) * 100 + 2000, rng.random(n) * 10
    for d in las.point_format.dimensions:
        if d.name in ("X", "Y", "Z"):
            continue
        arr = las.points.array[d.name] if d.name in las.points.array.dtype.names else None
        if arr is not None and arr.dtype.kind in "iu":
            las.points.array[d.name] = rng.integers(0, 200, arr.shape).astype(arr.dtype)
        elif arr is not None and arr.dtype.kind == "f":
            las.points.array[d.name] = rng.random(arr.shape).astype(arr.dtype)
    for d in ("return_number", "number_of_returns", "classification", "user_data"):
        las[d] = rng.integers(1, 4, n)
    las.write(tmp_path / "src.las")
    ref = laspy.read(tmp_path / "src.las")
    g = api.read(tmp_path / "src.las")
    assert g.normals is not None
    if fmt in (8, 10):
        np.testing.assert_array_equal(g.attributes["nir"], ref.nir)
    if fmt in (4, 10):
        np.testing.assert_array_equal(g.attributes["wavepacket_index"], ref.wavepacket_index)
    for ext in ("las", "laz"):
        api.write(tmp_path / f"o.{ext}", g)
        _assert_same(ref, laspy.read(tmp_path / f"o.{ext}"))


def test_info_json_has_no_laspy_objects(shared_data, cli):
    import json

    from facet3d.core.summary import summarize

    g = api.read(shared_data / "las" / "simple1_4.las")
    assert "las_header" in g.source and "las_header" not in g.meta
    text = json.dumps(summarize(g))
    assert "LasHeader" not in text and "las_header" not in text
    r = cli("info", "--json", str(shared_data / "las" / "autzen_trim.laz"))
    assert r.returncode == 0, r.stderr
    assert "las_header" not in r.stdout
    json.loads(r.stdout)


def test_cli_voxel_down_keeps_header_and_crs(shared_data, cli, tmp_path):
    src = shared_data / "las" / "autzen_trim.laz"
    r = cli("convert", str(src), str(tmp_path / "v.laz"), "--voxel", "5")
    assert r.returncode == 0, r.stderr
    ref, out = laspy.read(src), laspy.read(tmp_path / "v.laz")
    assert 0 < len(out.points) < len(ref.points)
    assert out.point_format.id == ref.point_format.id and str(out.header.version) == str(ref.header.version)
    np.testing.assert_array_equal(out.header.scales, ref.header.scales)
    np.testing.assert_array_equal(out.header.offsets, ref.header.offsets)
    assert _vlr_ids(out.header.vlrs) == _vlr_ids(ref.header.vlrs)


def test_format_change_keeps_extra_bytes_and_crs(shared_data, tmp_path):
    src = shared_data / "las" / "extrabytes.las"
    ref = laspy.read(src)
    api.write(tmp_path / "x7.laz", api.read(src), point_format=7)
    out = laspy.read(tmp_path / "x7.laz")
    assert (str(out.header.version), out.point_format.id) == ("1.4", 7)
    for name in ref.point_format.extra_dimension_names:  # Colors[3], Reserved[7], Flags[2], ... as they were
        assert out.point_format.dimension_by_name(name).dtype == ref.point_format.dimension_by_name(name).dtype
        np.testing.assert_array_equal(np.asarray(out[name]), np.asarray(ref[name]), err_msg=name)
    for c in ("red", "green", "blue", "intensity", "gps_time"):
        np.testing.assert_array_equal(out[c], ref[c])
    src = shared_data / "las" / "simple1_4.las"
    ref = laspy.read(src)
    with pytest.warns(UserWarning, match="no RGB"):
        api.write(tmp_path / "x1.las", api.read(src), point_format=1, las_version="1.2")
    out = laspy.read(tmp_path / "x1.las")
    assert (str(out.header.version), out.point_format.id) == ("1.2", 1)
    wkt = [v for v in out.header.vlrs if v.record_id == 2112]  # LAS 1.2 has no EVLRs: the WKT is a VLR now
    assert len(wkt) == 1 and wkt[0].string == ref.header.evlrs[0].string
    np.testing.assert_array_equal(out.scan_angle_rank, np.rint(np.asarray(ref.scan_angle) * 0.006))
