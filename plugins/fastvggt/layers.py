"""Transformer building blocks of VGGT: MLP, LayerScale, 2-D RoPE, attention with qk-norm, blocks.

Parameter names follow the official checkpoint (``qkv``, ``q_norm``, ``k_norm``, ``proj``, ``ls1.gamma``,
``mlp.fc1`` ...). Shapes: B batch (or batch x frames), N tokens, C channels, H heads, D = C / H.

Token merging (FastVGGT) enters through `Attention.forward`'s ``merge`` argument: a callable that takes
the block's post-norm1 hidden states ``[B, N, C]`` and returns a plan with ``reduce(q, k, v)`` and
``expand(out)`` (see `facet3d.plugins.fastvggt.merging`). ``merge=None`` is the plain model, untouched.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Mlp(nn.Module):
    """``fc1 -> GELU (exact) -> fc2``: ``[..., in] -> [..., out]``."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel scale ``x * gamma`` (``gamma [C]``)."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def patch_positions(batch: int, height: int, width: int, device=None) -> Tensor:
    """``[batch, height * width, 2]`` int64 (y, x) grid positions, row-major."""
    y = torch.arange(height, device=device)
    x = torch.arange(width, device=device)
    grid = torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(1, height * width, 2)
    return grid.expand(batch, -1, -1).clone()


class RotaryPositionEmbedding2D(nn.Module):
    """2-D rotary embedding: the first half of each head's features rotates with y, the second with x.

    Per axis (``d = D / 2`` features): angles ``pos * base^(-2i/d)`` for ``i < d/2``, duplicated to ``d``;
    features rotate as ``x * cos + rot(x) * sin`` with ``rot([a, b]) = [-b, a]`` (halves).
    """

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.base_frequency = frequency
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _tables(self, dim: int, length: int, device, dtype) -> tuple[Tensor, Tensor]:
        key = (dim, length, device, dtype)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            inv_freq = 1.0 / (self.base_frequency ** (torch.arange(0, dim, 2, device=device) / dim))  # [d/2]
            angles = torch.outer(torch.arange(length, device=device, dtype=inv_freq.dtype), inv_freq).to(dtype)
            angles = torch.cat((angles, angles), dim=-1)  # [length, d]
            self._cache[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        return self._cache[key]

    @staticmethod
    def _rotate(x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def _apply_1d(self, x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        c = F.embedding(pos, cos)[:, None]  # [B, 1, N, d]
        s = F.embedding(pos, sin)[:, None]
        return x * c + self._rotate(x) * s

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens ``[B, H, N, D]`` (D divisible by 4), positions ``[B, N, 2]`` (y, x) -> ``[B, H, N, D]``."""
        d = tokens.shape[-1] // 2
        pos = positions.long()
        cos, sin = self._tables(d, int(pos.max()) + 1, tokens.device, tokens.dtype)
        ty, tx = tokens.chunk(2, dim=-1)
        return torch.cat((self._apply_1d(ty, pos[..., 0], cos, sin), self._apply_1d(tx, pos[..., 1], cos, sin)), dim=-1)


MergeFn = Callable[[Tensor], object]  # post-norm1 hidden states [B, N, C] -> a merge plan


class Attention(nn.Module):
    """Multi-head self-attention with optional qk LayerNorm and 2-D RoPE: ``[B, N, C] -> [B, N, C]``."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, rope: RotaryPositionEmbedding2D | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor | None = None, merge: Optional[MergeFn] = None) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, H, N, D]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        plan = merge(x) if merge is not None else None
        bias = None
        if plan is not None:
            q, k, v, bias = plan.reduce(q, k, v)  # [B, H, N', D], bias [B, 1, 1, N'] or None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, H, N', D]
        out = self.proj(out.transpose(1, 2).reshape(B, out.shape[2], C))
        if plan is not None:
            out = plan.expand(out)  # [B, N, C]
        return out


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x))); x + ls2(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_bias: bool = True, ffn_bias: bool = True, init_values: float | None = None,
                 qk_norm: bool = False, rope: RotaryPositionEmbedding2D | None = None, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor | None = None, merge: Optional[MergeFn] = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos, merge=merge))
        return x + self.ls2(self.mlp(self.norm2(x)))
