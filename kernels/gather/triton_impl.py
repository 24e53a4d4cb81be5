"""Grouping gather in Triton with a scatter-add backward.

Forward: each program copies BLOCK_R gathered rows x BLOCK_C channels. Rows are flattened over
(batch, m, k) so the grid has no per-axis limit issue for large batches. Backward: the same tiling
atomically adds the output gradient into a float32 buffer (rows gathered several times receive
several contributions); accumulation order is not deterministic, so gradients match the
reference to rounding, not bit for bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from facet3d.kernels._util import triton_refusals


@triton.jit
def _gather_fwd(f_ptr, idx_ptr, out_ptr, R, N, C, ROWS_PER_B, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    r_mask = rows < R
    src = tl.load(idx_ptr + rows, mask=r_mask, other=0) + (rows // ROWS_PER_B) * N  # global source row
    mask = r_mask[:, None] & (chans[None, :] < C)
    vals = tl.load(f_ptr + src[:, None] * C + chans[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + rows[:, None] * C + chans[None, :], vals, mask=mask)


@triton.jit
def _gather_bwd(g_ptr, idx_ptr, gf_ptr, R, N, C, ROWS_PER_B, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    r_mask = rows < R
    dst = tl.load(idx_ptr + rows, mask=r_mask, other=0) + (rows // ROWS_PER_B) * N
    mask = r_mask[:, None] & (chans[None, :] < C)
    g = tl.load(g_ptr + rows[:, None] * C + chans[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.atomic_add(gf_ptr + dst[:, None] * C + chans[None, :], g, mask=mask)


def _tiles(C: int) -> tuple[int, int]:
    block_c = min(128, max(16, triton.next_power_of_2(C)))
    return max(16, 4096 // block_c), block_c  # ~4K elements per program


class _GatherFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        B, N, C = features.shape
        _, M, K = idx.shape
        f = features.contiguous()
        flat_idx = idx.reshape(-1).contiguous()
        out = torch.empty((B, M, K, C), dtype=features.dtype, device=features.device)
        R = B * M * K
        if R and C:
            br, bc = _tiles(C)
            _gather_fwd[(triton.cdiv(R, br), triton.cdiv(C, bc))](f, flat_idx, out, R, N, C, max(1, M * K),
                                                                  BLOCK_R=br, BLOCK_C=bc)
        ctx.save_for_backward(flat_idx)
        ctx.shape = (B, N, C, M * K)
        ctx.dtype = features.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (flat_idx,) = ctx.saved_tensors
        B, N, C, rows_per_b = ctx.shape
        # float32 accumulation: atomics on half types lose precision (and bf16 atomics are slow/absent)
        gf = torch.zeros((B, N, C), dtype=torch.float32, device=grad_out.device)
        R = flat_idx.numel()
        if R and C:
            br, bc = _tiles(C)
            _gather_bwd[(triton.cdiv(R, br), triton.cdiv(C, bc))](grad_out.contiguous(), flat_idx, gf, R, N, C,
                                                                  max(1, rows_per_b), BLOCK_R=br, BLOCK_C=bc)
        return gf.to(ctx.dtype), None


def gather_triton(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """features: Tensor  # [B, N, C] (CUDA, or CPU under TRITON_INTERPRET=1)
    idx: Tensor         # [B, M, K] int64 in [0, N)
    returns             # [B, M, K, C]; differentiable w.r.t. features
    """
    return _GatherFn.apply(features, idx)


def check(features: torch.Tensor, idx: torch.Tensor, *args, **kwargs) -> list[str]:
    """Dispatcher check: can the compiled/interpreted kernels take these tensors here?"""
    return triton_refusals(_gather_fwd, [features, idx], idx.numel() * features.shape[-1])
