"""Farthest point sampling: `farthest_point_sample(points, n)` through the backend dispatcher.

Backends (`BACKENDS` below): ``triton`` (CUDA, float32), ``open3d`` (CPU, only for
``ordered=False``: the same set, sorted by index) and ``torch`` (reference). See `reference` for
the conventions (ties -> lowest index).
"""

from __future__ import annotations

import torch

from facet3d.core.errors import UsageError
from facet3d.core.specs import Backend
from facet3d.kernels._util import check_points, lengths_or_full, need_at_least
from facet3d.kernels.fps.reference import start_indices

__all__ = ["farthest_point_sample", "BACKENDS"]

_M = "facet3d.kernels.fps"

# The dispatcher's records for this op. Priorities: triton (CUDA) 100 > open3d (CPU, ordered=False
# only) 50 > torch reference 0. Implementations are "module:attr" strings: resolved on first use.
BACKENDS = [
    Backend(op="fps", name="triton", impl=f"{_M}.triton_impl:fps_triton", priority=100, devices=("cuda",),
            dtypes=("float32",), requires=("triton",), check=f"{_M}.triton_impl:check", interpreter_ok=True),
    Backend(op="fps", name="open3d", impl=f"{_M}.open3d_impl:fps_open3d", priority=50, devices=("cpu",),
            requires=("open3d",), check=f"{_M}.open3d_impl:check"),
    Backend(op="fps", name="torch", impl=f"{_M}.reference:fps_torch", priority=0),
]


def farthest_point_sample(points: torch.Tensor, n: int, lengths: torch.Tensor | None = None,
                          start: object = None, ordered: bool = True, backend: str | None = None) -> torch.Tensor:
    """Indices of `n` farthest-point samples per batch element.

    points: Tensor   # [B, N, 3]
    n: int           # samples per batch element; every cloud needs >= n valid points
    lengths: Tensor  # [B] valid points per batch element (padded batches), None = all N
    start: None | "index0" | "farthest_from_centroid" | Tensor [B]
        first sample: point 0 (default), the point farthest from the centroid (ties -> lowest
        index; independent of point order and rigid motions), or given indices
    ordered: bool    # False: the caller only needs the set (e.g. its use is permutation-invariant),
                     # which lets the CPU use open3d's C++ loop; rows then come sorted by index
    backend: str     # force "torch" / "triton" / "open3d" (else FACET3D_BACKEND_FPS or best)
    returns: Tensor  # [B, n] int64, sample order (ordered=True); not differentiable (indices)
    """
    from facet3d.kernels.dispatch import call

    check_points("points", points)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UsageError(f"n must be a non-negative int, got {n!r}")
    B, N = points.shape[0], points.shape[1]
    lens = lengths_or_full(lengths, B, N, points.device, "lengths")
    need_at_least(lens, max(n, 1), f"farthest point sampling of {n} points")
    start_idx = start_indices(points, lens, start)
    return call("fps", points, n, lens, start_idx, ordered=ordered, backend=backend)
