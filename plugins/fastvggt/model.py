"""VGGT (Wang et al., CVPR 2025) with the official parameter names, named configs, and the forward pass.

``VGGT(**CONFIGS["vggt-1b"])`` has exactly the 1,797 keys / 1,256,537,516 parameters of facebook/VGGT-1B.
`VGGT.forward` runs the aggregator (keeping only the layers the heads read), then the heads in float32
outside autocast, as upstream does; ``merging`` turns on FastVGGT token merging in the global blocks.
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from facet3d.plugins.fastvggt.aggregator import Aggregator
from facet3d.plugins.fastvggt.head_camera import CameraHead
from facet3d.plugins.fastvggt.head_track import TrackHead
from facet3d.plugins.fastvggt.heads_dpt import DPTHead

_FULL: dict[str, Any] = dict(
    img_size=518, patch_size=14, embed_dim=1024, depth=24, num_heads=16, dino_depth=24, dino_heads=16,
    dpt_layers=(4, 11, 17, 23), dpt_features=256, dpt_channels=(256, 512, 1024, 1024),
    camera_depth=4, camera_heads=16, track_features=128, track_hidden=384, track_depth=6, track_heads=8,
    track_virtual=64,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "vggt-1b": dict(_FULL),
    # reduced depth, full widths: the CPU benchmark's aggregator is this with smaller sizes (see bench.py)
    "vggt-1b-depth4": dict(_FULL, depth=4, dino_depth=2, dpt_layers=(0, 1, 2, 3)),
    # CPU benchmark: 4 heads of 64 (head size as VGGT-1B), 256 wide, 2 + 2 blocks
    "bench-cpu": dict(_FULL, embed_dim=256, num_heads=4, depth=2, dino_depth=1, dino_heads=4, dpt_layers=(0, 0, 1, 1),
                      dpt_features=32, dpt_channels=(32, 32, 64, 64), camera_depth=1, camera_heads=4,
                      track_features=16, track_hidden=32, track_depth=1, track_heads=2, track_virtual=4),
    # tests: tiny widths, 4 + 4 blocks, 56-pixel position grid
    "tiny": dict(img_size=56, patch_size=14, embed_dim=32, depth=4, num_heads=2, dino_depth=1, dino_heads=2,
                 dpt_layers=(0, 1, 2, 3), dpt_features=16, dpt_channels=(8, 16, 32, 32), camera_depth=1,
                 camera_heads=2, track_features=8, track_hidden=16, track_depth=1, track_heads=2, track_virtual=4),
}


def resolve_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """A config name (a key of `CONFIGS`) or a dict (missing keys from vggt-1b) -> the full config dict."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise KeyError(f"unknown VGGT config {config!r} (known: {', '.join(CONFIGS)})")
        return dict(CONFIGS[config])
    unknown = set(config) - set(_FULL)
    if unknown:
        raise KeyError(f"unknown VGGT config keys: {', '.join(sorted(unknown))}")
    return {**_FULL, **dict(config)}


class VGGT(nn.Module):
    """images ``[B, S, 3, H, W]`` (or ``[S, 3, H, W]``) in [0, 1], H and W multiples of the patch size.

    forward -> {"pose_enc" [B, S, 9], "pose_enc_list", "depth" [B, S, H, W, 1], "depth_conf" [B, S, H, W],
    "world_points" [B, S, H, W, 3], "world_points_conf" [B, S, H, W], "images"}, plus "track"
    [B, S, N, 2], "vis", "conf" [B, S, N] when ``query_points [B, N, 2]`` (pixels of frame 0) are given.
    """

    def __init__(self, enable_camera: bool = True, enable_depth: bool = True, enable_point: bool = True,
                 enable_track: bool = True, **config: Any) -> None:
        super().__init__()
        c = resolve_config(config)
        self.config = c
        d2 = 2 * c["embed_dim"]
        self.aggregator = Aggregator(c["img_size"], c["patch_size"], c["embed_dim"], c["depth"], c["num_heads"],
                                     dino_depth=c["dino_depth"], dino_heads=c["dino_heads"])
        dpt = dict(patch_size=c["patch_size"], features=c["dpt_features"], out_channels=c["dpt_channels"],
                   intermediate_layer_idx=c["dpt_layers"])
        self.camera_head = CameraHead(d2, c["camera_depth"], c["camera_heads"]) if enable_camera else None
        self.point_head = DPTHead(d2, output_dim=4, activation="inv_log", **dpt) if enable_point else None
        self.depth_head = DPTHead(d2, output_dim=2, activation="exp", **dpt) if enable_depth else None
        self.track_head = TrackHead(d2, c["patch_size"], features=c["track_features"],
                                    intermediate_layer_idx=c["dpt_layers"], out_channels=c["dpt_channels"],
                                    hidden_size=c["track_hidden"], depth=c["track_depth"], num_heads=c["track_heads"],
                                    num_virtual_tracks=c["track_virtual"]) if enable_track else None

    @property
    def kept_layers(self) -> list[int]:
        """The aggregator layers some head reads (upstream keeps all of them)."""
        depth = self.config["depth"]
        keep = {depth - 1} if self.camera_head is not None else set()
        if any(h is not None for h in (self.depth_head, self.point_head, self.track_head)):
            keep |= {i % depth for i in self.config["dpt_layers"]}
        return sorted(keep)

    def forward(self, images: Tensor, query_points: Tensor | None = None, merging: Any = None,
                autocast_dtype: torch.dtype | None = None, frames_chunk_size: int | None = 8,
                progress: Any = None) -> dict[str, Tensor]:
        """``autocast_dtype`` (bf16 / fp16): the aggregator under autocast on that device (None: as given);
        heads always run in float32.  ``progress(stage)``: called with "aggregator", "camera", "depth", ...
        ``frames_chunk_size``: frames per DPT head chunk (None: all at once)."""
        if images.ndim == 4:
            images = images[None]
        if query_points is not None and query_points.ndim == 2:
            query_points = query_points[None]
        say = progress or (lambda stage: None)
        say("aggregator")
        ctx = (torch.autocast(images.device.type, dtype=autocast_dtype) if autocast_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            tokens, psi = self.aggregator(images, keep=self.kept_layers, merging=merging)
        tokens = {k: v.float() for k, v in tokens.items()}
        last = tokens[self.config["depth"] - 1] if self.camera_head is not None else None
        preds: dict[str, Tensor] = {}
        off = torch.autocast(images.device.type, enabled=False)
        with off:
            images32 = images.float()
            if self.camera_head is not None:
                say("camera")
                pl = self.camera_head(last)
                preds["pose_enc"], preds["pose_enc_list"] = pl[-1], pl
            if self.depth_head is not None:
                say("depth")
                preds["depth"], preds["depth_conf"] = self.depth_head(tokens, images32, psi, frames_chunk_size)
            if self.point_head is not None:
                say("points")
                preds["world_points"], preds["world_points_conf"] = self.point_head(tokens, images32, psi,
                                                                                    frames_chunk_size)
            if self.track_head is not None and query_points is not None:
                say("tracks")
                tl, vis, conf = self.track_head(tokens, images32, psi, query_points.float())
                preds["track"], preds["vis"], preds["conf"] = tl[-1], vis, conf
        preds["images"] = images
        return preds


def build_model(config: str | Mapping[str, Any] = "vggt-1b", device: Any = None, **enable: bool) -> VGGT:
    """A VGGT of ``config`` (name or dict), in eval mode; ``device="meta"`` builds it without memory."""
    cfg = resolve_config(config)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = VGGT(**enable, **cfg)
    return model.eval()


def parameter_count(config: str | Mapping[str, Any] = "vggt-1b") -> int:
    """Parameters of a config, counted on the meta device (no memory)."""
    return sum(p.numel() for p in build_model(config, device="meta").parameters())
