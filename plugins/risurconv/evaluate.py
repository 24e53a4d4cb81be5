"""Evaluation of RISurConv models: predictions under optional random rotations, and the metrics.

Classification: instance accuracy (fraction of shapes right), class accuracy (mean of per-class
recalls: the class-balanced number papers report) and the confusion matrix (rows = true class).
Segmentation: per-point accuracy and part mIoU, official style: a shape's prediction is the argmax
over its own category's parts; a part absent from both truth and prediction counts IoU 1;
instance mIoU averages over shapes, class mIoU over categories.

``rotate``: ``none``, ``z`` (random yaw) or ``so3`` (Haar-random rotation), drawn per sample from
a seeded generator and applied to points AND normals — a rotation-invariant model scores the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import UsageError
from facet3d.core.progress import LogFn, ProgressFn, say, tick

ROTATIONS = ("none", "z", "so3")


def rotate_batch(xyz, normals, mode: str, generator):
    """Rotate each sample of ``xyz, normals [B, N, 3]`` by its own random rotation (``mode``)."""
    import torch

    from facet3d.core.ops.rotations import random_rotation_about_axis, random_rotations

    if mode == "none":
        return xyz, normals
    B = xyz.shape[0]
    if mode == "so3":
        R = random_rotations(B, generator=generator, dtype=torch.float64)
    elif mode == "z":
        R = random_rotation_about_axis((0.0, 0.0, 1.0), B, generator=generator, dtype=torch.float64)
    else:
        raise UsageError(f"--rotate must be one of {', '.join(ROTATIONS)}, got '{mode}'")
    Rt = R.transpose(1, 2)
    # float64 products: the rotation itself should add no more error than the model's own float32 noise
    return ((xyz.double() @ Rt).to(xyz.dtype), (normals.double() @ Rt).to(normals.dtype))


def loader(dataset, batch_size: int, shuffle: bool = False, workers: int = 0, drop_last: bool = False, seed: int = 0):
    """A torch DataLoader over a `PointDataset` (drop_last only when there is more than one batch)."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       drop_last=drop_last and len(dataset) > batch_size, generator=g,
                                       persistent_workers=False)


def predict(model, dataset, batch_size: int = 32, rotate: str = "none", seed: int = 0, device: str = "cpu",
            workers: int = 0, progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` (eval mode) over ``dataset``; `progress` gets (samples done, samples, "eval SPLIT").

    Returns classification ``{"pred": [M], "label": [M], "logp": [M, C]}``; segmentation
    ``{"pred": [M, N] (argmax within each shape's category), "parts": [M, N], "label": [M]}``.
    """
    import torch

    check_rotation(rotate)
    gen = torch.Generator()
    gen.manual_seed(seed)
    seg = dataset.task == "segmentation"
    mask = None
    if seg:  # [num_categories, P]: which global parts belong to each category
        P = len(dataset.part_names)
        mask = torch.full((dataset.num_classes, P), float("-inf"))
        for ci, cat in enumerate(dataset.class_names):
            mask[ci, dataset.category_parts[cat]] = 0.0
    model.eval()
    out: dict[str, list] = {"pred": [], "label": [], "logp": [], "parts": []}
    done = 0
    tick(progress, 0, len(dataset), f"eval {dataset.split}")
    with torch.no_grad():
        for batch in loader(dataset, batch_size, workers=workers):
            xyz, nrm, label = batch[0], batch[1], batch[2]
            xyz, nrm = rotate_batch(xyz, nrm, rotate, gen)
            xyz, nrm = xyz.to(device), nrm.to(device)
            if seg:
                logp = model(xyz, nrm, label.to(device)).cpu()  # [B, N, P]
                restricted = logp[..., : mask.shape[1]] + mask[label][:, None, :]
                out["pred"].append(restricted.argmax(-1).numpy())
                out["parts"].append(batch[3].numpy())
            else:
                logp = model(xyz, nrm).cpu()  # [B, C]
                out["pred"].append(logp.argmax(-1).numpy())
                out["logp"].append(logp.numpy())
            out["label"].append(label.numpy())
            done += len(label)
            tick(progress, done, len(dataset))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def classification_metrics(pred: np.ndarray, label: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Instance and class accuracy, per-class accuracy and the confusion matrix ``[C, C]`` (rows: truth)."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(conf, (label, pred), 1)
    support = conf.sum(1)
    per_class = np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)
    return {"instance_acc": float((pred == label).mean()), "class_acc": float(np.nanmean(per_class)),
            "per_class_acc": [None if np.isnan(a) else float(a) for a in per_class], "confusion": conf.tolist(),
            "samples": int(len(label))}


def segmentation_metrics(pred: np.ndarray, parts: np.ndarray, category: np.ndarray, class_names: list[str],
                         category_parts: dict[str, list[int]]) -> dict[str, Any]:
    """Point accuracy, instance mIoU (mean over shapes) and class mIoU (mean over categories)."""
    shape_ious: dict[str, list[float]] = {c: [] for c in class_names}
    for p, t, c in zip(pred, parts, category):
        cat = class_names[int(c)]
        ious = []
        for part in category_parts[cat]:
            inter, union = np.sum((p == part) & (t == part)), np.sum((p == part) | (t == part))
            ious.append(1.0 if union == 0 else inter / union)
        shape_ious[cat].append(float(np.mean(ious)))
    all_ious = [v for vs in shape_ious.values() for v in vs]
    per_cat = {c: float(np.mean(v)) for c, v in shape_ious.items() if v}
    return {"accuracy": float((pred == parts).mean()), "instance_miou": float(np.mean(all_ious)),
            "class_miou": float(np.mean(list(per_cat.values()))), "per_category_miou": per_cat,
            "samples": int(len(pred))}


def evaluate(model, dataset, batch_size: int = 32, rotate: str = "none", seed: int = 0, device: str = "cpu",
             workers: int = 0, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Predictions + metrics of ``model`` on ``dataset`` (see the module docstring)."""
    res = predict(model, dataset, batch_size, rotate, seed, device, workers, progress)
    if dataset.task == "segmentation":
        m = segmentation_metrics(res["pred"], res["parts"], res["label"], dataset.class_names, dataset.category_parts)
    else:
        m = classification_metrics(res["pred"], res["label"], dataset.num_classes)
    m.update(rotate=rotate, class_names=list(dataset.class_names))
    return m


def plot_confusion(conf: np.ndarray, class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facet3d.core.io.api import atomic_output

    conf = np.asarray(conf, dtype=np.float64)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.28 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7 if n > 20 else 9)
    ax.set_yticks(range(n), class_names, fontsize=7 if n > 20 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if conf[i, j]:
                    ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def write_report(metrics: dict[str, Any], out_dir: str | Path, stem: str = "eval") -> dict[str, str]:
    """``<stem>.json`` (+ ``<stem>_confusion.png`` for classification) in ``out_dir``."""
    from facet3d.core.io.api import atomic_output

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / f"{stem}.json")}
    with atomic_output(out / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    if "confusion" in metrics:
        files["confusion_png"] = str(plot_confusion(np.asarray(metrics["confusion"]), metrics["class_names"],
                                                    out / f"{stem}_confusion.png",
                                                    f"rotate={metrics.get('rotate')}  acc={metrics['instance_acc']:.3f}"))
    return files


def check_rotation(rotate: str) -> None:
    """Refuse an unknown ``--rotate`` before any data is loaded."""
    if rotate not in ROTATIONS:
        raise UsageError(f"--rotate must be one of {', '.join(ROTATIONS)}, got '{rotate}'")


def check_classes(meta: dict[str, Any], dataset, ckpt: str | Path, log: LogFn | None = None) -> None:
    """A classifier's classes must match the dataset's in number; differing names only warrant a warning."""
    names = meta.get("class_names")
    if not names or dataset.task != "classification":
        return
    if len(names) != dataset.num_classes:
        raise UsageError(f"{ckpt}: the model has {len(names)} classes, the dataset {dataset.num_classes}")
    if list(names) != dataset.class_names:
        say(log, "warning: the dataset's class names differ from the checkpoint's; labels are matched by index")


def evaluate_checkpoint(task: str, ckpt: str | Path, data: str | Path | None, fmt: str, split: str = "test",
                        rotate: str = "none", num_points: int | None = None, batch_size: int = 32, workers: int = 0,
                        seed: int = 0, device: str = "cpu", out: str | Path | None = None,
                        cache_dir: str | Path | None = None, progress: ProgressFn | None = None,
                        log: LogFn | None = None, **dataset_options: Any) -> dict[str, Any]:
    """`evaluate` a checkpoint of ``task`` on a dataset split; with ``out``, also `write_report` there.

    dataset_options: `open_dataset` options (variant, samples_per_class). Returns the metrics plus
    checkpoint / dataset / split / num_points (and ``files`` when a report was written).
    """
    from facet3d.plugins.risurconv.checkpoint import load_for_task
    from facet3d.plugins.risurconv.data import open_dataset

    check_rotation(rotate)
    model, meta = load_for_task(ckpt, task)
    model.to(device)
    n = num_points or meta.get("num_points") or (2048 if task == "segmentation" else 1024)
    ds = open_dataset(data, fmt, split, n, task=task, cache_dir=cache_dir, workers=workers, progress=progress,
                      log=log, **dataset_options)
    check_classes(meta, ds, ckpt, log)
    say(log, f"evaluating {ckpt} on {len(ds)} {fmt} {split} samples, rotate={rotate}")
    m = evaluate(model, ds, batch_size=batch_size, rotate=rotate, seed=seed, device=device, workers=workers,
                 progress=progress)
    m.update(checkpoint=str(ckpt), dataset=fmt, split=split, num_points=n)
    if out is not None:
        m["files"] = write_report(m, out, f"eval_{task}_{rotate}")
    return m
