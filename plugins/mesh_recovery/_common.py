"""Small helpers shared by the surface-recovery modules (imported lazily: numpy/scipy only at import).

* `check_points`: the input validation every point -> mesh method needs (finite, enough points,
  not on one line; genuinely 3-D unless the method accepts a plane), raising one-line `GeometryError`s;
* `principal_axes`: singular values and axes of the centred cloud (flatness, best-fit plane);
* `point_spacing`: the median distance to the nearest other point, the length scale from which
  every default (trim distance, ball radii, alpha) is derived;
* `quiet_open3d`: silence open3d's own logging while it runs (our messages go through rich).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from facet3d.core.errors import GeometryError

MIN_POINTS = 10
# relative singular-value floor below which a cloud counts as flat (or a line): float noise on
# exactly planar data is ~1e-16, real thin structures (a sheet of paper) are >= 1e-4
FLAT_RATIO = 1e-6


def check_points(points: np.ndarray, what: str = "points", min_points: int = MIN_POINTS,
                 allow_flat: bool = False) -> np.ndarray:
    """``points [N, 3]`` as contiguous float64, or a `GeometryError` naming what is wrong.

    allow_flat: accept points lying in one plane (2-D methods: Delaunay, ball pivoting, 2-D alpha
    shapes); points on one line are refused either way.
    """
    p = np.ascontiguousarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise GeometryError(f"{what} must be [N, 3], got {p.shape}")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        raise GeometryError(f"{int(bad.sum())} of {len(p)} {what} have NaN or infinite coordinates "
                            "(drop them first, e.g. `facet3d pipeline ... drop-nonfinite`)")
    uniq = len(np.unique(p, axis=0)) if len(p) < 10 * min_points else len(p)
    if len(p) < min_points or uniq < min_points:
        raise GeometryError(f"too few {what} to build a surface: {min(len(p), uniq)} distinct (need at least {min_points})")
    s, _ = principal_axes(p - p.mean(axis=0))
    if s[1] <= FLAT_RATIO * s[0]:
        raise GeometryError(f"all {len(p)} {what} lie on one line: no surface can be built from them")
    if s[2] <= FLAT_RATIO * s[0] and not allow_flat:
        raise GeometryError(f"all {len(p)} {what} lie in one plane: volumetric reconstruction needs 3-D extent")
    return p


def principal_axes(centred: np.ndarray, sample: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """(singular values ``[3]`` descending, axes ``[3, 3]`` as columns) of ``centred [N, 3]``.

    A random subset of ``sample`` points bounds the SVD cost on millions of points (flatness and the
    best-fit plane are global properties). Callers centre first: on LAS coordinates (~1e6) the
    uncentred covariance would lose the small axis to rounding.
    """
    c = centred
    if len(c) > sample:
        c = c[np.random.default_rng(0).choice(len(c), sample, replace=False)]
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    return s, vt.T


def point_spacing(points: np.ndarray, sample: int = 20_000) -> float:
    """Median distance from a point of ``points [N, 3]`` (N >= 2) to its nearest other point
    (over a random subset of ``sample`` queries)."""
    from facet3d.core.ops.neighbors import knn_points

    q = points if len(points) <= sample else points[np.random.default_rng(0).choice(len(points), sample, replace=False)]
    d, _ = knn_points(q, points, 2)  # [S, 2]: the point itself (0), then its nearest other
    d = d[:, 1][d[:, 1] > 0]
    if not len(d):
        raise GeometryError("all points coincide: no length scale to build a surface at")
    return float(np.median(d))


def bbox_diagonal(points: np.ndarray) -> float:
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p.max(axis=0) - p.min(axis=0))) if len(p) else 0.0


@contextmanager
def quiet_open3d() -> Iterator[None]:
    """open3d at Error verbosity inside the block (its Info/Debug lines would break our one-line output)."""
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    level = o3d.utility.get_verbosity_level()
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    try:
        yield
    finally:
        o3d.utility.set_verbosity_level(level)
