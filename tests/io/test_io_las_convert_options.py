"""LAS write options: --point-format / --las-version conversions, what is dropped (warned), impossible
combinations refused, and the external waveform file (.wdp) carried beside the output. laspy checks.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pytest

from facet3d.core.errors import Facet3DWarning, UsageError
from facet3d.core.io import api, las

laspy = pytest.importorskip("laspy")


@contextmanager
def _no_facet3d_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", Facet3DWarning)
        yield


def _synthetic(path, fmt, version, n=200, seed=0, external_wdp=False, **fill):
    """A LAS file of point format `fmt` with every dimension non-zero (unless `fill` says otherwise)."""
    rng = np.random.default_rng(seed)
    h = laspy.LasHeader(point_format=fmt, version=version)
    h.scales, h.offsets = np.array([0.01, 0.01, 0.01]), np.array([100.0, 200.0, 0.0])
    if las.has_waveform(h.point_format):
        v = laspy.vlrs.known.WaveformPacketVlr(100, description="wave packet")
        v.parsed_record = laspy.vlrs.known.WaveformPacketStruct(
            bits_per_sample=8, waveform_compression_type=0, number_of_samples=64, temporal_sample_spacing=1000,
            digitizer_gain=1.0, digitizer_offset=0.0)
        h.vlrs.append(v)
        h.global_encoding.waveform_data_packets_external = external_wdp
    if fmt >= 6:
        h.global_encoding.gps_time_type = True  # adjusted standard GPS time
    data = laspy.LasData(h)
    data.x, data.y, data.z = rng.random(n) * 10 + 100, rng.random(n) * 10 + 200, rng.random(n)
    for d in data.point_format.dimensions:
        if d.name in ("X", "Y", "Z"):
            continue
        hi = 2 ** d.num_bits - 1 if d.num_bits and d.num_bits < 8 else 200
        if d.name in fill:
            data[d.name] = np.full(n, fill[d.name])
        elif d.name in ("gps_time", "x_t", "y_t", "z_t", "return_point_wave_location"):
            data[d.name] = rng.random(n)
        else:
            data[d.name] = rng.integers(1, hi + 1, n)
    data.write(path)
    return laspy.read(path)


def test_rgb_dropped_going_to_format_1_everything_else_kept(shared_data, tmp_path):
    src = shared_data / "las" / "simple.las"  # 1.2, point format 3
    ref = laspy.read(src)
    with pytest.warns(Facet3DWarning, match=r"point format 1 has no RGB; not written") as rec:
        api.write(tmp_path / "f1.las", api.read(src), point_format=1)
    assert len([w for w in rec if issubclass(w.category, Facet3DWarning)]) == 1
    out = laspy.read(tmp_path / "f1.las")
    assert (out.point_format.id, str(out.header.version)) == (1, "1.2")
    assert list(out.point_format.extra_dimension_names) == []
    for d in out.point_format.dimension_names:
        np.testing.assert_array_equal(np.asarray(out[d]), np.asarray(ref[d]), err_msg=d)


def test_nir_dropped_8_to_7(tmp_path):
    ref = _synthetic(tmp_path / "f8.las", 8, "1.4")
    with pytest.warns(Facet3DWarning, match=r"point format 7 has no nir; not written"):
        api.write(tmp_path / "f7.las", api.read(tmp_path / "f8.las"), point_format=7)
    out = laspy.read(tmp_path / "f7.las")
    assert out.point_format.id == 7 and "nir" not in out.point_format.dimension_names
    assert list(out.point_format.extra_dimension_names) == []  # not smuggled in as extra bytes
    for d in out.point_format.dimension_names:
        np.testing.assert_array_equal(np.asarray(out[d]), np.asarray(ref[d]), err_msg=d)
    assert out.header.global_encoding.gps_time_type  # adjusted standard GPS time survives the change


def test_waveform_dropped_with_its_records(tmp_path):
    _synthetic(tmp_path / "f4.las", 4, "1.3")
    with pytest.warns(Facet3DWarning, match=r"no wavepacket_index, wavepacket_offset, wavepacket_size, "
                                            r"return_point_wave_location, x_t, y_t, z_t; not written"):
        api.write(tmp_path / "f1.las", api.read(tmp_path / "f4.las"), point_format=1)
    out = laspy.read(tmp_path / "f1.las")
    assert out.point_format.id == 1 and list(out.point_format.extra_dimension_names) == []
    assert not [v for v in out.header.vlrs if v.user_id == "LASF_Spec" and 99 < v.record_id < 355]


def test_all_zero_dimensions_drop_silently(tmp_path):
    _synthetic(tmp_path / "f6.las", 6, "1.4", overlap=0, scanner_channel=0, classification=3, return_number=1,
               number_of_returns=2)  # values format 1 can hold
    with _no_facet3d_warnings():
        api.write(tmp_path / "f1.las", api.read(tmp_path / "f6.las"), point_format=1)
    assert laspy.read(tmp_path / "f1.las").point_format.id == 1


def test_version_follows_an_asked_point_format(shared_data, tmp_path):
    with _no_facet3d_warnings():
        api.write(tmp_path / "f7.las", api.read(shared_data / "las" / "simple.las"), point_format=7)
    out = laspy.read(tmp_path / "f7.las")
    assert (out.point_format.id, str(out.header.version)) == (7, "1.4")
    api.write(tmp_path / "v13.las", api.read(shared_data / "las" / "simple.las"), las_version="1.3")
    out = laspy.read(tmp_path / "v13.las")
    assert (out.point_format.id, str(out.header.version)) == (3, "1.3")


@pytest.mark.parametrize("opts, match", [
    ({"point_format": 6, "las_version": "1.2"}, r"LAS 1\.2 cannot hold --point-format 6 .*--las-version 1\.4"),
    ({"point_format": 4, "las_version": "1.2"}, r"LAS 1\.2 cannot hold --point-format 4 .*--las-version 1\.3"),
    ({"las_version": "1.2"}, r"cannot hold the source's point format 7 .*--point-format"),
    ({"las_version": "2.0"}, r"--las-version must be one of"),
    ({"point_format": 11}, r"--point-format must be 0-10"),
])
def test_impossible_combinations_refused(shared_data, tmp_path, opts, match):
    g = api.read(shared_data / "las" / "simple1_4.las")  # 1.4, point format 7
    with pytest.raises(UsageError, match=match):
        api.write(tmp_path / "x.las", g, **opts)
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_point_format_option_for_a_non_las_source(tmp_path):
    from facet3d.core.io.record import Geometry

    g = Geometry(vertices=np.random.default_rng(0).random((10, 3)), colors=np.full((10, 3), 0.5, np.float32))
    with pytest.raises(UsageError, match="--point-format 7"):
        api.write(tmp_path / "a.las", g, point_format=7, las_version="1.2")
    api.write(tmp_path / "a.las", g, point_format="2")  # a string from a CLI option works too
    out = laspy.read(tmp_path / "a.las")
    assert (out.point_format.id, str(out.header.version)) == (2, "1.2")


# -- the external waveform file ----------------------------------------------------------------
def _with_wdp(tmp_path):
    (tmp_path / "src").mkdir()
    _synthetic(tmp_path / "src" / "wave.las", 4, "1.3", external_wdp=True)
    payload = np.random.default_rng(9).integers(0, 256, 200 * 64, dtype=np.uint8).tobytes()
    (tmp_path / "src" / "wave.wdp").write_bytes(payload)
    return tmp_path / "src" / "wave.las", payload


def test_final_path_matches_atomic_output(tmp_path):
    for name in ("out.las", "out.copy.laz", "noext"):
        with api.atomic_output(tmp_path / name) as tmp:
            assert las.final_path(tmp) == tmp_path / name
    assert las.final_path(tmp_path / "plain.las") == tmp_path / "plain.las"


def test_wdp_copied_beside_the_output(tmp_path):
    src, payload = _with_wdp(tmp_path)
    g = api.read(src)
    assert g.meta["las_waveform_file"] == str(src.with_suffix(".wdp"))
    (tmp_path / "out").mkdir()
    with _no_facet3d_warnings():
        api.write(tmp_path / "out" / "copy.las", g)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.las", "copy.wdp"]  # no temporaries
    assert (tmp_path / "out" / "copy.wdp").read_bytes() == payload
    out = laspy.read(tmp_path / "out" / "copy.las")
    assert out.header.global_encoding.waveform_data_packets_external
    np.testing.assert_array_equal(out.wavepacket_offset, laspy.read(src).wavepacket_offset)
    with _no_facet3d_warnings():  # in place: the .wdp is its own source, left as it is
        api.write(src, api.read(src))
    assert src.with_suffix(".wdp").read_bytes() == payload


def test_wdp_to_format_9_kept_and_to_format_1_not_written(tmp_path):
    src, payload = _with_wdp(tmp_path)
    api.write(tmp_path / "f9.laz", api.read(src), point_format=9)
    assert (tmp_path / "f9.wdp").read_bytes() == payload
    assert laspy.read(tmp_path / "f9.laz").header.global_encoding.waveform_data_packets_external
    with pytest.warns(Facet3DWarning, match="wavepacket_index"):
        api.write(tmp_path / "f1.las", api.read(src), point_format=1)
    assert not (tmp_path / "f1.wdp").exists()
    assert not laspy.read(tmp_path / "f1.las").header.global_encoding.waveform_data_packets_external


def test_missing_wdp_is_warned(tmp_path):
    src, _ = _with_wdp(tmp_path)
    src.with_suffix(".wdp").unlink()
    g = api.read(src)
    assert g.meta["las_waveform_missing"] is True
    with pytest.warns(Facet3DWarning, match=r"waveform data file .*wave\.wdp\) was not found"):
        api.write(tmp_path / "o.las", g)
    assert not (tmp_path / "o.wdp").exists()
