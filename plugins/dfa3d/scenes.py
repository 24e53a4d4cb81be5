"""Multi-camera scenes for lifting: cameras (core `Cameras`), images, lidar, depth maps, feature maps.

Three layouts (detected, or named with ``layout=``); docs/dfa3d.md shows each on disk.

* ``nuscenes``: one keyframe as mmdetection3d writes it: a folder with a ``*.json`` info file
  (``data_list[i].images.CAM_*.{img_path, cam2img, lidar2cam}`` and ``lidar_points.lidar_path``), the
  camera JPEGs and the ``LIDAR_TOP *.pcd.bin`` sweep (float32 x, y, z, intensity, ring). World frame:
  the lidar's (x right, y forward, z up). ``lidar2cam`` already holds the ego motion between the
  lidar and each camera's timestamp, so it is used as is (not cam2ego^-1 @ lidar2ego).
* ``kitti``: one object-detection frame: ``<id>.png`` (or ``image_2/<id>.png``), ``<id>.bin`` (or
  ``velodyne/<id>.bin``, float32 x, y, z, reflectance) and calibration: the standard ``calib/<id>.txt``
  (``P2``, ``R0_rect``, ``Tr_velo_to_cam``), or mmdetection3d's ``<id>.json``
  (``images.CAM2.cam2img`` and ``lidar2cam`` = R0_rect @ Tr_velo_to_cam). World frame: the
  velodyne's (x forward, y left, z up). P2's fourth column (the offset of camera 2 from the
  rectified camera 0) becomes part of t: ``t = t_rect + K^-1 P2[:, 3]``.
* ``plain``: a folder with a camera file core reads (``cameras.json`` in the core format, NeRF
  ``transforms.json``, a COLMAP model: `facet3d.core.io.cameras.read_cameras`), images named like the
  cameras (in ``images/`` or beside the camera file; a camera named ``0000`` matches ``0000.png``),
  optional ``depth/`` maps named like the images (``.npy`` metres, 16-bit ``.png`` millimetres,
  float ``.tif`` metres; z-depth) and an optional sweep ``lidar.*`` / ``points.*`` (any point format
  core reads) in the cameras' world frame.

Images keep their own size unless ``max_size`` downscales them (cameras follow with
`Cameras.resized`). Camera JSON that states a size different from the image's is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facet3d.core.errors import InputError, UsageError
from facet3d.core.io.images import DEPTH_EXTENSIONS, image_size

__all__ = ["Scene", "load_scene", "detect_layout", "load_feature_maps",
           "read_points", "LAYOUTS"]

LAYOUTS = ("auto", "nuscenes", "kitti", "plain")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEPTH_EXTS = DEPTH_EXTENSIONS
NUSCENES_GRID = (-51.2, 51.2, -51.2, 51.2, -5.0, 3.0)
KITTI_GRID = (0.0, 70.4, -40.0, 40.0, -3.0, 1.0)


@dataclass
class Scene:
    """One multi-camera frame. cameras: core `Cameras` (world = ``frame``), with the images' sizes."""

    name: str
    layout: str
    root: Path
    cameras: Any
    image_paths: list[Path]
    lidar_path: Path | None = None
    lidar_format: str | None = None
    depth_paths: list[Path] | None = None
    default_grid: tuple[float, ...] | None = None
    default_voxel: float | None = None
    frame: str = "world"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def camera_names(self) -> list[str]:
        return list(self.cameras.names)

    def lidar_points(self) -> np.ndarray:
        """``[N, 3]`` float64 sweep in the scene's frame (InputError when there is none or it is empty)."""
        if self.lidar_path is None:
            raise InputError(f"{self.root}: the scene has no lidar sweep")
        pts = read_points(self.lidar_path, self.lidar_format)
        if len(pts) == 0:
            raise InputError(f"{self.lidar_path}: the lidar sweep is empty")
        return pts


# ---------------------------------------------------------------------------------------- files
def read_points(path: Path, fmt: str | None = None) -> np.ndarray:
    """Point coordinates ``[N, 3]`` float64 of any point file core reads; headerless ``.pcd.bin`` /
    ``.bin`` sweeps are read as nuScenes / KITTI when no format is given. Non-finite points dropped."""
    from facet3d.core.io.api import read

    p = Path(path)
    if fmt is None and p.name.lower().endswith(".pcd.bin"):
        fmt = "nuscenes-bin"
    elif fmt is None and p.suffix.lower() == ".bin":
        fmt = "kitti-bin"
    geom = read(p, format=fmt) if fmt else read(p)
    v = np.asarray(geom.vertices, dtype=np.float64)
    return v[np.isfinite(v).all(1)]


def target_size(height: int, width: int, max_size: int | None) -> tuple[int, int]:
    """(h, w) with the longer side at most ``max_size`` (aspect kept, rounded), or the size itself."""
    if not max_size or max(height, width) <= max_size:
        return height, width
    s = max_size / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def find_file(folder: Path, stem: str, exts: Sequence[str]) -> Path | None:
    """``folder/stem.ext`` for the first extension of ``exts`` that exists (either case), or None."""
    for e in exts:
        for cand in (folder / f"{stem}{e}", folder / f"{stem}{e.upper()}"):
            if cand.is_file():
                return cand
    return None


def _stem(name: str) -> str:
    n = Path(name).name
    for e in IMAGE_EXTS:
        if n.lower().endswith(e):
            return n[: -len(e)]
    return n


# ---------------------------------------------------------------------------------------- layouts
def detect_layout(path: Path) -> str:
    """``nuscenes``, ``kitti`` or ``plain`` for a scene folder (or a file in it); InputError if none fits."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such scene folder or file")
    folder = p if p.is_dir() else p.parent
    for j in ([p] if p.is_file() and p.suffix == ".json" else sorted(folder.glob("*.json"))):
        info = _load_json(j, quiet=True)
        if isinstance(info, dict) and isinstance(info.get("data_list"), list) and info["data_list"]:
            first = info["data_list"][0]
            imgs = first.get("images", {}) if isinstance(first, dict) else {}
            if any(str(k).startswith("CAM_") for k in imgs):
                return "nuscenes"
            if "CAM2" in imgs:
                return "kitti"
    if _kitti_frame(folder, p) is not None:
        return "kitti"
    from facet3d.core.io.cameras import find_camera_file

    try:
        find_camera_file(p)
        return "plain"
    except InputError:
        pass
    raise InputError(f"{p}: not a scene facet3d knows (nuScenes info .json + images + .pcd.bin; KITTI "
                     "<id>.png + <id>.bin + calib; or a folder with cameras.json and images)")


def load_scene(path: str | Path, layout: str = "auto", sample: int = 0) -> Scene:
    """Read a scene (module docstring). sample: which ``data_list`` entry of an info file."""
    p = Path(path)
    if layout not in LAYOUTS:
        raise UsageError(f"unknown scene layout '{layout}' (known: {', '.join(LAYOUTS)})")
    kind = detect_layout(p) if layout == "auto" else layout
    if not p.exists():
        raise InputError(f"{p}: no such scene folder or file")
    if kind == "nuscenes":
        return _load_nuscenes(p, sample)
    if kind == "kitti":
        return _load_kitti(p)
    return _load_plain(p)


def _load_json(path: Path, quiet: bool = False) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if quiet:
            return None
        raise InputError(f"{path}: cannot read JSON ({type(exc).__name__}: {exc})") from None


def _local(root: Path, rel: str) -> Path:
    """An info file's path: as given under root, else its file name in root."""
    cand = root / rel
    return cand if cand.is_file() else root / Path(rel).name


def _matrix(value: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} is not a numeric matrix") from None
    if m.shape[0] < shape[0] or m.ndim != 2 or m.shape[1] < shape[1] or not np.isfinite(m).all():
        raise InputError(f"{what} must be at least {shape[0]}x{shape[1]} finite numbers, got shape {m.shape}")
    return m


def _cameras_from(Ks, lidar2cams, offsets, sizes, names):
    from facet3d.core.structures.cameras import Cameras

    K = np.stack(Ks)
    T = np.stack(lidar2cams)
    t = T[:, :3, 3] + np.stack(offsets)
    return Cameras(K, T[:, :3, :3], t, np.array(sizes), names)


def _load_nuscenes(p: Path, sample: int) -> Scene:
    folder = p if p.is_dir() else p.parent
    jsons = [p] if p.is_file() and p.suffix == ".json" else sorted(folder.glob("*.json"))
    info = None
    for j in jsons:
        d = _load_json(j, quiet=len(jsons) > 1)
        if isinstance(d, dict) and isinstance(d.get("data_list"), list):
            info, info_path = d, j
            break
    if info is None:
        raise InputError(f"{p}: no nuScenes info .json (with data_list) found")
    items = info["data_list"]
    if not 0 <= sample < len(items):
        raise UsageError(f"{info_path}: sample {sample} out of range (it has {len(items)})")
    item = items[sample]
    images = item.get("images") or {}
    if not images:
        raise InputError(f"{info_path}: sample {sample} lists no cameras")
    Ks, Ts, offs, sizes, names, paths = [], [], [], [], [], []
    for name, cam in images.items():
        where = f"{info_path.name}: {name}"
        if not isinstance(cam, dict) or "img_path" not in cam:
            raise InputError(f"{where}: camera entry without img_path")
        img = _local(folder, cam["img_path"])
        if not img.is_file():
            raise InputError(f"{where}: missing camera image {cam['img_path']}")
        if "lidar2cam" not in cam or "cam2img" not in cam:
            raise InputError(f"{where}: needs cam2img and lidar2cam")
        K = _matrix(cam["cam2img"], (3, 3), f"{where} cam2img")
        Ks.append(K[:3, :3])
        Ts.append(_matrix(cam["lidar2cam"], (4, 4), f"{where} lidar2cam"))
        offs.append(np.linalg.solve(K[:3, :3], K[:3, 3]) if K.shape[1] >= 4 else np.zeros(3))
        sizes.append(image_size(img))
        names.append(str(name))
        paths.append(img)
    lidar = item.get("lidar_points", {}).get("lidar_path")
    lidar_path = _local(folder, lidar) if lidar else None
    if lidar_path is not None and not lidar_path.is_file():
        raise InputError(f"{info_path.name}: missing lidar sweep {lidar}")
    cams = _cameras_from(Ks, Ts, offs, sizes, names)
    return Scene(name=str(item.get("token", info_path.stem)), layout="nuscenes", root=folder, cameras=cams,
                 image_paths=paths, lidar_path=lidar_path, lidar_format="nuscenes-bin", default_grid=NUSCENES_GRID,
                 default_voxel=0.4, frame="lidar (nuScenes LIDAR_TOP: x right, y forward, z up)",
                 meta={"info": str(info_path), "sample": sample})


def _kitti_frame(folder: Path, p: Path) -> dict[str, Path] | None:
    """Files of a KITTI frame: image, velodyne, calib txt / json (by stem; sub-folders allowed)."""
    stems = [p.stem] if p.is_file() else sorted({f.stem for f in folder.glob("*.bin")} | {f.stem for f in (folder / "velodyne").glob("*.bin")})
    for stem in stems:
        found: dict[str, Path] = {}
        img = find_file(folder, stem, (".png",)) or find_file(folder / "image_2", stem, (".png",))
        velo = find_file(folder, stem, (".bin",)) or find_file(folder / "velodyne", stem, (".bin",))
        txt = find_file(folder, stem, (".txt",)) or find_file(folder / "calib", stem, (".txt",))
        js = find_file(folder, stem, (".json",))
        if img is None or velo is None or (txt is None and js is None):
            continue
        found.update(image=img, velodyne=velo)
        if txt is not None:
            found["txt"] = txt
        if js is not None:
            found["json"] = js
        found["stem"] = Path(stem)
        return found
    return None


def parse_kitti_calib(text: str) -> dict[str, np.ndarray]:
    """A KITTI calib .txt (``KEY: numbers`` lines) -> {key: flat float array}; {} when it has no keys."""
    out = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, _, v = line.partition(":")
        try:
            out[k.strip()] = np.array([float(x) for x in v.split()], dtype=np.float64)
        except ValueError:
            continue
    return out


def _kitti_pose(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """(P2 [3, 4], lidar-to-rectified-camera [4, 4]) from the calib .txt or the mmdet3d .json."""
    if "txt" in files:
        cal = parse_kitti_calib(files["txt"].read_text())
        if {"P2", "R0_rect", "Tr_velo_to_cam"} <= set(cal):
            try:
                P2 = cal["P2"].reshape(3, 4)
                R0 = np.eye(4)
                R0[:3, :3] = cal["R0_rect"].reshape(3, 3)
                Tr = np.eye(4)
                Tr[:3, :] = cal["Tr_velo_to_cam"].reshape(3, 4)
            except ValueError as exc:
                raise InputError(f"{files['txt']}: malformed KITTI calibration ({exc})") from None
            return P2, R0 @ Tr
    if "json" in files:
        info = _load_json(files["json"])
        try:
            cam = info["data_list"][0]["images"]["CAM2"]
        except (KeyError, IndexError, TypeError):
            raise InputError(f"{files['json']}: no data_list[0].images.CAM2 calibration") from None
        if "cam2img" not in cam or "lidar2cam" not in cam:
            raise InputError(f"{files['json']}: CAM2 needs cam2img and lidar2cam")
        P = _matrix(cam["cam2img"], (3, 4), f"{files['json'].name}: CAM2 cam2img")
        return P[:3, :4], _matrix(cam["lidar2cam"], (4, 4), f"{files['json'].name}: CAM2 lidar2cam")[:4, :4]
    where = files.get("txt", files.get("image"))
    raise InputError(f"{where}: KITTI calibration needs P2, R0_rect and Tr_velo_to_cam (a calib .txt) "
                     "or an mmdetection3d .json with CAM2 cam2img / lidar2cam")


def _load_kitti(p: Path) -> Scene:
    folder = p if p.is_dir() else p.parent
    files = _kitti_frame(folder, p)
    if files is None:
        raise InputError(f"{p}: no KITTI frame (<id>.png, <id>.bin and a calib .txt / .json)")
    P2, T = _kitti_pose(files)
    K = P2[:3, :3]
    off = np.linalg.solve(K, P2[:3, 3])
    size = image_size(files["image"])
    cams = _cameras_from([K], [T], [off], [size], ["CAM2"])
    return Scene(name=str(files["stem"]), layout="kitti", root=folder, cameras=cams, image_paths=[files["image"]],
                 lidar_path=files["velodyne"], lidar_format="kitti-bin", default_grid=KITTI_GRID, default_voxel=0.4,
                 frame="lidar (KITTI velodyne: x forward, y left, z up)")


def _load_plain(p: Path) -> Scene:
    from facet3d.core.io.cameras import find_camera_file, read_cameras

    cam_file = find_camera_file(p)
    folder = p if p.is_dir() else p.parent
    cams, warnings = read_cameras(cam_file)
    paths = []
    for name in cams.names:
        stem = _stem(name)
        found = None
        for d in (folder / "images", folder):
            if (d / name).is_file() and Path(name).suffix.lower() in IMAGE_EXTS:
                found = d / name
                break
            found = find_file(d, stem, IMAGE_EXTS)
            if found is not None:
                break
        if found is None:
            raise InputError(f"{folder}: missing camera image for camera '{name}' (looked in images/ and the folder)")
        paths.append(found)
    sizes = [image_size(f) for f in paths]
    if cams.image_size is None:
        import torch

        cams = type(cams)(cams.K, cams.R, cams.t, torch.tensor(sizes), cams.names, distortion=cams.distortion,
                          distortion_model=cams.distortion_model)
    else:
        for i, (h, w) in enumerate(sizes):
            ch, cw = int(cams.height[i]), int(cams.width[i])
            if (ch, cw) != (h, w):
                raise InputError(f"{paths[i]}: image size mismatch: camera '{cams.names[i]}' is {cw}x{ch}, "
                                 f"the image is {w}x{h}")
    depth_dir = folder / "depth"
    depth_paths = None
    if depth_dir.is_dir():
        depth_paths = []
        for name, img in zip(cams.names, paths):
            d = find_file(depth_dir, img.stem, DEPTH_EXTS) or find_file(depth_dir, _stem(name), DEPTH_EXTS)
            if d is None:
                raise InputError(f"{depth_dir}: no depth map for camera '{name}' ({img.stem}.npy/.png/.tif)")
            depth_paths.append(d)
    lidar = None
    for pat in ("lidar.*", "points.*"):
        hits = sorted(f for f in folder.glob(pat) if f.is_file())
        if hits:
            lidar = hits[0]
            break
    return Scene(name=folder.name, layout="plain", root=folder, cameras=cams, image_paths=paths, lidar_path=lidar,
                 depth_paths=depth_paths, frame="world (the camera file's)",
                 meta={"cameras": str(cam_file), "warnings": warnings})


# ---------------------------------------------------------------------------------------- features
def load_feature_maps(spec: str | Path, scene: Scene) -> tuple[list[np.ndarray], str]:
    """User per-pixel maps for every camera -> (list of ``[h, w, C]`` arrays, kind).

    spec: one ``.npy`` holding ``[Ncam, h, w, C]`` or ``[Ncam, h, w]`` (cameras in the scene's order;
    ``[h, w, C]`` for a single camera), or a folder of ``.npy`` named like the cameras or their
    images. Float arrays are features (kind ``"features"``); integer arrays are labels (kind
    ``"labels"``, ``[h, w]``; negative = unlabelled). Maps may be smaller than the images (any size).
    """
    p = Path(spec)
    n = len(scene.cameras)
    if p.is_dir():
        maps = []
        for name, img in zip(scene.camera_names, scene.image_paths):
            f = find_file(p, name, (".npy",)) or find_file(p, img.stem, (".npy",))
            if f is None:
                raise InputError(f"{p}: no feature map for camera '{name}' ({name}.npy or {img.stem}.npy)")
            maps.append(_load_npy(f))
    else:
        if not p.is_file():
            raise InputError(f"{p}: no such feature file or folder")
        arr = _load_npy(p)
        if n == 1 and (arr.ndim == 2 or (arr.ndim == 3 and arr.dtype.kind == "f" and arr.shape[0] != 1)):
            arr = arr[None]  # one camera: [h, w] or [h, w, C]
        if arr.shape[0] != n or arr.ndim not in (3, 4):
            raise InputError(f"{p}: feature array of shape {arr.shape} does not hold one map per camera "
                             f"([{n}, h, w, C] or [{n}, h, w] for {n} cameras)")
        maps = list(arr)
    kinds = {"labels" if m.dtype.kind in "iub" else "features" for m in maps}
    if len(kinds) > 1:
        raise InputError(f"{p}: some maps are integer labels and some float features")
    kind = kinds.pop()
    out = []
    for name, m in zip(scene.camera_names, maps):
        if kind == "labels":
            if m.ndim == 3 and m.shape[-1] == 1:
                m = m[..., 0]
            if m.ndim != 2:
                raise InputError(f"label map of camera '{name}' must be [h, w], got {m.shape}")
        else:
            m = m[..., None] if m.ndim == 2 else m
            if m.ndim != 3:
                raise InputError(f"feature map of camera '{name}' must be [h, w, C], got {m.shape}")
            if not np.isfinite(m).all():
                raise InputError(f"feature map of camera '{name}' has non-finite values")
        if min(m.shape[:2]) < 1:
            raise InputError(f"feature map of camera '{name}' is empty ({m.shape})")
        out.append(m)
    if kind == "features" and len({m.shape[-1] for m in out}) > 1:
        raise InputError(f"{p}: cameras' feature maps have different channel counts {[m.shape[-1] for m in out]}")
    return out, kind


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the .npy ({type(exc).__name__}: {exc})") from None
