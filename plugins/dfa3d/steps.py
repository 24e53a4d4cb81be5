"""Pipeline step `lift` for ``facet3d batch``: a scene folder -> what ``facet3d lift SCENE --out DIR`` writes.

A thin adapter over `scenes.load_scene`, `lift.LiftOptions` and `lift.run_lift` (the CLI's other options
at their defaults: image colours, 112 depth bins over 2-58 m, Gaussian depth distributions). The only
difference from the CLI's folder: ``lift.json``'s ``outputs`` name the files relative to the folder (the
step writes into a temporary folder that the engine renames into place). `check` imports no torch.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

from facet3d.core.errors import UsageError
from facet3d.core.values import auto_device, check_device

__all__ = ["check_lift", "lift"]

_DEPTHS = ("auto", "lidar", "maps", "none")


def check_lift(layout: str = "auto", grid: Sequence[float] | None = None, voxel: float | None = None,
               bev_size: int | None = None, at: str | None = None, max_size: int | None = None, depth: str = "auto",
               device: str = "cpu", **_: Any) -> None:
    """Refuse parameters that can never work (before any scene is read)."""
    from facet3d.plugins.dfa3d.scenes import LAYOUTS

    if layout not in LAYOUTS:
        raise UsageError(f"lift: layout '{layout}': expected one of {', '.join(LAYOUTS)}")
    if at is not None and (grid is not None or voxel is not None or bev_size is not None):
        raise UsageError("lift: at lifts onto points: it does not take grid, voxel or bev_size")
    if at is not None and at != "lidar" and not Path(at).is_file():
        raise UsageError(f"lift: at {at}: expected 'lidar' or a point file that exists")
    if grid is not None and (len(grid) != 6 or not all(math.isfinite(v) for v in grid)):
        raise UsageError(f"lift: grid: expected 6 numbers 'X0 X1 Y0 Y1 Z0 Z1', got {list(grid)}")
    if voxel is not None and not (math.isfinite(voxel) and voxel > 0):
        raise UsageError(f"lift: voxel must be a positive number, got {voxel}")
    if bev_size is not None and bev_size < 1:
        raise UsageError(f"lift: bev_size must be at least 1, got {bev_size}")
    if max_size is not None and max_size < 8:
        raise UsageError(f"lift: max_size must be at least 8, got {max_size}")
    if depth not in _DEPTHS and not Path(depth).is_dir():
        raise UsageError(f"lift: depth '{depth}': expected {', '.join(_DEPTHS)} or a folder of depth maps")
    check_device(device, "lift: device")


def lift(scene: Path, out_dir: Path, layout: str = "auto", grid: Sequence[float] | None = None,
         voxel: float | None = None, bev_size: int | None = None, at: str | None = None,
         max_size: int | None = None, depth: str = "auto", device: str = "cpu") -> dict[str, Any]:
    """Lift the scene's image colours into ``out_dir`` (voxels + BEV, or onto the points ``at``) -> the summary."""
    check_lift(layout, grid, voxel, bev_size, at, max_size, depth, device)
    from facet3d.core.errors import Facet3DWarning
    from facet3d.core.io.api import write_json
    from facet3d.plugins.dfa3d.lift import LiftOptions, default_grid, make_grid, run_lift
    from facet3d.plugins.dfa3d.scenes import load_scene

    sc = load_scene(scene, layout)
    for w in sc.meta.get("warnings", []):
        warnings.warn(w, Facet3DWarning, stacklevel=2)
    opts = LiftOptions(depth=depth, max_size=max_size, device=auto_device(device))
    the_grid = None
    if at is None:
        the_grid = make_grid(*default_grid(sc, None if grid is None else [float(v) for v in grid], voxel))
    summary = run_lift(sc, Path(out_dir), opts, grid=the_grid, bev_size=bev_size, at=at)
    # the folder is renamed into place after this: name the files relative to it, in lift.json too
    summary["outputs"] = {k: Path(v).name for k, v in summary["outputs"].items()}
    write_json(Path(out_dir) / "lift.json", summary)
    return summary
