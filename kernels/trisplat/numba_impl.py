"""Triangle-splatting rasterizer compiled for the CPU (numba): forward and backward, soft and hard.

Same contract as `facet3d.kernels.trisplat.reference.rasterize_triangles` (the source of truth), for
float32 CPU tensors. One custom autograd function runs the kernels of `numba_triangles` (per triangle) and
`numba_kernels` (per tile):

* forward: `preprocess` per triangle (projection, edge lines, incenter, culling, footprint and the
  rectangle of candidate pixels: the reference's `preprocess` + `_pixel_rects`), `bin_tiles` (the
  (tile, triangle) pairs, each tile's by centroid depth), then one tile per thread (soft: front to
  back in list order; hard: per-pixel depth order);
* backward: the tiles again (per-pair gradients of the screen-space quantities), then
  `preprocess_backward` per triangle: the pair gradients summed and carried through the edge lines,
  incenter, projection and face normal to the camera-space vertices and K, by hand-written
  derivatives (tested against the reference's autograd).

Nothing of the rasterizer is left to torch's autograd but the colours, opacity and sigma, which
the caller computes (SH, activations) and whose gradients come back as they are.

Threads: torch's count (`torch.get_num_threads`, capped by numba's pool). The kernels are compiled
on first use and cached on disk (numba's ``cache=True``: next to this module, or in
``NUMBA_CACHE_DIR`` / the user cache when that is read-only); `compile_report` says how long the
first call took and whether it came from the cache. Importing this module imports numba (~0.3 s);
the dispatcher imports it only when the backend is picked.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from facet3d.kernels.trisplat.reference import CHUNK_ELEMS, normalize_inputs

__all__ = ["rasterize_triangles_numba", "compile_report", "warm_up"]

_FIRST: dict = {}


def _kernels():
    """The tile kernels (`numba_kernels`), imported on first use (numba is imported then)."""
    from facet3d.kernels.trisplat import numba_kernels

    return numba_kernels


def _triangles():
    """The per-triangle kernels (`numba_triangles`), imported on first use."""
    from facet3d.kernels.trisplat import numba_triangles

    return numba_triangles


def _set_threads() -> None:
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _np(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


def _timed_first(name: str, fn, *args):
    """Run a kernel; the first call of each kernel in this process is timed (compile or cache load)."""
    if name in _FIRST:
        return fn(*args)
    misses0 = sum(fn.stats.cache_misses.values())
    t0 = time.perf_counter()
    r = fn(*args)
    _FIRST[name] = dict(seconds=time.perf_counter() - t0, from_cache=sum(fn.stats.cache_misses.values()) == misses0)
    return r


def compile_report() -> dict:
    """{kernel: {seconds, from_cache}} for the kernels called so far in this process: the first call's
    time, which is the compile (or the load from numba's on-disk cache) plus one run."""
    return {k: dict(v) for k, v in _FIRST.items()}


def warm_up() -> dict:
    """Compile (or load from the cache) every kernel on a tiny scene; returns `compile_report()`."""
    from facet3d.kernels.trisplat.bench import scene

    v, K, col, op, sg, size = scene(4, 32, seed=0)
    for hard in (False, True):
        for c in (col, col[:, None].expand(-1, 3, -1).contiguous()):
            leaves = [x.clone().requires_grad_() for x in (v, c, op)]
            o = rasterize_triangles_numba(leaves[0], K, leaves[1], leaves[2], sg, size, hard=hard)
            (o["rgb"].sum() + o["depth"].sum()).backward()
    return compile_report()


class _RasterFn(torch.autograd.Function):
    """(verts_cam, K, colors [N, V, C], opacity, sigma, bg) -> rgb, alpha, depth, depth_acc, normal,
    max_weight, n_touched."""

    @staticmethod
    def forward(ctx, verts_cam, K, colors, opacity, sigma, bg, opts):
        H, W, tile, hard, near, min_size, max_size, min_inradius = opts
        nk, nt = _kernels(), _triangles()
        N, V, C = colors.shape
        f32 = np.float32
        v, Kn, cols, op, sg, bgn = (_np(x.float()) for x in (verts_cam, K, colors, opacity, sigma, bg))
        uv = np.zeros((N, 3, 2), f32)
        z = np.zeros((N, 3), f32)
        lines = np.zeros((N, 3, 3), f32)
        phis = np.zeros(N, f32)
        depth = np.zeros(N, f32)
        nrm = np.zeros((N, 3), f32)
        rect = np.empty((N, 4), np.int64)
        n_touched = np.empty(N, np.int64)
        tiles_x, tiles_y = (W + tile - 1) // tile, (H + tile - 1) // tile
        _set_threads()
        _timed_first("preprocess", nt.preprocess, v, Kn, op, sg, hard, f32(near), f32(min_size), f32(max_size),
                     f32(min_inradius), H, W, tile, uv, z, lines, phis, depth, nrm, rect, n_touched)
        starts, tri = _timed_first("bin_tiles", nt.bin_tiles, depth, rect, tile, tiles_x, tiles_x * tiles_y)
        # every pixel belongs to a tile, and each tile writes all of its own
        out = (np.empty((H, W, C), f32), np.empty((H, W), f32), np.empty((H, W), f32), np.empty((H, W), f32),
               np.empty((H, W, 3), f32))
        pmax = np.zeros(max(1, tri.shape[0]), f32)
        geo = (lines, phis, sg, op, uv, z, cols, nrm, bgn)
        if hard:
            _timed_first("hard_forward", nk.hard_forward, lines, op, uv, z, cols, nrm, bgn, rect, starts, tri,
                         H, W, tile, tiles_x, out, pmax)
            state = ()
        else:
            t_final = np.empty((H, W))
            last = np.empty((H, W), np.int32)
            _timed_first("soft_forward", nk.soft_forward, *geo, rect, starts, tri, H, W, tile, tiles_x,
                         out, t_final, last, pmax)
            state = (t_final, last)
        max_weight = nt.pair_max(pmax, tri, N)
        ctx.saved = (v, Kn, geo, rect, starts, tri, state)
        ctx.opts, ctx.tiles_x = opts, tiles_x
        ctx.dtypes = [x.dtype for x in (verts_cam, K, colors, opacity, sigma, bg)]
        ctx.alpha_depth = (out[1], out[2])
        rgb, alpha, depth, dacc, nout = (torch.from_numpy(x) for x in out)
        mw, nt = torch.from_numpy(max_weight), torch.from_numpy(n_touched)
        ctx.mark_non_differentiable(mw, nt)
        return rgb, alpha, depth, dacc, nout, mw, nt

    @staticmethod
    def backward(ctx, g_rgb, g_alpha, g_depth, g_dacc, g_n, _g_mw, _g_nt):
        H, W, tile, hard = ctx.opts[:4]
        v, Kn, geo, rect, starts, tri, state = ctx.saved
        lines, phis, sg, op, uv, z, cols, nrm, bgn = geo
        nk, nt = _kernels(), _triangles()
        N, V, C = cols.shape
        gout = _output_grads(g_rgb, g_alpha, g_depth, g_dacc, g_n, *ctx.alpha_depth, C)
        gbuf = np.empty((tri.shape[0], nk.G_FIXED + V * C), np.float32)  # each tile writes its pairs' rows
        _set_threads()
        if tri.shape[0]:
            if hard:
                _timed_first("hard_backward", nk.hard_backward, lines, op, uv, z, cols, nrm, bgn, rect, starts, tri,
                             H, W, tile, ctx.tiles_x, gout, gbuf)
            else:
                _timed_first("soft_backward", nk.soft_backward, *geo, rect, starts, tri, H, W, tile, ctx.tiles_x,
                             *state, gout, gbuf)
        tstart, pair = nt.pairs_by_triangle(tri, N)
        gverts = np.empty((N, 3, 3))  # written (zeros included) by preprocess_backward
        gK = np.empty((N, 5))
        gtri = np.empty((N, gbuf.shape[1]))
        _timed_first("preprocess_backward", nt.preprocess_backward, v, Kn, hard, tstart, pair, gbuf, gverts, gK, gtri)
        dt = ctx.dtypes
        g_v = torch.from_numpy(gverts).to(dt[0])
        g_K = None
        if ctx.needs_input_grad[1]:
            k5 = torch.from_numpy(gK).sum(0)
            g_K = torch.zeros(3, 3, dtype=torch.float64)
            g_K[0, 0], g_K[0, 1], g_K[0, 2], g_K[1, 1], g_K[1, 2] = k5
            g_K = g_K.to(dt[1])
        g = torch.from_numpy(gtri)
        g_col = g[:, nk.G_FIXED:].reshape(N, V, C).to(dt[2])
        g_op = g[:, 11].to(dt[3])
        g_sig = None if hard else g[:, 10].to(dt[4])  # the window is not part of a hard render
        g_bg = None
        if ctx.needs_input_grad[5]:  # rgb = acc + (1 - alpha) bg, with alpha the forward output
            g_bg = (g_rgb.float() * (1.0 - torch.from_numpy(ctx.alpha_depth[0]))[..., None]).sum((0, 1)).to(dt[5])
        return g_v, g_K, g_col, g_op, g_sig, g_bg, None


def _output_grads(g_rgb, g_alpha, g_depth, g_dacc, g_n, alpha, depth, C: int) -> np.ndarray:
    """The kernels' output gradients [H, W, C + 5] (rgb, alpha, depth_acc, normal), with the
    normalised depth's (depth = dacc / alpha where alpha > 0) folded into alpha and depth_acc."""
    H, W = alpha.shape
    gout = np.zeros((H, W, C + 5), np.float32)
    for sl, g in ((slice(0, C), g_rgb), (C, g_alpha), (C + 1, g_dacc), (slice(C + 2, C + 5), g_n)):
        if g is not None:
            gout[..., sl] = _np(g.float())
    if g_depth is not None:
        gd = _np(g_depth.float())
        inv = np.divide(1.0, alpha, out=np.zeros_like(alpha), where=alpha > 0)
        gout[..., C + 1] += gd * inv
        gout[..., C] -= gd * depth * inv
    return gout


def rasterize_triangles_numba(verts_cam: Tensor, K: Tensor, colors: Tensor, opacity: Tensor, sigma,
                              image_size: tuple[int, int], background=None, tile: int = 16, hard: bool = False,
                              near: float = 0.2, min_size: float | None = None, max_size: float = 1600.0,
                              min_inradius: float | None = None, chunk_elems: int = CHUNK_ELEMS) -> dict[str, Tensor]:
    """`reference.rasterize_triangles` with compiled CPU compositing (same signature, same outputs).

    verts_cam: Tensor   # [N, 3, 3] camera-space vertices, float32, CPU
    K: Tensor           # [3, 3] intrinsics
    colors: Tensor      # [N, C] per-triangle, or [N, 3, C] per-vertex (perspective-correct)
    opacity: Tensor     # [N]
    sigma: Tensor|float # [N] or scalar (unused when hard)
    image_size          # (H, W)
    background          # [C] or None (zeros); differentiable when a tensor requiring grad
    chunk_elems         # unused (the reference's memory bound; memory here is O(pixels + pairs))
    returns dict: rgb [H, W, C], alpha [H, W], depth [H, W], depth_acc [H, W], normal [H, W, 3],
                  max_weight [N] (detached), n_touched [N] (detached)
    """
    H, W, K, opacity, sigma, bg = normalize_inputs(verts_cam, K, colors, opacity, sigma, image_size, background, tile)
    if min_size is None:
        min_size = 0.0 if hard else 1.0
    if min_inradius is None:
        min_inradius = 0.0 if hard else 1.0
    cols = colors if colors.ndim == 3 else colors[:, None]
    rgb, alpha, depth, dacc, nrm, max_weight, n_touched = _RasterFn.apply(
        verts_cam, K, cols, opacity, sigma.contiguous(), bg, (H, W, tile, bool(hard), near, min_size, max_size,
                                                               min_inradius))
    dt = verts_cam.dtype
    return dict(rgb=rgb.to(dt), alpha=alpha.to(dt), depth=depth.to(dt), depth_acc=dacc.to(dt), normal=nrm.to(dt),
                max_weight=max_weight.to(dt), n_touched=n_touched)
