"""Preprocessing (crop vs the oracle's images, pad), decoding to core Cameras, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import CheckpointError, InputError
from facet3d.plugins.fastvggt.decode import extrinsics_intrinsics, pose_encoding_to_cameras, unproject_depth
from facet3d.plugins.fastvggt.preprocess import load_images, preprocess_image, target_size


def test_crop_preprocessing_equals_the_oracle(fountain, reference_dir):
    ref = np.load(reference_dir / "vggt_recipe_fountain3.npz")["images"]
    prep = load_images(fountain, "crop")
    assert prep.images.shape == (3, 3, 350, 518)
    assert np.array_equal(prep.images[None].numpy(), ref)


def test_pad_mode_and_rgba():
    from PIL import Image

    rgba = np.zeros((300, 200, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :100, 3] = 255  # left half opaque red, right half transparent
    t, resized, (left, top) = preprocess_image(_open(Image.fromarray(rgba, "RGBA")), "pad")
    assert t.shape == (3, 518, 518) and resized == target_size(200, 300, "pad") == (350, 518)
    assert (left, top) == ((518 - 350) // 2, 0)
    assert torch.all(t[:, :, :left] == 1.0) and torch.all(t[:, :, left + 350:] == 1.0)  # white padding
    assert torch.all(t[:, 10, left + 300] == 1.0)  # transparent -> white
    assert t[0, 10, left + 20] == 1.0 and t[1, 10, left + 20] == 0.0  # opaque red stays red
    # crop mode on a tall image: width 518, height centre-cropped to 518
    tc, _, (_, top_c) = preprocess_image(_open(Image.fromarray(rgba, "RGBA")), "crop")
    assert tc.shape == (3, 518, 518) and top_c < 0


def _open(img):
    import tempfile
    from pathlib import Path

    from facet3d.plugins.fastvggt.preprocess import open_rgb

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.png"
        img.save(p)
        return open_rgb(p)


def test_mixed_sizes_and_unreadable(photos):
    d, odd = photos
    with pytest.raises(InputError, match="different sizes"):
        load_images([d / "im0.png", odd / "tall.png"], "crop")
    assert load_images([d / "im0.png", odd / "tall.png"], "pad").images.shape == (2, 3, 518, 518)
    with pytest.raises(InputError, match="cannot read the image"):
        load_images([d / "im0.png", odd / "broken.jpg"])


def test_pose_encoding_to_cameras_closed_form():
    from scipy.spatial.transform import Rotation

    H, W = 350, 518
    rot = Rotation.from_euler("xyz", [0.3, -0.7, 1.1])
    q = torch.tensor(rot.as_quat())  # x, y, z, w
    t = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    fov_h, fov_w = 0.9, 1.2
    enc = torch.cat([t, 2.5 * q, torch.tensor([fov_h, fov_w], dtype=torch.float64)])[None]  # unnormalised q
    cams = pose_encoding_to_cameras(enc, (H, W), ["a"])
    torch.testing.assert_close(cams.R[0], torch.tensor(rot.as_matrix()))
    torch.testing.assert_close(cams.t[0], t)
    assert cams.K[0, 0, 0].item() == pytest.approx((W / 2) / np.tan(fov_w / 2))
    assert cams.K[0, 1, 1].item() == pytest.approx((H / 2) / np.tan(fov_h / 2))
    assert (cams.K[0, 0, 2].item(), cams.K[0, 1, 2].item()) == (W / 2, H / 2)
    assert cams.image_size[0].tolist() == [H, W]
    # round trip: the FoV of the decoded intrinsics is the encoded one
    assert cams.fov_x()[0].item() == pytest.approx(fov_w)
    E, K = extrinsics_intrinsics(enc.float(), (H, W))
    assert E.shape == (1, 3, 4) and K.shape == (1, 3, 3)


def test_unproject_matches_projection():
    enc = torch.tensor([[0.1, 0.2, 0.3, 0.1, 0.2, 0.0, 1.0, 0.8, 1.0]], dtype=torch.float64)
    cams = pose_encoding_to_cameras(enc, (6, 8))
    depth = torch.rand(1, 6, 8, dtype=torch.float64) + 1
    pts = unproject_depth(depth, cams).double()
    px, z = cams.project(pts.reshape(1, -1, 3))
    v, u = torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij")
    torch.testing.assert_close(px[0], torch.stack([u, v], -1).reshape(-1, 2).double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(z[0], depth.reshape(-1), atol=1e-5, rtol=0)


def test_checkpoint_round_trip_and_half_precision(tmp_path, tiny_model):
    from facet3d.plugins.fastvggt.checkpoint import load_model, save_model

    x = torch.rand(1, 2, 3, 42, 56, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = tiny_model(x)
    for dtype in (None, torch.float16, torch.bfloat16):
        p = save_model(tiny_model, tmp_path / f"m_{dtype}.safetensors", dtype=dtype)
        m = load_model(p)
        assert all(t.dtype == torch.float32 for t in m.state_dict().values() if t.is_floating_point())
        with torch.no_grad():
            out = m(x)
        if dtype is None:
            assert torch.equal(out["depth"], ref["depth"])
        else:
            assert torch.isfinite(out["depth"]).all()
    # a .pt state dict through the core loader (weights_only)
    pt = tmp_path / "m.pt"
    torch.save({"model": {k: v.half() for k, v in tiny_model.state_dict().items()}}, pt)
    m = load_model(pt, config="tiny")
    assert torch.allclose(m.state_dict()["aggregator.camera_token"],
                          tiny_model.state_dict()["aggregator.camera_token"].half().float())


def test_checkpoint_errors(tmp_path, tiny_model):
    from facet3d.plugins.fastvggt.checkpoint import load_model

    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.safetensors")
    sd = dict(tiny_model.state_dict())
    sd.pop("aggregator.camera_token")
    sd["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"1 missing \(first: aggregator.camera_token\).*1 unexpected \(first: extra.weight\)"):
        load_model(bad, config="tiny")
    with pytest.raises(CheckpointError, match="keys"):
        load_model(bad)  # default vggt-1b: everything missing
