"""PCD -> PCD keeps WIDTH x HEIGHT, VIEWPOINT and field types; the viewpoint travels through PLY.

Independent checks: the header lines as text, and open3d (legacy reader for F 4 clouds, the tensor
reader for F 8 coordinates and typed fields).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from facet3d.core.errors import Facet3DWarning
from facet3d.core.io import api
from facet3d.core.io.record import Geometry

o3d = pytest.importorskip("open3d")
MUG = "table_scene_mug_stereo_textured.pcd"


def _header(path) -> dict[str, str]:
    """Header keyword -> rest of the line, read as plain text."""
    out = {}
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.decode("ascii").strip()
            if line.startswith("#") or not line:
                continue
            key, _, rest = line.partition(" ")
            out[key] = rest
            if key == "DATA":
                return out
    raise AssertionError("no DATA line")


def test_organised_scan_keeps_width_height_viewpoint(shared_data, tmp_path):
    src = shared_data / "scans" / MUG
    with warnings.catch_warnings():
        warnings.simplefilter("error", Facet3DWarning)
        api.write(tmp_path / "mug.pcd", api.read(src))
    h, ref = _header(tmp_path / "mug.pcd"), _header(src)
    for key in ("WIDTH", "HEIGHT", "POINTS", "FIELDS", "TYPE", "SIZE"):
        assert h[key] == ref[key], key
    assert [float(v) for v in h["VIEWPOINT"].split()] == [float(v) for v in ref["VIEWPOINT"].split()]
    assert (h["WIDTH"], h["HEIGHT"]) == ("640", "480")
    a, b = o3d.io.read_point_cloud(str(src), remove_nan_points=False), o3d.io.read_point_cloud(
        str(tmp_path / "mug.pcd"), remove_nan_points=False)
    np.testing.assert_array_equal(np.asarray(b.points), np.asarray(a.points))
    np.testing.assert_array_equal(np.asarray(b.colors), np.asarray(a.colors))


def test_changed_point_count_writes_unorganised_and_keeps_viewpoint(shared_data, tmp_path):
    g = api.read(shared_data / "scans" / MUG)
    keep = np.isfinite(g.vertices).all(axis=1)
    sub = Geometry(vertices=g.vertices[keep], colors=g.colors[keep], meta=dict(g.meta))
    with pytest.warns(Facet3DWarning, match="organised 640x480"):
        api.write(tmp_path / "sub.pcd", sub)
    h = _header(tmp_path / "sub.pcd")
    assert (h["WIDTH"], h["HEIGHT"], h["POINTS"]) == (str(keep.sum()), "1", str(keep.sum()))
    assert [float(v) for v in h["VIEWPOINT"].split()] == [0, 0, 0, 0, 1, 0, 0]
    assert len(o3d.io.read_point_cloud(str(tmp_path / "sub.pcd")).points) == keep.sum()


def test_ascii_organised_with_nans(tmp_path):
    rows = [f"{i % 4} {i // 4} {'nan' if i == 5 else 1.5}" for i in range(12)]
    (tmp_path / "o.pcd").write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 4\n"
                                    "HEIGHT 3\nVIEWPOINT 0.5 -1 2 1 0 0 0\nPOINTS 12\nDATA ascii\n" + "\n".join(rows) + "\n")
    api.write(tmp_path / "b.pcd", api.read(tmp_path / "o.pcd"))
    h = _header(tmp_path / "b.pcd")
    assert (h["WIDTH"], h["HEIGHT"], h["VIEWPOINT"]) == ("4", "3", "0.5 -1 2 1 0 0 0")
    pts = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "b.pcd"), remove_nan_points=False).points)
    ref = np.array([[float(t) for t in r.split()] for r in rows])
    np.testing.assert_array_equal(pts, ref)


def _typed_pcd(path, n=50):
    rng = np.random.default_rng(3)
    rec = np.zeros(n, dtype=[("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("t", "<f8"), ("label", "u1"),
                             ("ring", "<u2"), ("rgb", "<u4")])
    for k in "xyz":
        rec[k] = rng.normal(size=n) * 1e5 + 4.2e6  # geo-referenced: float32 would lose the centimetres
    rec["t"] = 1.7e9 + rng.random(n)
    rec["label"] = rng.integers(0, 256, n)
    rec["ring"] = rng.integers(0, 65535, n)
    rec["rgb"] = rng.integers(0, 1 << 24, n)
    head = ("VERSION 0.7\nFIELDS x y z t label ring rgb\nSIZE 8 8 8 8 1 2 4\nTYPE F F F F U U U\n"
            f"COUNT 1 1 1 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n")
    path.write_bytes(head.encode() + rec.tobytes())
    return rec


def test_field_types_and_order_kept(tmp_path):
    rec = _typed_pcd(tmp_path / "typed.pcd")
    api.write(tmp_path / "out.pcd", api.read(tmp_path / "typed.pcd"))
    h, ref = _header(tmp_path / "out.pcd"), _header(tmp_path / "typed.pcd")
    for key in ("FIELDS", "SIZE", "TYPE", "COUNT"):
        assert h[key] == ref[key], key
    t = o3d.t.io.read_point_cloud(str(tmp_path / "out.pcd"))
    pos = t.point["positions"].numpy()
    assert pos.dtype == np.float64
    np.testing.assert_array_equal(pos, np.stack([rec["x"], rec["y"], rec["z"]], axis=1))
    for k, dt in (("t", np.float64), ("label", np.uint8), ("ring", np.uint16)):
        a = t.point[k].numpy().ravel()
        assert a.dtype == dt, k
        np.testing.assert_array_equal(a, rec[k], err_msg=k)
    # the raw bytes after the header are the source's, field for field
    body = (tmp_path / "out.pcd").read_bytes()[-rec.nbytes:]
    assert body == rec.tobytes()


def test_viewpoint_through_ply_and_back(tmp_path):
    g = Geometry(vertices=np.random.default_rng(0).random((20, 3)).astype(np.float32),
                 meta={"viewpoint": [1.25, -2.0, 0.5, 0.7071067811865476, 0.0, 0.7071067811865476, 0.0]})
    api.write(tmp_path / "a.pcd", g)
    api.write(tmp_path / "a.ply", api.read(tmp_path / "a.pcd"))
    text = (tmp_path / "a.ply").read_bytes().split(b"end_header")[0].decode()
    assert "comment viewpoint 1.25 -2.0 0.5 0.7071067811865476 0.0 0.7071067811865476 0.0" in text
    p = api.read(tmp_path / "a.ply")
    assert p.meta["viewpoint"] == g.meta["viewpoint"] and "comments" not in p.meta or not any(
        c.startswith("viewpoint") for c in p.meta["comments"])
    api.write(tmp_path / "b.pcd", p)
    assert _header(tmp_path / "b.pcd")["VIEWPOINT"] == "1.25 -2 0.5 0.7071067811865476 0 0.7071067811865476 0"
    api.write(tmp_path / "b.ply", p)  # PLY -> PLY: one viewpoint comment, not two
    assert (tmp_path / "b.ply").read_bytes().count(b"comment viewpoint") == 1


def test_identity_viewpoint_adds_no_ply_comment(shared_data, tmp_path):
    api.write(tmp_path / "car.ply", api.read(shared_data / "scans" / "car6.pcd"))
    assert b"viewpoint" not in (tmp_path / "car.ply").read_bytes().split(b"end_header")[0]
