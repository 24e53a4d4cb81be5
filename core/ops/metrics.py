"""Point-set distances: Chamfer distance, F-score, accuracy and completeness.

Definitions (x = prediction, y = reference; d(p, S) = Euclidean distance to the nearest point of S):

* ``chamfer_distance(x, y, norm="l2")``: mean_x d(x, y)^2 + mean_y d(y, x)^2 (pytorch3d's
  default, squared distances); ``norm="l1"``: mean_x d(x, y) + mean_y d(y, x) with unsquared
  distances (the "Chamfer-L1" of Occupancy Networks, which reports half of this sum).
  Both directions are returned separately too.
* ``fscore(x, y, tau)``: precision = fraction of x with d(x, y) < tau, recall = fraction of y
  with d(y, x) < tau, F = 2 P R / (P + R) (0 when both are 0) - Tanks and Temples' definition;
  accuracy = mean_x d(x, y), completeness = mean_y d(y, x).

Inputs: ``[N, 3]`` or padded ``[B, N, 3]`` with optional ``lengths [B]``, `Pointclouds`, numpy or
torch.  Results are torch tensors ``[B]`` (or scalars after reduction).

Nearest neighbours: ``backend="torch"`` (``torch.cdist`` in chunks, any device), ``"kdtree"``
(scipy cKDTree on CPU; indices found in numpy, distances recomputed in torch so gradients
still flow), or ``"auto"``: torch while N * M is small or on GPU, KD-tree for large CPU inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError

__all__ = ["nearest_neighbor_distances", "chamfer_distance", "ChamferResult", "fscore", "FScoreResult"]

_AUTO_TORCH_MAX_PAIRS = 4_000_000  # above this (N * M) a CPU KD-tree beats dense cdist
_CHUNK_PAIRS = 16_000_000          # cdist block size, bounds memory at ~64 MB (float32)


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


def _nn_torch(x: Tensor, y: Tensor) -> Tensor:
    """Index into y ``[M]`` of the nearest neighbour of each row of x ``[N, 3]``."""
    step = max(1, _CHUNK_PAIRS // max(len(y), 1))
    return torch.cat([torch.cdist(x[i:i + step].detach(), y.detach()).argmin(dim=1)
                      for i in range(0, len(x), step)])


def _nn_kdtree(x: Tensor, y: Tensor) -> Tensor:
    from scipy.spatial import cKDTree
    xn = x.detach().cpu().double().numpy()
    yn = y.detach().cpu().double().numpy()
    _, idx = cKDTree(yn).query(xn, k=1, workers=-1)
    return torch.as_tensor(idx, dtype=torch.int64, device=x.device)


def _nn_index(x: Tensor, y: Tensor, backend: str) -> Tensor:
    if backend == "auto":
        backend = "torch" if (x.device.type != "cpu" or len(x) * len(y) <= _AUTO_TORCH_MAX_PAIRS) else "kdtree"
    if backend == "torch":
        return _nn_torch(x, y)
    if backend == "kdtree":
        return _nn_kdtree(x, y)
    raise ValueError(f"backend must be 'auto', 'torch' or 'kdtree', got {backend!r}")


def nearest_neighbor_distances(x, y, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """For each point of ``x [N, 3]``: Euclidean distance ``[N]`` to and index ``[N]`` of its nearest point in ``y [M, 3]``.

    The distance is recomputed exactly from the gathered neighbour (cdist's matmul formula
    loses precision for nearly equal points), and is differentiable w.r.t. x and y.
    """
    x = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    y = y if isinstance(y, Tensor) else torch.as_tensor(np.asarray(y))
    if len(y) == 0:
        raise GeometryError("nearest neighbour search needs a non-empty reference set")
    if len(x) == 0:
        return x.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=x.device)
    y = y.to(device=x.device, dtype=torch.promote_types(x.dtype, y.dtype))
    x = x.to(y.dtype)
    idx = _nn_index(x, y, backend)
    return (x - y[idx]).norm(dim=-1), idx


def _directional(x: Tensor, xl: Tensor, y: Tensor, yl: Tensor, backend: str) -> list[Tensor]:
    """Per batch element, squared nearest-neighbour distances ``[n_b]`` from x to y."""
    out = []
    for b in range(x.shape[0]):
        nx, ny = int(xl[b]), int(yl[b])
        if nx == 0 or ny == 0:
            raise GeometryError(f"cloud {b} is empty ({nx} vs {ny} points): distances are undefined")
        xb, yb = x[b, :nx], y[b, :ny]
        if not bool(torch.isfinite(xb).all() and torch.isfinite(yb).all()):
            raise GeometryError(f"cloud {b} has non-finite coordinates")
        idx = _nn_index(xb, yb, backend)
        # squared distance from the difference itself: smooth gradients even at d = 0
        out.append((xb - yb[idx]).square().sum(-1))
    return out


def _safe_sqrt(d2: Tensor) -> Tensor:
    """sqrt with a zero (not NaN) gradient at 0, where identical points meet."""
    pos = d2 > 0
    return torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


def _reduce(v: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    if reduction == "none":
        return v
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class ChamferResult(NamedTuple):
    chamfer: Tensor   # x_to_y + y_to_x, [B] or reduced
    x_to_y: Tensor    # mean over x of d(x, y) (squared for l2)
    y_to_x: Tensor    # mean over y of d(y, x) (squared for l2)


def chamfer_distance(x, y, *, x_lengths=None, y_lengths=None, norm: str = "l2", reduction: str = "mean",
                     backend: str = "auto") -> ChamferResult:
    """Chamfer distance between clouds ``x [B, N, 3]`` and ``y [B, M, 3]`` (see the module docstring).

    norm: ``"l2"`` (squared Euclidean) or ``"l1"`` (Euclidean, unsquared).
    reduction: over the batch - ``"mean"``, ``"sum"`` or ``"none"`` (``[B]``).
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    xp, xl, yp, yl = _pair(x, x_lengths, y, y_lengths)
    dx = _directional(xp, xl, yp, yl, backend)
    dy = _directional(yp, yl, xp, xl, backend)
    f = (lambda d2: d2.mean()) if norm == "l2" else (lambda d2: _safe_sqrt(d2).mean())
    cx = torch.stack([f(d) for d in dx])
    cy = torch.stack([f(d) for d in dy])
    return ChamferResult(_reduce(cx + cy, reduction), _reduce(cx, reduction), _reduce(cy, reduction))


class FScoreResult(NamedTuple):
    precision: Tensor     # [B] or [B, T] for several thresholds
    recall: Tensor
    fscore: Tensor
    accuracy: Tensor      # [B] mean distance prediction -> reference
    completeness: Tensor  # [B] mean distance reference -> prediction


def fscore(pred, gt, threshold, *, pred_lengths=None, gt_lengths=None, backend: str = "auto") -> FScoreResult:
    """Precision / recall / F-score at ``threshold`` (a float, or a sequence -> last dim ``[T]``),
    plus accuracy and completeness, per batch element (unreduced, ``[B]``)."""
    pp, pl, gp, gl = _pair(pred, pred_lengths, gt, gt_lengths)
    scalar = np.ndim(threshold) == 0
    tau = torch.as_tensor(np.atleast_1d(np.asarray(threshold, dtype=np.float64)), device=pp.device)
    if not bool((tau > 0).all()):
        raise GeometryError("F-score thresholds must be positive")
    dp = [_safe_sqrt(d2) for d2 in _directional(pp, pl, gp, gl, backend)]
    dg = [_safe_sqrt(d2) for d2 in _directional(gp, gl, pp, pl, backend)]
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
