"""XYZ/TXT/CSV -> same format: header, delimiter, colour range and numbers come back as written.

numpy.loadtxt is the independent reader for the values; the text itself is compared where the
input is already in shortest form.
"""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.io import api, xyz
from facet3d.core.io.record import Geometry

CSV = "x,y,z,red,green,blue,intensity\n1.5,2,-3.25,255,0,10,0.1\n0.1,0.2,0.3,1,2,3,7\n1e-05,1e+20,-0,17,18,19,0.30000000000000004\n"
CLOUDCOMPARE = "//X Y Z R G B\n1.5 2 3 0.5 0.25 1\n-0.125 4.75 1e-07 0 0.1 0.9\n"


def _roundtrip(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    api.write(tmp_path / f"out_{name}", api.read(tmp_path / name))
    return (tmp_path / f"out_{name}").read_text()


@pytest.mark.parametrize("name, text", [
    ("a.csv", CSV),
    ("cc.txt", CLOUDCOMPARE),
    ("semi.txt", "X;Y;Z;Intensity\n1;2;3;4.5\n5;6;7;8\n"),
    ("spaced.csv", "x, y, z, classification\n0.5, 1, 2, 3\n"),
    ("tabs.xyz", "# scanner: none\n# units: m\nx\ty\tz\n0.1\t0.2\t0.3\n"),
    ("plain.xyz", "0.1 0.2 0.3 12\n1 2 3 200\n"),  # headerless: xyz + intensity, stays headerless
    ("rgb255.xyz", "1 2 3 255 128 0\n4 5 6 10 20 30\n"),  # headerless 0..255 colours stay integers
])
def test_text_comes_back_identical(tmp_path, name, text):
    assert _roundtrip(tmp_path, name, text) == text


def test_values_match_loadtxt_and_colours_stay_integers(tmp_path):
    out = _roundtrip(tmp_path, "a.csv", CSV)
    ref = np.loadtxt(tmp_path / "a.csv", delimiter=",", skiprows=1)
    got = np.loadtxt(tmp_path / "out_a.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(got, ref)
    rgb = [line.split(",")[3:6] for line in out.splitlines()[1:]]
    assert all(t.isdigit() for row in rgb for t in row)  # 0..255 integers, not 1.0 / 0.50196...
    cc = _roundtrip(tmp_path, "cc.txt", CLOUDCOMPARE)
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "out_cc.txt", comments="//"),
                                  np.loadtxt(tmp_path / "cc.txt", comments="//"))
    assert cc.splitlines()[1].split()[3:] == ["0.5", "0.25", "1"]  # 0..1 floats stay floats


def test_agisoft_file_byte_identical(shared_data, tmp_path):
    src = shared_data / "meshes" / "points_agisoft.xyz"  # fixed 6 decimals, 0..255 colours, no header
    api.write(tmp_path / "out.xyz", api.read(src))
    assert (tmp_path / "out.xyz").read_bytes() == src.read_bytes()


def test_no_float_noise():
    assert xyz.format_column(np.array([0.1, 0.2, 0.3], np.float32)) == ["0.1", "0.2", "0.3"]
    assert xyz.format_column(np.array([0.1 + 0.2, 2.0, -0.0, 1e-300])) == ["0.30000000000000004", "2", "-0", "1e-300"]
    assert xyz.format_column(np.array([1, 255], np.uint8)) == ["1", "255"]
    rng = np.random.default_rng(0)
    for a in (rng.normal(size=5000) * 10.0 ** rng.integers(-30, 30, 5000), rng.random(5000).astype(np.float32)):
        text = xyz.format_column(a)
        np.testing.assert_array_equal(np.asarray(text, np.float64).astype(a.dtype), a)
        if a.dtype == np.float32:
            digits = [t.split("e")[0].replace(".", "").replace("-", "").lstrip("0") for t in text]
            assert max(len(d) for d in digits) <= 9  # at most 9 significant digits, never %.17g


def test_float32_vertices_written_short(tmp_path):
    g = Geometry(vertices=np.array([[0.1, 0.2, 0.3]], np.float32))
    api.write(tmp_path / "f.xyz", g)
    assert (tmp_path / "f.xyz").read_text() == "# x y z\n0.1 0.2 0.3\n"


def test_changed_columns_keep_style_and_delimiter(tmp_path):
    (tmp_path / "a.csv").write_text(CSV)
    g = api.read(tmp_path / "a.csv")
    del g.attributes["intensity"]
    g.attributes["label"] = np.array([1, 2, 3], np.int32)
    api.write(tmp_path / "b.csv", g)
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[0] == "x,y,z,red,green,blue,label"
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "b.csv", delimiter=",", skiprows=1)[:, :6],
                                  np.loadtxt(tmp_path / "a.csv", delimiter=",", skiprows=1)[:, :6])
    (tmp_path / "cc.txt").write_text(CLOUDCOMPARE)
    g = api.read(tmp_path / "cc.txt")
    g.normals = np.tile([0.0, 0.0, 1.0], (2, 1))
    api.write(tmp_path / "n.txt", g)
    assert (tmp_path / "n.txt").read_text().splitlines()[0] == "//X Y Z R G B nx ny nz"
    r = api.read(tmp_path / "n.txt")
    np.testing.assert_array_equal(r.normals, g.normals)
    np.testing.assert_array_equal(r.colors, g.colors)


def test_delimiter_option_overrides(tmp_path):
    (tmp_path / "a.csv").write_text(CSV)
    api.write(tmp_path / "b.txt", api.read(tmp_path / "a.csv"), delimiter=" ")
    assert (tmp_path / "b.txt").read_text().splitlines()[1] == "1.5 2 -3.25 255 0 10 0.1"
