"""``facet3d fit``: fit a triangle-splatting scene (TS or TS+) to a Blender or COLMAP dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facet3d.core.errors import UsageError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("fit")
    def fit_cmd(
        dataset: str = typer.Argument(..., metavar="DATASET", help="Blender folder (transforms_train.json) or COLMAP folder (images/ + sparse/0)."),
        fmt: Optional[str] = typer.Option(None, "--format", help="blender | colmap (default: detected)."),
        out: str = typer.Option(..., "--out", help="Run folder: scene.ply, checkpoint.pt, metrics.json, log.json, previews/."),
        iters: int = typer.Option(3000, "--iters", min=1, help="Training iterations (all schedules scale with it; the paper uses 30000)."),
        mode: str = typer.Option("ts", "--mode", help="ts (free soft triangles) | ts+ (shared vertices, ends opaque and hard: a mesh)."),
        holdout: int = typer.Option(8, "--holdout", min=0, help="Every N-th view is held out for evaluation (0: none, evaluate on training views)."),
        max_size: Optional[int] = typer.Option(None, "--max-size", min=8, help="Downscale images so the longer side is at most this."),
        background: str = typer.Option("1,1,1", "--background", help="Background colour r,g,b for RGBA images and rendering."),
        init_points: int = typer.Option(20000, "--init-points", min=4, help="Random initial points in the scene bounds when the dataset has no SfM points."),
        max_triangles: int = typer.Option(300_000, "--max-triangles", min=16, help="Cap on the triangle count during densification."),
        eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate held-out views (PSNR/SSIM, preview PNG) every N iterations (0: only at the end)."),
        checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=0, help="Write RUN_DIR/checkpoint.pt every N iterations."),
        time_limit: Optional[float] = typer.Option(None, "--time-limit", min=0.0, help="Stop after this many minutes (the scene, checkpoint and evaluation are still written)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from RUN_DIR/checkpoint.pt."),
        seed: int = typer.Option(0, "--seed"),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
        device: str = typer.Option("auto", "--device", help="cpu | cuda | auto."),
        json_out: bool = typer.Option(False, "--json", help="Print the final metrics as JSON on stdout."),
    ) -> None:
        """Fit triangles to posed photos (Triangle Splatting / Triangle Splatting+).

        Trains with the published recipe (L1 + D-SSIM + opacity regulariser, densify/prune, SH schedule;
        TS+: annealed sigma and opacity floor) scaled to --iters, shows a progress bar with loss and
        PSNR, evaluates the held-out views and writes RUN_DIR/scene.ply (render it with
        `facet3d render`, export it with `facet3d export`).

        \b
        Examples:
          facet3d fit nerf_synthetic/lego --format blender --out runs/lego --iters 3000
          facet3d fit garden --format colmap --out runs/garden --mode ts+ --max-size 400
          facet3d fit nerf_synthetic/lego --out runs/lego --resume --iters 6000
        """
        if mode not in ("ts", "ts+"):
            raise UsageError(f"--mode {mode!r}: expected ts or ts+")
        if fmt is not None and fmt not in ("blender", "colmap"):
            raise UsageError(f"--format {fmt!r}: expected blender or colmap")
        from facet3d.plugins.triangle_splatting.commands import parse_background

        bg = parse_background(background)
        run = Path(out)
        if run.exists() and not run.is_dir():
            raise UsageError(f"--out {out}: exists and is not a folder")
        if not resume and (run / "checkpoint.pt").exists():
            raise UsageError(f"--out {out}: holds a run already (checkpoint.pt); use --resume or another folder")

        import torch

        from facet3d.cli.console import err, print_json, progress
        from facet3d.plugins.triangle_splatting.datasets import load_dataset
        from facet3d.plugins.triangle_splatting.fit import FitConfig, fit

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise UsageError(f"--device {device!r}: expected cpu, cuda or auto")
        if device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available")
        ds = load_dataset(Path(dataset), fmt, holdout=holdout, background=bg, max_size=max_size)
        for w in getattr(ds, "warnings", []) or []:
            err.print(f"facet3d: warning: {w}", soft_wrap=True)
        H, W = ds.train.images.shape[1:3]
        err.print(f"facet3d: {ds.format} dataset {dataset}: {len(ds.train.names)} training, {len(ds.test.names)} "
                  f"held-out views, {W}x{H}", soft_wrap=True)
        cfg = FitConfig(mode=mode, iters=iters, seed=seed, init_points=init_points, max_triangles=max_triangles,
                        eval_every=eval_every, checkpoint_every=checkpoint_every,
                        time_limit=None if time_limit is None else 60.0 * time_limit, device=device, threads=threads)
        with progress(transient=False) as bar:
            task = bar.add_task(f"fit {mode}", total=iters)

            def on_step(it: int, rec: dict) -> None:
                bar.update(task, completed=it, description=f"fit {mode} loss {rec['loss']:.4f} "
                           f"PSNR {rec['psnr']:.2f} tris {rec['triangles']}")

            def log(msg: str) -> None:
                bar.console.print(f"facet3d: {msg}", soft_wrap=True)

            metrics = fit(ds, run, cfg, resume=resume, on_step=on_step, log=log)
        err.print(f"facet3d: fit {mode}: {metrics['iterations']} iterations in {metrics['train_seconds']:.0f} s, "
                  f"{metrics['triangles']} triangles; {metrics['eval_split']} PSNR {metrics['psnr']:.2f} dB, "
                  f"SSIM {metrics['ssim']:.4f} -> {run / 'scene.ply'}", soft_wrap=True)
        if json_out:
            print_json(metrics)
