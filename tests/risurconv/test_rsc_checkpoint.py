"""RISurConv checkpoints: official best_model.pth dumps (numpy scalars, strict load, class names)
and facet3d's safetensors + JSON sidecar format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facet3d.core.errors import CheckpointError
from facet3d.plugins.risurconv.checkpoint import (MODELNET40_CLASSES, SCANOBJECTNN_CLASSES, SHAPENET_PART_CATEGORIES,
                                                  SHAPENET_PART_SEG_CLASSES, load_model, save_model)
from facet3d.plugins.risurconv.models import build_model


def _official_dump(model, path):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.save({"epoch": 300, "instance_acc": np.float64(0.955), "class_acc": np.float64(0.93),
                "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict()}, path)


def _cloud(B=1, N=1024):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, N, 3, generator=g)
    x = x / x.norm(dim=-1, keepdim=True).amax(1, keepdim=True)
    return x, torch.nn.functional.normalize(torch.randn(B, N, 3, generator=g), dim=-1)


def _perturb(model):
    """Non-default weights and BN statistics, so a load that silently skipped keys would show."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                v.add_(0.01 * torch.randn(v.shape, generator=g)).abs_() if "running_var" in k else \
                    v.add_(0.01 * torch.randn(v.shape, generator=g))
    return model


@pytest.mark.parametrize("config,names", [("modelnet40", MODELNET40_CLASSES), ("scanobjectnn", SCANOBJECTNN_CLASSES)])
def test_official_checkpoint_loads_strictly_and_classifies(tmp_path, config, names):
    src = _perturb(build_model(config)).eval()
    path = tmp_path / "best_model.pth"
    _official_dump(src, path)
    model, meta = load_model(path)
    assert not model.training
    assert meta["format"] == "official" and meta["task"] == "cls" and meta["class_names"] == names
    assert meta["epoch"] == 300 and meta["instance_acc"] == pytest.approx(0.955)
    assert isinstance(meta["class_acc"], float)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x, n = _cloud()
    with torch.inference_mode():
        out = model(x, n)
        want = src(x, n)
    assert out.shape == (1, len(names))
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    assert 0 <= int(out.argmax()) < len(names)


def test_official_partseg_checkpoint_loads(tmp_path):
    src = build_model("partseg")
    path = tmp_path / "best_model.pth"
    _official_dump(src, path)
    model, meta = load_model(path)
    assert meta["task"] == "seg" and meta["categories"] == SHAPENET_PART_CATEGORIES
    assert meta["config"]["num_parts"] == 50 and meta["config"]["num_categories"] == 16
    assert sorted(p for ps in SHAPENET_PART_SEG_CLASSES.values() for p in ps) == list(range(50))


def test_mismatched_checkpoint_names_keys(tmp_path):
    sd = build_model("modelnet40").state_dict()
    sd.pop("sc2.risurconv.0.bias")
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "best_model.pth"
    torch.save({"model_state_dict": sd}, path)
    with pytest.raises(CheckpointError) as exc:
        load_model(path)
    msg = str(exc.value)
    assert "\n" not in msg and "sc2.risurconv.0.bias" in msg and "extra.weight" in msg


def test_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model_state_dict": {"backbone.conv.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="no RISurConv layout"):
        load_model(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": build_model("tiny").state_dict(), "args": object.__new__(_Obj)}, path)
    with pytest.raises(CheckpointError):
        load_model(path)


class _Obj:
    pass


@pytest.mark.parametrize("config", ["small", "partseg_small"])
def test_own_format_round_trip(tmp_path, config):
    model = _perturb(build_model(config)).eval()
    path = tmp_path / "model.safetensors"
    save_model(model, path, {"trained_with": "facet3d risurconv train", "class_names": ["c"] * 40}
               if config == "small" else {"trained_with": "test"})
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["config"]["task"] == info["task"] and info["trained_with"]
    loaded, meta = load_model(path)
    assert meta["format"] == "facet3d" and meta["config"] == model.config
    x, n = _cloud()
    with torch.inference_mode():
        if config == "small":
            assert meta["class_names"] == ["c"] * 40
            torch.testing.assert_close(loaded(x, n), model(x, n), rtol=0, atol=0)
        else:
            c = torch.tensor([3])
            torch.testing.assert_close(loaded(x, n, c), model(x, n, c), rtol=0, atol=0)
    # the sidecar path loads too; no temporary files are left behind
    load_model(tmp_path / "model.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_own_format_without_sidecar(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(build_model("tiny"), path, {})
    (tmp_path / "m.json").unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_model(path)
