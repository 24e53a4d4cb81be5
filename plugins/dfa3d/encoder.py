"""A small multi-camera lifting encoder (BEVFormer's spatial encoder with DFA3D) and its checkpoints.

``LiftingEncoder``: images -> a small convolutional stem (L levels) -> per-pixel depth distributions
(`DepthNet`, or given ones) -> ``num_layers`` x [spatial cross-attention (DFA3D) -> LayerNorm ->
FFN -> LayerNorm] on learned BEV queries -> BEV features ``[bs, bev_h * bev_w, C]`` (row-major,
row = y index). No temporal self-attention (single frame).

Checkpoints: ``MODEL.safetensors`` (state dict, via core `save_safetensors`) + ``MODEL.json`` sidecar
``{"format": "facet3d.dfa3d-encoder", "config": {...}, ...}``; loaded with core `load_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from facet3d.core.errors import CheckpointError, UsageError
from facet3d.plugins.dfa3d.depth import DepthNet, flatten_levels
from facet3d.plugins.dfa3d.spatial_cross_attention import SpatialCrossAttention, pillar_points

__all__ = ["CONFIGS", "LiftingEncoder", "build_encoder", "save_encoder", "load_encoder"]

SIDE_FORMAT = "facet3d.dfa3d-encoder"

_BASE = dict(image_channels=3, embed_dims=256, num_heads=8, num_levels=4, num_points=8, num_anchors=4,
             num_depth_bins=112, depth_range=[2.0, 58.0], bev_h=200, bev_w=200, num_layers=6, ffn_dims=512,
             pc_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0], dropout=0.1, depth_mid_channels=None)
CONFIGS: dict[str, dict[str, Any]] = {
    # the reference sizes of BEVFormer-base + DFA3D (dfa3d.md), with the small stem instead of ResNet-101
    "base": dict(_BASE),
    # "small" of the reference: 1 level, BEV 150 x 150, 3 layers
    "small": dict(_BASE, num_levels=1, bev_h=150, bev_w=150, num_layers=3),
    # for tests and CPU experiments
    "tiny": dict(_BASE, embed_dims=32, num_heads=2, num_levels=1, num_points=4, num_anchors=2, num_depth_bins=16,
                 depth_range=[1.0, 17.0], bev_h=8, bev_w=8, num_layers=2, ffn_dims=64,
                 pc_range=[-8.0, -8.0, -2.0, 8.0, 8.0, 2.0], dropout=0.0, depth_mid_channels=16),
}


class ImageStem(nn.Module):
    """Stride-2 conv + BN + ReLU blocks; level l is the output after block 3 + l (strides 8, 16, 32, 64)."""

    def __init__(self, in_channels: int, channels: int, num_levels: int) -> None:
        super().__init__()
        widths = [max(channels // 4, 8), max(channels // 2, 8)] + [channels] * (num_levels + 1)
        blocks, c = [], in_channels
        for w in widths[: 2 + num_levels]:
            blocks.append(nn.Sequential(nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)))
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.num_levels = num_levels

    def forward(self, x: Tensor) -> list[Tensor]:  # [B, 3, H, W] -> L x [B, C, H_l, W_l]
        levels = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i >= 2:
                levels.append(x)
        return levels


class EncoderLayer(nn.Module):
    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        C = cfg["embed_dims"]
        self.cross_attn = SpatialCrossAttention(C, cfg["num_heads"], cfg["num_levels"], cfg["num_points"],
                                                cfg["num_depth_bins"], cfg["depth_range"], cfg["num_anchors"], cfg["dropout"])
        self.norm1 = nn.LayerNorm(C)
        self.ffn = nn.Sequential(nn.Linear(C, cfg["ffn_dims"]), nn.ReLU(inplace=True), nn.Dropout(cfg["dropout"]),
                                 nn.Linear(cfg["ffn_dims"], C), nn.Dropout(cfg["dropout"]))
        self.norm2 = nn.LayerNorm(C)

    def forward(self, query, value, ref, cameras, shapes, starts, dist, query_pos):
        x = self.norm1(self.cross_attn(query, value, ref, cameras, shapes, starts, dist, query_pos=query_pos))
        return self.norm2(x + self.ffn(x))


class LiftingEncoder(nn.Module):
    """Multi-camera images (+ cameras) -> BEV features (module docstring). ``config``: the build dict."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = dict(_BASE)
        unknown = set(config) - set(cfg)
        if unknown:
            raise UsageError(f"unknown LiftingEncoder options: {', '.join(sorted(unknown))}")
        cfg.update(config)
        cfg["depth_range"] = [float(v) for v in cfg["depth_range"]]
        cfg["pc_range"] = [float(v) for v in cfg["pc_range"]]
        self.config = cfg
        C = cfg["embed_dims"]
        self.stem = ImageStem(cfg["image_channels"], C, cfg["num_levels"])
        self.depth_net = DepthNet(C, cfg["num_depth_bins"], cfg["depth_mid_channels"] or C)
        self.level_embed = nn.Parameter(torch.zeros(cfg["num_levels"], C))
        self.bev_queries = nn.Embedding(cfg["bev_h"] * cfg["bev_w"], C)
        self.bev_pos = nn.Embedding(cfg["bev_h"] * cfg["bev_w"], C)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg["num_layers"]))
        nn.init.normal_(self.level_embed, std=0.02)
        self.register_buffer("pillars", pillar_points(cfg["bev_h"], cfg["bev_w"], cfg["pc_range"], cfg["num_anchors"]),
                             persistent=False)

    def image_features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """images [bs, Ncam, 3, H, W] -> value [bs, Ncam, S, C], learned depth [bs, Ncam, S, D],
        spatial_shapes [L, 2], level_start_index [L]."""
        bs, ncam = images.shape[:2]
        levels = self.stem(images.flatten(0, 1))
        feats = [(f.permute(0, 2, 3, 1) + self.level_embed[i]) for i, f in enumerate(levels)]
        value, shapes, starts = flatten_levels(feats)
        dist, _, _ = flatten_levels([self.depth_net(f) for f in levels])
        return (value.view(bs, ncam, *value.shape[1:]), dist.view(bs, ncam, *dist.shape[1:]), shapes, starts)

    def forward(self, images: Tensor, cameras, depth_dist: Tensor | None = None) -> Tensor:
        """images: [bs, Ncam, 3, H, W]; cameras: core `Cameras` of the Ncam views at image size H x W
        (shared by the batch) or a list of bs; depth_dist: optional given [bs, Ncam, S, D] replacing
        the learned one (e.g. from lidar, `depth_to_distribution` per level).
        returns BEV features [bs, bev_h * bev_w, C]."""
        value, learned, shapes, starts = self.image_features(images)
        dist = learned if depth_dist is None else depth_dist
        bs = images.shape[0]
        query = self.bev_queries.weight[None].expand(bs, -1, -1)
        pos = self.bev_pos.weight[None].expand(bs, -1, -1)
        ref = self.pillars.to(images.dtype)
        x = query
        for layer in self.layers:
            x = layer(x, value, ref, cameras, shapes, starts, dist, pos)
        return x


def build_encoder(config: str | Mapping[str, Any] = "tiny", **overrides: Any) -> LiftingEncoder:
    """A `LiftingEncoder` from a named config (`CONFIGS`) or a config dict, with overrides."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise UsageError(f"unknown lifting encoder config '{config}' (known: {', '.join(CONFIGS)})")
        cfg = dict(CONFIGS[config])
    else:
        cfg = dict(config)
    cfg.update(overrides)
    return LiftingEncoder(**cfg)


def save_encoder(model: LiftingEncoder, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> Path:
    """``path`` (.safetensors) + ``.json`` sidecar (config and ``meta``), each written atomically."""
    from facet3d.core.checkpoints import save_with_sidecar

    cfg = getattr(model, "config", None)
    if cfg is None:
        raise CheckpointError("save_encoder needs a LiftingEncoder (it has no .config)")
    info: dict[str, Any] = dict(meta or {})
    info.update(format=SIDE_FORMAT, config=cfg)
    return save_with_sidecar(model.state_dict(), path, info, metadata={"format": SIDE_FORMAT, "config": cfg})


def load_encoder(path: str | os.PathLike[str]) -> tuple[LiftingEncoder, dict[str, Any]]:
    """Load a checkpoint written by `save_encoder`; returns (model in eval mode, sidecar meta).

    CheckpointError (one line) when the file, its sidecar or the tensors do not match."""
    from facet3d.core.checkpoints import check_state_dict, load_checkpoint, read_sidecar, sidecar_of

    p, info = read_sidecar(path, "lifting encoder")
    side, cfg = sidecar_of(p), info["config"]
    if info.get("format") != SIDE_FORMAT:
        raise CheckpointError(f"{side}: format {info.get('format')!r}, expected {SIDE_FORMAT!r}")
    try:
        model = build_encoder(cfg)
    except (UsageError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{side}: config does not build an encoder ({exc})") from None
    sd = load_checkpoint(p)
    check_state_dict(model.state_dict(), sd, str(p), "this lifting encoder config")
    model.load_state_dict(sd, strict=True)
    return model.eval(), {k: v for k, v in info.items() if k != "config"} | {"config": cfg}


def load_encoder_model(path: str | os.PathLike[str]) -> LiftingEncoder:
    """`ModelSpec.load_checkpoint`: the model only."""
    return load_encoder(path)[0]


def config_names() -> Sequence[str]:
    return tuple(CONFIGS)
