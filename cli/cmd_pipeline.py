"""`facet3d pipeline`: run registered steps over many files (batch), e.g. for dataset preparation."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facet3d.cli.console import err, out, print_json
from facet3d.core.errors import UsageError


def steps(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the pipeline steps plugins provide, with their parameters."""
    from facet3d.core.pipeline import available_steps

    from facet3d.core.specs import REQUIRED

    shown = lambda d: "REQUIRED" if d is REQUIRED else d  # noqa: E731
    rows = [
        {"name": s.name, "description": s.description, "takes": s.takes, "gives": s.gives,
         "params": {k: {"type": t.__name__, "default": shown(d), "help": h} for k, (t, d, h) in s.params.items()}}
        for s in available_steps().values()
    ]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        params = ", ".join(f"{k}={v['default']}" for k, v in r["params"].items())
        flow = f"{r['takes']} -> {r['gives']}"
        out.print(f"[bold]{r['name']}[/]  [cyan]{flow}[/]  {r['description']}" + (f"  [dim]({params})[/]" if params else ""))

def run(
    inputs: List[str] = typer.Argument(..., metavar="FILE", help="Files or folders."),
    step: List[str] = typer.Option([], "--step", "-s", metavar="STEP", help="A step, 'name' or 'name:key=value,...'; repeat in order."),
    out_dir: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder (sub-folders of folder inputs are mirrored)."),
    to: str = typer.Option("ply", "--to", metavar="FORMAT", help="Output format."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", metavar="FORMAT", help="Input format, also for the files of a folder (default: detect)."),
    fields: Optional[str] = typer.Option(None, "--fields", metavar="NAMES", help="--format bin: the columns, e.g. x,y,z,intensity."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow replacing an input file with its output."),
    no_clobber: bool = typer.Option(False, "--no-clobber", "-n", help="Skip inputs whose output already exists."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Apply steps to every input and write the results to a folder.

    A bad file is reported and skipped; the exit code is 1 if any file failed. Outputs are planned
    first: an output that is an input is refused (unless --overwrite), as are two inputs with one output.

    \b
    Example:
      facet3d pipeline run scans/ -s voxel-down:voxel=0.005 -s normals -s normalize --out prepared/ -r
    """
    from facet3d.cli.api import reader_options
    from facet3d.cli.batch import gather_inputs, run_plan
    from facet3d.core.io.api import output_format, read, write
    from facet3d.core.io.outputs import plan_outputs
    from facet3d.core.pipeline import parse_step, run_steps

    if overwrite and no_clobber:
        raise UsageError("--overwrite and --no-clobber contradict each other")
    parsed = [parse_step(s) for s in step]
    spec, ext = output_format(to)
    options = reader_options(fmt, fields)
    listing = gather_inputs(inputs, recursive=recursive, format=fmt)
    plan = plan_outputs(listing.files, out_dir, ext, listing.roots, overwrite, no_clobber)

    def one(job: tuple[Path, Path]) -> dict:
        path, target = job
        geom = run_steps(read(path, format=fmt, **options), parsed)
        write(target, geom, format=spec.name)
        return {"input": str(path), "output": str(target), "points": geom.num_points, "faces": geom.num_faces}

    run_plan(plan, out_dir, one, "pipeline", json_out)


def register(app: typer.Typer) -> None:
    pipeline = typer.Typer(help="Batch pipelines: apply steps to many files.", no_args_is_help=True)
    app.add_typer(pipeline, name="pipeline")
    pipeline.command("steps")(steps)
    pipeline.command("run")(run)
