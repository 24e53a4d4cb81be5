"""Posing a body model from smplx-style parameters (``facet3d body pose``).

PARAMS (JSON): ``betas`` [S], ``global_orient`` [3], ``body_pose`` [3(J-1)] axis-angle, ``transl`` [3];
every key optional (zeros), a leading batch of 1 accepted (smplx's own output shape).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import InputError, UsageError

__all__ = ["PARAM_KEYS", "read_params", "pose_body"]

PARAM_KEYS = ("betas", "global_orient", "body_pose", "transl")


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """The parameters of a PARAMS.json, as float64 vectors; unknown keys and bad values refused."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such parameters file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a JSON object with {', '.join(PARAM_KEYS)}")
    unknown = sorted(set(data) - set(PARAM_KEYS))
    if unknown:
        raise InputError(f"{p}: unknown key(s) {', '.join(unknown)} (smplx names: {', '.join(PARAM_KEYS)})")
    out: dict[str, np.ndarray] = {}
    for key, value in data.items():
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{p}: {key} must be a list of numbers") from None
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1 or not all(math.isfinite(v) for v in arr):
            raise InputError(f"{p}: {key} must be a flat list of finite numbers, got shape {list(arr.shape)}")
        out[key] = arr
    for key, n in (("global_orient", 3), ("transl", 3)):
        if key in out and out[key].shape[0] != n:
            raise InputError(f"{p}: {key} needs {n} numbers, got {out[key].shape[0]}")
    return out


def pose_body(body: Any, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V, 3], joints [J, 3]) of a `BodyModel` posed by ``params`` (float64 numpy)."""
    import torch

    like = dict(dtype=body.dtype, device=body.device)
    t = {k: torch.as_tensor(v, **like)[None] for k, v in params.items()}
    if "body_pose" in t and t["body_pose"].shape[1] != 3 * (body.num_joints - 1):
        raise UsageError(f"body_pose needs {3 * (body.num_joints - 1)} numbers for this model "
                         f"({body.num_joints - 1} joints x 3), got {t['body_pose'].shape[1]}")
    if "betas" in t and t["betas"].shape[1] > body.num_betas:
        raise UsageError(f"{t['betas'].shape[1]} betas given; the model has {body.num_betas}")
    with torch.no_grad():
        out = body(**t)
    return out.vertices[0].double().cpu().numpy(), out.joints[0].double().cpu().numpy()
