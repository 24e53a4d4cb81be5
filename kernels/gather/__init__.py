"""Grouping gather: `gather_points(features, idx)` -> [B, M, K, C] through the dispatcher.

Backends (`BACKENDS` below): ``triton`` (CUDA; forward + atomic scatter-add backward)
and ``torch`` (reference, ``torch.gather``). Typical use: group features of knn/ball-query
neighbourhoods, ``gather_points(feats, knn(q, p, k)[1])``.
"""

from __future__ import annotations

import torch

from facet3d.core.errors import UsageError
from facet3d.core.specs import Backend

__all__ = ["gather_points", "BACKENDS"]

_M = "facet3d.kernels.gather"

# The dispatcher's records for this op: triton (CUDA) 100 > torch reference 0.
BACKENDS = [
    Backend(op="gather", name="triton", impl=f"{_M}.triton_impl:gather_triton", priority=100, devices=("cuda",),
            dtypes=("float32", "float16", "bfloat16"), requires=("triton",), check=f"{_M}.triton_impl:check",
            interpreter_ok=True),
    Backend(op="gather", name="torch", impl=f"{_M}.reference:gather_torch", priority=0),
]


def gather_points(features: torch.Tensor, idx: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Rows of `features` picked by `idx`, per batch element.

    features: Tensor # [B, N, C]
    idx: Tensor      # [B, M, K] integer indices in [0, N)
    backend: str     # force "torch" / "triton" (else FACET3D_BACKEND_GATHER or best)
    returns: Tensor  # [B, M, K, C]; differentiable w.r.t. features
    Indices are range-checked here (one device sync) because the Triton kernel would otherwise
    read out of bounds instead of raising.
    """
    from facet3d.kernels.dispatch import call

    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        raise UsageError(f"features must be a tensor [B, N, C], got {getattr(features, 'shape', type(features))}")
    if not isinstance(idx, torch.Tensor) or idx.dim() != 3 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise UsageError(f"idx must be an integer tensor [B, M, K], got {getattr(idx, 'shape', type(idx))}")
    if idx.shape[0] != features.shape[0] or idx.device != features.device:
        raise UsageError("features and idx must share batch size and device")
    idx = idx.to(torch.int64)
    N = features.shape[1]
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= N):
        raise UsageError(f"idx must lie in [0, {N}), got [{int(idx.min())}, {int(idx.max())}]")
    return call("gather", features, idx, backend=backend)
