"""Radius search in pure PyTorch: the source of truth and the fallback on any device.

Contract shared by every backend (and checked by the tests):

* a pair (i, j) is returned when the squared distance, computed in the points' dtype as
  ``dx*dx + dy*dy + dz*dz`` (as knn's `sq_dists`), is ``<= radius**2`` rounded to that dtype;
* each pair once, with ``i < j``; rows sorted by ``(i, j)``; int64 on the points' device;
* non-finite coordinates are not supported.
"""

from __future__ import annotations

import torch

from facet3d.kernels.knn.reference import CHUNK_ELEMS, CHUNK_ELEMS_CUDA, sq_dists


def pairs_within_torch(points: torch.Tensor, radius: float, chunk_elems: int | None = None) -> torch.Tensor:
    """Brute force over row chunks, so memory stays ~``chunk_elems`` distances (plus the output).

    points: Tensor  # [N, 3]
    returns Tensor  # [P, 2] int64, see the module docstring
    """
    p = points.detach()
    N = p.shape[0]
    if chunk_elems is None:
        chunk_elems = CHUNK_ELEMS_CUDA if p.device.type == "cuda" else CHUNK_ELEMS
    chunk = max(1, chunk_elems // max(1, N))
    r2 = torch.tensor(radius * radius, dtype=p.dtype, device=p.device)
    cols = torch.arange(N, device=p.device)
    out = [torch.zeros((0, 2), dtype=torch.int64, device=p.device)]
    for s in range(0, N, chunk):
        close = sq_dists(p[s:s + chunk], p) <= r2          # [c, N]
        close &= cols[None, :] > cols[s:s + chunk, None]   # upper triangle: i < j, no self pairs
        ij = close.nonzero()                                # row-major: sorted by (i, j)
        ij[:, 0] += s
        out.append(ij)
    return torch.cat(out)
