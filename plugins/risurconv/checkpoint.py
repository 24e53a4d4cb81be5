"""Loading and saving RISurConv models: official ``best_model.pth`` files and facet3d's own format.

Own format: ``MODEL.safetensors`` (the state dict) plus a ``MODEL.json`` sidecar
``{"config": {...}, "class_names": [...], "task": "cls"|"seg", "trained_with": "...", ...}``.
Official format: a torch.save dict {epoch, instance_acc, class_acc (numpy float64),
model_state_dict, optimizer_state_dict}, loaded without running pickled code; its config is read
from the state dict's shapes (see models.infer_config).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from facet3d.core.checkpoints import load_checkpoint, read_sidecar, save_with_sidecar, state_dict_of
from facet3d.core.errors import CheckpointError, UsageError
from facet3d.plugins.risurconv.models import build_model, infer_config

MODELNET40_CLASSES: list[str] = [
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
]
SCANOBJECTNN_CLASSES: list[str] = [
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
    "bed", "pillow", "sink", "sofa", "toilet",
]
# ShapeNet part (shapenetcore_partanno_segmentation_benchmark_v0_normal): category index order
# is that of synsetoffset2category.txt; SHAPENET_PART_SEG_CLASSES is the standard part-label map.
SHAPENET_PART_CATEGORIES: list[str] = [
    "Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife",
    "Lamp", "Laptop", "Motorbike", "Mug", "Pistol", "Rocket", "Skateboard", "Table",
]
SHAPENET_PART_SYNSETS: dict[str, str] = {
    "Airplane": "02691156", "Bag": "02773838", "Cap": "02954340", "Car": "02958343",
    "Chair": "03001627", "Earphone": "03261776", "Guitar": "03467517", "Knife": "03624134",
    "Lamp": "03636649", "Laptop": "03642806", "Motorbike": "03790512", "Mug": "03797390",
    "Pistol": "03948459", "Rocket": "04099429", "Skateboard": "04225987", "Table": "04379243",
}
SHAPENET_PART_SEG_CLASSES: dict[str, list[int]] = {
    "Airplane": [0, 1, 2, 3], "Bag": [4, 5], "Cap": [6, 7], "Car": [8, 9, 10, 11],
    "Chair": [12, 13, 14, 15], "Earphone": [16, 17, 18], "Guitar": [19, 20, 21], "Knife": [22, 23],
    "Lamp": [24, 25, 26, 27], "Laptop": [28, 29], "Motorbike": [30, 31, 32, 33, 34, 35], "Mug": [36, 37],
    "Pistol": [38, 39, 40], "Rocket": [41, 42, 43], "Skateboard": [44, 45, 46], "Table": [47, 48, 49],
}
SHAPENET_PART_OF: dict[int, str] = {p: c for c, parts in SHAPENET_PART_SEG_CLASSES.items() for p in parts}


def _default_names(cfg: Mapping[str, Any]) -> dict[str, Any]:
    if cfg.get("task") == "seg":
        if cfg.get("num_parts") == 50 and cfg.get("num_categories") == 16:
            return dict(categories=SHAPENET_PART_CATEGORIES, seg_classes=SHAPENET_PART_SEG_CLASSES)
        return {}
    n = cfg.get("num_classes")
    if n == 40:
        return dict(class_names=list(MODELNET40_CLASSES))
    if n == 15:
        return dict(class_names=list(SCANOBJECTNN_CLASSES))
    return {}


def _strict_load(model: nn.Module, sd: Mapping[str, Any], where: str) -> None:
    """load_state_dict(strict=True), with a one-line CheckpointError naming the first mismatches."""
    from facet3d.core.checkpoints import check_state_dict

    check_state_dict(model.state_dict(), sd, where, "this RISurConv config")
    model.load_state_dict(dict(sd), strict=True)


def _scalar(v: Any) -> Any:
    try:
        return float(v) if not isinstance(v, (int, str)) else v
    except (TypeError, ValueError):
        return None


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Load a RISurConv model; returns (model in eval mode, meta).

    path: an official ``best_model.pth`` (config inferred from shapes), or facet3d's
          ``MODEL.safetensors`` / ``MODEL.json`` (config from the sidecar)
    meta: {"format", "task", "config", "class_names" (cls) or "categories"/"seg_classes" (seg),
           and the official epoch / instance_acc / class_acc or the sidecar's fields}
    Raises CheckpointError when the file is unreadable or matches no RISurConv layout.
    """
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p, info = read_sidecar(p, "RISurConv")
        cfg = info["config"]
        model = build_model(cfg)
        _strict_load(model, load_checkpoint(p), str(p))
        meta = dict(_default_names(cfg))
        meta.update({k: v for k, v in info.items() if k != "config"})
        meta.update(format="facet3d", task=cfg.get("task", "cls"), config=cfg)
        return model.eval(), meta
    obj = load_checkpoint(p, allow_numpy_scalars=True)
    sd = state_dict_of(obj)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}  # DataParallel dumps
    cfg = infer_config(sd)
    model = build_model(cfg)
    _strict_load(model, sd, str(p))
    meta: dict[str, Any] = dict(_default_names(cfg), format="official", task=cfg["task"], config=cfg)
    if isinstance(obj, dict):
        for k in ("epoch", "instance_acc", "class_acc", "test_acc", "best_acc"):
            if k in obj:
                meta[k] = _scalar(obj[k])
    return model.eval(), meta


def save_model(model: nn.Module, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> None:
    """Save `model` as ``path`` (.safetensors) plus a ``.json`` sidecar, each written atomically.

    meta: extra sidecar fields (class_names, trained_with, metrics, ...); "config" and "task" come
    from the model. The tensors are written before the sidecar, which names them.
    """
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise CheckpointError("save_model needs a RISurConv model (it has no .config)")
    info: dict[str, Any] = dict(_default_names(cfg))
    info.update(dict(meta or {}))
    info.update(config=cfg, task=cfg.get("task", "cls"))
    info.setdefault("trained_with", "facet3d")
    save_with_sidecar(model.state_dict(), path, info, metadata={"task": info["task"], "config": cfg})


def load_for_task(path: str | os.PathLike[str], task: str) -> tuple[nn.Module, dict[str, Any]]:
    """`load_model`, refusing a checkpoint made for the other task ("classification" / "segmentation")."""
    from facet3d.plugins.risurconv.predict import task_of

    model, meta = load_model(path)
    got = task_of(meta)
    if got != task:
        raise UsageError(f"{path}: a {got} checkpoint; this command needs a {task} model")
    return model, meta


def pick_category(categories: list[str], category: str | None) -> str | None:
    """The checkpoint's spelling of ``category`` (matched case-insensitively); None stays None."""
    if category is None:
        return None
    match = [c for c in categories if c.lower() == category.lower()]
    if not match:
        raise UsageError(f"unknown category '{category}' (have: {', '.join(categories)})")
    return match[0]
