"""SpatialCrossAttention: projection convention, cameras that do not see a point, camera averaging."""

from __future__ import annotations

import torch

from facet3d.core.structures.cameras import Cameras, intrinsics_matrix
from facet3d.plugins.dfa3d.depth import DepthBins
from facet3d.plugins.dfa3d.spatial_cross_attention import SpatialCrossAttention, pillar_points, project_reference_points

W, H = 16, 8
# camera 0 and 2 at the origin looking +x, camera 1 looking -x (OpenCV axes: x right, y down, z forward)
R_PLUS_X = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
R_MINUS_X = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)


def _cameras(n=3):
    K = intrinsics_matrix(8.0, 8.0, (W - 1) / 2, (H - 1) / 2)
    R = torch.stack([R_PLUS_X, R_MINUS_X, R_PLUS_X][:n])
    return Cameras(K, R, torch.zeros(n, 3), (H, W))


def test_reference_points_normalise_pixels_and_depth_on_bin_centres():
    bins = DepthBins(2.0, 58.0, 112)
    cams = _cameras(2)
    centre = bins.d_min + (17 + 0.5) * bins.step  # centre of bin 17
    pts = torch.tensor([[centre, 0.0, 0.0], [-5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    ref, mask = project_reference_points(pts, cams, bins)
    # on the optical axis: the principal point (W-1)/2 is the image centre, u = v = 0.5
    torch.testing.assert_close(ref[0, 0, :2], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert abs(float(ref[0, 0, 2]) * bins.num_bins - 0.5 - 17) < 1e-9  # the operator's z lands on bin 17
    assert mask.tolist() == [[True, False, False, False],   # behind camera 0: -x; beside: depth 0; 1 m < d_min
                             [False, True, False, False]]
    assert (ref[~mask] == -2).all()  # unseen points sent far outside the map (zero padding)


def test_points_behind_every_camera_get_nothing_and_seen_ones_average_the_cameras():
    torch.manual_seed(0)
    C, D = 8, 16
    sca = SpatialCrossAttention(C, num_heads=2, num_levels=1, num_points=4, num_depth_bins=D, depth_range=(1.0, 17.0),
                                num_anchors=2, dropout=0.0).double()
    with torch.no_grad():
        sca.attention.sampling_offsets.weight.normal_(0, 0.1)
        sca.attention.attention_weights.weight.normal_(0, 0.3)
    cams = _cameras(3)
    # pillars (2 heights): +x (cameras 0 and 2), -x (camera 1 only), +y (beside all: none)
    ref = torch.tensor([[[5.0, 0.0, -0.5], [5.0, 0.0, 0.5]],
                        [[-6.0, 0.5, -0.5], [-6.0, 0.5, 0.5]],
                        [[0.0, 5.0, -0.5], [0.0, 5.0, 0.5]]], dtype=torch.float64)
    q = torch.randn(1, 3, C, dtype=torch.float64)
    value = torch.randn(1, 3, H * W, C, dtype=torch.float64)
    dist = torch.rand(1, 3, H * W, D, dtype=torch.float64).softmax(-1)
    ss = torch.tensor([[H, W]])
    st = torch.tensor([0])
    out, seen = sca(q, value, ref, cams, ss, st, dist, return_visibility=True)
    assert seen[0].T.tolist() == [[True, False, True], [False, True, False], [False, False, False]]
    # the unseen query: nothing sampled, only the projection's bias and the residual
    torch.testing.assert_close(out[0, 2], sca.output_proj.bias + q[0, 2])

    def one_camera(c, query):
        r, m = project_reference_points(ref[query], cams[c], sca.bins)
        got = sca.attention.sample(q[:, query:query + 1], value[:, c], r.view(1, 1, 1, 2, 3),
                                   ss, st, dist[:, c], reference_mask=m.view(1, 1, 1, 2))
        return got[0, 0]

    want0 = sca.output_proj((one_camera(0, 0) + one_camera(2, 0)) / 2) + q[0, 0]  # mean over the two that see it
    want1 = sca.output_proj(one_camera(1, 1)) + q[0, 1]
    torch.testing.assert_close(out[0, 0], want0)
    torch.testing.assert_close(out[0, 1], want1)


def test_gradient_flows_and_pillars_are_cell_centres():
    sca = SpatialCrossAttention(8, 2, 1, 4, 16, (1.0, 17.0), 2, dropout=0.0)
    pil = pillar_points(2, 4, (-4, -2, -1, 4, 2, 1), 2)
    assert pil.shape == (8, 2, 3)
    torch.testing.assert_close(pil[0], torch.tensor([[-3.0, -1.0, -0.5], [-3.0, -1.0, 0.5]]))
    torch.testing.assert_close(pil[5, 0], torch.tensor([-1.0, 1.0, -0.5]))  # row 1 (y), column 1 (x)
    pts = pil.clone()
    pts[..., 0] += 8.0  # in front of the +x cameras
    q = torch.randn(1, 8, 8, requires_grad=True)
    value = torch.randn(1, 3, H * W, 8, requires_grad=True)
    dist = torch.rand(1, 3, H * W, 16).softmax(-1).requires_grad_(True)
    out = sca(q, value, pts, _cameras(3), torch.tensor([[H, W]]), torch.tensor([0]), dist)
    out.sum().backward()
    assert value.grad.abs().sum() > 0 and dist.grad.abs().sum() > 0 and q.grad.abs().sum() > 0
