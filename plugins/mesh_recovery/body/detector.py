"""The body detector: a CoordFormer-style network (`coordformer`), its map layout (`romp`) and body model.

The network's raw parameter map is activated here: the camera scale ``s = exp(x - 1)`` (positive; about
0.37 at the start, a body some 4-5 m away), everything else as predicted. Checkpoints are safetensors with
a JSON sidecar naming the network config, the body model, the layout's joints and the image size; a file
made for another architecture is refused in one line.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from facet3d.core.errors import CheckpointError

from .romp import ParamLayout, decode_maps

__all__ = ["BodyDetector", "build_detector", "save_detector", "load_detector"]

KIND = "facet3d-body-detector"


class BodyDetector(torch.nn.Module):
    """network + layout + the focal length of its images (`people_data.focal_for`)."""

    def __init__(self, net, layout: ParamLayout, config_name: str, model_name: str) -> None:
        super().__init__()
        from .people_data import focal_for

        self.net, self.layout = net, layout
        self.config_name, self.model_name = config_name, model_name
        self.image_size = net.config.image_size
        self.focal = focal_for(self.image_size)

    def activate(self, raw: Tensor) -> Tensor:
        """Raw parameter maps [..., C, h, w] -> camera scale made positive."""
        s = torch.exp(raw[..., :1, :, :] - 1.0)
        return torch.cat([s, raw[..., 1:, :, :]], -3)

    def forward(self, frames: Tensor, centres: Tensor | None = None) -> dict[str, Tensor]:
        """frames [B, T, 3, H, W] in [0, 1] -> centre_logits [B, T, 1, h, w], params [B, T, C, h, w]
        (activated), centres [B, T, K] (the cells Body Center Attention used)."""
        out = self.net(frames, centres=centres)
        return {**out, "params": self.activate(out["params"])}

    @torch.no_grad()
    def detect(self, frames: Tensor, threshold: float = 0.25) -> list[list[list[dict]]]:
        """frames [B, T, 3, H, W] -> per clip, per frame, the decoded people (`romp.decode_maps`)."""
        was = self.training
        self.eval()
        try:
            out = self(frames)
        finally:
            self.train(was)
        B, T = frames.shape[:2]
        centre = torch.sigmoid(out["centre_logits"]).flatten(0, 1)
        # ROMP suppresses within 5 x 5 cells of its 64 x 64 maps; coarser maps need a narrower window
        kernel = 5 if self.net.config.map_size >= 48 else 3
        people = decode_maps(centre, out["params"].flatten(0, 1), self.layout, threshold,
                             image_size=self.image_size, focal=self.focal, nms_kernel=kernel)
        return [people[b * T:(b + 1) * T] for b in range(B)]


def build_detector(config: str, model, name: str | None = None) -> BodyDetector:
    """A fresh detector for ``model`` (a `BodyModel`) with network config ``config`` (`coordformer.CONFIGS`)."""
    from .coordformer import build_network

    layout = ParamLayout.from_model(model)
    return BodyDetector(build_network(config, layout.channels), layout, config, name or model.name)


def save_detector(det: BodyDetector, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    from facet3d.core.checkpoints import save_with_sidecar

    info = {"kind": KIND, "config_name": det.config_name, "config": asdict(det.net.config),
            "model": det.model_name, "joints": list(det.layout.joints), "num_betas": det.layout.num_betas,
            **dict(meta or {})}
    return save_with_sidecar({k: v.detach().cpu().contiguous() for k, v in det.net.state_dict().items()}, path, info)


def load_detector(path: str | Path, model) -> tuple[BodyDetector, dict]:
    """A trained detector from ``path`` for ``model``; one-line CheckpointError for a missing file, a file
    of another kind, another body model or layout, or tensors that do not fit the named network."""
    from facet3d.core.checkpoints import check_state_dict, load_checkpoint, read_sidecar

    from .coordformer import build_network, resolve_config

    p, info = read_sidecar(path, "body detector")
    if info.get("kind") != KIND:
        raise CheckpointError(f"{p}: not a body detector checkpoint (kind {info.get('kind')!r})")
    if info.get("model") != model.name:
        raise CheckpointError(f"{p}: trained for body model '{info.get('model')}', not '{model.name}'")
    layout = ParamLayout((*info["joints"],), model.num_joints, model.num_betas, model.betas_range)
    if info.get("num_betas") != model.num_betas:
        raise CheckpointError(f"{p}: trained with {info.get('num_betas')} shape values; the model has {model.num_betas}")
    try:
        cfg = resolve_config(info["config"])
    except Exception as exc:  # noqa: BLE001 - any bad config field is a bad sidecar
        raise CheckpointError(f"{p}: bad network config in its sidecar ({exc})") from None
    net = build_network(cfg, layout.channels)
    sd = load_checkpoint(p)
    check_state_dict(net.state_dict(), sd, str(p), "body detector")
    net.load_state_dict(sd)
    return BodyDetector(net, layout, info.get("config_name", "custom"), model.name), info
