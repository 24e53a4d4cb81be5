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

    rows = [
        {"name": s.name, "description": s.description,
         "params": {k: {"type": t.__name__, "default": d, "help": h} for k, (t, d, h) in s.params.items()}}
        for s in available_steps().values()
    ]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        params = ", ".join(f"{k}={v['default']}" for k, v in r["params"].items())
        out.print(f"[bold]{r['name']}[/]  {r['description']}" + (f"  [dim]({params})[/]" if params else ""))

def run(
    inputs: List[str] = typer.Argument(..., help="Files or folders."),
    step: List[str] = typer.Option([], "--step", "-s", help="A step, 'name' or 'name:key=value,...'; repeat in order."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    to: str = typer.Option("ply", "--to", help="Output format."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="Input format (default: detect)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Apply steps to every input and write the results to a folder.

    A bad file is reported and skipped; the exit code is 1 if any file failed.

    \b
    Example:
      facet3d pipeline run scans/ -s voxel-down:voxel=0.005 -s normals -s normalize --out prepared/
    """
    from facet3d.cli.batch import expand_inputs, run_batch
    from facet3d.core.io.api import read, registered_formats, write
    from facet3d.core.pipeline import parse_step, run_steps

    parsed = [parse_step(s) for s in step]
    spec = registered_formats().get(to.lower().lstrip("."))
    if spec is None or spec.write is None:
        raise UsageError(f"--to {to}: no writer for that format")
    files = expand_inputs(inputs, recursive=recursive)
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> dict:
        geom = run_steps(read(path, format=fmt), parsed)
        target = write(out_dir / (path.stem + spec.extensions[0]), geom)
        return {"input": str(path), "output": str(target), "points": geom.num_points, "faces": geom.num_faces}

    results, failures = run_batch(files, one, "pipeline")
    if json_out:
        print_json({"ok": results, "failed": [{"input": str(p), "error": m} for p, m in failures]})
    else:
        err.print(f"facet3d: wrote {len(results)} file(s) to {out_dir}")
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    pipeline = typer.Typer(help="Batch pipelines: apply steps to many files.", no_args_is_help=True)
    app.add_typer(pipeline, name="pipeline")
    pipeline.command("steps")(steps)
    pipeline.command("run")(run)
