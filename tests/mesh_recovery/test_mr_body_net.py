"""CoordFormer-style network: shapes for every config, recorded parameter counts (heads checked against
hand counts), image mode, gradients, Body Center Attention mixing frames only at centre cells,
Coordinate-Aware Attention's windows and coordinates, eval determinism. All on tiny inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from facet3d.core.errors import UsageError
from facet3d.plugins.mesh_recovery.body.coordformer import (
    CONFIGS, CoordFormerConfig, CoordinateAwareAttention, build_network, count_parameters, pixel_coordinates,
    romp_param_channels)

C = romp_param_channels()  # 145
# recorded with param_channels = 145
PARAMS = {"paper": 10_087_058, "small": 2_433_138, "tiny": 523_906}


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: build_network(name, C).eval() for name in CONFIGS}


def _frames(B: int, T: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(B, T, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _tiny(**changes) -> torch.nn.Module:
    torch.manual_seed(1)
    return build_network(dataclasses.replace(CONFIGS["tiny"], **changes), C).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_output_shapes(nets, name):
    net, cfg = nets[name], CONFIGS[name]
    size = 128 if name == "tiny" else 64  # the big configs run on a small input: every size is a stride multiple
    T = 3 if name == "tiny" else 2
    out = net(_frames(2, T, size))
    m = size // cfg.stride
    K = min(cfg.num_centres, m * m)
    assert out["centre_logits"].shape == (2, T, 1, m, m)
    assert out["params"].shape == (2, T, C, m, m)
    assert out["centres"].shape == (2, T, K) and out["centres"].dtype == torch.int64
    assert torch.isfinite(out["params"]).all() and torch.isfinite(out["centre_logits"]).all()


def test_maps_not_multiple_of_window(nets):
    # 80 px -> 10 x 10 map: window 4 pads (plain and shifted layers) with masked keys
    out = nets["tiny"](_frames(1, 2, 80))
    assert out["params"].shape == (1, 2, C, 10, 10) and torch.isfinite(out["params"]).all()


def test_parameter_counts(nets):
    for name, net in nets.items():
        assert count_parameters(net) == PARAMS[name], name
        cfg = net.config
        D, hw = cfg.embed_dim, cfg.head_width
        assert count_parameters(net.centre_head) == 9 * D * hw + 2 * hw + (hw + 1)     # conv3x3 (no bias) + BN + 1x1
        assert count_parameters(net.param_stem) == 9 * D * hw + 2 * hw
        assert count_parameters(net.param_out) == (hw * hw + hw) + (hw * C + C)
        m = int(D * cfg.mlp_ratio)
        block = 2 * D + 4 * (D * D + D) + 2 * D + (D * m + m + m * D + D)              # LN, q/k/v/out, LN, MLP
        assert count_parameters(net.caa) == cfg.caa_depth * block + 2 * D
        assert count_parameters(net.bca) == cfg.bca_depth * (block + 2 * D) + 2 * D + (D * hw + hw)
    # 24 joints instead of 22: 12 more output channels, each a 1x1 conv row of head_width + 1
    assert count_parameters(build_network("tiny", romp_param_channels(24))) == PARAMS["tiny"] + 12 * (CONFIGS["tiny"].head_width + 1)


def test_image_mode_and_batch_independence(nets):
    net = nets["tiny"]
    a = _frames(2, 1, 128, seed=1)
    out = net(a)
    assert out["params"].shape == (2, 1, C, 16, 16)
    b = a.clone()
    b[1] = _frames(1, 1, 128, seed=2)[0]
    out_b = net(b)
    torch.testing.assert_close(out_b["params"][0], out["params"][0], atol=1e-5, rtol=0)
    assert not torch.allclose(out_b["params"][1], out["params"][1])


def test_gradient_reaches_first_layer():
    net = _tiny().train()
    out = net(_frames(1, 2, 64))
    (out["params"].square().mean() + out["centre_logits"].mean()).backward()
    first = net.backbone.stem[0][0].weight.grad
    assert first is not None and torch.isfinite(first).all() and first.abs().sum() > 0
    assert net.bca.blocks[0].attn.k_proj.weight.grad.abs().sum() > 0


def test_body_center_attention_mixes_frames_at_centres_only():
    # no CAA: frames meet only in BCA, at the candidate cells
    net, net0 = _tiny(caa_depth=0), _tiny(caa_depth=0, bca_depth=0)   # same seed: same weights but BCA
    a = _frames(1, 3, 64, seed=3)
    b = a.clone()
    b[0, 1] = _frames(1, 1, 64, seed=4)[0, 0]     # change frame 2
    oa, ob = net(a), net(b)
    torch.testing.assert_close(ob["centre_logits"][:, 0], oa["centre_logits"][:, 0], atol=1e-5, rtol=0)
    assert torch.equal(ob["centres"][:, 0], oa["centres"][:, 0])
    pa, pb = oa["params"][0, 0].flatten(1), ob["params"][0, 0].flatten(1)    # frame 1 [C, h*w]
    at = torch.zeros(pa.shape[1], dtype=torch.bool)
    at[oa["centres"][0, 0]] = True
    assert (pa[:, at] - pb[:, at]).abs().max() > 1e-3                          # the peaks see frame 2
    torch.testing.assert_close(pb[:, ~at], pa[:, ~at], atol=1e-5, rtol=0)     # the rest does not
    # without BCA, frame 1 does not depend on frame 2 at all
    torch.testing.assert_close(net0(b)["params"][:, 0], net0(a)["params"][:, 0], atol=1e-5, rtol=0)
    # image mode: BCA attends within the frame only, and still changes its candidates' cells (only those)
    one, one_b = net(a[:, :1]), net(b[:, :1])
    assert one["params"].shape == (1, 1, C, 8, 8)
    assert torch.equal(one["params"], one_b["params"])                        # frame 2 is not there
    p1, p0 = one["params"][0, 0].flatten(1), net0(a[:, :1])["params"][0, 0].flatten(1)
    at = torch.zeros(p1.shape[1], dtype=torch.bool)
    at[one["centres"][0, 0]] = True
    assert (p1[:, at] - p0[:, at]).abs().max() > 1e-3
    torch.testing.assert_close(p1[:, ~at], p0[:, ~at], atol=1e-5, rtol=0)


def test_caa_windows_span_frames_not_space():
    torch.manual_seed(2)
    caa = CoordinateAwareAttention(16, 2, depth=1, window=4, mlp_ratio=2.0).eval()   # one unshifted layer
    x, pos = torch.randn(1, 2, 8, 8, 16), torch.randn(2, 8, 8, 16)
    y = x.clone()
    y[0, 1, 0, 0] += torch.randn(16)  # frame 2, window (0, 0)
    z = x.clone()
    z[0, 0, 0, 4] += torch.randn(16)  # frame 1, window (0, 1)
    ox, oy, oz = caa(x, pos), caa(y, pos), caa(z, pos)
    assert (oy[0, 0, 1, 1] - ox[0, 0, 1, 1]).abs().max() > 1e-4     # same window, other frame: attended
    torch.testing.assert_close(oz[0, 0, 1, 1], ox[0, 0, 1, 1])      # other window: not in this layer
    caa2 = CoordinateAwareAttention(16, 2, depth=2, window=4, mlp_ratio=2.0).eval()  # + a shifted layer
    assert (caa2(z, pos)[0, 0, 1, 3] - caa2(x, pos)[0, 0, 1, 3]).abs().max() > 1e-4


def test_coordinates_matter(nets):
    net = nets["tiny"]
    a = _frames(1, 2, 64, seed=5)
    coords = pixel_coordinates(2, 8, 8, 8)
    ref = net(a)["params"]
    assert torch.equal(net(a, coords=coords)["params"], ref)
    perm = torch.randperm(2 * 8 * 8, generator=torch.Generator().manual_seed(0))
    shuffled = coords.reshape(-1, 3)[perm].reshape(coords.shape)
    assert (net(a, coords=shuffled)["params"] - ref).abs().max() > 1e-3
    swapped = coords[..., [1, 0, 2]]                                     # x <-> y
    assert (net(a, coords=swapped)["params"] - ref).abs().max() > 1e-3
    reversed_t = coords * torch.tensor([1.0, 1.0, -1.0])
    assert (net(a, coords=reversed_t)["params"] - ref).abs().max() > 1e-3


def test_deterministic_eval_and_predict(nets):
    net = nets["tiny"]
    a = _frames(1, 2, 64, seed=6)
    o1, o2 = net(a), net(a)
    assert torch.equal(o1["params"], o2["params"]) and torch.equal(o1["centre_logits"], o2["centre_logits"])
    net.train()
    try:
        p = net.predict(a)
        assert net.training
    finally:
        net.eval()
    assert torch.equal(p["params"], o1["params"])
    assert torch.equal(p["centre_heatmap"], o1["centre_logits"].sigmoid())


def test_given_centres_and_refusals(nets):
    net = nets["tiny"]
    a = _frames(1, 2, 64, seed=7)
    centres = torch.tensor([[[0, 9], [63, 20]]])
    assert torch.equal(net(a, centres=centres)["centres"], centres)
    with pytest.raises(UsageError):
        net(a[:, :, :, :60])                        # not a stride multiple
    with pytest.raises(UsageError):
        net(_frames(1, 9, 64))                      # longer than the clip
    with pytest.raises(UsageError):
        net(a, coords=torch.zeros(2, 8, 8, 2))
    with pytest.raises(UsageError):
        build_network("huge", C)
    with pytest.raises(UsageError):
        CoordFormerConfig(image_size=100, map_size=64)
    with pytest.raises(UsageError):
        build_network({"embed_dim": 30, "caa_heads": 4}, C)
