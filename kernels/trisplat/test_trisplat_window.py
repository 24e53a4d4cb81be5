"""Window function and compositing against direct numpy / naive per-pixel loops."""

from __future__ import annotations

import numpy as np
import torch

from facet3d.kernels.trisplat.reference import (ALPHA_MAX, ALPHA_MIN, FOOTPRINT_ALPHA, T_STOP, preprocess,
                                                 rasterize_triangles, window)

D = torch.float64
K1 = torch.eye(3, dtype=D)  # verts at z = 1 with K = I: pixel coordinates = (x, y)


def np_window(tri2d: np.ndarray, p: np.ndarray, sigma: float) -> np.ndarray:
    """I(p) computed from scratch: incenter, inward-negative edge lines, phi = max L."""
    A, B, C = tri2d
    a, b, c = np.linalg.norm(B - C), np.linalg.norm(A - C), np.linalg.norm(A - B)
    s = (a * A + b * B + c * C) / (a + b + c)
    Ls, Lp = [], []
    for i in range(3):
        p1, p2 = tri2d[i], tri2d[(i + 1) % 3]
        n = np.array([p2[1] - p1[1], -(p2[0] - p1[0])])
        n /= np.linalg.norm(n)
        d = -n @ p1
        if n @ s + d > 0:
            n, d = -n, -d
        Ls.append(n @ s + d)
        Lp.append(p @ n + d)
    Lp = np.stack(Lp, -1)
    phi, phis = Lp.max(-1), max(Ls)
    return np.where(phi <= 0, np.maximum(0, phi / phis) ** sigma, 0.0)


def _lift(tri2d):
    t = torch.as_tensor(tri2d, dtype=D)
    return torch.cat([t, torch.ones(3, 1, dtype=D)], -1)[None]


def test_window_unit_properties():
    tri = np.array([[2.0, 3.0], [27.0, 5.5], [9.0, 24.0]])
    pre = preprocess(_lift(tri), K1, torch.ones(1, dtype=D), torch.ones(1, dtype=D))
    A, B, C = tri
    a, b, c = np.linalg.norm(B - C), np.linalg.norm(A - C), np.linalg.norm(A - B)
    s = (a * A + b * B + c * C) / (a + b + c)
    lines = pre["lines"][0]

    def I_at(pts, sigma):
        p = torch.as_tensor(pts, dtype=D)
        L = p @ lines[:, :2].T + lines[:, 2]
        return window(L, pre["phi_s"][0], torch.tensor(sigma, dtype=D))[0].numpy()

    for sigma in (0.3, 1.0, 3.0):
        assert abs(I_at(s[None], sigma)[0] - 1) < 1e-12  # 1 at the incenter
        edge_pts = np.array([(A + B) / 2, 0.3 * B + 0.7 * C, 0.9 * C + 0.1 * A, A, B, C])
        assert np.all(I_at(edge_pts, sigma) ** (1 / sigma) < 1e-12)  # 0 on the edges (up to rounding of phi)
        for v in (A, B, C, (A + C) / 2):  # monotone from the incenter outwards
            ts = np.linspace(0, 1, 21)
            vals = I_at(s[None] + ts[:, None] * (v - s)[None], sigma)
            assert np.all(np.diff(vals) <= 1e-12)
        outside = np.array([[0.0, 0.0], [30.0, 30.0], A + (A - s) * 0.1])
        assert np.all(I_at(outside, sigma) == 0)
    assert float(-pre["phi_s"][0]) > 0  # phi(s) = -inradius


def test_window_matches_numpy_per_pixel():
    tri = np.array([[3.2, 2.7], [28.6, 9.1], [11.4, 27.3]])
    H, W = 32, 40
    ii, jj = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    pix = np.stack([jj, ii], -1).astype(np.float64)  # pixel centre (u, v) = (col, row)
    for sigma, op in ((0.5, 0.6), (1.7, 0.9), (4.0, 0.3)):
        out = rasterize_triangles(_lift(tri), K1, torch.ones(1, 1, dtype=D), torch.tensor([op], dtype=D),
                                  torch.tensor([sigma], dtype=D), (H, W))
        I = np_window(tri, pix.reshape(-1, 2), sigma).reshape(H, W)
        alpha = np.minimum(ALPHA_MAX, op * I)
        # footprint: tiles touched by the bbox of {op * I >= 0.01}
        k = (FOOTPRINT_ALPHA / op) ** (1 / sigma)
        A, B, C = tri
        a, b, c = np.linalg.norm(B - C), np.linalg.norm(A - C), np.linalg.norm(A - B)
        s = (a * A + b * B + c * C) / (a + b + c)
        sh = s + (1 - k) * (tri - s)
        tx0, ty0 = np.ceil(sh.min(0)) // 16
        tx1, ty1 = np.floor(sh.max(0)) // 16
        in_tile = (jj // 16 >= tx0) & (jj // 16 <= tx1) & (ii // 16 >= ty0) & (ii // 16 <= ty1)
        expect = np.where((alpha >= ALPHA_MIN) & in_tile, alpha, 0.0)
        np.testing.assert_allclose(out["alpha"].numpy(), expect, atol=1e-12)
        assert out["alpha"].max() > 0.2


def naive_composite(verts2d_depth, colors, opacity, sigma, H, W, bg, tile=16):
    """Per-pixel loop over triangles sorted by centroid depth, upstream's early stop rule."""
    n = len(verts2d_depth)
    tris2d = [v[:, :2] / v[:, 2:] for v in verts2d_depth]
    depth = np.array([v[:, 2].mean() for v in verts2d_depth])
    order = np.argsort(depth, kind="stable")
    rgb = np.zeros((H, W, 3))
    alpha_img = np.zeros((H, W))
    rects = []
    for t in range(n):
        tri = tris2d[t]
        A, B, C = tri
        a, b, c = np.linalg.norm(B - C), np.linalg.norm(A - C), np.linalg.norm(A - B)
        s = (a * A + b * B + c * C) / (a + b + c)
        k = (FOOTPRINT_ALPHA / opacity[t]) ** (1 / sigma[t])
        sh = s + (1 - k) * (tri - s)
        lo_px, hi_px = np.ceil(sh.min(0)), np.floor(sh.max(0))  # pixel centres inside the bbox
        if np.any(lo_px > hi_px) or np.any(lo_px > [W - 1, H - 1]) or np.any(hi_px < 0):
            rects.append((np.array([1, 1]), np.array([0, 0])))  # covers no pixel centre: no tile
            continue
        rects.append((lo_px.clip(0, [W - 1, H - 1]) // tile, hi_px.clip(0, [W - 1, H - 1]) // tile))
    for i in range(H):
        for j in range(W):
            T, col = 1.0, np.zeros(3)
            for t in order:
                lo, hi = rects[t]
                if not (lo[0] <= j // tile <= hi[0] and lo[1] <= i // tile <= hi[1]):
                    continue
                I = np_window(tris2d[t], np.array([[j, i]], dtype=np.float64), sigma[t])[0]
                al = min(ALPHA_MAX, opacity[t] * I)
                if al < ALPHA_MIN:
                    continue
                if T * (1 - al) < T_STOP:
                    break
                col += colors[t] * al * T
                T *= 1 - al
            rgb[i, j] = col + T * bg
            alpha_img[i, j] = 1 - T
    return rgb, alpha_img


def test_compositing_matches_naive_loop():
    rng = np.random.default_rng(0)
    H, W = 24, 40  # 2 x 3 tiles, partial last column and row
    tris = []
    for t in range(7):
        cen = rng.uniform([6, 5], [34, 19])
        pts = cen + rng.normal(0, 7, (3, 2))
        z = rng.uniform(2, 5)
        tris.append(np.concatenate([pts * z, np.full((3, 1), z) + rng.normal(0, 0.05, (3, 1))], 1))
    # a stack of 5 nearly opaque layers over one spot triggers the T < 1e-4 early stop
    base = np.array([[18.37, 8.21], [30.13, 10.42], [22.29, 21.33]])
    for layer in range(5):
        z = 1.0 + 0.1 * layer
        tris.append(np.concatenate([base * z, np.full((3, 1), z)], 1))
    tris = np.stack(tris)
    n = len(tris)
    # verts are (u z, v z, z): with K = I they project to (u, v)
    colors = rng.uniform(0, 1, (n, 3))
    opacity = np.concatenate([rng.uniform(0.3, 0.95, 7), np.full(5, 0.98)])
    sigma = np.concatenate([rng.uniform(0.4, 3, 7), np.full(5, 0.05)])
    bg = np.array([0.1, 0.2, 0.3])
    out = rasterize_triangles(torch.as_tensor(tris), K1, torch.as_tensor(colors), torch.as_tensor(opacity),
                              torch.as_tensor(sigma), (H, W), torch.as_tensor(bg))
    rgb, alpha = naive_composite(tris, colors, opacity, sigma, H, W, bg)
    np.testing.assert_allclose(out["alpha"].numpy(), alpha, atol=1e-10)
    np.testing.assert_allclose(out["rgb"].numpy(), rgb, atol=1e-10)
    assert alpha.max() > 0.999  # the early stop was exercised
    # max_weight: the largest blending weight each triangle got
    assert out["max_weight"].shape == (n,) and float(out["max_weight"].max()) > 0.9


def test_culling():
    tri = np.array([[3.0, 2.0], [20.0, 4.0], [8.0, 15.0]])
    v = _lift(tri).repeat(5, 1, 1)
    v[1] = v[1] * 0.1  # centroid z = 0.1 <= near plane 0.2 (projection unchanged)
    v[2, :, :2] = v[2, :, :2] * 0.01  # sub-pixel triangle
    v[3, :, :2] = torch.tensor([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]], dtype=D)  # degenerate (collinear)
    op = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.005], dtype=D)
    pre = preprocess(v, K1, op, torch.ones(5, dtype=D))
    assert pre["valid"].tolist() == [True, False, False, False, False]
    # hard mode keeps sub-pixel triangles (a z-buffer rasterises them)
    pre = preprocess(v, K1, op, torch.ones(5, dtype=D), hard=True)
    assert pre["valid"].tolist() == [True, False, True, False, False]


def test_chunking_does_not_change_results():
    """Tiny chunk_elems (one tile per chunk, triangle axis cut in blocks) gives the same images (up to summation order)."""
    g = torch.Generator().manual_seed(0)
    n = 200
    c = torch.rand(n, 1, 2, generator=g, dtype=D) * 30
    tri = c + torch.randn(n, 3, 2, generator=g, dtype=D) * 6
    z = torch.rand(n, 1, 1, generator=g, dtype=D) * 3 + 2
    v = torch.cat([tri * z, z.expand(n, 3, 1)], -1)
    args = (v, K1, torch.rand(n, 3, generator=g, dtype=D), torch.rand(n, generator=g, dtype=D) * 0.5 + 0.2,
            torch.rand(n, generator=g, dtype=D) + 0.5, (32, 40))
    for hard in (False, True):
        a = rasterize_triangles(*args, hard=hard)
        b = rasterize_triangles(*args, hard=hard, chunk_elems=1000)
        for k in ("rgb", "alpha", "depth", "normal", "max_weight"):
            assert torch.allclose(a[k], b[k], rtol=1e-12, atol=1e-12), k
