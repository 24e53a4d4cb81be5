"""DeformableAttention3D: shapes, gradients, mmcv's init, and the 2D special case against the formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facet3d.core.errors import UsageError
from facet3d.plugins.dfa3d.attention import DeformableAttention3D

SHAPES = [(6, 8), (3, 4)]  # two levels (H, W)


def msda_formula(value, shapes, loc, attn):
    """mmcv's multi_scale_deformable_attn_pytorch, written out: grid_sample (bilinear, zeros,
    align_corners=False, grid = 2*loc - 1) per level, weighted by the attention."""
    bs, S, M, C = value.shape
    _, nq, _, L, P, _ = loc.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    out = []
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(bs * M, C, h, w)
        g = (2 * loc[:, :, :, lvl] - 1).transpose(1, 2).flatten(0, 1)  # [bs*M, nq, P, 2]
        out.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    a = attn.transpose(1, 2).reshape(bs * M, 1, nq, L * P)
    o = (torch.stack(out, -2).flatten(-2) * a).sum(-1).view(bs, M * C, nq)
    return o.transpose(1, 2)


def _inputs(bs=2, nq=5, C=16, D=4, seed=0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in shapes)
    query = torch.randn(bs, nq, C, generator=g, dtype=torch.float64)
    value = torch.randn(bs, S, C, generator=g, dtype=torch.float64)
    ref = torch.rand(bs, nq, len(shapes), 3, generator=g, dtype=torch.float64) * 0.6 + 0.2
    dist = torch.rand(bs, S, D, generator=g, dtype=torch.float64).softmax(-1)
    ss = torch.tensor(shapes, dtype=torch.int64)
    starts = torch.cat([ss.new_zeros(1), (ss[:, 0] * ss[:, 1]).cumsum(0)[:-1]])
    return query, value, ref, dist, ss, starts


def _module(C=16, M=2, L=2, P=3, D=4, randomise=True, seed=1):
    torch.manual_seed(seed)
    m = DeformableAttention3D(C, M, L, P, D, dropout=0.0, batch_first=True).double()
    if randomise:  # init leaves offsets constant and attention uniform: make them depend on the query
        with torch.no_grad():
            m.sampling_offsets.weight.normal_(0, 0.3)
            m.attention_weights.weight.normal_(0, 0.3)
    return m


def test_output_shape_and_gradients_reach_every_input():
    m = _module()
    q, v, ref, dist, ss, st = _inputs()
    q.requires_grad_(True)
    v.requires_grad_(True)
    dist.requires_grad_(True)
    out = m(q, value=v, reference_points=ref, spatial_shapes=ss, level_start_index=st, depth_dist=dist)
    assert out.shape == q.shape
    out.square().sum().backward()
    for name, t in (("query", q.grad), ("value", v.grad), ("depth_dist", dist.grad),
                    ("sampling_offsets", m.sampling_offsets.weight.grad),
                    ("attention_weights", m.attention_weights.weight.grad),
                    ("value_proj", m.value_proj.weight.grad), ("output_proj", m.output_proj.weight.grad)):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0, name
    # the depth offsets (every third output of the offset layer) get a gradient of their own
    depth_rows = m.sampling_offsets.weight.grad.view(2, 2, 3, 3, -1)[..., 2, :]
    assert depth_rows.abs().sum() > 0


def test_init_is_mmcv_ring_zero_depth_offset_uniform_attention():
    M, L, P = 8, 2, 4
    m = DeformableAttention3D(32, M, L, P, 16)
    bias = m.sampling_offsets.bias.view(M, L, P, 3)
    for h in range(M):
        th = 2 * math.pi * h / M
        ring = torch.tensor([math.cos(th), math.sin(th)])
        ring = ring / ring.abs().max()
        for p in range(P):
            torch.testing.assert_close(bias[h, :, p, :2], (ring * (p + 1)).expand(L, 2))
    assert bias[..., 2].abs().max() == 0
    assert m.sampling_offsets.weight.abs().max() == 0
    assert m.attention_weights.weight.abs().max() == 0 and m.attention_weights.bias.abs().max() == 0
    assert m.value_proj.bias.abs().max() == 0 and m.output_proj.bias.abs().max() == 0


def _mmcv_forward(m, q, v, ref2, ss, st, scale=1.0):
    """mmcv MultiScaleDeformableAttention.forward (batch-first, no pos, identity = query) on (u, v)."""
    bs, nq, _ = q.shape
    M, L, P = m.num_heads, m.num_levels, m.num_points
    val = m.value_proj(v).view(bs, v.shape[1], M, -1)
    off = m.sampling_offsets(q).view(bs, nq, M, L, P, 3)[..., :2]
    attn = m.attention_weights(q).view(bs, nq, M, L * P).softmax(-1).view(bs, nq, M, L, P)
    norm = torch.stack([ss[:, 1], ss[:, 0]], -1).to(q.dtype)
    loc = ref2[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
    out = msda_formula(val, ss.tolist(), loc, attn) * scale
    return m.output_proj(out) + q


def test_one_depth_bin_at_its_centre_is_mmcv_2d_attention():
    """D = 1, distribution 1, reference depth 0.5 (the bin centre), no depth offsets: exactly mmcv."""
    m = _module(D=1)
    with torch.no_grad():  # no depth offsets: z stays on the single bin's centre
        m.sampling_offsets.weight.view(2, 2, 3, 3, -1)[..., 2, :] = 0
        m.sampling_offsets.bias.view(2, 2, 3, 3)[..., 2] = 0
    q, v, ref, _, ss, st = _inputs(D=1)
    ref[..., 2] = 0.5
    ones = torch.ones(v.shape[0], v.shape[1], 1, dtype=v.dtype)
    got = m(q, value=v, reference_points=ref, spatial_shapes=ss, level_start_index=st, depth_dist=ones)
    torch.testing.assert_close(got, _mmcv_forward(m, q, v, ref[..., :2], ss, st), rtol=1e-10, atol=1e-10)


def test_uniform_depth_is_2d_attention_whatever_the_depth_offsets():
    """A flat distribution (every bin 1, or 1/D) makes the depth axis neutral inside the bin range."""
    m = _module(D=8)  # random depth offsets kept
    q, v, ref, _, ss, st = _inputs(D=8)
    ref[..., 2] = 0.5
    bs, S = v.shape[:2]
    want = _mmcv_forward(m, q, v, ref[..., :2], ss, st)
    got = m(q, value=v, reference_points=ref, spatial_shapes=ss, level_start_index=st,
            depth_dist=torch.ones(bs, S, 8, dtype=v.dtype))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the softmax-uniform 1/D gives the 2D attention divided by D (before the output projection)
    sampled = m.sample(q, v, ref, ss, st, torch.full((bs, S, 8), 1 / 8, dtype=v.dtype))
    plain = m.sample(q, v, ref, ss, st, None)  # no depth at all: the 2D operator on (u, v)
    torch.testing.assert_close(sampled * 8, plain, rtol=1e-10, atol=1e-10)


def test_batch_first_false_is_the_transposed_call_and_query_pos_identity_work():
    torch.manual_seed(0)
    mf = _module()
    ms = DeformableAttention3D(16, 2, 2, 3, 4, dropout=0.0, batch_first=False).double()
    ms.load_state_dict(mf.state_dict())
    q, v, ref, dist, ss, st = _inputs()
    pos = torch.randn_like(q)
    ident = torch.randn_like(q)
    a = mf(q, value=v, identity=ident, query_pos=pos, reference_points=ref, spatial_shapes=ss,
           level_start_index=st, depth_dist=dist)
    b = ms(q.transpose(0, 1), value=v.transpose(0, 1), identity=ident.transpose(0, 1), query_pos=pos.transpose(0, 1),
           reference_points=ref, spatial_shapes=ss, level_start_index=st, depth_dist=dist)
    torch.testing.assert_close(a, b.transpose(0, 1))
    # value defaults to the query (self-attention over a map of Nq = S entries)
    q2 = torch.randn(2, sum(h * w for h, w in SHAPES), 16, dtype=torch.float64)
    ref2 = torch.rand(2, q2.shape[1], 2, 3, dtype=torch.float64)
    d2 = torch.rand(2, q2.shape[1], 4, dtype=torch.float64)
    torch.testing.assert_close(mf(q2, reference_points=ref2, spatial_shapes=ss, level_start_index=st, depth_dist=d2),
                               mf(q2, value=q2, reference_points=ref2, spatial_shapes=ss, level_start_index=st, depth_dist=d2))


def test_offsets_are_normalised_by_w_h_d_and_anchors_split_the_points():
    m = _module(P=4)
    q, v, ref, dist, ss, st = _inputs()
    loc, attn = m.sampling(q, ref, ss)
    off = m.sampling_offsets(q).view(2, 5, 2, 2, 4, 3)
    norm = torch.tensor([[8, 6, 4], [4, 3, 4]], dtype=torch.float64)  # (W, H, D) per level
    torch.testing.assert_close(loc, ref[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :])
    torch.testing.assert_close(attn.sum((-1, -2)), torch.ones(2, 5, 2, dtype=torch.float64))  # softmax over L*P
    anchors = torch.rand(2, 5, 2, 2, 3, dtype=torch.float64)  # A = 2 anchors: point p = i*A + a
    loc_a, _ = m.sampling(q, anchors, ss)
    for p in range(4):
        torch.testing.assert_close(loc_a[:, :, :, :, p], anchors[:, :, None, :, p % 2] + off[:, :, :, :, p] / norm[None, None, None])
    mask = torch.zeros(2, 5, 2, 2, dtype=torch.bool)
    mask[..., 0] = True  # anchor 1 masked: its points (odd p) get no attention
    _, attn_m = m.sampling(q, anchors, ss, reference_mask=mask)
    assert attn_m[..., 1::2].abs().max() == 0
    torch.testing.assert_close(attn_m[..., 0::2], attn[..., 0::2])


def test_bad_shapes_are_usage_errors():
    m = _module()
    q, v, ref, dist, ss, st = _inputs()
    with pytest.raises(UsageError, match="reference_points"):
        m(q, value=v, reference_points=ref[..., :2], spatial_shapes=ss, level_start_index=st, depth_dist=dist)
    with pytest.raises(UsageError, match="bins"):
        m(q, value=v, reference_points=ref, spatial_shapes=ss, level_start_index=st, depth_dist=dist[..., :3])
    with pytest.raises(UsageError, match="spatial_shapes sum"):
        m(q, value=v[:, :-1], reference_points=ref, spatial_shapes=ss, level_start_index=st, depth_dist=dist[:, :-1])
    with pytest.raises(UsageError, match="divisible"):
        DeformableAttention3D(10, 4)
