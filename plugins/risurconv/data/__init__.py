"""RISurConv datasets: one entry point, `open_dataset`, over every supported layout.

Every dataset is preprocessed once (cached, see `cache`) into a `PointDataset` of
``(xyz [N,3] float32, normals [N,3] float32, label)`` items (+ ``parts [N]`` for segmentation,
where ``label`` is the category), points in the unit sphere and unit, consistently oriented
normals. ``augment=True`` applies the official training augmentation on the fly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facet3d.core.errors import UsageError
from facet3d.core.progress import LogFn, ProgressFn

from .common import PointDataset

CLS_FORMATS = ("modelnet40", "modelnet-off", "scanobjectnn", "folder", "synthetic")
SEG_FORMATS = ("shapenet-part", "synthetic")
FORMATS = ("modelnet40", "modelnet-off", "scanobjectnn", "shapenet-part", "folder", "synthetic")

__all__ = ["open_dataset", "PointDataset", "FORMATS", "CLS_FORMATS", "SEG_FORMATS"]


def open_dataset(data_dir: str | Path | None, format: str, split: str = "train", num_points: int = 1024,
                 task: str = "classification", augment: bool = False, cache_dir: str | Path | None = None,
                 use_cache: bool = True, workers: int = 0, seed: int = 0, progress: ProgressFn | None = None,
                 log: LogFn | None = None, **options: Any) -> PointDataset:
    """Open one split of a dataset.

    data_dir:   the dataset folder (ignored by ``synthetic``)
    format:     one of `FORMATS`
    split:      ``train`` / ``test`` (``shapenet-part``: also ``val``, ``trainval``; ``folder`` and
                ``modelnet-off``: also ``all``). ``train`` means ``trainval`` for shapenet-part.
    task:       ``classification`` or ``segmentation`` (shapenet-part / synthetic)
    options:    ``variant`` (scanobjectnn: PB_T50_RS / OBJ_BG / OBJ_ONLY), ``sample`` (modelnet40:
                first / fps), ``samples_per_class`` and ``rotate`` (synthetic)
    progress, log: preprocessing reports and skipped-file warnings (`facet3d.core.progress`)
    """
    fmt = format.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown dataset format '{format}' (have: {', '.join(FORMATS)})")
    allowed = SEG_FORMATS if task == "segmentation" else CLS_FORMATS
    if fmt not in allowed:
        raise UsageError(f"format '{fmt}' has no {task} labels (for {task} use: {', '.join(allowed)})")
    if fmt != "synthetic" and data_dir is None:
        raise UsageError(f"format '{fmt}' needs --data DIR")
    common = dict(cache_dir=cache_dir, use_cache=use_cache, workers=workers, progress=progress, log=log)
    if fmt == "modelnet40":
        from .modelnet import load_resampled

        ds = load_resampled(data_dir, split, num_points, sample=options.get("sample", "first"), **common)
    elif fmt == "modelnet-off":
        from .modelnet import load_off

        ds = load_off(data_dir, split, num_points, **common)
    elif fmt == "scanobjectnn":
        from .scanobjectnn import load

        ds = load(data_dir, split, num_points, variant=options.get("variant") or "PB_T50_RS", **common)
    elif fmt == "shapenet-part":
        from .shapenet_part import load

        ds = load(data_dir, "trainval" if split == "train" else split, num_points, **common)
    elif fmt == "folder":
        from .folder import load

        ds = load(data_dir, split, num_points, **common)
    else:
        from .synthetic import load

        ds = load(split, num_points, task=task, samples_per_class=options.get("samples_per_class"),
                  rotate=options.get("rotate") or "none", seed=seed)
    ds.augment = augment
    ds.seed = seed
    return ds
