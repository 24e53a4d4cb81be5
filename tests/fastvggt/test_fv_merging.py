"""FastVGGT token merging: bit-identity when off, destination / protected layout, tokens kept, deviation."""

from __future__ import annotations

import pytest
import torch

from facet3d.plugins.fastvggt.merging import MergeConfig, MergeContext, TokenMerger, dst_mask, merger, \
    protected_indices, tokens_kept


def _x(S, H=70, W=98, seed=0):
    return torch.rand(1, S, 3, H, W, generator=torch.Generator().manual_seed(seed))


def test_merging_off_is_bit_identical(tiny_model):
    x = _x(3)
    assert merger(0.0) is None
    with torch.no_grad():
        a = tiny_model(x)
        b = tiny_model(x, merging=None)
        # a merger that starts after the last block never merges: the plain model's bits again
        c = tiny_model(x, merging=TokenMerger(MergeConfig(first_block=99)))
    for k in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k


def test_dst_pattern_one_per_region_any_grid():
    S, special, (h, w) = 3, 5, (5, 7)  # odd grid: border regions are 1 wide
    P = special + h * w
    m = dst_mask(S, P, special, (h, w)).reshape(S, P)
    assert m[0].all() and m[:, :special].all()
    for s in (1, 2):
        grid = m[s, special:].reshape(h, w)
        for y0 in range(0, h, 2):
            for x0 in range(0, w, 2):
                assert int(grid[y0:y0 + 2, x0:x0 + 2].sum()) == 1
    assert torch.equal(m.reshape(-1), dst_mask(S, P, special, (h, w)))  # fixed seed: same in every block


def test_protected_even_stride():
    idx = protected_indices(1000, 0.1)
    assert len(idx) == 100 and torch.equal(idx, torch.arange(0, 1000, 10))
    assert len(protected_indices(5, 0.1)) == 0


def test_plan_mean_reduces_and_unmerges_consistently():
    torch.manual_seed(0)
    S, special, grid = 3, 5, (4, 6)
    P = special + grid[0] * grid[1]
    ctx = MergeContext(MergeConfig(protected=0.1, proportional=True), 2, S, P, special, grid, "cpu")
    x = torch.randn(2, S * P, 16)
    plan = ctx.plan(x)
    q = torch.randn(2, 2, S * P, 8)
    qm, km, vm, bias = plan.reduce(q, q, q)
    L = plan.length
    assert qm.shape == (2, 2, L, 8) and bias.shape == (2, 1, 1, L)
    # each row is the mean of the tokens that read their output from it (protected dst rows aside)
    full = plan.expand(torch.arange(L, dtype=torch.float64)[None, :, None].expand(2, L, 1))[..., 0].long()
    assert torch.equal(full, plan.row_of)
    sizes = torch.exp(bias[:, 0, 0]).round().long()
    for b in range(2):
        counts = torch.bincount(plan.rows[b], minlength=L) + 1
        assert torch.equal(sizes[b], counts)
    # a row nobody merged into is its base token
    lonely = (torch.bincount(plan.rows[0], minlength=L) == 0).nonzero()[:, 0]
    base = plan.base if plan.base.ndim == 1 else plan.base[0]
    torch.testing.assert_close(qm[0][:, lonely], q[0][:, base[lonely]])


def test_ratio_caps_the_merged_sources():
    S, special, grid = 4, 5, (4, 4)
    P = special + 16
    ctx = MergeContext(MergeConfig(ratio=0.05, protected=0.0), 2, S, P, special, grid, "cpu")
    plan = ctx.plan(torch.randn(2, S * P, 8))
    assert plan.merged.shape == (2, int(0.05 * S * P))
    assert plan.length == S * P - int(0.05 * S * P)


@pytest.mark.parametrize("S", [10, 50, 100])
def test_tokens_kept_per_frame(tiny_model, S):
    """Tiny config, 56x84 images (4x6 patches + 5 special = 29 tokens per frame)."""
    x = _x(S, 56, 84, seed=S)
    with torch.no_grad():
        tiny_model.aggregator(x, keep=[3], merging=merger(0.9))
    stats = tiny_model.aggregator.last_merge_stats
    assert len(stats) == 4  # every global block merges (first_block 0)
    per_frame = stats[0]["kept_per_frame"]
    prot = protected_indices(29 * S, 0.1)
    # frame 0 is all destinations, plus a second row for each protected one (as the official code)
    assert per_frame[0] == 29 + int((prot < 29).sum())
    # other frames: 5 special + 6 region dst + protected tokens (own rows)
    assert all(11 <= k <= 11 + 29 for k in per_frame[1:])
    frac = stats[0]["merged_tokens"] / stats[0]["tokens"]
    closed = tokens_kept(S, 29, 5, (4, 6))
    assert closed["kept"] == stats[0]["merged_tokens"] and closed["per_frame"] == per_frame
    expected_min = (29 + (S - 1) * 11) / (29 * S)
    assert expected_min <= frac <= expected_min + 0.11


def test_official_grid_kept_fractions():
    """At the official 518x392 input (37x28 patches): ~42% kept at 10 frames, ~35% for long sequences."""
    f10 = tokens_kept(10, 5 + 37 * 28, 5, (28, 37))["fraction"]
    f100 = tokens_kept(100, 5 + 37 * 28, 5, (28, 37))["fraction"]
    assert 0.38 < f10 < 0.45 and 0.33 < f100 < 0.37


def test_merged_output_stays_close(tiny_model):
    x = _x(6)
    with torch.no_grad():
        a = tiny_model(x)
        b = tiny_model(x, merging=merger(0.9))
    rel = lambda k: float((a[k] - b[k]).norm() / a[k].norm())  # noqa: E731
    # random tiny weights: merging changes the result but only moderately
    assert rel("depth") < 0.5 and rel("world_points") < 0.5
    assert float((a["pose_enc"] - b["pose_enc"]).abs().max()) < 5.0
    assert torch.isfinite(b["depth"]).all()


def test_proportional_attention_runs(tiny_model):
    x = _x(3)
    with torch.no_grad():
        out = tiny_model(x, merging=merger(0.9, proportional=True))
    assert torch.isfinite(out["depth"]).all()


def test_bad_merge_options():
    with pytest.raises(ValueError):
        MergeConfig(ratio=1.5)
    with pytest.raises(ValueError):
        MergeConfig(protected=1.0)
