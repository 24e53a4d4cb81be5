"""core.io.images: depth maps in the units users store them, photos as float RGB (PIL as the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facet3d.core.errors import InputError
from facet3d.core.io.images import read_depth, read_rgb


def test_depth_units_by_file_kind(tmp_path):
    mm = np.array([[0, 1500], [2500, 65535]], dtype=np.uint16)
    Image.fromarray(mm).save(tmp_path / "d.png")
    np.testing.assert_array_equal(read_depth(tmp_path / "d.png"), np.array([[0, 1.5], [2.5, 65.535]], np.float32))
    np.testing.assert_allclose(read_depth(tmp_path / "d.png", depth_scale=5000), mm / 5000.0, rtol=1e-6)
    metres = np.array([[np.nan, -1.0], [0.25, np.inf]], dtype=np.float32)
    np.save(tmp_path / "d.npy", metres)
    np.testing.assert_array_equal(read_depth(tmp_path / "d.npy"), np.array([[0, 0], [0.25, 0]], np.float32))
    Image.fromarray(np.array([[1.25, 0.0]], dtype=np.float32)).save(tmp_path / "d.tif")
    np.testing.assert_array_equal(read_depth(tmp_path / "d.tif"), np.array([[1.25, 0.0]], np.float32))


def test_depth_refusals(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="bad.png: cannot read the depth map"):
        read_depth(tmp_path / "bad.png")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(InputError, match=r"one channel \[H, W\]"):
        read_depth(tmp_path / "cube.npy")


def test_rgb_drops_alpha_and_box_resamples_like_pil(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (40, 60, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    full = read_rgb(tmp_path / "a.png")
    assert full.shape == (40, 60, 3) and full.dtype == np.float32
    np.testing.assert_array_equal(full, rgba[..., :3] / np.float32(255))
    small = read_rgb(tmp_path / "a.png", (20, 30))
    expect = np.asarray(Image.fromarray(rgba[..., :3]).resize((30, 20), Image.Resampling.BOX), np.float32) / 255
    np.testing.assert_allclose(small, expect, atol=1e-7)
    with pytest.raises(InputError, match="cannot read the image"):
        read_rgb(tmp_path / "missing.png")


def test_image_size_reads_the_header_only(tmp_path):
    from facet3d.core.io.images import image_size

    Image.fromarray(np.zeros((7, 11, 3), np.uint8)).save(tmp_path / "s.jpg")
    assert image_size(tmp_path / "s.jpg") == (7, 11)
    (tmp_path / "x.jpg").write_bytes(b"junk")
    with pytest.raises(InputError, match="x.jpg: cannot read the image"):
        image_size(tmp_path / "x.jpg")
