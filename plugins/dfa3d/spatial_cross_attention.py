"""BEVFormer's spatial cross-attention with DFA3D: BEV queries look at every camera through 3D pillars.

Each BEV query owns a pillar of A 3D reference points (its cell centre at A heights). They are
projected into every camera with core `Cameras`; a camera *sees* a point when the point is in front
of it (depth > eps), inside its image, and within the depth bins' range [d_min, d_max] (the depth
distribution has no support elsewhere). Per camera, the queries with at least one seen point are
gathered (BEVFormer's rebatching), attend with `DeformableAttention3D` to that camera's features
and depth distribution (anchors it does not see get attention weight 0), and the per-camera results
are averaged over the cameras that see the query; then output projection, dropout and the identity
residual. Reference points: ``(u, v, d)`` with ``u = (x_pix + 0.5) / W``, ``v = (y_pix + 0.5) / H``,
``d = (depth - d_min) / (d_max - d_min)``, the bin convention of `facet3d.plugins.dfa3d.depth`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from facet3d.core.errors import UsageError
from facet3d.plugins.dfa3d.attention import DeformableAttention3D
from facet3d.plugins.dfa3d.depth import DepthBins

__all__ = ["SpatialCrossAttention", "project_reference_points", "pillar_points"]


def pillar_points(bev_h: int, bev_w: int, pc_range: Sequence[float], num_anchors: int, dtype=torch.float32,
                  device=None) -> Tensor:
    """``[bev_h * bev_w, A, 3]`` world points: the BEV cell centres (row = y index, column = x index,
    row-major) at A heights evenly spaced inside [z0, z1] (centres of A equal slices).

    pc_range: (x0, y0, z0, x1, y1, z1), BEVFormer's order.
    """
    x0, y0, z0, x1, y1, z1 = (float(v) for v in pc_range)
    xs = x0 + (torch.arange(bev_w, dtype=dtype, device=device) + 0.5) * (x1 - x0) / bev_w
    ys = y0 + (torch.arange(bev_h, dtype=dtype, device=device) + 0.5) * (y1 - y0) / bev_h
    zs = z0 + (torch.arange(num_anchors, dtype=dtype, device=device) + 0.5) * (z1 - z0) / num_anchors
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    xy = torch.stack([xx, yy], -1).reshape(-1, 1, 2).expand(-1, num_anchors, 2)
    return torch.cat([xy, zs.view(1, -1, 1).expand(xy.shape[0], -1, 1)], -1)


def project_reference_points(points: Tensor, cameras, bins: DepthBins, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """World points -> normalised (u, v, d) in every camera and whether the camera sees them.

    points: [N, 3]; cameras: core `Cameras` (B, with image_size: the image the features come from)
    returns ref [B, N, 3] in points' dtype, mask [B, N] bool (module docstring's rule)
    """
    if cameras.image_size is None:
        raise UsageError("spatial cross-attention needs cameras with an image size")
    px, depth = cameras.project(points.detach())  # float64 [B, N, 2], [B, N]
    W = cameras.width[:, None].to(px.dtype)
    H = cameras.height[:, None].to(px.dtype)
    front = depth > eps
    safe = torch.where(front[..., None], px, torch.zeros_like(px))
    u = (safe[..., 0] + 0.5) / W
    v = (safe[..., 1] + 0.5) / H
    d = (depth - bins.d_min) / (bins.d_max - bins.d_min)
    mask = front & (u >= 0) & (u < 1) & (v >= 0) & (v < 1) & (depth >= bins.d_min) & (depth <= bins.d_max)
    ref = torch.stack([u, v, d], -1)
    ref = torch.where(mask[..., None], ref, torch.full_like(ref, -2.0))  # far outside: zero padding
    return ref.to(points.dtype), mask


class SpatialCrossAttention(nn.Module):
    """BEVFormer-style spatial cross-attention over multi-camera features with DFA3D (module docstring).

    embed_dims, num_heads, num_levels, num_points: of the inner `DeformableAttention3D`
    num_depth_bins, depth_range: the depth bins (`DepthBins(depth_range[0], depth_range[1], num_depth_bins)`)
    num_anchors: reference points per pillar (num_points must be a multiple of it)
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 4, num_points: int = 8,
                 num_depth_bins: int = 112, depth_range: Sequence[float] = (2.0, 58.0), num_anchors: int = 4,
                 dropout: float = 0.1, backend: str | None = None) -> None:
        super().__init__()
        if num_points % num_anchors:
            raise UsageError(f"num_points ({num_points}) must be a multiple of num_anchors ({num_anchors})")
        self.bins = DepthBins(float(depth_range[0]), float(depth_range[1]), num_depth_bins)
        self.num_anchors = num_anchors
        self.attention = DeformableAttention3D(embed_dims, num_heads, num_levels, num_points, num_depth_bins,
                                               dropout=0.0, batch_first=True, output_proj=False, backend=backend)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: Tensor, value: Tensor, reference_points: Tensor, cameras, spatial_shapes: Tensor,
                level_start_index: Tensor, depth_dist: Tensor | None = None, query_pos: Tensor | None = None,
                identity: Tensor | None = None, return_visibility: bool = False):
        """query: [bs, Nq, C] BEV queries; value: [bs, Ncam, S, C] image features (all levels flattened)
        reference_points: [Nq, A, 3] or [bs, Nq, A, 3] world pillar points
        cameras: core `Cameras` of the Ncam views (shared by the batch) or a list of bs of them
        depth_dist: [bs, Ncam, S, D] (or [bs, Ncam, S, M, D]); None: no depth axis (plain BEVFormer)
        returns [bs, Nq, C] (and, with return_visibility, the [bs, Ncam, Nq] bool "camera sees query")
        """
        bs, nq, C = query.shape
        if value.dim() != 4 or value.shape[0] != bs:
            raise UsageError(f"value must be [bs, Ncam, S, C] with bs = {bs}, got {tuple(value.shape)}")
        ncam, S = value.shape[1], value.shape[2]
        cams = list(cameras) if isinstance(cameras, (list, tuple)) else [cameras] * bs
        if len(cams) != bs or any(len(c) != ncam for c in cams):
            raise UsageError(f"need {bs} camera sets of {ncam} cameras, got {[len(c) for c in cams]}")
        ref_w = reference_points if reference_points.dim() == 4 else reference_points[None].expand(bs, -1, -1, -1)
        A = ref_w.shape[2]
        if ref_w.shape[1] != nq or ref_w.shape[3] != 3 or A != self.num_anchors:
            raise UsageError(f"reference_points must be [Nq, A, 3] = [{nq}, {self.num_anchors}, 3], got "
                             f"{tuple(reference_points.shape)}")
        identity = query if identity is None else identity
        q = query if query_pos is None else query + query_pos
        refs, masks = [], []
        for b in range(bs):
            r, m = project_reference_points(ref_w[b].reshape(-1, 3), cams[b], self.bins)
            refs.append(r.view(ncam, nq, A, 3))
            masks.append(m.view(ncam, nq, A))
        ref = torch.stack(refs)  # [bs, Ncam, Nq, A, 3]
        mask = torch.stack(masks).to(query.device)  # [bs, Ncam, Nq, A]
        ref = ref.to(query.device)
        seen = mask.any(-1)  # [bs, Ncam, Nq]
        # rebatch: per (b, cam) the queries that camera sees, padded to the longest list
        index = [seen[b, c].nonzero().flatten() for b in range(bs) for c in range(ncam)]
        max_len = max([len(i) for i in index] + [1])
        L = self.attention.num_levels
        q_re = query.new_zeros(bs * ncam, max_len, C)
        ref_re = ref.new_full((bs * ncam, max_len, A, 3), -2.0)
        m_re = mask.new_zeros(bs * ncam, max_len, A)
        for j, idx in enumerate(index):
            b, c = divmod(j, ncam)
            n = len(idx)
            q_re[j, :n] = q[b, idx]
            ref_re[j, :n] = ref[b, c, idx]
            m_re[j, :n] = mask[b, c, idx]
        ref_l = ref_re[:, :, None].expand(-1, -1, L, -1, -1)  # the same anchors on every level
        m_l = m_re[:, :, None].expand(-1, -1, L, -1)
        val = value.reshape(bs * ncam, S, C)
        dist = None if depth_dist is None else depth_dist.reshape(bs * ncam, *depth_dist.shape[2:])
        out = self.attention.sample(q_re, val, ref_l, spatial_shapes, level_start_index, dist, reference_mask=m_l)
        rows = torch.cat([idx + (j // ncam) * nq for j, idx in enumerate(index)])
        picked = torch.cat([out[j, :len(idx)] for j, idx in enumerate(index)])
        slots = query.new_zeros(bs * nq, out.shape[-1]).index_add(0, rows, picked).view(bs, nq, -1)
        count = seen.sum(1).clamp(min=1).to(slots.dtype)  # [bs, Nq]: cameras seeing each query
        slots = slots / count[..., None]
        result = self.dropout(self.output_proj(slots)) + identity
        return (result, seen) if return_visibility else result
