"""The ``facet3d reconstruct`` command: parse, call `reconstruct`, print."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facet3d.cli.api import note, positive, print_json, progress_callback, resolve_device, unit_interval


def _non_negative_int(value: Optional[int]) -> Optional[int]:
    if value is not None and value < 0:
        raise typer.BadParameter(f"{value} is not >= 0")
    return value


def _percent(value: Optional[float]) -> Optional[float]:
    if value is not None and not (value == value and 0 <= value <= 100):
        raise typer.BadParameter(f"{value} is not in [0, 100]")
    return value


def reconstruct(
    inputs: List[str] = typer.Argument(..., metavar="IMAGES...|DIR", help="Two or more images, or folders of images."),
    ckpt: Path = typer.Option(..., "--ckpt", help="VGGT weights: model.safetensors / model.pt of facebook/VGGT-1B (non-commercial licence), or a facet3d save."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (points.ply, scene.glb, cameras.json, images/, sparse/0/)."),
    merge: float = typer.Option(0.9, "--merge", callback=unit_interval, help="FastVGGT merge ratio; 0 = plain VGGT (no merging)."),
    merge_from_block: int = typer.Option(0, "--merge-from-block", callback=_non_negative_int, help="First global block that merges (0 = all)."),
    protected: float = typer.Option(0.1, "--protected", callback=unit_interval, help="Fraction of tokens never merged (even stride)."),
    proportional: bool = typer.Option(False, "--proportional-attention", help="Add log(token size) to attention logits (ToMe)."),
    preprocess: str = typer.Option("crop", "--preprocess", help="crop (width 518, centre-crop height) | pad (long side 518, white square)."),
    conf_percentile: float = typer.Option(50.0, "--conf-percentile", callback=_percent, help="Drop points below this confidence percentile."),
    points_from: str = typer.Option("depth", "--points-from", help="depth (unproject with predicted cameras) | head (point head)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]."),
    dtype: str = typer.Option("auto", "--dtype", help="Aggregator precision: auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16."),
    chunk: int = typer.Option(8, "--frames-chunk", min=1, callback=positive, help="Frames per dense-head chunk (memory)."),
    config: Optional[str] = typer.Option(None, "--config", help="Architecture name (default: from the file, else vggt-1b)."),
    save_raw: bool = typer.Option(False, "--save-raw", help="Also write predictions.npz (upstream's keys and shapes)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Cameras, depth and a coloured point cloud from photos with VGGT (+ FastVGGT token merging).

    Writes points.ply, scene.glb (points + camera frusta), cameras.json and a COLMAP text model
    (images/ + sparse/0) that `facet3d fit OUT --format colmap` reads directly.

    \b
    Examples:
      facet3d reconstruct photos/ --ckpt model.safetensors --out recon
      facet3d reconstruct a.jpg b.jpg c.jpg --ckpt model.pt --out recon --merge 0 --device cpu
      facet3d reconstruct frames/ --ckpt model.safetensors --out big --merge 0.9 --merge-from-block 2 --save-raw
    """
    from facet3d.plugins.fastvggt.preprocess import expand_image_inputs
    from facet3d.plugins.fastvggt.reconstruct import reconstruct as run

    dev = resolve_device(device)
    files = expand_image_inputs(inputs)
    with progress_callback("reconstruct") as bar:
        summary = run(files, ckpt, out, config=config, merge=merge, merge_from_block=merge_from_block,
                      protected=protected, proportional=proportional, preprocess=preprocess,
                      conf_percentile=conf_percentile, points_from=points_from, device=dev, dtype=dtype,
                      save_raw=save_raw, frames_chunk_size=chunk, progress=bar, log=note)
    if json_out:
        print_json(summary)
        return
    tok = summary.get("tokens")
    merged = f", merged to {100 * tok['kept_fraction']:.0f}% of tokens" if tok else ""
    typer.echo(f"{summary['images']} images at {summary['image_size'][0]}x{summary['image_size'][1]} -> "
               f"{summary['points']} points{merged} in {summary['total_seconds']:.1f} s; wrote {summary['out']}")


def register(app: typer.Typer) -> None:
    app.command("reconstruct")(reconstruct)
