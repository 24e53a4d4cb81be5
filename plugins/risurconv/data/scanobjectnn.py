"""ScanObjectNN (h5 files with ``data`` [M, 2048, 3] and ``label`` [M]).

Variants (file names as published):
  PB_T50_RS  ``main_split/{training,test}_objectdataset_augmentedrot_scale75.h5`` (the hardest)
  OBJ_BG     ``main_split/{training,test}_objectdataset.h5``
  OBJ_ONLY   ``main_split_nobg/{training,test}_objectdataset.h5``
``data_dir`` may be the dataset root (holding ``main_split*``), the variant's folder, or one .h5 file.

The scans carry no normals. The official code estimates them by PCA *without* orientation, so
their signs change under rotation and break the invariance; here they are estimated on all 2048
points and consistently oriented (MST propagation + outward vote, `facet3d.core.ops.normals`),
then ``num_points`` are chosen by FPS (order- and rotation-independent start).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from facet3d.core.errors import InputError, UsageError

from .cache import cached
from .common import fps_numpy, normalize_points, PointDataset, prepare_arrays, unit

CLASSES = ["bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed", "pillow",
           "sink", "sofa", "toilet"]
VARIANTS = {
    "PB_T50_RS": ("main_split", "{split}_objectdataset_augmentedrot_scale75.h5"),
    "OBJ_BG": ("main_split", "{split}_objectdataset.h5"),
    "OBJ_ONLY": ("main_split_nobg", "{split}_objectdataset.h5"),
}


def h5_path(data_dir: str | Path, variant: str = "PB_T50_RS", split: str = "train") -> Path:
    """The .h5 file of a variant and split (train -> ``training_*``)."""
    key = variant.upper().replace("-", "_")
    if key not in VARIANTS:
        raise UsageError(f"scanobjectnn: unknown variant '{variant}' (have: {', '.join(VARIANTS)})")
    if split not in ("train", "test"):
        raise UsageError(f"scanobjectnn: split must be train or test, got '{split}'")
    d = Path(data_dir)
    if d.is_file():
        return d
    folder, pattern = VARIANTS[key]
    name = pattern.format(split="training" if split == "train" else "test")
    for cand in (d / folder / name, d / name):
        if cand.is_file():
            return cand
    raise InputError(f"{d}: no {folder}/{name} for ScanObjectNN variant {key}")


def _prepare(cloud: np.ndarray, num_points: int, normal_k: int) -> tuple[np.ndarray, np.ndarray]:
    """One scan [P, 3] -> (xyz [n, 3], normals [n, 3]) float32: oriented normals, FPS, unit sphere."""
    from facet3d.core.ops.normals import estimate_normals

    p = np.asarray(cloud, dtype=np.float64)
    p = p[np.isfinite(p).all(1)]
    n = estimate_normals(p, k=min(normal_k, len(p)), orient="consistent")
    idx = fps_numpy(p, num_points)
    if len(idx) < num_points:
        idx = np.resize(idx, num_points)
    return normalize_points(p[idx]).astype(np.float32), unit(n[idx]).astype(np.float32)


def load(data_dir: str | Path, split: str = "train", num_points: int = 1024, variant: str = "PB_T50_RS",
         normal_k: int = 20, cache_dir=None, use_cache: bool = True, workers: int = 0,
         progress=None, log=None) -> PointDataset:
    """A ScanObjectNN split as a `PointDataset` (15 classes)."""
    import h5py

    path = h5_path(data_dir, variant, split)
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f or "label" not in f:
                raise InputError(f"{path}: expected h5 datasets 'data' and 'label', found {', '.join(f.keys())}")
            clouds = np.asarray(f["data"][:], dtype=np.float32)[..., :3]
            labels = np.asarray(f["label"][:]).reshape(-1).astype(np.int64)
    except OSError as exc:
        raise InputError(f"{path}: not a readable h5 file ({exc})") from None
    if clouds.ndim != 3 or len(clouds) != len(labels):
        raise InputError(f"{path}: 'data' {clouds.shape} and 'label' {labels.shape} do not match")
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        raise InputError(f"{path}: labels outside 0..{len(CLASSES) - 1}")

    def build() -> dict[str, np.ndarray]:
        return prepare_arrays(partial(_prepare, num_points=num_points, normal_k=normal_k), list(clouds),
                              [f"{path.name}[{i}]" for i in range(len(clouds))], labels, workers, "scanobjectnn",
                              f"scanobjectnn {split} (normals)", progress=progress, log=log)

    arrays = cached(f"scanobjectnn-{path.stem}", [path], {"n": num_points, "k": normal_k}, build,
                    data_dir=path.parent, cache_dir=cache_dir, use_cache=use_cache)
    return PointDataset("scanobjectnn", split, arrays["xyz"], arrays["normals"], arrays["labels"], list(CLASSES),
                        num_points, info={"file": str(path), "variant": variant.upper()})
