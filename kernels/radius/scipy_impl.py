"""Radius search on CPU with scipy's cKDTree ``query_pairs``: O(N log N + P) instead of O(N^2).

The tree measures in float64 and with its own rounding, so it is asked for the pairs within a
slightly larger radius, their squared distances are recomputed exactly as the reference does, and
only the pairs the reference keeps survive: the result always equals `reference.pairs_within_torch`.
"""

from __future__ import annotations

import numpy as np
import torch

# Relative slack on the radius: float32 sum-of-squares rounding (~1e-6 relative on r^2) with
# headroom; the absolute term covers squares that underflow to subnormals.
REL_SLACK = 1e-5


def pairs_within_scipy(points: torch.Tensor, radius: float) -> torch.Tensor:
    """Same contract as `reference.pairs_within_torch` (CPU only).

    points: Tensor  # [N, 3]
    returns Tensor  # [P, 2] int64, i < j, rows sorted by (i, j)
    """
    from scipy.spatial import cKDTree

    p = points.detach().cpu()
    slack = radius * REL_SLACK + 2 * float(np.sqrt(torch.finfo(p.dtype).tiny))
    cand = cKDTree(p.numpy()).query_pairs(radius + slack, output_type="ndarray")
    cand = np.asarray(cand, dtype=np.int64).reshape(-1, 2)  # scipy documents i < j in each pair
    cols = [np.ascontiguousarray(p[:, c].numpy()) for c in range(3)]
    d = None
    for col in cols:  # the reference's dx*dx + dy*dy + dz*dz, in p's dtype (IEEE: same values)
        t = np.take(col, cand[:, 0]) - np.take(col, cand[:, 1])
        t *= t
        d = t if d is None else np.add(d, t, out=d)
    n = max(1, len(p))
    keep = cand[d <= np.asarray(radius * radius, dtype=d.dtype)]
    key = keep[:, 0] * n + keep[:, 1]
    key.sort()  # (i, j) order: i * N + j < 2^63
    return torch.from_numpy(np.stack([key // n, key % n], 1)).to(points.device)


# Below this many point pairs the chunked brute force beats building a tree (measured, 2 cores).
MIN_PAIRS = 300_000


def advise(points: torch.Tensor, radius: float, *args, **kwargs) -> list[str]:
    """Automatic dispatch passes this backend over where brute force is faster."""
    N = points.shape[0]
    if N * N < MIN_PAIRS:
        return [f"small problem ({N}x{N} pairs < {MIN_PAIRS}): brute force is faster"]
    return []
