"""Chamfer distance and F-score against a naive O(N*M) reference, scipy's KD-tree and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from facet3d.core.errors import BackendError, GeometryError
from facet3d.core.ops.metrics import chamfer_distance, chamfer_from_means, fscore, nearest_neighbor_distances
from facet3d.core.structures.pointclouds import Pointclouds
from facet3d.kernels.dispatch import pick


def _naive_nn(a, b):
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return d.min(1)


def test_chamfer_matches_naive_batched_padded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 70, 3))
    y = rng.normal(size=(3, 90, 3)) + 0.2
    xl, yl = [70, 33, 5], [90, 12, 61]
    for norm in ("l2", "l1"):
        res = chamfer_distance(x, y, x_lengths=xl, y_lengths=yl, norm=norm, reduction="none")
        for b in range(3):
            dx = _naive_nn(x[b, :xl[b]], y[b, :yl[b]])
            dy = _naive_nn(y[b, :yl[b]], x[b, :xl[b]])
            p = 2 if norm == "l2" else 1
            assert res.x_to_y[b].item() == pytest.approx((dx ** p).mean(), rel=1e-12)
            assert res.y_to_x[b].item() == pytest.approx((dy ** p).mean(), rel=1e-12)
            # Chamfer = the average of the two directions (ConvONet / DTU), not their sum
            assert res.chamfer[b].item() == pytest.approx(((dx ** p).mean() + (dy ** p).mean()) / 2, rel=1e-12)
        mean = chamfer_distance(x, y, x_lengths=xl, y_lengths=yl, norm=norm)
        assert torch.isclose(mean.chamfer, res.chamfer.mean())
    # the same through Pointclouds
    pcx = Pointclouds([torch.as_tensor(x[b, :xl[b]]) for b in range(3)])
    pcy = Pointclouds([torch.as_tensor(y[b, :yl[b]]) for b in range(3)])
    assert torch.allclose(chamfer_distance(pcx, pcy, reduction="none").chamfer,
                          chamfer_distance(x, y, x_lengths=xl, y_lengths=yl, reduction="none").chamfer)


def test_closed_form_asymmetric_pins_the_average():
    # x = {0}, y = {0, e1}: x -> y means 0, y -> x means (0 + 1) / 2; the sum definition gives 0.5
    x, y = np.zeros((1, 3)), np.array([[0.0, 0, 0], [1.0, 0, 0]])
    for norm in ("l1", "l2"):
        r = chamfer_distance(x, y, norm=norm)
        assert (r.x_to_y.item(), r.y_to_x.item(), r.chamfer.item()) == (0.0, 0.5, 0.25)
    assert chamfer_from_means(0.0, 0.5) == 0.25


def test_backends_match_scipy_and_auto_picks_kdtree_for_large_cpu_clouds():
    rng = np.random.default_rng(1)
    a, b = rng.random((3000, 3)), rng.random((2500, 3))
    ref_d, ref_i = cKDTree(b).query(a)
    for backend in ("torch", "scipy", None):
        d, i = nearest_neighbor_distances(torch.as_tensor(a), torch.as_tensor(b), backend=backend)
        assert d.dtype == torch.float64
        np.testing.assert_allclose(d.numpy(), ref_d, rtol=1e-12, atol=0)
        assert np.array_equal(i.numpy(), ref_i)
    ta, tb = torch.as_tensor(a)[None], torch.as_tensor(b)[None]
    assert pick("knn", ta, tb, 1, None, None)[0].name == "scipy"
    r_auto = chamfer_distance(a, b, norm="l1")
    assert r_auto.x_to_y.item() == pytest.approx(ref_d.mean(), rel=1e-12)
    assert r_auto.chamfer.item() == pytest.approx((ref_d.mean() + cKDTree(a).query(b)[0].mean()) / 2, rel=1e-12)
    with pytest.raises(BackendError, match="no backend 'kdtree'"):
        chamfer_distance(a, b, backend="kdtree")


def test_gradients_match_analytic_on_both_backends():
    rng = np.random.default_rng(2)
    y = torch.as_tensor(rng.random((200, 3)))
    x_init = torch.as_tensor(rng.random((150, 3)))
    # d/dx of (mean_x |x - y[nn_x]|^2 + mean_y |y - x[nn_y]|^2) / 2, neighbours from scipy
    xn, yn = x_init.numpy(), y.numpy()
    nn_x, nn_y = cKDTree(yn).query(xn)[1], cKDTree(xn).query(yn)[1]
    expect = (xn - yn[nn_x]) / len(xn)
    np.add.at(expect, nn_y, (xn[nn_y] - yn) / len(yn))
    for backend in ("torch", "scipy"):
        x = x_init.clone().requires_grad_(True)
        chamfer_distance(x, y, backend=backend).chamfer.backward()
        np.testing.assert_allclose(x.grad.numpy(), expect, rtol=1e-12, atol=1e-15)
    # identical clouds: zero distance and finite (zero) gradient, also for the unsquared variant
    x = y.clone().requires_grad_(True)
    r = chamfer_distance(x, y, norm="l1")
    r.chamfer.backward()
    assert r.chamfer.item() == 0 and torch.isfinite(x.grad).all() and (x.grad == 0).all()


def test_closed_form_shifted_grid():
    g = np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3) * 0.1
    s = 0.03  # < half the spacing: every point's nearest neighbour is its shifted twin
    shifted = g + [s, 0, 0]
    assert chamfer_distance(g, shifted).chamfer.item() == pytest.approx(s ** 2, rel=1e-12)
    assert chamfer_distance(g, shifted, norm="l1").chamfer.item() == pytest.approx(s, rel=1e-12)
    f = fscore(g, shifted, [0.02, 0.04])
    assert f.fscore.tolist() == [[0.0, 1.0]]
    assert f.accuracy.item() == pytest.approx(s, rel=1e-12) and f.completeness.item() == pytest.approx(s, rel=1e-12)


def test_fscore_identical_partial_and_naive():
    rng = np.random.default_rng(3)
    gt = rng.random((400, 3))
    one = fscore(gt, gt, 0.01)
    assert one.precision.item() == one.recall.item() == one.fscore.item() == 1.0
    assert chamfer_distance(gt, gt).chamfer.item() == 0
    # prediction = half of gt + 100 far outliers
    pred = np.concatenate([gt[:200], rng.random((100, 3)) + 10])
    tau = 0.05
    r = fscore(pred, gt, tau)
    dp, dg = _naive_nn(pred, gt), _naive_nn(gt, pred)
    P, R = (dp < tau).mean(), (dg < tau).mean()
    assert np.isclose(r.precision.item(), P) and np.isclose(r.recall.item(), R)
    assert np.isclose(r.fscore.item(), 2 * P * R / (P + R))
    assert np.isclose(P, 2 / 3)
    assert np.isclose(r.accuracy.item(), dp.mean()) and np.isclose(r.completeness.item(), dg.mean())
    zero = fscore(gt, gt + 5, 0.1)
    assert zero.fscore.item() == 0.0


def test_metric_errors():
    with pytest.raises(GeometryError):
        chamfer_distance(np.zeros((0, 3)), np.zeros((4, 3)))
    with pytest.raises(GeometryError):
        chamfer_distance(np.full((3, 3), np.nan), np.zeros((4, 3)))
    with pytest.raises(GeometryError):
        fscore(np.zeros((3, 3)), np.zeros((4, 3)), 0.0)
    with pytest.raises(ValueError):
        chamfer_distance(np.zeros((3, 3)), np.zeros((4, 3)), norm="l3")
