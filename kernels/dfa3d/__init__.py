"""3D deformable attention (DFA3D, Li et al. ICCV 2023) and its 2D special case, through the dispatcher.

`deformable_attention_3d` takes the official operator's arguments in the official order;
`deformable_attention_2d` is multi-scale deformable attention (Deformable DETR / mmcv) as the
D = 1 case with a distribution of ones, through the same kernels.

Backends (`BACKENDS`): ``triton`` (CUDA, float32/float16/bfloat16; fused forward, backward with
float32 atomics or, with ``deterministic=True``, a sorted atomics-free scatter; `triton_impl.py`)
and ``torch`` (the fused-gather reference, `reference.py`, source of truth and CPU path).
`naive.py` materialises the volume (tests and benchmarks only).

Options (keyword, accepted by every backend so a call does not depend on which one runs):
``deterministic`` (Triton: atomics-free bit-reproducible backward; default follows
``torch.are_deterministic_algorithms_enabled()``; the torch backend ignores it: deterministic on
CPU, on CUDA under ``torch.use_deterministic_algorithms(True)``) and
``chunk`` (torch: queries per chunk; Triton ignores it).
"""

from __future__ import annotations

import torch

from facet3d.core.errors import UsageError
from facet3d.core.specs import Backend

__all__ = ["deformable_attention_3d", "deformable_attention_2d", "BACKENDS"]

_M = "facet3d.kernels.dfa3d"

# The dispatcher's records for this op: triton (CUDA) 100 > torch reference 0.
BACKENDS = [
    Backend(op="dfa3d", name="triton", impl=f"{_M}.triton_impl:dfa3d_triton", priority=100, devices=("cuda",),
            dtypes=("float32", "float16", "bfloat16"), requires=("triton",), check=f"{_M}.triton_impl:check",
            interpreter_ok=True),
    Backend(op="dfa3d", name="torch", impl=f"{_M}.reference:dfa3d_torch", priority=0),
]


def _check(value, depth_dist, spatial_shapes, level_start_index, sampling_locations, attention_weights) -> None:
    """Shape agreement between the six inputs (metadata only: no device sync)."""
    for name, t, dim in (("value", value, 4), ("depth_dist", depth_dist, 4), ("spatial_shapes", spatial_shapes, 2),
                         ("level_start_index", level_start_index, 1), ("sampling_locations", sampling_locations, 6),
                         ("attention_weights", attention_weights, 5)):
        if not isinstance(t, torch.Tensor) or t.dim() != dim:
            raise UsageError(f"{name} must be a {dim}-d tensor, got {getattr(t, 'shape', type(t).__name__)}")
    B, S, M, C = value.shape
    L = spatial_shapes.shape[0]
    if spatial_shapes.shape[1] != 3 or level_start_index.shape[0] != L:
        raise UsageError(f"spatial_shapes must be [L, 3] (H, W, D) and level_start_index [L]; got "
                         f"{tuple(spatial_shapes.shape)} and {tuple(level_start_index.shape)}")
    if depth_dist.shape[:3] != (B, S, M):
        raise UsageError(f"depth_dist must be [B', S, M, D] = [{B}, {S}, {M}, D], got {tuple(depth_dist.shape)}")
    Bq, Nq, Mq, Lq, P, three = sampling_locations.shape
    if (Bq, Mq, Lq, three) != (B, M, L, 3):
        raise UsageError(f"sampling_locations must be [B', Nq, M, L, P, 3] = [{B}, Nq, {M}, {L}, P, 3], "
                         f"got {tuple(sampling_locations.shape)}")
    if tuple(attention_weights.shape) != (B, Nq, M, L, P):
        raise UsageError(f"attention_weights must be [B', Nq, M, L, P] = {[B, Nq, M, L, P]}, "
                         f"got {tuple(attention_weights.shape)}")
    if spatial_shapes.dtype.is_floating_point or level_start_index.dtype.is_floating_point:
        raise UsageError("spatial_shapes and level_start_index must be integer tensors")
    devices = {t.device for t in (value, depth_dist, sampling_locations, attention_weights)}
    if len(devices) > 1:
        raise UsageError(f"value, depth_dist, sampling_locations and attention_weights must share a device, got {devices}")


def deformable_attention_3d(value: torch.Tensor, depth_dist: torch.Tensor, spatial_shapes: torch.Tensor,
                            level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                            attention_weights: torch.Tensor, backend: str | None = None, **options) -> torch.Tensor:
    """3D deformable attention: trilinear sampling of V x Dist without materialising it.

    value: Tensor              # [B', S, M, Ch]  (B' = batch x cameras; S = sum_l H_l*W_l; M heads)
    depth_dist: Tensor         # [B', S, M, D]   per-pixel distribution over D depth bins
    spatial_shapes: Tensor     # [L, 3] int      rows (H_l, W_l, D)
    level_start_index: Tensor  # [L] int         start of level l in S
    sampling_locations: Tensor # [B', Nq, M, L, P, 3] normalised (x, y, z) in [0, 1]; outside -> 0
    attention_weights: Tensor  # [B', Nq, M, L, P]
    backend: str               # force "torch" / "triton" (else FACET3D_BACKEND_DFA3D or the best)
    **options                  # deterministic=bool (reproducible backward), chunk=int (torch: queries per chunk)
    returns: Tensor            # [B', Nq, M*Ch]; differentiable w.r.t. the four float inputs
    Pixel centres follow align_corners=False: x = u*W_l - 0.5, y = v*H_l - 0.5, z = d*D - 0.5.
    """
    from facet3d.kernels.dispatch import call

    _check(value, depth_dist, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    return call("dfa3d", value, depth_dist, spatial_shapes, level_start_index, sampling_locations,
                attention_weights, backend=backend, **options)


def deformable_attention_2d(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                            sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                            backend: str | None = None, **options) -> torch.Tensor:
    """Multi-scale deformable attention (Deformable DETR's argument order) as DFA3D with D = 1.

    value: Tensor              # [B, S, M, Ch]
    spatial_shapes: Tensor     # [L, 2] int rows (H_l, W_l)
    level_start_index: Tensor  # [L]
    sampling_locations: Tensor # [B, Nq, M, L, P, 2] normalised (x, y)
    attention_weights: Tensor  # [B, Nq, M, L, P]
    **options                  # as for deformable_attention_3d (deterministic=, chunk=)
    returns: Tensor            # [B, Nq, M*Ch]
    A single depth bin of weight one sampled at its centre (z = 0.5) leaves exactly the bilinear term.
    """
    if not isinstance(spatial_shapes, torch.Tensor) or spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise UsageError(f"spatial_shapes must be [L, 2] (H, W), got {getattr(spatial_shapes, 'shape', None)}")
    if not isinstance(sampling_locations, torch.Tensor) or sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise UsageError(f"sampling_locations must be [B, Nq, M, L, P, 2], got {getattr(sampling_locations, 'shape', None)}")
    B, S, M, _ = value.shape
    ones = value.new_ones((1, 1, 1, 1)).expand(B, S, M, 1)
    shapes3 = torch.cat([spatial_shapes, torch.ones_like(spatial_shapes[:, :1])], 1)
    loc3 = torch.cat([sampling_locations, torch.full_like(sampling_locations[..., :1], 0.5)], -1)
    return deformable_attention_3d(value, ones, shapes3, level_start_index, loc3, attention_weights,
                                   backend=backend, **options)
