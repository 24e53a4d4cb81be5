"""Neighbour searches for core and every plugin, on top of the kernels' dispatcher.

* `knn_points`: the k nearest points of each query (`facet3d.kernels.knn.knn`);
* `ball_query`: the same, keeping only neighbours closer than a radius (at most k);
* `pairs_within`: every pair of points at most a radius apart, unbounded in number
  (`facet3d.kernels.radius.pairs_within`).

So the best backend for the inputs serves every caller at once: Triton on a GPU, a KD-tree for
large CPU clouds, brute force for small ones; ``backend=`` or ``FACET3D_BACKEND_KNN`` /
``FACET3D_BACKEND_RADIUS`` pick one by name.

numpy in -> numpy out, torch in -> torch out (device kept; gradients flow through distances).
Floating dtypes are kept (float64 stays float64; mixed inputs are promoted), others become
float64. Distances are Euclidean unless ``squared=True``; rows are sorted by (distance, index),
so ties go to the lower point index and every backend gives the same answer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError

__all__ = ["knn_points", "ball_query", "pairs_within", "safe_sqrt"]


def _tensor(x, name: str) -> Tensor:
    """`x` as a tensor ``[N, 3]`` (numpy shares memory where it can)."""
    t = x if isinstance(x, Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if t.dim() != 2 or t.shape[-1] != 3:
        raise GeometryError(f"{name} must be [N, 3], got {list(t.shape)}")
    return t


def _pair(query, points) -> tuple[Tensor, Tensor, bool]:
    """-> (query ``[M, 3]``, points ``[N, 3]`` of one float dtype and device, numpy_out)."""
    numpy_out = not isinstance(query, Tensor) and not isinstance(points, Tensor)
    q, p = _tensor(query, "query"), _tensor(points, "points")
    dt = torch.promote_types(q.dtype, p.dtype)
    if not dt.is_floating_point:
        dt = torch.float64
    device = q.device if isinstance(query, Tensor) else p.device
    return q.to(device=device, dtype=dt), p.to(device=device, dtype=dt), numpy_out


def _out(numpy_out: bool, *ts: Tensor):
    return tuple(t.detach().cpu().numpy() for t in ts) if numpy_out else ts


def safe_sqrt(d2: Tensor) -> Tensor:
    """sqrt with a zero (not NaN) gradient at 0, where identical points meet."""
    pos = d2 > 0
    return torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


def knn_points(query, points, k: int, *, squared: bool = False, backend: str | None = None):
    """The k nearest `points` of every query point.

    query: array | Tensor   # [M, 3]
    points: array | Tensor  # [N, 3], N >= k (GeometryError otherwise)
    squared: bool           # return squared distances (cheaper; what the kernels compute)
    backend: str            # knn backend by name: "torch", "scipy", "triton" (else the best)
    returns (dists, idx):
        dists  # [M, k] Euclidean (squared if asked) distances, ascending; query's dtype
        idx    # [M, k] int64 indices into points; ties -> lower index
    """
    from facet3d.kernels.knn import knn

    q, p, numpy_out = _pair(query, points)
    d2, idx = knn(q[None], p[None], k, backend=backend)
    d = d2[0] if squared else safe_sqrt(d2[0])
    return _out(numpy_out, d, idx[0])


def ball_query(query, points, radius: float, k: int, *, squared: bool = False, backend: str | None = None):
    """The k nearest `points` of every query closer than `radius` (strictly, like cKDTree's
    ``distance_upper_bound``); fewer where fewer are that close.

    query: array | Tensor   # [M, 3]
    points: array | Tensor  # [N, 3], N >= k
    returns (dists, idx):
        dists  # [M, k] as `knn_points`, 0 where there is no neighbour
        idx    # [M, k] int64, -1 where there is no neighbour (those slots come last in a row)
    """
    q, p, numpy_out = _pair(query, points)
    d2, idx = knn_points(q, p, k, squared=True, backend=backend)
    far = d2 >= radius * radius
    d2, idx = d2.masked_fill(far, 0), idx.masked_fill(far, -1)
    return _out(numpy_out, d2 if squared else safe_sqrt(d2), idx)


def pairs_within(points, radius: float, *, backend: str | None = None):
    """Every pair of `points` at most `radius` apart (squared distance <= radius**2).

    points: array | Tensor  # [N, 3]
    backend: str            # radius backend by name: "torch", "scipy" (else the best)
    returns                 # [P, 2] int64, i < j in each row, rows sorted by (i, j)
    """
    from facet3d.kernels.radius import pairs_within as radius_pairs

    p = _tensor(points, "points")
    p = p if p.is_floating_point() else p.double()
    return _out(not isinstance(points, Tensor), radius_pairs(p, radius, backend=backend))[0]
