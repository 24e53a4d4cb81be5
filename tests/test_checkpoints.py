"""Checkpoint loading never runs code; official-style dumps with numpy scalars load when allowed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from facet3d.core.checkpoints import load_checkpoint, save_safetensors, state_dict_of
from facet3d.core.errors import CheckpointError


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_safetensors_round_trip(tmp_path):
    m = _model()
    path = save_safetensors(m.state_dict(), tmp_path / "m.safetensors", {"classes": ["a", "b"]})
    sd = load_checkpoint(path)
    for k, v in m.state_dict().items():
        assert torch.equal(sd[k], v)


def test_official_style_dump_with_numpy_scalars(tmp_path):
    m = _model()
    path = tmp_path / "best_model.pth"
    torch.save({"epoch": 3, "instance_acc": np.float64(0.93), "class_acc": np.float64(0.9),
                "model_state_dict": m.state_dict(), "optimizer_state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)  # plain weights_only refuses numpy scalars
    ckpt = load_checkpoint(path, allow_numpy_scalars=True)
    assert float(ckpt["instance_acc"]) == pytest.approx(0.93)
    sd = state_dict_of(ckpt)
    m2 = _model()
    m2.load_state_dict(sd, strict=True)


class _Evil:
    def __reduce__(self):
        return (open, ("/tmp/facet3d-pwned", "w"))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    for allow in (False, True):
        with pytest.raises(CheckpointError):
            load_checkpoint(path, allow_numpy_scalars=allow)


def test_garbage_and_missing_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "none.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)


def test_check_state_dict_names_the_first_mismatches():
    import torch

    from facet3d.core.checkpoints import check_state_dict
    from facet3d.core.errors import CheckpointError

    model = {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)}
    check_state_dict(model, {"a.weight": torch.ones(2, 3), "b.bias": torch.ones(4)}, "m.pt", "this net")
    with pytest.raises(CheckpointError, match=r"m.pt: not a checkpoint of this net: keys 1 missing \(first: b.bias\); "
                                              r"1 unexpected \(first: c\)"):
        check_state_dict(model, {"a.weight": torch.ones(2, 3), "c": torch.ones(1)}, "m.pt", "this net")
    with pytest.raises(CheckpointError, match=r"1 tensor shape\(s\) differ \(first: a.weight \(3, 2\), the model \(2, 3\)\)"):
        check_state_dict(model, {"a.weight": torch.ones(3, 2), "b.bias": torch.ones(4)}, "m.pt", "this net")
