"""Farthest point sampling in Triton: one program per batch element.

Each step streams the cloud in blocks of BLOCK_N: it updates the running min-distance (kept in a
global [B, N] scratch buffer, L2-resident for typical sizes) with the distance to the last sample
and tracks the block-wise (max, argmax), keeping the earliest index on ties, which reproduces
`reference.fps_torch` exactly. The loop over samples is sequential by nature; parallelism is
across the batch and within a block.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from facet3d.kernels._util import triton_refusals


@triton.jit
def _fps_kernel(p_ptr, len_ptr, start_ptr, mind_ptr, out_ptr, N, S, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(len_ptr + b)
    pb = p_ptr + b * N * 3
    mb = mind_ptr + b * N
    cols = tl.arange(0, BLOCK_N)
    cur = tl.load(start_ptr + b).to(tl.int32)
    for i in range(S):
        tl.store(out_ptr + b * S + i, cur.to(tl.int64))
        cx = tl.load(pb + cur * 3 + 0)
        cy = tl.load(pb + cur * 3 + 1)
        cz = tl.load(pb + cur * 3 + 2)
        best_v = -2.0
        best_i = 0
        for start in range(0, length, BLOCK_N):
            offs = start + cols
            mask = offs < length
            dx = tl.load(pb + offs * 3 + 0, mask=mask, other=0.0) - cx
            dy = tl.load(pb + offs * 3 + 1, mask=mask, other=0.0) - cy
            dz = tl.load(pb + offs * 3 + 2, mask=mask, other=0.0) - cz
            d = dx * dx + dy * dy + dz * dz
            # Each thread re-reads exactly the elements it wrote in the previous step (same layout).
            m = tl.minimum(tl.load(mb + offs, mask=mask, other=float("inf")), d)
            tl.store(mb + offs, m, mask=mask)
            m = tl.where(mask, m, -1.0)
            bv = tl.max(m, axis=0)
            bi = tl.argmax(m, axis=0, tie_break_left=True) + start
            take = bv > best_v  # strict: an earlier block keeps ties (lower index)
            best_i = tl.where(take, bi, best_i)
            best_v = tl.where(take, bv, best_v)
        cur = best_i.to(tl.int32)


def fps_triton(points: torch.Tensor, n: int, lengths: torch.Tensor, start_idx: torch.Tensor,
               ordered: bool = True, block_n: int = 1024) -> torch.Tensor:
    """FPS with the Triton kernel; same contract as `reference.fps_torch`.

    points: Tensor    # [B, N, 3] float32 (CUDA, or CPU under TRITON_INTERPRET=1)
    lengths: Tensor   # [B] int64
    start_idx: Tensor # [B] int64
    returns           # [B, n] int64
    """
    B, N, _ = points.shape
    dev = points.device
    out = torch.empty((B, n), dtype=torch.int64, device=dev)
    if B == 0 or n == 0:
        return out
    p = points.detach().contiguous()
    mind = torch.full((B, N), float("inf"), dtype=torch.float32, device=dev)
    block = min(block_n, max(16, triton.next_power_of_2(N)))
    _fps_kernel[(B,)](p, lengths.to(dev, torch.int32).contiguous(), start_idx.to(dev, torch.int32).contiguous(),
                      mind, out, N, n, BLOCK_N=block, num_warps=8 if block >= 1024 else 4,
                      enable_fp_fusion=False)  # no FMA: distances (and argmax ties) match torch bit for bit
    return out


def check(points: torch.Tensor, n: int, *args, **kwargs) -> list[str]:
    """Dispatcher check: can the compiled/interpreted kernel take these tensors here?"""
    return triton_refusals(_fps_kernel, [points], points.shape[0] * points.shape[1] * n)
