"""16-bit colour survives where the format holds it; an 8-bit target says what it rounded."""

from __future__ import annotations

import numpy as np


def _las16(path, n=200, seed=0):
    import laspy

    rng = np.random.default_rng(seed)
    las = laspy.create(point_format=3, file_version="1.2")
    las.x, las.y, las.z = (rng.random(n) * 100 for _ in range(3))
    rgb = rng.integers(0, 65536, size=(3, n), dtype=np.uint16)
    las.red, las.green, las.blue = rgb
    las.write(path)
    return rgb


def test_16_bit_las_colour_to_ply_warns_and_to_las_stays_exact(cli, tmp_path):
    import laspy

    rgb = _las16(tmp_path / "c16.las")
    r = cli("convert", str(tmp_path / "c16.las"), str(tmp_path / "c.ply"))
    assert r.returncode == 0
    assert "facet3d: warning: PLY stores 8-bit colour" in r.stderr and "rounded to 8 bits" in r.stderr
    r = cli("convert", str(tmp_path / "c16.las"), str(tmp_path / "c.laz"))
    assert r.returncode == 0 and "warning" not in r.stderr
    back = laspy.read(tmp_path / "c.laz")
    assert np.array_equal(np.stack([back.red, back.green, back.blue]), rgb)  # laspy, independently


def test_8_bit_colour_to_ply_is_silent(cli, tmp_path):
    import laspy

    las = laspy.create(point_format=3, file_version="1.2")
    las.x = las.y = las.z = np.arange(10.0)
    las.red = las.green = las.blue = (np.arange(10) * 20 * 257).astype(np.uint16)  # 8-bit scaled the LAS way
    las.write(tmp_path / "c8.las")
    r = cli("convert", str(tmp_path / "c8.las"), str(tmp_path / "c.ply"))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_computed_colours_round_silently(tmp_path, recwarn):
    """Colours a fit or a render computed declare no depth: rounding them to 8 bits is no loss to report."""
    from facet3d.core.io.api import write
    from facet3d.core.io.record import Geometry

    g = Geometry(vertices=np.random.default_rng(0).random((20, 3)), colors=np.random.default_rng(1).random((20, 3)).astype(np.float32))
    write(tmp_path / "c.ply", g)
    assert not [w for w in recwarn if "8-bit" in str(w.message)]
