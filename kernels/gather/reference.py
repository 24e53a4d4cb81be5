"""Grouping gather in pure PyTorch: ``out[b, m, k, :] = features[b, idx[b, m, k], :]``.

The source of truth for the Triton kernel and the CPU path; autograd provides the backward
(a scatter-add of the output gradient into the gathered rows).
"""

from __future__ import annotations

import torch


def gather_torch(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """features: Tensor  # [B, N, C]
    idx: Tensor         # [B, M, K] int64 in [0, N)
    returns             # [B, M, K, C]
    """
    B, M, K = idx.shape
    C = features.shape[-1]
    flat = idx.reshape(B, M * K, 1).expand(-1, -1, C)
    return torch.gather(features, 1, flat).reshape(B, M, K, C)
