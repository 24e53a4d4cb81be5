"""`facet3d info FILE...`: what a file holds (PDAL-info style), as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from facet3d.cli.console import out, print_json


def _coordinate(x: float) -> str:
    """Full precision without noise: the shortest repr of a float32 value when it is one (sweeps
    stored as float32), else 15 significant digits (every digit a float64 holds of a decimal)."""
    import numpy as np

    x = float(x)
    if np.isfinite(x) and float(np.float32(x)) == x:
        return np.format_float_positional(np.float32(x), unique=True, trim="-")
    return f"{x:.15g}"


def _human(summary: dict[str, Any]) -> None:
    out.print(f"[bold]{summary['path']}[/]  ({summary['format']}, {summary['kind'].replace('_', ' ')})")
    skip = {"path", "format", "kind"}
    for key, value in summary.items():
        if key in skip:
            continue
        if key == "bounds" and value:
            lo = ", ".join(_coordinate(x) for x in value["min"])
            hi = ", ".join(_coordinate(x) for x in value["max"])
            out.print(f"  bounds: [{lo}] .. [{hi}]  (diagonal {float(value['diagonal']):.6g})")
        elif key == "metadata" and isinstance(value, dict):
            out.print("  metadata:")
            for hk, hv in value.items():
                if isinstance(hv, dict):  # a format's layout record: the facts it holds, not its empty slots
                    hv = ", ".join(f"{k} {v!r}" for k, v in hv.items() if v not in (None, [], {}, ""))
                out.print(f"    {hk}: {hv}", markup=False)
        elif key == "topology" and isinstance(value, dict):
            _topology(value)
        elif key == "attributes":
            out.print(f"  attributes: {', '.join(value) if value else '(none)'}")
        else:
            out.print(f"  {key}: {value}")


def _topology(topo: dict[str, Any]) -> None:
    """As stored (the faces as the file indexes them) and welded (vertices merged by position)."""
    out.print("  topology:")
    for which, label in (("as_stored", "as stored"), ("welded", "welded by position")):
        facts = topo.get(which)
        if not isinstance(facts, dict):
            continue
        extra = f", {topo['welded_vertices']} vertices" if which == "welded" and "welded_vertices" in topo else ""
        out.print(f"    {label}{extra}: " + ", ".join(f"{k} {v}" for k, v in facts.items()), markup=False)
    for key, value in topo.items():
        if key not in ("as_stored", "welded", "welded_vertices"):
            out.print(f"    {key}: {value}", markup=False)


def info(
    files: List[str] = typer.Argument(..., metavar="FILE", help="Files or folders to describe."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list, one object per file."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", metavar="FORMAT", help="Input format, also for the files of a folder (default: detect)."),
    fields: Optional[str] = typer.Option(None, "--fields", metavar="NAMES", help="--format bin: the columns, e.g. x,y,z,intensity."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    topology: bool = typer.Option(True, "--topology/--no-topology", help="Watertight/manifold checks for meshes."),
) -> None:
    """Describe point cloud and mesh files: counts, bounds, attributes, topology, LAS header.

    \b
    Examples:
      facet3d info bunny.ply
      facet3d info scans/ --json
      facet3d info sweep.bin --format kitti-bin
      facet3d info velodyne/ --format kitti-bin -r
    """
    from facet3d.cli.batch import expand_inputs, run_batch
    from facet3d.cli.api import reader_options
    from facet3d.core.io.api import read
    from facet3d.core.summary import summarize

    options = reader_options(fmt, fields)

    def one(path: Path) -> dict[str, Any]:
        return summarize(read(path, format=fmt, **options), topology=topology)

    results, failures = run_batch(expand_inputs(files, recursive, fmt), one, "info")
    if json_out:
        print_json(results + [{"path": str(p), "error": m} for p, m in failures])
    else:
        for r in results:
            _human(r)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
