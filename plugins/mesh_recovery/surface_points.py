"""Point cloud -> triangle mesh: 2.5-D Delaunay, screened Poisson, ball pivoting and alpha shapes.

open3d does Poisson, ball pivoting and 3-D alpha shapes; scipy's 2-D Delaunay does the terrain
method (`surface_delaunay`). What this module adds is the choice and the defaults:

* **``method="auto"`` (the default) picks by the cloud's shape** (`surface_delaunay.analyse_shape`):
  planar clouds (a sheet, a wall, a floor) and 2.5-D height fields (terrain lidar, a single-view
  scan) -> ``delaunay``; everything else -> ``poisson``. ``info["method"]`` and
  ``info["method_reason"]`` say what was chosen and why.
* **Planar clouds are accepted** by delaunay, ball pivoting (normals = the plane normal unless the
  input has some) and alpha shapes (2-D alpha shape: the Delaunay triangles with circumradius below
  alpha, open3d's 3-D alpha shape fails on coplanar input). Poisson needs 3-D extent and refuses them.
* **Open surfaces stay open.**  Screened Poisson always returns a closed (indicator-function)
  surface, so on a scan or a mesh with holes it invents a membrane over every hole and a blob
  around open borders.  By default every vertex farther than ``trim_distance`` x the point spacing
  from the nearest input point is removed with its triangles: the surface then follows the input.
  ``watertight=True`` keeps Poisson's closed surface untouched.  ``trim=Q`` additionally drops
  vertices below the Q-quantile of Poisson's sample density (the classic open3d recipe).  Delaunay
  drops triangles with an edge longer than ``max_edge`` (default 10 x spacing).
* **Normals.**  Input normals are used as given (normalised).  Without them they are estimated
  (PCA, k neighbours) and oriented towards ``viewpoint`` (single scans) or by tangent-plane
  propagation (`facet3d.core.ops.normals`).  Poisson needs them oriented; BPA uses them to pick sides.
* **Length scales from the data.**  Ball-pivoting radii, the alpha of alpha shapes and Delaunay's
  edge limit default to multiples of the point spacing (median nearest-neighbour distance).
* **No invented attributes.**  The mesh has vertex colours only when the input had them (open3d's
  Poisson returns black colours for an uncoloured cloud); Delaunay keeps every input point as a
  vertex, so colours and per-point attributes carry over as they are.
* **Precision and memory.**  Everything runs on coordinates centred on the cloud's mean (LAS
  eastings ~1e6 would cost open3d and the covariances digits), the result is shifted back.  Jobs
  whose memory estimate (`poisson_memory`, `surface_delaunay.delaunay_memory`) exceeds what is
  available are refused before they start (`facet3d.core.resources.require_memory`).

Every entry takes and returns `Geometry` (numpy): points ``[N, 3]`` (+ normals/colours ``[N, 3]``)
in, mesh vertices ``[V, 3]``, faces ``[F, 3]``, vertex normals ``[V, 3]`` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.record import Geometry
from facet3d.core.progress import ProgressFn, tick

from ._common import FLAT_RATIO, check_points, point_spacing, quiet_open3d

__all__ = ["PointsToMesh", "reconstruct_points", "prepare_normals", "poisson_memory", "METHODS"]

METHODS = ("auto", "poisson", "bpa", "alpha", "delaunay")
MAX_DEPTH = 16
DEFAULT_TRIM_DISTANCE = 5.0   # x spacing; random uniform samples leave gaps of 5 spacings with p ~ e^-17
DEFAULT_BPA_RADII = (1.0, 2.0, 4.0)  # x spacing: the small ball keeps detail, the large one closes gaps
DEFAULT_ALPHA = 4.0           # x spacing

# Poisson memory estimate. The octree is refined only near the samples, down to `depth`: its
# finest level has about (surface area / cube face area) x 4^depth cells, at most
# POISSON_SURFACE_CELLS x 4^depth (a surface as large as the cube's six faces), and never more than
# POISSON_CELLS_PER_POINT per input point (each sample refines its own path; measured: 200k sphere
# points give 0.5M / 0.66M / 1.4M triangles at depth 8 / 9 / 10). Measured peaks (open3d 0.20):
# 20k points 64-73 MB at depth 8-9, 200k points 203 / 316 / 537 MB at depth 8 / 9 / 10, i.e. about
# 400 bytes per finest-level cell plus ~1 kB per input point; the estimate is 1-1.7x the measurement.
POISSON_BYTES_PER_POINT = 1000
POISSON_BYTES_PER_CELL = 400
POISSON_SURFACE_CELLS = 6
POISSON_CELLS_PER_POINT = 8

# options that belong to one method: (field, flag, method)
_METHOD_OPTIONS = (("watertight", "--watertight", "poisson"), ("trim", "--trim", "poisson"),
                   ("trim_distance", "--trim-distance", "poisson"), ("radii", "--radii", "bpa"),
                   ("alpha", "--alpha", "alpha"), ("max_edge", "--max-edge", "delaunay"))


def poisson_memory(n_points: int, depth: int) -> int:
    """Bytes screened Poisson at ``depth`` needs for ``n_points`` oriented points (estimate above)."""
    cells = min(POISSON_SURFACE_CELLS * 4 ** int(depth), POISSON_CELLS_PER_POINT * int(n_points))
    return int(n_points) * POISSON_BYTES_PER_POINT + cells * POISSON_BYTES_PER_CELL


def _given(opts: "PointsToMesh", name: str) -> bool:
    value = getattr(opts, name)
    return bool(value) if name == "watertight" else value is not None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass
class PointsToMesh:
    """Options of `reconstruct_points` (one place for the CLI, the pipeline step and the benchmark)."""

    method: str = "auto"                # auto, poisson, bpa, alpha or delaunay
    depth: int = 8                      # Poisson octree depth (grid 2^depth)
    scale: float = 1.1                  # Poisson: reconstruction cube / bounding cube
    linear_fit: bool = False            # Poisson: place iso-vertices by linear interpolation
    width: float = 0.0                  # Poisson: finest cell width (overrides depth when > 0)
    trim: float | None = None           # Poisson: drop vertices below this density quantile (0..1)
    trim_distance: float | None = None  # Poisson: x spacing; None -> DEFAULT_TRIM_DISTANCE unless watertight
    watertight: bool = False            # Poisson: keep the closed surface (no trimming)
    radii: Sequence[float] | None = None  # BPA ball radii (absolute); None -> spacing x DEFAULT_BPA_RADII
    alpha: float | None = None          # alpha shapes (absolute); None -> spacing x DEFAULT_ALPHA
    max_edge: float | None = None       # Delaunay: longest 3-D edge kept (absolute); None -> spacing x
                                        # DEFAULT_MAX_EDGE, 0 -> no limit
    viewpoint: Sequence[float] | None = None  # orient estimated normals (Delaunay: faces) towards this point
    k: int = 30                         # neighbours for normal estimation
    estimate_normals: bool | None = None  # None: only when the input has none; True: always
    info: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse bad or conflicting options (UsageError naming the flag) before any work."""
        if self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, got '{self.method}'")
        for name, flag, owner in _METHOD_OPTIONS:
            if not _given(self, name):
                continue
            if self.method == "auto" and owner in ("bpa", "alpha"):
                raise UsageError(f"{flag} is an option of --method {owner}: add --method {owner}")
            if self.method not in ("auto", owner):
                raise UsageError(f"{flag} is an option of --method {owner}; it does nothing with --method {self.method}")
        if self.watertight and (self.trim is not None or self.trim_distance is not None):
            raise UsageError("--watertight keeps Poisson's closed surface: it cannot be combined with trimming")
        if _given(self, "max_edge") and any(_given(self, n) for n, _, o in _METHOD_OPTIONS if o == "poisson"):
            raise UsageError("--max-edge (delaunay) and --watertight/--trim/--trim-distance (poisson) exclude each other")
        if self.trim is not None and not (_finite(self.trim) and 0.0 <= self.trim < 1.0):
            raise UsageError(f"--trim is a density quantile in [0, 1), got {self.trim}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) or not 1 <= self.depth <= MAX_DEPTH:
            raise UsageError(f"--depth must be an integer in 1..{MAX_DEPTH}, got {self.depth}")
        for name, flag, value, ok, wanted in (
                ("scale", "--scale", self.scale, lambda v: v > 0, "a positive number"),
                ("width", "width", self.width, lambda v: v >= 0, "a number >= 0"),
                ("alpha", "--alpha", self.alpha, lambda v: v > 0, "a positive number"),
                ("trim_distance", "--trim-distance", self.trim_distance, lambda v: v >= 0, "a number >= 0"),
                ("max_edge", "--max-edge", self.max_edge, lambda v: v >= 0, "a number >= 0 (0: no limit)")):
            if value is not None and not (_finite(value) and ok(value)):
                raise UsageError(f"{flag} must be {wanted}, got {value}")
        if self.radii is not None:
            if not len(self.radii) or not all(_finite(r) and r > 0 for r in self.radii):
                raise UsageError(f"--radii must be positive finite numbers, got {list(self.radii)}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 3:
            raise UsageError(f"--k must be an integer >= 3, got {self.k}")
        if self.viewpoint is not None and (len(self.viewpoint) != 3 or not all(_finite(float(x)) for x in self.viewpoint)):
            raise UsageError(f"--viewpoint needs finite x,y,z, got {list(self.viewpoint)}")


def prepare_normals(points: np.ndarray, normals: np.ndarray | None, opts: PointsToMesh,
                    viewpoint: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Unit normals ``[N, 3]`` for the reconstruction and a word for where they came from.

    viewpoint: in the coordinates of ``points`` (default ``opts.viewpoint``; pass it shifted when
    the points were centred).
    """
    if normals is not None and opts.estimate_normals is not True:
        n = _usable_normals(normals, points)
        if n is not None:
            return n, "input"
        opts.info["normals_note"] = "input normals had zero or non-finite entries: re-estimated"
    from facet3d.core.ops.normals import estimate_normals

    view = viewpoint if viewpoint is not None else opts.viewpoint
    if view is not None:
        n = estimate_normals(points, k=opts.k, orient="viewpoint", viewpoint=np.asarray(view, float))
        return np.asarray(n), "estimated, oriented towards the viewpoint"
    return np.asarray(estimate_normals(points, k=opts.k, orient="consistent")), "estimated, tangent-plane propagation"


def _usable_normals(normals: np.ndarray | None, points: np.ndarray) -> np.ndarray | None:
    """The input normals made unit length, or None when missing, mis-shaped, zero or non-finite."""
    if normals is None:
        return None
    n = np.asarray(normals, dtype=np.float64)
    if n.shape != points.shape or not np.isfinite(n).all():
        return None
    norm = np.linalg.norm(n, axis=1)
    return n / norm[:, None] if (norm > 1e-12).all() else None


def _to_o3d_cloud(points: np.ndarray, normals: np.ndarray | None, colors: np.ndarray | None):
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if normals is not None:
        pc.normals = o3d.utility.Vector3dVector(np.ascontiguousarray(normals, dtype=np.float64))
    if colors is not None:
        pc.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(colors[:, :3], dtype=np.float64))
    return pc


def poisson(pcd, opts: PointsToMesh, spacing: float, points: np.ndarray) -> Any:
    """Screened Poisson on an oriented open3d cloud (of ``points [N, 3]``), then the trimming `opts`
    asks for -> TriangleMesh."""
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    from facet3d.core.ops.neighbors import knn_points

    # n_threads=1: PoissonRecon's threaded path segfaults now and then, more often on a busy machine
    # (isl-org/Open3D#6828, #7229; about 1 file in 200 in a 2-worker batch here) and is not
    # deterministic (#2117). One thread costs ~1.4x on a 300k-point depth-9 cloud; a crash costs the job.
    with quiet_open3d():
        mesh, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            pcd, depth=opts.depth, width=opts.width, scale=opts.scale, linear_fit=opts.linear_fit, n_threads=1)
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
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

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


class _Stages:
    """Progress of `reconstruct_points`: ``progress(done, total, "mesh: stage")`` and ``report(stage)``."""

    def __init__(self, progress: ProgressFn | None, report: Callable[[str], None] | None) -> None:
        self.progress, self.report, self.done, self.total = progress, report, 0, 4

    def __call__(self, stage: str, tick_it: bool = True) -> None:
        if self.report is not None:
            self.report(stage)
        if tick_it:
            tick(self.progress, self.done, self.total, f"mesh: {stage}")
            self.done += 1

    def sub(self, done: int, _total: int | None = None, description: str | None = None) -> None:
        """Callback for a sub-job (Delaunay): its units are the next stages."""
        tick(self.progress, self.done + done, self.total, description and f"mesh: {description}")

    def finish(self) -> None:
        tick(self.progress, self.total, self.total)


def _choose_method(opts: PointsToMesh, shape) -> str:
    """The method to run: ``opts.method``, or for ``auto`` the one the shape asks for."""
    if opts.method != "auto":
        return opts.method
    method = "delaunay" if shape.kind in ("planar", "height_field") else "poisson"
    opts.info["method_reason"] = f"auto: {method} ({shape.reason})"
    for name, flag, owner in _METHOD_OPTIONS:
        if _given(opts, name) and owner != method:
            raise UsageError(f"--method auto chose {method} ({shape.reason}), but {flag} is an option of "
                             f"--method {owner}: pass --method {owner} or drop {flag}")
    return method


def reconstruct_points(geom: Geometry, opts: PointsToMesh | None = None,
                       report: Callable[[str], None] | None = None, progress: ProgressFn | None = None) -> Geometry:
    """Mesh a point cloud `geom` (``vertices [N, 3]``, optional ``normals``/``colors [N, 3]``).

    Returns a mesh `Geometry` with vertex normals (and colours only when the input had them);
    ``opts.info`` collects what was decided (method and why, spacing, normals source, radii,
    trimmed vertices). report(stage) / progress(done, total, description) follow the stages.
    Raises GeometryError for inputs no surface can come from (too few / NaN / collinear points,
    coplanar ones for Poisson) and when the method produced no triangle; ResourceError when the
    memory estimate does not fit.
    """
    from facet3d.core.resources import require_memory

    from .surface_delaunay import DEFAULT_MAX_EDGE, analyse_shape, delaunay_memory, warn_folds

    opts = opts or PointsToMesh()
    opts.validate()
    stage = _Stages(progress, report)
    stage("shape")
    pts = check_points(geom.vertices, allow_flat=True)
    n = len(pts)
    centre = pts.mean(axis=0)
    work = pts - centre  # every computation on centred coordinates (LAS eastings ~1e6)
    spacing = point_spacing(work)
    view = None if opts.viewpoint is None else np.asarray(opts.viewpoint, dtype=np.float64) - centre
    in_normals = _usable_normals(geom.normals, pts)
    shape = analyse_shape(work, spacing, view, in_normals)
    method = _choose_method(opts, shape)
    opts.info.update(points=n, spacing=spacing, method=method, shape=shape.as_info())
    colors = geom.colors if geom.colors is not None and len(geom.colors) == n else None
    exactly_flat = shape.flatness <= FLAT_RATIO
    # stages: shape, then delaunay's 3 (triangulate, edge limit, normals) or [normals,] method, clean-up
    stage.total = 4 if method in ("delaunay", "poisson", "bpa") or shape.kind == "planar" else 3

    if method == "delaunay" or (method == "alpha" and shape.kind == "planar"):
        require_memory(delaunay_memory(n), f"2-D Delaunay of {n} points")
        if method == "delaunay":
            note = warn_folds(shape, method)
            if note:
                opts.info["warning"] = note
            mult = DEFAULT_MAX_EDGE if opts.max_edge is None else None
            max_edge = mult * spacing if mult else (float(opts.max_edge) or None)
            opts.info["max_edge"] = max_edge
            alpha = None
        else:
            alpha = float(opts.alpha) if opts.alpha else spacing * DEFAULT_ALPHA
            opts.info.update(alpha=alpha, alpha_mode="2-D (planar cloud)")
            max_edge = None
        return _delaunay_mesh(geom, work, shape, opts, spacing, max_edge, alpha, colors, stage)

    if method == "poisson" and exactly_flat:
        raise GeometryError(f"all {n} points lie in one plane: Poisson needs 3-D extent "
                            "(use --method delaunay, bpa or alpha, or the default --method auto)")
    if method == "poisson":
        require_memory(poisson_memory(n, opts.depth), f"Poisson reconstruction at --depth {opts.depth} of {n} points")
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    normals = None
    if method in ("poisson", "bpa"):
        stage("normals")
        if shape.kind == "planar" and in_normals is None and method == "bpa":
            normals, source = np.tile(shape.axis, (n, 1)), "the plane normal (planar cloud)"
        else:
            normals, source = prepare_normals(work, geom.normals, opts, view)
        opts.info["normals"] = source
    pcd = _to_o3d_cloud(work, normals, colors)
    stage(method)
    with quiet_open3d():
        if method == "poisson":
            mesh = poisson(pcd, opts, spacing, work)
        elif method == "bpa":
            radii = [float(r) for r in opts.radii] if opts.radii else [spacing * m for m in DEFAULT_BPA_RADII]
            opts.info["radii"] = radii
            mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(pcd, o3d.utility.DoubleVector(radii))
        else:
            alpha = float(opts.alpha) if opts.alpha else spacing * DEFAULT_ALPHA
            opts.info["alpha"] = alpha
            try:
                mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_alpha_shape(pcd, alpha)
            except RuntimeError as exc:  # open3d's 3-D Qhull call (no 'Qz'): e.g. points all on one sphere
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "Qhull failed"
                raise GeometryError(f"alpha shape: the 3-D Delaunay of {n} points failed ({first[:160]}); "
                                    "try --method poisson or bpa") from None
        stage("clean-up")
        mesh.remove_degenerate_triangles()
        mesh.remove_unreferenced_vertices()
    if len(mesh.triangles) == 0:
        raise GeometryError(f"{method} produced no triangle from {n} points "
                            f"(spacing {spacing:.3g}; try larger radii/alpha or --watertight)")
    mesh.compute_vertex_normals()
    # open3d's Poisson gives an uncoloured cloud black vertex colours: colours only when the input had them
    keep_colors = colors is not None and mesh.has_vertex_colors()
    out = Geometry(vertices=np.asarray(mesh.vertices) + centre, faces=np.asarray(mesh.triangles, dtype=np.int64).copy(),
                   normals=np.asarray(mesh.vertex_normals).copy(),
                   colors=np.clip(np.asarray(mesh.vertex_colors, dtype=np.float32), 0, 1) if keep_colors else None)
    opts.info.update(vertices=out.num_points, faces=out.num_faces)
    stage.finish()
    return out


def _delaunay_mesh(geom: Geometry, work: np.ndarray, shape, opts: PointsToMesh, spacing: float,
                   max_edge: float | None, alpha: float | None, colors: np.ndarray | None, stage: _Stages) -> Geometry:
    """2-D Delaunay (edge limit) or planar alpha shape; every input point a vertex, attributes kept."""
    from .surface_delaunay import delaunay_faces, vertex_normals

    stage("delaunay" if alpha is None else "alpha (2-D)", tick_it=False)
    faces = delaunay_faces(work, shape.axis, max_edge=max_edge, max_circumradius=alpha, info=opts.info,
                           progress=stage.sub)
    opts.info.update(projection_axis=[round(float(a), 6) for a in shape.axis], projection=shape.axis_name)
    if not len(faces):
        hint = "a larger --alpha" if alpha else "a larger --max-edge (0: no limit)"
        raise GeometryError(f"{opts.method if opts.method != 'auto' else 'delaunay'} produced no triangle from "
                            f"{len(work)} points (spacing {spacing:.3g}; try {hint})")
    n = len(work)
    out = Geometry(vertices=np.array(geom.vertices, copy=True), faces=faces,
                   normals=vertex_normals(work, faces, shape.axis),
                   colors=None if colors is None else np.array(colors, copy=True),
                   attributes={k: np.array(v, copy=True) for k, v in geom.attributes.items() if len(v) == n})
    opts.info.update(vertices=out.num_points, faces=out.num_faces)
    stage.finish()
    return out
