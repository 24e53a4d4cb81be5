"""3D deformable attention (DFA3D) in pure PyTorch: the fused gather form.

The source of truth for the Triton kernels and the CPU path. Per query q, head m, level l, point p,
with pixel coordinates (align_corners=False) x = u*W_l - 0.5, y = v*H_l - 0.5, z = d*D - 0.5:

    out[b, q, m, :] = sum_{l,p} A[b,q,m,l,p] * sum_{c in 4 corners} w_c * s_c * V_l[b, y_c, x_c, m, :]
    s_c = (1 - fz) * Dist[y_c, x_c, m, z0] + fz * Dist[y_c, x_c, m, z0 + 1]

which is exactly trilinear sampling of F[y, x, z, :] = V[y, x, :] * Dist[y, x, z] without building F
(each corner's depth score weights that corner's feature *before* the bilinear sum). Corners and
bins outside the map contribute zero. Autograd gives every gradient, the z location's included.

Memory: queries are processed in chunks so the gathered corner features stay under
`CHUNK_BYTES`; with gradients each chunk is recomputed in backward (activation checkpointing)
instead of keeping every chunk's gathers alive. Shapes and level sizes are only ever used as
tensors (no ``.tolist()``), so `torch.export` traces it without data-dependent control flow.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

CHUNK_BYTES = 256 << 20  # gathered corner features of one chunk of queries


def _corner_terms(loc: torch.Tensor, shapes: torch.Tensor, starts: torch.Tensor):
    """Flat value rows, bilinear weights and depth-bin terms of the 4 corners of each sample.

    loc: [B, M, Q, L, P, 3] normalised (x, y, z); shapes: [L, 3] rows (H, W, D); starts: [L]
    returns rows [B, M, Q, L*P*4] int64 (into S), weights [same] (0 outside the map),
            z_lo, z_hi [B, M, Q, L*P, 1] int64 bins (clamped into range), fz [.., 1],
            lo_ok / hi_ok [.., 1] float: 1 where that bin lies inside [0, D)
    """
    H = shapes[:, 0].to(loc.dtype).view(1, 1, 1, -1, 1)
    W = shapes[:, 1].to(loc.dtype).view(1, 1, 1, -1, 1)
    D = shapes[:, 2].to(loc.dtype).view(1, 1, 1, -1, 1)
    Hi, Wi = shapes[:, 0].view(1, 1, 1, -1, 1), shapes[:, 1].view(1, 1, 1, -1, 1)
    Di = shapes[:, 2].view(1, 1, 1, -1, 1)
    x = loc[..., 0] * W - 0.5
    y = loc[..., 1] * H - 0.5
    z = loc[..., 2] * D - 0.5
    x0, y0, z0 = torch.floor(x), torch.floor(y), torch.floor(z)
    fx, fy, fz = x - x0, y - y0, z - z0
    x0, y0, z0 = x0.long(), y0.long(), z0.long()
    rows, weights = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            xc, yc = x0 + dx, y0 + dy
            w = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
            inside = (xc >= 0) & (xc < Wi) & (yc >= 0) & (yc < Hi)
            rows.append(starts.view(1, 1, 1, -1, 1) + yc.clamp(min=0).minimum(Hi - 1) * Wi
                        + xc.clamp(min=0).minimum(Wi - 1))
            weights.append(w * inside.to(w.dtype))
    B, M, Q, L, P = x.shape
    rows_t = torch.stack(rows, -1).reshape(B, M, Q, L * P * 4)
    w_t = torch.stack(weights, -1).reshape(B, M, Q, L * P * 4)
    lo_ok = ((z0 >= 0) & (z0 < Di)).to(loc.dtype)
    hi_ok = ((z0 + 1 >= 0) & (z0 + 1 < Di)).to(loc.dtype)
    flat = lambda t: t.reshape(B, M, Q, L * P, 1)  # noqa: E731
    z_lo = z0.clamp(min=0).minimum(Di - 1)
    z_hi = (z0 + 1).clamp(min=0).minimum(Di - 1)
    return rows_t, w_t, flat(z_lo), flat(z_hi), flat(fz), flat(lo_ok), flat(hi_ok)


def _chunk(value_bm: torch.Tensor, dist_flat: torch.Tensor, shapes: torch.Tensor, starts: torch.Tensor,
           loc: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """One chunk of queries. value_bm [B, M, S, C] (a view), dist_flat [B, S*M*D] (depth_dist's own
    row-major layout, not copied), loc [B, M, Q, L, P, 3], attn [B, M, Q, L, P] -> [B, M, Q, C]."""
    B, M, S, C = value_bm.shape
    Q, L, P = loc.shape[2:5]
    rows, w, z_lo, z_hi, fz, lo_ok, hi_ok = _corner_terms(loc, shapes, starts)
    D = dist_flat.shape[-1] // max(S * M, 1)
    # depth scores of each corner: rows are per corner, the bin pair per sample (shared by its 4 corners)
    per_corner = lambda t: t.expand(-1, -1, -1, -1, 4).reshape(B, M, Q, L * P * 4)  # noqa: E731
    heads = torch.arange(M, device=rows.device).view(1, M, 1, 1)
    base = (rows * M + heads) * D  # flat index of Dist[b, row, m, 0]
    d_lo = torch.gather(dist_flat, 1, (base + per_corner(z_lo)).reshape(B, -1)).reshape(rows.shape)
    d_hi = torch.gather(dist_flat, 1, (base + per_corner(z_hi)).reshape(B, -1)).reshape(rows.shape)
    fzc = per_corner(fz)
    score = (1 - fzc) * d_lo * per_corner(lo_ok) + fzc * d_hi * per_corner(hi_ok)
    a = attn.reshape(B, M, Q, L * P, 1).expand(-1, -1, -1, -1, 4).reshape(B, M, Q, L * P * 4)
    coef = (a * w * score).to(value_bm.dtype)  # [B, M, Q, K]
    feats = torch.gather(value_bm, 2, rows.reshape(B, M, -1, 1).expand(-1, -1, -1, C)).reshape(B, M, Q, L * P * 4, C)
    return torch.einsum("bmqk,bmqkc->bmqc", coef, feats)


def query_chunk(B: int, M: int, L: int, P: int, C: int, itemsize: int, budget: int = CHUNK_BYTES) -> int:
    """Queries per chunk so that one chunk's gathered corner features fit in ``budget`` bytes."""
    per_query = max(1, B * M * L * P * 4 * (C + 8) * itemsize)
    return max(1, budget // per_query)


def dfa3d_torch(value: torch.Tensor, depth_dist: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                attention_weights: torch.Tensor, chunk: int | None = None,
                deterministic: bool | None = None) -> torch.Tensor:
    """value: Tensor               # [B', S, M, Ch]
    depth_dist: Tensor             # [B', S, M, D] (softmaxed over D; any non-negative weights work)
    spatial_shapes: Tensor         # [L, 3] int64 rows (H_l, W_l, D)
    level_start_index: Tensor      # [L] int64, start of each level in S
    sampling_locations: Tensor     # [B', Nq, M, L, P, 3] normalised (x, y, z) in [0, 1]
    attention_weights: Tensor      # [B', Nq, M, L, P]
    chunk: int                     # queries per chunk (default from CHUNK_BYTES)
    deterministic: bool            # accepted for option compatibility with the Triton backend, ignored:
                                   # the backward is deterministic on CPU; on CUDA its gather backward
                                   # (scatter_add) is only under torch.use_deterministic_algorithms(True)
    returns: Tensor                # [B', Nq, M*Ch] in value's dtype (computed in fp32 for fp16/bf16)
    """
    B, S, M, C = value.shape
    Nq, L, P = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    low = value.dtype in (torch.float16, torch.bfloat16)
    work = torch.float32 if low else value.dtype
    value_bm = value.to(work).permute(0, 2, 1, 3)  # [B, M, S, C]
    # [B, S*M*D] in depth_dist's own layout: a view (a permuted copy would be the largest tensor here)
    dist_flat = depth_dist.to(work).reshape(B, -1)
    loc = sampling_locations.to(work).permute(0, 2, 1, 3, 4, 5)  # [B, M, Nq, L, P, 3]
    attn = attention_weights.to(work).permute(0, 2, 1, 3, 4)  # [B, M, Nq, L, P]
    shapes, starts = spatial_shapes.to(torch.int64), level_start_index.to(torch.int64)
    step = chunk or query_chunk(B, M, L, P, C, torch.finfo(work).bits // 8)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (value, depth_dist, sampling_locations, attention_weights))
    if Nq == 0:
        return value.new_zeros((B, 0, M * C))
    pieces = []
    for q0 in range(0, Nq, step):
        args = (value_bm, dist_flat, shapes, starts, loc[:, :, q0:q0 + step], attn[:, :, q0:q0 + step])
        if grad and Nq > step:
            pieces.append(checkpoint(_chunk, *args, use_reentrant=False))
        else:
            pieces.append(_chunk(*args))
    out = torch.cat(pieces, 2) if len(pieces) > 1 else pieces[0]  # [B, M, Nq, C]
    return out.permute(0, 2, 1, 3).reshape(B, Nq, M * C).to(value.dtype)
