"""k-nearest neighbours in pure PyTorch: the source of truth and the CPU fallback.

Conventions shared by every knn backend (and checked by the tests):

* distances are *squared* Euclidean, computed as ``dx*dx + dy*dy + dz*dz`` (never the
  ``|a|^2 + |b|^2 - 2ab`` expansion, whose cancellation reorders near-equal distances);
* each row is sorted by ``(distance, index)``: equal distances are broken by the lower point
  index, so results are deterministic and identical across backends;
* padded query rows (``m >= query_lengths[b]``) get ``idx = -1`` and ``dists = 0``; padded
  points (``n >= point_lengths[b]``) are never returned;
* ``dists`` is differentiable w.r.t. ``query`` and ``points`` (recomputed from ``idx``);
  non-finite coordinates are not supported (NaN distances sort last, order unspecified).
"""

from __future__ import annotations

import torch

from facet3d.kernels._util import lengths_or_full

# Elements of one [B, chunk, N] distance block: bounds peak memory to ~2 blocks. Small on CPU
# (cache-friendly, ~16 MiB each in float32); larger on GPU, where per-chunk launch overhead dominates.
CHUNK_ELEMS = 1 << 22
CHUNK_ELEMS_CUDA = 1 << 25


def sq_dists(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Squared distances of every query to every point, summed coordinate by coordinate.

    q: Tensor  # [..., M, 3]
    p: Tensor  # [..., N, 3]
    returns    # [..., M, N]; not differentiable-friendly (in-place), used for selection only
    """
    d = (q[..., :, None, 0] - p[..., None, :, 0]).square_()
    t = torch.sub(q[..., :, None, 1], p[..., None, :, 1], out=torch.empty_like(d)).square_()
    d.add_(t)
    torch.sub(q[..., :, None, 2], p[..., None, :, 2], out=t).square_()
    return d.add_(t)


def dists_from_idx(query: torch.Tensor, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Differentiable squared distances from each query to its selected points.

    query: Tensor          # [B, M, 3]
    points: Tensor         # [B, N, 3]
    idx: Tensor            # [B, M, k] int64, -1 allowed on padded query rows
    returns                # [B, M, k], 0 where idx == -1
    """
    B, M, k = idx.shape
    safe = idx.clamp_min(0)
    g = torch.gather(points, 1, safe.reshape(B, M * k, 1).expand(-1, -1, 3)).reshape(B, M, k, 3)
    diff = query[:, :, None, :] - g
    # Same operation order as `sq_dists`, so values are bit-identical to the selection pass.
    d = diff[..., 0].square() + diff[..., 1].square() + diff[..., 2].square()
    return torch.where(idx >= 0, d, torch.zeros((), dtype=d.dtype, device=d.device))


def select_k(d: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k smallest entries of each row by (value, index), sorted that way.

    d: Tensor  # [..., N], NaN treated as +inf
    returns    # [..., k] int64

    ``torch.topk`` breaks ties arbitrarily, so it only finds the k-th value ``t``; the set is then
    every entry ``< t`` plus the lowest-indexed entries ``== t`` (O(N) per row, no full sort).
    """
    d = torch.nan_to_num(d, nan=float("inf"))
    t = torch.topk(d, k, dim=-1, largest=False).values[..., -1:]
    sel = d <= t
    over = sel.sum(-1) > k  # rows with several entries tied at the k-th value
    if bool(over.any()):
        dd, tt = d[over], t[over]
        less, eq = dd < tt, dd == tt
        room = k - less.sum(-1, keepdim=True)
        sel[over] = less | (eq & (torch.cumsum(eq.to(torch.int32), -1) <= room))
    idx = sel.nonzero()[:, -1].reshape(*d.shape[:-1], k)  # row-major: ascending index per row
    order = torch.sort(torch.gather(d, -1, idx), dim=-1, stable=True).indices  # ties keep lower index
    return torch.gather(idx, -1, order)


def finalize(query: torch.Tensor, points: torch.Tensor, idx: torch.Tensor,
             query_lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mark padded query rows (idx -1) and recompute differentiable distances."""
    B, M, _ = idx.shape
    if query_lengths is not None:
        pad = torch.arange(M, device=idx.device)[None, :] >= query_lengths.to(idx.device)[:, None]
        idx = idx.masked_fill(pad[..., None], -1)
    return dists_from_idx(query, points, idx), idx


def knn_torch(query: torch.Tensor, points: torch.Tensor, k: int,
              query_lengths: torch.Tensor | None = None, point_lengths: torch.Tensor | None = None,
              chunk_elems: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference knn, chunked over queries so memory stays ~``chunk_elems`` distances.

    query: Tensor          # [B, M, 3]
    points: Tensor         # [B, N, 3]
    query_lengths: Tensor  # [B] or None (all M valid)
    point_lengths: Tensor  # [B] or None (all N valid); every length must be >= k
    returns (dists [B, M, k], idx [B, M, k] int64), see the module docstring
    """
    B, M, _ = query.shape
    N = points.shape[1]
    plen = lengths_or_full(point_lengths, B, N, points.device, "point_lengths")
    invalid = torch.arange(N, device=points.device)[None, :] >= plen[:, None]  # [B, N]
    if chunk_elems is None:
        chunk_elems = CHUNK_ELEMS_CUDA if query.device.type == "cuda" else CHUNK_ELEMS
    chunk = max(1, chunk_elems // max(1, B * N))
    out = []
    with torch.no_grad():  # selection only; gradients come from `finalize`
        q_all, p_all = query.detach(), points.detach()
        for s in range(0, M, chunk):
            d = sq_dists(q_all[:, s:s + chunk], p_all)
            d = d.masked_fill(invalid[:, None, :], float("inf"))
            out.append(select_k(d, k))
    idx = torch.cat(out, 1) if out else torch.zeros((B, 0, k), dtype=torch.int64, device=query.device)
    return finalize(query, points, idx, query_lengths)
