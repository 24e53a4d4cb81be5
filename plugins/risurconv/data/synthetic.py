"""Procedural labelled shapes ("synthetic"): a dataset that needs no download, for quick starts and tests.

Classification: 8 classes of primitive meshes (sphere, cube, cylinder, cone, torus, plane,
capsule, pyramid) with a random size and a random aspect per axis (0.7-1.3), sampled uniformly by
area with their face normals. Upright (no rotation) by default, like ModelNet; ``rotate="z"`` or
``"so3"`` rotates each shape randomly.
Segmentation: 4 categories with 2 parts each (global part ids 0-7): cylinder (side, cap), cone
(side, base), lollipop (head, stick), dumbbell (end, bar) — parts that differ in local surface shape,
so a rotation-invariant model can tell them apart.

Every sample is a pure function of (seed, split, index), so train and test never coincide and
any run regenerates the same data. Sizes: 48 training and 12 test shapes per class by default;
``samples_per_class`` sets the training size and the other splits get a quarter of it (>= 2).
"""

from __future__ import annotations

import numpy as np

from facet3d.core.errors import UsageError

from .common import PointDataset, normalize_points, unit

CLASSES = ["sphere", "cube", "cylinder", "cone", "torus", "plane", "capsule", "pyramid"]
SEG_CATEGORIES = ["cylinder", "cone", "lollipop", "dumbbell"]
SEG_PARTS = ["cylinder/side", "cylinder/cap", "cone/side", "cone/base", "lollipop/head", "lollipop/stick",
             "dumbbell/end", "dumbbell/bar"]
DEFAULT_PER_CLASS = {"train": 48, "test": 12}
_SPLIT_ID = {"train": 0, "test": 1, "val": 2}


def _primitive(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices [V,3], faces [F,3], face part label [F]) of one random primitive."""
    import trimesh.creation as tc

    labels = None
    if name == "sphere":
        m = tc.icosphere(subdivisions=3)
    elif name == "cube":
        m = tc.box(extents=(1.0, 1.0, 1.0))
    elif name == "cylinder":
        m = tc.cylinder(radius=0.5, height=rng.uniform(0.8, 1.6), sections=32)
        labels = (np.abs(m.face_normals[:, 2]) > 0.99).astype(np.int64)  # 0 side, 1 caps
    elif name == "cone":
        m = tc.cone(radius=0.5, height=rng.uniform(0.8, 1.6), sections=32)
        labels = (m.face_normals[:, 2] < -0.99).astype(np.int64)  # 0 side, 1 base
    elif name == "torus":
        m = tc.torus(major_radius=0.5, minor_radius=rng.uniform(0.12, 0.25), major_sections=32, minor_sections=16)
    elif name == "plane":  # one flat sheet: a single-sided surface, unlike every other class
        v = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], dtype=np.float64)
        return v, np.array([[0, 1, 2], [0, 2, 3]]), np.zeros(2, dtype=np.int64)
    elif name == "capsule":
        m = tc.capsule(height=rng.uniform(0.6, 1.2), radius=0.35, count=[16, 16])
    elif name == "pyramid":
        m = tc.cone(radius=0.6, height=rng.uniform(0.6, 1.2), sections=4)
    elif name == "lollipop":
        head = tc.icosphere(subdivisions=3, radius=rng.uniform(0.3, 0.45))
        head.apply_translation((0, 0, 0.6))
        stick = tc.cylinder(radius=rng.uniform(0.04, 0.08), height=1.2, sections=16)
        m = _concat([head, stick])
        labels = np.repeat([0, 1], [len(head.faces), len(stick.faces)])
    elif name == "dumbbell":
        r = rng.uniform(0.2, 0.3)
        a, b = tc.icosphere(subdivisions=2, radius=r), tc.icosphere(subdivisions=2, radius=r)
        a.apply_translation((0, 0, 0.6))
        b.apply_translation((0, 0, -0.6))
        bar = tc.cylinder(radius=rng.uniform(0.05, 0.1), height=1.2, sections=16)
        m = _concat([a, b, bar])
        labels = np.repeat([0, 0, 1], [len(a.faces), len(b.faces), len(bar.faces)])
    else:  # pragma: no cover - names come from the lists above
        raise ValueError(name)
    if labels is None:
        labels = np.zeros(len(m.faces), dtype=np.int64)
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces), labels


def _concat(meshes: list) -> object:
    import trimesh

    return trimesh.util.concatenate(meshes)


def _rotation(rng: np.random.Generator, rotate: str) -> np.ndarray:
    if rotate == "z":
        t = rng.uniform(0, 2 * np.pi)
        return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def make_shape(name: str, num_points: int, rng: np.random.Generator, rotate: str = "none"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sampled shape: (xyz [n,3] float32 in the unit sphere, normals [n,3] float32, part [n] int64 local)."""
    from facet3d.core.ops.sampling import sample_mesh_surface

    v, f, flabels = _primitive(name, rng)
    v = v * rng.uniform(0.7, 1.3, size=3) * rng.uniform(0.5, 2.0)  # aspect, then size
    if rotate != "none":
        v = v @ _rotation(rng, rotate).T
    s = sample_mesh_surface(v, f, num_points, seed=int(rng.integers(2 ** 31)))
    return (normalize_points(np.asarray(s.points)).astype(np.float32), unit(np.asarray(s.normals)).astype(np.float32),
            flabels[np.asarray(s.face_index)])


def load(split: str = "train", num_points: int = 1024, task: str = "classification", samples_per_class: int | None = None,
         rotate: str = "none", seed: int = 0) -> PointDataset:
    """The synthetic dataset (classification: 8 classes; segmentation: 4 categories / 8 parts)."""
    if split == "all":
        split = "train"
    if split not in _SPLIT_ID:
        raise UsageError(f"synthetic: split must be train, val or test, got '{split}'")
    if rotate not in ("none", "z", "so3"):
        raise UsageError(f"synthetic: rotate must be none, z or so3, got '{rotate}'")
    seg = task == "segmentation"
    names = SEG_CATEGORIES if seg else CLASSES
    per = DEFAULT_PER_CLASS.get(split, 12)
    if samples_per_class:  # the size of the training split; the others get a quarter (at least 2)
        per = samples_per_class if split == "train" else max(2, samples_per_class // 4)
    xyz, nrm, labels, parts = [], [], [], []
    for ci, name in enumerate(names):
        for j in range(per):
            rng = np.random.default_rng([seed, _SPLIT_ID[split], ci, j])
            p, n, part = make_shape(name, num_points, rng, rotate)
            xyz.append(p)
            nrm.append(n)
            labels.append(ci)
            parts.append(part + 2 * ci)
    cp = {c: [2 * i, 2 * i + 1] for i, c in enumerate(SEG_CATEGORIES)} if seg else None
    return PointDataset("synthetic", split, np.stack(xyz), np.stack(nrm), np.asarray(labels, dtype=np.int64),
                        list(names), num_points, parts=np.stack(parts) if seg else None,
                        part_names=list(SEG_PARTS) if seg else None, category_parts=cp,
                        info={"samples_per_class": per, "rotate": rotate, "seed": seed})
