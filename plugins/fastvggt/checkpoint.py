"""Loading VGGT weights from a user's file: the official ``model.safetensors`` / ``model.pt`` or a facet3d save.

* Reading goes through `facet3d.core.checkpoints.load_checkpoint` (safetensors, or ``torch.load`` with
  ``weights_only=True``: no pickled code runs).
* The model is built on the meta device and the loaded tensors are assigned into it (``assign=True``),
  so 5 GB of weights are held once, not twice; fp16 / bf16 tensors are converted to float32 one at a
  time (each half-precision tensor is freed as soon as its copy exists).
* Keys must match with ``strict=True``; otherwise a `CheckpointError` names the first missing /
  unexpected keys (or the first shape that differs).
* The architecture: ``config`` (a `model.CONFIGS` name or dict), else the ``facet3d_config`` metadata
  of a facet3d safetensors file, else vggt-1b.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from facet3d.core.checkpoints import load_checkpoint, save_safetensors, state_dict_of
from facet3d.core.errors import CheckpointError
from facet3d.plugins.fastvggt.model import VGGT, build_model, resolve_config

_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _metadata_config(path: Path) -> dict | None:
    if path.suffix != ".safetensors":
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_checkpoint
        return None
    text = meta.get("facet3d_config")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def check_keys(model_keys: Mapping[str, Any], sd: Mapping[str, Any], where: str) -> None:
    """CheckpointError naming the first missing / unexpected keys, or the first differing shape."""
    from facet3d.core.checkpoints import check_state_dict

    check_state_dict(model_keys, sd, where, "this VGGT architecture")


def load_model(path: str | os.PathLike[str], config: str | Mapping[str, Any] | None = None,
               device: str | torch.device = "cpu", **enable: bool) -> VGGT:
    """A VGGT in eval mode, float32, on ``device``, with the weights of ``path`` (module docstring).

    enable: ``enable_track=False`` etc. drop heads (their keys are then ignored in the file).
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file (the VGGT weights: model.safetensors or model.pt of "
                              "facebook/VGGT-1B, or a file saved by facet3d)")
    if not p.is_file():
        raise CheckpointError(f"{p}: is not a file")
    cfg = resolve_config(config if config is not None else (_metadata_config(p) or "vggt-1b"))
    obj = load_checkpoint(p)
    sd = state_dict_of(obj) if not (isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values())) \
        else obj
    del obj
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    model = build_model(cfg, device="meta", **enable)
    own = model.state_dict()
    dropped = [h for h in ("camera_head", "depth_head", "point_head", "track_head") if getattr(model, h) is None]
    sd = {k: v for k, v in sd.items() if k.split(".", 1)[0] not in dropped}
    check_keys(own, sd, str(p))
    for k in list(sd):
        t = sd[k]
        if t.dtype != own[k].dtype:
            if t.dtype not in _FLOATS:
                raise CheckpointError(f"{p}: {k} is stored as {t.dtype}, expected a float tensor")
            sd[k] = t.to(own[k].dtype)
            del t
    model.load_state_dict(sd, strict=True, assign=True)
    del sd
    # buffers that are not in the state dict (the normalisation constants) were created on meta
    agg = model.aggregator
    agg._mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 1, 3, 1, 1)
    agg._std = torch.tensor((0.229, 0.224, 0.225)).view(1, 1, 3, 1, 1)
    return model.to(device).eval()


def save_model(model: VGGT, path: str | os.PathLike[str], dtype: torch.dtype | None = None) -> Path:
    """Save a VGGT as safetensors (official key names; the config in the ``facet3d_config`` metadata)."""
    sd = model.state_dict()
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    return save_safetensors(sd, path, metadata={"facet3d_config": model.config, "format": "vggt"})
