"""RISurConv training: the loss goes down, run folder contents, exact resume, evaluation metrics, invariance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facet3d.core.errors import UsageError
from facet3d.plugins.risurconv.data import open_dataset
from facet3d.plugins.risurconv.evaluate import classification_metrics, segmentation_metrics
from facet3d.plugins.risurconv.train import TrainConfig, train

N = 256


@pytest.fixture(scope="module")
def syn():
    return (open_dataset(None, "synthetic", "train", N, augment=True, samples_per_class=4),
            open_dataset(None, "synthetic", "test", N, samples_per_class=4))


def _tc(epochs: int, **kw) -> TrainConfig:
    return TrainConfig(task="classification", config="tiny", epochs=epochs, batch_size=8, num_points=N,
                       trained_with={"command": "pytest"}, **kw)


@pytest.mark.slow
def test_training_lowers_loss_and_writes_the_run(syn, tmp_path):
    summary = train(syn[0], syn[1], _tc(3), tmp_path / "run")
    run = tmp_path / "run"
    log = json.loads((run / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    for key in ("train_instance_acc", "test_instance_acc", "test_class_acc", "lr", "seconds"):
        assert key in log[0]
    for name in ("best_model.safetensors", "last_model.safetensors", "train_state.pt", "curves.png", "run.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["best_epoch"] in (1, 2, 3)

    from facet3d.plugins.risurconv.checkpoint import load_model

    model, meta = load_model(run / "last_model.safetensors")
    assert meta["class_names"] == syn[0].class_names and meta["task"] in ("classification", "cls")
    tw = meta["trained_with"]
    assert tw["dataset"] == "synthetic" and tw["epochs"] == 3 and tw["command"] == "pytest"
    assert "test_instance_acc" in tw


@pytest.mark.slow
def test_resume_repeats_an_uninterrupted_run(syn, tmp_path):
    import torch

    from facet3d.core.checkpoints import load_checkpoint

    train(syn[0], syn[1], _tc(2), tmp_path / "straight")
    train(syn[0], syn[1], _tc(1), tmp_path / "resumed")
    state = torch.load(tmp_path / "resumed" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1
    train(syn[0], syn[1], _tc(2), tmp_path / "resumed", resume=True)
    log = json.loads((tmp_path / "resumed" / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2]
    a = load_checkpoint(tmp_path / "straight" / "last_model.safetensors")
    b = load_checkpoint(tmp_path / "resumed" / "last_model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    straight = json.loads((tmp_path / "straight" / "log.json").read_text())
    assert log[1]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-4)
    with pytest.raises(UsageError, match="resume"):
        train(syn[0], syn[1], _tc(2), tmp_path / "empty", resume=True)


def test_segmenter_trains(tmp_path):
    tr = open_dataset(None, "synthetic", "train", 128, task="segmentation", augment=True, samples_per_class=2)
    te = open_dataset(None, "synthetic", "test", 128, task="segmentation", samples_per_class=2)
    tc = TrainConfig(task="segmentation", config="tiny", epochs=1, batch_size=4, num_points=128)
    summary = train(tr, te, tc, tmp_path / "seg")
    rec = json.loads((tmp_path / "seg" / "log.json").read_text())[0]
    assert {"train_acc", "test_acc", "test_instance_miou", "test_class_miou"} <= set(rec)
    assert 0 <= summary["best_test_instance_miou"] <= 1


def test_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 3)
    assert m["instance_acc"] == pytest.approx(4 / 6)
    assert m["class_acc"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["confusion"] == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]
    cp = {"a": [0, 1], "b": [2, 3]}
    pred = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    truth = np.array([[0, 1, 1, 1], [2, 2, 2, 2]])
    s = segmentation_metrics(pred, truth, np.array([0, 1]), ["a", "b"], cp)
    # shape a: part0 IoU 1/2, part1 IoU 2/3; shape b: part2 IoU 1, part3 absent in both -> 1
    assert s["instance_miou"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1.0) / 2)
    assert s["class_miou"] == pytest.approx(s["instance_miou"])
    assert s["accuracy"] == pytest.approx(7 / 8)
