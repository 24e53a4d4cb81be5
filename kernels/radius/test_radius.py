"""radius (`pairs_within`): the reference against a numpy brute force and scipy's query_pairs, then
the scipy backend against the reference (exactly, boundary ties included), then the public API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from facet3d.core.errors import UsageError
from facet3d.kernels.dispatch import pick
from facet3d.kernels.radius import pairs_within
from facet3d.kernels.radius.reference import pairs_within_torch
from facet3d.kernels.radius.scipy_impl import pairs_within_scipy


def naive_pairs(p: np.ndarray, r: float) -> np.ndarray:
    """Every (i, j), i < j, with dx*dx + dy*dy + dz*dz <= r*r in p's dtype, sorted by (i, j)."""
    diff = p[:, None, :] - p[None, :, :]
    d = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
    i, j = np.nonzero((d <= p.dtype.type(r * r)) & np.triu(np.ones(d.shape, bool), 1))
    return np.stack([i, j], 1).astype(np.int64)


def cloud(kind: str, n: int = 300, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "grid":  # integer coordinates: many pairs exactly at the radius
        return torch.randint(0, 6, (n, 3), generator=g).to(dtype)
    return torch.rand(n, 3, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,r", [("random", 0.1), ("grid", 1.0), ("grid", 0.0)])
def test_reference_matches_numpy_bruteforce(kind, r, dtype):
    p = cloud(kind, dtype=dtype)
    got = pairs_within_torch(p, r)
    assert got.dtype == torch.int64
    assert np.array_equal(got.numpy(), naive_pairs(p.numpy(), r))
    assert len(got) > 0  # the case is not vacuous


def test_reference_matches_scipy_query_pairs_and_chunks():
    p = cloud("random", 500)
    got = pairs_within_torch(p, 0.08)
    assert {tuple(x) for x in got.tolist()} == cKDTree(p.numpy()).query_pairs(0.08)
    assert torch.equal(pairs_within_torch(p, 0.08, chunk_elems=1), got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,r", [("random", 0.1), ("grid", 1.0), ("grid", 2 ** 0.5), ("grid", 0.0)])
def test_scipy_backend_equals_reference(kind, r, dtype):
    p = cloud(kind, dtype=dtype)
    assert torch.equal(pairs_within_scipy(p, r), pairs_within_torch(p, r))


def test_scipy_backend_equals_reference_at_float32_rounding():
    # pairs within a few ulps of the radius: the tree's float64 view must not decide membership
    rng = np.random.default_rng(1)
    a = rng.random((400, 3)).astype(np.float32)
    u = rng.normal(size=(400, 3))
    r = 0.01
    b = (a + r * u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.float32)
    p = torch.from_numpy(np.concatenate([a, b]))
    ref = pairs_within_torch(p, r)
    assert 0 < len(ref) and torch.equal(pairs_within_scipy(p, r), ref)


def test_public_api_dispatch_and_errors():
    big, small = cloud("random", 3000), cloud("random", 100)
    assert pick("radius", big, 0.02)[0].name == "scipy"
    assert pick("radius", small, 0.02)[0].name == "torch"
    assert torch.equal(pairs_within(big, 0.02), pairs_within(big, 0.02, backend="torch"))
    assert pairs_within(torch.zeros((0, 3)), 1.0).shape == (0, 2)
    assert pairs_within(torch.zeros((1, 3)), 1.0, backend="scipy").shape == (0, 2)
    for bad in (torch.zeros(4, 2), torch.zeros(1, 4, 3), torch.zeros(4, 3, dtype=torch.int64)):
        with pytest.raises(UsageError):
            pairs_within(bad, 1.0)
    for r in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(UsageError):
            pairs_within(small, r)
