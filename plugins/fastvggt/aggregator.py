"""The VGGT aggregator: DINOv2 patch embedding with registers, then alternating frame / global attention.

Per frame the token sequence is ``[camera, 4 registers, patches]`` (``patch_start_idx = 5``); camera and
register tokens have a first-frame version (index 0) and one shared by every other frame (index 1).
RoPE positions: special tokens at 0, patch (y, x) shifted by +1.  Frame blocks attend within a frame
(``[B*S, P, C]``), global blocks across all frames (``[B, S*P, C]``).  The output of layer ``i`` is
``cat(frame_i, global_i) [B, S, P, 2C]``; only the layers the heads read are kept (upstream keeps 24).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facet3d.plugins.fastvggt.layers import Block, RotaryPositionEmbedding2D, patch_positions

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class _Conv(nn.Module):
    """The patchify convolution (key ``patch_embed.proj``): ``[B, 3, H, W] -> [B, H/p * W/p, C]``."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoEncoder(nn.Module):
    """DINOv2 ViT with registers (``dinov2_vitl14_reg`` at full size): images -> normed patch tokens.

    Learned absolute positions for a ``img_size / patch`` square grid, bicubically resized (antialiased)
    to other grids.  ``[B, 3, H, W]`` (ImageNet-normalised) -> ``[B, H/p * W/p, C]``.
    """

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_register_tokens: int = 4) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.patch_embed = _Conv(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)  # unused at inference
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, init_values=1.0, norm_eps=1e-6)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def _positions(self, npatch: int, h: int, w: int, dtype) -> Tensor:
        """``[1, 1 + h*w, C]`` position embeddings for an ``h x w`` patch grid."""
        n = self.pos_embed.shape[1] - 1
        if npatch == n and h == w:
            return self.pos_embed
        pos = self.pos_embed.float()
        m = int(math.sqrt(n))
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((pos[:, :1], grid), dim=1).to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        _, _, H, W = x.shape
        p = self.patch_size
        t = self.patch_embed(x)  # [B, h*w, C]
        t = torch.cat((self.cls_token.expand(t.shape[0], -1, -1), t), dim=1)
        t = t + self._positions(t.shape[1] - 1, H // p, W // p, t.dtype)
        t = torch.cat((t[:, :1], self.register_tokens.expand(t.shape[0], -1, -1), t[:, 1:]), dim=1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)[:, 1 + self.num_register_tokens:]


def _first_and_rest(token: Tensor, B: int, S: int) -> Tensor:
    """``[1, 2, X, C]`` -> ``[B*S, X, C]``: index 0 for frame 0, index 1 for frames 1..S-1."""
    first = token[:, :1].expand(B, 1, *token.shape[2:])
    rest = token[:, 1:].expand(B, S - 1, *token.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(B * S, *token.shape[2:])


class Aggregator(nn.Module):
    """Alternating-attention trunk: ``images [B, S, 3, H, W]`` in [0, 1] -> kept layer outputs.

    `forward` returns ``({layer: [B, S, P, 2C]}, patch_start_idx)`` for the layers in ``keep``.
    ``merging`` (`facet3d.plugins.fastvggt.merging.TokenMerger` or None) merges tokens in the global
    blocks from its ``first_block`` on; None runs the plain VGGT.
    """

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_register_tokens: int = 4, qk_norm: bool = True,
                 rope_freq: float = 100.0, init_values: float = 0.01, dino_depth: int = 24,
                 dino_heads: int = 16) -> None:
        super().__init__()
        self.patch_embed = DinoEncoder(img_size, patch_size, embed_dim, dino_depth, dino_heads, mlp_ratio,
                                       num_register_tokens)
        self.rope = RotaryPositionEmbedding2D(rope_freq) if rope_freq > 0 else None

        def blocks() -> nn.ModuleList:
            return nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, qk_norm=qk_norm,
                                        rope=self.rope) for _ in range(depth)])

        self.frame_blocks = blocks()
        self.global_blocks = blocks()
        self.depth = depth
        self.patch_size = patch_size
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, num_register_tokens, embed_dim))
        self.patch_start_idx = 1 + num_register_tokens
        self.register_buffer("_mean", torch.tensor(_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_STD).view(1, 1, 3, 1, 1), persistent=False)
        self.last_merge_stats: list[dict] = []  # per merged block: tokens before / after (for tests, benchmarks)

    def embed(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images ``[B, S, 3, H, W]`` -> (tokens ``[B*S, P, C]``, RoPE positions ``[B*S, P, 2]``)."""
        B, S, C_in, H, W = images.shape
        if C_in != 3:
            raise ValueError(f"expected 3 image channels, got {C_in}")
        x = ((images - self._mean) / self._std).reshape(B * S, C_in, H, W)
        patches = self.patch_embed(x)  # [B*S, h*w, C]
        tokens = torch.cat([_first_and_rest(self.camera_token, B, S).to(patches.dtype),
                            _first_and_rest(self.register_token, B, S).to(patches.dtype), patches], dim=1)
        pos = patch_positions(B * S, H // self.patch_size, W // self.patch_size, images.device) + 1
        special = torch.zeros(B * S, self.patch_start_idx, 2, dtype=pos.dtype, device=pos.device)
        return tokens, torch.cat([special, pos], dim=1)

    def forward(self, images: Tensor, keep: Iterable[int] | None = None,
                merging: Optional[object] = None) -> tuple[dict[int, Tensor], int]:
        B, S, _, H, W = images.shape
        keep = set(range(self.depth) if keep is None else keep)
        tokens, pos = self.embed(images)
        _, P, C = tokens.shape
        grid = (H // self.patch_size, W // self.patch_size)
        merge_ctx = merging.context(B, S, P, self.patch_start_idx, grid, tokens.device) if merging is not None else None
        self.last_merge_stats = []
        outputs: dict[int, Tensor] = {}
        pos_global = pos.reshape(B, S * P, 2)
        for i in range(self.depth):
            tokens = self.frame_blocks[i](tokens.reshape(B * S, P, C), pos=pos)
            frame_out = tokens.reshape(B, S, P, C) if i in keep else None
            fn = merge_ctx.for_block(i, self.last_merge_stats) if merge_ctx is not None else None
            tokens = self.global_blocks[i](tokens.reshape(B, S * P, C), pos=pos_global, merge=fn)
            if frame_out is not None:
                outputs[i] = torch.cat([frame_out, tokens.reshape(B, S, P, C)], dim=-1)
        return outputs, self.patch_start_idx
