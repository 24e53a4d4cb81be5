"""The VGGT camera head: camera tokens of the last layer -> 9-D pose encoding ``absT_quaR_FoV``.

``[t (3), quaternion x y z w (4), fov_h, fov_w]``, camera-from-world, OpenCV axes.  A trunk of plain
blocks (attention across the frames of a sample) refines the encoding iteratively: each iteration
embeds the previous prediction (a learned empty pose first), modulates the normed tokens with it
(adaLN: shift, scale, gate), runs the trunk and adds a predicted delta.  FoV goes through ReLU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facet3d.plugins.fastvggt.layers import Block, Mlp


class CameraHead(nn.Module):
    """forward(tokens {layer: [B, S, P, C]}, layer) -> list of ``[B, S, 9]`` encodings, one per iteration."""

    def __init__(self, dim_in: int = 2048, trunk_depth: int = 4, num_heads: int = 16, mlp_ratio: float = 4,
                 init_values: float = 0.01) -> None:
        super().__init__()
        self.target_dim = 9
        self.trunk = nn.Sequential(*[Block(dim_in, num_heads, mlp_ratio, init_values=init_values)
                                     for _ in range(trunk_depth)])
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, self.target_dim))
        self.embed_pose = nn.Linear(self.target_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in, bias=True))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, self.target_dim)

    def forward(self, tokens: Tensor, num_iterations: int = 4) -> list[Tensor]:
        """tokens: the last layer ``[B, S, P, C]`` -> ``num_iterations`` x ``[B, S, 9]`` (last = final)."""
        pose_tokens = self.token_norm(tokens[:, :, 0])  # [B, S, C]
        B, S, _ = pose_tokens.shape
        pred = None
        preds = []
        for _ in range(num_iterations):
            inp = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1) if pred is None else pred)
            shift, scale, gate = self.poseLN_modulation(inp).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(pose_tokens) * (1 + scale) + shift) + pose_tokens
            x = self.trunk(x)
            delta = self.pose_branch(self.trunk_norm(x))
            pred = delta if pred is None else pred + delta
            preds.append(torch.cat([pred[..., :7], torch.relu(pred[..., 7:])], dim=-1))
        return preds
