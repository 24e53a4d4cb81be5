"""``facet3d view``: parse, load the layers (`facet3d.core.viewing`), serve them (`.server`), print the URL."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facet3d.cli.api import err, print_json
from facet3d.core.errors import UsageError

__all__ = ["register", "view_cmd"]

MESH_Y_UP = (".obj", ".glb", ".gltf")  # formats whose convention is y-up (Wavefront, glTF)


def _up(text: str, paths: list[Path]) -> str:
    """``auto``, or x|y|z with an optional sign -> viser's "+z" form. auto: +y when every file given is an
    OBJ / glTF (their convention), else +z (lidar, LAS, Blender, COLMAP)."""
    t = text.strip().lower()
    if t == "auto":
        files = [p for p in paths if p.is_file()]
        return "+y" if files and all(p.suffix.lower() in MESH_Y_UP for p in files) else "+z"
    if t.lstrip("+-") not in ("x", "y", "z") or len(t) > 2:
        raise UsageError(f"--up must be auto or x, y, z (optionally signed, e.g. -y), got '{text}'")
    return t if t[0] in "+-" else "+" + t


def view_cmd(
    paths: List[Path] = typer.Argument(..., metavar="PATH...", help="Meshes, point clouds, camera files (core JSON, "
                                       "Blender transforms, COLMAP, Strecha), triangle-splat scenes (ours or the "
                                       "official .pt / model folder) and output folders; shown together."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default; 0.0.0.0 "
                             "shares the viewer with your network)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port; the next free one when it is busy."),
    no_block: bool = typer.Option(False, "--no-block", help="Start, print the URL and what is shown, then stop "
                                  "(scripts: check that everything loads and serves)."),
    max_points: int = typer.Option(2_000_000, "--max-points", min=1, help="Clouds above this are down-sampled for "
                                   "display (the count shown says so)."),
    max_triangles: int = typer.Option(1_000_000, "--max-triangles", min=1, help="Triangle-splat previews above "
                                      "this keep the most visible triangles (opacity x area); the exact view "
                                      "renders them all."),
    downsample: str = typer.Option("voxel", "--downsample", help="voxel (one point per voxel) or random."),
    color_by: Optional[str] = typer.Option(None, "--color-by", help="Per-point attribute to colour by (intensity, "
                                           "classification, label, ...; height); default: the file's colours."),
    up: str = typer.Option("auto", "--up", help="Up axis: auto, x, y, z, -y, ..."),
    exact_height: int = typer.Option(360, "--exact-height", min=16, help="Height in pixels of the exact "
                                     "triangle-splat render (the width follows the browser)."),
    opacity_floor: float = typer.Option(0.9999, "--opacity-floor", min=0.0, max=1.0, help="Official TS+ scenes: "
                                        "the vertex-opacity floor (not saved by their code; 0.9999 = end of training)."),
    splat_view: str = typer.Option("preview", "--splat-view", help="How triangle-splat scenes start: preview (a "
                                   "coloured mesh in the browser) or exact (facet3d's renderer, SH and softness "
                                   "included, for the browser's camera); a control in the page switches."),
    json_out: bool = typer.Option(False, "--json", help="Print the URL and the layers as JSON on stdout."),
) -> None:
    """Look at results in the browser: meshes, clouds, cameras, triangle-splat scenes and output folders.

    Examples:

      facet3d view bunny.ply scans/bunny.pcd

      facet3d view runs/lego/scene.ply nerf_synthetic/lego/transforms_test.json

      facet3d view autzen.laz --color-by classification --max-points 500000

      facet3d view rec/                      # a reconstruct output: points, cameras, images together

    Prints the URL (the real port when the asked one is busy); Ctrl-C stops it.
    """
    from facet3d.core.viewing import ViewOptions, collect_layers
    from facet3d.plugins.viewer.server import MISSING_VISER, ViewerServer, viser_available

    if not viser_available():
        raise UsageError(MISSING_VISER)
    if splat_view not in ("preview", "exact"):  # before any file is read
        raise UsageError(f"--splat-view must be preview or exact, got '{splat_view}'")
    axis = _up(up, paths)
    opts = ViewOptions(max_points=max_points, max_triangles=max_triangles, downsample=downsample, color_by=color_by, opacity_floor=opacity_floor)
    layers, skipped = collect_layers(paths, opts)
    for note in skipped:
        err.print(f"[yellow]facet3d view: skipped[/] {note}", soft_wrap=True, markup=True)
    for ly in layers:
        for w in getattr(ly, "warnings", []):
            err.print(f"[yellow]facet3d view:[/] {w}", soft_wrap=True)
    viewer = ViewerServer(layers, host=host, port=port, up=axis, exact_height=exact_height, splat_view=splat_view)
    try:
        if json_out:
            print_json({"url": viewer.url, "port": viewer.port, "up": axis, "layers": [ly.summary() for ly in layers],
                        "skipped": skipped})
        else:
            print(viewer.url, flush=True)
            err.print(f"facet3d view: {len(layers)} layer(s) at {viewer.url}" + ("" if no_block else " (Ctrl-C stops)"))
        if not no_block:
            _wait()
    finally:
        viewer.stop()


def _wait() -> None:
    """Block until Ctrl-C or SIGTERM (both end in a clean stop that frees the port)."""
    import signal
    import threading

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # explicit: a shell's background job starts with SIGINT ignored
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    err.print("facet3d view: stopped")


def register(app: typer.Typer) -> None:
    app.command("view")(view_cmd)
