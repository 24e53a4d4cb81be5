"""Shapes, key layout against the official checkpoint, RoPE, and the heads of tiny VGGT configs."""

from __future__ import annotations

import json

import pytest
import torch

from facet3d.plugins.fastvggt.layers import RotaryPositionEmbedding2D, patch_positions
from facet3d.plugins.fastvggt.model import CONFIGS, build_model, parameter_count


def test_full_config_matches_the_official_state_dict(reference_dir):
    info = json.loads((reference_dir / "vggt_1b_state_dict.json").read_text())
    sd = build_model("vggt-1b", device="meta").state_dict()
    assert len(sd) == info["n_keys"] == 1797
    assert {k: list(v.shape) for k, v in sd.items()} == {k: list(v) for k, v in info["state_dict"].items()}
    assert parameter_count("vggt-1b") == info["params"] == 1_256_537_516


def test_tiny_forward_shapes(tiny_model):
    x = torch.rand(2, 3, 3, 70, 98, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = tiny_model(x)
    assert out["pose_enc"].shape == (2, 3, 9)
    assert len(out["pose_enc_list"]) == 4
    assert out["depth"].shape == (2, 3, 70, 98, 1) and out["depth_conf"].shape == (2, 3, 70, 98)
    assert out["world_points"].shape == (2, 3, 70, 98, 3) and out["world_points_conf"].shape == (2, 3, 70, 98)
    assert (out["depth"] > 0).all() and (out["depth_conf"] > 1).all()
    assert out["images"] is x or torch.equal(out["images"], x)


def test_tracks_shapes(tiny_model):
    x = torch.rand(1, 2, 3, 182, 252, generator=torch.Generator().manual_seed(2))
    q = torch.tensor([[10.0, 20.0], [100.0, 50.0], [200.0, 150.0]])
    with torch.no_grad():
        out = tiny_model(x, query_points=q)
    assert out["track"].shape == (1, 2, 3, 2) and out["vis"].shape == (1, 2, 3) and out["conf"].shape == (1, 2, 3)
    assert torch.allclose(out["track"][0, 0], q)  # frame 0 keeps the query points
    assert ((out["vis"] >= 0) & (out["vis"] <= 1)).all()


def test_batch_items_are_independent(tiny_model):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 2, 3, 42, 56, generator=g)
    with torch.no_grad():
        both = tiny_model(x)
        one = tiny_model(x[1:])
    torch.testing.assert_close(both["depth"][1:], one["depth"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both["pose_enc"][1:], one["pose_enc"], rtol=1e-5, atol=1e-6)


def test_only_the_layers_the_heads_read_are_kept(tiny_model):
    assert tiny_model.kept_layers == [0, 1, 2, 3]
    assert build_model("vggt-1b", device="meta").kept_layers == [4, 11, 17, 23]
    x = torch.rand(1, 2, 3, 28, 28)
    with torch.no_grad():
        tokens, psi = tiny_model.aggregator(x, keep=[3])
    assert list(tokens) == [3] and psi == 5 and tokens[3].shape == (1, 2, 5 + 4, 64)


def test_rope_rotates_each_axis_and_keeps_norms():
    rope = RotaryPositionEmbedding2D(100.0)
    x = torch.randn(1, 2, 6, 16, dtype=torch.float64)
    pos = patch_positions(1, 2, 3)
    y = rope(x, pos)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rope(x, torch.zeros_like(pos)), x)  # position 0 is the identity
    # relative: <R(p) q, R(p') k> depends on p - p' only
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)
    a = (rope(q, torch.tensor([[[2, 3]]])) * rope(k, torch.tensor([[[1, 1]]]))).sum()
    b = (rope(q, torch.tensor([[[5, 7]]])) * rope(k, torch.tensor([[[4, 5]]]))).sum()
    torch.testing.assert_close(a, b)


def test_configs_resolve():
    for name in CONFIGS:
        assert build_model(name, device="meta").config["depth"] >= 1
    with pytest.raises(KeyError):
        build_model("nope")
