"""A plain folder per class, of any file facet3d reads (meshes, clouds, LAS, PCD, ...).

Layouts: ``<root>/<class>/{train,test}/*`` when those sub-folders exist; otherwise
``<root>/<class>/*`` and a deterministic split (every 5th file of a class, in name order, is
``test``; ``split="all"`` takes every file). Each file becomes ``num_points`` points with normals
by `common.prepare_geometry` (meshes: surface samples; clouds: FPS, normals estimated and oriented
when absent). Files that fail to read are reported and skipped.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from facet3d.core.errors import InputError, UsageError

from .cache import cached
from .common import PointDataset, prepare_geometry, stable_seed, prepare_arrays

TEST_EVERY = 5


def _readable_exts() -> set[str]:
    from facet3d.core.io.api import registered_formats

    return {e for s in registered_formats().values() if s.read and not s.explicit_only for e in s.extensions}


def list_files(data_dir: str | Path, split: str) -> tuple[list[Path], list[int], list[str]]:
    """Files, labels and class names (sorted folder names) of one split."""
    if split not in ("train", "test", "all"):
        raise UsageError(f"folder: split must be train, test or all, got '{split}'")
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    exts = _readable_exts()
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise InputError(f"{root}: no class sub-folders (expected <root>/<class>/<files>)")

    def files_in(d: Path) -> list[Path]:
        return sorted(f for f in d.iterdir() if f.is_file() and any(f.name.lower().endswith(e) for e in exts)) \
            if d.is_dir() else []

    files, labels = [], []
    for ci, cls in enumerate(classes):
        d = root / cls
        if (d / "train").is_dir() or (d / "test").is_dir():
            found = files_in(d / "train") + files_in(d / "test") if split == "all" else files_in(d / split)
        else:
            found = files_in(d)
            if split != "all":
                found = [f for i, f in enumerate(found) if (i % TEST_EVERY == TEST_EVERY - 1) == (split == "test")]
        files += found
        labels += [ci] * len(found)
    if not files:
        raise InputError(f"{root}: no readable file for split '{split}' in the class folders")
    return files, labels, classes


def _load_one(path: Path, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    from facet3d.core.io.api import read

    return prepare_geometry(read(path), num_points, seed=stable_seed(path.name, num_points))


def load(data_dir: str | Path, split: str = "train", num_points: int = 1024, cache_dir=None,
         use_cache: bool = True, workers: int = 0,
         progress=None, log=None) -> PointDataset:
    """A folder-per-class dataset as a classification `PointDataset`."""
    files, labels, classes = list_files(data_dir, split)

    def build() -> dict[str, np.ndarray]:
        return prepare_arrays(partial(_load_one, num_points=num_points), files, [str(f) for f in files], labels,
                              workers, "folder", f"folder {split}", progress=progress, log=log)

    arrays = cached(f"folder-{split}", files, {"n": num_points}, build, data_dir=data_dir, cache_dir=cache_dir,
                    use_cache=use_cache)
    return PointDataset("folder", split, arrays["xyz"], arrays["normals"], arrays["labels"], classes, num_points,
                        info={"root": str(data_dir)})
