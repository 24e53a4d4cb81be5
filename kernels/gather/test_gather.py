"""gather: reference against fancy indexing; Triton forward and backward against the reference."""

from __future__ import annotations

import pytest
import torch

from facet3d.core.errors import UsageError
from facet3d.kernels.gather import gather_points
from facet3d.kernels.gather.reference import gather_torch


def data(B=2, N=30, C=5, M=7, K=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, N, C, generator=g).to(dtype)
    idx = torch.randint(0, N, (B, M, K), generator=g)
    idx[0, 0, :] = 3  # the same row gathered several times: backward must accumulate
    return f, idx


def test_reference_matches_fancy_indexing():
    f, idx = data()
    want = f[torch.arange(2)[:, None, None], idx]
    assert torch.equal(gather_torch(f, idx), want)


def test_reference_gradient_is_scatter_add():
    f, idx = data()
    f.requires_grad_()
    g = torch.randn(2, 7, 4, 5)
    (gf,) = torch.autograd.grad(gather_torch(f, idx), f, g)
    want = torch.zeros(2, 30, 5).index_put_((torch.arange(2)[:, None, None].expand_as(idx), idx), g, accumulate=True)
    torch.testing.assert_close(gf, want)


@pytest.mark.parametrize("C", [1, 5, 130])
def test_triton_forward_backward_interpreter(triton_cpu, C):
    from facet3d.kernels.gather.triton_impl import gather_triton

    f, idx = data(C=C)
    f.requires_grad_()
    out0, out1 = gather_torch(f, idx), gather_triton(f, idx)
    assert torch.equal(out0, out1)
    g = torch.randn_like(out0)
    torch.testing.assert_close(torch.autograd.grad(out1, f, g)[0], torch.autograd.grad(out0, f, g)[0])


def test_triton_half_interpreter(triton_cpu):
    from facet3d.kernels.gather.triton_impl import gather_triton

    f, idx = data(dtype=torch.float16)
    f.requires_grad_()
    out = gather_triton(f, idx)
    assert out.dtype == torch.float16 and torch.equal(out, gather_torch(f, idx))
    g = torch.randn_like(out)
    gf = torch.autograd.grad(out, f, g)[0]
    assert gf.dtype == torch.float16
    torch.testing.assert_close(gf.float(), torch.autograd.grad(gather_torch(f, idx), f, g)[0].float(), atol=1e-2, rtol=1e-2)


def test_errors():
    f, idx = data()
    with pytest.raises(UsageError, match=r"idx must lie in \[0, 30\)"):
        gather_points(f, idx + 30)
    with pytest.raises(UsageError, match="integer"):
        gather_points(f, idx.float())
    with pytest.raises(UsageError, match="features"):
        gather_points(f[0], idx)


def test_public_api(no_interpreter):
    f, idx = data()
    assert torch.equal(gather_points(f, idx.to(torch.int32)), gather_torch(f, idx))


@pytest.mark.cuda
def test_triton_cuda_forward_backward():
    from facet3d.kernels.gather.triton_impl import gather_triton

    f, idx = data(B=4, N=4000, C=64, M=1000, K=16)
    f, idx = f.cuda().requires_grad_(), idx.cuda()
    out = gather_triton(f, idx)
    assert torch.equal(out, gather_torch(f, idx))
    g = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, f, g)[0], torch.autograd.grad(gather_torch(f, idx), f, g)[0])
