"""Pipeline steps `classify` (a table row per file) and `segment` (labelled points) for `facet3d batch`.

The checkpoint is loaded once per worker (`setup`), not once per file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facet3d.core.errors import UsageError
from facet3d.core.io.record import Geometry
from facet3d.core.values import auto_device, check_device


def check_ckpt(ckpt: str, device: str = "auto", **_: Any) -> None:
    if not Path(ckpt).is_file():
        raise UsageError(f"checkpoint {ckpt} does not exist")
    check_device(device)


def setup_classifier(ckpt: str, device: str = "auto", **_: Any) -> tuple[Any, dict]:
    from .checkpoint import load_for_task

    model, meta = load_for_task(ckpt, "classification")
    return model.to(auto_device(device)), meta


def setup_segmenter(ckpt: str, device: str = "auto", **_: Any) -> tuple[Any, dict]:
    from .checkpoint import load_for_task

    model, meta = load_for_task(ckpt, "segmentation")
    return model.to(auto_device(device)), meta


def classify(geom: Geometry, state: tuple[Any, dict], ckpt: str, top_k: int = 3, num_points: int | None = None,
             device: str = "auto") -> dict[str, Any]:
    """One row: the top class, its probability and the top-k list (as `facet3d classify --json`)."""
    from .predict import classify_geometry

    model, meta = state
    n = num_points or meta.get("num_points") or 1024
    return classify_geometry(model, geom, n, list(meta.get("class_names") or []), top_k)


def segment(geom: Geometry, state: tuple[Any, dict], ckpt: str, category: str | None = None,
            num_points: int | None = None, samples_only: bool = False, device: str = "auto") -> Geometry:
    """Every point (mesh vertex) with its part: an int ``part`` attribute and colours (as `facet3d segment`)."""
    from .checkpoint import pick_category
    from .predict import seg_mapping, segment_geometry

    model, meta = state
    cats, cp, part_names = seg_mapping(meta)
    n = num_points or meta.get("num_points") or 2048
    labelled, _ = segment_geometry(model, geom, n, cats, cp, part_names, pick_category(cats, category),
                                   full_resolution=not samples_only)
    return labelled
