"""RISurConv models: official key names / shapes / parameter counts, config inference, forward
shapes, gradients through every parameter, and the plain-PyTorch kernel path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facet3d.core.errors import CheckpointError, UsageError
from facet3d.plugins.risurconv.layers import plain_torch
from facet3d.plugins.risurconv.models import CONFIGS, build_model, infer_config

OFFICIAL = {"cls_modelnet40_n2": "modelnet40", "cls_scanobjectnn_n1": "scanobjectnn", "partseg_50": "partseg"}


@pytest.fixture(scope="module")
def official_json(shared_data: Path):
    f = shared_data.parent / "reference" / "risurconv_state_dicts.json"
    if not f.is_file():
        pytest.skip("risurconv_state_dicts.json is not present")
    return json.loads(f.read_text())


def _cloud(B=2, N=1024, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 3, generator=g, dtype=dtype)
    x = x / x.norm(dim=-1, keepdim=True).amax(1, keepdim=True)
    n = torch.nn.functional.normalize(torch.randn(B, N, 3, generator=g, dtype=dtype), dim=-1)
    return x, n


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_keys_shapes_and_parameter_counts(official_json, name):
    ref = official_json[name]
    model = build_model(OFFICIAL[name])
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])  # same names, same order
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]


def test_parameter_counts_without_reference():
    counts = {c: sum(p.numel() for p in build_model(c).parameters()) for c in ("modelnet40", "scanobjectnn", "partseg")}
    assert counts == {"modelnet40": 13_963_080, "scanobjectnn": 13_959_855, "partseg": 4_063_730}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_infer_config_round_trip(name):
    model = build_model(name)
    cfg = infer_config(model.state_dict())
    again = build_model(cfg)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    if name in ("modelnet40", "scanobjectnn"):
        assert cfg["n"] == CONFIGS[name]["n"] and cfg["num_classes"] == CONFIGS[name]["num_classes"]


def test_infer_config_rejects_unknown_layout():
    with pytest.raises(CheckpointError, match="no RISurConv layout"):
        infer_config({"conv.weight": torch.zeros(1)})


def test_unknown_config_name():
    with pytest.raises(UsageError, match="unknown RISurConv config"):
        build_model("huge")


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_classifier_forward_shapes(name):
    model = build_model(name).eval()
    x, n = _cloud()
    with torch.inference_mode():
        out = model(x, n)
    assert out.shape == (2, 40)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2))


def test_segmenter_forward_shapes():
    model = build_model("partseg_small").eval()
    x, n = _cloud(N=1024)
    with torch.inference_mode():
        out = model(x, n, torch.tensor([0, 15]))
        onehot = model(x, n, torch.nn.functional.one_hot(torch.tensor([0, 15]), 16))
    assert out.shape == (2, 1024, 50)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 1024))
    torch.testing.assert_close(out, onehot)


def test_official_segmenter_runs_2048_points():
    model = build_model("partseg").eval()
    x, n = _cloud(B=1, N=2048)
    with torch.inference_mode():
        out = model(x, n, torch.tensor([4]))
    assert out.shape == (1, 2048, 50) and torch.isfinite(out).all()


def test_bad_input_shapes():
    model = build_model("tiny")
    x, n = _cloud()
    with pytest.raises(UsageError):
        model(x, n[:, :, :2])


@pytest.mark.parametrize("name,seg", [("small", False), ("partseg_small", True)])
def test_gradients_reach_every_parameter(name, seg):
    torch.manual_seed(0)
    model = build_model(name).train()
    x, n = _cloud(B=3, N=512 if not seg else 512)
    x.requires_grad_(True)
    out = model(x, n, torch.tensor([1, 2, 3])) if seg else model(x, n)
    target = torch.randint(0, out.shape[-1], out.shape[:-1])
    torch.nn.functional.nll_loss(out.reshape(-1, out.shape[-1]), target.reshape(-1)).backward()
    # `encoder_layer` is the official, unused template nn.TransformerEncoder copies its layers from
    params = {k: p for k, p in model.named_parameters() if not k.startswith("encoder_layer.")}
    missing = [k for k, p in params.items() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    nonzero = sum(bool(p.grad.abs().sum() > 0) for p in params.values())
    assert nonzero >= 0.9 * len(params)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_plain_torch_path_matches_default():
    model = build_model("small").eval()
    x, n = _cloud()
    with torch.inference_mode():
        a = model(x, n)
        with plain_torch():
            b = model(x, n)
        model.backend = "torch"
        c = model(x, n)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(a, c, rtol=0, atol=1e-6)


def test_training_mode_updates_batchnorm_like_modules():
    model = build_model("tiny").train()
    x, n = _cloud()
    model(x, n)
    bn = model.sc0.embedding[1]
    assert int(bn.num_batches_tracked) == 1 and not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
