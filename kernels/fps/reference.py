"""Farthest point sampling in pure PyTorch: the source of truth and the CPU path.

Conventions shared by every fps backend:

* squared distances computed as ``dx*dx + dy*dy + dz*dz``;
* each step takes the point with the largest distance to the samples so far; ties -> lowest index
  (so duplicated points are only picked once all other points are at distance 0);
* padded points (``n >= lengths[b]``) are never picked; ``n`` must not exceed any length;
* start ``"index0"`` (default) starts from point 0, ``"farthest_from_centroid"`` from the point
  farthest from the centroid of the valid points (ties -> lowest index), which makes the sample
  independent of point order and of rotations/translations of the cloud (up to rounding and ties).
"""

from __future__ import annotations

import torch

from facet3d.core.errors import UsageError

STARTS = ("index0", "farthest_from_centroid")


def start_indices(points: torch.Tensor, lengths: torch.Tensor, start: object) -> torch.Tensor:
    """Index of the first sample per batch element.

    points: Tensor  # [B, N, 3]
    lengths: Tensor # [B] int64
    start: None | "index0" | "farthest_from_centroid" | Tensor [B] of indices
    returns         # [B] int64
    """
    B, N, _ = points.shape
    if start is None or (isinstance(start, str) and start == "index0"):
        return torch.zeros(B, dtype=torch.int64, device=points.device)
    if isinstance(start, torch.Tensor):
        s = start.to(points.device, torch.int64).reshape(-1)
        if s.shape != (B,) or bool(((s < 0) | (s >= lengths)).any()):
            raise UsageError(f"start indices must be [{B}] within each cloud's length, got {start.tolist()}")
        return s
    if start != "farthest_from_centroid":
        raise UsageError(f"start must be one of {STARTS}, a [B] index tensor or None, got {start!r}")
    with torch.no_grad():
        valid = torch.arange(N, device=points.device)[None, :] < lengths[:, None]  # [B, N]
        p = points.detach()
        centroid = (p * valid[..., None]).sum(1) / lengths.clamp_min(1)[:, None].to(p.dtype)  # [B, 3]
        diff = p - centroid[:, None, :]
        d = diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2
        d = d.masked_fill(~valid, -1.0)
        return torch.argmax(d, dim=1)  # first maximum -> lowest index


def fps_torch(points: torch.Tensor, n: int, lengths: torch.Tensor, start_idx: torch.Tensor,
              ordered: bool = True) -> torch.Tensor:
    """Reference FPS: one step per sample, vectorised over the batch.

    points: Tensor    # [B, N, 3]
    n: int            # samples per batch element (<= every length)
    lengths: Tensor   # [B] int64 valid points
    start_idx: Tensor # [B] int64 first sample
    ordered: bool     # accepted for the common signature; this backend always returns sampling order
    returns           # [B, n] int64
    """
    B, N, _ = points.shape
    p = points.detach()
    valid = torch.arange(N, device=p.device)[None, :] < lengths[:, None]
    # -1 on padded points: below any real distance (>= 0), so argmax never picks them.
    mind = torch.full((B, N), float("inf"), dtype=p.dtype, device=p.device).masked_fill(~valid, -1.0)
    out = torch.empty((B, n), dtype=torch.int64, device=p.device)
    cur = start_idx.to(torch.int64)
    rows = torch.arange(B, device=p.device)
    for i in range(n):
        out[:, i] = cur
        diff = p - p[rows, cur][:, None, :]
        d = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
        mind = torch.minimum(mind, d.masked_fill(~valid, -1.0))
        cur = torch.argmax(mind, dim=1)  # documented to return the first maximal index
    return out
