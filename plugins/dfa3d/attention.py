"""`DeformableAttention3D`: mmcv's `MultiScaleDeformableAttention` with DFA3D's depth axis.

Same call signature and behaviour as mmcv (value projection, offsets and attention weights from the
query, softmax over L*P, output projection, dropout + identity residual, the same initialisation),
plus a per-pixel depth distribution: every sampling point gains a depth offset, offsets are
normalised by (W_l, H_l, D) as in the paper, and sampling is the fused trilinear sampling of
``value x depth_dist`` (`facet3d.kernels.dfa3d.deformable_attention_3d`).

Reference points are normalised ``(u, v, d)``: ``u = (x_pix + 0.5) / W``, ``v = (y_pix + 0.5) / H``
(pixel centres at integer coordinates, as core `Cameras`), ``d = (depth - d_min) / (d_max - d_min)``
(see `facet3d.plugins.dfa3d.depth`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from facet3d.core.errors import UsageError

__all__ = ["DeformableAttention3D"]


class DeformableAttention3D(nn.Module):
    """3D deformable attention (DFA3D) in mmcv's MultiScaleDeformableAttention form.

    embed_dims, num_heads, num_levels, num_points, dropout, batch_first, value_proj_ratio: as mmcv
    num_depth_bins: D, the depth distribution's bins (offsets along depth are normalised by D)
    output_proj: False leaves the output projection out (BEVFormer's spatial cross-attention
                 projects after averaging the cameras); forward then returns the sampled values
                 without residual
    backend: force a kernel backend ("torch" / "triton"); None picks the best
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 4, num_points: int = 4,
                 num_depth_bins: int = 112, dropout: float = 0.1, batch_first: bool = False,
                 value_proj_ratio: float = 1.0, output_proj: bool = True, backend: str | None = None) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise UsageError(f"embed_dims must be divisible by num_heads, got {embed_dims} and {num_heads}")
        value_dims = int(embed_dims * value_proj_ratio)
        if value_dims % num_heads:
            raise UsageError(f"embed_dims * value_proj_ratio ({value_dims}) must be divisible by num_heads ({num_heads})")
        self.embed_dims, self.num_heads, self.num_levels, self.num_points = embed_dims, num_heads, num_levels, num_points
        self.num_depth_bins, self.batch_first, self.backend = num_depth_bins, batch_first, backend
        self.dropout = nn.Dropout(dropout)
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 3)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, value_dims)
        self.output_proj = nn.Linear(value_dims, embed_dims) if output_proj else None
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's init: zero offset weights, offset biases on a ring (head m at angle 2*pi*m/M, point
        p at radius p + 1, scaled so the larger of |cos|, |sin| is 1) with zero depth offset; zero
        attention weights and biases (uniform attention); Xavier-uniform value / output projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        ring = torch.stack([thetas.cos(), thetas.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True)[0]
        grid = torch.zeros(self.num_heads, self.num_levels, self.num_points, 3)
        grid[..., :2] = ring.view(self.num_heads, 1, 1, 2)
        grid[..., :2] *= torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            if lin is not None:
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    # ------------------------------------------------------------------ the sampling core
    def sampling(self, query: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                 reference_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sampling locations and attention weights from batch-first queries.

        query: [bs, Nq, C] (query_pos already added)
        reference_points: [bs, Nq, L, 3] (one (u, v, d) per level, as mmcv) or [bs, Nq, L, A, 3]
            (A anchors per level, BEVFormer's pillar form: the P points split into P/A groups, point
            p = i*A + a is offset from anchor a; P must be a multiple of A)
        reference_mask: optional bool/float, [bs, Nq, L] or [bs, Nq, L, A] (or without L): points of a
            masked reference (e.g. a pillar anchor behind the camera) get attention weight 0 (after
            the softmax, no renormalisation)
        returns locations [bs, Nq, M, L, P, 3], weights [bs, Nq, M, L, P]
        """
        bs, nq, _ = query.shape
        M, L, P = self.num_heads, self.num_levels, self.num_points
        off = self.sampling_offsets(query).view(bs, nq, M, L, P, 3)
        attn = self.attention_weights(query).view(bs, nq, M, L * P).softmax(-1).view(bs, nq, M, L, P)
        shapes = spatial_shapes.to(query.device)
        D = shapes[:, 2].to(query.dtype) if shapes.shape[1] == 3 else torch.full_like(shapes[:, 0], self.num_depth_bins, dtype=query.dtype)
        norm = torch.stack([shapes[:, 1].to(query.dtype), shapes[:, 0].to(query.dtype), D], -1)  # [L, 3] (W, H, D)
        off = off / norm[None, None, None, :, None, :]
        ref = reference_points.to(query.dtype)
        if ref.dim() == 4:
            if ref.shape[:3] != (bs, nq, L) or ref.shape[3] != 3:
                raise UsageError(f"reference_points must be [bs, Nq, L, 3] = [{bs}, {nq}, {L}, 3] (u, v, d), "
                                 f"got {tuple(ref.shape)}")
            loc = ref[:, :, None, :, None, :] + off
            if reference_mask is not None:
                rm = reference_mask.to(attn.dtype)
                rm = rm[:, :, None, :, None] if rm.dim() == 3 else rm
                attn = attn * rm
        elif ref.dim() == 5:
            A = ref.shape[3]
            if ref.shape[:3] != (bs, nq, L) or ref.shape[4] != 3 or P % A:
                raise UsageError(f"anchored reference_points must be [bs, Nq, L, A, 3] with num_points ({P}) a "
                                 f"multiple of A, got {tuple(ref.shape)}")
            loc = (ref[:, :, None, :, None, :, :] + off.view(bs, nq, M, L, P // A, A, 3)).view(bs, nq, M, L, P, 3)
            if reference_mask is not None:
                rm = reference_mask.to(attn.dtype)
                rm = rm[:, :, None, :].expand(bs, nq, L, A) if rm.dim() == 3 else rm  # [bs, Nq, L, A]
                attn = (attn.view(bs, nq, M, L, P // A, A) * rm[:, :, None, :, None, :]).view(bs, nq, M, L, P)
        else:
            raise UsageError(f"reference_points must be [bs, Nq, L, 3] or [bs, Nq, L, A, 3], got {tuple(ref.shape)}")
        return loc, attn

    def sample(self, query: Tensor, value: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
               level_start_index: Tensor, depth_dist: Tensor | None = None, key_padding_mask: Tensor | None = None,
               reference_mask: Tensor | None = None) -> Tensor:
        """The attention without output projection or residual, batch-first.

        query [bs, Nq, C]; value [bs, S, C] (not yet projected); depth_dist [bs, S, D] (shared by the
        heads) or [bs, S, M, D], None: no depth (exactly mmcv's 2D attention on (u, v));
        returns [bs, Nq, value_dims].
        """
        from facet3d.kernels.dfa3d import deformable_attention_2d, deformable_attention_3d

        bs, nv, _ = value.shape
        shapes = spatial_shapes.to(value.device).long()
        if shapes.dim() != 2 or shapes.shape[1] not in (2, 3) or shapes.shape[0] != self.num_levels:
            raise UsageError(f"spatial_shapes must be [{self.num_levels}, 2] (H, W) or [{self.num_levels}, 3] (H, W, D), "
                             f"got {tuple(spatial_shapes.shape)}")
        if int((shapes[:, 0] * shapes[:, 1]).sum()) != nv:
            raise UsageError(f"value has {nv} entries but spatial_shapes sum to {int((shapes[:, 0] * shapes[:, 1]).sum())}")
        v = self.value_proj(value)
        if key_padding_mask is not None:
            v = v.masked_fill(key_padding_mask[..., None], 0.0)
        v = v.view(bs, nv, self.num_heads, -1)
        loc, attn = self.sampling(query, reference_points, shapes, reference_mask)
        starts = level_start_index.to(value.device).long()
        if depth_dist is None:
            return deformable_attention_2d(v, shapes[:, :2], starts, loc[..., :2].contiguous(), attn, backend=self.backend)
        dist = depth_dist.to(v.dtype)
        if dist.dim() == 3:
            dist = dist[:, :, None, :].expand(bs, nv, self.num_heads, dist.shape[-1])
        if dist.dim() != 4 or dist.shape[:2] != (bs, nv):
            raise UsageError(f"depth_dist must be [bs, S, D] or [bs, S, M, D] with S = {nv}, got {tuple(depth_dist.shape)}")
        D = dist.shape[-1]
        if shapes.shape[1] == 3 and bool((shapes[:, 2] != D).any()):
            raise UsageError(f"spatial_shapes say D = {shapes[:, 2].tolist()} but depth_dist has {D} bins")
        if D != self.num_depth_bins:
            raise UsageError(f"depth_dist has {D} bins, the module was built for num_depth_bins={self.num_depth_bins}")
        shapes3 = torch.cat([shapes[:, :2], torch.full_like(shapes[:, :1], D)], 1)
        return deformable_attention_3d(v, dist.contiguous(), shapes3, starts, loc.contiguous(), attn, backend=self.backend)

    # ------------------------------------------------------------------ mmcv's forward
    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                identity: Tensor | None = None, query_pos: Tensor | None = None,
                key_padding_mask: Tensor | None = None, reference_points: Tensor | None = None,
                spatial_shapes: Tensor | None = None, level_start_index: Tensor | None = None,
                depth_dist: Tensor | None = None, reference_mask: Tensor | None = None, **kwargs) -> Tensor:
        """mmcv's MultiScaleDeformableAttention.forward plus ``depth_dist`` (and ``reference_mask``).

        query: [Nq, bs, C] ([bs, Nq, C] with batch_first); value: [S, bs, C] (default: query)
        reference_points: [bs, Nq, L, 3] normalised (u, v, d), or [bs, Nq, L, A, 3] (see `sampling`)
        spatial_shapes: [L, 2] (H, W) or [L, 3] (H, W, D); level_start_index: [L]
        depth_dist: [bs, S, D] or [bs, S, M, D] per-pixel distribution over the depth bins; None: no
                    depth axis (mmcv's 2D attention exactly)
        key_padding_mask: [bs, S] bool, True = padding (value zeroed)
        returns: same layout as query; ``dropout(output_proj(attention)) + identity``
        """
        if reference_points is None or spatial_shapes is None or level_start_index is None:
            raise UsageError("DeformableAttention3D needs reference_points, spatial_shapes and level_start_index")
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
        out = self.sample(query, value, reference_points, spatial_shapes, level_start_index, depth_dist,
                          key_padding_mask, reference_mask)
        if self.output_proj is None:
            return out if self.batch_first else out.permute(1, 0, 2)
        out = self.output_proj(out)
        if not self.batch_first:
            out = out.permute(1, 0, 2)
        return self.dropout(out) + identity
