"""Depth bins, DepthNet and given depth as distributions: sums, peaks, the bin-centre convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import UsageError
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix
from facet3d.kernels.dfa3d import deformable_attention_3d
from facet3d.plugins.dfa3d.depth import DepthBins, DepthNet, depth_to_distribution, fill_depth, splat_depth

BINS = DepthBins(2.0, 58.0, 112)


def test_paper_bins_and_normalisation():
    assert BINS.step == 0.5
    c = BINS.centres()
    assert float(c[0]) == 2.25 and float(c[-1]) == 57.75
    torch.testing.assert_close(BINS.normalise(torch.tensor([2.0, 58.0, 30.0])), torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(UsageError):
        DepthBins(5.0, 5.0, 3)
    with pytest.raises(UsageError):
        DepthBins(0.0, 5.0, 0)


@pytest.mark.parametrize("mode", ["onehot", "gaussian"])
def test_given_depth_sums_to_one_and_peaks_in_its_bin(mode):
    depth = torch.tensor([[2.0, 2.3, 10.1, 33.74], [57.9, 0.0, -1.0, 80.0]])
    dist = depth_to_distribution(depth, BINS, mode)
    assert dist.shape == (2, 4, 112)
    inside = torch.tensor([[True, True, True, True], [True, False, False, False]])
    torch.testing.assert_close(dist.sum(-1)[inside], torch.ones(int(inside.sum())))
    assert dist[~inside].abs().max() == 0  # no depth / out of range: zero (the default empty="zero")
    want = torch.tensor([0, 0, 16, 63, 111])  # floor((d - 2) / 0.5)
    assert dist[inside].argmax(-1).tolist() == want.tolist()
    uni = depth_to_distribution(depth, BINS, mode, empty="uniform")
    torch.testing.assert_close(uni.sum(-1), torch.ones(2, 4))
    torch.testing.assert_close(uni[~inside], torch.full((3, 112), 1 / 112))


def test_gaussian_closed_form_on_a_bin_centre():
    d = torch.tensor([BINS.d_min + 40.5 * BINS.step])  # centre of bin 40
    for sigma in (0.5, 1.0, 2.5):
        dist = depth_to_distribution(d, BINS, "gaussian", sigma)[0]
        k = torch.arange(112, dtype=torch.float32)
        want = torch.exp(-0.5 * ((k - 40) / sigma) ** 2)
        # the Gaussian is cut beyond 4 sigma + 1 bins (mass < 1e-4) and renormalised
        torch.testing.assert_close(dist, want / want.sum(), atol=2e-5, rtol=1e-4)
        assert float(dist.sum()) == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(dist[39], dist[41]) and int(dist.argmax()) == 40


def _through_the_operator(dist_row: torch.Tensor, depth: float) -> float:
    """The weight the DFA3D operator reads for a 1 x 1 map with this distribution, at ``depth``."""
    D = dist_row.numel()
    value = torch.ones(1, 1, 1, 1)
    loc = torch.tensor([0.5, 0.5, float(BINS.normalise(torch.tensor(depth)))]).view(1, 1, 1, 1, 1, 3)
    out = deformable_attention_3d(value, dist_row.view(1, 1, 1, D), torch.tensor([[1, 1, D]]), torch.tensor([0]),
                                  loc, torch.ones(1, 1, 1, 1, 1))
    return float(out)


def test_depth_coordinate_lands_on_bin_centres():
    """z_norm = (d - d_min) / (d_max - d_min) with align_corners=False: a depth at bin i's centre reads
    bin i alone; halfway between two centres reads half of each; the one-hot of a depth reads 1 at it."""
    onehot = depth_to_distribution(torch.tensor([BINS.d_min + 20.5 * BINS.step]), BINS, "onehot")[0]
    assert int(onehot.argmax()) == 20
    centre = lambda i: BINS.d_min + (i + 0.5) * BINS.step  # noqa: E731
    assert _through_the_operator(onehot, centre(20)) == pytest.approx(1.0, abs=1e-6)
    assert _through_the_operator(onehot, centre(21)) == pytest.approx(0.0, abs=1e-6)
    assert _through_the_operator(onehot, centre(19)) == pytest.approx(0.0, abs=1e-6)
    assert _through_the_operator(onehot, BINS.d_min + 21 * BINS.step) == pytest.approx(0.5, abs=1e-6)  # the edge
    assert _through_the_operator(onehot, centre(20) + 0.1 * BINS.step) == pytest.approx(0.9, abs=1e-5)


def test_depthnet_distribution_sums_to_one_and_peaks_where_its_logits_say():
    torch.manual_seed(0)
    net = DepthNet(8, num_bins=16, mid_channels=8).eval()
    x = torch.randn(2, 8, 5, 7)
    dist = net(x)
    assert dist.shape == (2, 5, 7, 16)
    torch.testing.assert_close(dist.sum(-1), torch.ones(2, 5, 7))
    with torch.no_grad():  # closed form: zero head weights, logits = bias -> the bias's softmax everywhere
        net.head.weight.zero_()
        net.head.bias.copy_(torch.arange(16.0) * 0 - 5)
        net.head.bias[11] = 5.0
    dist = net(x)
    want = torch.full((16,), -5.0)
    want[11] = 5.0
    torch.testing.assert_close(dist, want.softmax(0).expand(2, 5, 7, 16))
    assert (dist.argmax(-1) == 11).all()
    dist.sum().backward()  # trainable


def test_splat_depth_keeps_the_nearest_point_per_pixel():
    cam = Cameras(intrinsics_matrix(10.0, 10.0, 4.5, 3.5), torch.eye(3), torch.zeros(3), (8, 10))
    pts = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 3.0], [0.0, 0.0, -2.0], [2.0, 1.0, 10.0]], dtype=torch.float64)
    d = splat_depth(pts, cam)[0]
    # (0,0,z) projects to (4.5, 3.5) -> rounds to pixel (4 or 5, 3 or 4) by round-half-even: x=4, y=4
    assert d.shape == (8, 10)
    assert float(d[4, 4]) == 3.0  # the nearer of the two; the point behind is ignored
    assert float(d[round(3.5 + 1.0), round(4.5 + 2.0)]) == 10.0
    assert int((d > 0).sum()) == 2


def test_fill_interpolates_a_plane_exactly_and_leaves_far_holes():
    # inverse depth of a plane is affine in pixel coordinates
    v, u = np.mgrid[0:40, 0:30].astype(np.float32)
    inv = 0.05 + 0.004 * v + 0.001 * u
    plane = (1 / inv).astype(np.float32)
    sparse = np.zeros_like(plane)
    sparse[::6] = plane[::6]  # rings every 6 rows
    filled = fill_depth(torch.from_numpy(sparse), radius=0.0, max_gap=8).numpy()
    rows = slice(0, 37)  # up to the last ring
    np.testing.assert_allclose(filled[rows], plane[rows], rtol=1e-5)
    assert (filled[37:] == 0).all()  # beyond the last ring nothing to interpolate, no radius
    near = fill_depth(torch.from_numpy(sparse), radius=2.0, max_gap=0).numpy()
    assert (near[37:39] > 0).all() and (near[39:] == 0).all()  # nearest fill reaches 2 rows only
