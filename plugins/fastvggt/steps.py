"""Pipeline step `reconstruct` for ``facet3d batch``: a folder of photos -> what ``facet3d reconstruct``
writes (points.ply, scene.glb, cameras.json, images/, sparse/0/).

A thin adapter over `reconstruct.reconstruct`; the model is loaded once per worker (`setup_reconstruct`,
`reconstruct.load_reconstruction_model`), not once per folder. The summary (returned, and kept in the
batch report) names the files relative to the output folder: the step writes into a temporary folder
that the engine renames into place. `check_reconstruct` imports no torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from facet3d.core.errors import UsageError
from facet3d.core.values import auto_device, check_device

__all__ = ["check_reconstruct", "setup_reconstruct", "reconstruct"]


def check_reconstruct(ckpt: str, merge: float = 0.9, preprocess: str = "crop", conf_percentile: float = 50.0,
                      config: str | None = None, device: str = "cpu", **_: Any) -> None:
    """Refuse parameters that can never work (before any photo is read)."""
    if not Path(str(ckpt)).is_file():
        raise UsageError(f"reconstruct: checkpoint {ckpt} does not exist (the VGGT weights: model.safetensors or "
                         "model.pt of facebook/VGGT-1B, or a file saved by facet3d)")
    if merge is None or not (math.isfinite(merge) and 0.0 <= merge <= 1.0):
        raise UsageError(f"reconstruct: merge {merge}: expected a ratio in [0, 1] (0: plain VGGT)")
    if preprocess not in ("crop", "pad"):
        raise UsageError(f"reconstruct: preprocess '{preprocess}': expected crop or pad")
    if conf_percentile is None or not (math.isfinite(conf_percentile) and 0.0 <= conf_percentile <= 100.0):
        raise UsageError(f"reconstruct: conf_percentile {conf_percentile}: expected a value in [0, 100]")
    check_device(device, "reconstruct: device")


def setup_reconstruct(ckpt: str, config: str | None = None, device: str = "cpu", **_: Any) -> Any:
    """Once per worker: the VGGT of ``ckpt`` on ``device``."""
    from facet3d.plugins.fastvggt.reconstruct import load_reconstruction_model

    return load_reconstruction_model(ckpt, config, device=auto_device(device))


def reconstruct(photos: Path, out_dir: Path, ckpt: str, merge: float = 0.9, preprocess: str = "crop",
                conf_percentile: float = 50.0, config: str | None = None, device: str = "cpu",
                state: Any = None) -> dict[str, Any]:
    """Reconstruct the photos in the folder ``photos`` into ``out_dir`` -> `reconstruct.reconstruct`'s summary,
    with ``written`` relative to the folder (and no ``out``: the batch report has the folder).

    state: the model from `setup_reconstruct` (None: loaded from ``ckpt`` for this call only).
    """
    check_reconstruct(ckpt, merge, preprocess, conf_percentile, config, device)
    from facet3d.plugins.fastvggt.preprocess import expand_image_inputs
    from facet3d.plugins.fastvggt.reconstruct import reconstruct as run

    files = expand_image_inputs([photos])
    out = Path(out_dir)
    summary = run(files, ckpt, out, config=config, merge=merge, preprocess=preprocess, conf_percentile=conf_percentile,
                  device=auto_device(device), model=state)
    del summary["out"]
    summary["written"] = [Path(p).relative_to(out).as_posix() for p in summary["written"]]
    return summary
