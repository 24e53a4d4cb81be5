"""Per-pixel inputs shared by the plugins: photos and depth maps (PIL and numpy only, no torch).

`read_rgb` reads any image PIL reads as float RGB, optionally box-resampled; `read_depth` reads the
depth-map files users have (``.npy`` in scene units, 16-bit ``.png`` / integer ``.tif`` in millimetres,
float ``.tif`` in scene units). Unreadable files raise InputError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facet3d.core.errors import InputError

__all__ = ["image_size", "read_rgb", "read_depth", "DEPTH_EXTENSIONS"]

DEPTH_EXTENSIONS = (".npy", ".png", ".tif", ".tiff")


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (the pixels are not decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None


def read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image as float32 ``[H, W, 3]`` in [0, 1] (alpha dropped), box-resampled to ``size`` = (h, w)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and (im.size[1], im.size[0]) != tuple(size):
                im = im.resize((size[1], size[0]), Image.Resampling.BOX)
            return np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None


def read_depth(path: str | Path, depth_scale: float | None = None) -> np.ndarray:
    """A depth map as float32 ``[H, W]`` in scene units; 0 where there is no depth.

    depth_scale: file units per scene unit; default 1000 for integer images (millimetres), else 1.
    Non-finite and non-positive values become 0; a 3-channel file keeps its first channel.
    """
    p = Path(path)
    try:
        if p.suffix.lower() == ".npy":
            d = np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as im:
                d = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the depth map ({type(exc).__name__}: {exc})") from None
    integer = np.issubdtype(d.dtype, np.integer) and p.suffix.lower() != ".npy"
    scale = depth_scale or (1000.0 if integer else 1.0)
    d = np.asarray(d, dtype=np.float32)
    if d.ndim == 3:
        d = d[..., 0]
    if d.ndim != 2:
        raise InputError(f"{p}: a depth map must be one channel [H, W], got shape {d.shape}")
    d = d / np.float32(scale)
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
