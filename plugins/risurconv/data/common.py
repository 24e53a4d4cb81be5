"""What every RISurConv dataset shares: the in-memory dataset, augmentation, and per-shape preparation.

Model inputs (see the reference): points centred on their mean and scaled into the unit sphere,
unit normals that rotate with the points and are consistently oriented. Everything here is numpy;
a `PointDataset` works with ``torch.utils.data.DataLoader`` without importing torch itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facet3d.core.errors import GeometryError, InputError
from facet3d.core.progress import LogFn, ProgressFn, say

from .cache import map_items

DROPOUT_MAX = 0.875  # official random_point_dropout
SCALE_RANGE = (0.8, 1.25)
SHIFT_RANGE = 0.1


def stable_seed(*parts: Any) -> int:
    """A seed from strings/ints that is the same in every process (``hash()`` is salted)."""
    return int.from_bytes(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "little")


def normalize_points(xyz: np.ndarray) -> np.ndarray:
    """``[N, 3]`` -> centred on the mean, farthest point at radius 1 (official ``pc_normalize``)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    c = xyz - xyz.mean(0)
    r = np.sqrt((c ** 2).sum(1)).max()
    if not np.isfinite(r) or r <= 0:
        raise GeometryError("all points coincide (zero radius)")
    return c / r


def unit(n: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    n = np.asarray(n, dtype=np.float64)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return n / np.where(length > 0, length, 1.0)


def fps_numpy(xyz: np.ndarray, n: int) -> np.ndarray:
    """Farthest point sampling ``[N, 3] -> [n]`` indices, started at the point farthest from the centroid.

    That start (ties -> lowest index) makes the chosen set independent of point order and of
    rotations, so preprocessing does not break the model's invariance.
    """
    N = len(xyz)
    if n >= N:
        return np.arange(N)
    p = np.asarray(xyz, dtype=np.float64)
    idx = np.empty(n, dtype=np.int64)
    idx[0] = int(np.argmax(((p - p.mean(0)) ** 2).sum(1)))
    d = ((p - p[idx[0]]) ** 2).sum(1)
    for i in range(1, n):
        idx[i] = int(np.argmax(d))
        d = np.minimum(d, ((p - p[idx[i]]) ** 2).sum(1))
    return idx


def resample(xyz: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices for exactly ``n`` points: FPS when there are more, all plus random repeats when fewer."""
    N = len(xyz)
    if N >= n:
        return fps_numpy(xyz, n)
    return np.concatenate([np.arange(N), rng.choice(N, n - N, replace=True)])


def prepare_geometry(geom: Any, num_points: int, seed: int = 0, normal_k: int = 30,
                     oversample: int = 2, return_raw: bool = False) -> tuple[np.ndarray, ...]:
    """A facet3d `Geometry` -> ``(xyz [num_points, 3] float32, normals [num_points, 3] float32)``.

    Meshes: area-weighted surface samples (``oversample`` x more) with face normals, then FPS.
    Clouds: random subset of at most 8x ``num_points`` (keeps normal estimation cheap on
    million-point scans), normals estimated and consistently oriented when the file has none,
    then FPS (or repeats when there are too few). Finally unit-sphere normalisation.
    ``return_raw``: also return the chosen points before normalisation ``[num_points, 3]`` float64.
    """
    from facet3d.core.ops.normals import estimate_normals

    rng = np.random.default_rng(seed)
    v = np.asarray(geom.vertices, dtype=np.float64)
    if len(v) == 0:
        raise GeometryError("no points")
    if geom.is_mesh:
        from facet3d.core.ops.sampling import sample_mesh_surface

        s = sample_mesh_surface(v, geom.faces, num_points * oversample, seed=seed)
        xyz, nrm = np.asarray(s.points), np.asarray(s.normals)
    else:
        finite = np.isfinite(v).all(1)
        xyz = v[finite]
        nrm = None if geom.normals is None else np.asarray(geom.normals, dtype=np.float64)[finite]
        if len(xyz) < 3:
            raise GeometryError(f"only {len(xyz)} finite points")
        if len(xyz) > 8 * num_points:
            keep = np.sort(rng.choice(len(xyz), 8 * num_points, replace=False))
            xyz, nrm = xyz[keep], None if nrm is None else nrm[keep]
        if nrm is None or not np.isfinite(nrm).all() or (np.linalg.norm(nrm, axis=1) == 0).mean() > 0.5:
            nrm = estimate_normals(xyz, k=min(normal_k, len(xyz)), orient="consistent")
    idx = resample(xyz, num_points, rng)
    out = normalize_points(xyz[idx]).astype(np.float32), unit(nrm[idx]).astype(np.float32)
    return (*out, xyz[idx]) if return_raw else out


def augment(xyz: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
            extra: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Official training augmentation for one sample ``[N, 3]`` (no rotation: the model is invariant).

    Point dropout of up to 87.5 % (dropped points become copies of point 0, so N stays fixed),
    random uniform scale in [0.8, 1.25], random shift in [-0.1, 0.1]^3. Normals only follow the
    dropout (uniform scale and shift leave them unchanged). ``extra`` per-point arrays (part
    labels) follow the dropout too.
    """
    xyz, normals = xyz.copy(), normals.copy()
    extra = [e.copy() for e in (extra or [])]
    ratio = rng.random() * DROPOUT_MAX
    drop = np.flatnonzero(rng.random(len(xyz)) <= ratio)
    if len(drop):
        xyz[drop], normals[drop] = xyz[0], normals[0]
        for e in extra:
            e[drop] = e[0]
    xyz = xyz * rng.uniform(*SCALE_RANGE) + rng.uniform(-SHIFT_RANGE, SHIFT_RANGE, 3)
    return xyz.astype(np.float32), normals, extra


@dataclass
class PointDataset:
    """Preprocessed samples in memory; ``ds[i]`` is what a DataLoader batches.

    xyz [M, N, 3] float32, normals [M, N, 3] float32, labels [M] int64 (class, or category for
    segmentation), parts [M, N] int64 or None (segmentation: global part ids).
    Items: classification ``(xyz [n,3], normals [n,3], label)``; segmentation
    ``(xyz, normals, category, parts [n])`` with n = ``num_points`` (<= N; the first n).
    """

    name: str
    split: str
    xyz: np.ndarray
    normals: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    num_points: int
    parts: np.ndarray | None = None
    part_names: list[str] | None = None
    category_parts: dict[str, list[int]] | None = None  # category name -> its global part ids
    augment: bool = False
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    _epoch: int = 0

    def __post_init__(self) -> None:
        if len(self.labels) == 0:
            raise InputError(f"{self.name} {self.split}: no samples")
        self.num_points = min(self.num_points, self.xyz.shape[1])

    @property
    def task(self) -> str:
        return "segmentation" if self.parts is not None else "classification"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Different augmentation every epoch, reproducible for a given (seed, epoch, index)."""
        self._epoch = epoch

    def __getitem__(self, i: int) -> tuple:
        n = self.num_points
        xyz, nrm = self.xyz[i, :n], self.normals[i, :n]
        parts = [self.parts[i, :n]] if self.parts is not None else []
        if self.augment:
            rng = np.random.default_rng([self.seed, self._epoch, int(i)])
            xyz, nrm, parts = augment(xyz, nrm, rng, parts)
        label = np.int64(self.labels[i])
        if self.parts is not None:
            return xyz, nrm, label, parts[0].astype(np.int64)
        return xyz, nrm, label

    def describe(self) -> dict[str, Any]:
        d = {"dataset": self.name, "split": self.split, "samples": len(self), "num_points": self.num_points,
             "classes": self.num_classes, "task": self.task}
        d.update(self.info)
        return d


def prepare_arrays(fn: Any, items: list[Any], names: list[str], labels: Any, workers: int, what: str,
                   desc: str, with_parts: bool = False, progress: ProgressFn | None = None,
                   log: LogFn | None = None) -> dict[str, np.ndarray]:
    """Run ``fn`` over ``items`` (in ``workers`` processes), drop the failures, stack the rest.

    fn(item) -> (xyz [N,3], normals [N,3][, parts [N]]); labels: [len(items)] class ids.
    Returns {"xyz" [M,N,3], "normals" [M,N,3], "labels" [M] (, "parts" [M,N])} for the M good items.
    progress gets one report per item; log one line per skipped item (at most 5, then a count).
    """
    good, keep = stack_samples(map_items(fn, items, workers, desc, progress), names, what, log)
    out = {"xyz": np.stack([g[0] for g in good]), "normals": np.stack([g[1] for g in good]),
           "labels": np.asarray(labels, dtype=np.int64)[keep]}
    if with_parts:
        out["parts"] = np.stack([g[2] for g in good])
    return out


def stack_samples(results: list[Any], names: list[str], what: str,
                  log: LogFn | None = None) -> tuple[list[Any], list[int]]:
    """Keep the successful per-file results; report failures through `log` (one line each, max 5)."""
    good, keep = [], []
    bad = [(n, r) for n, r in zip(names, results) if isinstance(r, BaseException)]
    for i, r in enumerate(results):
        if not isinstance(r, BaseException):
            good.append(r)
            keep.append(i)
    for n, r in bad[:5]:
        say(log, f"warning: {what}: skipped {n} ({type(r).__name__}: {str(r).splitlines()[0] if str(r) else ''})")
    if len(bad) > 5:
        say(log, f"warning: {what}: skipped {len(bad)} bad files in all")
    if not good:
        raise InputError(f"{what}: no readable sample (all {len(results)} failed)")
    return good, keep
