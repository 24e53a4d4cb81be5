"""Training loop for the RISurConv classifier and segmenter (official recipe by default).

Recipe: Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 1e-4), StepLR(step 20, gamma 0.7),
NLL on log-probs, batch 32 (16 for ScanObjectNN), official augmentation (`data.common.augment`),
evaluation on the test split after every epoch; the best epoch is the one with the best test
instance accuracy (classification) or instance mIoU (segmentation), as in the official scripts.

Run folder::

    run.json                  the run's configuration (resume reads it)
    log.json                  one record per epoch: losses, accuracies / mIoU, lr, seconds
    curves.png                the curves of log.json
    best_model.safetensors    + best_model.json  (facet3d checkpoint: weights + config/class names/trained_with)
    last_model.safetensors    + last_model.json
    train_state.pt            optimizer + scheduler + epoch + RNG state: plain tensors/numbers, loaded with
                              weights_only=True (so a resumed run repeats an uninterrupted one)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import UsageError
from facet3d.core.progress import LogFn, ProgressFn, say, tick


@dataclass
class TrainConfig:
    task: str = "classification"  # or "segmentation"
    config: str = "small"  # a models.CONFIGS name
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    step_size: int = 20
    gamma: float = 0.7
    num_points: int = 1024
    workers: int = 0
    seed: int = 0
    device: str = "cpu"
    trained_with: dict[str, Any] = field(default_factory=dict)  # command, dataset, data dir, ...


# The model config a dataset format trains by default (its paper's; synthetic data: the tiny one).
DEFAULT_CONFIG = {"modelnet40": "modelnet40", "modelnet-off": "modelnet40", "folder": "modelnet40",
                  "scanobjectnn": "scanobjectnn", "shapenet-part": "partseg", "synthetic": "tiny"}


def previous_run(out: Path, task: str) -> dict[str, Any]:
    """The run.json of the run folder ``out`` (to resume it), refusing one of the other task."""
    if not (out / "run.json").is_file():
        raise UsageError(f"--resume: {out} has no run.json (not a training run folder)")
    prev = json.loads((out / "run.json").read_text())
    if prev.get("task") != task:
        raise UsageError(f"--resume: {out} is a {prev.get('task')} run, not {task}")
    return prev


def _trained_with(command: str, fmt: str, data: str | Path | None, variant: str | None,
                  samples_per_class: int | None, prev: dict[str, Any]) -> dict[str, Any]:
    """How the run was made (saved in every checkpoint); a resumed run keeps its first command too."""
    tw = {"command": command, "format": fmt, "data": str(Path(data).resolve()) if data else None,
          "variant": variant, "samples_per_class": samples_per_class}
    old = prev.get("trained_with", {})
    if old.get("command"):
        tw["first_command"] = old.get("first_command", old["command"])
    return tw


def train_on_format(task: str, fmt: str | None, data: str | Path | None, out: str | Path, *, config: str | None = None,
                    epochs: int = 450, batch_size: int | None = None, lr: float = 1e-3, weight_decay: float = 1e-4,
                    num_points: int | None = None, resume: bool = False, workers: int = 0, variant: str | None = None,
                    samples_per_class: int | None = None, seed: int = 0, device: str = "cpu",
                    cache_dir: str | Path | None = None, command: str = "",
                    progress: ProgressFn | None = None, log: LogFn | None = None) -> dict[str, Any]:
    """Open a dataset's train and test splits and `train` on them: what ``facet3d train`` does.

    None means "the default": the format's official config, 1024 points (2048 for segmentation),
    batch 32 (16 for scanobjectnn and segmentation). With ``resume`` the run's own settings
    (run.json) win and fill what is not given, so ``resume=True, epochs=N`` is enough.
    """
    from facet3d.plugins.risurconv.data import open_dataset

    out, seg = Path(out), task == "segmentation"
    prev = previous_run(out, task) if resume else {}
    tw = prev.get("trained_with", {})
    fmt, variant = fmt or tw.get("format"), variant or tw.get("variant")
    data = data or (Path(tw["data"]) if tw.get("data") else None)
    samples_per_class = samples_per_class or tw.get("samples_per_class")
    if fmt is None:
        raise UsageError("--format is required")
    fmt = fmt.lower()
    tc = TrainConfig(task=task, config=prev.get("config") or config or DEFAULT_CONFIG.get(fmt, "small"), epochs=epochs,
                     batch_size=prev.get("batch_size") or batch_size or (16 if seg or fmt == "scanobjectnn" else 32),
                     lr=prev.get("lr", lr), weight_decay=prev.get("weight_decay", weight_decay),
                     num_points=prev.get("num_points") or num_points or (2048 if seg else 1024), workers=workers,
                     seed=prev.get("seed", seed), device=device,
                     trained_with=_trained_with(command, fmt, data, variant, samples_per_class, prev))
    opts = dict(task=task, cache_dir=cache_dir, workers=workers, seed=seed, variant=variant,
                samples_per_class=samples_per_class, progress=progress, log=log)
    say(log, f"preparing {fmt} data ...")
    train_ds = open_dataset(data, fmt, "train", tc.num_points, augment=True, **opts)
    test_ds = open_dataset(data, fmt, "test", tc.num_points, **opts)
    say(log, f"training {tc.config} {task} on {len(train_ds)} {fmt} samples ({train_ds.num_classes} "
             f"{'categories' if seg else 'classes'}), testing on {len(test_ds)}, device {tc.device}")
    return train(train_ds, test_ds, tc, out, resume=resume, progress=progress, log=log)


# Segmentation versions of the reduced classification configs, so `--config tiny|small` works for both tasks.
SEG_CONFIGS: dict[str, Any] = {
    "small": "partseg_small",
    "tiny": dict(task="seg", npoints=[128, 64, 32, 16], neighbours=[8, 8, 16, 16], channels=[16, 32, 64, 64],
                 fp_neighbours=[16, 8, 8, 8], fp_channels=[64, 64, 32, 32], fp_mlps=[[64], [32], [32], []], head=32),
}


def build_for(config: str, task: str, num_classes: int, num_parts: int | None = None):
    """A model of the named config sized for this dataset -> (model, its config dict).

    num_classes: classes (classification) or object categories (segmentation); num_parts: parts.
    """
    from facet3d.plugins.risurconv.models import CONFIGS, build_model

    seg = task == "segmentation"
    names = sorted(set(CONFIGS) | (set(SEG_CONFIGS) if seg else set()))
    if config not in CONFIGS and config not in SEG_CONFIGS:
        raise UsageError(f"unknown model config '{config}' (have: {', '.join(names)})")
    cfg: Any = CONFIGS.get(config)
    if seg and (cfg is None or cfg.get("task") != "seg"):
        cfg = SEG_CONFIGS.get(config)
        if cfg is None:
            raise UsageError(f"config '{config}' is a classifier; for segmentation use partseg, partseg_small, small or tiny")
        cfg = CONFIGS[cfg] if isinstance(cfg, str) else cfg
    elif not seg and cfg.get("task") != "cls":
        raise UsageError(f"config '{config}' is a segmenter; for classification use {', '.join(k for k, v in CONFIGS.items() if v.get('task') == 'cls')}")
    cfg = dict(cfg)
    if seg:
        cfg.update(num_parts=num_parts, num_categories=num_classes)
    else:
        cfg["num_classes"] = num_classes
    return build_model(cfg), cfg


def model_meta(cfg_dict: dict[str, Any], dataset, tc: TrainConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON saved beside a checkpoint: enough to rebuild the model and to say how it was trained."""
    meta = {"config": cfg_dict, "config_name": tc.config, "task": tc.task, "class_names": list(dataset.class_names),
            "num_points": tc.num_points,
            "trained_with": {**tc.trained_with, "dataset": dataset.name, "epochs_planned": tc.epochs,
                             "batch_size": tc.batch_size, "lr": tc.lr, "weight_decay": tc.weight_decay,
                             "step_size": tc.step_size, "gamma": tc.gamma, "num_points": tc.num_points,
                             "seed": tc.seed, "train_samples": len(dataset), **extra}}
    if tc.task == "segmentation":
        meta.update(categories=list(dataset.class_names), part_names=list(dataset.part_names),
                    category_parts=dataset.category_parts)
    return meta


def plot_curves(log: list[dict[str, Any]], path: Path, task: str) -> None:
    """Loss (left) and accuracy / mIoU (right) per epoch, as a PNG (Agg backend, atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facet3d.core.io.api import atomic_output

    ep = [r["epoch"] for r in log]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [r["train_loss"] for r in log], marker="o", label="train loss")
    a.set_xlabel("epoch")
    a.set_ylabel("NLL loss")
    a.legend()
    keys = (["train_instance_acc", "test_instance_acc", "test_class_acc"] if task == "classification"
            else ["train_acc", "test_acc", "test_instance_miou", "test_class_miou"])
    for k in keys:
        if any(k in r for r in log):
            b.plot([r["epoch"] for r in log if k in r], [r[k] for r in log if k in r], marker="o", label=k)
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def train(train_ds, test_ds, tc: TrainConfig, out_dir: str | Path, resume: bool = False,
          progress: ProgressFn | None = None, log: LogFn | None = None) -> dict[str, Any]:
    """Train (or resume) a model on ``train_ds``, evaluating on ``test_ds`` (may be None) every epoch.

    progress: (samples done, samples, "epoch E/N") during each epoch, then the test evaluation's reports.
    log: one line per epoch (losses, metrics) and on resume. Returns a summary: epochs run,
    final/best metrics, checkpoint paths.
    """
    import torch

    from facet3d.core.io.api import write_json
    from facet3d.plugins.risurconv.checkpoint import save_model
    from facet3d.plugins.risurconv.evaluate import evaluate

    out = Path(out_dir)
    seg = tc.task == "segmentation"
    if seg and train_ds.task != "segmentation":
        raise UsageError(f"dataset '{train_ds.name}' has no part labels")
    torch.manual_seed(tc.seed)
    num_parts = len(train_ds.part_names) if seg else None
    model, cfg_dict = build_for(tc.config, tc.task, train_ds.num_classes, num_parts)
    model.to(tc.device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=tc.step_size, gamma=tc.gamma)
    log_rows: list[dict[str, Any]] = []
    start_epoch, best = 1, {"value": -1.0, "epoch": 0}
    state_path = out / "train_state.pt"
    if resume:
        start_epoch, best, log_rows = _restore(out, model, opt, sched)
        say(log, f"resuming {out} at epoch {start_epoch} (best so far: epoch {best['epoch']})")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run.json", {**asdict(tc), "train_dataset": train_ds.describe(),
                                   "test_dataset": test_ds.describe() if test_ds is not None else None})
    if start_epoch > tc.epochs:
        say(log, f"{out} already ran {start_epoch - 1} epoch(s) >= --epochs {tc.epochs}; nothing to do")
    primary = "test_instance_miou" if seg else "test_instance_acc"
    for epoch in range(start_epoch, tc.epochs + 1):
        t0 = time.perf_counter()
        rec = _train_epoch(model, opt, train_ds, tc, epoch, progress)
        sched.step()
        if test_ds is not None:
            m = evaluate(model, test_ds, batch_size=tc.batch_size, device=tc.device, workers=tc.workers, progress=progress)
            keys = ("accuracy", "instance_miou", "class_miou") if seg else ("instance_acc", "class_acc")
            rec.update({f"test_{'acc' if k == 'accuracy' else k}": m[k] for k in keys})
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        log_rows.append(rec)
        value = rec.get(primary, -rec["train_loss"])
        is_best = value > best["value"]
        if is_best:
            best = {"value": float(value), "epoch": epoch}
        extra = {"epochs": epoch, **{k: v for k, v in rec.items() if k.startswith(("test_", "train_"))}}
        save_model(model, out / "last_model.safetensors", model_meta(cfg_dict, train_ds, tc, extra))
        if is_best:
            save_model(model, out / "best_model.safetensors", model_meta(cfg_dict, train_ds, tc, {**extra, "best_epoch": epoch}))
        _save_state(state_path, opt, sched, epoch, best)
        write_json(out / "log.json", log_rows)
        plot_curves(log_rows, out / "curves.png", tc.task)
        say(log, f"epoch {epoch}/{tc.epochs} " + " ".join(
            f"{k}={v:.4g}" for k, v in rec.items() if k not in ("epoch",) and isinstance(v, float)) + (" *best*" if is_best else ""))
    return {"out_dir": str(out), "epochs": tc.epochs, "best_epoch": best["epoch"], "best_" + primary: best["value"],
            "last": log_rows[-1] if log_rows else None, "best_model": str(out / "best_model.safetensors"),
            "last_model": str(out / "last_model.safetensors")}


def _train_epoch(model, opt, train_ds, tc: TrainConfig, epoch: int, progress: ProgressFn | None) -> dict[str, Any]:
    """One pass over ``train_ds``; returns the epoch's log record (lr, train loss, train accuracy)."""
    import torch.nn.functional as F

    from facet3d.plugins.risurconv.evaluate import loader

    seg = tc.task == "segmentation"
    model.train()
    train_ds.set_epoch(epoch)
    losses, correct, seen, done = [], 0, 0, 0
    tick(progress, 0, len(train_ds), f"epoch {epoch}/{tc.epochs}")
    for batch in loader(train_ds, tc.batch_size, shuffle=True, workers=tc.workers, drop_last=True,
                        seed=tc.seed * 100003 + epoch):
        xyz, nrm, label = (t.to(tc.device) for t in batch[:3])
        opt.zero_grad(set_to_none=True)
        if seg:
            parts = batch[3].to(tc.device)
            logp = model(xyz, nrm, label)  # [B, N, P]
            loss = F.nll_loss(logp.reshape(-1, logp.shape[-1]), parts.reshape(-1))
            correct += int((logp.argmax(-1) == parts).sum())
            seen += parts.numel()
        else:
            logp = model(xyz, nrm)  # [B, C]
            loss = F.nll_loss(logp, label)
            correct += int((logp.argmax(-1) == label).sum())
            seen += len(label)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done += len(label)
        tick(progress, done, len(train_ds))
    # drop_last leaves the tail of the shuffled set out of this epoch: the bar still ends full
    tick(progress, len(train_ds), len(train_ds))
    return {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": float(np.mean(losses)),
            ("train_acc" if seg else "train_instance_acc"): correct / max(seen, 1)}


def _restore(out: Path, model, opt, sched) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Load the last epoch's weights, optimizer, scheduler and RNG state -> (next epoch, best so far, log rows)."""
    import torch

    from facet3d.core.checkpoints import load_run_state

    weights, state, rows = load_run_state(out)
    model.load_state_dict(weights)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if "torch_rng" in state:  # dropout draws continue exactly where the interrupted run was
        torch.set_rng_state(state["torch_rng"])
    best = {"value": float(state["best_value"]), "epoch": int(state["best_epoch"])}
    return int(state["epoch"]) + 1, best, rows


def _save_state(path: Path, opt, sched, epoch: int, best: dict[str, Any]) -> None:
    """Optimizer + scheduler state: only tensors, numbers, strings, lists and dicts (weights_only-loadable)."""
    import torch

    from facet3d.core.io.api import atomic_output

    with atomic_output(path) as tmp:
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
                    "torch_rng": torch.get_rng_state(),
                    "best_value": best["value"], "best_epoch": best["epoch"]}, tmp)
