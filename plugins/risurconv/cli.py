"""The RISurConv commands: ``train classifier|segmenter``, ``eval classifier|segmenter``, ``classify``, ``segment``.

Commands only (parse, call the work modules, print). Heavy imports (torch, the model) happen
inside the command bodies so ``facet3d --help`` stays light. ``train`` and ``eval`` are groups
that other plugins may also extend (`facet3d.cli.api.group`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from facet3d.cli.api import command_line, expand_inputs, write_run_page, group, note, out, print_json, progress_callback, resolve_device, run_batch
from facet3d.core.errors import UsageError

FORMAT_HELP = "Dataset layout: modelnet40 | modelnet-off | scanobjectnn | shapenet-part | folder | synthetic."
SEG_FORMAT_HELP = "shapenet-part | synthetic."

DATA = typer.Option(None, "--data", help="Dataset folder (not needed for --format synthetic).")
CONFIG = typer.Option(None, "--config", help="Model config: modelnet40 | scanobjectnn | partseg | small | tiny (default: the format's official one; synthetic: tiny).")
EPOCHS = typer.Option(450, "--epochs", min=1, help="Total epochs (official: 450).")
RUN_OUT = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, log.json, curves.png).")
TRAIN_BATCH = typer.Option(None, "--batch-size", min=1, help="Default 32 (16 for scanobjectnn and segmentation).")
LR = typer.Option(1e-3, "--lr", help="Adam learning rate.")
WEIGHT_DECAY = typer.Option(1e-4, "--weight-decay", help="Adam weight decay.")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out from its last epoch.")
WORKERS = typer.Option(0, "--workers", min=0, help="Data loader / preprocessing processes.")
VARIANT = typer.Option(None, "--variant", help="scanobjectnn: PB_T50_RS (default) | OBJ_BG | OBJ_ONLY.")
SAMPLES_PER_CLASS = typer.Option(None, "--samples-per-class", min=1, help="synthetic: training shapes per class (default 48; the test split gets a quarter, at least 2).")
SEED = typer.Option(0, "--seed", help="Random seed.")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda.")
CACHE_DIR = typer.Option(None, "--cache-dir", help="Preprocessing cache folder (default <data>/.facet3d_cache).")
JSON_SUMMARY = typer.Option(False, "--json", help="Print the summary as JSON.")
CKPT = typer.Option(..., "--ckpt", help="Checkpoint: facet3d .safetensors (+ .json) or official best_model.pth.")
ROTATE = typer.Option("none", "--rotate", help="Random rotation per sample: none | z | so3.")
SPLIT = typer.Option("test", "--split", help="Dataset split.")
EVAL_POINTS = typer.Option(None, "--num-points", min=16, help="Points per shape (default: the checkpoint's).")
EVAL_BATCH = typer.Option(32, "--batch-size", min=1)
REPORT_OUT = typer.Option(None, "--out", "-o", help="Folder for the metrics JSON and confusion matrix PNG.")


def _train(task: str, json_out: bool, **kw: Any) -> None:
    from facet3d.plugins.risurconv.train import train_on_format

    kw["device"] = resolve_device(kw["device"])
    with progress_callback("train") as bar:
        summary = train_on_format(task, command=command_line(), progress=bar, log=note, **kw)
    write_run_page(kw["out"], f"RISurConv {task} training", summary)
    if json_out:
        print_json(summary)
        return
    key = "best_test_instance_miou" if task == "segmentation" else "best_test_instance_acc"
    typer.echo(f"best epoch {summary['best_epoch']}: {key.removeprefix('best_')} {summary[key]:.4f}; "
               f"checkpoint {summary['best_model']}")


def train_classifier(
    data: Optional[Path] = DATA,
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    num_points: Optional[int] = typer.Option(None, "--num-points", min=16, help="Points per shape (default 1024)."),
    config: Optional[str] = CONFIG, epochs: int = EPOCHS, out: Path = RUN_OUT, batch_size: Optional[int] = TRAIN_BATCH,
    lr: float = LR, weight_decay: float = WEIGHT_DECAY, resume: bool = RESUME, workers: int = WORKERS,
    variant: Optional[str] = VARIANT, samples_per_class: Optional[int] = SAMPLES_PER_CLASS, seed: int = SEED,
    device: str = DEVICE, cache_dir: Optional[Path] = CACHE_DIR, json_out: bool = JSON_SUMMARY,
) -> None:
    """Train a RISurConv classifier (official recipe: Adam 1e-3, StepLR(20, 0.7), no rotation augmentation).

    \b
    Examples:
      facet3d train classifier --format synthetic --config tiny --epochs 5 --out runs/syn
      facet3d train classifier --data modelnet40_normal_resampled --format modelnet40 --epochs 450 --out runs/mn40
      facet3d train classifier --out runs/mn40 --resume --epochs 500
    """
    _train("classification", json_out, data=data, fmt=fmt, out=out, config=config, epochs=epochs,
           batch_size=batch_size, lr=lr, weight_decay=weight_decay, num_points=num_points, resume=resume,
           workers=workers, variant=variant, samples_per_class=samples_per_class, seed=seed, device=device,
           cache_dir=cache_dir)


def train_segmenter(
    data: Optional[Path] = DATA,
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=SEG_FORMAT_HELP),
    num_points: Optional[int] = typer.Option(None, "--num-points", min=16, help="Points per shape (default 2048)."),
    config: Optional[str] = CONFIG, epochs: int = EPOCHS, out: Path = RUN_OUT, batch_size: Optional[int] = TRAIN_BATCH,
    lr: float = LR, weight_decay: float = WEIGHT_DECAY, resume: bool = RESUME, workers: int = WORKERS,
    samples_per_class: Optional[int] = SAMPLES_PER_CLASS, seed: int = SEED, device: str = DEVICE,
    cache_dir: Optional[Path] = CACHE_DIR, json_out: bool = JSON_SUMMARY,
) -> None:
    """Train a RISurConv part segmenter (ShapeNet part or the synthetic part set).

    \b
    Examples:
      facet3d train segmenter --format synthetic --config tiny --epochs 5 --num-points 512 --out runs/seg
      facet3d train segmenter --data shapenetcore_partanno_segmentation_benchmark_v0_normal --format shapenet-part --out runs/part
    """
    _train("segmentation", json_out, data=data, fmt=fmt, out=out, config=config, epochs=epochs,
           batch_size=batch_size, lr=lr, weight_decay=weight_decay, num_points=num_points, resume=resume,
           workers=workers, variant=None, samples_per_class=samples_per_class, seed=seed, device=device,
           cache_dir=cache_dir)


def _eval(task: str, json_out: bool, **kw: Any) -> None:
    from facet3d.plugins.risurconv.evaluate import check_rotation, evaluate_checkpoint

    check_rotation(kw["rotate"])
    kw["device"] = resolve_device(kw["device"])
    with progress_callback("eval") as bar:
        m = evaluate_checkpoint(task, progress=bar, log=note, **kw)
    if json_out:
        print_json(m)
    elif task == "classification":
        typer.echo(f"instance accuracy {m['instance_acc']:.4f}  class accuracy {m['class_acc']:.4f}  "
                   f"({m['samples']} samples, rotate={m['rotate']})")
    else:
        typer.echo(f"instance mIoU {m['instance_miou']:.4f}  class mIoU {m['class_miou']:.4f}  "
                   f"point accuracy {m['accuracy']:.4f}  ({m['samples']} samples, rotate={m['rotate']})")


def eval_classifier(
    data: Optional[Path] = DATA, fmt: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
    ckpt: Path = CKPT, rotate: str = ROTATE, split: str = SPLIT, num_points: Optional[int] = EVAL_POINTS,
    batch_size: int = EVAL_BATCH, workers: int = WORKERS, variant: Optional[str] = VARIANT,
    samples_per_class: Optional[int] = SAMPLES_PER_CLASS, seed: int = SEED, device: str = DEVICE,
    out: Optional[Path] = REPORT_OUT, cache_dir: Optional[Path] = CACHE_DIR, json_out: bool = JSON_SUMMARY,
) -> None:
    """Instance / class accuracy and confusion matrix of a classifier, optionally under random rotations.

    \b
    Examples:
      facet3d eval classifier --data modelnet40_normal_resampled --format modelnet40 --ckpt best_model.pth --rotate so3
    """
    _eval("classification", json_out, ckpt=ckpt, data=data, fmt=fmt, split=split, rotate=rotate,
          num_points=num_points, batch_size=batch_size, workers=workers, seed=seed, device=device, out=out,
          cache_dir=cache_dir, variant=variant, samples_per_class=samples_per_class)


def eval_segmenter(
    data: Optional[Path] = DATA, fmt: str = typer.Option(..., "--format", "-f", help=SEG_FORMAT_HELP),
    ckpt: Path = CKPT, rotate: str = ROTATE, split: str = SPLIT, num_points: Optional[int] = EVAL_POINTS,
    batch_size: int = EVAL_BATCH, workers: int = WORKERS, samples_per_class: Optional[int] = SAMPLES_PER_CLASS,
    seed: int = SEED, device: str = DEVICE, out: Optional[Path] = REPORT_OUT,
    cache_dir: Optional[Path] = CACHE_DIR, json_out: bool = JSON_SUMMARY,
) -> None:
    """Part mIoU (instance and class averaged) of a segmenter, optionally under random rotations."""
    _eval("segmentation", json_out, ckpt=ckpt, data=data, fmt=fmt, split=split, rotate=rotate,
          num_points=num_points, batch_size=batch_size, workers=workers, seed=seed, device=device, out=out,
          cache_dir=cache_dir, variant=None, samples_per_class=samples_per_class)


def classify(
    files: List[str] = typer.Argument(..., metavar="FILE", help="Meshes or point clouds (any format facet3d reads); folders expand."),
    ckpt: Path = typer.Option(..., "--ckpt", help="Classifier checkpoint (facet3d .safetensors or official best_model.pth)."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="Classes to list per file."),
    num_points: Optional[int] = typer.Option(None, "--num-points", min=16, help="Points fed to the model (default: the checkpoint's)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders of folder inputs."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Classify shapes with a RISurConv model (meshes are surface-sampled; clouds get oriented normals).

    \b
    Examples:
      facet3d classify chair.off bunny.ply --ckpt sample_data/risurconv/classifier.safetensors
      facet3d classify scans/ --ckpt best_model.pth --top-k 5 --json
    """
    from facet3d.plugins.risurconv.checkpoint import load_for_task
    from facet3d.plugins.risurconv.predict import classify_file

    model, meta = load_for_task(ckpt, "classification")
    n = num_points or meta.get("num_points") or 1024
    names = list(meta.get("class_names") or [])
    results, failures = run_batch(expand_inputs(files, recursive), lambda p: classify_file(model, p, n, names, top_k), "classify")
    if json_out:
        print_json(results)
    else:
        for r in results:
            alts = ", ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top_k"][1:])
            out.print(f"{r['file']}: {r['label']} ({r['prob']:.3f})" + (f"  [{alts}]" if alts else ""), markup=False)
    if failures:
        raise typer.Exit(1)


def segment(
    file: str = typer.Argument(..., metavar="FILE", help="A mesh or point cloud."),
    ckpt: Path = typer.Option(..., "--ckpt", help="Segmenter checkpoint."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output PLY: points with a 'part' property and colours."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Object category (default: the most confident)."),
    num_points: Optional[int] = typer.Option(None, "--num-points", min=16, help="Points (default: the checkpoint's)."),
    samples_only: bool = typer.Option(False, "--samples-only", help="Write only the points the model saw (default: label every input point / mesh vertex)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Per-point part labels with a RISurConv segmenter, written as a PLY (property 'part' + colours).

    Every point of the input (every vertex of a mesh, faces kept) gets the label of the nearest
    point the model classified.

    \b
    Example:
      facet3d segment mug.obj --ckpt part_seg.safetensors --category Mug --out mug_parts.ply
    """
    from facet3d.plugins.risurconv.checkpoint import load_for_task, pick_category
    from facet3d.plugins.risurconv.predict import seg_mapping, segment_file

    if out_path.suffix.lower() != ".ply":
        raise UsageError(f"{out_path}: --out must be a .ply file")
    model, meta = load_for_task(ckpt, "segmentation")
    cats, cp, part_names = seg_mapping(meta)
    n = num_points or meta.get("num_points") or 2048
    summary = segment_file(model, Path(file), out_path, n, cats, cp, part_names, pick_category(cats, category),
                           full_resolution=not samples_only)
    if json_out:
        print_json(summary)
    else:
        counts = ", ".join(f"{k} {v}" for k, v in summary["part_counts"].items())
        typer.echo(f"{file}: category {summary['category']}; parts: {counts}; wrote {out_path}")


def register(app: typer.Typer) -> None:
    """Add the RISurConv commands to the root app."""
    train_app = group(app, "train", "Train models (RISurConv classifier / part segmenter, ...).")
    eval_app = group(app, "eval", "Evaluate trained models on a dataset.")
    train_app.command("classifier")(train_classifier)
    train_app.command("segmenter")(train_segmenter)
    eval_app.command("classifier")(eval_classifier)
    eval_app.command("segmenter")(eval_segmenter)
    app.command("classify")(classify)
    app.command("segment")(segment)
