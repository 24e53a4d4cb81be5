"""DFA3D the obvious way (tests and benchmarks only): build F = V x Dist per level, sample it in 3D.

``F_l[b, m, :, z, y, x] = V_l[b, y, x, m, :] * Dist_l[b, y, x, m, z]`` is materialised (that is the
memory the fused form avoids: ~21 GB at the reference sizes) and sampled with
``torch.nn.functional.grid_sample`` (trilinear, zeros padding, align_corners=False, grid = 2*loc - 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dfa3d_naive(value: torch.Tensor, depth_dist: torch.Tensor, spatial_shapes: torch.Tensor,
                level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                attention_weights: torch.Tensor) -> torch.Tensor:
    """Same arguments and result as `facet3d.kernels.dfa3d.reference.dfa3d_torch`: [B', Nq, M*Ch]."""
    B, S, M, C = value.shape
    D = depth_dist.shape[-1]
    Nq, L, P = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    out = value.new_zeros((B * M, C, Nq, P))
    total = 0
    for lvl, (H, W, _) in enumerate(spatial_shapes.tolist()):
        start = int(level_start_index[lvl])
        v = value[:, start:start + H * W].reshape(B, H, W, M, C).permute(0, 3, 4, 1, 2)  # [B, M, C, H, W]
        d = depth_dist[:, start:start + H * W].reshape(B, H, W, M, D).permute(0, 3, 4, 1, 2)  # [B, M, D, H, W]
        vol = (v.unsqueeze(3) * d.unsqueeze(2)).reshape(B * M, C, D, H, W)  # the materialised volume
        grid = 2 * sampling_locations[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(B * M, Nq, P, 1, 3) - 1
        sampled = F.grid_sample(vol, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        a = attention_weights[:, :, :, lvl].permute(0, 2, 1, 3).reshape(B * M, 1, Nq, P)
        out = out + sampled[..., 0] * a
        total += H * W
    return out.sum(-1).reshape(B, M, C, Nq).permute(0, 3, 1, 2).reshape(B, Nq, M * C)
