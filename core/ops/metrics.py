"""Point-set distances: Chamfer distance, F-score, accuracy and completeness.

Definitions (x = prediction, y = reference; d(p, S) = Euclidean distance to the nearest point of S):

* Chamfer = the average of the two directional means (`chamfer_from_means`), the definition of
  mesh-reconstruction benchmarks (Occupancy Networks / ConvONet, DTU-style evaluation) and of
  ``facet3d compare``:

  - ``norm="l1"``: Chamfer-L1 = (mean_x d(x, y) + mean_y d(y, x)) / 2 = (accuracy + completeness) / 2;
  - ``norm="l2"``: Chamfer-L2 = (mean_x d(x, y)^2 + mean_y d(y, x)^2) / 2 (half of pytorch3d's
    ``chamfer_distance``, which sums the two squared terms).

  Both directional means are returned too.
* ``fscore(x, y, tau)``: precision = fraction of x with d(x, y) < tau, recall = fraction of y
  with d(y, x) < tau, F = 2 P R / (P + R) (0 when both are 0) - Tanks and Temples' definition;
  accuracy = mean_x d(x, y), completeness = mean_y d(y, x).

Inputs: ``[N, 3]`` or padded ``[B, N, 3]`` with optional ``lengths [B]``, `Pointclouds`, numpy or
torch.  Results are torch tensors ``[B]`` (or scalars after reduction).

Nearest neighbours come from `facet3d.core.ops.neighbors` (the kernels' knn dispatcher: Triton on
GPU, a KD-tree for large CPU clouds, brute force for small ones); ``backend`` names a knn backend
("torch", "scipy", "triton") to force one.  Distances are recomputed from the found neighbours,
so gradients flow to both clouds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError
from .neighbors import knn_points, safe_sqrt

__all__ = ["nearest_neighbor_distances", "chamfer_distance", "chamfer_from_means", "ChamferResult",
           "fscore", "FScoreResult"]


def _as_batch(x, lengths=None) -> tuple[Tensor, Tensor]:
    """-> (padded ``[B, N, 3]`` float tensor, lengths ``[B]`` int64)."""
    from ..structures.pointclouds import Pointclouds
    if isinstance(x, Pointclouds):
        return x.points_padded(), x.num_points_per_cloud()
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if not t.is_floating_point():
        t = t.double()
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[-1] != 3:
        raise GeometryError(f"points must be [N, 3] or [B, N, 3], got {tuple(t.shape)}")
    if lengths is None:
        lengths = torch.full((t.shape[0],), t.shape[1], dtype=torch.int64, device=t.device)
    else:
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device=t.device)
    return t, lengths


def _pair(a, al, b, bl) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both clouds as padded batches of one common float dtype (float32 + float64 -> float64)."""
    ap, al = _as_batch(a, al)
    bp, bl = _as_batch(b, bl)
    dt = torch.promote_types(ap.dtype, bp.dtype)
    if ap.shape[0] != bp.shape[0]:
        raise GeometryError(f"batch sizes differ: {ap.shape[0]} vs {bp.shape[0]}")
    return ap.to(dt), al, bp.to(device=ap.device, dtype=dt), bl.to(ap.device)


def nearest_neighbor_distances(x, y, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """For each point of x: Euclidean distance to, and index of, its nearest point in y.

    x: array | Tensor  # [N, 3]
    y: array | Tensor  # [M, 3], M >= 1
    backend: str       # knn backend by name (else the best for the inputs)
    returns (dist [N], idx [N] int64) as torch tensors; dist is differentiable w.r.t. x and y
    """
    x = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    y = y if isinstance(y, Tensor) else torch.as_tensor(np.asarray(y))
    if len(y) == 0:
        raise GeometryError("nearest neighbour search needs a non-empty reference set")
    d, idx = knn_points(x, y, 1, backend=backend)
    return d[:, 0], idx[:, 0]


def _directional(x: Tensor, xl: Tensor, y: Tensor, yl: Tensor, backend: str | None) -> list[Tensor]:
    """Per batch element, squared nearest-neighbour distances ``[n_b]`` from x to y."""
    out = []
    for b in range(x.shape[0]):
        nx, ny = int(xl[b]), int(yl[b])
        if nx == 0 or ny == 0:
            raise GeometryError(f"cloud {b} is empty ({nx} vs {ny} points): distances are undefined")
        xb, yb = x[b, :nx], y[b, :ny]
        if not bool(torch.isfinite(xb).all() and torch.isfinite(yb).all()):
            raise GeometryError(f"cloud {b} has non-finite coordinates")
        # squared distance from the difference itself: smooth gradients even at d = 0
        out.append(knn_points(xb, yb, 1, squared=True, backend=backend)[0][:, 0])
    return out


def _reduce(v: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    if reduction == "none":
        return v
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def chamfer_from_means(x_to_y, y_to_x):
    """Chamfer from its two directional means: ``(x_to_y + y_to_x) / 2`` (numbers, numpy or torch).

    The one definition behind `chamfer_distance` and ``facet3d compare``: with Euclidean means it
    is Chamfer-L1 = (accuracy + completeness) / 2, with squared ones Chamfer-L2.
    """
    return (x_to_y + y_to_x) / 2


class ChamferResult(NamedTuple):
    chamfer: Tensor   # (x_to_y + y_to_x) / 2, [B] or reduced
    x_to_y: Tensor    # mean over x of d(x, y) (squared for l2)
    y_to_x: Tensor    # mean over y of d(y, x) (squared for l2)


def chamfer_distance(x, y, *, x_lengths=None, y_lengths=None, norm: str = "l2", reduction: str = "mean",
                     backend: str | None = None) -> ChamferResult:
    """Chamfer distance between clouds x and y (see the module docstring).

    x: [B, N, 3] | [N, 3] | Pointclouds; y: [B, M, 3] | [M, 3] | Pointclouds (lengths for padding)
    norm: ``"l2"``: Chamfer-L2 = (mean_x d^2 + mean_y d^2) / 2, squared Euclidean;
          ``"l1"``: Chamfer-L1 = (mean_x d + mean_y d) / 2, Euclidean (unsquared).
    reduction: over the batch - ``"mean"``, ``"sum"`` or ``"none"`` (``[B]``).
    backend: a knn backend by name ("torch", "scipy", "triton"), else the best for the inputs.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    xp, xl, yp, yl = _pair(x, x_lengths, y, y_lengths)
    dx = _directional(xp, xl, yp, yl, backend)
    dy = _directional(yp, yl, xp, xl, backend)
    f = (lambda d2: d2.mean()) if norm == "l2" else (lambda d2: safe_sqrt(d2).mean())
    cx = torch.stack([f(d) for d in dx])
    cy = torch.stack([f(d) for d in dy])
    return ChamferResult(_reduce(chamfer_from_means(cx, cy), reduction), _reduce(cx, reduction), _reduce(cy, reduction))


class FScoreResult(NamedTuple):
    precision: Tensor     # [B] or [B, T] for several thresholds
    recall: Tensor
    fscore: Tensor
    accuracy: Tensor      # [B] mean distance prediction -> reference
    completeness: Tensor  # [B] mean distance reference -> prediction


def fscore(pred, gt, threshold, *, pred_lengths=None, gt_lengths=None, backend: str | None = None) -> FScoreResult:
    """Precision / recall / F-score at ``threshold`` (a float, or a sequence -> last dim ``[T]``),
    plus accuracy and completeness, per batch element (unreduced, ``[B]``)."""
    pp, pl, gp, gl = _pair(pred, pred_lengths, gt, gt_lengths)
    scalar = np.ndim(threshold) == 0
    tau = torch.as_tensor(np.atleast_1d(np.asarray(threshold, dtype=np.float64)), device=pp.device)
    if not bool((tau > 0).all()):
        raise GeometryError("F-score thresholds must be positive")
    dp = [safe_sqrt(d2) for d2 in _directional(pp, pl, gp, gl, backend)]
    dg = [safe_sqrt(d2) for d2 in _directional(gp, gl, pp, pl, backend)]
    prec = torch.stack([(d.detach().double()[:, None] < tau).double().mean(0) for d in dp])
    rec = torch.stack([(d.detach().double()[:, None] < tau).double().mean(0) for d in dg])
    denom = prec + rec
    f = torch.where(denom > 0, 2 * prec * rec / torch.where(denom > 0, denom, torch.ones_like(denom)),
                    torch.zeros_like(denom))
    if scalar:
        prec, rec, f = prec[:, 0], rec[:, 0], f[:, 0]
    acc = torch.stack([d.mean() for d in dp])
    comp = torch.stack([d.mean() for d in dg])
    return FScoreResult(prec, rec, f, acc, comp)
