"""The fused torch reference against the materialised-volume naive form, the 2D case against the
Deformable DETR / mmcv grid_sample formula written out here, and float64 gradcheck of every input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facet3d.kernels.dfa3d import deformable_attention_2d, deformable_attention_3d
from facet3d.kernels.dfa3d.naive import dfa3d_naive
from facet3d.kernels.dfa3d.reference import dfa3d_torch


def _inputs(B=2, M=3, C=4, D=5, Nq=7, P=3, levels=((6, 8), (3, 4), (2, 1)), dtype=torch.float64, seed=0, spread=0.2):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[h, w, D] for h, w in levels])
    sizes = [h * w for h, w in levels]
    starts = torch.tensor([0] + sizes[:-1]).cumsum(0)
    S, L = sum(sizes), len(levels)
    value = torch.randn(B, S, M, C, generator=g, dtype=dtype)
    dist = torch.randn(B, S, M, D, generator=g, dtype=dtype).softmax(-1)
    # locations reach past the borders by `spread` so zero padding is exercised, in x, y AND z
    loc = torch.rand(B, Nq, M, L, P, 3, generator=g, dtype=dtype) * (1 + 2 * spread) - spread
    attn = torch.rand(B, Nq, M, L, P, generator=g, dtype=dtype).reshape(B, Nq, M, L * P).softmax(-1).reshape(B, Nq, M, L, P)
    return value, dist, shapes, starts, loc, attn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_equals_naive_volume_sampling(seed):
    args = _inputs(seed=seed, dtype=torch.float32)
    ref, naive = deformable_attention_3d(*args, backend="torch"), dfa3d_naive(*args)
    assert ref.shape == (2, 7, 3 * 4)
    assert torch.allclose(ref, naive, rtol=1e-5, atol=1e-6), (ref - naive).abs().max()
    assert naive.abs().max() > 0.05  # not trivially zero


def test_chunking_does_not_change_the_result():
    args = _inputs(Nq=11)
    assert torch.equal(dfa3d_torch(*args, chunk=3), dfa3d_torch(*args, chunk=1000))


def test_it_is_not_bilinear_value_times_bilinear_depth():
    """Each corner's depth score weights that corner's feature: a product of separate bilinear
    samples differs, so a kernel doing that would fail here."""
    value, dist, shapes, starts, loc, attn = _inputs(levels=((5, 5),), P=1)
    out = dfa3d_torch(value, dist, shapes, starts, loc, attn)
    B, S, M, C = value.shape
    D = dist.shape[-1]
    v2 = F.grid_sample(value.reshape(B, 5, 5, M * C).permute(0, 3, 1, 2), 2 * loc[:, :, 0, 0, :, :2] - 1,
                       align_corners=False)  # a (wrong) separable product for head 0 only
    assert not torch.allclose(out[..., :C], v2[:, :C, :, 0].transpose(1, 2) * dist[:, :1, 0, :1], atol=1e-3)


def test_outside_everything_is_zero_and_a_single_bin_centre_is_exact():
    value, dist, shapes, starts, loc, attn = _inputs(levels=((4, 4),), P=1, Nq=2, M=1, C=2, D=3, B=1)
    far = loc.clone()
    far[..., 0] = 2.0  # beyond the right edge by more than a pixel
    assert torch.count_nonzero(dfa3d_torch(value, dist, shapes, starts, far, attn)) == 0
    # sample exactly at pixel (1, 2), depth bin 1 centre: the output is A * V * Dist there
    exact = loc.clone()
    exact[..., 0], exact[..., 1], exact[..., 2] = (2 + 0.5) / 4, (1 + 0.5) / 4, (1 + 0.5) / 3
    out = dfa3d_torch(value, dist, shapes, starts, exact, attn)
    row = 1 * 4 + 2
    expect = attn[0, :, 0, 0, 0, None] * value[0, row, 0] * dist[0, row, 0, 1]
    assert torch.allclose(out[0], expect, atol=1e-12)


def test_2d_case_is_multi_scale_deformable_attention():
    value, _, shapes3, starts, loc3, attn = _inputs()
    shapes, loc = shapes3[:, :2], loc3[..., :2]
    out = deformable_attention_2d(value, shapes, starts, loc, attn)
    # Deformable DETR's ms_deform_attn_core_pytorch, written out
    B, S, M, C = value.shape
    Nq, L, P = loc.shape[1], loc.shape[3], loc.shape[4]
    per_level = value.split([h * w for h, w in shapes.tolist()], dim=1)
    sampled = []
    for lvl, (h, w) in enumerate(shapes.tolist()):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(B * M, C, h, w)
        grid = (2 * loc[:, :, :, lvl] - 1).transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attn.transpose(1, 2).reshape(B * M, 1, Nq, L * P)
    expect = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(B, M * C, Nq).transpose(1, 2)
    assert torch.allclose(out, expect, atol=1e-12)


def test_gradcheck_every_input_including_the_depth_location():
    value, dist, shapes, starts, loc, attn = _inputs(B=1, M=2, C=2, D=4, Nq=3, P=2, levels=((3, 4), (2, 2)))
    ins = [t.clone().requires_grad_() for t in (value, dist, loc, attn)]
    fn = lambda v, d, l, a: dfa3d_torch(v, d, shapes, starts, l, a, chunk=2)  # noqa: E731 - chunks checkpointed
    assert torch.autograd.gradcheck(fn, ins, eps=1e-6, atol=1e-7)
    out = fn(*ins)
    out.square().sum().backward()
    assert ins[2].grad[..., 2].abs().max() > 0  # the z location has a gradient (the official bug drops x, y)
    assert ins[2].grad[..., :2].abs().max() > 0


def test_torch_export_traces_the_reference():
    args = _inputs(dtype=torch.float32)

    class Op(torch.nn.Module):
        def forward(self, value, dist, shapes, starts, loc, attn):
            return dfa3d_torch(value, dist, shapes, starts, loc, attn)

    exported = torch.export.export(Op(), args)
    other = _inputs(dtype=torch.float32, seed=5)
    assert torch.allclose(exported.module()(*other), dfa3d_naive(*other), rtol=1e-5, atol=1e-6)


def test_bad_shapes_are_refused_with_the_expected_layout():
    value, dist, shapes, starts, loc, attn = _inputs()
    with pytest.raises(Exception, match=r"sampling_locations must be \[B', Nq, M, L, P, 3\]"):
        deformable_attention_3d(value, dist, shapes, starts, loc[..., :2], attn)
    with pytest.raises(Exception, match="depth_dist must be"):
        deformable_attention_3d(value, dist[:, :5], shapes, starts, loc, attn)
