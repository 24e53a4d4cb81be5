"""Fused brute-force knn in Triton.

One program takes BLOCK_M queries of one batch element and streams over that element's points in
blocks of BLOCK_N, keeping a running top-k per query in registers ([BLOCK_M, K_PAD] distances and
indices). Each block is merged by repeatedly extracting its smallest candidate (ties -> lowest
index) and replacing the current worst entry, ordered by (distance, index), when the candidate is
better. The number of extractions per block is bounded by how many candidates are no worse than
the current worst, so after the first blocks most of the merge work is skipped. A final selection
sort writes each row ordered by (distance, index), matching `reference.knn_torch` exactly.

The kernel returns only indices; distances are recomputed in torch from them so autograd works
without a custom backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from facet3d.kernels._util import triton_refusals
from facet3d.kernels.knn.reference import dists_from_idx, finalize

_INT_MAX: tl.constexpr = tl.constexpr(2147483647)  # Triton kernels may only read constexpr globals


@triton.jit
def _knn_kernel(q_ptr, p_ptr, qlen_ptr, plen_ptr, idx_ptr, M, N, K,
                K_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    qlen = tl.load(qlen_ptr + b)
    plen = tl.load(plen_ptr + b)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < qlen
    qb = q_ptr + b * M * 3
    pb = p_ptr + b * N * 3
    qx = tl.load(qb + offs_m * 3 + 0, mask=m_mask, other=0.0)
    qy = tl.load(qb + offs_m * 3 + 1, mask=m_mask, other=0.0)
    qz = tl.load(qb + offs_m * 3 + 2, mask=m_mask, other=0.0)

    slots = tl.arange(0, K_PAD)
    cols = tl.arange(0, BLOCK_N)
    # Real slots start at +inf with distinct negative indices (so exactly one slot is "the worst");
    # padding slots (>= K) hold -inf and are therefore never the worst, never replaced.
    best_d = tl.where(slots[None, :] < K, float("inf"), float("-inf")) + tl.zeros([BLOCK_M, K_PAD], tl.float32)
    best_i = tl.zeros([BLOCK_M, K_PAD], tl.int32) - 1 - slots[None, :]

    n_end = tl.where(pid_m * BLOCK_M < qlen, plen, 0)  # whole block of padded queries: no work
    for start in range(0, n_end, BLOCK_N):
        offs_n = start + cols
        n_mask = offs_n < plen
        px = tl.load(pb + offs_n * 3 + 0, mask=n_mask, other=0.0)
        py = tl.load(pb + offs_n * 3 + 1, mask=n_mask, other=0.0)
        pz = tl.load(pb + offs_n * 3 + 2, mask=n_mask, other=0.0)
        dx = qx[:, None] - px[None, :]
        dy = qy[:, None] - py[None, :]
        dz = qz[:, None] - pz[None, :]
        d = dx * dx + dy * dy + dz * dz
        d = tl.where(n_mask[None, :], d, float("inf"))
        # Insertions need a candidate no worse than the current worst; the worst only improves,
        # so this count (capped at K) bounds the extraction rounds for every row of the block.
        worst_d = tl.max(best_d, axis=1)
        n_cand = tl.max(tl.sum((d <= worst_d[:, None]).to(tl.int32), axis=1), axis=0)
        for _ in range(tl.minimum(n_cand, K)):
            c_d = tl.min(d, axis=1)
            c_col = tl.argmin(d, axis=1, tie_break_left=True)
            c_i = start + c_col
            worst_d = tl.max(best_d, axis=1)
            is_wd = best_d == worst_d[:, None]
            worst_i = tl.max(tl.where(is_wd, best_i, -_INT_MAX), axis=1)
            better = (c_d < worst_d) | ((c_d == worst_d) & (c_i < worst_i))
            hit = is_wd & (best_i == worst_i[:, None]) & better[:, None]
            best_d = tl.where(hit, c_d[:, None], best_d)
            best_i = tl.where(hit, c_i[:, None], best_i)
            d = tl.where(cols[None, :] == c_col[:, None], float("inf"), d)  # extracted

    # Selection sort of the K slots by (distance, index) into `out`.
    out = tl.zeros([BLOCK_M, K_PAD], tl.int32)
    avail = (slots[None, :] < K) & (best_i == best_i)
    for j in range(K):
        md = tl.min(tl.where(avail, best_d, float("inf")), axis=1)
        mi = tl.min(tl.where(avail & (best_d == md[:, None]), best_i, _INT_MAX), axis=1)
        out = tl.where(slots[None, :] == j, mi[:, None], out)
        avail = avail & (best_i != mi[:, None])
    o_ptrs = idx_ptr + b * M * K + offs_m[:, None].to(tl.int64) * K + slots[None, :]
    tl.store(o_ptrs, out.to(tl.int64), mask=m_mask[:, None] & (slots[None, :] < K))


def _blocks(k: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps): keep [BLOCK_M, K_PAD] top-k + [BLOCK_M, BLOCK_N] block in registers.

    Offline sm_90 compiles (no spills in any): 32x64 tiles with K_PAD <= 32 use ~127 registers/thread,
    64x64 with K_PAD 16 hits the 255 cap, so larger k gets fewer queries per program.
    """
    if k <= 32:
        return 32, 64, 4
    return 16, 64, 4


def knn_triton(query: torch.Tensor, points: torch.Tensor, k: int,
               query_lengths: torch.Tensor | None = None, point_lengths: torch.Tensor | None = None,
               block_m: int | None = None, block_n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """knn with the fused Triton kernel; same contract as `reference.knn_torch`.

    query: Tensor  # [B, M, 3] float32 (CUDA, or CPU under TRITON_INTERPRET=1)
    points: Tensor # [B, N, 3] float32
    returns (dists [B, M, k], idx [B, M, k] int64)
    """
    B, M, _ = query.shape
    N = points.shape[1]
    dev = query.device
    qlen = torch.full((B,), M, dtype=torch.int32, device=dev) if query_lengths is None else query_lengths.to(dev, torch.int32)
    plen = torch.full((B,), N, dtype=torch.int32, device=dev) if point_lengths is None else point_lengths.to(dev, torch.int32)
    idx = torch.full((B, M, k), -1, dtype=torch.int64, device=dev)
    bm, bn, warps = _blocks(k)
    bm, bn = block_m or bm, block_n or bn
    if B and M and k:
        q = query.detach().contiguous()
        p = points.detach().contiguous()
        grid = (triton.cdiv(M, bm), B)
        _knn_kernel[grid](q, p, qlen, plen, idx, M, N, k, K_PAD=max(2, triton.next_power_of_2(k)),
                          BLOCK_M=bm, BLOCK_N=bn, num_warps=warps,
                          enable_fp_fusion=False)  # no FMA: bit-identical to the torch distances
    if dev.type == "cuda":
        # FMA contraction is disabled at launch, so kernel and torch distances should agree bit for bit;
        # still re-sort (k entries per row, cheap) so the order provably matches the returned dists.
        with torch.no_grad():
            dk = dists_from_idx(query.detach(), points.detach(), idx)
            order = torch.sort(idx, dim=-1).indices
            idx = torch.gather(idx, -1, order)
            dk = torch.gather(dk, -1, order)
            idx = torch.gather(idx, -1, torch.sort(dk, dim=-1, stable=True).indices)
    return finalize(query, points, idx, query_lengths)


def check(query: torch.Tensor, points: torch.Tensor, k: int, *args, **kwargs) -> list[str]:
    """Dispatcher check: can the compiled/interpreted kernel take these tensors here?"""
    work = query.shape[0] * query.shape[1] * points.shape[1]
    return triton_refusals(_knn_kernel, [query, points], work)
