"""ShapeNet part segmentation (``shapenetcore_partanno_segmentation_benchmark_v0_normal``).

Layout: ``synsetoffset2category.txt`` (``Airplane\\t02691156``), ``<synset>/<token>.txt`` rows
``x y z nx ny nz part`` (part = global id 0..49), and
``train_test_split/shuffled_{train,val,test}_file_list.json`` with entries
``shape_data/<synset>/<token>``. ``split="trainval"`` is train + val (the official training set).
Each shape is cut to ``num_points`` (2048 officially) by a random choice seeded by its token (with
repeats when it has fewer points), so the choice never depends on coordinates.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from facet3d.core.errors import InputError, UsageError

from .cache import cached
from .common import PointDataset, normalize_points, stable_seed, prepare_arrays, unit

CATEGORIES = ["Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife", "Lamp", "Laptop", "Motorbike",
              "Mug", "Pistol", "Rocket", "Skateboard", "Table"]
_PART_COUNTS = [4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3]


def category_parts() -> dict[str, list[int]]:
    """Category -> its global part ids (Airplane 0-3, Bag 4-5, ..., Table 47-49)."""
    out, start = {}, 0
    for cat, n in zip(CATEGORIES, _PART_COUNTS):
        out[cat] = list(range(start, start + n))
        start += n
    return out


def _find_root(data_dir: Path) -> Path:
    for cand in (data_dir, data_dir / "shapenetcore_partanno_segmentation_benchmark_v0_normal"):
        if (cand / "synsetoffset2category.txt").is_file():
            return cand
    raise InputError(f"{data_dir}: not a ShapeNet part folder (no synsetoffset2category.txt)")


def _read(item: tuple[Path, str], num_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path, token = item
    arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if arr.shape[1] < 7:
        raise InputError(f"{path}: expected 7 columns x y z nx ny nz part, got {arr.shape[1]}")
    rng = np.random.default_rng(stable_seed(token, num_points))
    idx = rng.choice(len(arr), num_points, replace=len(arr) < num_points)
    arr = arr[idx]
    return (normalize_points(arr[:, :3]).astype(np.float32), unit(arr[:, 3:6]).astype(np.float32),
            arr[:, 6].astype(np.int64))


def load(data_dir: str | Path, split: str = "trainval", num_points: int = 2048, cache_dir=None,
         use_cache: bool = True, workers: int = 0,
         progress=None, log=None) -> PointDataset:
    """A ShapeNet part split as a segmentation `PointDataset` (labels = category index)."""
    splits = {"train": ["train"], "val": ["val"], "test": ["test"], "trainval": ["train", "val"]}
    if split not in splits:
        raise UsageError(f"shapenet-part: split must be one of {', '.join(splits)}, got '{split}'")
    root = _find_root(Path(data_dir))
    synset_to_cat = {}
    for ln in (root / "synsetoffset2category.txt").read_text().splitlines():
        if ln.strip():
            cat, syn = ln.split()[:2]
            synset_to_cat[syn] = cat
    unknown = set(synset_to_cat.values()) - set(CATEGORIES)
    if unknown:
        raise InputError(f"{root}: unknown categories {sorted(unknown)}")
    items, labels = [], []
    for s in splits[split]:
        jf = root / "train_test_split" / f"shuffled_{s}_file_list.json"
        if not jf.is_file():
            raise InputError(f"{jf}: missing split file")
        for entry in json.loads(jf.read_text()):
            syn, token = entry.split("/")[-2:]
            if syn not in synset_to_cat:
                continue
            items.append((root / syn / f"{token}.txt", token))
            labels.append(CATEGORIES.index(synset_to_cat[syn]))
    if not items:
        raise InputError(f"{root}: split '{split}' lists no shapes")
    missing = [p for p, _ in items if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: listed in the split but missing ({len(missing)} missing)")

    def build() -> dict[str, np.ndarray]:
        return prepare_arrays(partial(_read, num_points=num_points), items, [str(p) for p, _ in items], labels,
                              workers, "shapenet-part", f"shapenet-part {split}", with_parts=True, progress=progress, log=log)

    arrays = cached(f"shapenet-part-{split}", [p for p, _ in items], {"n": num_points}, build, data_dir=root,
                    cache_dir=cache_dir, use_cache=use_cache)
    cp = category_parts()
    part_names = [f"{cat}/{i - ids[0]}" for cat, ids in cp.items() for i in ids]
    return PointDataset("shapenet-part", split, arrays["xyz"], arrays["normals"], arrays["labels"], list(CATEGORIES),
                        num_points, parts=arrays["parts"], part_names=part_names, category_parts=cp,
                        info={"root": str(root)})
