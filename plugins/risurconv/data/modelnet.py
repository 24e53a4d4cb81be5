"""ModelNet40 in two layouts.

* ``modelnet40`` — ``modelnet40_normal_resampled/``: ``<class>/<class>_NNNN.txt`` rows
  ``x,y,z,nx,ny,nz`` (10k points), ``modelnet40_shape_names.txt`` and
  ``modelnet40_{train,test}.txt`` (one ``<class>_NNNN`` per line). As in the official loader the
  first ``num_points`` rows are used (``sample="fps"`` picks them by FPS instead).
* ``modelnet-off`` — Princeton's raw meshes ``<class>/{train,test}/*.off``: the surface is
  sampled by area with face normals (2x oversampled, then FPS for even coverage).

Both normalise to the unit sphere and cache the result (see `cache`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from facet3d.core.errors import InputError, UsageError

from .cache import cached
from .common import PointDataset, fps_numpy, normalize_points, prepare_geometry, stable_seed, prepare_arrays, unit


def _find_resampled_root(data_dir: Path) -> Path:
    for cand in (data_dir, data_dir / "modelnet40_normal_resampled"):
        if (cand / "modelnet40_shape_names.txt").is_file() or (cand / "modelnet10_shape_names.txt").is_file():
            return cand
    raise InputError(f"{data_dir}: not a modelnet40_normal_resampled folder (no modelnet40_shape_names.txt)")


def _read_txt(path: Path, num_points: int, sample: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``x,y,z,nx,ny,nz`` file -> (xyz [n,3], normals [n,3]) float32, normalised."""
    rows = num_points if sample == "first" else None
    arr = np.loadtxt(path, delimiter=",", dtype=np.float64, max_rows=rows, ndmin=2)
    if arr.shape[1] < 6:
        raise InputError(f"{path}: expected 6 columns x,y,z,nx,ny,nz, got {arr.shape[1]}")
    if sample == "fps":
        arr = arr[fps_numpy(arr[:, :3], num_points)]
    if len(arr) < num_points:  # short file: repeat points (deterministically) rather than fail
        extra = np.random.default_rng(stable_seed(path.name)).choice(len(arr), num_points - len(arr))
        arr = np.concatenate([arr, arr[extra]])
    return normalize_points(arr[:, :3]).astype(np.float32), unit(arr[:, 3:6]).astype(np.float32)


def load_resampled(data_dir: str | Path, split: str = "train", num_points: int = 1024, sample: str = "first",
                   num_classes: int = 40, cache_dir=None, use_cache: bool = True, workers: int = 0,
                   progress=None, log=None) -> PointDataset:
    """The ``modelnet40_normal_resampled`` layout (also ModelNet10 with ``num_classes=10``)."""
    if split not in ("train", "test"):
        raise UsageError(f"modelnet40: split must be train or test, got '{split}'")
    if sample not in ("first", "fps"):
        raise UsageError(f"modelnet40: sample must be 'first' or 'fps', got '{sample}'")
    root = _find_resampled_root(Path(data_dir))
    tag = f"modelnet{num_classes}"
    classes = [ln.strip() for ln in (root / f"{tag}_shape_names.txt").read_text().splitlines() if ln.strip()]
    split_file = root / f"{tag}_{split}.txt"
    if not split_file.is_file():
        raise InputError(f"{split_file}: missing split file")
    ids = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
    files, labels = [], []
    for sid in ids:
        cls = "_".join(sid.split("_")[:-1])
        if cls not in classes:
            raise InputError(f"{split_file}: '{sid}' names an unknown class '{cls}'")
        files.append(root / cls / f"{sid}.txt")
        labels.append(classes.index(cls))
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: listed in {split_file.name} but missing ({len(missing)} missing)")

    def build() -> dict[str, np.ndarray]:
        return prepare_arrays(partial(_read_txt, num_points=num_points, sample=sample), files, [str(f) for f in files],
                              labels, workers, tag, f"{tag} {split}", progress=progress, log=log)

    arrays = cached(f"{tag}-{split}", files, {"n": num_points, "sample": sample}, build,
                    data_dir=root, cache_dir=cache_dir, use_cache=use_cache)
    return PointDataset(tag, split, arrays["xyz"], arrays["normals"], arrays["labels"], classes, num_points,
                        info={"root": str(root)})


def _read_mesh(path: Path, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    from facet3d.core.io.api import read

    geom = read(path)
    return prepare_geometry(geom, num_points, seed=stable_seed(path.name, num_points))


def off_files(data_dir: str | Path, split: str, pattern: str = "*.off") -> tuple[list[Path], list[int], list[str]]:
    """``<class>/<split>/*.off`` (or ``<class>/*.off`` with ``split="all"``) -> files, labels, classes."""
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for ci, cls in enumerate(classes):
        sub = root / cls / split if split != "all" else root / cls
        found = sorted(sub.glob(pattern)) if split != "all" else sorted(sub.rglob(pattern))
        files += found
        labels += [ci] * len(found)
    if not files:
        raise InputError(f"{root}: no {pattern} files in <class>/{split if split != 'all' else ''} folders")
    return files, labels, classes


def load_off(data_dir: str | Path, split: str = "train", num_points: int = 1024, cache_dir=None,
             use_cache: bool = True, workers: int = 0,
         progress=None, log=None) -> PointDataset:
    """Princeton ModelNet ``.off`` meshes: ``<class>/{train,test}/*.off`` (``split="all"``: every .off)."""
    if split not in ("train", "test", "all"):
        raise UsageError(f"modelnet-off: split must be train, test or all, got '{split}'")
    files, labels, classes = off_files(data_dir, split)

    def build() -> dict[str, np.ndarray]:
        return prepare_arrays(partial(_read_mesh, num_points=num_points), files, [str(f) for f in files], labels,
                              workers, "modelnet-off", f"modelnet-off {split}", progress=progress, log=log)

    arrays = cached(f"modelnet-off-{split}", files, {"n": num_points}, build, data_dir=data_dir,
                    cache_dir=cache_dir, use_cache=use_cache)
    return PointDataset("modelnet-off", split, arrays["xyz"], arrays["normals"], arrays["labels"], classes,
                        num_points, info={"root": str(data_dir)})
