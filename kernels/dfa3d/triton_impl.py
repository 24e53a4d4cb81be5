"""DFA3D in Triton: a fused forward and a backward for all four float inputs.

Formula (exactly `reference.dfa3d_torch`): per query q, head m, level l, point p, with pixel
coordinates (align_corners=False) x = u*W_l - 0.5, y = v*H_l - 0.5, z = d*D - 0.5 and zero padding,

    out[b, q, m, :] = sum_{l,p} A * sum_{c in 4 corners} w_c * s_c * V[b, row_c, m, :]
    s_c = (1 - fz) * Dist[b, row_c, m, z0] + fz * Dist[b, row_c, m, z0 + 1]

Forward: one program per (b, m, block of BLOCK_Q queries) with every channel of the head in one
tile; it loops over levels and points, gathers the 4 corner rows (4*Ch features + 8 depth values)
and accumulates in float32. Inputs may be float32 / float16 / bfloat16 (each is converted to
float32 on load); the output has value's dtype.

Backward (float32 accumulation, gradients returned in each input's dtype). With g = dL/dout and
dot_c = <g, V[row_c]>:
    dV[row_c]      += A w_c s_c g                  dDist[row_c, z0]   += A w_c (1 - fz) dot_c
    dDist[row_c, z0+1] += A w_c fz dot_c           dA   = sum_c w_c s_c dot_c
    du = W sum_c A s_c dot_c dw_c/dfx,   dv = H sum_c A s_c dot_c dw_c/dfy,
    dd = D sum_c A w_c dot_c (Dist_hi - Dist_lo)   (the x, y AND z location gradients)
The location / attention gradients belong to one sample each and are written without atomics.
The value / depth gradients are scatters (many samples hit one pixel):

- default: ``tl.atomic_add`` into float32 buffers (fast; summation order varies between runs, so
  results match the reference to rounding, not bit for bit);
- ``deterministic=True`` (default when ``torch.use_deterministic_algorithms(True)`` is on): each
  (sample, corner) gets the key of the value row it reads; a stable ``torch.sort`` of the keys and
  ``torch.searchsorted`` give every row the list of its contributions in a fixed order, and one
  program per value row recomputes and sums them (blocks of BLOCK_J entries, fixed reduction tree)
  and stores the row's gradient once: no atomics, bit-identical across runs. Extra memory: the
  keys, their sorted copy and the int64 permutation, E = B*Nq*M*L*P*4 entries of 4+4+8 bytes
  (int32 keys; 8+8+8 when B*M*S >= 2^31), torch.sort's workspace (about as much again while it
  runs) and B*M*S+1 int64 offsets: ~1 GB held, ~2 GB at the sort's peak, at the BEVFormer
  reference sizes (E = 61M), where the atomic path needs none. It also does more work (one
  program per value row, coordinates recomputed per contribution): expect it to be slower.

Index products that may exceed 2^31 (row * M * Ch, row * D, sample * 3) are computed in int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from facet3d.kernels._util import triton_refusals

__all__ = ["dfa3d_triton", "check"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# No FMA contraction: x = u*W - 0.5 is rounded twice, as torch does, so floor(x) (the corner and the
# bin) agrees with the reference even a rounding away from a pixel edge, where the location gradient
# jumps; and the deterministic path's key and row kernels agree on every corner.
_LAUNCH = {"num_warps": 4, "enable_fp_fusion": False}


@triton.jit
def _coords(loc_ptr, sidx, mask, Wf, Hf, Df):
    """Pixel coordinates of samples `sidx` (flat [B, Nq, M, L, P] index, int64): floor ints and fractions.

    Coordinates are clamped to [-2, size + 1] before the integer conversion: that changes no
    result (every corner / bin is outside either way) and keeps huge values from overflowing.
    """
    u = tl.load(loc_ptr + sidx * 3, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(loc_ptr + sidx * 3 + 1, mask=mask, other=0.0).to(tl.float32)
    d = tl.load(loc_ptr + sidx * 3 + 2, mask=mask, other=0.0).to(tl.float32)
    x = tl.minimum(tl.maximum(u * Wf - 0.5, -2.0), Wf + 1.0)
    y = tl.minimum(tl.maximum(v * Hf - 0.5, -2.0), Hf + 1.0)
    z = tl.minimum(tl.maximum(d * Df - 0.5, -2.0), Df + 1.0)
    xf = tl.floor(x)
    yf = tl.floor(y)
    zf = tl.floor(z)
    return xf.to(tl.int32), yf.to(tl.int32), zf.to(tl.int32), x - xf, y - yf, z - zf


@triton.jit
def _dfa3d_fwd(v_ptr, d_ptr, shapes_ptr, starts_ptr, loc_ptr, attn_ptr, out_ptr,
               Nq, S, M, C, D, L, P, NQB,
               BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    bm = pid // NQB  # consecutive programs share (b, m): their rows stay in cache
    b = bm // M
    m = bm % M
    q = (pid % NQB) * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    qmask = q < Nq
    ch = tl.arange(0, BLOCK_C)
    cmask = ch < C
    Df = D * 1.0
    acc = tl.zeros([BLOCK_Q, BLOCK_C], dtype=tl.float32)
    qbase = ((b * Nq + q) * M + m) * L  # [BLOCK_Q] int64
    for lvl in range(L):
        H = tl.load(shapes_ptr + lvl * 3).to(tl.int32)
        W = tl.load(shapes_ptr + lvl * 3 + 1).to(tl.int32)
        start = tl.load(starts_ptr + lvl).to(tl.int64)
        Hf = H.to(tl.float32)
        Wf = W.to(tl.float32)
        for p in range(P):
            sidx = (qbase + lvl) * P + p
            a = tl.load(attn_ptr + sidx, mask=qmask, other=0.0).to(tl.float32)
            x0, y0, z0, fx, fy, fz = _coords(loc_ptr, sidx, qmask, Wf, Hf, Df)
            lo_ok = (z0 >= 0) & (z0 < D)
            hi_ok = (z0 + 1 >= 0) & (z0 + 1 < D)
            for corner in tl.static_range(4):  # corner = 2*dy + dx, resolved at compile time
                if corner % 2 == 1:
                    xc = x0 + 1
                    wx = fx
                else:
                    xc = x0
                    wx = 1.0 - fx
                if corner // 2 == 1:
                    yc = y0 + 1
                    wy = fy
                else:
                    yc = y0
                    wy = 1.0 - fy
                inside = qmask & (xc >= 0) & (xc < W) & (yc >= 0) & (yc < H)
                vrow = (b * S + start + yc.to(tl.int64) * W + xc) * M + m  # [BLOCK_Q] int64
                dlo = tl.load(d_ptr + vrow * D + z0, mask=inside & lo_ok, other=0.0).to(tl.float32)
                dhi = tl.load(d_ptr + vrow * D + z0 + 1, mask=inside & hi_ok, other=0.0).to(tl.float32)
                coef = a * wx * wy * ((1.0 - fz) * dlo + fz * dhi)
                feat = tl.load(v_ptr + vrow[:, None] * C + ch[None, :], mask=inside[:, None] & cmask[None, :],
                               other=0.0).to(tl.float32)
                acc += coef[:, None] * feat
    optr = out_ptr + ((b * Nq + q) * M + m)[:, None] * C + ch[None, :]
    tl.store(optr, acc.to(out_ptr.dtype.element_ty), mask=qmask[:, None] & cmask[None, :])


@triton.jit
def _dfa3d_bwd(v_ptr, d_ptr, shapes_ptr, starts_ptr, loc_ptr, attn_ptr, go_ptr,
               gv_ptr, gd_ptr, gloc_ptr, gattn_ptr,
               Nq, S, M, C, D, L, P, NQB,
               BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, SCATTER: tl.constexpr,
               NEED_V: tl.constexpr, NEED_D: tl.constexpr):
    """Location and attention gradients (one owner per sample: plain stores); with SCATTER also
    the value / depth gradients by float32 atomics (else `_dfa3d_bwd_rows` does them)."""
    pid = tl.program_id(0).to(tl.int64)
    bm = pid // NQB
    b = bm // M
    m = bm % M
    q = (pid % NQB) * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
    qmask = q < Nq
    ch = tl.arange(0, BLOCK_C)
    cmask = ch < C
    Df = D * 1.0
    g = tl.load(go_ptr + ((b * Nq + q) * M + m)[:, None] * C + ch[None, :],
                mask=qmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
    qbase = ((b * Nq + q) * M + m) * L
    for lvl in range(L):
        H = tl.load(shapes_ptr + lvl * 3).to(tl.int32)
        W = tl.load(shapes_ptr + lvl * 3 + 1).to(tl.int32)
        start = tl.load(starts_ptr + lvl).to(tl.int64)
        Hf = H.to(tl.float32)
        Wf = W.to(tl.float32)
        for p in range(P):
            sidx = (qbase + lvl) * P + p
            a = tl.load(attn_ptr + sidx, mask=qmask, other=0.0).to(tl.float32)
            x0, y0, z0, fx, fy, fz = _coords(loc_ptr, sidx, qmask, Wf, Hf, Df)
            lo_ok = (z0 >= 0) & (z0 < D)
            hi_ok = (z0 + 1 >= 0) & (z0 + 1 < D)
            ga = tl.zeros([BLOCK_Q], dtype=tl.float32)
            gx = tl.zeros([BLOCK_Q], dtype=tl.float32)
            gy = tl.zeros([BLOCK_Q], dtype=tl.float32)
            gz = tl.zeros([BLOCK_Q], dtype=tl.float32)
            for corner in tl.static_range(4):  # corner = 2*dy + dx, resolved at compile time
                if corner % 2 == 1:
                    xc = x0 + 1
                    wx = fx
                    sx = 1.0  # dw_x / dfx
                else:
                    xc = x0
                    wx = 1.0 - fx
                    sx = -1.0
                if corner // 2 == 1:
                    yc = y0 + 1
                    wy = fy
                    sy = 1.0
                else:
                    yc = y0
                    wy = 1.0 - fy
                    sy = -1.0
                inside = qmask & (xc >= 0) & (xc < W) & (yc >= 0) & (yc < H)
                vrow = (b * S + start + yc.to(tl.int64) * W + xc) * M + m
                dlo = tl.load(d_ptr + vrow * D + z0, mask=inside & lo_ok, other=0.0).to(tl.float32)
                dhi = tl.load(d_ptr + vrow * D + z0 + 1, mask=inside & hi_ok, other=0.0).to(tl.float32)
                s = (1.0 - fz) * dlo + fz * dhi
                fmask = inside[:, None] & cmask[None, :]
                feat = tl.load(v_ptr + vrow[:, None] * C + ch[None, :], mask=fmask, other=0.0).to(tl.float32)
                dot = tl.sum(g * feat, axis=1)  # [BLOCK_Q]
                w = wx * wy
                ga += w * s * dot
                t = a * s * dot
                gx += t * (sx * wy)
                gy += t * (sy * wx)
                aw_dot = a * w * dot
                gz += aw_dot * (dhi - dlo)
                if SCATTER:
                    if NEED_V:
                        tl.atomic_add(gv_ptr + vrow[:, None] * C + ch[None, :], (a * w * s)[:, None] * g, mask=fmask,
                                      sem="relaxed")
                    if NEED_D:
                        tl.atomic_add(gd_ptr + vrow * D + z0, aw_dot * (1.0 - fz), mask=inside & lo_ok, sem="relaxed")
                        tl.atomic_add(gd_ptr + vrow * D + z0 + 1, aw_dot * fz, mask=inside & hi_ok, sem="relaxed")
            tl.store(gattn_ptr + sidx, ga, mask=qmask)
            tl.store(gloc_ptr + sidx * 3, gx * Wf, mask=qmask)
            tl.store(gloc_ptr + sidx * 3 + 1, gy * Hf, mask=qmask)
            tl.store(gloc_ptr + sidx * 3 + 2, gz * Df, mask=qmask)


@triton.jit
def _dfa3d_keys(shapes_ptr, starts_ptr, loc_ptr, key_ptr, NS, Nq, S, M, L, P, D, SENTINEL,
                BLOCK: tl.constexpr):
    """Key of the value row each (sample, corner) reads: (b*M + m)*S + row, or SENTINEL when the
    corner is outside the map. Entry e = sample*4 + corner, samples flat over [B, Nq, M, L, P]."""
    sidx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    smask = sidx < NS
    lvl = (sidx // P) % L
    m = (sidx // (P * L)) % M
    b = sidx // (P * L * M * Nq)
    H = tl.load(shapes_ptr + lvl * 3, mask=smask, other=1).to(tl.int32)
    W = tl.load(shapes_ptr + lvl * 3 + 1, mask=smask, other=1).to(tl.int32)
    start = tl.load(starts_ptr + lvl, mask=smask, other=0).to(tl.int64)
    x0, y0, z0, fx, fy, fz = _coords(loc_ptr, sidx, smask, W.to(tl.float32), H.to(tl.float32), D * 1.0)
    for corner in tl.static_range(4):
        xc = x0 + corner % 2
        yc = y0 + corner // 2
        inside = (xc >= 0) & (xc < W) & (yc >= 0) & (yc < H)
        key = (b * M + m) * S + start + yc.to(tl.int64) * W + xc
        key = tl.where(inside, key, SENTINEL)
        tl.store(key_ptr + sidx * 4 + corner, key.to(key_ptr.dtype.element_ty), mask=smask)


@triton.jit
def _dfa3d_bwd_rows(v_ptr, d_ptr, shapes_ptr, starts_ptr, loc_ptr, attn_ptr, go_ptr, perm_ptr, off_ptr,
                    gv_ptr, gd_ptr, Nq, S, M, C, D, L, P,
                    BLOCK_J: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
                    NEED_V: tl.constexpr, NEED_D: tl.constexpr):
    """Deterministic value / depth gradients: program t owns value row (b, m, row) (t = (b*M + m)*S + row)
    and sums its contributions (perm[off[t]:off[t+1]], in sorted = fixed order) without atomics."""
    t = tl.program_id(0).to(tl.int64)
    b = t // (M * S)
    m = (t // S) % M
    row = t % S
    vrow = (b * S + row) * M + m
    ch = tl.arange(0, BLOCK_C)
    cmask = ch < C
    dd = tl.arange(0, BLOCK_D)
    Df = D * 1.0
    feat = tl.load(v_ptr + vrow * C + ch, mask=cmask, other=0.0).to(tl.float32)
    acc_v = tl.zeros([BLOCK_C], dtype=tl.float32)
    acc_d = tl.zeros([BLOCK_D], dtype=tl.float32)
    j_lo = tl.load(off_ptr + t)
    j_hi = tl.load(off_ptr + t + 1)
    for j0 in range(j_lo, j_hi, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J).to(tl.int64)
        jm = j < j_hi
        e = tl.load(perm_ptr + j, mask=jm, other=0)
        sidx = e // 4
        corner = (e % 4).to(tl.int32)
        lvl = (sidx // P) % L
        q = (sidx // (P * L * M)) % Nq
        H = tl.load(shapes_ptr + lvl * 3, mask=jm, other=1).to(tl.int32)
        W = tl.load(shapes_ptr + lvl * 3 + 1, mask=jm, other=1).to(tl.int32)
        x0, y0, z0, fx, fy, fz = _coords(loc_ptr, sidx, jm, W.to(tl.float32), H.to(tl.float32), Df)
        a = tl.load(attn_ptr + sidx, mask=jm, other=0.0).to(tl.float32)
        wx = tl.where((corner % 2) == 1, fx, 1.0 - fx)
        wy = tl.where((corner // 2) == 1, fy, 1.0 - fy)
        aw = tl.where(jm, a * wx * wy, 0.0)
        lo_ok = jm & (z0 >= 0) & (z0 < D)
        hi_ok = jm & (z0 + 1 >= 0) & (z0 + 1 < D)
        dlo = tl.load(d_ptr + vrow * D + z0, mask=lo_ok, other=0.0).to(tl.float32)
        dhi = tl.load(d_ptr + vrow * D + z0 + 1, mask=hi_ok, other=0.0).to(tl.float32)
        g = tl.load(go_ptr + ((b * Nq + q) * M + m)[:, None] * C + ch[None, :],
                    mask=jm[:, None] & cmask[None, :], other=0.0).to(tl.float32)  # [BLOCK_J, BLOCK_C]
        if NEED_V:
            acc_v += tl.sum((aw * ((1.0 - fz) * dlo + fz * dhi))[:, None] * g, axis=0)
        if NEED_D:
            dot = tl.sum(g * feat[None, :], axis=1)
            c_lo = tl.where(lo_ok, aw * (1.0 - fz) * dot, 0.0)
            c_hi = tl.where(hi_ok, aw * fz * dot, 0.0)
            acc_d += tl.sum(tl.where(dd[None, :] == z0[:, None], c_lo[:, None], 0.0)
                            + tl.where(dd[None, :] == z0[:, None] + 1, c_hi[:, None], 0.0), axis=0)
    if NEED_V:
        tl.store(gv_ptr + vrow * C + ch, acc_v, mask=cmask)
    if NEED_D:
        tl.store(gd_ptr + vrow * D + dd, acc_d, mask=dd < D)


def _tiles(C: int, elems: int) -> tuple[int, int]:
    """(BLOCK_Q, BLOCK_C): every channel of a head in one tile, `elems` tile elements per program.

    With 4 warps, 256 (forward) / 128 (backward) elements keep the kernels at about 72 / 79
    registers at Ch = 32 for sm_90 (2048-element tiles spilled: each corner's gathered tile and
    its 64-bit pointers are in flight at once).
    """
    block_c = max(1, triton.next_power_of_2(C))
    return max(1, min(64, elems // block_c)), block_c


def _prepared(value, depth_dist, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    dev = value.device
    return (value.contiguous(), depth_dist.contiguous(), spatial_shapes.to(dev, torch.int64).contiguous(),
            level_start_index.to(dev, torch.int64).contiguous(), sampling_locations.contiguous(),
            attention_weights.contiguous())


def _deterministic_scatter(v, d, shapes, starts, loc, attn, go, sizes, need_v, need_d):
    """Value / depth gradients without atomics (see the module docstring for the memory cost)."""
    B, S, M, C, D, Nq, L, P = sizes
    NS = B * Nq * M * L * P
    T = B * M * S
    key_dtype = torch.int32 if T < 2**31 - 1 else torch.int64
    keys = torch.empty(NS * 4, dtype=key_dtype, device=v.device)
    block = 256
    _dfa3d_keys[(triton.cdiv(NS, block),)](shapes, starts, loc, keys, NS, Nq, S, M, L, P, D, T, BLOCK=block, **_LAUNCH)
    sorted_keys, perm = torch.sort(keys, stable=True)
    del keys
    bounds = torch.arange(T + 1, dtype=key_dtype, device=v.device)
    offsets = torch.searchsorted(sorted_keys, bounds)  # int64: first entry of each row; [T] = end
    del sorted_keys, bounds
    gv = torch.empty((B, S, M, C), dtype=torch.float32, device=v.device) if need_v else None
    gd = torch.empty((B, S, M, D), dtype=torch.float32, device=v.device) if need_d else None
    dummy = torch.empty(1, dtype=torch.float32, device=v.device)
    block_c = max(1, triton.next_power_of_2(C))
    block_d = max(1, triton.next_power_of_2(D))
    block_j = max(1, min(32, 2048 // max(block_c, block_d)))
    _dfa3d_bwd_rows[(T,)](v, d, shapes, starts, loc, attn, go, perm, offsets,
                          gv if need_v else dummy, gd if need_d else dummy, Nq, S, M, C, D, L, P,
                          BLOCK_J=block_j, BLOCK_C=block_c, BLOCK_D=block_d, NEED_V=need_v, NEED_D=need_d,
                          **_LAUNCH)
    return gv, gd


class _DFA3DFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, depth_dist, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                deterministic):
        v, d, shapes, starts, loc, attn = _prepared(value, depth_dist, spatial_shapes, level_start_index,
                                                    sampling_locations, attention_weights)
        B, S, M, C = v.shape
        D = d.shape[-1]
        Nq, L, P = loc.shape[1], loc.shape[3], loc.shape[4]
        out = torch.empty((B, Nq, M * C), dtype=value.dtype, device=value.device)
        if out.numel() == 0 or L == 0 or P == 0 or S == 0:
            out.zero_()  # nothing to sample: zeros (a no-op when empty)
        else:
            bq, bc = _tiles(C, 256)
            nqb = triton.cdiv(Nq, bq)
            _dfa3d_fwd[(nqb * B * M,)](v, d, shapes, starts, loc, attn, out, Nq, S, M, C, D, L, P, nqb,
                                       BLOCK_Q=bq, BLOCK_C=bc, **_LAUNCH)
        ctx.save_for_backward(v, d, shapes, starts, loc, attn)
        ctx.sizes = (B, S, M, C, D, Nq, L, P)
        ctx.deterministic = bool(deterministic)
        ctx.dtypes = (value.dtype, depth_dist.dtype, sampling_locations.dtype, attention_weights.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        v, d, shapes, starts, loc, attn = ctx.saved_tensors
        B, S, M, C, D, Nq, L, P = ctx.sizes
        need_v, need_d, _, _, need_loc, need_attn, _ = ctx.needs_input_grad
        dev = v.device
        go = grad_out.contiguous()
        f32 = torch.float32
        scatter = not ctx.deterministic
        gv = torch.zeros((B, S, M, C), dtype=f32, device=dev) if need_v and scatter else None
        gd = torch.zeros((B, S, M, D), dtype=f32, device=dev) if need_d and scatter else None
        gloc = torch.zeros(loc.shape, dtype=f32, device=dev)
        gattn = torch.zeros(attn.shape, dtype=f32, device=dev)
        work = B * Nq * M * L * P * S * C > 0
        if work:
            dummy = torch.empty(1, dtype=f32, device=dev)
            bq, bc = _tiles(C, 128)
            nqb = triton.cdiv(Nq, bq)
            _dfa3d_bwd[(nqb * B * M,)](v, d, shapes, starts, loc, attn, go,
                                       gv if gv is not None else dummy, gd if gd is not None else dummy, gloc, gattn,
                                       Nq, S, M, C, D, L, P, nqb, BLOCK_Q=bq, BLOCK_C=bc, SCATTER=scatter,
                                       NEED_V=bool(need_v), NEED_D=bool(need_d), **_LAUNCH)
            if not scatter and (need_v or need_d):
                gv, gd = _deterministic_scatter(v, d, shapes, starts, loc, attn, go, ctx.sizes,
                                                bool(need_v), bool(need_d))
        if not work or not scatter:  # nothing sampled: zero gradients
            if need_v and gv is None:
                gv = torch.zeros((B, S, M, C), dtype=f32, device=dev)
            if need_d and gd is None:
                gd = torch.zeros((B, S, M, D), dtype=f32, device=dev)
        tv, td, tl_, ta = ctx.dtypes
        return (gv.to(tv) if need_v else None, gd.to(td) if need_d else None, None, None,
                gloc.to(tl_) if need_loc else None, gattn.to(ta) if need_attn else None, None)


def dfa3d_triton(value: torch.Tensor, depth_dist: torch.Tensor, spatial_shapes: torch.Tensor,
                 level_start_index: torch.Tensor, sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                 deterministic: bool | None = None, chunk: int | None = None) -> torch.Tensor:
    """value: Tensor               # [B', S, M, Ch] float32/float16/bfloat16 (CUDA, or CPU under TRITON_INTERPRET=1)
    depth_dist: Tensor             # [B', S, M, D]
    spatial_shapes: Tensor         # [L, 3] int rows (H_l, W_l, D)
    level_start_index: Tensor      # [L] int
    sampling_locations: Tensor     # [B', Nq, M, L, P, 3] normalised (x, y, z)
    attention_weights: Tensor      # [B', Nq, M, L, P]
    deterministic: bool            # backward without atomics, bit-reproducible (None: follow
                                   # torch.are_deterministic_algorithms_enabled())
    chunk: int                     # accepted for option compatibility with the torch backend; ignored
    returns: Tensor                # [B', Nq, M*Ch] in value's dtype; differentiable w.r.t. the four float inputs
    Inputs need not be contiguous (copied when they are not). The dispatcher's `check` validates
    spatial_shapes / level_start_index against S and D; called directly, they are trusted.
    """
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    return _DFA3DFn.apply(value, depth_dist, spatial_shapes, level_start_index, sampling_locations,
                          attention_weights, bool(deterministic))


def check(value: torch.Tensor, depth_dist: torch.Tensor, spatial_shapes: torch.Tensor,
          level_start_index: torch.Tensor, sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
          *args, deterministic: bool | None = None, chunk: int | None = None, **kwargs) -> list[str]:
    """Dispatcher check: can the Triton kernels take these inputs here? ([] = yes)

    Reads spatial_shapes and level_start_index (one small device-to-host copy when they live on the
    GPU) because the kernels index memory with them: levels must lie inside S and every level's D
    must equal depth_dist's D, else the kernel would read out of bounds instead of raising.
    """
    floats = [value, depth_dist, sampling_locations, attention_weights]
    reasons = []
    bad = sorted({str(t.dtype).removeprefix("torch.") for t in floats if t.dtype not in _DTYPES})
    if bad:
        reasons.append(f"dtype {'/'.join(bad)} not supported (needs float32/float16/bfloat16)")
    B, S, M, C = value.shape
    D = depth_dist.shape[-1]
    Nq, L, P = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    if L:
        table = torch.cat([spatial_shapes.reshape(L, 3).to("cpu", torch.int64),
                           level_start_index.reshape(L, 1).to("cpu", torch.int64)], 1).tolist()
        for lvl, (H, W, Dl, start) in enumerate(table):
            if Dl != D:
                reasons.append(f"spatial_shapes[{lvl}] has D={Dl} but depth_dist has D={D}")
            if H < 1 or W < 1 or start < 0 or start + H * W > S:
                reasons.append(f"level {lvl} ({H}x{W} from row {start}) does not lie inside S={S} value rows")
    if deterministic and B * M * S >= 2**31 - 1:
        reasons.append(f"deterministic backward launches one program per value row: B*M*S={B * M * S} is too many")
    reasons += triton_refusals(_dfa3d_fwd, floats, B * Nq * M * L * P * 4 * max(C, 1))
    return reasons
