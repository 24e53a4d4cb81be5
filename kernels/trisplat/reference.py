"""Differentiable triangle-splatting rasterizer in pure PyTorch: the source of truth and CPU path.

Follows Triangle Splatting (Held et al. 2025, diff-triangle-rasterization); a Triton kernel must
reproduce `rasterize_triangles` exactly (same culling, tiling, order and compositing).

Conventions
-----------
* Inputs are **camera-space** vertices (OpenCV axes: x right, y down, z forward) and intrinsics K,
  so gradients flow to the 3D vertices through the projection ``u = (fx x + s y)/z + cx``,
  ``v = fy y / z + cy``.  World-to-camera is done by the caller (`plugins.triangle_splatting.render`).
* Pixel centres: pixel ``(row i, col j)`` has its centre at continuous coordinates ``(u, v) = (j, i)``
  (top-left pixel centre at (0, 0)), exactly `facet3d.core.structures.Cameras`' convention.
* Tiles: ``tile x tile`` pixels (16), row-major tile ids ``ty * tiles_x + tx``.

Window function (per triangle, in pixels)
-----------------------------------------
incenter ``s = (a A + b B + c C)/(a + b + c)`` (a, b, c: lengths of the sides opposite A, B, C);
edge lines ``L_i(p) = n_i . p + d_i`` with unit normals oriented so ``L_i(s) < 0``;
``phi = max_i L_i``; ``I(p) = max(0, phi(p)/phi(s))^sigma``; pixels with any ``L_i(p) > 0`` are
skipped; ``alpha = min(0.99, opacity * I)``; ``alpha < 1/255`` is skipped.

Culling (a culled triangle touches no tile): opacity < 0.01; centroid camera z <= ``near`` (0.2);
any vertex z <= 1e-6, non-finite, zero image area or a zero-length edge (extra guards: such
triangles are swapped for a dummy before any arithmetic, so their gradients are exactly 0); edge-on
(|cos| between the 3D normal and the view ray to the centroid < 1e-3); degenerate or too small
(inradius in pixels ``-phi(s)`` <= ``min_inradius``, 1 px as upstream's ``dist > -1`` test);
size = max distance of a projected vertex from the projected centroid > ``max_size`` (1600) or
< ``min_size`` (1).

Footprint: bbox of the region where ``opacity * I >= 0.01``.  That region ``{phi <= k phi(s)}``,
``k = (0.01/opacity)^(1/sigma)``, is the triangle shrunk about its incenter by ``1 - k``, so its
bbox is that of ``s + (1 - k)(V - s)``.  Tiles holding a pixel centre inside the bbox are touched
(upstream rounds the continuous bbox to tiles with ``(uint)(x/16)`` / ``(uint)((x+15)/16)``, which
can add a tile at the border and mis-rounds negative coordinates; only pixels with
``alpha < FOOTPRINT_ALPHA`` can differ).

Order and compositing: per tile, triangles sorted by centroid view depth (ties: lower index);
front to back ``C += c alpha T; T *= 1 - alpha``; stop (without adding the triangle) as soon as
``T (1 - alpha) < 1e-4``.  Vectorised: with ``T_incl = cumprod(1 - alpha)``, the contributors are
exactly those with ``T_incl >= 1e-4`` (T is non-increasing), weights ``w = alpha * T_excl``.

Outputs (see `rasterize_triangles`): rgb, alpha, depth (normalised expected z-depth: per pixel
z of the triangle's plane along the pixel's ray, perspective-correct, weighted by w; upstream uses
the centroid depth instead), normal (unit camera-space normal flipped towards the camera), and
per-triangle max blending weight (for pruning; not differentiable).

Hard mode (``hard=True``): the sigma -> 0 / opacity -> 1 limit as a z-buffer rasterizer.  I = 1 on
every pixel with all ``L_i <= 0``; ``alpha = min(1, opacity)`` (cap 1, not 0.99, so an opaque
triangle covers fully); the order is per *pixel* by that pixel's plane depth (a centroid order is
wrong for neighbouring triangles of different sizes); the small-size culls are off
(``min_size = min_inradius = 0``: a sub-pixel triangle is still rasterised) and the early stop
happens *after* the triangle that drives T below 1e-4, so with opacity 1 the nearest covering
triangle takes weight exactly 1.  Per-vertex colours ``[N, 3, C]`` are interpolated with
perspective-correct barycentrics (TS+ / meshes), flat colours ``[N, C]`` are constant.

Differentiable by autograd w.r.t. verts_cam (and K), colors, opacity and sigma.

Implementation: the flat list of (pixel, triangle) pairs a per-tile traversal would visit (a
Triton kernel walks the same lists tile by tile): per triangle, the pixels of its footprint tiles
inside its bounding box, bounded by scanline intervals, kept when ``all L_i <= 0`` (no autograd,
``chunk_elems`` candidates at a time); a gradient-free pass evaluates alpha, orders each pixel's
pairs (tile order; hard mode: plane depth) and composites them to find the contributors; only
those are evaluated again under autograd (window, alpha, barycentrics, z), weighted by
`_segment_weights` and index-added as ``w * (colour, 1, z, normal)`` per pixel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["rasterize_triangles", "preprocess", "window", "ALPHA_MAX", "ALPHA_MIN",
           "T_STOP", "MIN_OPACITY", "FOOTPRINT_ALPHA"]

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_STOP = 1e-4
_LOG_T_STOP = math.log(T_STOP)
MIN_OPACITY = 0.01
FOOTPRINT_ALPHA = 0.01
EDGE_ON_COS = 1e-3
CHUNK_ELEMS = 1 << 21


def _project(verts_cam: Tensor, K: Tensor) -> Tensor:
    """[..., 3] camera points -> [..., 2] pixels (u, v)."""
    x, y, z = verts_cam.unbind(-1)
    xn, yn = x / z, y / z
    u = K[0, 0] * xn + K[0, 1] * yn + K[0, 2]
    v = K[1, 1] * yn + K[1, 2]
    return torch.stack([u, v], -1)


def preprocess(verts_cam: Tensor, K: Tensor, opacity: Tensor, sigma: Tensor, hard: bool = False,
               near: float = 0.2, min_size: float | None = None, max_size: float = 1600.0,
               min_inradius: float | None = None) -> dict[str, Tensor]:
    """Per-triangle projection, edge lines, incenter, culling and footprint bbox.

    verts_cam [N, 3, 3], K [3, 3], opacity [N], sigma [N] -> dict (culled triangles may hold dummy values):
    uv [N, 3, 2]; lines [N, 3, 3] (n_x, n_y, d per edge i = V_i -> V_{i+1}, L(s) < 0);
    phi_s [N] (< 0); depth [N] centroid camera z; normal [N, 3]; valid [N] bool;
    bbox [N, 4] (xmin, ymin, xmax, ymax) of the footprint, detached.
    """
    if min_size is None:
        min_size = 0.0 if hard else 1.0
    if min_inradius is None:
        min_inradius = 0.0 if hard else 1.0
    dtype = verts_cam.dtype
    # Triangles that cannot be projected (a vertex at z <= 1e-6, non-finite) or are degenerate in
    # the image (zero area or a zero-length edge) are culled, and replaced by a harmless dummy
    # *before* any arithmetic so that their gradients are exactly 0 (not NaN).
    with torch.no_grad():
        zmin = verts_cam[..., 2].amin(-1)
        z_ok = (zmin > 1e-6) & torch.isfinite(verts_cam).all(-1).all(-1)
        v0 = torch.where(z_ok[:, None, None], verts_cam, torch.ones_like(verts_cam))
        uv0 = _project(v0, K)
        e0 = uv0.roll(-1, dims=1) - uv0
        area0 = e0[:, 0, 0] * e0[:, 1, 1] - e0[:, 0, 1] * e0[:, 1, 0]
        bad = ~z_ok | ~torch.isfinite(uv0).all(-1).all(-1) | (area0.abs() <= 1e-20) | (e0.norm(dim=-1).amin(-1) <= 1e-12)
        dummy = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=dtype, device=verts_cam.device)
    verts_cam = torch.where(bad[:, None, None], dummy, verts_cam)
    uv = _project(verts_cam, K)  # [N, 3, 2]
    A, B, C = uv.unbind(1)
    a = (B - C).norm(dim=-1)
    b = (A - C).norm(dim=-1)
    c = (A - B).norm(dim=-1)
    per = (a + b + c).clamp_min(1e-30)
    s = (a[:, None] * A + b[:, None] * B + c[:, None] * C) / per[:, None]
    p1, p2 = uv, uv.roll(-1, dims=1)  # edge i from V_i to V_{i+1}
    e = p2 - p1
    n = torch.stack([e[..., 1], -e[..., 0]], -1)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    d = -(n * p1).sum(-1)
    Ls = (n * s[:, None]).sum(-1) + d  # [N, 3]
    flip = torch.where(Ls > 0, -1.0, 1.0).to(dtype)
    n, d, Ls = n * flip[..., None], d * flip, Ls * flip
    phi_s = Ls.amax(-1)  # negative: -inradius
    lines = torch.cat([n, d[..., None]], -1)

    centroid = verts_cam.mean(1)
    depth = centroid[:, 2]
    nrm = torch.linalg.cross(verts_cam[:, 1] - verts_cam[:, 0], verts_cam[:, 2] - verts_cam[:, 0])
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    view = centroid / centroid.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    cos = (nrm * view).sum(-1)
    nrm = torch.where(cos[:, None] > 0, -nrm, nrm)

    with torch.no_grad():
        cproj = _project(centroid, K)
        size = (uv - cproj[:, None]).norm(dim=-1).amax(-1)
        valid = (opacity >= MIN_OPACITY) & (depth > near) & ~bad
        valid &= cos.abs() >= EDGE_ON_COS
        valid &= (-phi_s > min_inradius) & (-phi_s > 1e-12)
        valid &= (size <= max_size) & (size >= min_size)
        valid &= torch.isfinite(uv).all(-1).all(-1)
        if hard:
            k = torch.zeros_like(depth)
        else:
            ratio = (FOOTPRINT_ALPHA / opacity.clamp_min(1e-30)).clamp(max=1.0)
            k = ratio ** (1.0 / sigma.clamp_min(1e-30))
        shrunk = s[:, None] + (1.0 - k)[:, None, None] * (uv - s[:, None])
        bbox = torch.cat([shrunk.amin(1), shrunk.amax(1)], -1)
        valid &= torch.isfinite(bbox).all(-1)
    return dict(uv=uv, lines=lines, phi_s=phi_s, depth=depth, normal=nrm, valid=valid, bbox=bbox)


def window(L: Tensor, phi_s: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Window function from edge values.

    L [..., 3] edge line values at the pixels, phi_s and sigma broadcastable to L[..., 0].
    Returns (I, inside): I = max(0, phi/phi_s)^sigma where inside (all L <= 0), else 0.
    """
    phi = L.amax(-1)
    inside = phi <= 0
    r = (phi / phi_s).clamp_min(1e-30)  # clamp: finite gradients on the edges themselves
    I = torch.where(inside, r ** sigma, torch.zeros_like(r))
    return I, inside


def _cross(o: Tensor, q: Tensor, r: Tensor) -> Tensor:
    """2D cross product (q - o) x (r - o) over the last dim."""
    return (q[..., 0] - o[..., 0]) * (r[..., 1] - o[..., 1]) - (q[..., 1] - o[..., 1]) * (r[..., 0] - o[..., 0])


def _tile_pairs(bbox: Tensor, valid: Tensor, depth: Tensor, H: int, W: int, tile: int):
    """(tile id, triangle id) pairs sorted by (tile, depth, triangle id); tiles_x, tiles_y."""
    tx_n, ty_n = (W + tile - 1) // tile, (H + tile - 1) // tile
    dev = bbox.device
    x0 = torch.ceil(bbox[:, 0]).clamp(0, W - 1)
    y0 = torch.ceil(bbox[:, 1]).clamp(0, H - 1)
    x1 = torch.floor(bbox[:, 2]).clamp(0, W - 1)
    y1 = torch.floor(bbox[:, 3]).clamp(0, H - 1)
    ok = valid & (torch.ceil(bbox[:, 0]) <= W - 1) & (torch.floor(bbox[:, 2]) >= 0) \
        & (torch.ceil(bbox[:, 1]) <= H - 1) & (torch.floor(bbox[:, 3]) >= 0) \
        & (torch.ceil(bbox[:, 0]) <= torch.floor(bbox[:, 2])) & (torch.ceil(bbox[:, 1]) <= torch.floor(bbox[:, 3]))
    idx = ok.nonzero().flatten()
    tx0 = (x0[idx] // tile).long()
    tx1 = (x1[idx] // tile).long()
    ty0 = (y0[idx] // tile).long()
    ty1 = (y1[idx] // tile).long()
    nx, ny = tx1 - tx0 + 1, ty1 - ty0 + 1
    cnt = nx * ny
    tri = torch.repeat_interleave(idx, cnt)
    if tri.numel() == 0:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e, tx_n, ty_n
    start = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(tri.numel(), device=dev) - torch.repeat_interleave(start, cnt)
    nxr = torch.repeat_interleave(nx, cnt)
    tx = torch.repeat_interleave(tx0, cnt) + local % nxr
    ty = torch.repeat_interleave(ty0, cnt) + local // nxr
    tid = ty * tx_n + tx
    # sort by depth (stable on triangle id), then stably by tile
    order = torch.sort(depth.detach()[tri], stable=True).indices
    tid, tri = tid[order], tri[order]
    order = torch.sort(tid, stable=True).indices
    return tid[order], tri[order], tx_n, ty_n


def _pixel_rects(bbox: Tensor, valid: Tensor, uv: Tensor, H: int, W: int, tile: int):
    """Per triangle, the rectangle of pixel centres worth testing: the tiles its footprint touches
    (exactly `_tile_pairs`' rule) intersected with the triangle's own bounding box (pixels outside
    it fail ``all L_i <= 0``), so the pairs equal those of a per-tile traversal.

    returns (idx [n] triangles with a non-empty rectangle, x0, y0, x1, y1 [n] inclusive, tiles [N])
    """
    N = bbox.shape[0]
    fx0 = torch.ceil(bbox[:, 0])
    fy0 = torch.ceil(bbox[:, 1])
    fx1 = torch.floor(bbox[:, 2])
    fy1 = torch.floor(bbox[:, 3])
    ok = valid & (fx0 <= W - 1) & (fx1 >= 0) & (fy0 <= H - 1) & (fy1 >= 0) & (fx0 <= fx1) & (fy0 <= fy1)
    tx0 = torch.div(fx0.clamp(0, W - 1), tile, rounding_mode="floor")
    tx1 = torch.div(fx1.clamp(0, W - 1), tile, rounding_mode="floor")
    ty0 = torch.div(fy0.clamp(0, H - 1), tile, rounding_mode="floor")
    ty1 = torch.div(fy1.clamp(0, H - 1), tile, rounding_mode="floor")
    tiles = torch.where(ok, (tx1 - tx0 + 1) * (ty1 - ty0 + 1), torch.zeros_like(tx0)).long()
    lo, hi = uv.amin(1), uv.amax(1)
    x0 = torch.maximum(tx0 * tile, torch.ceil(lo[:, 0]).clamp(min=0))
    x1 = torch.minimum(((tx1 + 1) * tile - 1).clamp(max=W - 1), torch.floor(hi[:, 0]).clamp(max=W - 1))
    y0 = torch.maximum(ty0 * tile, torch.ceil(lo[:, 1]).clamp(min=0))
    y1 = torch.minimum(((ty1 + 1) * tile - 1).clamp(max=H - 1), torch.floor(hi[:, 1]).clamp(max=H - 1))
    ok &= (x0 <= x1) & (y0 <= y1)
    idx = ok.nonzero().flatten()
    return idx, x0[idx].long(), y0[idx].long(), x1[idx].long(), y1[idx].long(), tiles


def _covered_pairs(lines: Tensor, idx: Tensor, x0, y0, x1, y1, W: int, chunk_elems: int):
    """Every (triangle, pixel) with the pixel centre inside the triangle (all L_i <= 0), no autograd.

    Per (triangle, row) of its rectangle a scanline interval bounds the candidates (about the
    covered pixels plus one at each end), which the exact ``L_i <= 0`` test then filters.
    Rectangles go in chunks of at most ``chunk_elems`` pixels (one huge triangle is cut in row
    bands), so memory stays bounded.  returns (tri [M], pix [M] = y W + x).
    """
    tris, pixs = [], []
    w, h = x1 - x0 + 1, y1 - y0 + 1
    area = w * h
    # huge rectangles: split into row bands so no single rectangle exceeds the chunk
    rows = torch.clamp(chunk_elems // w.clamp_min(1), min=1)
    nb = (h + rows - 1) // rows
    if bool((nb > 1).any()):
        rep = torch.repeat_interleave(torch.arange(idx.numel(), device=idx.device), nb)
        first = torch.cumsum(nb, 0) - nb
        band = torch.arange(rep.numel(), device=idx.device) - first[rep]
        y0b = y0[rep] + band * rows[rep]
        y1b = torch.minimum(y0b + rows[rep] - 1, y1[rep])
        idx, x0, x1, y0, y1 = idx[rep], x0[rep], x1[rep], y0b, y1b
        w, h = x1 - x0 + 1, y1 - y0 + 1
        area = w * h
    csum = torch.cumsum(area, 0)
    start = 0
    n = idx.numel()
    while start < n:
        # the largest run of rectangles whose areas sum to <= chunk_elems
        base = int(csum[start - 1]) if start else 0
        end = int(torch.searchsorted(csum, torch.tensor(base + chunk_elems, device=csum.device), right=True))
        end = max(end, start + 1)
        # scanline: per (triangle, row) the x-interval where every edge line is <= 0, widened
        # by a hair so rounding never loses a pixel; the exact test below decides
        hh = h[start:end]
        r = torch.repeat_interleave(torch.arange(start, end, device=idx.device), hh)
        ys = y0[r] + (torch.arange(r.numel(), device=idx.device) - (torch.cumsum(hh, 0) - hh).repeat_interleave(hh))
        ln = lines[idx[r]]  # [R, 3, 3]
        nx = ln[..., 0]
        c = ln[..., 1] * ys.to(ln.dtype)[:, None] + ln[..., 2]
        bound = -c / torch.where(nx == 0, torch.ones_like(nx), nx)
        inf = torch.full_like(bound, float("inf"))
        xl = torch.where(nx < 0, bound, -inf).amax(-1)
        xr = torch.where(nx > 0, bound, inf).amin(-1)
        empty = ((nx == 0) & (c > 0)).any(-1)
        slack = 1e-3 + 1e-6 * (xl.abs().clamp(max=1e7) + xr.abs().clamp(max=1e7))
        xa = torch.maximum(torch.ceil(xl - slack).clamp(min=-1, max=W).long(), x0[r])
        xb = torch.minimum(torch.floor(xr + slack).clamp(min=-1, max=W).long(), x1[r])
        cnt_row = torch.where(empty, torch.zeros_like(xa), (xb - xa + 1).clamp_min(0))
        cnt = int(cnt_row.sum())
        if cnt == 0:
            start = end
            continue
        rr = torch.repeat_interleave(torch.arange(r.numel(), device=idx.device), cnt_row)
        xs = xa[rr] + (torch.arange(cnt, device=idx.device) - (torch.cumsum(cnt_row, 0) - cnt_row).repeat_interleave(cnt_row))
        ys = ys[rr]
        t = idx[r[rr]]
        ln = ln[rr]
        px, py = xs.to(ln.dtype), ys.to(ln.dtype)
        L = px[:, None] * ln[..., 0] + py[:, None] * ln[..., 1] + ln[..., 2]
        inside = (L <= 0).all(-1)
        tris.append(t[inside])
        pixs.append(ys[inside] * W + xs[inside])
        start = end
    if not tris:
        e = torch.zeros(0, dtype=torch.long, device=lines.device)
        return e, e
    return torch.cat(tris), torch.cat(pixs)


def _segment_weights(alpha: Tensor, seg_start: Tensor, stop_after: bool) -> Tensor:
    """Front-to-back blending weights ``w = alpha T`` over pairs sorted into per-pixel runs.

    Upstream rule (stop_after=False): a pair contributes iff T including it is >= 1e-4 (it is
    dropped when it would push T below 1e-4); stop_after=True (hard mode): iff T before it is.

    alpha [M]; seg_start [M] index of the first pair of each pair's pixel run.  Transmittance is
    the exclusive product of (1 - alpha) within the run, computed as exp of a float64 cumulative
    sum of log(1 - alpha) (differences of a global cumsum, exact enough in float64).
    """
    a64 = alpha.to(torch.float64)
    lg = torch.log((1.0 - a64).clamp_min(1e-300))  # alpha = 1 (hard mode): log 0 -> -690, T -> 0
    cs = torch.cumsum(lg, 0)
    base = torch.where(seg_start > 0, cs[(seg_start - 1).clamp_min(0)], torch.zeros_like(cs))
    incl = cs - base
    excl = incl - lg
    T_excl = torch.exp(excl)
    keep = (excl if stop_after else incl).detach() >= _LOG_T_STOP
    w = torch.where(keep, a64 * T_excl, torch.zeros_like(a64))
    return w.to(alpha.dtype)


def _pair_alpha(L: Tensor, t: Tensor, opacity: Tensor, sigma: Tensor, phi_s: Tensor, hard: bool) -> Tensor:
    """alpha of (pixel, triangle) pairs from their edge values ``L [M, 3]``."""
    if hard:
        return opacity.clamp(max=1.0)[t]
    I, _ = window(L, phi_s[t], sigma[t])
    return torch.minimum(opacity[t] * I, torch.full((), ALPHA_MAX, dtype=L.dtype, device=L.device))


def _pair_geometry(uv: Tensor, z: Tensor, t: Tensor, px: Tensor) -> tuple[Tensor, Tensor]:
    """Perspective-correct barycentric weights over z (``lam / z``, [M, 3]) and the plane's z at the pixel [M]."""
    tuv = uv[t]
    Av, Bv, Cv = tuv[:, 0], tuv[:, 1], tuv[:, 2]
    area = _cross(Av, Bv, Cv)
    area = torch.where(area.abs() > 1e-30, area, torch.ones_like(area))
    lam = torch.stack([_cross(px, Bv, Cv), _cross(Av, px, Cv), _cross(Av, Bv, px)], -1) / area[:, None]
    wz = lam / z[t]
    return wz, 1.0 / wz.sum(-1)


def _edge_values(lines: Tensor, t: Tensor, px: Tensor) -> Tensor:
    ln = lines[t]
    return px[:, None, 0] * ln[..., 0] + px[:, None, 1] * ln[..., 1] + ln[..., 2]


def _runs(p: Tensor) -> Tensor:
    """For pixel ids ``p [M]`` sorted into runs: the index of each element's run start."""
    newrun = torch.ones_like(p, dtype=torch.bool)
    newrun[1:] = p[1:] != p[:-1]
    return newrun.nonzero().flatten()[torch.cumsum(newrun.long(), 0) - 1]


def _rasterize_pairs(pre: dict, verts_cam: Tensor, colors: Tensor, opacity: Tensor, sigma: Tensor, bg: Tensor,
                     H: int, W: int, tile: int, hard: bool, chunk_elems: int):
    """Flat (pixel, triangle) implementation of the tile traversal (see the module docstring).

    Two passes: without autograd, every covered pair is evaluated, ordered and composited to find
    the contributors (alpha >= 1/255, before the early stop); then only those are evaluated again
    with autograd.  Dropped pairs have weight 0 and come after every contributor of their pixel,
    so values and gradients equal a single differentiable pass, at a fraction of its cost once
    surfaces become opaque (hard mode: one pair per pixel).
    """
    dev, dtype = verts_cam.device, verts_cam.dtype
    N = verts_cam.shape[0]
    C = colors.shape[-1]
    per_vertex = colors.ndim == 3
    lines, phi_s, uv = pre["lines"], pre["phi_s"], pre["uv"]
    z = verts_cam[..., 2]
    acc = torch.zeros(H * W, C + 5, dtype=dtype, device=dev)
    max_weight = torch.zeros(N, dtype=dtype, device=dev)
    with torch.no_grad():
        idx, x0, y0, x1, y1, n_touched = _pixel_rects(pre["bbox"], pre["valid"], uv.detach(), H, W, tile)
        # rank of every triangle in the per-tile order (centroid depth, ties -> lower index)
        rank = torch.empty(N, dtype=torch.long, device=dev)
        rank[torch.sort(pre["depth"].detach(), stable=True).indices] = torch.arange(N, device=dev)
        t_, p_ = _covered_pairs(lines.detach(), idx, x0, y0, x1, y1, W, chunk_elems)
        if t_.numel():
            px = torch.stack([(p_ % W).to(dtype), torch.div(p_, W, rounding_mode="floor").to(dtype)], -1)
            a = _pair_alpha(_edge_values(lines.detach(), t_, px), t_, opacity.detach(), sigma.detach(),
                            phi_s.detach(), hard)
            keep = a >= ALPHA_MIN
            t_, p_, px, a = t_[keep], p_[keep], px[keep], a[keep]
        if t_.numel() and hard and bool((a >= 1.0).all()):
            # opaque z-buffer (meshes): the nearest pair of each pixel is its only contributor;
            # found with two scatter-min passes instead of sorting every pair
            _, zpix = _pair_geometry(uv.detach(), z.detach(), t_, px)
            zmin = torch.full((H * W,), float("inf"), dtype=dtype, device=dev).scatter_reduce(0, p_, zpix, "amin")
            near_ = zpix == zmin[p_]
            big = torch.iinfo(torch.long).max
            rmin = torch.full((H * W,), big, dtype=torch.long, device=dev).scatter_reduce(
                0, p_, torch.where(near_, rank[t_], torch.full_like(t_, big)), "amin")
            first = near_ & (rank[t_] == rmin[p_])
            t_, p_, px = t_[first], p_[first], px[first]
        elif t_.numel():
            if hard:  # per-pixel order by the plane depth at the pixel (ties -> tile order)
                _, zpix = _pair_geometry(uv.detach(), z.detach(), t_, px)
                order = torch.sort(rank[t_], stable=True).indices
                order = order[torch.sort(zpix[order], stable=True).indices]
            else:
                order = torch.sort(rank[t_]).indices  # ranks are unique: no ties
            order = order[torch.sort(p_[order], stable=True).indices]
            t_, p_, px, a = t_[order], p_[order], px[order], a[order]
            w0 = _segment_weights(a, _runs(p_), stop_after=hard)
            live = w0 > 0  # a prefix of every pixel's run
            t_, p_, px = t_[live], p_[live], px[live]
    if t_.numel():
        # differentiable pass over the contributors, already in compositing order
        a = _pair_alpha(_edge_values(lines, t_, px), t_, opacity, sigma, phi_s, hard)
        wz, zpix = _pair_geometry(uv, z, t_, px)
        w = _segment_weights(a, _runs(p_), stop_after=True)  # every pair here contributes
        col = ((wz * zpix[:, None])[..., None] * colors[t_]).sum(1) if per_vertex else colors[t_]
        vals = torch.cat([w[:, None] * col, w[:, None], (w * zpix)[:, None], w[:, None] * pre["normal"][t_]], -1)
        acc = acc.index_add(0, p_, vals)
        max_weight = max_weight.scatter_reduce(0, t_, w.detach(), reduce="amax")
    acc = torch.cat([acc[:, :C] + (1.0 - acc[:, C:C + 1]) * bg, acc[:, C:]], -1)
    return acc.reshape(H, W, C + 5), max_weight, n_touched


def _check(verts_cam, K, colors, opacity, image_size, tile) -> None:
    from facet3d.core.errors import UsageError

    if not isinstance(verts_cam, Tensor) or verts_cam.ndim != 3 or verts_cam.shape[1:] != (3, 3):
        raise UsageError(f"verts_cam must be a [N, 3, 3] tensor, got {getattr(verts_cam, 'shape', type(verts_cam))}")
    n = verts_cam.shape[0]
    if tuple(K.shape) != (3, 3):
        raise UsageError(f"K must be [3, 3], got {tuple(K.shape)}")
    if colors.shape[0] != n or colors.ndim not in (2, 3) or (colors.ndim == 3 and colors.shape[1] != 3):
        raise UsageError(f"colors must be [N, C] or [N, 3, C] with N={n}, got {tuple(colors.shape)}")
    if tuple(opacity.shape) != (n,):
        raise UsageError(f"opacity must be [N]={n}, got {tuple(opacity.shape)}")
    if len(image_size) != 2 or int(image_size[0]) < 1 or int(image_size[1]) < 1 or tile < 1:
        raise UsageError(f"bad image_size {tuple(image_size)} or tile {tile}")


def normalize_inputs(verts_cam: Tensor, K: Tensor, colors: Tensor, opacity: Tensor, sigma, image_size, background,
                     tile: int):
    """Validate the arguments of `rasterize_triangles` (any backend) and bring them to one form.

    returns (H, W, K, opacity [N], sigma [N], background [C]) in verts_cam's dtype and device.
    """
    _check(verts_cam, K, colors, opacity, image_size, tile)
    N = verts_cam.shape[0]
    dev, dtype = verts_cam.device, verts_cam.dtype
    sigma = torch.as_tensor(sigma, dtype=dtype, device=dev).expand(N) if not isinstance(sigma, Tensor) \
        or sigma.ndim == 0 else sigma.to(dtype)
    C = colors.shape[-1]
    bg = torch.zeros(C, dtype=dtype, device=dev) if background is None else \
        torch.as_tensor(background, dtype=dtype, device=dev).reshape(C)
    return int(image_size[0]), int(image_size[1]), K.to(dtype), opacity.to(dtype), sigma, bg


def rasterize_triangles(verts_cam: Tensor, K: Tensor, colors: Tensor, opacity: Tensor, sigma,
                        image_size: tuple[int, int], background=None, tile: int = 16, hard: bool = False,
                        near: float = 0.2, min_size: float | None = None, max_size: float = 1600.0,
                        min_inradius: float | None = None, chunk_elems: int = CHUNK_ELEMS) -> dict[str, Tensor]:
    """Render one view of N triangles.

    verts_cam: Tensor   # [N, 3, 3] camera-space vertices (OpenCV axes), float32/float64
    K: Tensor           # [3, 3] intrinsics
    colors: Tensor      # [N, C] per-triangle, or [N, 3, C] per-vertex (barycentric, perspective-correct)
    opacity: Tensor     # [N] in [0, 1]
    sigma: Tensor|float # [N] or scalar window smoothness (> 0; ignored when hard)
    image_size          # (H, W)
    background          # [C] or None (zeros)
    hard: bool          # z-buffer limit (see the module docstring)
    returns dict:
        rgb [H, W, C], alpha [H, W], depth [H, W] (normalised expected z, 0 where alpha == 0),
        depth_acc [H, W] (sum of w z, upstream's D), normal [H, W, 3] (sum of w n),
        max_weight [N] (detached), n_touched [N] tiles per triangle (detached)
    """
    H, W, K, opacity, sigma, bg = normalize_inputs(verts_cam, K, colors, opacity, sigma, image_size, background, tile)
    C = colors.shape[-1]
    pre = preprocess(verts_cam, K, opacity, sigma, hard, near, min_size, max_size, min_inradius)
    img, max_weight, n_touched = _rasterize_pairs(pre, verts_cam, colors, opacity, sigma, bg, H, W, tile, hard,
                                                  chunk_elems)
    rgb, alpha, dacc, nrm = img[..., :C], img[..., C], img[..., C + 1], img[..., C + 2:]
    depth = torch.where(alpha > 0, dacc / torch.where(alpha > 0, alpha, torch.ones_like(alpha)), torch.zeros_like(alpha))
    return dict(rgb=rgb, alpha=alpha, depth=depth, depth_acc=dacc, normal=nrm, max_weight=max_weight,
                n_touched=n_touched)
