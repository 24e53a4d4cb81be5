"""k-nearest neighbours: `knn(query, points, k)` through the backend dispatcher.

Backends (`BACKENDS` below): ``triton`` (CUDA, float32), ``scipy`` (CPU KD-tree),
``torch`` (reference, anywhere). All return identical indices; see `reference` for the contract
(squared distances, ties -> lower index, padded rows -> idx -1 / dist 0).
"""

from __future__ import annotations

import torch

from facet3d.core.errors import UsageError
from facet3d.core.specs import Backend
from facet3d.kernels._util import check_points, lengths_or_full, need_at_least

__all__ = ["knn", "BACKENDS"]

_M = "facet3d.kernels.knn"

# The dispatcher's records for this op. Priorities: triton (CUDA) 100 > scipy (CPU KD-tree, large
# clouds) 50 > torch reference 0. Implementations are "module:attr" strings: resolved on first use.
BACKENDS = [
    Backend(op="knn", name="triton", impl=f"{_M}.triton_impl:knn_triton", priority=100, devices=("cuda",),
            dtypes=("float32",), requires=("triton",), check=f"{_M}.triton_impl:check", interpreter_ok=True),
    Backend(op="knn", name="scipy", impl=f"{_M}.scipy_impl:knn_scipy", priority=50, devices=("cpu",),
            dtypes=("float32", "float64"), requires=("scipy",), advise=f"{_M}.scipy_impl:advise"),
    Backend(op="knn", name="torch", impl=f"{_M}.reference:knn_torch", priority=0),
]


def knn(query: torch.Tensor, points: torch.Tensor, k: int,
        query_lengths: torch.Tensor | None = None, point_lengths: torch.Tensor | None = None,
        backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest `points` of every query point.

    query: Tensor          # [B, M, 3]
    points: Tensor         # [B, N, 3], same dtype and device as query
    k: int                 # neighbours per query; every point cloud needs >= k valid points
    query_lengths: Tensor  # [B] valid queries per batch element (padded batches), None = all M
    point_lengths: Tensor  # [B] valid points per batch element, None = all N
    backend: str           # force "torch" / "scipy" / "triton" (else FACET3D_BACKEND_KNN or best)
    returns (dists, idx):
        dists: Tensor      # [B, M, k] squared distances, ascending; differentiable
        idx: Tensor        # [B, M, k] int64 point indices; ties -> lower index; -1 on padded rows
    Raises UsageError for bad shapes/arguments, GeometryError when a cloud has < k points.
    """
    from facet3d.kernels.dispatch import call

    check_points("query", query)
    check_points("points", points)
    if query.shape[0] != points.shape[0]:
        raise UsageError(f"query and points batch sizes differ: {query.shape[0]} vs {points.shape[0]}")
    if query.dtype != points.dtype or query.device != points.device:
        raise UsageError(f"query ({query.dtype}, {query.device}) and points ({points.dtype}, {points.device}) "
                         "must share dtype and device")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"k must be a positive int, got {k!r}")
    B, M, N = query.shape[0], query.shape[1], points.shape[1]
    plen = lengths_or_full(point_lengths, B, N, points.device, "point_lengths")
    need_at_least(plen, k, f"knn with k={k}")
    qlen = None if query_lengths is None else lengths_or_full(query_lengths, B, M, query.device, "query_lengths")
    plen_arg = None if point_lengths is None else plen
    return call("knn", query, points, k, qlen, plen_arg, backend=backend)
