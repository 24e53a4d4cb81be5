"""2.5-D Delaunay meshing (terrain, sheets, walls) and the shape test behind ``--method auto``.

**2.5-D Delaunay** (the terrain method of PDAL ``filters.delaunay`` and CloudCompare): the points
are projected onto a plane, triangulated there (``scipy.spatial.Delaunay``, 2-D) and the triangles
lifted back onto the original 3-D points. Every input point stays a vertex (in input order, so
colours and per-point attributes carry over unchanged; points that coincide in the projection are
left unreferenced). Triangles with any 3-D edge longer than ``max_edge`` are removed, so concave
outlines and holes stay open instead of being spanned by the convex hull. Each triangle is wound
counter-clockwise seen from the projection axis ``up``: on a height field all normals point to the
``up`` side (+z, or towards the viewpoint).

**Shape test** (`analyse_shape`), on the centred cloud:

* *planar*: smallest / largest singular value below `PLANAR_RATIO` (a sheet, a wall, a floor);
* *height field* (2.5-D): along the least-variance axis or along z (preferred within 1 % of folded
  cells: "up" for terrain and most scans), the cloud is single-valued.
  Fold test: project onto the plane, bin into square cells of `FOLD_CELL` x point spacing; a cell
  *folds* when two of its points, consecutive in height, are more than `FOLD_GAP` cells apart in
  height (two layers: top and bottom of a closed object, or canopy over ground). A smooth surface
  of slope s has consecutive-height gaps of about s x cell / points-per-cell, far below 3 cells up
  to ~70 degrees. The cloud is a height field when at most `MAX_FOLDED` of its occupied cells fold.
  Measured: closed shapes (bunny, cow, spot, teapot, a sphere) fold 65-75 %, half a bunny 42 %,
  a partial car scan 43 %; single-view scans (PCL bunny, milk, table scene) 0-10 %, the Autzen
  lidar tile (trees and buildings included) 15 %;
* otherwise *volumetric* (Poisson's job).

Coordinates are centred before any arithmetic (LAS eastings ~1e6: float64 keeps 1e-10 relative).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from facet3d.core.errors import Facet3DWarning, GeometryError
from facet3d.core.progress import ProgressFn, tick

from ._common import principal_axes

__all__ = ["Shape", "analyse_shape", "fold_fraction", "orient_axis", "plane_basis", "delaunay_faces",
           "vertex_normals", "delaunay_memory", "warn_folds", "DEFAULT_MAX_EDGE"]

DEFAULT_MAX_EDGE = 10.0   # x spacing: Delaunay edges of a well-sampled surface stay under ~5 spacings
                          # (anisotropic lidar scan lines included); 10 leaves a factor 2 of margin
PLANAR_RATIO = 1e-3       # smallest / largest singular value: a sheet 1000x wider than thick
FOLD_CELL = 2.0           # fold-test grid cell, x spacing
FOLD_GAP = 3.0            # a height gap of more than this many cells inside one cell is a fold
MAX_FOLDED = 0.25         # height field when at most this fraction of occupied cells fold
FOLD_SAMPLE = 500_000     # the fold test runs on at most this many points
# scipy (Qhull) Delaunay in 2-D peaks at ~670 bytes per point (measured, 500k points); the edge
# test, normals and output arrays add ~150
DELAUNAY_BYTES_PER_POINT = 1000


@dataclass
class Shape:
    """What `analyse_shape` found. axis: unit ``[3]``, the projection ("up") direction, oriented."""

    kind: str                 # "planar", "height_field" or "volumetric"
    axis: np.ndarray
    axis_name: str            # "plane normal", "least-variance axis" or "z axis"
    flatness: float           # smallest / largest singular value
    folded: dict[str, float]  # axis name -> fraction of folded cells
    reason: str

    def as_info(self) -> dict[str, Any]:
        return {"kind": self.kind, "axis": [round(float(a), 6) for a in self.axis], "axis_name": self.axis_name,
                "flatness": self.flatness, "folded_cells": {k: round(v, 4) for k, v in self.folded.items()},
                "reason": self.reason}


def plane_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit ``u, v`` spanning the plane orthogonal to unit ``axis``, with u x v = axis (so a
    counter-clockwise triangle in (u, v) has its 3-D normal on the ``axis`` side)."""
    a = np.asarray(axis, dtype=np.float64)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(helper, a)
    u /= np.linalg.norm(u)
    return u, np.cross(a, u)


def fold_fraction(centred: np.ndarray, axis: np.ndarray, spacing: float) -> float:
    """Fraction of occupied grid cells (with >= 2 points) where the cloud has two layers along ``axis``."""
    p = centred
    if len(p) > FOLD_SAMPLE:
        # a subset is sparser: scale the cell with the mean spacing it has (area per point ~ spacing^2)
        p = p[np.random.default_rng(0).choice(len(p), FOLD_SAMPLE, replace=False)]
        spacing = spacing * np.sqrt(len(centred) / FOLD_SAMPLE)
    u, v = plane_basis(axis)
    uv = np.stack([p @ u, p @ v], 1)
    h = p @ np.asarray(axis, dtype=np.float64)
    cell = FOLD_CELL * spacing
    ij = np.floor((uv - uv.min(0)) / cell).astype(np.int64)
    key = ij[:, 0] * (int(ij[:, 1].max()) + 1) + ij[:, 1]
    order = np.lexsort((h, key))
    k, hs = key[order], h[order]
    same = k[1:] == k[:-1]
    folded = same & (np.diff(hs) > FOLD_GAP * cell)
    _, counts = np.unique(k, return_counts=True)
    occupied = int((counts >= 2).sum())
    return len(np.unique(k[1:][folded])) / max(occupied, 1)


def orient_axis(axis: np.ndarray, viewpoint: np.ndarray | None = None, normals: np.ndarray | None = None) -> np.ndarray:
    """The sign of ``axis``: towards ``viewpoint`` (centred coordinates, seen from the centroid),
    else the majority of the input ``normals``, else +z, else its largest component positive."""
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    if viewpoint is not None and np.linalg.norm(viewpoint) > 0:
        return a if float(a @ np.asarray(viewpoint, float)) >= 0 else -a
    if normals is not None:
        s = float(np.sum(np.asarray(normals, dtype=np.float64) @ a))
        if s != 0:
            return a if s > 0 else -a
    if abs(a[2]) > 1e-6:
        return a if a[2] > 0 else -a
    return a if a[np.argmax(np.abs(a))] > 0 else -a


def analyse_shape(centred: np.ndarray, spacing: float, viewpoint: np.ndarray | None = None,
                  normals: np.ndarray | None = None) -> Shape:
    """Planar, height field or volumetric (module docstring); ``centred [N, 3]`` has mean 0."""
    s, axes = principal_axes(centred)
    flat = float(s[2] / s[0]) if s[0] > 0 else 0.0
    least = axes[:, 2]
    if flat <= PLANAR_RATIO:
        return Shape("planar", orient_axis(least, viewpoint, normals), "plane normal", flat, {},
                     f"planar: thickness / width {flat:.2g} <= {PLANAR_RATIO:g}")
    cands = [("least-variance axis", least)]
    if abs(abs(least[2]) - 1.0) > 1e-6:
        cands.append(("z axis", np.array([0.0, 0.0, 1.0])))
    folded = {name: fold_fraction(centred, a, spacing) for name, a in cands}
    # z ("up", the axis of terrain data and of most scans) wins near-ties
    best = min(folded, key=lambda n: folded[n] - (0.01 if n == "z axis" else 0.0))
    axis = orient_axis(dict(cands)[best], viewpoint, normals)
    if folded[best] <= MAX_FOLDED:
        return Shape("height_field", axis, best, flat, folded,
                     f"2.5-D height field along the {best}: {100 * folded[best]:.1f}% of grid cells fold "
                     f"(<= {100 * MAX_FOLDED:.0f}%)")
    return Shape("volumetric", axis, best, flat, folded,
                 f"3-D shape: {100 * folded[best]:.1f}% of grid cells fold along the {best} "
                 f"(> {100 * MAX_FOLDED:.0f}%), thickness / width {flat:.2g}")


def delaunay_memory(n: int) -> int:
    """Bytes `delaunay_faces` needs for ``n`` points (an estimate; see DELAUNAY_BYTES_PER_POINT)."""
    return int(n) * DELAUNAY_BYTES_PER_POINT


def delaunay_faces(centred: np.ndarray, axis: np.ndarray, *, max_edge: float | None = None,
                   max_circumradius: float | None = None, info: dict[str, Any] | None = None,
                   progress: ProgressFn | None = None) -> np.ndarray:
    """Triangles ``[F, 3]`` int64 of the 2-D Delaunay triangulation of ``centred [N, 3]`` projected
    along unit ``axis``, wound counter-clockwise seen from ``axis``.

    max_edge: drop triangles with a 3-D edge longer than this (None/0: keep all).
    max_circumradius: drop triangles whose circumradius is this or more (a 2-D alpha shape).
    """
    from scipy.spatial import Delaunay, QhullError

    info = {} if info is None else info
    u, v = plane_basis(axis)
    uv = np.stack([centred @ u, centred @ v], 1)
    tick(progress, 0, 3, f"delaunay: triangulating {len(uv)} points")
    try:
        tri = Delaunay(uv).simplices.astype(np.int64)
    except QhullError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GeometryError(f"2-D Delaunay failed on {len(uv)} projected points ({first})") from None
    tick(progress, 1, 3, "delaunay: edge limit")
    a, b, c = uv[tri[:, 0]], uv[tri[:, 1]], uv[tri[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = cross < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    area2 = np.abs(cross)
    # Qhull's triangulated output can hold zero-area slivers on cocircular (gridded) input
    scale = float(np.ptp(uv, axis=0).max()) or 1.0
    keep = area2 > 1e-12 * scale * scale
    drop_edge = np.zeros(len(tri), dtype=bool)
    if max_edge:
        p = centred
        longest2 = np.zeros(len(tri))
        for i in range(3):
            d = p[tri[:, i]] - p[tri[:, (i + 1) % 3]]
            np.maximum(longest2, np.einsum("ij,ij->i", d, d), out=longest2)
        drop_edge = longest2 > float(max_edge) ** 2
    drop_alpha = np.zeros(len(tri), dtype=bool)
    if max_circumradius:
        la = np.linalg.norm(b - c, axis=1)
        lb = np.linalg.norm(c - a, axis=1)
        lc = np.linalg.norm(a - b, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            radius = la * lb * lc / (2.0 * area2)  # abc / (4 area), area2 = 2 area
        drop_alpha = ~(radius < float(max_circumradius))
    info.update(delaunay_triangles=int(len(tri)), degenerate_removed=int((~keep).sum()),
                long_edge_removed=int((keep & drop_edge).sum()))
    if max_circumradius:
        info["alpha_removed"] = int((keep & ~drop_edge & drop_alpha).sum())
    tri = tri[keep & ~drop_edge & ~drop_alpha]
    tick(progress, 2, 3, "delaunay: normals")
    info["unreferenced_points"] = int(len(centred) - len(np.unique(tri))) if len(tri) else int(len(centred))
    return tri


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals ``[V, 3]``; vertices no face uses get ``fallback [3]``."""
    v = np.asarray(vertices, dtype=np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v)
    for i in range(3):
        np.add.at(n, faces[:, i], fn)
    norm = np.linalg.norm(n, axis=1)
    out = np.tile(np.asarray(fallback, dtype=np.float64), (len(v), 1))
    ok = norm > 0
    out[ok] = n[ok] / norm[ok, None]
    return out


def warn_folds(shape: Shape, method: str) -> str | None:
    """A Facet3DWarning (and its text) when a 2-D method is asked for on a cloud that folds."""
    if shape.kind != "volumetric":
        return None
    msg = (f"--method {method}: the cloud is not a height field ({shape.reason}); the 2.5-D mesh joins "
           "its layers (poisson, the default for such shapes, follows them)")
    warnings.warn(msg, Facet3DWarning, stacklevel=3)
    return msg

