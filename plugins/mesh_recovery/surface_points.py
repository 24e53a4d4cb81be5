"""Point cloud -> triangle mesh: screened Poisson, ball pivoting and alpha shapes (open3d does the work).

What this module adds to open3d's calls is the defaults:

* **Open surfaces stay open.**  Screened Poisson always returns a closed (indicator-function)
  surface, so on a scan or a mesh with holes it invents a membrane over every hole and a blob
  around open borders.  By default every vertex farther than ``trim_distance`` x the point spacing
  from the nearest input point is removed with its triangles: the surface then follows the input.
  ``watertight=True`` keeps Poisson's closed surface untouched.  ``trim=Q`` additionally drops
  vertices below the Q-quantile of Poisson's sample density (the classic open3d recipe).
* **Normals.**  Input normals are used as given (normalised).  Without them they are estimated
  (PCA, k neighbours) and oriented towards ``viewpoint`` (single scans) or by tangent-plane
  propagation (`facet3d.core.ops.normals`).  Poisson needs them oriented; BPA uses them to pick sides.
* **Length scales from the data.**  Ball-pivoting radii and the alpha of alpha shapes default to
  multiples of the point spacing (median nearest-neighbour distance).

Every entry takes and returns `Geometry` (numpy): points ``[N, 3]`` (+ normals/colours ``[N, 3]``)
in, mesh vertices ``[V, 3]``, faces ``[F, 3]``, vertex normals ``[V, 3]`` out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.record import Geometry

from ._common import check_points, point_spacing, quiet_open3d

__all__ = ["PointsToMesh", "reconstruct_points", "prepare_normals", "METHODS"]

METHODS = ("poisson", "bpa", "alpha")
DEFAULT_TRIM_DISTANCE = 5.0   # x spacing; random uniform samples leave gaps of 5 spacings with p ~ e^-17
DEFAULT_BPA_RADII = (1.0, 2.0, 4.0)  # x spacing: the small ball keeps detail, the large one closes gaps
DEFAULT_ALPHA = 4.0           # x spacing


@dataclass
class PointsToMesh:
    """Options of `reconstruct_points` (one place for the CLI, the pipeline step and the benchmark)."""

    method: str = "poisson"
    depth: int = 8                      # Poisson octree depth (grid 2^depth)
    scale: float = 1.1                  # Poisson: reconstruction cube / bounding cube
    linear_fit: bool = False            # Poisson: place iso-vertices by linear interpolation
    width: float = 0.0                  # Poisson: finest cell width (overrides depth when > 0)
    trim: float | None = None           # Poisson: drop vertices below this density quantile (0..1)
    trim_distance: float | None = None  # Poisson: x spacing; None -> DEFAULT_TRIM_DISTANCE unless watertight
    watertight: bool = False            # Poisson: keep the closed surface (no trimming)
    radii: Sequence[float] | None = None  # BPA ball radii (absolute); None -> spacing x DEFAULT_BPA_RADII
    alpha: float | None = None          # alpha shapes (absolute); None -> spacing x DEFAULT_ALPHA
    viewpoint: Sequence[float] | None = None  # orient estimated normals towards this point
    k: int = 30                         # neighbours for normal estimation
    estimate_normals: bool | None = None  # None: only when the input has none; True: always
    info: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.method != "poisson":
            for name, bad in (("--watertight", self.watertight), ("--trim", self.trim is not None),
                              ("--trim-distance", self.trim_distance is not None)):
                if bad:
                    raise UsageError(f"{name} is a Poisson option; it does nothing with --method {self.method}")
        if self.watertight and (self.trim is not None or self.trim_distance is not None):
            raise UsageError("--watertight keeps Poisson's closed surface: it cannot be combined with trimming")
        if self.trim is not None and not 0.0 <= self.trim < 1.0:
            raise UsageError(f"--trim is a density quantile in [0, 1), got {self.trim}")
        if not 1 <= self.depth <= 14:
            raise UsageError(f"--depth must be in 1..14, got {self.depth}")
        if self.viewpoint is not None and len(self.viewpoint) != 3:
            raise UsageError(f"--viewpoint needs x,y,z, got {list(self.viewpoint)}")


def prepare_normals(points: np.ndarray, normals: np.ndarray | None, opts: PointsToMesh) -> tuple[np.ndarray, str]:
    """Unit normals ``[N, 3]`` for the reconstruction and a word for where they came from."""
    if normals is not None and opts.estimate_normals is not True:
        n = np.asarray(normals, dtype=np.float64)
        norm = np.linalg.norm(n, axis=1)
        if n.shape == points.shape and np.isfinite(n).all() and (norm > 1e-12).all():
            return n / norm[:, None], "input"
        opts.info["normals_note"] = "input normals had zero or non-finite entries: re-estimated"
    from facet3d.core.ops.normals import estimate_normals

    if opts.viewpoint is not None:
        n = estimate_normals(points, k=opts.k, orient="viewpoint", viewpoint=np.asarray(opts.viewpoint, float))
        return np.asarray(n), "estimated, oriented towards the viewpoint"
    return np.asarray(estimate_normals(points, k=opts.k, orient="consistent")), "estimated, tangent-plane propagation"


def _to_o3d_cloud(points: np.ndarray, normals: np.ndarray | None, colors: np.ndarray | None):
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if normals is not None:
        pc.normals = o3d.utility.Vector3dVector(np.ascontiguousarray(normals, dtype=np.float64))
    if colors is not None:
        pc.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(colors[:, :3], dtype=np.float64))
    return pc


def poisson(pcd, opts: PointsToMesh, spacing: float, points: np.ndarray) -> Any:
    """Screened Poisson on an oriented open3d cloud (of ``points [N, 3]``), then the trimming `opts`
    asks for -> TriangleMesh."""
    import open3d as o3d

    from facet3d.core.ops.neighbors import knn_points

    with quiet_open3d():
        mesh, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            pcd, depth=opts.depth, width=opts.width, scale=opts.scale, linear_fit=opts.linear_fit)
    dens = np.asarray(dens)
    opts.info["poisson_triangles"] = len(mesh.triangles)
    if opts.watertight:
        return _close(mesh, opts)
    drop = np.zeros(len(dens), dtype=bool)
    if opts.trim:
        drop |= dens < np.quantile(dens, opts.trim)
    mult = DEFAULT_TRIM_DISTANCE if opts.trim_distance is None else opts.trim_distance
    if mult > 0:
        d, _ = knn_points(np.asarray(mesh.vertices), points, 1)
        drop |= d[:, 0] > mult * spacing
        opts.info["trim_distance"] = mult * spacing
    if drop.any():
        mesh.remove_vertices_by_mask(drop)
    opts.info["trimmed_vertices"] = int(drop.sum())
    return mesh


def _close(mesh, opts: PointsToMesh):
    """Poisson's iso-surface is closed in theory, but open3d's marching cubes leaves pinholes now and
    then (28 boundary edges on half a bunny): weld coincident vertices, fill what is left, re-orient.

    open3d 0.20's ``t.TriangleMesh.fill_holes`` returns float32 garbage vertex positions through
    ``to_legacy``; it only adds triangles over existing vertices, so just its triangles are taken.
    """
    import open3d as o3d

    from facet3d.core.topology import mesh_checks

    from .surface_soup import orient_faces

    # near-coincident iso-vertices (within float32-ish precision) would read as pinches to any checker
    mesh.merge_close_vertices(2e-7 * float(np.abs(np.asarray(mesh.vertices)).max()))
    mesh.remove_degenerate_triangles()
    mesh.remove_unreferenced_vertices()
    v = np.asarray(mesh.vertices)
    before = mesh_checks(v, np.asarray(mesh.triangles), merge=False)["boundary_edges"]
    if before:
        filled = o3d.t.geometry.TriangleMesh.from_legacy(mesh).fill_holes(hole_size=1e30)
        tri = filled.triangle.indices.numpy().astype(np.int64)
        if len(tri) and tri.max() < len(v):
            tri, _ = orient_faces(v, tri)
            mesh.triangles = o3d.utility.Vector3iVector(tri.astype(np.int32))
    checks = mesh_checks(v, np.asarray(mesh.triangles), merge=False)
    opts.info.update(holes_filled_boundary_edges=before, watertight=checks["watertight"])
    return mesh


def reconstruct_points(geom: Geometry, opts: PointsToMesh | None = None,
                       report: Callable[[str], None] | None = None) -> Geometry:
    """Mesh a point cloud `geom` (``vertices [N, 3]``, optional ``normals``/``colors [N, 3]``).

    Returns a mesh `Geometry` with vertex normals (and colours when the input had them);
    ``opts.info`` collects what was decided (spacing, normals source, radii, trimmed vertices).
    Raises GeometryError for inputs no surface can come from (too few / NaN / flat points) and
    when the method produced no triangle.
    """
    import open3d as o3d

    opts = opts or PointsToMesh()
    opts.validate()
    say = report or (lambda _msg: None)
    pts = check_points(geom.vertices)
    spacing = point_spacing(pts)
    opts.info.update(points=len(pts), spacing=spacing, method=opts.method)
    colors = geom.colors if geom.colors is not None and len(geom.colors) == len(pts) else None
    normals = None
    if opts.method in ("poisson", "bpa"):
        say("normals")
        normals, source = prepare_normals(pts, geom.normals, opts)
        opts.info["normals"] = source
    pcd = _to_o3d_cloud(pts, normals, colors)
    say(opts.method)
    with quiet_open3d():
        if opts.method == "poisson":
            mesh = poisson(pcd, opts, spacing, pts)
        elif opts.method == "bpa":
            radii = [float(r) for r in opts.radii] if opts.radii else [spacing * m for m in DEFAULT_BPA_RADII]
            if min(radii) <= 0:
                raise UsageError(f"ball radii must be positive, got {radii}")
            opts.info["radii"] = radii
            mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(pcd, o3d.utility.DoubleVector(radii))
        else:
            alpha = float(opts.alpha) if opts.alpha else spacing * DEFAULT_ALPHA
            if alpha <= 0:
                raise UsageError(f"alpha must be positive, got {alpha}")
            opts.info["alpha"] = alpha
            mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_alpha_shape(pcd, alpha)
        mesh.remove_degenerate_triangles()
        mesh.remove_unreferenced_vertices()
    if len(mesh.triangles) == 0:
        raise GeometryError(f"{opts.method} produced no triangle from {len(pts)} points "
                            f"(spacing {spacing:.3g}; try larger radii/alpha or --watertight)")
    mesh.compute_vertex_normals()
    out = Geometry(vertices=np.asarray(mesh.vertices).copy(), faces=np.asarray(mesh.triangles, dtype=np.int64).copy(),
                   normals=np.asarray(mesh.vertex_normals).copy(),
                   colors=np.asarray(mesh.vertex_colors, dtype=np.float32).copy() if mesh.has_vertex_colors() else None)
    opts.info.update(vertices=out.num_points, faces=out.num_faces)
    return out
