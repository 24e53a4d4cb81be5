"""RISurConv work code reports through callbacks (facet3d.core.progress) and is silent without them."""

from __future__ import annotations

import pytest

from facet3d.plugins.risurconv.data import open_dataset
from facet3d.plugins.risurconv.evaluate import evaluate, evaluate_checkpoint
from facet3d.plugins.risurconv.train import TrainConfig, train, train_on_format

N = 128


@pytest.fixture(scope="module")
def syn():
    return (open_dataset(None, "synthetic", "train", N, augment=True, samples_per_class=2),
            open_dataset(None, "synthetic", "test", N, samples_per_class=2))


def _tc() -> TrainConfig:
    return TrainConfig(task="classification", config="tiny", epochs=1, batch_size=8, num_points=N)


class Recorder:
    """A progress callback keeping every (done, total) report."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, int | None]] = []
        self.descriptions: list[str] = []

    def __call__(self, done, total=None, description=None) -> None:
        self.reports.append((done, total))
        if description:
            self.descriptions.append(description)


def _ends_at_total(reports) -> bool:
    done, total = reports[-1]
    return total is not None and done == total


def test_train_reports_progress_and_log_lines(syn, tmp_path, capsys):
    rec, lines = Recorder(), []
    train(syn[0], syn[1], _tc(), tmp_path / "run", progress=rec, log=lines.append)
    assert rec.reports and _ends_at_total(rec.reports)
    assert any(d.startswith("epoch 1/1") for d in rec.descriptions)
    assert any(line.startswith("epoch 1/1") for line in lines)
    assert all(0 <= d <= t for d, t in rec.reports if t is not None)
    assert capsys.readouterr().err == ""


def test_train_and_evaluate_print_nothing_without_callbacks(syn, tmp_path, capsys):
    train(syn[0], syn[1], _tc(), tmp_path / "run")
    from facet3d.plugins.risurconv.checkpoint import load_model

    model, _ = load_model(tmp_path / "run" / "best_model.safetensors")
    evaluate(model, syn[1], batch_size=8)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_evaluate_reports_progress_ending_at_total(syn, tmp_path):
    train(syn[0], None, _tc(), tmp_path / "run")
    from facet3d.plugins.risurconv.checkpoint import load_model

    model, _ = load_model(tmp_path / "run" / "last_model.safetensors")
    rec = Recorder()
    m = evaluate(model, syn[1], batch_size=4, progress=rec)
    assert rec.reports[0] == (0, len(syn[1])) and rec.reports[-1] == (len(syn[1]), len(syn[1]))
    assert m["samples"] == len(syn[1])


def test_train_on_format_then_evaluate_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    lines: list[str] = []
    summary = train_on_format("classification", "synthetic", None, run, config="tiny", epochs=1, batch_size=8,
                              num_points=N, samples_per_class=2, command="pytest", log=lines.append)
    assert lines[0] == "preparing synthetic data ..." and any(line.startswith("training tiny") for line in lines)
    rec = Recorder()
    m = evaluate_checkpoint("classification", summary["best_model"], None, "synthetic", samples_per_class=2,
                            out=tmp_path / "ev", progress=rec)
    assert _ends_at_total(rec.reports) and m["num_points"] == N
    assert (tmp_path / "ev" / "eval_classification_none.json").is_file()
    # resuming reads the run's own settings: only the new epoch count is needed
    again = train_on_format("classification", None, None, run, epochs=2, resume=True)
    assert again["epochs"] == 2
    assert capsys.readouterr().err == ""
