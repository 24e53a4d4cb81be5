"""A kernel backend for facet3d's `knn` op in plain numpy (brute force, CPU).

Imported only when the backend is used. It follows the contract of facet3d.kernels.knn.reference
(squared distances summed as dx*dx + dy*dy + dz*dz in the input dtype, rows ordered by
(distance, index)), so its output equals the torch reference exactly.
"""

from __future__ import annotations

import numpy as np
import torch


def check(query, points, k, query_lengths=None, point_lengths=None) -> list[str]:
    """Reasons to refuse these inputs ([] = accept): this backend does not do padded batches."""
    if query_lengths is not None or point_lengths is not None:
        return ["padded batches (query_lengths / point_lengths) are not supported"]
    return []


def knn(query, points, k, query_lengths=None, point_lengths=None):
    """(dists [B, M, k], idx [B, M, k] int64) of the k nearest points of every query point."""
    q = query.detach().cpu().numpy()
    p = points.detach().cpu().numpy()
    d = None
    for c in range(3):  # the reference's summation order, so distances are bit-identical
        t = q[:, :, None, c] - p[:, None, :, c]
        t = t * t
        d = t if d is None else d + t
    idx = np.argsort(d, axis=-1, kind="stable")[..., :k]  # stable: equal distances keep the lower index
    dists = np.take_along_axis(d, idx, axis=-1)
    return torch.from_numpy(dists).to(query.device), torch.from_numpy(idx.astype(np.int64)).to(query.device)
