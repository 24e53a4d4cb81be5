"""core.ops.neighbors (the one neighbour service) against scipy's cKDTree and brute force, and the
scipy knn backend's fast paths (ordered queries, second pass) against the torch reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import facet3d.kernels.knn.scipy_impl as scipy_impl
from facet3d.core.errors import GeometryError
from facet3d.core.ops.neighbors import ball_query, knn_points, pairs_within
from facet3d.kernels.dispatch import pick
from facet3d.kernels.knn.reference import knn_torch


def _brute_knn(q: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((q[:, None] - p[None]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]  # ties -> lower index
    return np.take_along_axis(d, idx, 1), idx


def test_knn_points_numpy_float64_matches_ckdtree_and_picks_scipy():
    rng = np.random.default_rng(0)
    q, p = rng.random((5000, 3)), rng.random((4000, 3))
    d, idx = knn_points(q, p, 4)
    assert isinstance(d, np.ndarray) and d.dtype == np.float64 and idx.dtype == np.int64
    rd, ri = cKDTree(p).query(q, k=4)
    assert np.array_equal(idx, ri)
    np.testing.assert_allclose(d, rd, rtol=1e-12, atol=0)
    d2, _ = knn_points(q, p, 4, squared=True)
    np.testing.assert_allclose(d2, rd ** 2, rtol=1e-12, atol=0)
    tq, tp = torch.from_numpy(q)[None], torch.from_numpy(p)[None]
    assert pick("knn", tq, tp, 4, None, None)[0].name == "scipy"


def test_knn_points_torch_float32_small_and_errors():
    g = torch.Generator().manual_seed(1)
    q, p = torch.rand(50, 3, generator=g), torch.rand(80, 3, generator=g)
    d, idx = knn_points(q, p, 3)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float32
    bd, bi = _brute_knn(q.double().numpy(), p.double().numpy(), 3)
    assert np.array_equal(idx.numpy(), bi)
    np.testing.assert_allclose(d.numpy(), bd, rtol=1e-6)
    assert knn_points(np.zeros((0, 3)), p.numpy(), 2)[0].shape == (0, 2)
    with pytest.raises(GeometryError):
        knn_points(q, p[:2], 3)  # fewer points than k
    with pytest.raises(GeometryError):
        knn_points(q[:, :2], p, 1)


def test_knn_points_gradient_is_finite_at_zero_distance():
    p = torch.rand(30, 3, dtype=torch.float64, requires_grad=True)
    d, _ = knn_points(p, p.detach(), 2)
    d.sum().backward()
    assert torch.isfinite(p.grad).all()
    # only the second column moves: d/dp |p - p_j| = (p - p_j) / |p - p_j|
    _, idx = knn_points(p.detach(), p.detach(), 2)
    diff = p.detach() - p.detach()[idx[:, 1]]
    np.testing.assert_allclose(p.grad.numpy(), (diff / diff.norm(dim=1, keepdim=True)).numpy(), rtol=1e-12)


@pytest.mark.parametrize("self_query", [True, False])
def test_scipy_ordered_queries_equal_reference(self_query):
    # >= MIN_ORDERED queries take the reordered path (leaf order for self-queries, Morton otherwise)
    g = torch.Generator().manual_seed(2)
    p = torch.rand(1, 6000, 3, generator=g)
    q = p if self_query else torch.rand(1, 5000, 3, generator=g)
    assert q.shape[1] >= scipy_impl.MIN_ORDERED
    for k in (1, 7):
        d0, i0 = knn_torch(q, p, k)
        d1, i1 = scipy_impl.knn_scipy(q, p, k)
        assert torch.equal(i0, i1) and torch.equal(d0, d1)


def test_scipy_second_pass_settles_lattice_ties(monkeypatch):
    # unique lattice points, k=2: 6 neighbours tie at distance 1, so k+1 candidates cannot settle a
    # row but k+EXTRA can (the 10th is at sqrt 2): no row may reach the brute-force fallback
    g = np.stack(np.meshgrid(*[np.arange(12.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    p = torch.from_numpy(g)[None]
    ref = knn_torch(p, p, 2)
    monkeypatch.setattr(scipy_impl, "knn_torch", lambda *a, **k: pytest.fail("fell back to brute force"))
    got = scipy_impl.knn_scipy(p, p, 2)
    assert torch.equal(got[1], ref[1]) and torch.equal(got[0], ref[0])


def test_ball_query_matches_ckdtree_distance_upper_bound():
    g = np.stack(np.meshgrid(*[np.arange(8.0)] * 3, indexing="ij"), -1).reshape(-1, 3) * 0.5
    p = g + np.random.default_rng(3).normal(scale=0.01, size=g.shape)
    for r in (0.3, 0.6, 0.75):
        d, idx = ball_query(p, p, r, 10)
        rd, ri = cKDTree(p).query(p, k=10, distance_upper_bound=r)
        valid = np.isfinite(rd)
        assert np.array_equal(idx >= 0, valid) and np.array_equal(idx[valid], ri[valid])
        np.testing.assert_allclose(d[valid], rd[valid], rtol=1e-12)
        assert (d[~valid] == 0).all()
    # on the exact grid every neighbour lies at exactly r = 0.5, not closer: only the point itself
    _, idx = ball_query(g, g, 0.5, 7)
    assert np.array_equal(idx[:, 0], np.arange(len(g))) and (idx[:, 1:] == -1).all()


def test_pairs_within_numpy_matches_query_pairs():
    p = np.random.default_rng(4).random((3000, 3))
    got = pairs_within(p, 0.03)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    assert {tuple(x) for x in got.tolist()} == cKDTree(p).query_pairs(0.03)
    assert len(got) > 100
    assert np.array_equal(got, np.unique(got, axis=0))  # sorted by (i, j), each pair once
    t = pairs_within(torch.from_numpy(p), 0.03)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), got)


def test_plugin_callers_keep_their_ckdtree_semantics():
    from facet3d.plugins.mesh_recovery._common import point_spacing
    from facet3d.plugins.triangle_splatting.model import triangles_from_points

    p = np.random.default_rng(5).random((3000, 3))
    d = cKDTree(p).query(p, k=4)[0]
    assert point_spacing(p) == pytest.approx(np.median(d[:, 1]), rel=1e-12)
    tri = triangles_from_points(torch.from_numpy(p), torch.Generator().manual_seed(0), scale=2.0)
    circumradius = (tri - tri.mean(1, keepdim=True)).norm(dim=-1)  # [P, 3], equilateral: all equal
    expect = 2.0 * np.sqrt((d[:, 1:] ** 2).mean(1))
    np.testing.assert_allclose(circumradius.numpy(), np.repeat(expect[:, None], 3, 1), rtol=1e-9)
