"""Radius search: `pairs_within(points, radius)`, every pair closer than a radius, through the dispatcher.

Backends: ``scipy`` (CPU KD-tree ``query_pairs``, large clouds) and ``torch`` (chunked brute
force, anywhere; the source of truth). Both return identical pairs; see `reference` for the
contract. Unlike a k-capped ball query the number of pairs is unbounded (O(N^2) when every point
lies within `radius` of every other), which is what welding coincident vertices needs.
"""

from __future__ import annotations

import math

import torch

from facet3d.core.errors import UsageError
from facet3d.core.specs import Backend

__all__ = ["pairs_within", "BACKENDS"]

_R = "facet3d.kernels.radius"

# The dispatcher's records for this op (read by facet3d.kernels.dispatch, like every op's BACKENDS).
BACKENDS = [
    # radius(points [N, 3], radius) -> pairs [P, 2] int64
    Backend(op="radius", name="scipy", impl=f"{_R}.scipy_impl:pairs_within_scipy", priority=50,
            devices=("cpu",), dtypes=("float32", "float64"), requires=("scipy",),
            advise=f"{_R}.scipy_impl:advise"),
    Backend(op="radius", name="torch", impl=f"{_R}.reference:pairs_within_torch", priority=0),
]


def pairs_within(points: torch.Tensor, radius: float, backend: str | None = None) -> torch.Tensor:
    """Every pair of `points` at most `radius` apart.

    points: Tensor  # [N, 3] floating point
    radius: float   # >= 0; a pair counts when its squared distance <= radius**2 (in points' dtype)
    backend: str    # force "torch" / "scipy" (else FACET3D_BACKEND_RADIUS or best)
    returns Tensor  # [P, 2] int64 on points' device, i < j in each row, rows sorted by (i, j)
    """
    from facet3d.kernels.dispatch import call

    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[-1] != 3:
        raise UsageError(f"points must be a tensor [N, 3], got {list(getattr(points, 'shape', [type(points).__name__]))}")
    if not points.is_floating_point():
        raise UsageError(f"points must be a floating-point tensor, got {points.dtype}")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
        raise UsageError(f"radius must be a finite number >= 0, got {radius!r}")
    return call("radius", points, float(radius), backend=backend)
