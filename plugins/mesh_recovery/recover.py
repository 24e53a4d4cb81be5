"""What ``facet3d mesh`` does, callable from Python: check the output, pick the source, make the mesh.

Three sources: a point cloud (`surface_points`), a folder of depth maps with cameras (TSDF,
`surface_tsdf`) or a triangle soup (`surface_soup`). Progress and messages go through the
callbacks of `facet3d.core.progress`; nothing here prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facet3d.core.errors import UsageError
from facet3d.core.io.record import Geometry
from facet3d.core.progress import LogFn, ProgressFn, say, tick


def check_mesh_output(out: Path) -> None:
    """Fail before a long reconstruction, not after it, when the output cannot be written."""
    from facet3d.core.io.api import registered_formats

    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise UsageError(f"{out}: folder {out.parent} does not exist")
    name = out.name.lower()
    if not any(spec.write is not None and "mesh" in spec.kinds and not spec.explicit_only
               and any(name.endswith(e) for e in spec.extensions) for spec in registered_formats().values()):
        raise UsageError(f"{out}: no mesh writer for this extension (try .ply, .obj, .off, .stl, .glb)")


def check_sources(points: Path | None, depth_dir: Path | None, cameras: Path | None, soup: Path | None) -> None:
    """Exactly one source, and cameras exactly when the source is depth maps."""
    given = [m for m, on in (("INPUT", points is not None), ("--from-depth", depth_dir is not None),
                             ("--from-soup", soup is not None)) if on]
    if len(given) != 1:
        raise UsageError("give exactly one of INPUT, --from-depth DIR or --from-soup FILE"
                         + (f" (got {', '.join(given)})" if given else ""))
    if (depth_dir is None) != (cameras is None):
        raise UsageError("--from-depth and --cameras go together")


def mesh_from_points(path: Path, opts: Any, progress: ProgressFn | None = None) -> Geometry:
    """`reconstruct_points` on the cloud (or mesh vertices) in ``path``; progress by stage."""
    from facet3d.core.io.api import read
    from facet3d.plugins.mesh_recovery.surface_points import reconstruct_points

    opts.validate()
    geom = read(path)
    return reconstruct_points(geom, opts, progress=progress)


def mesh_from_depth(depth_dir: Path, cameras: Path, *, colors: Path | None = None, voxel: float | None = None,
                    trunc: float | None = None, depth_scale: float | None = None, depth_max: float | None = None,
                    min_component: float | None = None, info: dict[str, Any] | None = None,
                    progress: ProgressFn | None = None, log: LogFn | None = None) -> Geometry:
    """TSDF-fuse the depth maps of ``depth_dir`` seen by ``cameras`` (a camera file or COLMAP model)."""
    from facet3d.plugins.mesh_recovery.surface_tsdf import fuse_depth, load_cameras

    cams = load_cameras(cameras, log=log)  # warns (through log) when lens distortion is ignored
    tick(progress, 0, None, "TSDF fusion")
    return fuse_depth(depth_dir, cams, color_dir=colors, voxel=voxel, trunc=trunc, depth_scale=depth_scale,
                      depth_max=depth_max, min_component=0.05 if min_component is None else min_component,
                      info=info, progress=None if progress is None else (lambda i, n: progress(i, n, None)))


def mesh_from_soup(path: Path, weld_tol: float | None = None, min_component: float | None = None,
                   info: dict[str, Any] | None = None, log: LogFn | None = None) -> Geometry:
    """Weld and repair the triangle soup in ``path``; what was fixed goes to ``info`` and `log`."""
    from facet3d.core.io.api import read
    from facet3d.plugins.mesh_recovery.surface_soup import describe, repair_soup

    result, rep = repair_soup(read(path), tol=weld_tol, min_component=0.001 if min_component is None else min_component)
    if info is not None:
        info.update(rep)
    say(log, describe(rep))
    return result


def recover_mesh(points: Path | None = None, depth_dir: Path | None = None, cameras: Path | None = None,
                 soup: Path | None = None, *, points_opts: Any = None, weld_tol: float | None = None,
                 min_component: float | None = None, info: dict[str, Any] | None = None,
                 progress: ProgressFn | None = None, log: LogFn | None = None, **depth_opts: Any) -> Geometry:
    """The mesh from whichever one source is given (`check_sources`).

    points_opts: a `surface_points.PointsToMesh` (default options when None); depth_opts: the
    keyword options of `mesh_from_depth` (colors, voxel, trunc, depth_scale, depth_max).
    """
    check_sources(points, depth_dir, cameras, soup)
    if points is not None:
        from facet3d.plugins.mesh_recovery.surface_points import PointsToMesh

        return mesh_from_points(points, points_opts or PointsToMesh(info=info if info is not None else {}), progress)
    if depth_dir is not None:
        return mesh_from_depth(depth_dir, cameras, min_component=min_component, info=info, progress=progress,
                               log=log, **depth_opts)
    return mesh_from_soup(soup, weld_tol, min_component, info, log)
