"""The compiled CPU tile kernels of op ``trisplat`` (numba, ``parallel=True`` over 16 x 16 tiles);
the per-triangle kernels before and after them are in `numba_triangles`.

Plain numpy in, numpy out: `numba_impl` wraps them in a torch autograd function. Every kernel
walks one tile per thread, the tile's triangles in list order (centroid depth rank), and for each
(tile, triangle) pair only the pixels of the triangle's rectangle inside the tile (the rectangle
of `reference._pixel_rects`), so small triangles cost a few pixels, not a whole tile.

Decisions are computed in float32 exactly as the reference does (edge values ``(x n_x + y n_y) + d``,
``r = max(phi/phi_s, 1e-30)``, ``I = r^sigma``, ``alpha = min(0.99, opacity I)``, ``alpha >= 1/255``),
with no FMA contraction (numba does not contract without ``fastmath``); transmittance is float64,
like the reference's float64 log-sum. Gradients are accumulated in float64 per (tile, triangle) pair
into ``gbuf [P, G]``, one row per pair (no two threads write one row), which the caller sums per
triangle. Row layout (`G = 24 + V C`): lines 0:9, phi_s 9, sigma 10, opacity 11, uv 12:18, vertex
z 18:21, normal 21:24, colours 24: (V = 3 per-vertex colours, or 1).

Soft mode composites in list order and stops a pixel before the pair that drives T below 1e-4;
its backward traverses back to front, recovering ``T_k = T_{k+1} / (1 - alpha_k)`` (alpha <= 0.99).
Hard mode orders each pixel's pairs by the plane's depth at the pixel (ties: list order), picked
lazily (one scan per contributor: a z-buffer when opaque), and stops after the pair that drives T
below 1e-4; its backward recomputes the contributors and their T front to back (alpha may be 1).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

# OpenMP (as torch), else numba's own work queue: TBB last (an old TBB warns when probed)
numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]

A_MAX = np.float32(0.99)
A_MIN = np.float32(1.0 / 255.0)
R_MIN = np.float32(1e-30)
T_STOP = 1e-4
G_FIXED = 24  # gbuf columns before the colours


@njit(cache=True, error_model="numpy")
def _cross(ox, oy, qx, qy, rx, ry):
    """2D cross product (q - o) x (r - o), as reference._cross."""
    return (qx - ox) * (ry - oy) - (qy - oy) * (rx - ox)


@njit(cache=True, error_model="numpy")
def _tile_box(tid, tile, tiles_x, H, W):
    x0 = (tid % tiles_x) * tile
    y0 = (tid // tiles_x) * tile
    return x0, y0, min(x0 + tile, W), min(y0 + tile, H)


@njit(cache=True, error_model="numpy")
def _soft_alpha(lines, t, xf, yf, ps, sg, op):
    """(alpha, phi, r, I, L0, L1, L2) of pixel (xf, yf) for triangle t; alpha = 0 when outside."""
    L0 = (xf * lines[t, 0, 0] + yf * lines[t, 0, 1]) + lines[t, 0, 2]
    L1 = (xf * lines[t, 1, 0] + yf * lines[t, 1, 1]) + lines[t, 1, 2]
    L2 = (xf * lines[t, 2, 0] + yf * lines[t, 2, 1]) + lines[t, 2, 2]
    phi = max(L0, max(L1, L2))
    if phi > 0:
        return np.float32(0.0), phi, np.float32(0.0), np.float32(0.0), L0, L1, L2
    r = max(phi / ps, R_MIN)
    I = r ** sg
    return min(op * I, A_MAX), phi, r, I, L0, L1, L2


@njit(cache=True, error_model="numpy")
def _inside(lines, t, xf, yf):
    L0 = (xf * lines[t, 0, 0] + yf * lines[t, 0, 1]) + lines[t, 0, 2]
    L1 = (xf * lines[t, 1, 0] + yf * lines[t, 1, 1]) + lines[t, 1, 2]
    L2 = (xf * lines[t, 2, 0] + yf * lines[t, 2, 1]) + lines[t, 2, 2]
    return max(L0, max(L1, L2)) <= 0


@njit(cache=True, error_model="numpy")
def _bary(uv, z, t, xf, yf):
    """(lam0, lam1, lam2, wz0, wz1, wz2, Z): barycentrics, lam_i / z_i and the plane's z at the pixel."""
    ax, ay, bx, by, cx, cy = uv[t, 0, 0], uv[t, 0, 1], uv[t, 1, 0], uv[t, 1, 1], uv[t, 2, 0], uv[t, 2, 1]
    area = _cross(ax, ay, bx, by, cx, cy)
    if not abs(area) > 1e-30:
        area = np.float32(1.0)
    lam0 = _cross(xf, yf, bx, by, cx, cy) / area
    lam1 = _cross(ax, ay, xf, yf, cx, cy) / area
    lam2 = _cross(ax, ay, bx, by, xf, yf) / area
    wz0, wz1, wz2 = lam0 / z[t, 0], lam1 / z[t, 1], lam2 / z[t, 2]
    return lam0, lam1, lam2, wz0, wz1, wz2, np.float32(1.0) / ((wz0 + wz1) + wz2)


@njit(cache=True, error_model="numpy")
def _tri_consts(uv, z, t):
    """Per-triangle constants of `_bary_c`: (ax, ay, bx, by, cx, cy, 1/area, 1/z0, 1/z1, 1/z2)."""
    ax, ay, bx, by, cx, cy = uv[t, 0, 0], uv[t, 0, 1], uv[t, 1, 0], uv[t, 1, 1], uv[t, 2, 0], uv[t, 2, 1]
    area = _cross(ax, ay, bx, by, cx, cy)
    if not abs(area) > 1e-30:
        area = np.float32(1.0)
    one = np.float32(1.0)
    return ax, ay, bx, by, cx, cy, one / area, one / z[t, 0], one / z[t, 1], one / z[t, 2]


@njit(cache=True, error_model="numpy")
def _bary_c(ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2, xf, yf):
    """`_bary` with the triangle's reciprocals precomputed (values to float32 rounding of it; the
    hard mode's depth order keeps `_bary`, the reference's exact arithmetic)."""
    lam0 = _cross(xf, yf, bx, by, cx, cy) * ia
    lam1 = _cross(ax, ay, xf, yf, cx, cy) * ia
    lam2 = _cross(ax, ay, bx, by, xf, yf) * ia
    wz0, wz1, wz2 = lam0 * iz0, lam1 * iz1, lam2 * iz2
    return lam0, lam1, lam2, wz0, wz1, wz2, np.float32(1.0) / ((wz0 + wz1) + wz2)


@njit(cache=True, error_model="numpy")
def _accumulate(acc, l, w, cols, nrm, t, wz0, wz1, wz2, Z):
    """acc[l] += w (colour, 1, z, normal) for one contributor."""
    C = cols.shape[2]
    if cols.shape[1] == 3:
        b0, b1, b2 = wz0 * Z, wz1 * Z, wz2 * Z
        for c in range(C):
            acc[l, c] += w * ((b0 * cols[t, 0, c] + b1 * cols[t, 1, c]) + b2 * cols[t, 2, c])
    else:
        for c in range(C):
            acc[l, c] += w * cols[t, 0, c]
    acc[l, C] += w
    acc[l, C + 1] += w * Z
    acc[l, C + 2] += w * nrm[t, 0]
    acc[l, C + 3] += w * nrm[t, 1]
    acc[l, C + 4] += w * nrm[t, 2]


@njit(cache=True, error_model="numpy")
def _write_tile(rgb, alpha, depth, dacc, nout, acc, bg, x0, y0, x1, y1):
    """The tile's pixels from acc: rgb (+ (1 - alpha) bg), alpha, depth (dacc / alpha, 0 where
    alpha = 0, the reference's normalised depth), dacc, normal."""
    C = bg.shape[0]
    tw = x1 - x0
    for y in range(y0, y1):
        for x in range(x0, x1):
            l = (y - y0) * tw + (x - x0)
            a = np.float32(acc[l, C])
            for c in range(C):
                rgb[y, x, c] = acc[l, c] + (1.0 - acc[l, C]) * bg[c]
            d = np.float32(acc[l, C + 1])
            alpha[y, x] = a
            dacc[y, x] = d
            depth[y, x] = d / a if a > 0 else np.float32(0.0)
            for c in range(3):
                nout[y, x, c] = acc[l, C + 2 + c]


@njit(cache=True, error_model="numpy")
def _pixel_grads(ga, k, w, gp, l, G, cols, t, xf, yf, ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2,
                 lam0, lam1, lam2, wz0, wz1, wz2, Z):
    """Add to ga[k] the gradients of one contributor's w (colour, z, normal) with w held fixed:
    colours, normal, and through the perspective-correct barycentrics the uv and vertex z.

    gp[l] [C + 5]: the pixel's output gradients (colour, alpha, depth_acc, normal); ia, iz: 1/area, 1/z_i.
    """
    C = cols.shape[2]
    ga[k, 21] += w * gp[l, C + 2]
    ga[k, 22] += w * gp[l, C + 3]
    ga[k, 23] += w * gp[l, C + 4]
    gZ = w * gp[l, C + 1]
    if cols.shape[1] == 3:
        b0, b1, b2 = wz0 * Z, wz1 * Z, wz2 * Z
        d0 = 0.0
        d1 = 0.0
        d2 = 0.0
        for c in range(C):
            g = w * gp[l, c]
            ga[k, G + c] += g * b0
            ga[k, G + C + c] += g * b1
            ga[k, G + 2 * C + c] += g * b2
            d0 += gp[l, c] * cols[t, 0, c]
            d1 += gp[l, c] * cols[t, 1, c]
            d2 += gp[l, c] * cols[t, 2, c]
        gb0, gb1, gb2 = w * d0, w * d1, w * d2
    else:
        for c in range(C):
            ga[k, G + c] += w * gp[l, c]
        b0 = b1 = b2 = 0.0
        gb0 = gb1 = gb2 = 0.0
    # b_i = wz_i Z, Z = 1 / sum wz, wz_i = lam_i / z_i, lam_i = cross_i / area
    Zd = float(Z)
    gdot = gb0 * b0 + gb1 * b1 + gb2 * b2
    gzz = gZ * Zd * Zd
    gwz0 = Zd * (gb0 - gdot) - gzz
    gwz1 = Zd * (gb1 - gdot) - gzz
    gwz2 = Zd * (gb2 - gdot) - gzz
    gl0, gl1, gl2 = gwz0 * iz0, gwz1 * iz1, gwz2 * iz2
    ga[k, 18] -= gl0 * wz0
    ga[k, 19] -= gl1 * wz1
    ga[k, 20] -= gl2 * wz2
    gc0, gc1, gc2 = gl0 * ia, gl1 * ia, gl2 * ia
    gar = -(gl0 * lam0 + gl1 * lam1 + gl2 * lam2) * ia
    # d cross(o, q, r): o -> (q_y - r_y, r_x - q_x), q -> (r_y - o_y, o_x - r_x), r -> (o_y - q_y, q_x - o_x)
    ga[k, 12] += gc1 * (yf - cy) + gc2 * (by - yf) + gar * (by - cy)
    ga[k, 13] += gc1 * (cx - xf) + gc2 * (xf - bx) + gar * (cx - bx)
    ga[k, 14] += gc0 * (cy - yf) + gc2 * (yf - ay) + gar * (cy - ay)
    ga[k, 15] += gc0 * (xf - cx) + gc2 * (ax - xf) + gar * (ax - cx)
    ga[k, 16] += gc0 * (yf - by) + gc1 * (ay - yf) + gar * (ay - by)
    ga[k, 17] += gc0 * (bx - xf) + gc1 * (xf - ax) + gar * (bx - ax)


@njit(cache=True, error_model="numpy")
def _pair_dw(gp, l, gbg, cols, nrm, t, wz0, wz1, wz2, Z):
    """dL/dw of one contributor at pixel l: its (colour - bg, 1, z, normal) against gp[l]."""
    C = cols.shape[2]
    G = (-gbg + gp[l, C] + gp[l, C + 1] * Z + gp[l, C + 2] * nrm[t, 0] + gp[l, C + 3] * nrm[t, 1]
         + gp[l, C + 4] * nrm[t, 2])
    if cols.shape[1] == 3:
        b0, b1, b2 = wz0 * Z, wz1 * Z, wz2 * Z
        for c in range(C):
            G += gp[l, c] * ((b0 * cols[t, 0, c] + b1 * cols[t, 1, c]) + b2 * cols[t, 2, c])
    else:
        for c in range(C):
            G += gp[l, c] * cols[t, 0, c]
    return G


# ---------------------------------------------------------------------------------------- soft
@njit(parallel=True, cache=True, error_model="numpy")
def soft_forward(lines, phis, sig, op, uv, z, cols, nrm, bg, rect, starts, tri,
                 H, W, tile, tiles_x, out, t_final, last, pmax):
    """Front-to-back compositing per tile. out: (rgb [H, W, C], alpha, depth, depth_acc [H, W], normal [H, W, 3]);
    t_final [H, W] float64 and last [H, W] (list position + 1 of the last contributor, in its tile)
    for the backward; pmax [P] max blending weight per pair."""
    n_tiles = starts.shape[0] - 1
    C = bg.shape[0]
    for tid in prange(n_tiles):
        x0, y0, x1, y1 = _tile_box(tid, tile, tiles_x, H, W)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        T = np.ones(npx)
        acc = np.zeros((npx, C + 5))
        done = np.zeros(npx, np.bool_)
        lst = np.zeros(npx, np.int32)
        alive = npx
        s, e = starts[tid], starts[tid + 1]
        for j in range(s, e):
            if alive == 0:
                break
            t = tri[j]
            ps, sg, o = phis[t], sig[t], op[t]
            ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2 = _tri_consts(uv, z, t)
            best = 0.0
            for y in range(max(y0, rect[t, 1]), min(y1 - 1, rect[t, 3]) + 1):
                yf = np.float32(y)
                for x in range(max(x0, rect[t, 0]), min(x1 - 1, rect[t, 2]) + 1):
                    l = (y - y0) * tw + (x - x0)
                    if done[l]:
                        continue
                    xf = np.float32(x)
                    a = _soft_alpha(lines, t, xf, yf, ps, sg, o)[0]
                    if not a >= A_MIN:
                        continue
                    Tn = T[l] * (1.0 - a)
                    if Tn < T_STOP:
                        done[l] = True
                        alive -= 1
                        continue
                    w = np.float32(a * T[l])
                    _, _, _, wz0, wz1, wz2, Z = _bary_c(ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2, xf, yf)
                    _accumulate(acc, l, w, cols, nrm, t, wz0, wz1, wz2, Z)
                    T[l] = Tn
                    lst[l] = j - s + 1
                    best = max(best, w)
            pmax[j] = best
        _write_tile(out[0], out[1], out[2], out[3], out[4], acc, bg, x0, y0, x1, y1)
        for y in range(y0, y1):
            for x in range(x0, x1):
                l = (y - y0) * tw + (x - x0)
                t_final[y, x] = T[l]
                last[y, x] = lst[l]


@njit(parallel=True, cache=True, error_model="numpy")
def soft_backward(lines, phis, sig, op, uv, z, cols, nrm, bg, rect, starts, tri,
                  H, W, tile, tiles_x, t_final, last, gout, gbuf):
    """Back-to-front per tile from each pixel's last contributor; gbuf [P, G] per-pair gradients.

    gout [H, W, C + 5] output gradients (rgb, alpha, depth_acc, normal)."""
    n_tiles = starts.shape[0] - 1
    C = bg.shape[0]
    G = G_FIXED
    for tid in prange(n_tiles):
        s, e = starts[tid], starts[tid + 1]
        if e == s:
            continue
        x0, y0, x1, y1 = _tile_box(tid, tile, tiles_x, H, W)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        T = np.empty(npx)
        S = np.zeros(npx)  # dL/dw-weighted sum of what lies behind, per pixel
        gbg = np.zeros(npx)
        lst = np.empty(npx, np.int32)
        gp = np.empty((npx, C + 5))
        for y in range(y0, y1):
            for x in range(x0, x1):
                l = (y - y0) * tw + (x - x0)
                T[l] = t_final[y, x]
                lst[l] = last[y, x]
                for c in range(C + 5):
                    gp[l, c] = gout[y, x, c]
                for c in range(C):
                    gbg[l] += gout[y, x, c] * bg[c]  # rgb = sum w (c - bg) + bg
        ga = np.zeros((e - s, gbuf.shape[1]))
        for j in range(e - 1, s - 1, -1):
            t = tri[j]
            k = j - s
            ps, sg, o = phis[t], sig[t], op[t]
            ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2 = _tri_consts(uv, z, t)
            ips = 1.0 / float(ps)
            for y in range(max(y0, rect[t, 1]), min(y1 - 1, rect[t, 3]) + 1):
                yf = np.float32(y)
                for x in range(max(x0, rect[t, 0]), min(x1 - 1, rect[t, 2]) + 1):
                    l = (y - y0) * tw + (x - x0)
                    if k >= lst[l]:
                        continue
                    xf = np.float32(x)
                    a, phi, r, I, L0, L1, L2 = _soft_alpha(lines, t, xf, yf, ps, sg, o)
                    if not a >= A_MIN:
                        continue
                    Tk = T[l] / (1.0 - a)
                    w = a * Tk
                    lam0, lam1, lam2, wz0, wz1, wz2, Z = _bary_c(ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2, xf, yf)
                    Gw = _pair_dw(gp, l, gbg[l], cols, nrm, t, wz0, wz1, wz2, Z)
                    g_alpha = Tk * (Gw - S[l])
                    S[l] = Gw * a + (1.0 - a) * S[l]
                    T[l] = Tk
                    # alpha = min(0.99, opacity I): torch.minimum splits the gradient on a tie
                    m = o * I
                    g_m = g_alpha if m < A_MAX else (0.5 * g_alpha if m == A_MAX else 0.0)
                    gI = g_m * o
                    g_r = gI * sg * I / r if phi / ps >= R_MIN else 0.0
                    g_phi = g_r * ips
                    n_max = (1.0 if L0 == phi else 0.0) + (1.0 if L1 == phi else 0.0) + (1.0 if L2 == phi else 0.0)
                    gL = g_phi / n_max  # amax: ties share the gradient evenly
                    if L0 == phi:
                        ga[k, 0] += gL * xf
                        ga[k, 1] += gL * yf
                        ga[k, 2] += gL
                    if L1 == phi:
                        ga[k, 3] += gL * xf
                        ga[k, 4] += gL * yf
                        ga[k, 5] += gL
                    if L2 == phi:
                        ga[k, 6] += gL * xf
                        ga[k, 7] += gL * yf
                        ga[k, 8] += gL
                    ga[k, 9] -= g_r * r * ips
                    ga[k, 10] += gI * I * np.log(r)
                    ga[k, 11] += g_m * I
                    _pixel_grads(ga, k, w, gp, l, G, cols, t, xf, yf, ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2,
                                 lam0, lam1, lam2, wz0, wz1, wz2, Z)
        gbuf[s:e] = ga  # this tile's pairs' rows (float64 sums stored as float32)


# ---------------------------------------------------------------------------------------- hard
@njit(cache=True, error_model="numpy")
def _hard_candidates(lines, op, uv, z, rect, tri, s, e, x0, y0, x1, y1):
    """Every covered (pixel, pair) of a tile with alpha = min(1, opacity) >= 1/255, grouped by pixel
    (each group in list order). returns (offsets [npx + 1], pos [M] pair offsets in the tile, zpix [M])."""
    tw = x1 - x0
    npx = tw * (y1 - y0)
    cnt = np.zeros(npx + 1, np.int64)
    bound = 0
    for j in range(s, e):
        t = tri[j]
        bound += (max(0, min(x1 - 1, rect[t, 2]) - max(x0, rect[t, 0]) + 1)
                  * max(0, min(y1 - 1, rect[t, 3]) - max(y0, rect[t, 1]) + 1))
    pix = np.empty(bound, np.int64)
    pos = np.empty(bound, np.int64)
    zp = np.empty(bound, np.float32)
    m = 0
    for j in range(s, e):
        t = tri[j]
        if not min(op[t], np.float32(1.0)) >= A_MIN:
            continue
        for y in range(max(y0, rect[t, 1]), min(y1 - 1, rect[t, 3]) + 1):
            yf = np.float32(y)
            for x in range(max(x0, rect[t, 0]), min(x1 - 1, rect[t, 2]) + 1):
                xf = np.float32(x)
                if not _inside(lines, t, xf, yf):
                    continue
                l = (y - y0) * tw + (x - x0)
                pix[m] = l
                pos[m] = j - s
                zp[m] = _bary(uv, z, t, xf, yf)[6]
                cnt[l + 1] += 1
                m += 1
    offsets = np.cumsum(cnt)
    fill = offsets[:-1].copy()
    pos_s = np.empty(m, np.int64)
    z_s = np.empty(m, np.float32)
    for i in range(m):  # stable counting sort by pixel
        l = pix[i]
        pos_s[fill[l]] = pos[i]
        z_s[fill[l]] = zp[i]
        fill[l] += 1
    return offsets, pos_s, z_s


@njit(cache=True, error_model="numpy")
def _contributor_scratch(offsets, npx):
    """(sel [k], Tx [k]) buffers for `_hard_contributors`, k the tile's most candidates at one pixel."""
    kmax = 1
    for l in range(npx):
        kmax = max(kmax, offsets[l + 1] - offsets[l])
    return np.empty(kmax, np.int64), np.empty(kmax)


@njit(cache=True, error_model="numpy")
def _hard_contributors(offsets, pos, zp, l, tri, s, op, sel, Tx):
    """The contributors of tile pixel l in compositing order (plane depth, ties -> list order),
    picked lazily; they stay while T before them >= 1e-4. Fills sel (pair offsets) and Tx (T before
    each, float64); returns (count, final T)."""
    a0, a1 = offsets[l], offsets[l + 1]
    n = 0
    T = 1.0
    pz = -np.inf
    pp = -1
    while T >= T_STOP:
        bi = -1
        for i in range(a0, a1):  # next (z, pos) after (pz, pp)
            zi, qi = zp[i], pos[i]
            if zi > pz or (zi == pz and qi > pp):
                if bi < 0 or zi < zp[bi] or (zi == zp[bi] and qi < pos[bi]):
                    bi = i
        if bi < 0:
            break
        pz, pp = zp[bi], pos[bi]
        sel[n] = pp
        Tx[n] = T
        n += 1
        T = T * (1.0 - min(op[tri[s + pp]], np.float32(1.0)))
    return n, T


@njit(parallel=True, cache=True, error_model="numpy")
def hard_forward(lines, op, uv, z, cols, nrm, bg, rect, starts, tri, H, W, tile, tiles_x,
                 out, pmax):
    """Per-pixel depth-ordered compositing (the z-buffer limit). out: as `soft_forward`; pmax [P]."""
    n_tiles = starts.shape[0] - 1
    C = bg.shape[0]
    for tid in prange(n_tiles):
        x0, y0, x1, y1 = _tile_box(tid, tile, tiles_x, H, W)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        acc = np.zeros((npx, C + 5))
        s, e = starts[tid], starts[tid + 1]
        if e > s:
            offsets, pos, zp = _hard_candidates(lines, op, uv, z, rect, tri, s, e, x0, y0, x1, y1)
            sel, Tx = _contributor_scratch(offsets, npx)
            for l in range(npx):
                n, _ = _hard_contributors(offsets, pos, zp, l, tri, s, op, sel, Tx)
                xf = np.float32(x0 + l % tw)
                yf = np.float32(y0 + l // tw)
                for i in range(n):
                    j = s + sel[i]
                    t = tri[j]
                    w = np.float32(min(op[t], np.float32(1.0)) * Tx[i])
                    _, _, _, wz0, wz1, wz2, Z = _bary(uv, z, t, xf, yf)
                    _accumulate(acc, l, w, cols, nrm, t, wz0, wz1, wz2, Z)
                    pmax[j] = max(pmax[j], w)
        _write_tile(out[0], out[1], out[2], out[3], out[4], acc, bg, x0, y0, x1, y1)


@njit(parallel=True, cache=True, error_model="numpy")
def hard_backward(lines, op, uv, z, cols, nrm, bg, rect, starts, tri, H, W, tile, tiles_x,
                  gout, gbuf):
    """Gradients of the hard render: contributors recomputed per pixel, then back to front."""
    n_tiles = starts.shape[0] - 1
    C = bg.shape[0]
    G = G_FIXED
    for tid in prange(n_tiles):
        s, e = starts[tid], starts[tid + 1]
        if e == s:
            continue
        x0, y0, x1, y1 = _tile_box(tid, tile, tiles_x, H, W)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        offsets, pos, zp = _hard_candidates(lines, op, uv, z, rect, tri, s, e, x0, y0, x1, y1)
        sel, Tx = _contributor_scratch(offsets, npx)
        ga = np.zeros((e - s, gbuf.shape[1]))
        gp = np.empty((1, C + 5))
        for l in range(npx):
            n, _ = _hard_contributors(offsets, pos, zp, l, tri, s, op, sel, Tx)
            if n == 0:
                continue
            x, y = x0 + l % tw, y0 + l // tw
            xf, yf = np.float32(x), np.float32(y)
            gbg = 0.0
            for c in range(C + 5):
                gp[0, c] = gout[y, x, c]
            for c in range(C):
                gbg += gout[y, x, c] * bg[c]
            S = 0.0
            for i in range(n - 1, -1, -1):
                k = sel[i]
                t = tri[s + k]
                o = op[t]
                a = min(o, np.float32(1.0))
                Tk = Tx[i]
                w = a * Tk
                ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2 = _tri_consts(uv, z, t)
                lam0, lam1, lam2, wz0, wz1, wz2, Z = _bary_c(ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2, xf, yf)
                Gw = _pair_dw(gp, 0, gbg, cols, nrm, t, wz0, wz1, wz2, Z)
                if o <= 1.0:  # alpha = clamp(opacity, max=1): torch passes the gradient at 1
                    ga[k, 11] += Tk * (Gw - S)
                S = Gw * a + (1.0 - a) * S
                _pixel_grads(ga, k, w, gp, 0, G, cols, t, xf, yf, ax, ay, bx, by, cx, cy, ia, iz0, iz1, iz2,
                             lam0, lam1, lam2, wz0, wz1, wz2, Z)
        gbuf[s:e] = ga  # this tile's pairs' rows (float64 sums stored as float32)
