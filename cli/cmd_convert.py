"""`facet3d convert IN OUT`: change format, optionally sample a surface, estimate normals, thin out.

Outputs are planned before any work: never onto an input (unless --overwrite), never two inputs
onto one output; folders mirror their sub-folders (-r) into OUT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from facet3d.cli.api import positive, reader_options
from facet3d.cli.console import err, print_json
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


def _writer_options(spec_name: str, ascii_out: bool, las_version: Optional[str], point_format: Optional[int]) -> dict[str, Any]:
    """Writer keyword options, refusing LAS-only flags for another output format."""
    options: dict[str, Any] = {"ascii": True} if ascii_out else {}
    if las_version is not None or point_format is not None:
        if spec_name != "las":
            flag = "--las-version" if las_version is not None else "--point-format"
            raise UsageError(f"{flag} applies to LAS/LAZ outputs, not {spec_name}")
        if las_version is not None:
            options["las_version"] = las_version
        if point_format is not None:
            options["point_format"] = point_format
    return options


def _output_spec(target: Path, name: Optional[str], flag: str):
    from facet3d.core.io.api import get_format, writer_for

    if name:
        try:
            return get_format(name.lower().lstrip("."), "write")
        except UsageError as exc:
            raise UsageError(f"{flag} {name}: {exc}") from None
    return writer_for(target)


def convert(
    src: str = typer.Argument(..., metavar="IN", help="Input file, or a folder (then OUT is a folder and --to is needed)."),
    dst: Optional[str] = typer.Argument(None, metavar="OUT", help="Output file (format from its extension) or folder; or give -o."),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="PATH", help="Output file or folder (instead of OUT)."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, metavar="N", help="Meshes: sample N points on the surface (area-weighted, with normals). Point clouds: keep N random points."),
    normals: bool = typer.Option(False, "--normals", help="Estimate consistently oriented normals where missing."),
    voxel: Optional[float] = typer.Option(None, "--voxel", callback=positive, metavar="SIZE", help="Voxel down-sample with this voxel size (> 0)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", metavar="FORMAT", help="Input format, also for the files of a folder (default: detect)."),
    fields: Optional[str] = typer.Option(None, "--fields", metavar="NAMES", help="--format bin: the columns, e.g. x,y,z,intensity (float32; name:f8 for float64)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="FORMAT", help="Output format / extension for folder conversion (e.g. ply)."),
    out_fmt: Optional[str] = typer.Option(None, "--out-format", "-F", metavar="FORMAT", help="Output format when the extension does not say (e.g. kitti-bin)."),
    las_version: Optional[str] = typer.Option(None, "--las-version", metavar="X.Y", help="LAS/LAZ output: header version (1.0-1.4; default: the input's)."),
    point_format: Optional[int] = typer.Option(None, "--point-format", min=0, max=10, metavar="N", help="LAS/LAZ output: point data format 0-10 (default: the input's)."),
    ascii_out: bool = typer.Option(False, "--ascii", help="Write text instead of binary where the format has both."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Folders: descend into sub-folders, mirroring them in OUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow replacing an input file with its output."),
    no_clobber: bool = typer.Option(False, "--no-clobber", "-n", help="Skip inputs whose output already exists."),
    seed: int = typer.Option(0, "--seed", help="Random seed for sampling."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written (and skipped / failed) as JSON."),
) -> None:
    """Convert between formats (PLY, PCD, OBJ, OFF, STL, GLB, XYZ, NPY/NPZ, LAS/LAZ, KITTI .bin).

    Everything the file carries is kept (LAS header, VLRs, extra bytes; PCD fields; attributes) or a
    warning says what the target cannot hold. Outputs are written to a temporary file and renamed,
    so a failure leaves nothing behind; an output that is an input is refused unless --overwrite.

    \b
    Examples:
      facet3d convert bunny.obj bunny.ply
      facet3d convert bunny.obj bunny_pts.ply --sample 100000 --normals
      facet3d convert scans/ out/ --to ply --voxel 0.01 -r
      facet3d convert sweep.bin sweep.ply --format kitti-bin
      facet3d convert frame.bin frame.ply --format bin --fields x,y,z,intensity,ring
      facet3d convert survey.laz survey14.laz --las-version 1.4 --point-format 6
    """
    from facet3d.core.io.api import read, write
    from facet3d.core.pipeline import run_steps

    if (dst is None) == (out is None):
        raise UsageError("give the output once: as OUT or as -o/--out")
    dst = dst if dst is not None else out
    if overwrite and no_clobber:
        raise UsageError("--overwrite and --no-clobber contradict each other")
    steps = _steps(sample, normals, voxel, seed)
    read_opts = reader_options(fmt, fields)

    def one(job: tuple[Path, Path, Any]) -> Path:
        path, target, spec = job
        geom = run_steps(read(path, format=fmt, **read_opts), steps)
        return write(target, geom, format=spec.name, **_writer_options(spec.name, ascii_out, las_version, point_format))

    if Path(src).is_dir():
        _convert_folder(Path(src), Path(dst), to, one, recursive, fmt, overwrite, no_clobber, json_out)
        return
    if to:
        raise UsageError("--to is for folder conversion; for one file the output extension (or -F/--out-format) names the format")
    _convert_file(Path(src), Path(dst), out_fmt, one, overwrite, no_clobber, json_out)


def _convert_file(src: Path, dst: Path, out_fmt: Optional[str], one, overwrite: bool, no_clobber: bool, json_out: bool) -> None:
    from facet3d.core.io.api import check_input_path
    from facet3d.core.io.outputs import check_single_output

    check_input_path(src)
    spec = _output_spec(dst, out_fmt, "-F/--out-format")
    if not check_single_output(src, dst, overwrite, no_clobber):
        err.print(f"facet3d: {dst} exists, skipped (--no-clobber)")
        if json_out:
            print_json({"written": [], "skipped": [{"input": str(src), "output": str(dst)}], "failed": []})
        return
    one((src, dst, spec))
    if json_out:
        print_json({"written": [{"input": str(src), "output": str(dst)}], "skipped": [], "failed": []})
    err.print(f"facet3d: wrote {dst}")


def _convert_folder(src: Path, dst: Path, to: Optional[str], one, recursive: bool, fmt: Optional[str],
                    overwrite: bool, no_clobber: bool, json_out: bool) -> None:
    """Every readable file of the folder ``src`` into the folder ``dst`` as format ``to``."""
    from facet3d.cli.batch import gather_inputs, run_plan
    from facet3d.core.io.api import output_format
    from facet3d.core.io.outputs import plan_outputs

    if not to:
        raise UsageError("converting a folder needs --to FORMAT (e.g. --to ply)")
    if dst.exists() and not dst.is_dir():
        raise UsageError(f"{dst}: the input is a folder, so OUT must be a folder (this is a file)")
    spec, ext = output_format(to)
    listing = gather_inputs([str(src)], recursive=recursive, format=fmt)
    plan = plan_outputs(listing.files, dst, ext, listing.roots, overwrite, no_clobber)
    run_plan(plan, dst, lambda job: _row(one((*job, spec)), job[0]), "convert", json_out)


def _row(written: Path, src: Path) -> dict:
    return {"input": str(src), "output": str(written)}


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
