"""facet3d-hello-plugin: the hook implementations facet3d finds through the `facet3d` entry point.

This module is imported every time `facet3d` starts (even for `facet3d --help`), so it stays
tiny: no numpy work, no torch, no open3d. Readers, writers, steps, the kernel backend and the
model are given as ``"module:attr"`` strings and imported only when they are used; the command
imports its helpers inside its body.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import Backend, FormatSpec, ModelSpec, PipelineStep

__version__ = "0.1.0"


@hookimpl
def facet3d_register_commands(app):  # app: typer.Typer
    import typer  # facet3d already imported it; kept local so this module has no import cost

    @app.command("hello-stats")
    def hello_stats(
        file: str = typer.Argument(..., metavar="FILE", help="Any file facet3d can read (.ply, .pts, ...)."),
        fmt: str = typer.Option(None, "--format", "-f", help="Input format (default: detect)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Print the point count, centroid, radius and bounding box of FILE.

        Examples:
          facet3d hello-stats bunny.ply
          facet3d hello-stats scan.pts --json
        """
        import json

        from facet3d.core.io.api import read
        from facet3d_hello.stats import compute

        stats = compute(read(file, format=fmt))  # read() raises facet3d errors: one line, exit 1
        if json_out:
            typer.echo(json.dumps(stats, indent=2))
            return
        c = ", ".join(f"{x:.6g}" for x in stats["centroid"])
        typer.echo(f"{stats['path']}  ({stats['format']}, {stats['kind'].replace('_', ' ')})")
        typer.echo(f"  points:   {stats['points']}")
        typer.echo(f"  centroid: [{c}]")
        typer.echo(f"  radius:   {stats['radius']:.6g}")
        typer.echo(f"  bbox:     [{', '.join(f'{x:.6g}' for x in stats['bbox_min'])}] .. "
                   f"[{', '.join(f'{x:.6g}' for x in stats['bbox_max'])}]")


@hookimpl
def facet3d_formats():
    return [
        FormatSpec(
            name="pts",
            extensions=(".pts",),
            description="Leica-style PTS text: a point count, then 'x y z [intensity [r g b]]' lines",
            read="facet3d_hello.pts:read",
            write="facet3d_hello.pts:write",
            sniff="facet3d_hello.pts:sniff",
            kinds=frozenset({"point_cloud"}),  # the writer cannot store faces
        )
    ]


@hookimpl
def facet3d_pipeline_steps():
    return [
        PipelineStep(
            name="center",
            description="translate so the centroid (or the bounding-box centre) is at the origin",
            run="facet3d_hello.steps:center",
            params={"mode": (str, "mean", "'mean' (centroid) or 'bbox' (bounding-box centre)")},
        )
    ]


@hookimpl
def facet3d_kernel_backends():
    return [
        Backend(
            op="knn",
            name="hello-numpy",  # select it with backend="hello-numpy" or FACET3D_BACKEND_KNN=hello-numpy
            impl="facet3d_hello.knn:knn",
            priority=-10,  # below the torch reference (0): never chosen automatically, only by name
            devices=("cpu",),
            dtypes=("float32", "float64"),
            grad=False,  # numpy cuts the autograd graph: refuse inputs that require grad
            check="facet3d_hello.knn:check",
        )
    ]


@hookimpl
def facet3d_models():
    return [
        ModelSpec(
            name="hello-tiny-cls",
            task="classification",
            description="tiny PointNet-style classifier: shared MLP, max pooling, linear head",
            build="facet3d_hello.model:TinyPointNet",
            config={"classes": 4, "width": 16},
        )
    ]
