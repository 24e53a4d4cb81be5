"""The VGGT track head: DPT features at half resolution + an iterative point tracker (CoTracker-style).

forward(tokens, images [B, S, 3, H, W], patch_start_idx, query_points [B, N, 2] pixels in frame 0) ->
(tracks: ``iters`` x ``[B, S, N, 2]`` pixels, visibility ``[B, S, N]``, confidence ``[B, S, N]``).
The tracker samples a correlation pyramid around each current estimate, and a transformer that
alternates attention over time and over points (through 64 virtual tracks) predicts coordinate and
feature updates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facet3d.plugins.fastvggt.heads_dpt import DPTHead
from facet3d.plugins.fastvggt.layers import Mlp


def bilinear_sampler(x: Tensor, coords: Tensor, padding_mode: str = "border") -> Tensor:
    """``grid_sample`` with pixel coordinates (x, y), align_corners: ``x [B, C, H, W]``, ``coords [B, h, w, 2]``."""
    H, W = x.shape[-2:]
    scale = torch.tensor([2 / max(W - 1, 1), 2 / max(H - 1, 1)], device=x.device, dtype=x.dtype)
    grid = coords.detach().to(x.device, x.dtype) * scale - 1
    return F.grid_sample(x, grid, align_corners=True, padding_mode=padding_mode)


def sample_features(x: Tensor, coords: Tensor) -> Tensor:
    """``x [B, C, H, W]``, ``coords [B, R, 2]`` -> ``[B, R, C]``."""
    f = bilinear_sampler(x, coords[:, :, None])  # [B, C, R, 1]
    return f.permute(0, 2, 1, 3).reshape(x.shape[0], -1, f.shape[1] * f.shape[3])


def sincos_grid(dim: int, h: int, w: int) -> Tensor:
    """``[1, dim, h, w]``: half the channels encode x, half y (sin, cos; base 10000)."""
    gy, gx = torch.arange(h, dtype=torch.float), torch.arange(w, dtype=torch.float)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=0).reshape(2, 1, h, w)

    def one(d: int, pos: Tensor) -> Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.double) / (d / 2.0))
        out = torch.outer(pos.reshape(-1).double(), omega)
        return torch.cat([out.sin(), out.cos()], dim=1)[None].float()

    emb = torch.cat([one(dim // 2, grid[0]), one(dim // 2, grid[1])], dim=2)
    return emb.reshape(1, h, w, -1).permute(0, 3, 1, 2)


def flow_embedding(xy: Tensor, C: int) -> Tensor:
    """``xy [B, N, 2]`` -> ``[B, N, 2C]`` interleaved sin/cos of x, then of y."""
    B, N, _ = xy.shape
    div = (torch.arange(0, C, 2, device=xy.device, dtype=torch.float32) * (1000.0 / C)).reshape(1, 1, C // 2)
    out = []
    for v in (xy[..., 0:1], xy[..., 1:2]):
        pe = torch.zeros(B, N, C, device=xy.device, dtype=torch.float32)
        pe[..., 0::2], pe[..., 1::2] = torch.sin(v * div), torch.cos(v * div)
        out.append(pe)
    return torch.cat(out, dim=2)


class AttnBlock(nn.Module):
    """``x = norm1(x); x = x + attn(x); x + mlp(norm2(x))`` (upstream's residual is on the normed input)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1, self.norm_context, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.cross_attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = self.norm1(x)
        c = self.norm_context(context)
        x = x + self.cross_attn(x, c, c, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class EfficientUpdateFormer(nn.Module):
    """``[B, N, T, in] -> [B, N, T, out]``: time attention blocks, and point <-> virtual-track attention."""

    def __init__(self, depth: int = 6, input_dim: int = 388, hidden_size: int = 384, num_heads: int = 8,
                 output_dim: int = 130, mlp_ratio: float = 4.0, num_virtual_tracks: int = 64) -> None:
        super().__init__()
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        self.num_virtual_tracks = num_virtual_tracks
        self.virual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))  # upstream's spelling
        self.time_blocks = nn.ModuleList([AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.space_virtual_blocks = nn.ModuleList([AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.space_point2virtual_blocks = nn.ModuleList([CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.space_virtual2point_blocks = nn.ModuleList([CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.input_transform(self.input_norm(x))
        init = tokens
        B, _, T, _ = tokens.shape
        tokens = torch.cat([tokens, self.virual_tracks.repeat(B, 1, T, 1)], dim=1)
        N = tokens.shape[1]
        nv = self.num_virtual_tracks
        every = len(self.time_blocks) // len(self.space_virtual_blocks)
        j = 0
        for i, blk in enumerate(self.time_blocks):
            tokens = blk(tokens.contiguous().view(B * N, T, -1)).view(B, N, T, -1)
            if i % every == 0:
                space = tokens.permute(0, 2, 1, 3).contiguous().view(B * T, N, -1)
                points, virtual = space[:, :N - nv], space[:, N - nv:]
                virtual = self.space_virtual2point_blocks[j](virtual, points)
                virtual = self.space_virtual_blocks[j](virtual)
                points = self.space_point2virtual_blocks[j](points, virtual)
                tokens = torch.cat([points, virtual], dim=1).view(B, T, N, -1).permute(0, 2, 1, 3)
                j += 1
        tokens = tokens[:, :N - nv] + init
        return self.flow_head(self.output_norm(tokens))


class CorrBlock:
    """Correlation pyramid of ``fmaps [B, S, C, H, W]`` (avg-pooled levels), sampled in a (2r+1)^2 window."""

    def __init__(self, fmaps: Tensor, num_levels: int = 4, radius: int = 4) -> None:
        self.radius = radius
        self.pyramid = [fmaps]
        cur = fmaps
        for _ in range(num_levels - 1):
            B, S, C, H, W = cur.shape
            cur = F.avg_pool2d(cur.reshape(B * S, C, H, W), 2, stride=2)
            cur = cur.reshape(B, S, C, *cur.shape[-2:])
            self.pyramid.append(cur)
        r = torch.linspace(-radius, radius, 2 * radius + 1, device=fmaps.device, dtype=fmaps.dtype)
        self.delta = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1)  # [2r+1, 2r+1, 2]

    def sample(self, targets: Tensor, coords: Tensor) -> Tensor:
        """targets ``[B, S, N, C]``, coords ``[B, S, N, 2]`` -> ``[B, S, N, levels * (2r+1)^2]``."""
        B, S, N, C = targets.shape
        k = 2 * self.radius + 1
        out = []
        for i, fm in enumerate(self.pyramid):
            _, _, _, H, W = fm.shape
            corr = torch.matmul(targets, fm.view(B, S, C, H * W)) / math.sqrt(C)  # [B, S, N, H*W]
            centre = coords.reshape(B * S * N, 1, 1, 2) / (2 ** i)
            grid = centre + self.delta.to(coords.device, coords.dtype).view(1, k, k, 2)
            out.append(bilinear_sampler(corr.reshape(B * S * N, 1, H, W), grid, padding_mode="zeros").view(B, S, N, -1))
        return torch.cat(out, dim=-1).contiguous()


class BaseTrackerPredictor(nn.Module):
    def __init__(self, stride: int = 2, corr_levels: int = 7, corr_radius: int = 4, latent_dim: int = 128,
                 hidden_size: int = 384, depth: int = 6, max_scale: int = 518, num_heads: int = 8,
                 num_virtual_tracks: int = 64) -> None:
        super().__init__()
        self.stride, self.latent_dim, self.corr_levels, self.corr_radius = stride, latent_dim, corr_levels, corr_radius
        self.max_scale = max_scale
        self.flows_emb_dim = latent_dim // 2
        self.corr_mlp = Mlp(corr_levels * (corr_radius * 2 + 1) ** 2, hidden_size, latent_dim)
        self.transformer_dim = latent_dim * 3 + 4
        self.query_ref_token = nn.Parameter(torch.randn(1, 2, self.transformer_dim))
        self.updateformer = EfficientUpdateFormer(depth, self.transformer_dim, hidden_size, num_heads,
                                                  latent_dim + 2, 4.0, num_virtual_tracks)
        self.fmap_norm = nn.LayerNorm(latent_dim)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1))

    def forward(self, query_points: Tensor, fmaps: Tensor, iters: int = 4) -> tuple[list[Tensor], Tensor, Tensor]:
        B, N, _ = query_points.shape
        _, S, C, HH, WW = fmaps.shape
        L = self.latent_dim
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        q = query_points / float(self.stride)
        coords = q.reshape(B, 1, N, 2).repeat(1, S, 1, 1)  # [B, S, N, 2]
        track_feats = sample_features(fmaps[:, 0], coords[:, 0]).unsqueeze(1).repeat(1, S, 1, 1)  # [B, S, N, L]
        first = coords[:, 0].clone()
        corr = CorrBlock(fmaps, self.corr_levels, self.corr_radius)
        pos = sample_features(sincos_grid(self.transformer_dim, HH, WW).to(q.device).expand(B, -1, -1, -1), first)
        pos = pos.reshape(B * N, 1, -1)
        ref = torch.cat([self.query_ref_token[:, :1], self.query_ref_token[:, 1:2].expand(-1, S - 1, -1)], dim=1)
        preds = []
        for _ in range(iters):
            coords = coords.detach()
            fc = corr.sample(track_feats, coords)
            fc = self.corr_mlp(fc.permute(0, 2, 1, 3).reshape(B * N, S, -1))
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            femb = torch.cat([flow_embedding(flows, self.flows_emb_dim), flows / self.max_scale,
                              flows / self.max_scale], dim=-1)
            tf = track_feats.permute(0, 2, 1, 3).reshape(B * N, S, L)
            x = torch.cat([femb, fc, tf], dim=2) + pos + ref.to(fc.dtype)
            delta = self.updateformer(x.reshape(B, N, S, -1)).reshape(B * N, S, -1)
            tf = tf.reshape(-1, L)
            tf = self.ffeat_updater(self.ffeat_norm(delta[..., 2:].reshape(-1, L))) + tf
            track_feats = tf.reshape(B, N, S, L).permute(0, 2, 1, 3)
            coords = coords + delta[..., :2].reshape(B, N, S, 2).permute(0, 2, 1, 3)
            coords[:, 0] = first
            preds.append(coords * self.stride)
        flat = track_feats.reshape(B * S * N, L)
        vis = torch.sigmoid(self.vis_predictor(flat).reshape(B, S, N))
        conf = torch.sigmoid(self.conf_predictor(flat).reshape(B, S, N))
        return preds, vis, conf


class TrackHead(nn.Module):
    def __init__(self, dim_in: int, patch_size: int = 14, features: int = 128, iters: int = 4,
                 intermediate_layer_idx=(4, 11, 17, 23), out_channels=(256, 512, 1024, 1024),
                 hidden_size: int = 384, depth: int = 6, num_heads: int = 8, num_virtual_tracks: int = 64) -> None:
        super().__init__()
        self.feature_extractor = DPTHead(dim_in, patch_size, features=features, out_channels=out_channels,
                                         intermediate_layer_idx=intermediate_layer_idx, feature_only=True,
                                         down_ratio=2, pos_embed=False)
        self.tracker = BaseTrackerPredictor(stride=2, corr_levels=7, corr_radius=4, latent_dim=features,
                                            hidden_size=hidden_size, depth=depth, num_heads=num_heads,
                                            num_virtual_tracks=num_virtual_tracks)
        self.iters = iters

    def forward(self, tokens: dict[int, Tensor], images: Tensor, patch_start_idx: int, query_points: Tensor,
                iters: int | None = None):
        fmaps = self.feature_extractor(tokens, images, patch_start_idx)  # [B, S, C, H/2, W/2]
        return self.tracker(query_points, fmaps, iters or self.iters)
