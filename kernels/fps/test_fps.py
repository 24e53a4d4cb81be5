"""fps: the reference against a naive numpy loop and invariance properties, then the Triton
kernel (through the interpreter on CPU) against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import GeometryError, UsageError
from facet3d.kernels.fps import farthest_point_sample
from facet3d.kernels.fps.reference import fps_torch, start_indices


def naive_fps(p: np.ndarray, n: int, start: int) -> list[int]:
    """One cloud, plain python: ties -> lowest index (strict > while scanning upwards)."""
    mind = [float("inf")] * len(p)
    out, cur = [], start
    for _ in range(n):
        out.append(cur)
        for j in range(len(p)):
            diff = p[j] - p[cur]
            d = diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2]  # float32 scalars
            mind[j] = min(mind[j], d)
        best = 0
        for j in range(len(p)):
            if mind[j] > mind[best]:
                best = j
        cur = best
    return out


def clouds(kind: str, B=2, N=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "grid":  # duplicates and equal distances everywhere
        return torch.randint(0, 3, (B, N, 3), generator=g).float()
    return torch.randn(B, N, 3, generator=g)


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_reference_matches_naive(kind):
    p = clouds(kind)
    lengths = torch.tensor([120, 45])
    start = torch.tensor([0, 7])
    got = fps_torch(p, 40, lengths, start)
    for b in range(2):
        want = naive_fps(p[b, : int(lengths[b])].numpy(), 40, int(start[b]))
        assert got[b].tolist() == want


def test_samples_distinct_until_exhausted():
    p = clouds("random", N=50)
    idx = farthest_point_sample(p, 50, backend="torch")
    assert all(len(set(row.tolist())) == 50 for row in idx)


def test_farthest_from_centroid_start_is_order_and_rotation_independent():
    p = clouds("random", B=1, N=200).double()
    idx = farthest_point_sample(p, 16, start="farthest_from_centroid", backend="torch")[0]
    # permutation: same points chosen in the same order
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    idx_p = farthest_point_sample(p[:, perm], 16, start="farthest_from_centroid", backend="torch")[0]
    assert torch.equal(perm[idx_p], idx)
    # rigid motion: same indices
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    moved = p @ q.T + torch.tensor([5.0, -3.0, 2.0], dtype=torch.float64)
    assert torch.equal(farthest_point_sample(moved, 16, start="farthest_from_centroid", backend="torch")[0], idx)
    # index0 is order-dependent
    assert int(farthest_point_sample(p, 1, backend="torch")[0, 0]) == 0


def test_farthest_from_centroid_ties_lowest_index_and_ignores_padding():
    # symmetric cloud: points 1 and 3 tie as farthest from the centroid (0, 0, 0)
    p = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [1, 0, 0], [-2, 0, 0], [-1, 0, 0], [100, 0, 0]]])
    s = start_indices(p, torch.tensor([5]), "farthest_from_centroid")
    assert s.tolist() == [1]


def test_padding_never_sampled():
    p = clouds("random")
    p[1, 30:] = 1e6  # far away padding would be picked first if it were not masked
    idx = farthest_point_sample(p, 30, lengths=torch.tensor([120, 30]), backend="torch")
    assert int(idx[1].max()) < 30


def test_errors():
    p = clouds("random", N=10)
    with pytest.raises(GeometryError, match="only 10 points"):
        farthest_point_sample(p, 11)
    with pytest.raises(GeometryError, match="batch element 1 has only 4"):
        farthest_point_sample(p, 5, lengths=torch.tensor([10, 4]))
    with pytest.raises(UsageError, match="start must be"):
        farthest_point_sample(p, 2, start="random")
    with pytest.raises(UsageError, match="start indices"):
        farthest_point_sample(p, 2, start=torch.tensor([0, 10]))


@pytest.mark.parametrize("kind,lengths,start", [("random", [120, 120], "index0"),
                                                ("grid", [120, 33], "farthest_from_centroid"),
                                                ("random", [5, 120], None)])
def test_triton_equals_reference_interpreter(triton_cpu, kind, lengths, start):
    from facet3d.kernels.fps.triton_impl import fps_triton

    p = clouds(kind)
    lens = torch.tensor(lengths)
    s = start_indices(p, lens, start)
    n = min(min(lengths), 40)  # the interpreter runs ~1 ms per block step
    want = fps_torch(p, n, lens, s)
    assert torch.equal(fps_triton(p, n, lens, s, block_n=32), want)  # several blocks per step


def test_dispatch_interpreter_only_when_asked(triton_cpu):
    from facet3d.kernels.dispatch import pick

    p = clouds("random", N=40)
    lens, s = torch.tensor([40, 40]), torch.zeros(2, dtype=torch.int64)
    assert pick("fps", p, 8, lens, s)[0].name == "torch"  # automatic dispatch keeps the CPU path
    assert pick("fps", p, 8, lens, s, backend="triton")[0].name == "triton"
    assert torch.equal(farthest_point_sample(p, 8, backend="triton"), farthest_point_sample(p, 8, backend="torch"))


@pytest.mark.cuda
def test_triton_cuda_equals_reference():
    from facet3d.kernels.fps.triton_impl import fps_triton

    p = clouds("random", B=4, N=5000).cuda()
    lens, s = torch.full((4,), 5000, device="cuda"), torch.zeros(4, dtype=torch.int64, device="cuda")
    assert torch.equal(fps_triton(p, 256, lens, s), fps_torch(p, 256, lens, s))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("start", ["index0", "farthest_from_centroid"])
def test_open3d_backend_gives_the_reference_set(dtype, start):
    gen = torch.Generator().manual_seed(3)
    p = torch.rand(3, 700, 3, generator=gen, dtype=torch.float64).to(dtype)
    lens = torch.tensor([700, 431, 650])
    ref = farthest_point_sample(p, 200, lengths=lens, start=start, backend="torch")
    got = farthest_point_sample(p, 200, lengths=lens, start=start, ordered=False, backend="open3d")
    assert torch.equal(torch.sort(ref, dim=1).values, got)


def test_open3d_backend_refuses_when_order_is_needed():
    from facet3d.core.errors import BackendError
    from facet3d.kernels.dispatch import pick

    p = torch.rand(1, 50, 3)
    with pytest.raises(BackendError, match="ordered=False"):
        farthest_point_sample(p, 5, backend="open3d")
    lens, s = torch.tensor([50]), torch.zeros(1, dtype=torch.int64)
    assert pick("fps", p, 5, lens, s, ordered=True)[0].name == "torch"
    assert pick("fps", p, 5, lens, s, ordered=False)[0].name == "open3d"


def test_open3d_backend_with_duplicates_matches_reference_set():
    p = torch.rand(1, 40, 3, dtype=torch.float64)
    p = torch.cat([p, p[:, :10]], dim=1)  # 50 points, 40 distinct: sampling 45 must pick duplicates
    ref = farthest_point_sample(p, 45, backend="torch")
    got = farthest_point_sample(p, 45, ordered=False, backend="open3d")
    assert torch.equal(ref.sort(dim=1).values, got)
