"""`facet3d lift`: multi-camera images (+ lidar or depth maps) -> voxel grid + BEV map, or 3D points.

Commands only (parse, call `facet3d.plugins.dfa3d.lift`, print). torch is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facet3d.cli.api import non_negative, note, parse_floats, positive, print_json, progress_callback, resolve_device, unit_interval, warn
from facet3d.core.errors import UsageError

LIFT_HELP = """Lift per-pixel features (image colours, or your feature / label maps) of every camera into 3D.

Each voxel (or point) is projected into each camera and the feature map is read with 3D deformable
attention (DFA3D) at that pixel and depth: the depth distribution of the pixels (from the lidar or
depth maps) weights it by how strongly the surface is at that depth. Writes voxels.ply, bev.png,
features.npy, weight.npy, bev_features.npy, bev_weight.npy and lift.json into --out (with --at:
points.ply, features.npy, weight.npy, lift.json).

\b
Scenes: a nuScenes keyframe folder (info .json, 6 camera JPEGs, LIDAR_TOP .pcd.bin), a KITTI frame
(<id>.png, <id>.bin, calib .txt/.json) or a folder with cameras.json + images (+ depth/, lidar.*).
\b
Examples:
  facet3d lift nuscenes_sample --out lifted/                       # colours -> 256x256x20 grid + BEV
  facet3d lift nuscenes_sample -o lifted/ --grid -30,30,-30,30,-3,2 --voxel 0.25 --bev-size 200
  facet3d lift nuscenes_sample -o coloured/ --at lidar --seen-only  # colourise the lidar sweep
  facet3d lift kitti_000008 -o kitti/ --max-size 640 --json
  facet3d lift scene/ -o sem/ --features labels.npy --depth scene/depth   # lift label maps
"""


def lift(
    scene: Path = typer.Argument(..., metavar="SCENE", help="Scene folder (or its info / camera file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    features: str = typer.Option("colors", "--features", "-f", help="colors, or a .npy ([Ncam, h, w, C] float features / [Ncam, h, w] int labels) or a folder of per-camera .npy."),
    depth: str = typer.Option("auto", "--depth", "-d", help="auto (lidar, else depth/ maps), lidar, maps, none (uniform: plain back-projection) or a folder of depth maps."),
    grid: Optional[str] = typer.Option(None, "--grid", help="X0,X1,Y0,Y1,Z0,Z1 in the scene frame (default: nuScenes -51.2,51.2,-51.2,51.2,-5,3; KITTI 0,70.4,-40,40,-3,1; plain: the lidar's bounds)."),
    voxel: Optional[float] = typer.Option(None, "--voxel", callback=positive, help="Voxel size (default 0.4; plain scenes: 1/128 of the largest side)."),
    bev_size: Optional[int] = typer.Option(None, "--bev-size", min=1, help="BEV map cells per side (default: the grid's x/y cells)."),
    at: Optional[str] = typer.Option(None, "--at", help="Lift onto these 3D points instead of a grid: a point file, or 'lidar' (the scene's sweep)."),
    z_samples: int = typer.Option(4, "--z-samples", min=1, help="Points per voxel through its height (thin surfaces such as the road seen at grazing angles fall between centres)."),
    seen_only: bool = typer.Option(False, "--seen-only", help="--at: write only the points some camera sees."),
    layout: str = typer.Option("auto", "--layout", help="auto | nuscenes | kitti | plain."),
    sample: int = typer.Option(0, "--sample", min=0, help="nuScenes info file: which data_list entry."),
    max_size: Optional[int] = typer.Option(None, "--max-size", min=8, help="Downscale images (and maps) so the longer side is at most this."),
    bins: int = typer.Option(112, "--bins", min=1, help="Depth bins."),
    depth_range: str = typer.Option("2,58", "--depth-range", help="d_min,d_max of the bins, metres (camera z)."),
    depth_mode: str = typer.Option("gaussian", "--depth-mode", help="Given depth as a distribution: gaussian | onehot."),
    sigma: float = typer.Option(1.0, "--sigma", callback=positive, help="Gaussian standard deviation, in bins."),
    empty: str = typer.Option("zero", "--empty", help="Pixels without depth: zero (lift nothing) | uniform."),
    fill: Optional[float] = typer.Option(None, "--fill", callback=non_negative, help="Fill depth holes from the nearest lidar pixel up to this many pixels (default 1% of the longer side; 0: off)."),
    min_weight: float = typer.Option(0.25, "--min-weight", callback=unit_interval, help="A voxel / point is seen when its weight reaches this fraction of a surface point's."),
    bev_min_weight: float = typer.Option(0.02, "--bev-min-weight", callback=unit_interval, help="BEV cells are drawn when their column's weight reaches this fraction of a surface point's."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    from facet3d.plugins.dfa3d.depth import DepthBins
    from facet3d.plugins.dfa3d.lift import LiftOptions, make_grid, run_lift
    from facet3d.plugins.dfa3d.scenes import load_scene

    if depth_mode not in ("gaussian", "onehot"):
        raise UsageError(f"--depth-mode must be gaussian or onehot, got '{depth_mode}'")
    if empty not in ("zero", "uniform"):
        raise UsageError(f"--empty must be zero or uniform, got '{empty}'")
    if at is not None and (grid is not None or voxel is not None or bev_size is not None):
        raise UsageError("--at lifts onto points: it does not take --grid, --voxel or --bev-size")
    lo_hi = parse_floats(depth_range, "--depth-range", 2)
    bounds = parse_floats(grid, "--grid", 6)
    dbins = DepthBins(lo_hi[0], lo_hi[1], bins)
    sc = load_scene(scene, layout, sample)
    for w in sc.meta.get("warnings", []):
        warn(w)
    opts = LiftOptions(features=features, depth=depth, bins=dbins, mode=depth_mode, sigma=sigma, empty=empty,
                       fill=fill, min_weight=min_weight, bev_min_weight=bev_min_weight, max_size=max_size, device=resolve_device(device))
    the_grid = None
    if at is None:
        from facet3d.plugins.dfa3d.lift import default_grid

        the_grid = make_grid(*default_grid(sc, bounds, voxel))
    with progress_callback("lift") as bar:
        summary = run_lift(sc, out, opts, grid=the_grid, bev_size=bev_size, at=at, seen_only=seen_only, z_samples=z_samples,
                           progress=bar, log=note)
    if json_out:
        print_json(summary)
        return
    if summary["mode"] == "points":
        note(f"{summary['seen_points']} of {summary['points']} points seen by a camera; wrote {summary['outputs']['points']}")
    else:
        g = summary["grid"]["shape"]
        note(f"{summary['seen_voxels']} of {summary['voxels']} voxels ({g[0]}x{g[1]}x{g[2]}) seen; "
             f"wrote {summary['outputs']['voxels']} and {summary['outputs']['bev']}")


def register(app: typer.Typer) -> None:
    app.command("lift", help=LIFT_HELP)(lift)
