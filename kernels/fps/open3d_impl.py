"""Farthest point sampling on CPU through open3d's C++ loop (unordered result).

open3d returns the chosen points in index order, not in sampling order, so this backend only
serves callers that need the *set* (``ordered=False``, e.g. RISurConv's centres, whose use is
permutation-invariant); its `check` refuses otherwise. The set equals the reference's: the same
greedy rule, start and lowest-index tie-break, with distances in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from facet3d.kernels.fps.reference import fps_torch


def check(points: torch.Tensor, n: int, lengths: torch.Tensor, start_idx: torch.Tensor, ordered: bool = True) -> list[str]:
    return ["returns the samples in index order, not sampling order (needs ordered=False)"] if ordered else []


def fps_open3d(points: torch.Tensor, n: int, lengths: torch.Tensor, start_idx: torch.Tensor,
               ordered: bool = False) -> torch.Tensor:
    """Same contract as `reference.fps_torch`, except each row of the result is sorted by index.

    points: Tensor    # [B, N, 3] on CPU
    lengths: Tensor   # [B] int64
    start_idx: Tensor # [B] int64
    returns           # [B, n] int64, ascending
    """
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    B = points.shape[0]
    out = torch.empty((B, n), dtype=torch.int64)
    p = points.detach().to(torch.float64).numpy()
    for b in range(B):
        m = int(lengths[b])
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p[b, :m]))
        # Carry each point's index through open3d in the (float64) colour channel: exact for m < 2**52.
        tag = np.zeros((m, 3))
        tag[:, 0] = np.arange(m)
        cloud.colors = o3d.utility.Vector3dVector(tag)
        picked = cloud.farthest_point_down_sample(n, start_index=int(start_idx[b]))
        if len(picked.points) != n:
            # open3d stops early when fewer than n points are distinct (duplicates, augmentation
            # dropout); the reference then keeps picking duplicates at distance 0, ties -> lowest index.
            row = fps_torch(points[b:b + 1, :m].detach().cpu(), n, lengths[b:b + 1].cpu(), start_idx[b:b + 1].cpu())
            out[b] = row[0].sort().values
            continue
        out[b] = torch.from_numpy(np.rint(np.asarray(picked.colors)[:, 0]).astype(np.int64))
    return out.to(points.device)
