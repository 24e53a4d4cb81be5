"""Multi-view datasets for fitting: Blender/NeRF-synthetic folders and COLMAP scenes -> tensors.

`load_dataset` reads every image into memory (float32 RGB in [0, 1], alpha composited on the
background), builds float32 core `Cameras` (OpenCV axes, integer pixel centres) and splits the
views into train / test:

* ``blender``: ``transforms_train.json`` (+ ``transforms_test.json`` when present with its images;
  otherwise every ``holdout``-th train view is held out), or one transforms file.  Intrinsics from
  ``camera_angle_x`` with the principal point at the image centre; no SfM points; scene box
  ``[-1.5, 1.5]^3`` (the NeRF-synthetic objects fit in it).
* ``colmap``: ``images/`` + ``sparse/0`` (or ``sparse``, or the model beside ``images/``), text or
  binary (`facet3d.core.io.colmap`).  Views sorted by image name; test = every ``holdout``-th
  (``index % holdout == 0``, 3DGS's ``llffhold``).  Points + colours for initialisation, scene box
  = the 1st-99th percentile box of the points, padded.  Lens distortion is kept in the cameras but
  not applied: a warning is returned in ``MultiViewDataset.warnings``.

Cameras are read with core's `facet3d.core.io.cameras` (the one camera reader); `dataset_to` moves
a dataset's tensors to the training device.

``max_size`` / ``downscale`` resample the images with a box (area) filter and scale the
intrinsics consistently (`Cameras.resized`: ``u' = (u + 0.5) s - 0.5``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facet3d.core.errors import GeometryError, InputError, UsageError
from facet3d.core.io.images import image_size
from facet3d.core.structures.cameras import Cameras

__all__ = ["Views", "MultiViewDataset", "load_dataset", "detect_format", "dataset_to", "views_to", "BLENDER_BOUNDS"]

BLENDER_BOUNDS = 1.5           # NeRF-synthetic objects lie inside [-1.5, 1.5]^3
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG", ".webp", ".tif", ".tiff", ".bmp")
_BOUNDS_PAD = 0.1              # COLMAP box: percentile box grown by 10% of its size on each side


@dataclass
class Views:
    """B views of one size.

    images: [B, H, W, 3] float32 in [0, 1], RGBA composited on the dataset's background
    cameras: Cameras      # B cameras, float32, image_size (H, W), names = ``names``
    names: list[str]      # B image paths relative to the dataset root (or COLMAP image names)
    masks: [B, H, W] float32 alpha, or None when no image had an alpha channel
    """

    images: torch.Tensor
    cameras: Cameras
    names: list[str]
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Views":
        return views_to(self, device, dtype)


@dataclass
class MultiViewDataset:
    """train / test views, optional SfM points and a scene box.

    points: [P, 3] float32 (COLMAP) or None (Blender); point_colors: [P, 3] float32 in [0, 1]
    bounds: (lo [3], hi [3]) float32 scene box
    """

    train: Views
    test: Views
    points: torch.Tensor | None
    point_colors: torch.Tensor | None
    bounds: tuple[torch.Tensor, torch.Tensor]
    background: tuple[float, float, float]
    source: str
    format: str
    warnings: list[str] = field(default_factory=list)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "MultiViewDataset":
        return dataset_to(self, device, dtype)


# ---------------------------------------------------------------------------------------- device
def _move(t: torch.Tensor | None, device, dtype) -> torch.Tensor | None:
    if t is None:
        return None
    return t.to(device, dtype) if dtype is not None and t.is_floating_point() else t.to(device)


def views_to(views, device=None, dtype: torch.dtype | None = None) -> Views:
    """``views`` (a `Views` or anything with images, cameras, names, masks) with its images, masks and
    cameras on ``device`` (and float tensors in ``dtype`` when given)."""
    return Views(_move(views.images, device, dtype), views.cameras.to(device, dtype), list(views.names),
                 _move(getattr(views, "masks", None), device, dtype))


def dataset_to(ds, device=None, dtype: torch.dtype | None = None) -> MultiViewDataset:
    """Every tensor of a dataset (a `MultiViewDataset` or one alike: views, points, colours, bounds) on
    ``device`` (float tensors in ``dtype`` when given); the training loop keeps all of it there."""
    return MultiViewDataset(views_to(ds.train, device, dtype), views_to(ds.test, device, dtype),
                            _move(ds.points, device, dtype), _move(ds.point_colors, device, dtype),
                            tuple(_move(b, device, dtype) for b in ds.bounds), tuple(ds.background),
                            getattr(ds, "source", ""), getattr(ds, "format", ""), list(getattr(ds, "warnings", [])))


# ---------------------------------------------------------------------------------------- detection
def detect_format(path: str | Path) -> str:
    """``"blender"`` or ``"colmap"`` from what ``path`` holds; `InputError` when neither."""
    from facet3d.core.io.colmap import find_colmap_model

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_file() and p.suffix == ".json" and p.name.startswith("transforms"):
        return "blender"
    if p.is_dir() and (any(p.glob("transforms*.json"))):
        return "blender"
    if find_colmap_model(p) is not None:
        return "colmap"
    raise InputError(f"{p}: not a multi-view dataset (looked for transforms_*.json, sparse/0, sparse/ and "
                     "cameras.txt/.bin + images.txt/.bin)")


# ---------------------------------------------------------------------------------------- images
def _target_size(h: int, w: int, max_size: int | None, downscale: float | None) -> tuple[int, int]:
    if downscale is not None:
        h, w = max(1, round(h / downscale)), max(1, round(w / downscale))
    if max_size is not None and max(h, w) > max_size:
        s = max_size / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    return h, w


def _read_image(path: Path, background: Sequence[float], expect: tuple[int, int], size: tuple[int, int] | None):
    """-> (rgb [H, W, 3] float32 composited on background, alpha [H, W] float32 or None).

    expect: (H, W) the file must have; ``size`` (H, W): resample after compositing, per channel in
    float with a box filter (Pillow's premultiplied 8-bit RGBA resize would quantise).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from exc
    if arr.shape[:2] != tuple(expect):
        raise InputError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, expected {expect[1]}x{expect[0]}")
    rgb, alpha = arr[..., :3], (arr[..., 3] if has_alpha else None)
    if alpha is not None:
        rgb = rgb * alpha[..., None] + np.asarray(background, np.float32) * (1.0 - alpha[..., None])
    if size is not None and size != rgb.shape[:2]:
        H, W = size
        chans = [rgb[..., c] for c in range(3)] + ([alpha] if alpha is not None else [])
        out = [np.asarray(Image.fromarray(np.ascontiguousarray(c), mode="F").resize((W, H), Image.Resampling.BOX))
               for c in chans]
        rgb = np.stack(out[:3], -1)
        alpha = out[3] if alpha is not None else None
    return np.clip(rgb, 0.0, 1.0), alpha


def _load_views(paths: list[Path], cams: Cameras, names: list[str], background, max_size, downscale) -> Views:
    """Read ``paths`` (each of its camera's size, checked) -> `Views` at the target size, float32 cameras.

    The callers have checked that all views share one size (the first camera's)."""
    if not paths:
        return _empty_views(cams)
    H0, W0 = (int(v) for v in cams.image_size[0].tolist())
    H, W = _target_size(H0, W0, max_size, downscale)
    imgs, alphas = [], []
    for p, hw in zip(paths, cams.image_size.tolist()):
        rgb, a = _read_image(p, background, tuple(hw), None if (H, W) == (H0, W0) else (H, W))
        imgs.append(torch.from_numpy(np.array(rgb, dtype=np.float32)))  # a writable copy
        alphas.append(None if a is None else torch.from_numpy(np.array(a, dtype=np.float32)))
    if (H, W) != (H0, W0):
        cams = cams.resized(H, W)
    masks = None
    if any(a is not None for a in alphas):
        masks = torch.stack([torch.ones(H, W) if a is None else a for a in alphas]).float()
    cams = cams.to(dtype=torch.float32)
    cams.names = list(names)
    return Views(torch.stack(imgs).float(), cams, list(names), masks)


def _empty_views(cams: Cameras, size: tuple[int, int] | None = None) -> Views:
    H, W = size or (0, 0)
    none = cams[torch.zeros(0, dtype=torch.long)].to(dtype=torch.float32)
    return Views(torch.zeros(0, H, W, 3), none, [], None)


def _split(n: int, holdout: int) -> tuple[list[int], list[int]]:
    if holdout < 0:
        raise UsageError(f"holdout must be >= 0, got {holdout}")
    if holdout == 0:
        return list(range(n)), []
    test = [i for i in range(n) if i % holdout == 0]
    return [i for i in range(n) if i % holdout != 0], test


# ---------------------------------------------------------------------------------------- blender
def _frame_image(root: Path, file_path: str) -> Path | None:
    """A frame's image: ``file_path`` relative to the transforms file, with or without extension / './'."""
    rel = file_path[2:] if file_path.startswith("./") else file_path
    p = root / rel
    if p.suffix in _IMAGE_EXTS and p.is_file():
        return p
    for ext in _IMAGE_EXTS[:3] + _IMAGE_EXTS[5:]:
        q = p.with_name(p.name + ext)
        if q.is_file():
            return q
    return p if p.is_file() else None


def _frame_files(path: Path) -> tuple[list[str], dict]:
    """-> (the frames' file_path entries, the file's top-level fields) of a transforms file."""
    try:
        meta = json.loads(path.read_text())
        files = [str(f["file_path"]) for f in meta["frames"]]
        meta["camera_angle_x"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the transforms file ({type(exc).__name__}: {exc})") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a NeRF transforms file (needs camera_angle_x and frames with "
                         f"file_path and transform_matrix; {type(exc).__name__}: {exc})") from exc
    if not files:
        raise InputError(f"{path}: the transforms file has no frames")
    return files, meta


def _blender_split(path: Path, root: Path, require: bool):
    """One transforms file -> (Cameras float64, image paths, names), or None when ``require`` is False
    and none of its images exists."""
    from facet3d.core.io.cameras import read_cameras

    files, meta = _frame_files(path)
    imgs = [_frame_image(root, f) for f in files]
    missing = [f for f, p in zip(files, imgs) if p is None]
    if missing:
        if not require and len(missing) == len(files):
            return None
        raise InputError(f"{root / missing[0]}: image of {path.name} not found (tried with and without .png/.jpg)")
    sizes = [image_size(p) for p in imgs]
    H, W = sizes[0]
    if "w" in meta and "h" in meta and (int(meta["h"]), int(meta["w"])) != (H, W):
        raise InputError(f"{imgs[0]}: image is {W}x{H} but {path.name} says {meta['w']}x{meta['h']}")
    for p, hw in zip(imgs, sizes):
        if hw != (H, W):
            raise InputError(f"{p}: image size {hw[1]}x{hw[0]} differs from {imgs[0].name}'s {W}x{H}")
    names = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in imgs]
    try:
        cams, _ = read_cameras(path, (H, W))
    except GeometryError as exc:
        raise InputError(f"{path}: {exc}") from exc
    cams.names = names
    return cams, imgs, names


def _load_blender(path: Path, holdout, background, max_size, downscale) -> tuple:
    if path.is_dir():
        root = path
        names = ("transforms_train.json", "transforms.json")
        train_file = next((root / n for n in names if (root / n).is_file()), None)
        if train_file is None:
            raise InputError(f"{root}: no transforms_train.json or transforms.json")
    else:
        root, train_file = path.parent, path
    cams, imgs, names = _blender_split(train_file, root, require=True)
    test_file = root / "transforms_test.json"
    test = None
    if train_file.name == "transforms_train.json" and test_file.is_file():
        test = _blender_split(test_file, root, require=False)
    warnings = []
    if test is None and test_file.is_file():
        warnings.append(f"{test_file}: its images are absent; every {holdout}-th train view is held out instead")
    if test is not None:
        tc, ti, tn = test
        if tc.image_size[0].tolist() != cams.image_size[0].tolist():
            raise InputError(f"{ti[0]}: test images are {int(tc.width[0])}x{int(tc.height[0])}, train images "
                             f"{int(cams.width[0])}x{int(cams.height[0])}")
        train_v = _load_views(imgs, cams, names, background, max_size, downscale)
        test_v = _load_views(ti, tc, tn, background, max_size, downscale)
    else:
        tr, te = _split(len(imgs), holdout)
        train_v = _load_views([imgs[i] for i in tr], cams[tr], [names[i] for i in tr], background, max_size, downscale)
        test_v = (_load_views([imgs[i] for i in te], cams[te], [names[i] for i in te], background, max_size, downscale)
                  if te else _empty_views(cams, train_v.image_size))
    b = torch.full((3,), BLENDER_BOUNDS)
    return train_v, test_v, None, None, (-b, b.clone()), warnings


# ---------------------------------------------------------------------------------------- colmap
def _colmap_layout(path: Path, images_dir: str | None) -> tuple[Path, Path]:
    """-> (model folder, images folder).  The dataset root is the folder above ``sparse/[0]``."""
    from facet3d.core.io.colmap import find_colmap_model

    model = find_colmap_model(path)
    if model is None:
        raise InputError(f"{path}: no COLMAP model (looked for sparse/0, sparse/ and cameras + images .txt/.bin)")
    if path.is_dir() and model != path:
        root = path
    elif model.name == "sparse":
        root = model.parent
    elif model.parent.name == "sparse":
        root = model.parent.parent
    else:
        root = model
    images = Path(images_dir) if images_dir and Path(images_dir).is_absolute() else root / (images_dir or "images")
    if not images.is_dir():
        raise InputError(f"{images}: images folder not found (give images_dir)")
    return model, images


def _load_colmap(path: Path, holdout, background, max_size, downscale, images_dir) -> tuple:
    from facet3d.core.io.cameras import colmap_cameras
    from facet3d.core.io.colmap import read_colmap_model

    model_dir, img_dir = _colmap_layout(path, images_dir)
    m = read_colmap_model(model_dir)
    cams, warnings = colmap_cameras(m)  # the cameras and warnings core's read_cameras gives
    imgs = []
    for name in m.image_names:
        p = img_dir / name
        if not p.is_file():
            raise InputError(f"{p}: image of the COLMAP model not found")
        imgs.append(p)
    # images of another resolution than the model (e.g. 3DGS/Mip-NeRF 360 ``images_4``): scale K when the
    # aspect ratio agrees to rounding
    sizes = [image_size(p) for p in imgs]
    model_hw = [tuple(hw) for hw in cams.image_size.tolist()]
    if sizes != model_hw:
        if len(set(sizes)) != 1:
            first = sizes[0]
            bad = next(i for i, s in enumerate(sizes) if s != first)
            raise InputError(f"{imgs[bad]}: image size {sizes[bad][1]}x{sizes[bad][0]} differs from "
                             f"{imgs[0].name}'s {first[1]}x{first[0]}")
        H, W = sizes[0]
        for p, (h0, w0) in zip(imgs, model_hw):
            if abs(h0 * W / w0 - H) > 1.0 + 1e-9 or abs(w0 * H / h0 - W) > 1.0 + 1e-9:
                raise InputError(f"{p}: image is {W}x{H} but its COLMAP camera is {w0}x{h0} (not a rescaled copy)")
        cams = cams.resized(H, W)
        h0, w0 = model_hw[0]
        warnings.append(f"images in {img_dir.name}/ are {W}x{H}, the model's cameras {w0}x{h0}: "
                        "intrinsics scaled to the images")
    elif len(set(sizes)) != 1:
        first = sizes[0]
        bad = next(i for i, s in enumerate(sizes) if s != first)
        raise InputError(f"{imgs[bad]}: image size {sizes[bad][1]}x{sizes[bad][0]} differs from "
                         f"{imgs[0].name}'s {first[1]}x{first[0]} (views must share one size)")
    names = list(m.image_names)
    tr, te = _split(len(imgs), holdout)
    train_v = _load_views([imgs[i] for i in tr], cams[tr], [names[i] for i in tr], background, max_size, downscale)
    test_v = (_load_views([imgs[i] for i in te], cams[te], [names[i] for i in te], background, max_size, downscale)
              if te else _empty_views(cams, train_v.image_size))
    points = colors = None
    if m.points is not None and len(m.points):
        points = torch.from_numpy(m.points).float()
        colors = torch.from_numpy(m.colors.astype(np.float32) / 255.0)
        lo = torch.quantile(points, 0.01, dim=0)
        hi = torch.quantile(points, 0.99, dim=0)
    else:
        warnings.append(f"{model_dir}: no 3-D points; scene box from the camera centres")
        c = cams.centers().float()
        lo, hi = c.min(0).values, c.max(0).values
    pad = _BOUNDS_PAD * (hi - lo).clamp_min(1e-6)
    return train_v, test_v, points, colors, (lo - pad, hi + pad), warnings


# ---------------------------------------------------------------------------------------- entry point
def load_dataset(path, format: str | None = None, holdout: int = 8, background=(1.0, 1.0, 1.0),
                 max_size: int | None = None, downscale: float | None = None,
                 images_dir: str | None = None) -> MultiViewDataset:
    """Read a Blender/NeRF or COLMAP dataset (module docstring) -> `MultiViewDataset`.

    holdout: every ``holdout``-th view (index % holdout == 0) is a test view; 0: no test views
    (Blender folders with ``transforms_test.json`` and its images use that file instead).
    background: RGB in [0, 1] under transparent pixels.  max_size: longest image side after
    resampling; downscale: divide both sides by this factor (both: downscale, then cap).
    images_dir: COLMAP images folder relative to the dataset root (default ``images``).
    Missing / unreadable images and inconsistent sizes raise `InputError` naming the file.
    """
    p = Path(path)
    fmt = (format or detect_format(p)).lower()
    if fmt not in ("blender", "colmap"):
        raise UsageError(f"format {format!r}: expected 'blender', 'colmap' or None (auto-detect)")
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    bg = tuple(float(v) for v in background)
    if len(bg) != 3 or not all(0.0 <= v <= 1.0 for v in bg):
        raise UsageError(f"background {background!r}: expected 3 values in [0, 1]")
    if max_size is not None and int(max_size) < 1:
        raise UsageError(f"max_size must be >= 1, got {max_size}")
    if downscale is not None and not (math.isfinite(downscale) and downscale > 0):
        raise UsageError(f"downscale must be > 0, got {downscale}")
    if fmt == "blender":
        tr, te, pts, cols, bounds, warn = _load_blender(p, holdout, bg, max_size, downscale)
    else:
        tr, te, pts, cols, bounds, warn = _load_colmap(p, holdout, bg, max_size, downscale, images_dir)
    return MultiViewDataset(tr, te, pts, cols, (bounds[0].float(), bounds[1].float()), bg, str(p), fmt, warn)
