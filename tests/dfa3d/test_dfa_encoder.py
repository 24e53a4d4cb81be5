"""The lifting encoder: named configs through the plugin's ModelSpec, forward, checkpoint round trip."""

from __future__ import annotations

import json

import pytest
import torch

from facet3d.core.errors import CheckpointError
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R
from facet3d.plugins.dfa3d.encoder import build_encoder, load_encoder, save_encoder


def _cams():
    K = intrinsics_matrix(24.0, 24.0, 31.5, 15.5)
    R = torch.stack([look_at_R((0, 0, 0), (1, 0, 0)), look_at_R((0, 0, 0), (-1, 0.2, 0))])
    return Cameras(K, R, torch.zeros(2, 3), (32, 64))


def test_model_specs_are_listed_and_build():
    from facet3d.core.plugins import get_plugins
    from facet3d.core.specs import resolve

    models = get_plugins().models()
    assert {"dfa3d-lift-tiny", "dfa3d-lift-small", "dfa3d-lift-base"} <= set(models)
    spec = models["dfa3d-lift-tiny"]
    assert spec.task == "lifting" and spec.load_checkpoint is not None
    m = spec.create()
    assert m.config["bev_h"] == 8 and 0 < spec.num_parameters() < 100_000
    assert callable(resolve(spec.load_checkpoint))


def test_forward_shape_and_given_depth_replaces_the_learned_one():
    torch.manual_seed(0)
    m = build_encoder("tiny").eval()
    images = torch.rand(1, 2, 3, 32, 64)
    with torch.no_grad():
        bev = m(images, _cams())
        value, learned, shapes, starts = m.image_features(images)
        flat = torch.zeros_like(learned)
        flat[..., 5] = 1.0  # every pixel certain of bin 5
        bev_given = m(images, _cams(), depth_dist=flat)
    assert bev.shape == (1, 64, 32) and torch.isfinite(bev).all()
    assert shapes.tolist() == [[4, 8]] and learned.shape == (1, 2, 32, 16)
    torch.testing.assert_close(learned.sum(-1), torch.ones(1, 2, 32))
    assert not torch.allclose(bev, bev_given)


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(1)
    m = build_encoder("tiny")
    with torch.no_grad():  # move away from the init so a missed tensor would show
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    m.eval()
    images = torch.rand(1, 2, 3, 32, 64)
    path = save_encoder(m, tmp_path / "enc.safetensors", meta={"note": "test"})
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["format"] == "facet3d.dfa3d-encoder" and side["config"]["embed_dims"] == 32 and side["note"] == "test"
    loaded, meta = load_encoder(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, _cams()), m(images, _cams()), rtol=0, atol=0)
    assert meta["config"] == m.config
    # through the ModelSpec's loader, by the .json name too
    from facet3d.core.plugins import get_plugins
    from facet3d.core.specs import resolve

    again = resolve(get_plugins().models()["dfa3d-lift-tiny"].load_checkpoint)(path.with_suffix(".json"))
    with torch.no_grad():
        torch.testing.assert_close(again(images, _cams()), m(images, _cams()), rtol=0, atol=0)


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    m = build_encoder("tiny")
    path = save_encoder(m, tmp_path / "enc")
    assert path.name == "enc.safetensors"
    side = path.with_suffix(".json")
    info = json.loads(side.read_text())
    info["config"]["embed_dims"] = 64  # the tensors no longer fit
    side.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"shape\(s\) differ"):
        load_encoder(path)
    side.unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_encoder(path)
    with pytest.raises(CheckpointError, match="no such"):
        load_encoder(tmp_path / "none.safetensors")
