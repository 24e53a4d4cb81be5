"""Inference on single files: `classify_file` and `segment_file` (used by the commands and the demo).

A file becomes model input by `data.common.prepare_geometry`: meshes are sampled on the surface
with face normals, clouds are FPS'd (or padded by repeats) to the model's point count with
normals estimated and consistently oriented when the file has none, then unit-sphere normalised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import GeometryError, InputError

PALETTE = np.array([[0.90, 0.10, 0.11], [0.22, 0.49, 0.72], [0.30, 0.69, 0.29], [0.60, 0.31, 0.64],
                    [1.00, 0.50, 0.00], [1.00, 0.85, 0.20], [0.65, 0.34, 0.16], [0.97, 0.51, 0.75],
                    [0.40, 0.40, 0.40], [0.10, 0.75, 0.80]], dtype=np.float32)


def task_of(meta: dict[str, Any]) -> str:
    """"classification" or "segmentation" from a checkpoint's meta (which says "cls" / "seg")."""
    t = str(meta.get("task", "cls"))
    return {"cls": "classification", "seg": "segmentation"}.get(t, t)


def seg_mapping(meta: dict[str, Any]) -> tuple[list[str], dict[str, list[int]], list[str]]:
    """(categories, category -> global part ids, part names) of a segmentation checkpoint's meta.

    facet3d checkpoints store ``categories`` / ``category_parts`` / ``part_names``; official
    ShapeNet ones get ``categories`` / ``seg_classes`` from the checkpoint loader.
    """
    from .data.shapenet_part import CATEGORIES, category_parts

    cats = list(meta.get("categories") or meta.get("class_names") or CATEGORIES)
    cp = meta.get("category_parts") or meta.get("seg_classes") or (category_parts() if cats == CATEGORIES else None)
    if cp is None:
        raise InputError("segmentation checkpoint has no category -> parts mapping in its JSON")
    cp = {k: [int(i) for i in v] for k, v in cp.items()}
    names = meta.get("part_names") or [f"{c}/{i - ids[0]}" for c, ids in cp.items() for i in ids]
    return cats, cp, list(names)


def load_input(path: Path, num_points: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, float]]:
    """``(xyz [n,3], normals [n,3], (centre [3], scale))`` of a file: the model input and how to undo the normalisation."""
    from facet3d.core.io.api import read

    return model_input(read(path), num_points)


def model_input(geom, num_points: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, float]]:
    """`load_input` for a `Geometry` already read (the sampling seed follows its file name, as for a path)."""
    from .data.common import prepare_geometry, stable_seed

    name = Path(str(geom.meta.get("path", ""))).name
    try:
        xyz, nrm, raw = prepare_geometry(geom, num_points, seed=stable_seed(name, num_points), return_raw=True)
    except GeometryError as exc:
        raise InputError(f"{geom.meta.get('path', 'input')}: {exc}") from None
    centre = raw.mean(0)
    scale = float(np.sqrt(((raw - centre) ** 2).sum(1)).max())
    return xyz, nrm, (centre, scale)


def classify_file(model, path: Path, num_points: int, class_names: list[str], top_k: int = 3) -> dict[str, Any]:
    """Top-k classes of one file: ``{"file", "label", "prob", "top_k": [{"label", "index", "prob"}]}``."""
    from facet3d.core.io.api import read

    return {"file": str(path), **classify_geometry(model, read(path), num_points, class_names, top_k)}


def classify_geometry(model, geom, num_points: int, class_names: list[str], top_k: int = 3) -> dict[str, Any]:
    """Top-k classes of a `Geometry`: ``{"label", "prob", "top_k": [{"label", "index", "prob"}]}``."""
    import torch

    xyz, nrm, _ = model_input(geom, num_points)
    device = next(model.parameters()).device
    with torch.no_grad():
        logp = model(torch.from_numpy(xyz)[None].to(device), torch.from_numpy(nrm)[None].to(device))[0].cpu()
    probs = logp.exp()
    k = min(top_k, len(probs))
    vals, idx = probs.topk(k)
    names = class_names or [str(i) for i in range(len(probs))]
    top = [{"label": names[int(i)] if int(i) < len(names) else str(int(i)), "index": int(i), "prob": float(v)}
           for v, i in zip(vals, idx)]
    return {"label": top[0]["label"], "prob": top[0]["prob"], "top_k": top}


def segment_file(model, path: Path, out_path: Path, num_points: int, categories: list[str],
                 category_parts: dict[str, list[int]], part_names: list[str], category: str | None = None,
                 full_resolution: bool = True) -> dict[str, Any]:
    """Per-point parts of one file, written to ``out_path`` (PLY: points, normals, colours, int ``part``);
    see `segment_geometry`."""
    from facet3d.core.io.api import read, write

    geom, summary = segment_geometry(model, read(path), num_points, categories, category_parts, part_names, category,
                                     full_resolution)
    write(out_path, geom)
    return {"file": str(path), "out": str(out_path), **summary}


def segment_geometry(model, src, num_points: int, categories: list[str], category_parts: dict[str, list[int]],
                     part_names: list[str], category: str | None = None,
                     full_resolution: bool = True) -> tuple[Any, dict[str, Any]]:
    """Per-point parts of a `Geometry` -> (labelled Geometry: colours and an int ``part`` attribute, summary).

    full_resolution: label every input point / mesh vertex (nearest model sample; faces kept), else
    only the ``num_points`` samples the model saw. Non-finite input points get part -1.
    Without ``category`` every category is tried and the one whose own parts get the highest
    mean log-probability wins. Points stay in the input's coordinates.
    """
    import torch

    from facet3d.core.io.record import Geometry

    xyz, nrm, (centre, scale) = model_input(src, num_points)
    device = next(model.parameters()).device
    x, n = torch.from_numpy(xyz)[None].to(device), torch.from_numpy(nrm)[None].to(device)
    tried = [category] if category else list(categories)
    best: tuple[float, str, np.ndarray] | None = None
    with torch.no_grad():
        for cat in tried:
            logp = model(x, n, torch.tensor([categories.index(cat)], device=device))[0].cpu()  # [N, P]
            own = logp[:, category_parts[cat]]
            conf, arg = own.max(-1)
            score = float(conf.mean())
            if best is None or score > best[0]:
                best = (score, cat, np.asarray(category_parts[cat])[arg.numpy()])
    assert best is not None
    _, cat, parts = best
    local = np.searchsorted(np.asarray(category_parts[cat]), parts)
    sampled = xyz.astype(np.float64) * scale + centre
    if full_resolution:
        # Every point (or mesh vertex) of the input gets the label of its nearest model sample, so
        # the output lines up with the user's file rather than with the model's subsample.
        from facet3d.core.ops.neighbors import knn_points

        keep = np.isfinite(src.vertices).all(axis=1)
        nn = np.zeros(src.num_points, dtype=np.int64)
        nn[keep] = knn_points(np.asarray(src.vertices[keep], dtype=np.float64), sampled, 1)[1][:, 0]
        parts, local = np.where(keep, parts[nn], -1), local[nn]
        geom = Geometry(vertices=src.vertices, faces=src.faces, normals=src.normals,
                        colors=np.where(keep[:, None], PALETTE[local % len(PALETTE)], 0.0).astype(np.float32),
                        attributes={**src.attributes, "part": parts.astype(np.int32)})
    else:
        geom = Geometry(vertices=sampled, normals=nrm.astype(np.float32),
                        colors=PALETTE[local % len(PALETTE)], attributes={"part": parts.astype(np.int32)})
    ids, counts = np.unique(parts, return_counts=True)
    name = lambda i: part_names[i] if i < len(part_names) else str(i)  # noqa: E731
    return geom, {"category": cat, "points": int(len(parts)), "model_points": int(len(xyz)),
                  "part_counts": {name(int(i)): int(c) for i, c in zip(ids, counts)}}
