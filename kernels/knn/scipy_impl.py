"""knn on CPU with scipy's cKDTree: O((M + N) log N) instead of the reference's O(M * N).

The tree orders neighbours by float64 distance and breaks ties its own way, so we ask it for a
few extra neighbours, recompute the float32 distances exactly as the reference does, and keep the
first k by (distance, index). A row whose fetched neighbours do not clearly extend past its k-th
distance (a tie or rounding could hide a better-ranked point beyond them) is recomputed with the
torch reference, so the result always equals `reference.knn_torch`. Distances are recomputed in
torch from the indices, so gradients flow to `query` and `points`.
"""

from __future__ import annotations

import numpy as np
import torch

from facet3d.kernels.knn.reference import dists_from_idx, finalize, knn_torch

EXTRA = 8  # extra neighbours fetched to resolve ties at the k-th place
REL_MARGIN = 4e-6  # float32 sum-of-squares relative rounding bound (~8 ulp) with headroom


def knn_scipy(query: torch.Tensor, points: torch.Tensor, k: int,
              query_lengths: torch.Tensor | None = None, point_lengths: torch.Tensor | None = None,
              workers: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """knn with a KD-tree per batch element; same contract as `reference.knn_torch` (CPU only).

    query: Tensor  # [B, M, 3]
    points: Tensor # [B, N, 3]
    returns (dists [B, M, k], idx [B, M, k] int64)
    """
    from scipy.spatial import cKDTree

    B, M, _ = query.shape
    N = points.shape[1]
    q_np = query.detach().cpu().numpy()
    p_np = points.detach().cpu().numpy()
    idx = torch.full((B, M, k), -1, dtype=torch.int64)
    for b in range(B):
        m = M if query_lengths is None else int(query_lengths[b])
        n = N if point_lengths is None else int(point_lengths[b])
        if m == 0:
            continue
        kk = min(k + EXTRA, n)
        _, cand = cKDTree(p_np[b, :n]).query(q_np[b, :m], k=kk, workers=workers)
        cand = torch.from_numpy(np.asarray(cand, dtype=np.int64).reshape(m, kk))
        qb, pb = query.detach()[b:b + 1, :m].cpu(), points.detach()[b:b + 1].cpu()
        d = dists_from_idx(qb, pb, cand[None])[0]  # [m, kk] float32 exactly as the reference
        # order the candidates by (distance, index): index sort, then stable distance sort
        cand, by_index = torch.sort(cand, dim=1)
        d = torch.gather(d, 1, by_index)
        order = torch.sort(d, dim=1, stable=True).indices
        cand, d = torch.gather(cand, 1, order), torch.gather(d, 1, order)
        rows = idx[b, :m]
        rows.copy_(cand[:, :k])
        if kk < n:
            # Unfetched points are (in exact arithmetic) no closer than the farthest fetched one.
            # Keep a row only if that farthest one is clearly beyond its k-th distance.
            kth, far = d[:, k - 1], d[:, -1]
            unsure = far <= kth + kth.abs() * REL_MARGIN + torch.finfo(d.dtype).tiny
            if bool(unsure.any()):
                sub = unsure.nonzero()[:, 0]
                _, ridx = knn_torch(qb[:, sub], pb, k, point_lengths=torch.tensor([n]))
                rows[sub] = ridx[0]
    idx = idx.to(query.device)
    return finalize(query, points, idx, query_lengths)


# Measured on a 2-core CPU: a KD-tree (build + query per cloud) only beats the chunked brute force
# once clouds are large and k is a small fraction of them; below that the reference is faster.
MIN_PAIRS = 300_000


def advise(query: torch.Tensor, points: torch.Tensor, k: int, *args, **kwargs) -> list[str]:
    """Automatic dispatch passes this backend over where brute force is faster."""
    M, N = query.shape[1], points.shape[1]
    reasons = []
    if M * N < MIN_PAIRS:
        reasons.append(f"small problem ({M}x{N} pairs < {MIN_PAIRS}): brute force is faster")
    if 8 * k > N:
        reasons.append(f"k={k} is over 1/8 of the {N} points: brute force is faster")
    return reasons
