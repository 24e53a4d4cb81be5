"""knn: the reference against independent answers (numpy brute force, scipy cKDTree, analytic
gradients), then every backend against the reference (Triton through the interpreter on CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import GeometryError, UsageError
from facet3d.kernels.knn import knn
from facet3d.kernels.knn.reference import knn_torch
from facet3d.kernels.knn.scipy_impl import knn_scipy


def naive_knn(q: np.ndarray, p: np.ndarray, k: int, qlen=None, plen=None):
    """Brute force in numpy float32, same formula, stable argsort: ties -> lower index."""
    B, M, _ = q.shape
    dists, idx = np.zeros((B, M, k), np.float32), np.full((B, M, k), -1, np.int64)
    for b in range(B):
        n = p.shape[1] if plen is None else int(plen[b])
        for m in range(M if qlen is None else int(qlen[b])):
            diff = q[b, m][None, :] - p[b, :n]
            d = diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1] + diff[:, 2] * diff[:, 2]
            o = np.argsort(d, kind="stable")[:k]
            dists[b, m], idx[b, m] = d[o], o
    return dists, idx


def clouds(kind: str, B=2, M=37, N=150, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "grid":  # integer coordinates: many exactly tied distances
        return torch.randint(0, 3, (B, M, 3), generator=g).float(), torch.randint(0, 3, (B, N, 3), generator=g).float()
    return torch.randn(B, M, 3, generator=g), torch.randn(B, N, 3, generator=g)


@pytest.mark.parametrize("kind", ["random", "grid"])
@pytest.mark.parametrize("k", [1, 5, 8])
def test_reference_matches_numpy_bruteforce(kind, k):
    q, p = clouds(kind)
    d, i = knn_torch(q, p, k)
    nd, ni = naive_knn(q.numpy(), p.numpy(), k)
    assert np.array_equal(i.numpy(), ni)
    np.testing.assert_allclose(d.numpy(), nd, rtol=1e-6, atol=1e-7)


def test_reference_with_lengths_matches_bruteforce_and_pads():
    q, p = clouds("grid", M=20, N=60)
    qlen, plen = torch.tensor([20, 7]), torch.tensor([60, 11])
    d, i = knn_torch(q, p, 4, qlen, plen)
    nd, ni = naive_knn(q.numpy(), p.numpy(), 4, qlen, plen)
    assert np.array_equal(i.numpy(), ni)
    assert (i[1, 7:] == -1).all() and (d[1, 7:] == 0).all()
    assert int(i[1].max()) < 11
    np.testing.assert_allclose(d.numpy(), nd, rtol=1e-6)


def test_reference_small_chunks_same_answer():
    q, p = clouds("grid", M=40)
    assert torch.equal(knn_torch(q, p, 6)[1], knn_torch(q, p, 6, chunk_elems=1)[1])


def test_reference_matches_scipy_ckdtree():
    from scipy.spatial import cKDTree

    q, p = clouds("random", M=64, N=500)
    d, i = knn_torch(q.double(), p.double(), 8)
    for b in range(2):
        sd, si = cKDTree(p[b].double().numpy()).query(q[b].double().numpy(), k=8)
        np.testing.assert_allclose(d[b].numpy(), sd**2, rtol=1e-10)
        assert np.array_equal(i[b].numpy(), si)  # continuous random data: no ties


def test_reference_gradients_analytic():
    q, p = clouds("random", M=10, N=40)
    q, p = q.double().requires_grad_(), p.double().requires_grad_()
    d, i = knn_torch(q, p, 3)
    w = torch.randn_like(d)
    gq, gp = torch.autograd.grad((d * w).sum(), (q, p))
    # d/dq sum_j w_j |q - p_j|^2 = 2 sum_j w_j (q - p_j); points receive the negatives, scattered
    qn, pn, wn, inn = q.detach().numpy(), p.detach().numpy(), w.numpy(), i.numpy()
    eq, ep = np.zeros_like(qn), np.zeros_like(pn)
    for b in range(2):
        for m in range(10):
            for j in range(3):
                g = 2 * wn[b, m, j] * (qn[b, m] - pn[b, inn[b, m, j]])
                eq[b, m] += g
                ep[b, inn[b, m, j]] -= g
    np.testing.assert_allclose(gq.numpy(), eq, rtol=1e-10)
    np.testing.assert_allclose(gp.numpy(), ep, rtol=1e-10)


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_scipy_backend_equals_reference(kind):
    # N >> k + EXTRA so the tie fallback path is exercised on the grid data
    q, p = clouds(kind, M=50, N=400)
    qlen, plen = torch.tensor([50, 30]), torch.tensor([400, 200])
    for k in (1, 4):
        d0, i0 = knn_torch(q, p, k, qlen, plen)
        d1, i1 = knn_scipy(q, p, k, qlen, plen)
        assert torch.equal(i0, i1) and torch.equal(d0, d1)


def test_scipy_backend_gradients_flow():
    q, p = clouds("random", M=16, N=100)
    q.requires_grad_()
    p.requires_grad_()
    g1 = torch.autograd.grad(knn_scipy(q, p, 4)[0].sum(), (q, p))
    g0 = torch.autograd.grad(knn_torch(q, p, 4)[0].sum(), (q, p))
    for a, b in zip(g0, g1):
        assert torch.equal(a, b)


def _triton_cases():
    return [("random", 8, None, None), ("grid", 5, None, None), ("grid", 1, [37, 12], [150, 9]),
            ("random", 8, [3, 37], [20, 150])]


@pytest.mark.parametrize("kind,k,qlen,plen", _triton_cases())
def test_triton_equals_reference_interpreter(triton_cpu, kind, k, qlen, plen):
    from facet3d.kernels.knn.triton_impl import knn_triton

    q, p = clouds(kind)
    q.requires_grad_()
    p.requires_grad_()
    qlen = None if qlen is None else torch.tensor(qlen)
    plen = None if plen is None else torch.tensor(plen)
    d0, i0 = knn_torch(q, p, k, qlen, plen)
    # small blocks so queries span several programs and points several merge rounds
    d1, i1 = knn_triton(q, p, k, qlen, plen, block_m=16, block_n=32)
    assert torch.equal(i0, i1)
    torch.testing.assert_close(d1, d0)
    w = torch.randn_like(d0)
    g0 = torch.autograd.grad((d0 * w).sum(), (q, p))
    g1 = torch.autograd.grad((d1 * w).sum(), (q, p))
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b)


def test_triton_default_blocks_interpreter(triton_cpu):
    from facet3d.kernels.knn.triton_impl import knn_triton

    q, p = clouds("random", B=1, M=70, N=130)
    assert torch.equal(knn_triton(q, p, 7)[1], knn_torch(q, p, 7)[1])


def test_public_api_errors():
    q, p = clouds("random", M=4, N=10)
    with pytest.raises(GeometryError, match="only 10 points"):
        knn(q, p, 11)
    with pytest.raises(GeometryError, match="batch element 1 has only 3"):
        knn(q, p, 4, point_lengths=torch.tensor([10, 3]))
    with pytest.raises(UsageError, match=r"\[B, N, 3\]"):
        knn(q[..., :2], p, 2)
    with pytest.raises(UsageError, match="k must be"):
        knn(q, p, 0)
    with pytest.raises(UsageError, match="dtype"):
        knn(q.double(), p, 2)
    with pytest.raises(UsageError, match="point_lengths"):
        knn(q, p, 2, point_lengths=torch.tensor([10, 11]))


def test_public_api_backends_agree(no_interpreter):
    q, p = clouds("grid")
    results = [knn(q, p, 6, backend=b) for b in ("torch", "scipy")]
    assert torch.equal(results[0][1], results[1][1])
    assert torch.equal(knn(q, p, 6)[1], results[0][1])


@pytest.mark.cuda
@pytest.mark.parametrize("k", [1, 16, 32])
def test_triton_cuda_equals_reference(k):
    from facet3d.kernels.knn.triton_impl import knn_triton

    q, p = clouds("random", B=2, M=1000, N=5000)
    q, p = q.cuda(), p.cuda()
    d0, i0 = knn_torch(q, p, k)
    d1, i1 = knn_triton(q, p, k)
    torch.testing.assert_close(d1, d0)
    assert torch.equal(i0, i1)  # FMA contraction is disabled, so even near-ties agree
