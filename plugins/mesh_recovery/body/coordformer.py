"""CoordFormer-style network: single-stage multi-person body-mesh recovery from video clips.

CoordFormer (Li et al., ICCV 2023) keeps ROMP's output format (a centre heatmap and a parameter map on
one grid, read at the centre peaks) and adds two attention stages; no code was released, so this is
written from the paper's description (the body part of ../../../docs/mesh_recovery.md):

    frames [B, T, 3, H, W] -> CNN backbone (per frame, stride H / map_size) -> pixel tokens + (x, y, t)
    coordinate encoding -> Coordinate-Aware Attention (CAA, spatio-temporal) -> centre head
    -> top-k centre cells per frame -> Body Center Attention (BCA, across the clip's frames)
    -> fed into the parameter head at those cells -> parameter map

Backbone: ROMP / CoordFormer use HRNet-W32 (ImageNet-pretrained). Here it is a ResNet-style CNN written
in this file (no timm, no downloaded weights): a stride-4 stem, one BasicBlock stage per HRNet branch
width (strides 4, 8, 16, 32), and HRNetV2's head (every stage resampled to the map grid, concatenated,
1x1 conv). The "paper" config uses HRNet-W32's branch widths 32/64/128/256 in a ResNet-34 layout.

Coordinate-Aware Attention (`CoordinateAwareAttention`): every token is one pixel of the map (no patch
tokens) and carries an encoding of its normalised (x, y, t): Fourier features -> MLP, added to the token
once and to the queries and keys of every layer. Full attention over 64 x 64 x 8 = 32,768 pixels
(1.07e9 logits per head and layer) is out of reach, so each layer attends within a w x w spatial window
*across all T frames of the clip* (8 x 8 x 8 = 512 tokens, 64 windows: 64x fewer logits); odd layers
shift the windows by w/2 (Swin's trick, with zero padding and a key mask instead of a cyclic roll, so
opposite borders never meet), so information crosses window borders from layer to layer. The backbone's
receptive field supplies the rest of the spatial context; time is attended over in full.

Body Center Attention (`BodyCenterAttention`): queries are the features at the K candidate centres of
each frame (top-k of the centre logits, or given centres when training); keys / values are the
(2r+1)^2 neighbourhood of the query's cell in *every* frame of the clip (a person moves little in 8
frames) plus all T x K candidates of the clip (the other people, and the same person in other frames).
The result is projected and added to the parameter head's hidden map at the candidate cells only, so
the parameters read at a centre see the whole clip while every other cell is the per-pixel head.
With T = 1 (image mode) it is self-attention within the frame.

Outputs (ROMP layout): ``centre_logits [B, T, 1, h, w]`` (logits; `CoordFormer.predict` applies the
sigmoid), ``params [B, T, C, h, w]`` with C = ``param_channels`` (3 camera + 6 per predicted joint +
shape count: 145 for ROMP's 22 joints and 10 betas), ``centres [B, T, K]`` (flat cell indices y * w + x
that BCA used).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facet3d.core.errors import UsageError

__all__ = ["CoordFormerConfig", "CONFIGS", "CoordFormer", "CoordinateAwareAttention", "BodyCenterAttention",
           "build_network", "count_parameters", "romp_param_channels"]

_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: frames come in [0, 1]
_STD = (0.229, 0.224, 0.225)


def romp_param_channels(joints: int = 22, betas: int = 10) -> int:
    """Parameter-map channels of ROMP's layout: 3 camera + 6-D rotation per joint + shape (145 by default)."""
    return 3 + 6 * joints + betas


@dataclass(frozen=True)
class CoordFormerConfig:
    """image_size / map_size: input side and heatmap side (stride = image_size // map_size);
    clip_length: frames per clip (T may be smaller; t is normalised by this);
    stem_width, widths, depths: backbone stem and per-stage BasicBlock widths / counts (strides 4..32);
    embed_dim: token width; caa_depth / caa_heads / window / mlp_ratio: Coordinate-Aware Attention
    (caa_depth 0 leaves it out); coord_freqs: Fourier frequencies per coordinate;
    bca_depth / bca_heads / bca_radius / num_centres: Body Center Attention (neighbourhood
    (2r+1)^2, K candidates per frame; bca_depth 0 leaves it out); head_width: hidden width of the heads;
    param_channels: parameter-map channels (the decoder's layout decides it; see `romp_param_channels`)."""

    image_size: int = 512
    map_size: int = 64
    clip_length: int = 8
    stem_width: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    embed_dim: int = 256
    caa_depth: int = 4
    caa_heads: int = 8
    window: int = 8
    mlp_ratio: float = 2.0
    coord_freqs: int = 6
    bca_depth: int = 2
    bca_heads: int = 8
    bca_radius: int = 1
    num_centres: int = 8
    head_width: int = 256
    param_channels: int = 145

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "depths", tuple(self.depths))
        if self.image_size <= 0 or self.map_size <= 0 or self.image_size % self.map_size:
            raise UsageError(f"image_size ({self.image_size}) must be a positive multiple of map_size ({self.map_size})")
        if len(self.widths) != len(self.depths) or not self.widths or min(self.depths) < 1:
            raise UsageError(f"widths {self.widths} and depths {self.depths} need one positive depth per stage")
        for name, dim, heads in (("caa", self.embed_dim, self.caa_heads), ("bca", self.embed_dim, self.bca_heads)):
            if heads < 1 or dim % heads:
                raise UsageError(f"embed_dim ({dim}) must be divisible by {name}_heads ({heads})")
        if min(self.clip_length, self.window, self.num_centres, self.param_channels, self.head_width) < 1:
            raise UsageError("clip_length, window, num_centres, param_channels and head_width must be >= 1")
        if min(self.caa_depth, self.bca_depth, self.bca_radius, self.coord_freqs) < 0:
            raise UsageError("caa_depth, bca_depth, bca_radius and coord_freqs must be >= 0")

    @property
    def stride(self) -> int:
        return self.image_size // self.map_size


CONFIGS: dict[str, CoordFormerConfig] = {
    # the paper's sizes: 512 px, 64 x 64 maps, clips of 8, HRNet-W32 branch widths (ResNet-34 layout)
    "paper": CoordFormerConfig(),
    # a 256 px, 32 x 32 variant for quick experiments on one GPU
    "small": CoordFormerConfig(image_size=256, map_size=32, stem_width=32, depths=(1, 2, 2, 1), embed_dim=128,
                               caa_depth=2, caa_heads=4, coord_freqs=5, bca_depth=1, bca_heads=4, num_centres=4,
                               head_width=128),
    # trains on a CPU: 128 px, 16 x 16 maps
    "tiny": CoordFormerConfig(image_size=128, map_size=16, stem_width=16, widths=(16, 32, 64, 128),
                              depths=(1, 1, 1, 1), embed_dim=64, caa_depth=2, caa_heads=4, window=4, coord_freqs=4,
                              bca_depth=1, bca_heads=4, num_centres=4, head_width=64),
}


def resolve_config(config: str | CoordFormerConfig | Mapping[str, Any]) -> CoordFormerConfig:
    """A `CONFIGS` name, a config, or a dict of fields (missing ones from the paper config)."""
    if isinstance(config, CoordFormerConfig):
        return config
    if isinstance(config, str):
        if config not in CONFIGS:
            raise UsageError(f"unknown CoordFormer config {config!r} (have: {', '.join(CONFIGS)})")
        return CONFIGS[config]
    known = {f.name for f in dataclasses.fields(CoordFormerConfig)}
    unknown = set(config) - known
    if unknown:
        raise UsageError(f"unknown CoordFormer config fields: {', '.join(sorted(unknown))}")
    return CoordFormerConfig(**dict(config))


# ---------------------------------------------------------------------------------------------- backbone
def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet BasicBlock: two 3x3 conv-BN, projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, 3, stride)
        self.conv2 = _conv_bn(c_out, c_out, 3, 1, relu=False)
        self.shortcut = _conv_bn(c_in, c_out, 1, stride, relu=False) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Backbone(nn.Module):
    """Per-frame CNN. images [N, 3, H, W] (normalised) -> features [N, embed_dim, H / stride, W / stride]."""

    def __init__(self, cfg: CoordFormerConfig) -> None:
        super().__init__()
        self.stride = cfg.stride
        self.stem = nn.Sequential(_conv_bn(3, cfg.stem_width, 3, 2), _conv_bn(cfg.stem_width, cfg.stem_width, 3, 2))
        stages, c = [], cfg.stem_width
        for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths)):
            blocks = [BasicBlock(c, width, 1 if i == 0 else 2)] + [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            c = width
        self.stages = nn.ModuleList(stages)
        # HRNetV2-style head: all resolutions meet at the map grid, so coarse context and fine detail both reach it
        self.fuse = _conv_bn(sum(cfg.widths), cfg.embed_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            if x.shape[-2] > size[0]:
                outs.append(F.adaptive_avg_pool2d(x, size))
            elif tuple(x.shape[-2:]) != size:
                outs.append(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
            else:
                outs.append(x)
        return self.fuse(torch.cat(outs, 1))


# ---------------------------------------------------------------------------------------------- coordinates
def pixel_coordinates(T: int, h: int, w: int, clip_length: int, device=None, dtype=torch.float32) -> Tensor:
    """Normalised (x, y, t) of every pixel of a clip's maps: [T, h, w, 3].

    x, y: pixel centres in [-1, 1] ((i + 0.5) / n * 2 - 1); t: centred on the clip and scaled by
    ``clip_length`` (a full clip spans [-1, 1]; a single image has t = 0)."""
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    ts = (torch.arange(T, device=device, dtype=dtype) - (T - 1) / 2) * (2.0 / max(clip_length - 1, 1))
    t, y, x = torch.meshgrid(ts, ys, xs, indexing="ij")
    return torch.stack([x, y, t], -1)


class CoordinateEncoding(nn.Module):
    """coords [..., 3] -> [..., dim]: [c, sin(2^k pi c), cos(2^k pi c)] for k < freqs, then a 2-layer MLP."""

    def __init__(self, dim: int, freqs: int) -> None:
        super().__init__()
        self.register_buffer("bands", (2.0 ** torch.arange(freqs, dtype=torch.float32)) * math.pi, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(3 * (1 + 2 * freqs), dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, coords: Tensor) -> Tensor:
        ang = coords[..., None] * self.bands.to(coords.dtype)                     # [..., 3, freqs]
        feats = torch.cat([coords, ang.sin().flatten(-2), ang.cos().flatten(-2)], -1)
        return self.mlp(feats)


# ---------------------------------------------------------------------------------------------- attention
class Attention(nn.Module):
    """Multi-head attention with separate q / k / v inputs (coordinates go into q and k, not v).

    q [N, Lq, D], k / v [N, Lk, D], key_mask [N, Lk] bool (True = attend) or None -> [N, Lq, D]"""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
        N, Lq, D = q.shape
        M = self.heads

        def split(x: Tensor) -> Tensor:
            return x.view(N, x.shape[1], M, D // M).transpose(1, 2)              # [N, M, L, D/M]

        mask = None if key_mask is None else key_mask[:, None, None, :]
        o = F.scaled_dot_product_attention(split(self.q_proj(q)), split(self.k_proj(k)), split(self.v_proj(v)),
                                           attn_mask=mask)
        return self.out_proj(o.transpose(1, 2).reshape(N, Lq, D))


class _Block(nn.Module):
    """Pre-norm attention + MLP; ``pos`` is added to queries and keys only. ``cross``: keys / values
    come from a separate input (with their own LayerNorm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: bool = False) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None
        self.attn = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, x_pos: Tensor, kv: Tensor | None = None, kv_pos: Tensor | None = None,
                key_mask: Tensor | None = None) -> Tensor:
        q = self.norm_q(x)
        if self.norm_kv is None:  # self-attention
            k, v, kv_pos = q, q, x_pos
        else:
            k = v = self.norm_kv(kv)
        x = x + self.attn(q + x_pos, k + kv_pos, v, key_mask)
        return x + self.mlp(self.norm_mlp(x))


class CoordinateAwareAttention(nn.Module):
    """Pixel-level spatio-temporal attention in w x w windows spanning all T frames (module docstring).

    tokens: Tensor  # [B, T, h, w, D]
    pos: Tensor     # [T, h, w, D] coordinate encoding (added to queries and keys of every layer)
    returns: Tensor # [B, T, h, w, D]
    """

    def __init__(self, dim: int, heads: int, depth: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList([_Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, pos: Tensor) -> Tensor:
        for i, blk in enumerate(self.blocks):
            tokens = self._windowed(blk, tokens, pos, shift=(self.window // 2) * (i % 2))
        return self.norm(tokens)

    def _windowed(self, blk: _Block, x: Tensor, pos: Tensor, shift: int) -> Tensor:
        B, T, H, W, D = x.shape
        w = self.window
        pad_b, pad_r = (-(H + shift)) % w, (-(W + shift)) % w
        pads = (0, 0, shift, pad_r, shift, pad_b)  # (D, W, H) from the last dim
        padded = any(pads)
        if padded:
            x_p, pos_p = F.pad(x, pads), F.pad(pos, pads)
            valid = F.pad(torch.ones(H, W, dtype=torch.bool, device=x.device), pads[2:], value=False)
        else:
            x_p, pos_p, valid = x, pos, None
        Hp, Wp = x_p.shape[2], x_p.shape[3]
        nh, nw = Hp // w, Wp // w
        # windows: [B * nh * nw, T * w * w] tokens (every frame of the clip in one sequence)
        xw = x_p.view(B, T, nh, w, nw, w, D).permute(0, 2, 4, 1, 3, 5, 6).reshape(B * nh * nw, T * w * w, D)
        pw = pos_p.view(T, nh, w, nw, w, D).permute(1, 3, 0, 2, 4, 5).reshape(nh * nw, T * w * w, D)
        pw = pw.repeat(B, 1, 1)
        mask = None
        if valid is not None:
            vw = valid.view(nh, w, nw, w).permute(0, 2, 1, 3).reshape(nh * nw, 1, w * w).expand(-1, T, -1)
            mask = vw.reshape(nh * nw, T * w * w).repeat(B, 1)
        out = blk(xw, pw, key_mask=mask)
        out = out.view(B, nh, nw, T, w, w, D).permute(0, 3, 1, 4, 2, 5, 6).reshape(B, T, Hp, Wp, D)
        return out[:, :, shift:shift + H, shift:shift + W] if padded else out


class BodyCenterAttention(nn.Module):
    """Cross-frame attention from the candidate centres (module docstring).

    tokens: Tensor   # [B, T, h, w, D] CAA output
    pos: Tensor      # [T, h, w, D] coordinate encoding
    centres: Tensor  # [B, T, K] int64 flat cell indices (y * w + x), distinct within a frame
    returns: Tensor  # [B, T, K, out_dim] additions to the parameter head at those cells
    """

    def __init__(self, dim: int, heads: int, depth: int, radius: int, mlp_ratio: float, out_dim: int) -> None:
        super().__init__()
        self.radius = radius
        self.blocks = nn.ModuleList([_Block(dim, heads, mlp_ratio, cross=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, tokens: Tensor, pos: Tensor, centres: Tensor) -> Tensor:
        B, T, H, W, D = tokens.shape
        K = centres.shape[-1]
        r = self.radius
        n = (2 * r + 1) ** 2
        tok = tokens.reshape(B, T, H * W, D)
        pos_b = pos.reshape(1, T, H * W, D).expand(B, -1, -1, -1)

        def gather(src: Tensor, idx: Tensor) -> Tensor:  # src [B, T', HW, D], idx [B, L] -> [B, T', L, D]
            return src.gather(2, idx[:, None, :, None].expand(-1, src.shape[1], -1, D))

        # queries: the candidates, each at its own frame
        own = centres[..., None].expand(-1, -1, -1, D)
        q, q_pos = tok.gather(2, own), pos_b.gather(2, own)                        # [B, T, K, D]
        # keys 1: the (2r+1)^2 cells around each candidate's cell, in every frame of the clip
        d = torch.arange(-r, r + 1, device=centres.device)
        ys = (centres // W)[..., None, None] + d[:, None]                          # [B, T, K, 2r+1, 1]
        xs = (centres % W)[..., None, None] + d[None, :]                           # [B, T, K, 1, 2r+1]
        ys, xs = ys.expand(-1, -1, -1, -1, 2 * r + 1), xs.expand(-1, -1, -1, 2 * r + 1, -1)
        inside = ((ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)).reshape(B, T, K, 1, n)
        flat = (ys.clamp(0, H - 1) * W + xs.clamp(0, W - 1)).reshape(B, T * K * n)
        nb = gather(tok, flat).view(B, T, T, K, n, D).permute(0, 2, 3, 1, 4, 5)   # [B, Tq, K, Tk, n, D]
        nb_pos = gather(pos_b, flat).view(B, T, T, K, n, D).permute(0, 2, 3, 1, 4, 5)
        # keys 2: every candidate of the clip (the other people, the same person in other frames)
        cand = q.reshape(B, 1, T * K, D).expand(B, T * K, -1, -1)
        cand_pos = q_pos.reshape(B, 1, T * K, D).expand(B, T * K, -1, -1)
        kv = torch.cat([nb.reshape(B * T * K, T * n, D), cand.reshape(B * T * K, T * K, D)], 1)
        kv_pos = torch.cat([nb_pos.reshape(B * T * K, T * n, D), cand_pos.reshape(B * T * K, T * K, D)], 1)
        mask = torch.cat([inside.expand(B, T, K, T, n).reshape(B * T * K, T * n),
                          torch.ones(B * T * K, T * K, dtype=torch.bool, device=tokens.device)], 1)
        x, x_pos = q.reshape(B * T * K, 1, D), q_pos.reshape(B * T * K, 1, D)
        for blk in self.blocks:
            x = blk(x, x_pos, kv, kv_pos, key_mask=mask)
        return self.out(self.norm(x)).view(B, T, K, -1)


# ---------------------------------------------------------------------------------------------- network
class CoordFormer(nn.Module):
    """frames [B, T, 3, H, W] in [0, 1] (H, W multiples of the stride; T <= clip_length; T = 1: image mode)
    -> {"centre_logits" [B, T, 1, h, w], "params" [B, T, C, h, w], "centres" [B, T, K]}.

    ``coords`` [T, h, w, 3] replaces the normalised (x, y, t) of the pixels (default `pixel_coordinates`);
    ``centres`` [B, T, K] (flat cell indices, distinct within a frame) replaces the top-k of the centre
    logits as BCA's candidates, e.g. ground-truth centres while training."""

    def __init__(self, config: CoordFormerConfig) -> None:
        super().__init__()
        cfg = self.config = config
        D, hw = cfg.embed_dim, cfg.head_width
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = Backbone(cfg)
        self.coord_encoding = CoordinateEncoding(D, cfg.coord_freqs)
        self.caa = CoordinateAwareAttention(D, cfg.caa_heads, cfg.caa_depth, cfg.window, cfg.mlp_ratio)
        self.centre_head = nn.Sequential(_conv_bn(D, hw, 3), nn.Conv2d(hw, 1, 1))
        # CenterNet's prior: start every cell at p = 0.1, so the heatmap loss is not swamped at the start
        nn.init.constant_(self.centre_head[-1].bias, -math.log((1 - 0.1) / 0.1))
        self.param_stem = _conv_bn(D, hw, 3)
        # 1x1 after the BCA addition: a centre's parameters change only at that cell
        self.param_out = nn.Sequential(nn.Conv2d(hw, hw, 1), nn.ReLU(inplace=True), nn.Conv2d(hw, cfg.param_channels, 1))
        # built last: with the same seed, bca_depth = 0 gives the same weights for everything else
        self.bca = BodyCenterAttention(D, cfg.bca_heads, cfg.bca_depth, cfg.bca_radius, cfg.mlp_ratio, hw) \
            if cfg.bca_depth > 0 else None

    def coordinates(self, T: int, h: int, w: int) -> Tensor:
        """The default coordinates, [T, h, w, 3] (x, y, t)."""
        return pixel_coordinates(T, h, w, self.config.clip_length, self.mean.device, self.mean.dtype)

    def forward(self, frames: Tensor, coords: Tensor | None = None, centres: Tensor | None = None) -> dict[str, Tensor]:
        """frames: Tensor  # [B, T, 3, H, W] -> dict (class docstring)"""
        cfg = self.config
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise UsageError(f"frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")
        B, T, _, H, W = frames.shape
        if H % cfg.stride or W % cfg.stride or T > cfg.clip_length:
            raise UsageError(f"frames {tuple(frames.shape)}: H and W must be multiples of {cfg.stride} and "
                             f"T at most clip_length {cfg.clip_length}")
        h, w = H // cfg.stride, W // cfg.stride
        x = (frames.reshape(B * T, 3, H, W) - self.mean) / self.std
        feat = self.backbone(x)                                                    # [B*T, D, h, w]
        if coords is None:
            coords = self.coordinates(T, h, w)
        elif tuple(coords.shape) != (T, h, w, 3):
            raise UsageError(f"coords must be [T, h, w, 3] = [{T}, {h}, {w}, 3], got {tuple(coords.shape)}")
        pos = self.coord_encoding(coords.to(feat.dtype))                           # [T, h, w, D]
        tokens = feat.view(B, T, -1, h, w).permute(0, 1, 3, 4, 2) + pos            # [B, T, h, w, D]
        tokens = self.caa(tokens, pos)
        fmap = tokens.permute(0, 1, 4, 2, 3).reshape(B * T, -1, h, w)
        centre_logits = self.centre_head(fmap).view(B, T, 1, h, w)
        hidden = self.param_stem(fmap).view(B, T, -1, h * w)                      # [B, T, hw, h*w]
        if centres is None:
            k = min(cfg.num_centres, h * w)
            centres = centre_logits.detach().view(B, T, h * w).topk(k, dim=-1).indices
        elif centres.dim() != 3 or tuple(centres.shape[:2]) != (B, T):
            raise UsageError(f"centres must be [B, T, K] = [{B}, {T}, K] flat cell indices, got {tuple(centres.shape)}")
        centres = centres.long()
        if self.bca is not None:
            add = self.bca(tokens, pos, centres)                                   # [B, T, K, hw]
            idx = centres[:, :, None, :].expand(-1, -1, hidden.shape[2], -1)
            hidden = hidden.scatter_add(3, idx, add.transpose(2, 3))
        params = self.param_out(hidden.view(B * T, -1, h, w)).view(B, T, -1, h, w)
        return {"centre_logits": centre_logits, "params": params, "centres": centres}

    @torch.no_grad()
    def predict(self, frames: Tensor, coords: Tensor | None = None) -> dict[str, Tensor]:
        """Eval-mode forward without gradients; "centre_heatmap" = sigmoid of the logits [B, T, 1, h, w]
        (ROMP's detection threshold is 0.25). The module's train / eval mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            out = self.forward(frames, coords)
        finally:
            self.train(was_training)
        out["centre_heatmap"] = out["centre_logits"].sigmoid()
        return out


def build_network(config_name_or_config: str | CoordFormerConfig | Mapping[str, Any], param_channels: int) -> CoordFormer:
    """A fresh (randomly initialised) CoordFormer from a `CONFIGS` name, a config or a dict of fields;
    ``param_channels`` (the decoder's layout, e.g. `romp_param_channels()`) overrides the config's."""
    cfg = resolve_config(config_name_or_config)
    return CoordFormer(dataclasses.replace(cfg, param_channels=int(param_channels)))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
