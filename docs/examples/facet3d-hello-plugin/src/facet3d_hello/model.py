"""A tiny point-cloud classifier (shared MLP + max pooling), built by the `hello-tiny-cls` model spec.

Imported only when the model is built: torch stays out of `facet3d --help`.
"""

from __future__ import annotations

import torch


class TinyPointNet(torch.nn.Module):
    """points [B, N, 3] -> class logits [B, classes]; the max over points makes it order-invariant."""

    def __init__(self, classes: int = 4, width: int = 16):
        super().__init__()
        self.point_mlp = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(), torch.nn.Linear(width, width))
        self.head = torch.nn.Linear(width, classes)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.point_mlp(points).max(dim=1).values)
