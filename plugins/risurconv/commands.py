"""The RISurConv commands: ``train classifier|segmenter``, ``eval classifier|segmenter``, ``classify``, ``segment``.

Registered by the plugin's ``facet3d_register_commands`` hook. Heavy imports (torch, the model)
happen inside the command bodies so ``facet3d --help`` stays light. ``train`` and ``eval`` are
groups that other plugins may also extend: `group` reuses a group of that name if one exists.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from facet3d.core.errors import UsageError

DEFAULT_CONFIG = {"modelnet40": "modelnet40", "modelnet-off": "modelnet40", "folder": "modelnet40",
                  "scanobjectnn": "scanobjectnn", "shapenet-part": "partseg", "synthetic": "tiny"}
FORMAT_HELP = "Dataset layout: modelnet40 | modelnet-off | scanobjectnn | shapenet-part | folder | synthetic."


def group(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """The sub-app ``name`` of ``app``: an existing one (another plugin's) or a new one."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    return device


def _command_line() -> str:
    return "facet3d " + " ".join(sys.argv[1:])


def _train(task: str, data: Optional[Path], fmt: Optional[str], config: Optional[str], epochs: int, out: Path,
           batch_size: Optional[int], lr: float, weight_decay: float, num_points: Optional[int], resume: bool,
           workers: int, variant: Optional[str], samples_per_class: Optional[int], seed: int, device: str,
           cache_dir: Optional[Path], json_out: bool) -> None:
    import json

    from facet3d.cli.console import err, print_json
    from facet3d.plugins.risurconv.data import open_dataset
    from facet3d.plugins.risurconv.train import TrainConfig, train

    seg = task == "segmentation"
    prev: dict[str, Any] = {}
    if resume:  # the run's own settings win, so `--resume --epochs N` is all one needs to type
        if not (out / "run.json").is_file():
            raise UsageError(f"--resume: {out} has no run.json (not a training run folder)")
        prev = json.loads((out / "run.json").read_text())
        if prev.get("task") != task:
            raise UsageError(f"--resume: {out} is a {prev.get('task')} run, not {task}")
        tw = prev.get("trained_with", {})
        fmt = fmt or tw.get("format")
        data = data or (Path(tw["data"]) if tw.get("data") else None)
        variant = variant or tw.get("variant")
        samples_per_class = samples_per_class or tw.get("samples_per_class")
    if fmt is None:
        raise UsageError("--format is required")
    fmt = fmt.lower()
    config = prev.get("config") or config or DEFAULT_CONFIG.get(fmt, "small")
    n = prev.get("num_points") or num_points or (2048 if seg else 1024)
    bs = prev.get("batch_size") or batch_size or (16 if seg or fmt == "scanobjectnn" else 32)
    opts = dict(task=task, cache_dir=cache_dir, workers=workers, seed=seed, variant=variant,
                samples_per_class=samples_per_class)
    err.print(f"facet3d: preparing {fmt} data ...")
    train_ds = open_dataset(data, fmt, "train", n, augment=True, **opts)
    test_ds = open_dataset(data, fmt, "test", n, **opts)
    trained_with = {"command": _command_line(), "format": fmt, "data": str(Path(data).resolve()) if data else None,
                    "variant": variant, "samples_per_class": samples_per_class}
    if prev.get("trained_with", {}).get("command"):
        trained_with["first_command"] = prev["trained_with"].get("first_command", prev["trained_with"]["command"])
    tc = TrainConfig(task=task, config=config, epochs=epochs, batch_size=bs, lr=prev.get("lr", lr),
                     weight_decay=prev.get("weight_decay", weight_decay), num_points=n, workers=workers,
                     seed=prev.get("seed", seed), device=_device(device), trained_with=trained_with)
    err.print(f"facet3d: training {config} {task} on {len(train_ds)} {fmt} samples "
              f"({train_ds.num_classes} {'categories' if seg else 'classes'}), testing on {len(test_ds)}, device {tc.device}")
    summary = train(train_ds, test_ds, tc, out, resume=resume)
    if json_out:
        print_json(summary)
    else:
        key = "best_test_instance_miou" if seg else "best_test_instance_acc"
        typer.echo(f"best epoch {summary['best_epoch']}: {key.removeprefix('best_')} {summary[key]:.4f}; "
                   f"checkpoint {summary['best_model']}")


def _load(ckpt: Path, task: str):
    """(model, meta) of a checkpoint, refusing one made for the other task."""
    from facet3d.plugins.risurconv.checkpoint import load_model
    from facet3d.plugins.risurconv.predict import task_of

    model, meta = load_model(ckpt)
    got = task_of(meta)
    if got != task:
        raise UsageError(f"{ckpt}: a {got} checkpoint; this command needs a {task} model")
    return model, meta


def _eval(task: str, data: Optional[Path], fmt: str, ckpt: Path, rotate: str, split: str, num_points: Optional[int],
          batch_size: int, workers: int, variant: Optional[str], samples_per_class: Optional[int], seed: int,
          device: str, out: Optional[Path], cache_dir: Optional[Path], json_out: bool) -> None:
    from facet3d.cli.console import err, print_json
    from facet3d.plugins.risurconv.data import open_dataset
    from facet3d.plugins.risurconv.evaluate import ROTATIONS, evaluate, write_report

    if rotate not in ROTATIONS:
        raise UsageError(f"--rotate must be one of {', '.join(ROTATIONS)}, got '{rotate}'")
    model, meta = _load(ckpt, task)
    dev = _device(device)
    model.to(dev)
    n = num_points or meta.get("num_points") or (2048 if task == "segmentation" else 1024)
    ds = open_dataset(data, fmt, split, n, task=task, cache_dir=cache_dir, workers=workers, variant=variant,
                      samples_per_class=samples_per_class)
    names = meta.get("class_names")
    if task == "classification" and names and len(names) != ds.num_classes:
        raise UsageError(f"{ckpt}: the model has {len(names)} classes, the dataset {ds.num_classes}")
    if task == "classification" and names and list(names) != ds.class_names:
        err.print("facet3d: warning: the dataset's class names differ from the checkpoint's; labels are matched by index")
    err.print(f"facet3d: evaluating {ckpt} on {len(ds)} {fmt} {split} samples, rotate={rotate}")
    m = evaluate(model, ds, batch_size=batch_size, rotate=rotate, seed=seed, device=dev, workers=workers)
    m.update(checkpoint=str(ckpt), dataset=fmt, split=split, num_points=n)
    if out is not None:
        m["files"] = write_report(m, out, f"eval_{task}_{rotate}")
    if json_out:
        print_json(m)
    elif task == "classification":
        typer.echo(f"instance accuracy {m['instance_acc']:.4f}  class accuracy {m['class_acc']:.4f}  "
                   f"({m['samples']} samples, rotate={rotate})")
    else:
        typer.echo(f"instance mIoU {m['instance_miou']:.4f}  class mIoU {m['class_miou']:.4f}  "
                   f"point accuracy {m['accuracy']:.4f}  ({m['samples']} samples, rotate={rotate})")


def register(app: typer.Typer) -> None:
    """Add the RISurConv commands to the root app."""
    train_app = group(app, "train", "Train models (RISurConv classifier / part segmenter, ...).")
    eval_app = group(app, "eval", "Evaluate trained models on a dataset.")

    data_opt = typer.Option(None, "--data", help="Dataset folder (not needed for --format synthetic).")
    common = dict(
        config=typer.Option(None, "--config", help="Model config: modelnet40 | scanobjectnn | partseg | small | tiny (default: the format's official one; synthetic: tiny)."),
        epochs=typer.Option(450, "--epochs", min=1, help="Total epochs (official: 450)."),
        out=typer.Option(..., "--out", "-o", help="Run folder (checkpoints, log.json, curves.png)."),
        batch_size=typer.Option(None, "--batch-size", min=1, help="Default 32 (16 for scanobjectnn and segmentation)."),
        lr=typer.Option(1e-3, "--lr", help="Adam learning rate."),
        weight_decay=typer.Option(1e-4, "--weight-decay", help="Adam weight decay."),
        resume=typer.Option(False, "--resume", help="Continue the run in --out from its last epoch."),
        workers=typer.Option(0, "--workers", min=0, help="Data loader / preprocessing processes."),
        variant=typer.Option(None, "--variant", help="scanobjectnn: PB_T50_RS (default) | OBJ_BG | OBJ_ONLY."),
        samples_per_class=typer.Option(None, "--samples-per-class", min=1, help="synthetic: training shapes per class (default 48; the test split gets a quarter, at least 2)."),
        seed=typer.Option(0, "--seed", help="Random seed."),
        device=typer.Option("auto", "--device", help="auto | cpu | cuda."),
        cache_dir=typer.Option(None, "--cache-dir", help="Preprocessing cache folder (default <data>/.facet3d_cache)."),
        json_out=typer.Option(False, "--json", help="Print the summary as JSON."),
    )

    @train_app.command("classifier")
    def train_classifier(
        data: Optional[Path] = data_opt,
        fmt: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
        num_points: Optional[int] = typer.Option(None, "--num-points", min=16, help="Points per shape (default 1024)."),
        config: Optional[str] = common["config"], epochs: int = common["epochs"], out: Path = common["out"],
        batch_size: Optional[int] = common["batch_size"], lr: float = common["lr"],
        weight_decay: float = common["weight_decay"], resume: bool = common["resume"], workers: int = common["workers"],
        variant: Optional[str] = common["variant"], samples_per_class: Optional[int] = common["samples_per_class"],
        seed: int = common["seed"], device: str = common["device"], cache_dir: Optional[Path] = common["cache_dir"],
        json_out: bool = common["json_out"],
    ) -> None:
        """Train a RISurConv classifier (official recipe: Adam 1e-3, StepLR(20, 0.7), no rotation augmentation).

        \b
        Examples:
          facet3d train classifier --format synthetic --config tiny --epochs 5 --out runs/syn
          facet3d train classifier --data modelnet40_normal_resampled --format modelnet40 --epochs 450 --out runs/mn40
          facet3d train classifier --out runs/mn40 --resume --epochs 500
        """
        _train("classification", data, fmt, config, epochs, out, batch_size, lr, weight_decay, num_points, resume,
               workers, variant, samples_per_class, seed, device, cache_dir, json_out)

    @train_app.command("segmenter")
    def train_segmenter(
        data: Optional[Path] = data_opt,
        fmt: Optional[str] = typer.Option(None, "--format", "-f", help="shapenet-part | synthetic."),
        num_points: Optional[int] = typer.Option(None, "--num-points", min=16, help="Points per shape (default 2048)."),
        config: Optional[str] = common["config"], epochs: int = common["epochs"], out: Path = common["out"],
        batch_size: Optional[int] = common["batch_size"], lr: float = common["lr"],
        weight_decay: float = common["weight_decay"], resume: bool = common["resume"], workers: int = common["workers"],
        samples_per_class: Optional[int] = common["samples_per_class"], seed: int = common["seed"],
        device: str = common["device"], cache_dir: Optional[Path] = common["cache_dir"], json_out: bool = common["json_out"],
    ) -> None:
        """Train a RISurConv part segmenter (ShapeNet part or the synthetic part set).

        \b
        Examples:
          facet3d train segmenter --format synthetic --config tiny --epochs 5 --num-points 512 --out runs/seg
          facet3d train segmenter --data shapenetcore_partanno_segmentation_benchmark_v0_normal --format shapenet-part --out runs/part
        """
        _train("segmentation", data, fmt, config, epochs, out, batch_size, lr, weight_decay, num_points, resume,
               workers, None, samples_per_class, seed, device, cache_dir, json_out)

    eval_common = dict(
        ckpt=typer.Option(..., "--ckpt", help="Checkpoint: facet3d .safetensors (+ .json) or official best_model.pth."),
        rotate=typer.Option("none", "--rotate", help="Random rotation per sample: none | z | so3."),
        split=typer.Option("test", "--split", help="Dataset split."),
        num_points=typer.Option(None, "--num-points", min=16, help="Points per shape (default: the checkpoint's)."),
        batch_size=typer.Option(32, "--batch-size", min=1),
        out=typer.Option(None, "--out", "-o", help="Folder for the metrics JSON and confusion matrix PNG."),
    )

    @eval_app.command("classifier")
    def eval_classifier(
        data: Optional[Path] = data_opt, fmt: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
        ckpt: Path = eval_common["ckpt"], rotate: str = eval_common["rotate"], split: str = eval_common["split"],
        num_points: Optional[int] = eval_common["num_points"], batch_size: int = eval_common["batch_size"],
        workers: int = common["workers"], variant: Optional[str] = common["variant"],
        samples_per_class: Optional[int] = common["samples_per_class"], seed: int = common["seed"],
        device: str = common["device"], out: Optional[Path] = eval_common["out"],
        cache_dir: Optional[Path] = common["cache_dir"], json_out: bool = common["json_out"],
    ) -> None:
        """Instance / class accuracy and confusion matrix of a classifier, optionally under random rotations.

        \b
        Examples:
          facet3d eval classifier --data modelnet40_normal_resampled --format modelnet40 --ckpt best_model.pth --rotate so3
        """
        _eval("classification", data, fmt, ckpt, rotate, split, num_points, batch_size, workers, variant,
              samples_per_class, seed, device, out, cache_dir, json_out)

    @eval_app.command("segmenter")
    def eval_segmenter(
        data: Optional[Path] = data_opt, fmt: str = typer.Option(..., "--format", "-f", help="shapenet-part | synthetic."),
        ckpt: Path = eval_common["ckpt"], rotate: str = eval_common["rotate"], split: str = eval_common["split"],
        num_points: Optional[int] = eval_common["num_points"], batch_size: int = eval_common["batch_size"],
        workers: int = common["workers"], samples_per_class: Optional[int] = common["samples_per_class"],
        seed: int = common["seed"], device: str = common["device"], out: Optional[Path] = eval_common["out"],
        cache_dir: Optional[Path] = common["cache_dir"], json_out: bool = common["json_out"],
    ) -> None:
        """Part mIoU (instance and class averaged) of a segmenter, optionally under random rotations."""
        _eval("segmentation", data, fmt, ckpt, rotate, split, num_points, batch_size, workers, None,
              samples_per_class, seed, device, out, cache_dir, json_out)

    @app.command("classify")
    def classify(
        files: List[str] = typer.Argument(..., metavar="FILE...", help="Meshes or point clouds (any format facet3d reads); folders expand."),
        ckpt: Path = typer.Option(..., "--ckpt", help="Classifier checkpoint (facet3d .safetensors or official best_model.pth)."),
        top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="Classes to list per file."),
        num_points: Optional[int] = typer.Option(None, "--num-points", min=16, help="Points fed to the model (default: the checkpoint's)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Classify shapes with a RISurConv model (meshes are surface-sampled; clouds get oriented normals).

        \b
        Examples:
          facet3d classify chair.off bunny.ply --ckpt sample_data/risurconv/classifier.safetensors
          facet3d classify scans/ --ckpt best_model.pth --top-k 5 --json
        """
        from facet3d.cli.batch import expand_inputs, run_batch
        from facet3d.cli.console import out, print_json
        from facet3d.plugins.risurconv.predict import classify_file

        model, meta = _load(ckpt, "classification")
        n = num_points or meta.get("num_points") or 1024
        names = list(meta.get("class_names") or [])
        results, failures = run_batch(expand_inputs(files), lambda p: classify_file(model, p, n, names, top_k), "classify")
        if json_out:
            print_json(results)
        else:
            for r in results:
                alts = ", ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top_k"][1:])
                out.print(f"{r['file']}: {r['label']} ({r['prob']:.3f})" + (f"  [{alts}]" if alts else ""),
                          markup=False)
        if failures:
            raise typer.Exit(1)

    @app.command("segment")
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
        from facet3d.cli.console import print_json
        from facet3d.plugins.risurconv.predict import segment_file

        if out_path.suffix.lower() != ".ply":
            raise UsageError(f"{out_path}: --out must be a .ply file")
        from facet3d.plugins.risurconv.predict import seg_mapping

        model, meta = _load(ckpt, "segmentation")
        cats, cp, part_names = seg_mapping(meta)
        if category is not None:
            match = [c for c in cats if c.lower() == category.lower()]
            if not match:
                raise UsageError(f"unknown category '{category}' (have: {', '.join(cats)})")
            category = match[0]
        n = num_points or meta.get("num_points") or 2048
        summary = segment_file(model, Path(file), out_path, n, cats, cp, part_names, category,
                               full_resolution=not samples_only)
        if json_out:
            print_json(summary)
        else:
            counts = ", ".join(f"{k} {v}" for k, v in summary["part_counts"].items())
            typer.echo(f"{file}: category {summary['category']}; parts: {counts}; wrote {out_path}")

