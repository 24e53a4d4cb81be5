"""The per-triangle CPU kernels of op ``trisplat`` (numba): before and after the tile kernels.

`preprocess` (the reference's `preprocess` + `_pixel_rects`, parallel over triangles), `bin_tiles`
(the (tile, triangle) pairs, each tile by centroid depth), `pairs_by_triangle` and `pair_max`
(per-triangle views of the pairs), and `preprocess_backward`: the per-pair gradients of
`numba_kernels`' backward kernels summed per triangle and carried through the edge lines, incenter,
projection and face normal to the camera-space vertices and K. Same float32 arithmetic as the
reference for every decision; derivatives in float64. Parallel loops run over chunks of
triangles so their small scratch arrays are allocated once per chunk.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import facet3d.kernels.trisplat.numba_kernels  # noqa: F401  (sets numba's threading layer first)

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_TINY = np.float32(1e-30)


@njit(cache=True, error_model="numpy")
def _projected(verts, K, t, u, v):
    """Fill u, v [3] with triangle t's pixels; False when it cannot be projected or is degenerate in
    the image (a vertex at z <= 1e-6, non-finite, zero area, a zero-length edge), as `reference.preprocess`."""
    ok = True
    for i in range(3):
        x, y, zz = verts[t, i, 0], verts[t, i, 1], verts[t, i, 2]
        if not (zz > 1e-6 and np.isfinite(x) and np.isfinite(y) and np.isfinite(zz)):
            ok = False
        xn, yn = x / zz, y / zz
        u[i] = (K[0, 0] * xn + K[0, 1] * yn) + K[0, 2]
        v[i] = K[1, 1] * yn + K[1, 2]
        if not (np.isfinite(u[i]) and np.isfinite(v[i])):
            ok = False
    if ok:
        area = (u[1] - u[0]) * (v[2] - v[1]) - (v[1] - v[0]) * (u[2] - u[1])
        if not abs(area) > 1e-20:
            ok = False
        for i in range(3):
            ex, ey = u[(i + 1) % 3] - u[i], v[(i + 1) % 3] - v[i]
            if not np.sqrt(ex * ex + ey * ey) > 1e-12:
                ok = False
    return ok


@njit(cache=True, error_model="numpy")
def _incenter(u, v):
    """(sx, sy, a, b, c, per): the incenter and the side lengths opposite A, B, C."""
    a = np.sqrt((u[1] - u[2]) ** 2 + (v[1] - v[2]) ** 2)
    b = np.sqrt((u[0] - u[2]) ** 2 + (v[0] - v[2]) ** 2)
    c = np.sqrt((u[0] - u[1]) ** 2 + (v[0] - v[1]) ** 2)
    per = max((a + b) + c, _TINY)
    sx = ((a * u[0] + b * u[1]) + c * u[2]) / per
    sy = ((a * v[0] + b * v[1]) + c * v[2]) / per
    return sx, sy, a, b, c, per


@njit(cache=True, error_model="numpy")
def _edge_line(u, v, i, sx, sy):
    """(nx, ny, d, Ls, flip, mx, my, mn): edge i (V_i -> V_i+1) as a unit-normal line with L(s) < 0;
    (mx, my) the raw normal, mn its length, flip the sign applied."""
    ex, ey = u[(i + 1) % 3] - u[i], v[(i + 1) % 3] - v[i]
    mx, my = ey, -ex
    mn = max(np.sqrt(mx * mx + my * my), _TINY)
    nx, ny = mx / mn, my / mn
    d = -(nx * u[i] + ny * v[i])
    Ls = (nx * sx + ny * sy) + d
    flip = _F1
    if Ls > 0:
        flip = np.float32(-1.0)
    return nx * flip, ny * flip, d * flip, Ls * flip, flip, mx, my, mn


@njit(cache=True, error_model="numpy")
def _face_normal(verts, t, q):
    """(n0, n1, n2 unit camera-space normal facing the camera, |q|, flip, cos, centroid x, y, z);
    q [3] is filled with the raw cross product."""
    ax, ay, az = verts[t, 1, 0] - verts[t, 0, 0], verts[t, 1, 1] - verts[t, 0, 1], verts[t, 1, 2] - verts[t, 0, 2]
    bx, by, bz = verts[t, 2, 0] - verts[t, 0, 0], verts[t, 2, 1] - verts[t, 0, 1], verts[t, 2, 2] - verts[t, 0, 2]
    q[0], q[1], q[2] = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    qn = max(np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2]), _TINY)
    cx = (verts[t, 0, 0] + verts[t, 1, 0] + verts[t, 2, 0]) / np.float32(3.0)
    cy = (verts[t, 0, 1] + verts[t, 1, 1] + verts[t, 2, 1]) / np.float32(3.0)
    cz = (verts[t, 0, 2] + verts[t, 1, 2] + verts[t, 2, 2]) / np.float32(3.0)
    cn = max(np.sqrt(cx * cx + cy * cy + cz * cz), _TINY)
    n0, n1, n2 = q[0] / qn, q[1] / qn, q[2] / qn
    cos = (n0 * (cx / cn) + n1 * (cy / cn)) + n2 * (cz / cn)
    flip = _F1
    if cos > 0:
        flip = np.float32(-1.0)
    return n0 * flip, n1 * flip, n2 * flip, qn, flip, cos, cx, cy, cz


@njit(cache=True, error_model="numpy")
def _chunks(N, per=256):
    """Number of chunks of about `per` triangles (parallel loops allocate their scratch once per chunk)."""
    return (N + per - 1) // per


@njit(parallel=True, cache=True, error_model="numpy")
def preprocess(verts, K, op, sig, hard, near, min_size, max_size, min_inradius, H, W, tile,
               uv, z, lines, phis, depth, nrm, rect, n_touched):
    """`reference.preprocess` + `reference._pixel_rects` per triangle, in parallel.

    Writes uv [N, 3, 2], z [N, 3], lines [N, 3, 3], phis [N], depth [N] (centroid z), nrm [N, 3],
    rect [N, 4] (x0, y0, x1, y1 inclusive pixel rectangle; x0 > x1 when the triangle draws nothing),
    n_touched [N] footprint tiles (0 when culled).
    """
    N = verts.shape[0]
    for ch in prange(_chunks(N)):
        u = np.empty(3, np.float32)
        v = np.empty(3, np.float32)
        q = np.empty(3, np.float32)
        for t in range(ch * 256, min(N, ch * 256 + 256)):
            rect[t, 0], rect[t, 1], rect[t, 2], rect[t, 3] = 0, 0, -1, -1
            n_touched[t] = 0
            for i in range(3):
                z[t, i] = verts[t, i, 2]
            if not _projected(verts, K, t, u, v):
                continue
            sx, sy, _, _, _, _ = _incenter(u, v)
            phi_s = -np.inf
            for i in range(3):
                nx, ny, d, Ls, _, _, _, _ = _edge_line(u, v, i, sx, sy)
                lines[t, i, 0], lines[t, i, 1], lines[t, i, 2] = nx, ny, d
                phi_s = max(phi_s, Ls)
                uv[t, i, 0], uv[t, i, 1] = u[i], v[i]
            phis[t] = phi_s
            n0, n1, n2, _, _, cos, cx, cy, cz = _face_normal(verts, t, q)
            nrm[t, 0], nrm[t, 1], nrm[t, 2] = n0, n1, n2
            depth[t] = cz
            # culling (reference.preprocess' `valid`)
            pu = (K[0, 0] * (cx / cz) + K[0, 1] * (cy / cz)) + K[0, 2]
            pv = K[1, 1] * (cy / cz) + K[1, 2]
            size = _F0
            for i in range(3):
                size = max(size, np.sqrt((u[i] - pu) ** 2 + (v[i] - pv) ** 2))
            if not (op[t] >= np.float32(0.01) and cz > near and abs(cos) >= np.float32(1e-3) and -phi_s > min_inradius
                    and -phi_s > np.float32(1e-12) and size <= max_size and size >= min_size):
                continue
            if hard:
                k = _F0
            else:
                k = min(np.float32(0.01) / max(op[t], _TINY), _F1) ** (_F1 / max(sig[t], _TINY))
            bx0 = bx1 = by0 = by1 = _F0
            for i in range(3):
                px = sx + (_F1 - k) * (u[i] - sx)
                py = sy + (_F1 - k) * (v[i] - sy)
                if i == 0 or px < bx0:
                    bx0 = px
                if i == 0 or px > bx1:
                    bx1 = px
                if i == 0 or py < by0:
                    by0 = py
                if i == 0 or py > by1:
                    by1 = py
            if not (np.isfinite(bx0) and np.isfinite(bx1) and np.isfinite(by0) and np.isfinite(by1)):
                continue
            # tiles: pixel centres inside the footprint bbox (reference._pixel_rects)
            fx0, fy0, fx1, fy1 = np.ceil(bx0), np.ceil(by0), np.floor(bx1), np.floor(by1)
            if not (fx0 <= W - 1 and fx1 >= 0 and fy0 <= H - 1 and fy1 >= 0 and fx0 <= fx1 and fy0 <= fy1):
                continue
            tx0 = int(min(max(fx0, 0.0), W - 1.0)) // tile
            tx1 = int(min(max(fx1, 0.0), W - 1.0)) // tile
            ty0 = int(min(max(fy0, 0.0), H - 1.0)) // tile
            ty1 = int(min(max(fy1, 0.0), H - 1.0)) // tile
            n_touched[t] = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
            lox = min(u[0], min(u[1], u[2]))
            hix = max(u[0], max(u[1], u[2]))
            loy = min(v[0], min(v[1], v[2]))
            hiy = max(v[0], max(v[1], v[2]))
            rect[t, 0] = max(tx0 * tile, int(min(max(np.ceil(lox), 0.0), W + 1.0)))
            rect[t, 2] = min(min((tx1 + 1) * tile - 1, W - 1), int(max(min(np.floor(hix), W - 1.0), -1.0)))
            rect[t, 1] = max(ty0 * tile, int(min(max(np.ceil(loy), 0.0), H + 1.0)))
            rect[t, 3] = min(min((ty1 + 1) * tile - 1, H - 1), int(max(min(np.floor(hiy), H - 1.0), -1.0)))


@njit(cache=True, error_model="numpy")
def bin_tiles(depth, rect, tile, tiles_x, n_tiles):
    """(starts [n_tiles + 1], tri [P]): per tile, the triangles whose pixel rectangle meets it, by
    centroid depth (ties: lower index, as the reference's stable sort)."""
    N = depth.shape[0]
    counts = np.zeros(n_tiles + 1, np.int64)
    for t in range(N):
        if rect[t, 0] > rect[t, 2] or rect[t, 1] > rect[t, 3]:
            continue
        for ty in range(rect[t, 1] // tile, rect[t, 3] // tile + 1):
            for tx in range(rect[t, 0] // tile, rect[t, 2] // tile + 1):
                counts[ty * tiles_x + tx + 1] += 1
    starts = np.cumsum(counts)
    fill = starts[:-1].copy()
    tri = np.empty(starts[-1], np.int64)
    for t in range(N):
        if rect[t, 0] > rect[t, 2] or rect[t, 1] > rect[t, 3]:
            continue
        for ty in range(rect[t, 1] // tile, rect[t, 3] // tile + 1):
            for tx in range(rect[t, 0] // tile, rect[t, 2] // tile + 1):
                k = ty * tiles_x + tx
                tri[fill[k]] = t
                fill[k] += 1
    _sort_tiles(depth, starts, tri)
    return starts, tri


@njit(parallel=True, cache=True, error_model="numpy")
def _sort_tiles(depth, starts, tri):
    for k in prange(starts.shape[0] - 1):
        s, e = starts[k], starts[k + 1]
        if e - s > 1:
            seg = tri[s:e].copy()
            order = np.argsort(depth[seg], kind="mergesort")  # stable: the list is in index order
            for i in range(e - s):
                tri[s + i] = seg[order[i]]


@njit(cache=True, error_model="numpy")
def pairs_by_triangle(tri, N):
    """CSR of the pairs of each triangle: (tstart [N + 1], pair [P])."""
    cnt = np.zeros(N + 1, np.int64)
    for j in range(tri.shape[0]):
        cnt[tri[j] + 1] += 1
    tstart = np.cumsum(cnt)
    fill = tstart[:-1].copy()
    pair = np.empty(tri.shape[0], np.int64)
    for j in range(tri.shape[0]):
        pair[fill[tri[j]]] = j
        fill[tri[j]] += 1
    return tstart, pair


@njit(parallel=True, cache=True, error_model="numpy")
def preprocess_backward(verts, K, hard, tstart, pair, gbuf, gverts, gK, gtri):
    """Sum each triangle's pair gradients (gtri [N, G]: lines, phi_s, sigma, opacity, uv, z, normal,
    colours) and carry lines, phi_s, uv, z and normal back to the camera-space vertices (gverts
    [N, 3, 3]) and the intrinsics (gK [N, 5]: fx, s, cx, fy, cy per triangle)."""
    N = verts.shape[0]
    Gc = gbuf.shape[1]
    for ch in prange(_chunks(N)):
        u = np.empty(3, np.float32)
        v = np.empty(3, np.float32)
        q = np.empty(3, np.float32)
        gu = np.empty(3)
        gv = np.empty(3)
        el = np.empty((3, 8), np.float32)
        for t in range(ch * 256, min(N, ch * 256 + 256)):
            for c in range(Gc):  # outputs are not zeroed by the caller: every row is written here
                gtri[t, c] = 0.0
            for c in range(5):
                gK[t, c] = 0.0
            for i in range(3):
                gverts[t, i, 0] = gverts[t, i, 1] = gverts[t, i, 2] = 0.0
            if tstart[t + 1] == tstart[t]:
                continue
            for p in range(tstart[t], tstart[t + 1]):
                j = pair[p]
                for c in range(Gc):
                    gtri[t, c] += gbuf[j, c]
            if not _projected(verts, K, t, u, v):  # culled before any arithmetic: no gradient
                continue
            for i in range(3):
                gu[i] = gtri[t, 12 + 2 * i]
                gv[i] = gtri[t, 13 + 2 * i]
            if not hard:
                _lines_backward(u, v, gtri, t, gu, gv, el)
            # projection u = fx x/z + s y/z + cx, v = fy y/z + cy
            for i in range(3):
                x, y, zz = float(verts[t, i, 0]), float(verts[t, i, 1]), float(verts[t, i, 2])
                xn, yn = x / zz, y / zz
                gxn = gu[i] * K[0, 0]
                gyn = gu[i] * K[0, 1] + gv[i] * K[1, 1]
                gverts[t, i, 0] += gxn / zz
                gverts[t, i, 1] += gyn / zz
                gverts[t, i, 2] += gtri[t, 18 + i] - (gxn * xn + gyn * yn) / zz
                gK[t, 0] += gu[i] * xn
                gK[t, 1] += gu[i] * yn
                gK[t, 2] += gu[i]
                gK[t, 3] += gv[i] * yn
                gK[t, 4] += gv[i]
            _normal_backward(verts, t, gtri, gverts, q)


@njit(cache=True, error_model="numpy")
def _lines_backward(u, v, gtri, t, gu, gv, el):
    """Add to (gu, gv) [3] the gradients of the edge lines and phi_s (gtri[t, 0:10]) w.r.t. the uv
    (el [3, 8]: scratch for the `_edge_line` values)."""
    sx, sy, a, b, c, per = _incenter(u, v)
    phi_s = -np.inf
    for i in range(3):
        el[i, 0], el[i, 1], el[i, 2], el[i, 3], el[i, 4], el[i, 5], el[i, 6], el[i, 7] = _edge_line(u, v, i, sx, sy)
        phi_s = max(phi_s, el[i, 3])
    n_max = 0.0
    for i in range(3):
        if el[i, 3] == phi_s:
            n_max += 1.0
    gsx = 0.0
    gsy = 0.0
    for i in range(3):
        nx, ny, flip, mx, my, mn = el[i, 0], el[i, 1], el[i, 4], el[i, 5], el[i, 6], el[i, 7]
        gnx, gny, gd = gtri[t, 3 * i], gtri[t, 3 * i + 1], gtri[t, 3 * i + 2]
        if el[i, 3] == phi_s:  # phi_s = max_i Ls_i, Ls_i = n_i . s + d_i (amax: ties share evenly)
            gL = gtri[t, 9] / n_max
            gnx += gL * sx
            gny += gL * sy
            gsx += gL * nx
            gsy += gL * ny
            gd += gL
        i1 = (i + 1) % 3
        # d_i = -(n_i . V_i)
        gnx -= gd * u[i]
        gny -= gd * v[i]
        gu[i] -= gd * nx
        gv[i] -= gd * ny
        # n_i = flip m / |m|, m = (e_y, -e_x), e = V_i+1 - V_i
        fx, fy = gnx * flip, gny * flip
        ux, uy = mx / mn, my / mn
        dot = fx * ux + fy * uy
        gmx, gmy = (fx - ux * dot) / mn, (fy - uy * dot) / mn
        gex, gey = -gmy, gmx
        gu[i1] += gex
        gv[i1] += gey
        gu[i] -= gex
        gv[i] -= gey
    # s = (a A + b B + c C) / per, a = |B - C|, b = |A - C|, c = |A - B|
    gu[0] += gsx * a / per
    gv[0] += gsy * a / per
    gu[1] += gsx * b / per
    gv[1] += gsy * b / per
    gu[2] += gsx * c / per
    gv[2] += gsy * c / per
    ga = (gsx * (u[0] - sx) + gsy * (v[0] - sy)) / per
    gb = (gsx * (u[1] - sx) + gsy * (v[1] - sy)) / per
    gc = (gsx * (u[2] - sx) + gsy * (v[2] - sy)) / per
    for (p, q, gl, ln) in ((1, 2, ga, a), (0, 2, gb, b), (0, 1, gc, c)):
        if ln > 0:
            dx, dy = (u[p] - u[q]) / ln, (v[p] - v[q]) / ln
            gu[p] += gl * dx
            gv[p] += gl * dy
            gu[q] -= gl * dx
            gv[q] -= gl * dy


@njit(cache=True, error_model="numpy")
def _normal_backward(verts, t, gtri, gverts, q):
    """Add to gverts[t] the gradient of the unit face normal (gtri[t, 21:24]); q [3]: scratch."""
    _, _, _, qn, flip, _, _, _, _ = _face_normal(verts, t, q)
    gx, gy, gz = gtri[t, 21] * flip, gtri[t, 22] * flip, gtri[t, 23] * flip
    ux, uy, uz = q[0] / qn, q[1] / qn, q[2] / qn
    dot = gx * ux + gy * uy + gz * uz
    gqx, gqy, gqz = (gx - ux * dot) / qn, (gy - uy * dot) / qn, (gz - uz * dot) / qn
    ax, ay, az = verts[t, 1, 0] - verts[t, 0, 0], verts[t, 1, 1] - verts[t, 0, 1], verts[t, 1, 2] - verts[t, 0, 2]
    bx, by, bz = verts[t, 2, 0] - verts[t, 0, 0], verts[t, 2, 1] - verts[t, 0, 1], verts[t, 2, 2] - verts[t, 0, 2]
    # q = a x b: dq/da^T g = b x g, dq/db^T g = g x a
    gax, gay, gaz = by * gqz - bz * gqy, bz * gqx - bx * gqz, bx * gqy - by * gqx
    gbx, gby, gbz = gqy * az - gqz * ay, gqz * ax - gqx * az, gqx * ay - gqy * ax
    gverts[t, 1, 0] += gax
    gverts[t, 1, 1] += gay
    gverts[t, 1, 2] += gaz
    gverts[t, 2, 0] += gbx
    gverts[t, 2, 1] += gby
    gverts[t, 2, 2] += gbz
    gverts[t, 0, 0] -= gax + gbx
    gverts[t, 0, 1] -= gay + gby
    gverts[t, 0, 2] -= gaz + gbz


@njit(cache=True, error_model="numpy")
def pair_max(pmax, tri, N):
    """Per-triangle max of the pairs' max blending weights: max_weight [N]."""
    out = np.zeros(N, np.float32)
    for j in range(tri.shape[0]):
        out[tri[j]] = max(out[tri[j]], pmax[j])
    return out
