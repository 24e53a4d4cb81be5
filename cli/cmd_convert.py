"""`facet3d convert IN OUT`: change format, optionally sample a surface, estimate normals, thin out."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

from facet3d.cli.console import err
from facet3d.core.errors import UsageError


def _steps(sample: Optional[int], normals: bool, voxel: Optional[float], seed: int) -> list:
    """The pipeline steps the convert options ask for, in the order they run."""
    from facet3d.core.pipeline import Step

    steps = []
    if voxel:
        steps.append(Step("voxel-down", {"voxel": voxel}))
    if sample:
        steps.append(Step("sample", {"n": sample, "seed": seed}))
    if normals:
        steps.append(Step("normals", {}))
    return steps


def _convert_folder(src: str, dst: str, to: Optional[str], one: Callable[[Path, Path, Optional[str]], Path]) -> None:
    """Every readable file of the folder ``src`` into the folder ``dst`` as format ``to``."""
    from facet3d.cli.batch import expand_inputs, run_batch
    from facet3d.core.io.api import registered_formats

    if not to:
        raise UsageError("converting a folder needs --to FORMAT (e.g. --to ply)")
    spec = registered_formats().get(to.lower().lstrip("."))
    if spec is None or spec.write is None:
        raise UsageError(f"--to {to}: no writer for that format")
    out_dir = Path(dst)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = expand_inputs([src])
    _, failures = run_batch(files, lambda p: one(p, out_dir / (p.stem + spec.extensions[0]), spec.name), "convert")
    err.print(f"facet3d: wrote {len(files) - len(failures)} file(s) to {out_dir}")
    if failures:
        raise typer.Exit(1)


def convert(
    src: str = typer.Argument(..., metavar="IN", help="Input file, or a folder (then OUT is a folder and --to is needed)."),
    dst: str = typer.Argument(..., metavar="OUT", help="Output file (format from its extension) or folder."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="Meshes: sample N points on the surface (area-weighted, with normals). Point clouds: keep N random points."),
    normals: bool = typer.Option(False, "--normals", help="Estimate consistently oriented normals where missing."),
    voxel: Optional[float] = typer.Option(None, "--voxel", min=0.0, help="Voxel down-sample with this voxel size."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="Input format (default: detect)."),
    to: Optional[str] = typer.Option(None, "--to", help="Output format / extension for folder conversion (e.g. ply)."),
    out_fmt: Optional[str] = typer.Option(None, "--out-format", "-F", help="Output format when the extension does not say (e.g. kitti-bin)."),
    ascii_out: bool = typer.Option(False, "--ascii", help="Write text instead of binary where the format has both."),
    seed: int = typer.Option(0, "--seed", help="Random seed for sampling."),
) -> None:
    """Convert between formats (PLY, PCD, OBJ, OFF, STL, GLB, XYZ, NPY/NPZ, LAS/LAZ).

    The output is written to a temporary file and renamed, so a failure leaves nothing behind.

    \b
    Examples:
      facet3d convert bunny.obj bunny.ply
      facet3d convert bunny.obj bunny_pts.ply --sample 100000 --normals
      facet3d convert scans/ out/ --to ply --voxel 0.01
      facet3d convert sweep.bin sweep.ply --format kitti-bin
    """
    from facet3d.core.io.api import read, write
    from facet3d.core.pipeline import run_steps

    steps = _steps(sample, normals, voxel, seed)
    options = {"ascii": True} if ascii_out else {}

    def one(path: Path, target: Path, out_format: Optional[str] = None) -> Path:
        geom = run_steps(read(path, format=fmt), steps)
        return write(target, geom, format=out_format, **options)

    if Path(src).is_dir():
        _convert_folder(src, dst, to, one)
        return
    if to:
        raise UsageError("--to is for folder conversion; for one file the output extension names the format")
    one(Path(src), Path(dst), out_fmt)
    err.print(f"facet3d: wrote {dst}")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
