"""Read a COLMAP sparse model's cameras and image poses (text or binary) into core `Cameras`.

Accepted paths: a model folder holding ``cameras.txt`` + ``images.txt`` or ``cameras.bin`` +
``images.bin``, or one of those files (its sibling is found beside it).  Points are not read.

Conventions: COLMAP's qvec/tvec are world-to-camera in OpenCV axes, exactly core `Cameras`.  COLMAP
puts the centre of the top-left pixel at (0.5, 0.5), core at (0, 0): the principal point is
shifted by -0.5.  Lens distortion parameters are ignored (undistort the images first); they are
listed in ``Cameras.meta_distortion`` for the caller to warn about.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from facet3d.core.errors import InputError

__all__ = ["read_colmap_cameras", "is_colmap_path"]

# model id -> (name, number of params); intrinsics are the first params (see _intrinsics)
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
          4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
          8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
_BY_NAME = {name: (mid, n) for mid, (name, n) in MODELS.items()}
_SINGLE_F = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "FOV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"}


def _intrinsics(model: str, params: list[float]) -> tuple[np.ndarray, bool]:
    """-> (K [3, 3] in core's pixel convention, whether the model has distortion terms)."""
    if model in _SINGLE_F:
        fx = fy = params[0]
        cx, cy = params[1], params[2]
        extra = params[3:]
    else:
        fx, fy, cx, cy = params[:4]
        extra = params[4:]
    K = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    return K, any(abs(x) > 0 for x in extra)


def _read_text(folder: Path) -> tuple[dict, list]:
    cams = {}
    for line in (folder / "cameras.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tok = line.split()
        cams[int(tok[0])] = (tok[1], int(tok[2]), int(tok[3]), [float(x) for x in tok[4:]])
    images = []
    lines = [ln for ln in (folder / "images.txt").read_text().splitlines() if not ln.startswith("#")]
    # two lines per image: the pose, then its 2-D points (possibly empty)
    for i in range(0, len(lines), 2):
        tok = lines[i].split()
        if len(tok) < 10:
            continue
        images.append((int(tok[0]), [float(x) for x in tok[1:5]], [float(x) for x in tok[5:8]], int(tok[8]), " ".join(tok[9:])))
    return cams, images


def _read_binary(folder: Path) -> tuple[dict, list]:
    cams = {}
    with open(folder / "cameras.bin", "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        for _ in range(n):
            cid, mid, w, h = struct.unpack("<iiQQ", fh.read(24))
            if mid not in MODELS:
                raise InputError(f"{folder / 'cameras.bin'}: unknown camera model id {mid}")
            name, npar = MODELS[mid]
            cams[cid] = (name, w, h, list(struct.unpack(f"<{npar}d", fh.read(8 * npar))))
    images = []
    with open(folder / "images.bin", "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        for _ in range(n):
            iid, *qt, cid = struct.unpack("<i7di", fh.read(64))
            name = b""
            while (c := fh.read(1)) not in (b"\x00", b""):
                name += c
            (npts,) = struct.unpack("<Q", fh.read(8))
            fh.seek(24 * npts, 1)  # x, y (double) + point3D id (int64) per observation
            images.append((iid, list(qt[:4]), list(qt[4:]), cid, name.decode("utf-8", "replace")))
    return cams, images


def is_colmap_path(path: str | Path) -> bool:
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    return any((folder / f).is_file() for f in ("images.txt", "images.bin")) and \
        (p.is_dir() or p.name in ("cameras.txt", "images.txt", "cameras.bin", "images.bin"))


def read_colmap_cameras(path: str | Path):
    """COLMAP model (folder or one of its files) -> `Cameras` sorted by image name (names = image names)."""
    from facet3d.core.structures.cameras import Cameras

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    try:
        if (folder / "images.txt").is_file() and (folder / "cameras.txt").is_file() and p.suffix != ".bin":
            cams, images = _read_text(folder)
        elif (folder / "images.bin").is_file() and (folder / "cameras.bin").is_file():
            cams, images = _read_binary(folder)
        else:
            raise InputError(f"{p}: not a COLMAP model (needs cameras.txt + images.txt or cameras.bin + images.bin)")
    except (OSError, ValueError, IndexError, struct.error) as exc:
        raise InputError(f"{p}: cannot read the COLMAP model ({type(exc).__name__}: {exc})") from exc
    if not images:
        raise InputError(f"{p}: the COLMAP model has no registered image")
    images.sort(key=lambda im: im[4])
    K, q, t, sizes, names, distorted = [], [], [], [], [], False
    for _iid, qvec, tvec, cid, name in images:
        if cid not in cams:
            raise InputError(f"{p}: image {name} refers to camera {cid}, which the model does not define")
        model, w, h, params = cams[cid]
        if model not in _BY_NAME or len(params) < _BY_NAME[model][1]:
            raise InputError(f"{p}: camera {cid} has model {model} with {len(params)} parameters")
        k, dist = _intrinsics(model, params)
        distorted |= dist
        K.append(k), q.append(qvec), t.append(tvec), sizes.append((h, w)), names.append(name)
    cameras = Cameras.from_colmap(np.array(q), np.array(t), np.array(K), np.array(sizes), names)
    cameras.meta_distortion = distorted  # type: ignore[attr-defined]
    return cameras
