"""Triangle-splatting rasterizer in Triton: tiled forward and backward kernels (soft mode).

Same contract as `facet3d.kernels.trisplat.reference.rasterize_triangles` (the source of truth).
Per-triangle work stays in torch and autograd: `preprocess` (projection, edge lines, incenter,
culling, footprint) and `_tile_pairs` (the (tile, triangle) list sorted by tile, centroid depth,
index). A custom autograd function then takes the per-triangle screen-space tensors and runs:

* forward: one program per tile (all ``tile * tile`` pixels as one block); it walks the tile's
  triangles front to back, evaluating per pixel the edge lines, the window ``I = (phi/phi_s)^sigma``,
  ``alpha = min(0.99, opacity I)`` (skipped below 1/255) and the perspective-correct barycentrics,
  and composites colour, alpha, plane depth and normal until ``T (1 - alpha) < 1e-4`` (the pixel is
  then done; the loop ends when every pixel is). It saves per pixel the final T and the number of
  list entries up to the last contributor, and per (tile, triangle) pair the max blending weight.
* backward: the same tiles, traversed back to front from each pixel's last contributor, recovering
  ``T_k = T_{k+1} / (1 - alpha_k)`` and the suffix sum ``S`` of what lies behind, so
  ``dL/dalpha_k = T_k (dL/dw_k - S)``; then through the window (``dL/dsigma = dL/dI I ln(phi/phi_s)``,
  ``dL/dphi = dL/dI sigma I / phi``, routed to the max edge) and the barycentrics. Per triangle the
  pixel gradients are summed over the tile and added with ``tl.atomic_add`` into per-triangle
  buffers (lines, phi_s, sigma, opacity, uv, vertex z, normal, colours); autograd carries them
  through `preprocess` to the camera-space vertices.

Hard mode (per-pixel depth order, ``stop_after``) is not implemented in Triton: it falls back to the
torch reference (same results, same gradients, reference speed). Pixels of border tiles outside the
image are skipped, as in the reference (they do not count for ``max_weight``).
Gradients match the reference to float32 rounding (summation order and ``T`` recovered by division
differ). The decisions (coverage, ``alpha >= 1/255``, ``T >= 1e-4``) are computed as torch does:
no FMA contraction, IEEE division and, on CUDA, libdevice ``powf`` for the window, so the set of
contributors is the reference's except where a ``T`` lies within rounding of 1e-4 (torch's CUDA
cumprod is a parallel scan) or, under the interpreter (no libdevice: ``exp2(sigma log2 r)``), an
alpha within rounding of 1/255. ``chunk_elems`` is ignored (memory is
O(pixels + pairs)).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice
from torch import Tensor

from facet3d.kernels._util import is_interpreted, triton_refusals
from facet3d.kernels.trisplat.reference import (ALPHA_MAX, ALPHA_MIN, CHUNK_ELEMS, T_STOP, _tile_pairs,
                                                normalize_inputs,
                                                preprocess, rasterize_triangles)

__all__ = ["rasterize_triangles_triton", "check"]

_ALPHA_MAX: tl.constexpr = tl.constexpr(ALPHA_MAX)
_ALPHA_MIN: tl.constexpr = tl.constexpr(ALPHA_MIN)
_T_STOP: tl.constexpr = tl.constexpr(T_STOP)


@triton.jit
def _load_tri(lines_ptr, phis_ptr, sig_ptr, op_ptr, uv_ptr, z_ptr, t):
    """Scalars of triangle t: edge lines (9), phi_s, sigma, opacity, uv (6), vertex z (3)."""
    lb = lines_ptr + t * 9
    ub = uv_ptr + t * 6
    zb = z_ptr + t * 3
    return (tl.load(lb + 0), tl.load(lb + 1), tl.load(lb + 2), tl.load(lb + 3), tl.load(lb + 4), tl.load(lb + 5),
            tl.load(lb + 6), tl.load(lb + 7), tl.load(lb + 8), tl.load(phis_ptr + t), tl.load(sig_ptr + t),
            tl.load(op_ptr + t), tl.load(ub + 0), tl.load(ub + 1), tl.load(ub + 2), tl.load(ub + 3),
            tl.load(ub + 4), tl.load(ub + 5), tl.load(zb + 0), tl.load(zb + 1), tl.load(zb + 2))


@triton.jit
def _cross(ox, oy, qx, qy, rx, ry):
    """2D cross product (q - o) x (r - o), as reference._cross."""
    return (qx - ox) * (ry - oy) - (qy - oy) * (rx - ox)


@triton.jit
def _fwd_kernel(lines_ptr, phis_ptr, sig_ptr, op_ptr, uv_ptr, z_ptr, col_ptr, nrm_ptr, bg_ptr,
                start_ptr, count_ptr, tri_ptr,
                rgb_ptr, alpha_ptr, dacc_ptr, nout_ptr, tfin_ptr, last_ptr, pmax_ptr,
                H, W, tiles_x, TILE: tl.constexpr, C: tl.constexpr, CP: tl.constexpr,
                PER_VERTEX: tl.constexpr, CS: tl.constexpr, BLOCK_P: tl.constexpr,
                POWF: tl.constexpr):
    tile_id = tl.program_id(0)
    p = tl.arange(0, BLOCK_P)
    pmask = p < TILE * TILE
    xi = (tile_id % tiles_x) * TILE + p % TILE
    yi = (tile_id // tiles_x) * TILE + p // TILE
    px = xi.to(tl.float32)
    py = yi.to(tl.float32)
    ch = tl.arange(0, CP)
    cmask = ch < C

    start = tl.load(start_ptr + tile_id)
    end = start + tl.load(count_ptr + tile_id)

    omask = pmask & (xi < W) & (yi < H)
    T = tl.full([BLOCK_P], 1.0, tl.float32)
    alive = omask  # pixels of border tiles outside the image are not rendered (nor count for max_weight)
    last = tl.zeros([BLOCK_P], tl.int32)
    acc_c = tl.zeros([BLOCK_P, CP], tl.float32)
    acc_a = tl.zeros([BLOCK_P], tl.float32)
    acc_d = tl.zeros([BLOCK_P], tl.float32)
    acc_n0 = tl.zeros([BLOCK_P], tl.float32)
    acc_n1 = tl.zeros([BLOCK_P], tl.float32)
    acc_n2 = tl.zeros([BLOCK_P], tl.float32)
    n_alive = tl.max(alive.to(tl.int32), axis=0)
    j = start
    while (j < end) & (n_alive > 0):
        t = tl.load(tri_ptr + j).to(tl.int64)
        (n0x, n0y, d0, n1x, n1y, d1, n2x, n2y, d2, phis, sig, op,
         ax, ay, bx, by, cx, cy, z0, z1, z2) = _load_tri(lines_ptr, phis_ptr, sig_ptr, op_ptr, uv_ptr, z_ptr, t)
        L0 = px * n0x + py * n0y + d0
        L1 = px * n1x + py * n1y + d1
        L2 = px * n2x + py * n2y + d2
        phi = tl.maximum(tl.maximum(L0, L1), L2)
        inside = phi <= 0
        r = tl.maximum(tl.div_rn(phi, phis), 1e-30)
        if POWF:  # powf, as torch on CUDA: bit-identical alphas, hence the same contributors
            I = libdevice.pow(r, sig)
        else:  # the interpreter has no libdevice
            I = tl.exp2(sig * tl.log2(r))
        a = tl.minimum(op * I, _ALPHA_MAX)
        valid = inside & (a >= _ALPHA_MIN) & alive
        T_new = T * (1.0 - a)
        contrib = valid & (T_new >= _T_STOP)
        alive = alive & ~(valid & (T_new < _T_STOP))
        w = tl.where(contrib, a * T, 0.0)
        tl.store(pmax_ptr + j, tl.max(w, axis=0))
        # perspective-correct barycentrics and the plane's z along the pixel ray
        area = _cross(ax, ay, bx, by, cx, cy)
        area = tl.where(tl.abs(area) > 1e-30, area, 1.0)
        wz0 = _cross(px, py, bx, by, cx, cy) / area / z0
        wz1 = _cross(ax, ay, px, py, cx, cy) / area / z1
        wz2 = _cross(ax, ay, bx, by, px, py) / area / z2
        Z = 1.0 / tl.where(contrib, wz0 + wz1 + wz2, 1.0)
        cb = col_ptr + t * CS
        if PER_VERTEX:
            c0 = tl.load(cb + ch, mask=cmask, other=0.0)
            c1 = tl.load(cb + C + ch, mask=cmask, other=0.0)
            c2 = tl.load(cb + 2 * C + ch, mask=cmask, other=0.0)
            col = (wz0 * Z)[:, None] * c0[None, :] + (wz1 * Z)[:, None] * c1[None, :] \
                + (wz2 * Z)[:, None] * c2[None, :]
        else:
            col = tl.load(cb + ch, mask=cmask, other=0.0)[None, :] + tl.zeros([BLOCK_P, CP], tl.float32)
        acc_c += w[:, None] * col
        acc_a += w
        acc_d += w * Z
        acc_n0 += w * tl.load(nrm_ptr + t * 3 + 0)
        acc_n1 += w * tl.load(nrm_ptr + t * 3 + 1)
        acc_n2 += w * tl.load(nrm_ptr + t * 3 + 2)
        T = tl.where(contrib, T_new, T)
        last = tl.where(contrib, j - start + 1, last)
        n_alive = tl.max(alive.to(tl.int32), axis=0)
        j += 1

    bg = tl.load(bg_ptr + ch, mask=cmask, other=0.0)
    rgb = acc_c + (1.0 - acc_a)[:, None] * bg[None, :]
    pix = yi.to(tl.int64) * W + xi
    tl.store(rgb_ptr + pix[:, None] * C + ch[None, :], rgb, mask=omask[:, None] & cmask[None, :])
    tl.store(alpha_ptr + pix, acc_a, mask=omask)
    tl.store(dacc_ptr + pix, acc_d, mask=omask)
    tl.store(nout_ptr + pix * 3 + 0, acc_n0, mask=omask)
    tl.store(nout_ptr + pix * 3 + 1, acc_n1, mask=omask)
    tl.store(nout_ptr + pix * 3 + 2, acc_n2, mask=omask)
    state = tile_id.to(tl.int64) * BLOCK_P + p
    tl.store(tfin_ptr + state, T)
    tl.store(last_ptr + state, last)


@triton.jit
def _bwd_kernel(lines_ptr, phis_ptr, sig_ptr, op_ptr, uv_ptr, z_ptr, col_ptr, nrm_ptr, bg_ptr,
                start_ptr, tri_ptr, tfin_ptr, last_ptr,
                g_rgb_ptr, g_alpha_ptr, g_dacc_ptr, g_n_ptr,
                g_lines_ptr, g_phis_ptr, g_sig_ptr, g_op_ptr, g_uv_ptr, g_z_ptr, g_col_ptr, g_nrm_ptr,
                H, W, tiles_x, TILE: tl.constexpr, C: tl.constexpr, CP: tl.constexpr,
                PER_VERTEX: tl.constexpr, CS: tl.constexpr, BLOCK_P: tl.constexpr,
                POWF: tl.constexpr):
    tile_id = tl.program_id(0)
    p = tl.arange(0, BLOCK_P)
    pmask = p < TILE * TILE
    xi = (tile_id % tiles_x) * TILE + p % TILE
    yi = (tile_id // tiles_x) * TILE + p // TILE
    px = xi.to(tl.float32)
    py = yi.to(tl.float32)
    ch = tl.arange(0, CP)
    cmask = ch < C
    omask = pmask & (xi < W) & (yi < H)
    pix = yi.to(tl.int64) * W + xi
    state = tile_id.to(tl.int64) * BLOCK_P + p

    start = tl.load(start_ptr + tile_id)
    T = tl.load(tfin_ptr + state)
    last = tl.load(last_ptr + state)
    n_iter = tl.max(last, axis=0)
    # off-image pixels get zero output gradients, hence contribute nothing
    g_rgb = tl.load(g_rgb_ptr + pix[:, None] * C + ch[None, :], mask=omask[:, None] & cmask[None, :], other=0.0)
    g_a = tl.load(g_alpha_ptr + pix, mask=omask, other=0.0)
    g_d = tl.load(g_dacc_ptr + pix, mask=omask, other=0.0)
    g_n0 = tl.load(g_n_ptr + pix * 3 + 0, mask=omask, other=0.0)
    g_n1 = tl.load(g_n_ptr + pix * 3 + 1, mask=omask, other=0.0)
    g_n2 = tl.load(g_n_ptr + pix * 3 + 2, mask=omask, other=0.0)
    bg = tl.load(bg_ptr + ch, mask=cmask, other=0.0)
    g_bg = tl.sum(g_rgb * bg[None, :], axis=1)  # rgb = sum w (c - bg) + bg
    S = tl.zeros([BLOCK_P], tl.float32)  # dL/dT-weighted sum of everything behind
    for k in range(0, n_iter):
        jl = n_iter - 1 - k
        t = tl.load(tri_ptr + start + jl).to(tl.int64)
        (n0x, n0y, d0, n1x, n1y, d1, n2x, n2y, d2, phis, sig, op,
         ax, ay, bx, by, cx, cy, z0, z1, z2) = _load_tri(lines_ptr, phis_ptr, sig_ptr, op_ptr, uv_ptr, z_ptr, t)
        L0 = px * n0x + py * n0y + d0
        L1 = px * n1x + py * n1y + d1
        L2 = px * n2x + py * n2y + d2
        phi = tl.maximum(tl.maximum(L0, L1), L2)
        inside = phi <= 0
        r = tl.maximum(tl.div_rn(phi, phis), 1e-30)
        if POWF:  # powf, as torch on CUDA: bit-identical alphas, hence the same contributors
            I = libdevice.pow(r, sig)
        else:  # the interpreter has no libdevice
            I = tl.exp2(sig * tl.log2(r))
        m = op * I
        a = tl.minimum(m, _ALPHA_MAX)
        valid = inside & (a >= _ALPHA_MIN) & (jl < last) & omask
        if tl.max(valid.to(tl.int32), axis=0) > 0:
            Tk = tl.where(valid, T / (1.0 - a), T)
            w = tl.where(valid, a * Tk, 0.0)
            area = _cross(ax, ay, bx, by, cx, cy)
            area = tl.where(tl.abs(area) > 1e-30, area, 1.0)
            lam0 = tl.where(valid, _cross(px, py, bx, by, cx, cy) / area, 0.0)
            lam1 = tl.where(valid, _cross(ax, ay, px, py, cx, cy) / area, 0.0)
            lam2 = tl.where(valid, _cross(ax, ay, bx, by, px, py) / area, 0.0)
            wz0 = lam0 / z0
            wz1 = lam1 / z1
            wz2 = lam2 / z2
            Z = 1.0 / tl.where(valid, wz0 + wz1 + wz2, 1.0)
            b0 = wz0 * Z
            b1 = wz1 * Z
            b2 = wz2 * Z
            nx = tl.load(nrm_ptr + t * 3 + 0)
            ny = tl.load(nrm_ptr + t * 3 + 1)
            nz = tl.load(nrm_ptr + t * 3 + 2)
            cb = col_ptr + t * CS
            gcb = g_col_ptr + t * CS
            wg = w[:, None] * g_rgb  # dL/dcol per pixel
            if PER_VERTEX:
                c0 = tl.load(cb + ch, mask=cmask, other=0.0)
                c1 = tl.load(cb + C + ch, mask=cmask, other=0.0)
                c2 = tl.load(cb + 2 * C + ch, mask=cmask, other=0.0)
                gcol_dot0 = tl.sum(g_rgb * c0[None, :], axis=1)
                gcol_dot1 = tl.sum(g_rgb * c1[None, :], axis=1)
                gcol_dot2 = tl.sum(g_rgb * c2[None, :], axis=1)
                G_col = b0 * gcol_dot0 + b1 * gcol_dot1 + b2 * gcol_dot2
                tl.atomic_add(gcb + ch, tl.sum(wg * b0[:, None], axis=0), mask=cmask)
                tl.atomic_add(gcb + C + ch, tl.sum(wg * b1[:, None], axis=0), mask=cmask)
                tl.atomic_add(gcb + 2 * C + ch, tl.sum(wg * b2[:, None], axis=0), mask=cmask)
                gb0 = w * gcol_dot0
                gb1 = w * gcol_dot1
                gb2 = w * gcol_dot2
            else:
                c = tl.load(cb + ch, mask=cmask, other=0.0)
                G_col = tl.sum(g_rgb * c[None, :], axis=1)
                tl.atomic_add(gcb + ch, tl.sum(wg, axis=0), mask=cmask)
                gb0 = tl.zeros([BLOCK_P], tl.float32)
                gb1 = gb0
                gb2 = gb0
            # dL/dw of this pair, then dL/dalpha through the compositing
            G = G_col - g_bg + g_a + g_d * Z + g_n0 * nx + g_n1 * ny + g_n2 * nz
            g_alpha = tl.where(valid, Tk * (G - S), 0.0)
            S = tl.where(valid, G * a + (1.0 - a) * S, S)
            T = Tk
            # alpha = min(0.99, op I): torch.minimum splits the gradient on a tie
            g_m = tl.where(m < _ALPHA_MAX, g_alpha, tl.where(m == _ALPHA_MAX, 0.5 * g_alpha, 0.0))
            gI = g_m * op
            g_r = tl.where(tl.div_rn(phi, phis) >= 1e-30, gI * sig * I / r, 0.0)
            g_phi = g_r / phis
            n_max = (L0 == phi).to(tl.float32) + (L1 == phi).to(tl.float32) + (L2 == phi).to(tl.float32)
            gL0 = tl.where(L0 == phi, g_phi / n_max, 0.0)  # amax: ties share the gradient evenly
            gL1 = tl.where(L1 == phi, g_phi / n_max, 0.0)
            gL2 = tl.where(L2 == phi, g_phi / n_max, 0.0)
            glb = g_lines_ptr + t * 9
            tl.atomic_add(glb + 0, tl.sum(gL0 * px, axis=0))
            tl.atomic_add(glb + 1, tl.sum(gL0 * py, axis=0))
            tl.atomic_add(glb + 2, tl.sum(gL0, axis=0))
            tl.atomic_add(glb + 3, tl.sum(gL1 * px, axis=0))
            tl.atomic_add(glb + 4, tl.sum(gL1 * py, axis=0))
            tl.atomic_add(glb + 5, tl.sum(gL1, axis=0))
            tl.atomic_add(glb + 6, tl.sum(gL2 * px, axis=0))
            tl.atomic_add(glb + 7, tl.sum(gL2 * py, axis=0))
            tl.atomic_add(glb + 8, tl.sum(gL2, axis=0))
            tl.atomic_add(g_phis_ptr + t, tl.sum(-g_r * r / phis, axis=0))
            tl.atomic_add(g_sig_ptr + t, tl.sum(gI * I * tl.log(r), axis=0))
            tl.atomic_add(g_op_ptr + t, tl.sum(g_m * I, axis=0))
            tl.atomic_add(g_nrm_ptr + t * 3 + 0, tl.sum(w * g_n0, axis=0))
            tl.atomic_add(g_nrm_ptr + t * 3 + 1, tl.sum(w * g_n1, axis=0))
            tl.atomic_add(g_nrm_ptr + t * 3 + 2, tl.sum(w * g_n2, axis=0))
            # barycentrics: b_i = wz_i Z, Z = 1 / sum wz, wz_i = lam_i / z_i, lam_i = cross_i / area
            gZ = w * g_d
            gdot = gb0 * b0 + gb1 * b1 + gb2 * b2
            gwz0 = Z * (gb0 - gdot) - gZ * Z * Z
            gwz1 = Z * (gb1 - gdot) - gZ * Z * Z
            gwz2 = Z * (gb2 - gdot) - gZ * Z * Z
            gl0 = gwz0 / z0
            gl1 = gwz1 / z1
            gl2 = gwz2 / z2
            tl.atomic_add(g_z_ptr + t * 3 + 0, tl.sum(-gwz0 * wz0 / z0, axis=0))
            tl.atomic_add(g_z_ptr + t * 3 + 1, tl.sum(-gwz1 * wz1 / z1, axis=0))
            tl.atomic_add(g_z_ptr + t * 3 + 2, tl.sum(-gwz2 * wz2 / z2, axis=0))
            gc0 = gl0 / area
            gc1 = gl1 / area
            gc2 = gl2 / area
            ga_ = -(gl0 * lam0 + gl1 * lam1 + gl2 * lam2) / area
            # d cross(o, q, r): o -> (q_y - r_y, r_x - q_x), q -> (r_y - o_y, o_x - r_x), r -> (o_y - q_y, q_x - o_x)
            gax = gc1 * (py - cy) + gc2 * (by - py) + ga_ * (by - cy)
            gay = gc1 * (cx - px) + gc2 * (px - bx) + ga_ * (cx - bx)
            gbx = gc0 * (cy - py) + gc2 * (py - ay) + ga_ * (cy - ay)
            gby = gc0 * (px - cx) + gc2 * (ax - px) + ga_ * (ax - cx)
            gcx = gc0 * (py - by) + gc1 * (ay - py) + ga_ * (ay - by)
            gcy = gc0 * (bx - px) + gc1 * (px - ax) + ga_ * (bx - ax)
            gub = g_uv_ptr + t * 6
            tl.atomic_add(gub + 0, tl.sum(gax, axis=0))
            tl.atomic_add(gub + 1, tl.sum(gay, axis=0))
            tl.atomic_add(gub + 2, tl.sum(gbx, axis=0))
            tl.atomic_add(gub + 3, tl.sum(gby, axis=0))
            tl.atomic_add(gub + 4, tl.sum(gcx, axis=0))
            tl.atomic_add(gub + 5, tl.sum(gcy, axis=0))


def _block_p(tile: int) -> int:
    """Pixels per program: the tile, padded to a power of two."""
    return max(16, triton.next_power_of_2(tile * tile))


def _consts(tile: int, C: int, per_vertex: bool) -> dict:
    """Compile-time parameters shared by both kernels."""
    bp = _block_p(tile)
    return dict(TILE=tile, C=C, CP=triton.next_power_of_2(C), PER_VERTEX=per_vertex, CS=C * (3 if per_vertex else 1),
                BLOCK_P=bp, POWF=not is_interpreted(_fwd_kernel), num_warps=4 if bp <= 256 else 8,
                enable_fp_fusion=False)  # no FMA contraction: edge tests and alphas as torch computes them


class _RasterFn(torch.autograd.Function):
    """(lines, phi_s, sigma, opacity, uv, z, colors, normal, bg) -> rgb, alpha, depth_acc, normal, pair max w."""

    @staticmethod
    def forward(ctx, lines, phi_s, sigma, opacity, uv, z, colors, normal, bg, starts, counts, tri, meta):
        H, W, tile, tiles_x, n_tiles = meta
        dev = lines.device
        C = colors.shape[-1]
        per_vertex = colors.ndim == 3
        ins = [x.detach().float().contiguous() for x in (lines, phi_s, sigma, opacity, uv, z, colors, normal, bg)]
        BP = _block_p(tile)
        rgb = torch.empty(H, W, C, device=dev)
        alpha = torch.empty(H, W, device=dev)
        dacc = torch.empty(H, W, device=dev)
        nout = torch.empty(H, W, 3, device=dev)
        tfin = torch.empty(n_tiles * BP, device=dev)
        last = torch.empty(n_tiles * BP, dtype=torch.int32, device=dev)
        pmax = torch.zeros(max(tri.numel(), 1), device=dev)
        _fwd_kernel[(n_tiles,)](*ins, starts, counts, tri, rgb, alpha, dacc, nout, tfin, last, pmax,
                                H, W, tiles_x, **_consts(tile, C, per_vertex))
        ctx.save_for_backward(*ins, starts, tri, tfin, last, alpha)
        ctx.meta = meta
        ctx.dtypes = [x.dtype for x in (lines, phi_s, sigma, opacity, uv, z, colors, normal, bg)]
        ctx.per_vertex = per_vertex
        ctx.mark_non_differentiable(pmax)
        return rgb, alpha, dacc, nout, pmax

    @staticmethod
    def backward(ctx, g_rgb, g_alpha, g_dacc, g_n, _g_pmax):
        lines, phi_s, sigma, opacity, uv, z, colors, normal, bg, starts, tri, tfin, last, alpha_out = ctx.saved_tensors
        H, W, tile, tiles_x, n_tiles = ctx.meta
        C = colors.shape[-1]

        def g(x, shape):
            return torch.zeros(shape, device=lines.device) if x is None else x.float().contiguous()

        g_rgb, g_alpha = g(g_rgb, (H, W, C)), g(g_alpha, (H, W))
        g_dacc, g_n = g(g_dacc, (H, W)), g(g_n, (H, W, 3))
        grads = [torch.zeros_like(x) for x in (lines, phi_s, sigma, opacity, uv, z, colors, normal)]
        if tri.numel():
            _bwd_kernel[(n_tiles,)](lines, phi_s, sigma, opacity, uv, z, colors, normal, bg, starts, tri, tfin, last,
                                    g_rgb, g_alpha, g_dacc, g_n, *grads, H, W, tiles_x,
                                    **_consts(tile, C, ctx.per_vertex))
        g_bg = None
        if ctx.needs_input_grad[8]:  # rgb = acc + (1 - alpha) bg, with alpha the forward output
            g_bg = (g_rgb * (1.0 - alpha_out)[..., None]).sum((0, 1)).to(ctx.dtypes[8])
        grads = [gr.to(dt) for gr, dt in zip(grads, ctx.dtypes)]
        return (*grads, g_bg, None, None, None, None)


def rasterize_triangles_triton(verts_cam: Tensor, K: Tensor, colors: Tensor, opacity: Tensor, sigma,
                               image_size: tuple[int, int], background=None, tile: int = 16, hard: bool = False,
                               near: float = 0.2, min_size: float | None = None, max_size: float = 1600.0,
                               min_inradius: float | None = None, chunk_elems: int = CHUNK_ELEMS) -> dict[str, Tensor]:
    """`reference.rasterize_triangles` with Triton compositing (same signature, same outputs).

    verts_cam: Tensor   # [N, 3, 3] camera-space vertices, float32 (CUDA, or CPU under TRITON_INTERPRET=1)
    K: Tensor           # [3, 3] intrinsics
    colors: Tensor      # [N, C] per-triangle, or [N, 3, C] per-vertex (perspective-correct)
    opacity: Tensor     # [N]
    sigma: Tensor|float # [N] or scalar
    image_size          # (H, W)
    background          # [C] or None (zeros); differentiable when a tensor requiring grad
    hard: bool          # True: runs the torch reference (no Triton hard-mode kernel)
    chunk_elems         # unused (the reference's memory bound)
    returns dict: rgb [H, W, C], alpha [H, W], depth [H, W], depth_acc [H, W], normal [H, W, 3],
                  max_weight [N] (detached), n_touched [N] (detached)
    """
    if hard:
        return rasterize_triangles(verts_cam, K, colors, opacity, sigma, image_size, background, tile, hard, near,
                                   min_size, max_size, min_inradius, chunk_elems)
    H, W, K, opacity, sigma, bg = normalize_inputs(verts_cam, K, colors, opacity, sigma, image_size, background, tile)
    N = verts_cam.shape[0]
    dev, dtype = verts_cam.device, verts_cam.dtype

    pre = preprocess(verts_cam, K, opacity, sigma, False, near, min_size, max_size, min_inradius)
    tid, tri, tx_n, ty_n = _tile_pairs(pre["bbox"], pre["valid"], pre["depth"], H, W, tile)
    n_tiles = tx_n * ty_n
    counts = torch.bincount(tid, minlength=n_tiles)
    starts = torch.cumsum(counts, 0) - counts
    n_touched = torch.bincount(tri, minlength=N)

    meta = (H, W, tile, tx_n, n_tiles)
    fn_in = (pre["lines"], pre["phi_s"], sigma, opacity, pre["uv"], verts_cam[..., 2], colors, pre["normal"], bg,
             starts.to(torch.int32).contiguous(), counts.to(torch.int32).contiguous(),
             tri.to(torch.int32).contiguous(), meta)
    rgb, alpha, dacc, nrm, pmax = _RasterFn.apply(*fn_in)
    covered = alpha > 0
    depth = torch.where(covered, dacc / torch.where(covered, alpha, torch.ones_like(alpha)), torch.zeros_like(alpha))
    max_weight = torch.zeros(N, dtype=dtype, device=dev)
    if tri.numel():
        max_weight = max_weight.scatter_reduce(0, tri, pmax[:tri.numel()].to(dtype), reduce="amax")
    return dict(rgb=rgb, alpha=alpha, depth=depth, depth_acc=dacc, normal=nrm, max_weight=max_weight,
                n_touched=n_touched)


def check(verts_cam: Tensor, K: Tensor, colors: Tensor, opacity: Tensor, sigma=None, image_size=(1, 1),
          *args, **kwargs) -> list[str]:
    """Dispatcher check: can the compiled/interpreted kernels take these tensors here?"""
    tensors = [t for t in (verts_cam, colors, opacity) if isinstance(t, Tensor)]
    try:
        work = int(image_size[0]) * int(image_size[1]) * max(1, len(verts_cam))
    except (TypeError, IndexError, ValueError):
        work = 0  # malformed arguments: the implementation raises the UsageError
    return triton_refusals(_fwd_kernel, tensors, work)
