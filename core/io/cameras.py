"""`read_cameras`: one reader for every camera layout facet3d knows, detected from the path and content.

Layouts (all -> core `Cameras`, float64, OpenCV axes, integer pixel centres):

* core JSON (``{"format": "facet3d.cameras", "cameras": [...]}`` or a bare list): `Cameras.load_json`;
* Blender / NeRF ``transforms*.json`` (``camera_angle_x`` + ``frames``): `Cameras.from_nerf_transforms`;
* 3D Gaussian Splatting / Triangle Splatting ``cameras.json`` (a list of ``id, img_name, width, height,
  position`` (camera centre), ``rotation`` (camera-to-world, OpenCV), ``fx, fy``; the principal point is
  the image centre, ``((W - 1) / 2, (H - 1) / 2)`` with integer pixel centres): `_read_3dgs`;
* Strecha / fountain-P11 ``cameras.json`` (``{"cameras": {name: {K, R_file, C, ...}}}``): `Cameras.load_strecha`;
* COLMAP model, text or binary: the model folder, one of its files, or a dataset root with
  ``sparse/0`` / ``sparse`` (`facet3d.core.io.colmap`).

A folder that is no COLMAP model is searched for ``cameras.json``, then ``transforms_test.json``,
``transforms_val.json``, ``transforms_train.json``, ``transforms.json``, then its only ``*.json``.

``image_size=(H, W)`` gives every camera that size: NeRF cameras are rebuilt from ``camera_angle_x``
at that size (their convention: principal point at the image centre), other cameras get K scaled
(`Cameras.resized`), cameras without a size get it as is.  Problems the caller should show the user
(lens distortion that is kept but not applied) come back as warning strings, never printed here.
"""

from __future__ import annotations

import json
from pathlib import Path

from facet3d.core.errors import FormatError, GeometryError, InputError

__all__ = ["read_cameras", "find_camera_file", "colmap_cameras", "camera_layout", "CAMERA_FILE_NAMES"]

CAMERA_FILE_NAMES = ("cameras.json", "transforms_test.json", "transforms_val.json", "transforms_train.json",
                     "transforms.json")


def find_camera_file(path: str | Path) -> Path:
    """The file (or COLMAP model folder) ``read_cameras`` reads for ``path`` (module docstring)."""
    from facet3d.core.io.colmap import find_colmap_model

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    model = find_colmap_model(p)
    if model is not None:
        return model
    if p.is_file():
        return p
    for name in CAMERA_FILE_NAMES:
        if (p / name).is_file():
            return p / name
    found = sorted(p.glob("*.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"{p}: folder has no camera JSON (cameras.json or transforms_*.json) "
                         "nor COLMAP model (cameras + images .txt/.bin, sparse/0)")
    raise InputError(f"{p}: several JSON files ({', '.join(f.name for f in found[:4])}); name the camera file")


def colmap_cameras(model) -> tuple[object, list[str]]:
    """A read `ColmapModel` -> (its `Cameras`, warnings: lens distortion kept but not applied)."""
    warnings = []
    if model.has_distortion:
        kinds = sorted({m for m, d in zip(model.camera_models, model.distorted) if d})
        warnings.append(f"{model.folder}: {sum(model.distorted)} of {len(model.distorted)} views have lens "
                        f"distortion ({', '.join(kinds)}); it is not applied: undistort the images first "
                        "(colmap image_undistorter)")
    return model.cameras, warnings


def camera_layout(data) -> str:
    """``"nerf"``, ``"strecha"`` or ``"core"`` from parsed JSON; FormatError for anything else."""
    if isinstance(data, dict) and "frames" in data and "camera_angle_x" in data:
        return "nerf"
    if isinstance(data, dict) and isinstance(data.get("cameras"), dict):
        return "strecha"
    if isinstance(data, list) and data and isinstance(data[0], dict) \
            and all(k in data[0] for k in ("position", "rotation", "fx", "fy")):
        return "3dgs"
    if isinstance(data, list) or (isinstance(data, dict) and isinstance(data.get("cameras"), list)):
        return "core"
    keys = ", ".join(sorted(data)[:6]) if isinstance(data, dict) else type(data).__name__
    raise FormatError(f"unknown camera layout (keys: {keys}); expected core camera JSON, NeRF transforms "
                      "(camera_angle_x + frames), 3DGS / Triangle Splatting cameras.json, Strecha cameras.json or a "
                      "COLMAP model")


def _read_3dgs(f: Path, data: list):
    """The 3DGS / Triangle Splatting ``cameras.json`` (module docstring) -> `Cameras` named by img_name."""
    import numpy as np

    from facet3d.core.structures.cameras import Cameras, intrinsics_matrix

    try:
        C = np.array([c["position"] for c in data], dtype=np.float64).reshape(-1, 3)
        R = np.array([c["rotation"] for c in data], dtype=np.float64).reshape(-1, 3, 3)
        W = [int(c["width"]) for c in data]
        H = [int(c["height"]) for c in data]
        K = np.stack([intrinsics_matrix(float(c["fx"]), float(c["fy"]), (w - 1) / 2.0, (h - 1) / 2.0).numpy()
                      for c, w, h in zip(data, W, H)])
        names = [str(c.get("img_name", c.get("id", i))) for i, c in enumerate(data)]
        return Cameras.from_centre(C, R, K, np.stack([H, W], 1), names)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{f}: malformed camera entry ({type(exc).__name__}: {exc})") from None
    except GeometryError as exc:  # non-finite values, shapes that do not agree
        raise InputError(f"{f}: {exc}") from None


def _read_nerf(f: Path, image_size):
    from facet3d.core.structures.cameras import Cameras

    h, w = image_size if image_size is not None else (None, None)
    try:
        cams = Cameras.from_nerf_transforms(f, width=w, height=h)
    except (OSError, KeyError, TypeError, ValueError, GeometryError) as exc:
        raise InputError(f"{f}: cannot read NeRF transforms ({type(exc).__name__}: {exc}; "
                         "give the image size when the images are absent)") from exc
    if image_size is not None and tuple(cams.image_size[0].tolist()) != tuple(image_size):
        # NeRF convention: K follows from camera_angle_x and the image size, so rebuild rather than rescale
        cams = Cameras.from_blender(cams.to_blender(), fov_x=cams.fov_x(), width=image_size[1],
                                    height=image_size[0], names=cams.names)
    return cams


def read_cameras(path: str | Path, image_size: tuple[int, int] | None = None) -> tuple[object, list[str]]:
    """Any supported camera layout (module docstring) -> ``(Cameras, warnings)``.

    image_size: (H, W) every camera should have, or None for the file's own (possibly none).
    Unreadable files raise `InputError`, unknown layouts `FormatError`, both naming the file.
    """
    from facet3d.core.io.colmap import read_colmap_model
    from facet3d.core.structures.cameras import Cameras

    f = find_camera_file(path)
    warnings: list[str] = []
    if f.is_dir():  # a COLMAP model folder
        cams, warnings = colmap_cameras(read_colmap_model(f))
    else:
        try:
            data = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{f}: cannot read cameras ({type(exc).__name__}: {exc})") from exc
        try:
            kind = camera_layout(data)
        except FormatError as exc:
            raise FormatError(f"{f}: {exc}") from None
        if kind == "nerf":
            return _read_nerf(f, image_size), warnings
        if kind == "3dgs":
            cams = _read_3dgs(f, data)
            return (cams.with_image_size(*image_size) if image_size is not None else cams), warnings
        try:
            cams = Cameras.load_strecha(f) if kind == "strecha" else Cameras.load_json(f)
        except (KeyError, TypeError, ValueError, GeometryError) as exc:
            raise InputError(f"{f}: malformed {kind} cameras ({type(exc).__name__}: {exc})") from exc
    if image_size is not None:
        cams = cams.with_image_size(*image_size)
    return cams, warnings
