"""Image loading and VGGT's preprocessing, exactly as the official ``load_and_preprocess_images``.

* RGBA images are composited on white, then converted to RGB; values become float32 ``/ 255``.
* ``crop``: width -> 518, height -> ``round(h * 518 / w / 14) * 14`` (PIL bicubic), then the height is
  centre-cropped to 518 when larger.
* ``pad``: the long side -> 518, the other -> ``round(.. / 14) * 14`` (bicubic), then padded with white
  (1.0) to 518 x 518, centred (the extra pixel of an odd padding goes bottom / right).

Upstream pads images of different resulting sizes to a common size with a printed warning; here that
is an `InputError` naming the images (a reconstruction wants one camera model per image size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import InputError, UsageError

TARGET = 518
MODES = ("crop", "pad")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Prepared:
    """images ``[S, 3, H, W]`` float32 in [0, 1]; original sizes ``(width, height)``; the resize target
    ``(width, height)`` before crop / pad and the ``(left, top)`` offset of that resized image in the
    output (negative: cropped)."""

    images: Tensor
    names: list[str]
    original_sizes: list[tuple[int, int]]
    resized_sizes: list[tuple[int, int]]
    offsets: list[tuple[int, int]]


def open_rgb(path: str | Path):
    """A PIL RGB image (RGBA composited on white); InputError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: is not a file")
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the image ({type(exc).__name__}: {exc})") from None
    if img.mode == "RGBA":
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def target_size(width: int, height: int, mode: str = "crop") -> tuple[int, int]:
    """The ``(width, height)`` the image is resized to before cropping / padding."""
    if mode == "pad" and height > width:
        return round(width * (TARGET / height) / 14) * 14, TARGET
    return TARGET, round(height * (TARGET / width) / 14) * 14


def _to_tensor(img) -> Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous().float().div(255)


def preprocess_image(img, mode: str = "crop") -> tuple[Tensor, tuple[int, int], tuple[int, int]]:
    """A PIL RGB image -> (``[3, H, W]``, resized (w, h), (left, top) offset)."""
    from PIL import Image

    if mode not in MODES:
        raise UsageError(f"--preprocess {mode!r}: expected crop or pad")
    w, h = img.size
    nw, nh = target_size(w, h, mode)
    if nw <= 0 or nh <= 0:
        raise InputError(f"image of {w}x{h} pixels is too narrow to resize to a multiple of 14")
    t = _to_tensor(img.resize((nw, nh), Image.Resampling.BICUBIC))
    left = top = 0
    if mode == "crop" and nh > TARGET:
        start = (nh - TARGET) // 2
        t = t[:, start:start + TARGET, :]
        top = -start
    if mode == "pad":
        hp, wp = TARGET - t.shape[1], TARGET - t.shape[2]
        if hp > 0 or wp > 0:
            top, left = hp // 2, wp // 2
            t = torch.nn.functional.pad(t, (left, wp - left, top, hp - top), mode="constant", value=1.0)
    return t, (nw, nh), (left, top)


def load_images(paths: Sequence[str | Path], mode: str = "crop") -> Prepared:
    """Read and preprocess ``paths`` (every image must give the same size) -> `Prepared`."""
    if not paths:
        raise UsageError("no images given")
    tensors, sizes, resized, offsets = [], [], [], []
    for p in paths:
        img = open_rgb(p)
        t, rs, off = preprocess_image(img, mode)
        tensors.append(t), sizes.append(img.size), resized.append(rs), offsets.append(off)
    shapes = [tuple(t.shape[1:]) for t in tensors]
    if len(set(shapes)) > 1:
        j = next(i for i, s in enumerate(shapes) if s != shapes[0])
        raise InputError(f"{paths[j]}: images of different sizes ({Path(paths[0]).name} {sizes[0][0]}x{sizes[0][1]} "
                         f"-> {shapes[0][1]}x{shapes[0][0]}, {Path(paths[j]).name} {sizes[j][0]}x{sizes[j][1]} -> "
                         f"{shapes[j][1]}x{shapes[j][0]}); use images of one size, or --preprocess pad")
    return Prepared(torch.stack(tensors), [Path(p).name for p in paths], sizes, resized, offsets)


def expand_image_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Image files and folders (their images, sorted by name, not recursive) -> files; UsageError if none."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif not p.exists():
            raise InputError(f"{p}: no such file")
        else:
            out.append(p)
    return out
