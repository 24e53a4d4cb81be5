"""COLMAP sparse models (text or binary): cameras, image poses and 3-D points, read and written.

A model is a folder holding ``cameras.txt`` + ``images.txt`` (+ ``points3D.txt``) or the ``.bin``
triple.  Readers accept the folder or one of its files (the siblings are found beside it);
`find_colmap_model` also looks in ``sparse/0`` and ``sparse`` under a dataset root.  The binary
layout is the one of COLMAP's ``scripts/python/read_write_model.py`` (little endian):

* cameras.bin: uint64 count; per camera int32 id, int32 model_id, uint64 width, uint64 height,
  float64 params[n(model)];
* images.bin: uint64 count; per image int32 id, float64 qvec[4], float64 tvec[3], int32 camera_id,
  name (null terminated), uint64 num_points2D, then (float64 x, float64 y, int64 point3D_id) each;
* points3D.bin: uint64 count; per point uint64 id, float64 xyz[3], uint8 rgb[3], float64 error,
  uint64 track_length, then (int32 image_id, int32 point2D_idx) each.

Conventions: COLMAP's qvec (w, x, y, z) / tvec are world-to-camera in OpenCV axes, exactly core
`Cameras`.  COLMAP puts the centre of the top-left pixel at (0.5, 0.5), core at (0, 0): the
principal point is shifted by -0.5 on read and +0.5 on write.  Lens distortion is read into
`Cameras.distortion` / ``distortion_model`` (one model per batch: cameras of one family are promoted
to the richest model among them, e.g. SIMPLE_RADIAL + OPENCV -> OPENCV with k2 = p1 = p2 = 0; a
model mixing pinhole-family and fisheye/FOV cameras keeps no distortion) but not applied
(undistort the images first); `ColmapModel.distorted` says which images have non-zero terms.
The writer stores PINHOLE cameras, or the cameras' distortion model (one COLMAP camera per
distinct model + intrinsics + size), no 2-D observations and empty point tracks: enough for
every reader of poses and points.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facet3d.core.errors import GeometryError, InputError

__all__ = ["ColmapModel", "read_colmap_model", "read_colmap_cameras", "write_colmap_model", "is_colmap_path",
           "find_colmap_model", "MODELS"]

# model id -> (name, number of params); intrinsics are the first params (see _intrinsics)
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
          4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
          8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
_BY_NAME = {name: (mid, n) for mid, (name, n) in MODELS.items()}
# one focal length (FOV has fx, fy: fx fy cx cy omega)
_SINGLE_F = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"}
# distortion families, poorest to richest: each model's coefficients embed by name in the next ones'
_CHAINS = (("PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"),
           ("SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "OPENCV_FISHEYE", "THIN_PRISM_FISHEYE"), ("FOV",))
# the two-focal model a single-focal one is written as when fx != fy
_TWO_F = {"SIMPLE_RADIAL": "OPENCV", "RADIAL": "OPENCV", "SIMPLE_RADIAL_FISHEYE": "OPENCV_FISHEYE",
          "RADIAL_FISHEYE": "OPENCV_FISHEYE"}
# fisheye / FOV models are not pinhole even with zero coefficients
_NOT_PINHOLE = {"OPENCV_FISHEYE", "FOV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "THIN_PRISM_FISHEYE"}
_FILES = ("cameras", "images", "points3D")


@dataclass
class ColmapModel:
    """Everything read from a COLMAP model; per-image lists follow ``image_names`` (sorted by name).

    cameras: Cameras          # B cameras, float64, core pixel convention, names = image names
    image_names: list[str]    # B
    points: [P, 3] float64 | None   (None when the model has no points3D file)
    colors: [P, 3] uint8 | None
    errors: [P] float64 | None      (mean reprojection error per point, pixels)
    point_ids: [P] int64 | None
    camera_models: list[str]  # B COLMAP model names (PINHOLE, OPENCV, ...)
    distorted: list[bool]     # B: the camera has non-zero distortion terms (ignored by `cameras`)
    """

    cameras: object
    image_names: list[str]
    points: np.ndarray | None = None
    colors: np.ndarray | None = None
    errors: np.ndarray | None = None
    point_ids: np.ndarray | None = None
    camera_models: list[str] = field(default_factory=list)
    distorted: list[bool] = field(default_factory=list)
    folder: Path | None = None
    binary: bool = False

    @property
    def has_distortion(self) -> bool:
        return any(self.distorted)


# ---------------------------------------------------------------------------------------- paths
def _model_files(folder: Path, ext: str) -> bool:
    return (folder / f"cameras{ext}").is_file() and (folder / f"images{ext}").is_file()


def is_colmap_path(path: str | Path) -> bool:
    """True for a model folder or one of its cameras/images/points3D files."""
    p = Path(path)
    if p.is_dir():
        return _model_files(p, ".txt") or _model_files(p, ".bin")
    return p.is_file() and p.stem in _FILES and p.suffix in (".txt", ".bin") and _model_files(p.parent, p.suffix)


def find_colmap_model(path: str | Path) -> Path | None:
    """The model folder for ``path``: the path itself (folder or model file), ``sparse/0`` or ``sparse``
    under it; None when there is none."""
    p = Path(path)
    if is_colmap_path(p):
        return p if p.is_dir() else p.parent
    if p.is_dir():
        for sub in (p / "sparse" / "0", p / "sparse"):
            if sub.is_dir() and is_colmap_path(sub):
                return sub
    return None


def _pick(path: Path) -> tuple[Path, str]:
    """-> (model folder, ".txt" | ".bin"); text wins when both exist unless a .bin file was named."""
    folder = path if path.is_dir() else path.parent
    order = (".bin", ".txt") if path.suffix == ".bin" else (".txt", ".bin")
    for ext in order:
        if _model_files(folder, ext):
            return folder, ext
    raise InputError(f"{path}: not a COLMAP model (needs cameras.txt + images.txt or cameras.bin + images.bin)")


# ---------------------------------------------------------------------------------------- text
def _text_lines(path: Path) -> list[str]:
    try:
        return [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def _read_text(folder: Path) -> tuple[dict, list, tuple | None]:
    where = [folder]  # the file being parsed, for the error message
    try:
        return _parse_text(folder, where)
    except ValueError as exc:  # int()/float() of a bad token; the message names the token
        raise InputError(f"{where[0]}: malformed COLMAP text file ({exc})") from exc


def _parse_text(folder: Path, where: list) -> tuple[dict, list, tuple | None]:
    cams = {}
    f = where[0] = folder / "cameras.txt"
    for line in _text_lines(f):
        if not line.strip():
            continue
        tok = line.split()
        if len(tok) < 5:
            raise InputError(f"{f}: malformed camera line {line.strip()!r}")
        cams[int(tok[0])] = (tok[1], int(tok[2]), int(tok[3]), [float(x) for x in tok[4:]])
    images = []
    f = where[0] = folder / "images.txt"
    lines = _text_lines(f)
    # two lines per image: the pose, then its 2-D points (possibly empty)
    for i in range(0, len(lines), 2):
        tok = lines[i].split()
        if not tok:
            continue
        if len(tok) < 10:
            raise InputError(f"{f}: malformed image line {lines[i].strip()[:80]!r}")
        images.append((int(tok[0]), [float(x) for x in tok[1:5]], [float(x) for x in tok[5:8]], int(tok[8]),
                       " ".join(tok[9:])))
    points = None
    f = where[0] = folder / "points3D.txt"
    if f.is_file():
        ids, xyz, rgb, err = [], [], [], []
        for line in _text_lines(f):
            tok = line.split()
            if not tok:
                continue
            if len(tok) < 8:
                raise InputError(f"{f}: malformed point line {line.strip()[:80]!r}")
            ids.append(int(tok[0]))
            xyz.append([float(x) for x in tok[1:4]])
            rgb.append([int(x) for x in tok[4:7]])
            err.append(float(tok[7]))
        points = (np.array(ids, dtype=np.int64), np.array(xyz, dtype=np.float64).reshape(-1, 3),
                  np.array(rgb, dtype=np.int64).reshape(-1, 3), np.array(err, dtype=np.float64))
        if points[2].size and (points[2].min() < 0 or points[2].max() > 255):
            raise InputError(f"{f}: point colours outside 0..255")
        points = points[:2] + (points[2].astype(np.uint8),) + points[3:]
    return cams, images, points


# ---------------------------------------------------------------------------------------- binary
class _Reader:
    """Sequential little-endian reads of a whole file; truncation -> InputError naming the file."""

    def __init__(self, path: Path) -> None:
        try:
            self.path, self.buf, self.pos = path, path.read_bytes(), 0
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise InputError(f"{self.path}: truncated COLMAP binary file (needs {self.pos + size} bytes, "
                             f"has {len(self.buf)})")
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return out

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise InputError(f"{self.path}: truncated COLMAP binary file (needs {self.pos + n} bytes, "
                             f"has {len(self.buf)})")
        self.pos += n

    def cstring(self) -> str:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            raise InputError(f"{self.path}: truncated COLMAP binary file (unterminated image name)")
        s = self.buf[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return s

    def count(self, min_record: int) -> int:
        (n,) = self.take("<Q")
        # a garbage count would otherwise loop for ages before hitting the end of the file
        if n * min_record > len(self.buf) - self.pos:
            raise InputError(f"{self.path}: truncated or corrupt COLMAP binary file ({n} records announced, "
                             f"{len(self.buf) - self.pos} bytes left)")
        return n

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise InputError(f"{self.path}: corrupt COLMAP binary file ({len(self.buf) - self.pos} trailing bytes)")


def _read_binary(folder: Path) -> tuple[dict, list, tuple | None]:
    cams = {}
    r = _Reader(folder / "cameras.bin")
    for _ in range(r.count(24)):
        cid, mid, w, h = r.take("<iiQQ")
        if mid not in MODELS:
            raise InputError(f"{r.path}: unknown camera model id {mid} (corrupt file?)")
        name, npar = MODELS[mid]
        cams[cid] = (name, w, h, list(r.take(f"<{npar}d")))
    r.done()
    images = []
    r = _Reader(folder / "images.bin")
    for _ in range(r.count(64 + 1 + 8)):
        iid, *qt, cid = r.take("<i7di")
        name = r.cstring()
        (npts,) = r.take("<Q")
        r.skip(24 * npts)  # x, y (float64) + point3D id (int64) per observation
        images.append((iid, list(qt[:4]), list(qt[4:]), cid, name))
    r.done()
    points = None
    if (folder / "points3D.bin").is_file():
        r = _Reader(folder / "points3D.bin")
        n = r.count(43 + 8)
        ids, xyz, rgb, err = (np.empty(n, np.int64), np.empty((n, 3)), np.empty((n, 3), np.uint8), np.empty(n))
        for i in range(n):
            pid, x, y, z, cr, cg, cb, e, tl = r.take("<Q3d3BdQ")
            ids[i], xyz[i], rgb[i], err[i] = pid, (x, y, z), (cr, cg, cb), e
            r.skip(8 * tl)  # track: (int32 image id, int32 point2D idx) per observation
        r.done()
        points = (ids, xyz, rgb, err)
    return cams, images, points


# ---------------------------------------------------------------------------------------- read
def _intrinsics(model: str, params: list[float]) -> tuple[np.ndarray, list[float], bool]:
    """-> (K [3, 3] in core's pixel convention, distortion coefficients, whether the model distorts)."""
    if model in _SINGLE_F:
        fx = fy = params[0]
        cx, cy = params[1], params[2]
        extra = params[3:]
    else:
        fx, fy, cx, cy = params[:4]
        extra = params[4:]
    K = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    return K, list(extra), model in _NOT_PINHOLE or any(abs(x) > 0 for x in extra)


def _coef_names(model: str) -> tuple[str, ...]:
    from facet3d.core.structures.cameras import DISTORTION_PARAMS

    # SIMPLE_RADIAL_FISHEYE's single "k" is the k1 of the richer fisheye models
    return tuple("k1" if n == "k" else n for n in DISTORTION_PARAMS.get(model, ()))


def _common_distortion(models: list[str], coefs: list[list[float]]) -> tuple[np.ndarray | None, str | None]:
    """One model for a batch (module docstring) -> (distortion [B, k] or None, model name or None)."""
    chain = next((c for c in _CHAINS if all(("PINHOLE" if m == "SIMPLE_PINHOLE" else m) in c for m in models)), None)
    if chain is None:
        return None, None
    target = max(models, key=lambda m: chain.index("PINHOLE" if m == "SIMPLE_PINHOLE" else m))
    if target in ("PINHOLE", "SIMPLE_PINHOLE"):
        return None, None
    names = _coef_names(target)
    rows = [[dict(zip(_coef_names(m), c)).get(n, 0.0) for n in names] for m, c in zip(models, coefs)]
    return np.array(rows, dtype=np.float64).reshape(len(models), len(names)), target


def read_colmap_model(path: str | Path) -> ColmapModel:
    """COLMAP model folder (or one of its files, or a dataset root with ``sparse/0``) -> `ColmapModel`.

    Images are sorted by name; cameras are float64 with names = image names.  Bad, truncated or
    inconsistent files raise `InputError` naming the file.
    """
    from facet3d.core.structures.cameras import Cameras

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    folder, ext = _pick(p if p.is_file() else (find_colmap_model(p) or p))
    cams, images, points = (_read_text if ext == ".txt" else _read_binary)(folder)
    if not images:
        raise InputError(f"{folder / ('images' + ext)}: the COLMAP model has no registered image")
    images.sort(key=lambda im: im[4])
    K, q, t, sizes, names, models, distorted, coefs = [], [], [], [], [], [], [], []
    for _iid, qvec, tvec, cid, name in images:
        if cid not in cams:
            raise InputError(f"{folder / ('images' + ext)}: image {name} refers to camera {cid}, "
                             "which the model does not define")
        model, w, h, params = cams[cid]
        if model not in _BY_NAME or len(params) < _BY_NAME[model][1]:
            raise InputError(f"{folder / ('cameras' + ext)}: camera {cid} has model {model} with "
                             f"{len(params)} parameters")
        k, coef, dist = _intrinsics(model, params)
        K.append(k), q.append(qvec), t.append(tvec), sizes.append((h, w)), names.append(name)
        models.append(model), distorted.append(dist), coefs.append(coef)
    dist_coefs, dist_model = _common_distortion(models, coefs)
    try:
        cameras = Cameras.from_colmap(np.array(q), np.array(t), np.array(K), np.array(sizes), names,
                                      distortion=dist_coefs, distortion_model=dist_model)
    except GeometryError as exc:
        raise InputError(f"{folder / ('images' + ext)}: {exc}") from exc
    out = ColmapModel(cameras, names, camera_models=models, distorted=distorted, folder=folder, binary=ext == ".bin")
    if points is not None:
        out.point_ids, out.points, out.colors, out.errors = points
    return out


def read_colmap_cameras(path: str | Path):
    """COLMAP model (folder or one of its files) -> `Cameras` sorted by image name (names = image names).

    ``cameras.has_distortion`` is True when some camera has distortion terms (kept, not applied).
    """
    return read_colmap_model(path).cameras


def _colmap_camera(model: str | None, w: int, h: int, K: np.ndarray, coef: np.ndarray | None) -> tuple:
    """-> (model name, w, h, *params) of one camera in COLMAP's convention (principal point +0.5)."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5
    if model is None:
        return ("PINHOLE", w, h, fx, fy, cx, cy)
    c = dict(zip(_coef_names(model), coef.tolist()))
    if model in _SINGLE_F and fx != fy:
        model = _TWO_F[model]
    vals = [c.get(n, 0.0) for n in _coef_names(model)]
    intr = [fx, cx, cy] if model in _SINGLE_F else [fx, fy, cx, cy]
    return (model, w, h, *intr, *vals)


# ---------------------------------------------------------------------------------------- write
def write_colmap_model(folder: str | Path, cameras, image_names=None, points=None, colors=None, errors=None,
                       binary: bool = False) -> Path:
    """Write ``cameras`` (B, with image_size) as a COLMAP model in ``folder`` (created); -> the folder.

    image_names: B names (default ``cameras.names``); points ``[P, 3]``, colors ``[P, 3]`` uint8
    (or floats in [0, 1]; default grey), errors ``[P]`` (default 0): points3D file written when
    ``points`` is given.  Cameras are PINHOLE, or their distortion model (a single-focal model with
    fx != fy is written as OPENCV / OPENCV_FISHEYE), with the principal point +0.5 (COLMAP's pixel
    convention); cameras with skew raise `GeometryError`.  Text floats use repr (exact round trip).
    """
    if cameras.image_size is None:
        raise GeometryError("write_colmap_model needs cameras with image_size")
    names = list(cameras.names if image_names is None else image_names)
    if len(names) != len(cameras):
        raise GeometryError(f"{len(names)} image names for {len(cameras)} cameras")
    if any(not n or "\x00" in n or "\n" in n for n in names):
        raise GeometryError("COLMAP image names must be non-empty single-line strings")
    K = cameras.K.detach().cpu().double().numpy()
    if np.abs(K[:, 0, 1]).max(initial=0) > 1e-12:
        raise GeometryError("COLMAP PINHOLE cameras cannot store skew (K[0, 1] != 0)")
    q, t = (a.detach().cpu().double().numpy() for a in cameras.to_colmap())
    hw = cameras.image_size.cpu().numpy()
    dist = None if cameras.distortion is None else cameras.distortion.detach().cpu().double().numpy()
    # one COLMAP camera per distinct (model, size, params), ids from 1
    cam_ids: dict[tuple, int] = {}
    img_cam = []
    for i in range(len(cameras)):
        key = _colmap_camera(cameras.distortion_model, int(hw[i, 1]), int(hw[i, 0]), K[i],
                             None if dist is None else dist[i])
        img_cam.append(cam_ids.setdefault(key, len(cam_ids) + 1))
    if points is not None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if colors is None:
            rgb = np.full(pts.shape, 128, np.uint8)
        else:
            c = np.asarray(colors)
            rgb = (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8) if c.dtype.kind == "f" else c.astype(np.uint8)
            rgb = rgb.reshape(-1, 3)
        err = np.zeros(len(pts)) if errors is None else np.asarray(errors, dtype=np.float64).reshape(-1)
        if len(rgb) != len(pts) or len(err) != len(pts):
            raise GeometryError(f"{len(pts)} points but {len(rgb)} colours and {len(err)} errors")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if binary:
        with open(out / "cameras.bin", "wb") as fh:
            fh.write(struct.pack("<Q", len(cam_ids)))
            for (model, w, h, *params), cid in cam_ids.items():
                fh.write(struct.pack(f"<iiQQ{len(params)}d", cid, _BY_NAME[model][0], w, h, *params))
        with open(out / "images.bin", "wb") as fh:
            fh.write(struct.pack("<Q", len(cameras)))
            for i, name in enumerate(names):
                fh.write(struct.pack("<i7di", i + 1, *q[i], *t[i], img_cam[i]))
                fh.write(name.encode("utf-8") + b"\x00" + struct.pack("<Q", 0))
        if points is not None:
            with open(out / "points3D.bin", "wb") as fh:
                fh.write(struct.pack("<Q", len(pts)))
                for j in range(len(pts)):
                    fh.write(struct.pack("<Q3d3BdQ", j + 1, *pts[j], *rgb[j], err[j], 0))
    else:
        r = repr
        lines = ["# Camera list with one line of data per camera:",
                 "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]", f"# Number of cameras: {len(cam_ids)}"]
        lines += [f"{cid} {model} {w} {h} {' '.join(r(float(x)) for x in params)}"
                  for (model, w, h, *params), cid in cam_ids.items()]
        (out / "cameras.txt").write_text("\n".join(lines) + "\n")
        lines = ["# Image list with two lines of data per image:",
                 "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                 "#   POINTS2D[] as (X, Y, POINT3D_ID)", f"# Number of images: {len(cameras)}"]
        for i, name in enumerate(names):
            lines.append(f"{i + 1} {' '.join(r(float(x)) for x in q[i])} {' '.join(r(float(x)) for x in t[i])} "
                         f"{img_cam[i]} {name}")
            lines.append("")
        (out / "images.txt").write_text("\n".join(lines) + "\n")
        if points is not None:
            lines = ["# 3D point list with one line of data per point:",
                     "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
                     f"# Number of points: {len(pts)}"]
            lines += [f"{j + 1} {' '.join(r(float(x)) for x in pts[j])} {' '.join(str(int(c)) for c in rgb[j])} "
                      f"{r(float(err[j]))}" for j in range(len(pts))]
            (out / "points3D.txt").write_text("\n".join(lines) + "\n")
    return out
