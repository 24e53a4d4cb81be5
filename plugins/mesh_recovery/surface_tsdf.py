"""Depth maps (+ colour images) and their cameras -> mesh by TSDF fusion (open3d UniformTSDFVolume).

Inputs
* a folder of depth maps: ``.npy`` (float, metres), ``.png`` 16-bit (``depth_scale`` units per metre,
  default 1000, i.e. millimetres), ``.tif``/``.tiff`` float.  Depth is z in the camera frame
  (OpenCV), 0 / NaN / inf = no measurement;
* cameras (`load_cameras`, i.e. `facet3d.core.io.cameras.read_cameras`): core camera JSON (e.g. the
  ``cameras.json`` ``facet3d render --orbit`` writes beside its depth maps), NeRF/Blender
  ``transforms.json``, the Strecha-style ``cameras.json``, or a COLMAP model;
* optionally a folder of colour images with the same names.

Each camera is matched to the depth map whose file stem equals the stem of the camera's name
(``./train/r_1`` -> ``r_1``; a ``_depth`` suffix on the depth file and an ``_rgb`` / ``_color``
suffix on the colour image are ignored, so a ``facet3d render --save-depth`` folder is both).  Frames without a
depth map are skipped, a size mismatch is an error.  Fusion runs on open3d's dense UniformTSDFVolume
over the cube around the back-projected depth (its hash-based volumes return nothing in open3d 0.20's
CPU build).  Defaults: voxel = widest side / 160, truncation 5 voxels, depth cut-off just past the
farthest depth; after extraction, pieces with under ``min_component`` x the largest piece's triangles go.
Before integrating, the grid's memory (`tsdf_memory`: 48 bytes a voxel, + 25 %) is checked against what
the machine has (`facet3d.core.resources.require_memory`); progress is one unit per integrated frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from facet3d.core.errors import GeometryError, InputError, UsageError
from facet3d.core.io.images import DEPTH_EXTENSIONS, read_depth
from facet3d.core.io.record import Geometry

from ._common import quiet_open3d

__all__ = ["load_cameras", "find_frames", "fuse_depth", "render_depth_maps", "tsdf_memory", "DEPTH_EXTS"]

DEPTH_EXTS = DEPTH_EXTENSIONS
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DEFAULT_RESOLUTION = 160   # voxels across the scene's widest side (dense grid: cost ~ resolution^3)
MAX_RESOLUTION = 512
# open3d's UniformTSDFVolume stores one TSDFVoxel per cell: grid index (3 x int32), tsdf and weight
# (2 x float32) and an RGB colour (3 x float64) = 48 bytes (measured: 48.0 bytes/voxel at 200^3, with
# and without colour); marching cubes and the frames add a margin
TSDF_BYTES_PER_VOXEL = 48
TSDF_MARGIN = 1.25


def tsdf_memory(resolution: int, frames: int = 0, pixels: int = 0) -> int:
    """Bytes a dense ``resolution^3`` TSDF fusion needs (grid x margin, plus the depth maps held)."""
    return int(int(resolution) ** 3 * TSDF_BYTES_PER_VOXEL * TSDF_MARGIN) + int(frames) * int(pixels) * 4
# `facet3d render` writes <view>_rgb.png beside <view>_depth.npy: both match camera <view>
_COLOR_SUFFIXES = ("_rgb", "_color", "_colour")


def load_cameras(path: str | Path, log: Callable[[str], None] | None = None):
    """Cameras from any layout `facet3d.core.io.cameras.read_cameras` reads; its warnings (lens
    distortion kept but not applied by the fusion) go to ``log``."""
    from facet3d.core.io.cameras import read_cameras
    from facet3d.core.progress import say

    cams, warnings = read_cameras(path)
    for w in warnings:
        say(log, w)
    return cams


def _key(name: str, suffixes: tuple[str, ...] = ("_depth",)) -> str:
    """The stem frames are matched by: extension dropped, then everything from the last of
    ``suffixes`` on (``view_000_depth.npy`` -> ``view_000``)."""
    stem = Path(name).stem if Path(name).suffix.lower() in DEPTH_EXTS + IMAGE_EXTS else Path(name).name
    low = stem.lower()
    cut = max(low.rfind(sfx) for sfx in suffixes)
    return stem[:cut] if cut > 0 else stem


def find_frames(depth_dir: str | Path, cameras, color_dir: str | Path | None = None) -> list[tuple[int, Path, Path | None]]:
    """``[(camera index, depth file, colour file or None)]`` matched by name (module docstring)."""
    ddir = Path(depth_dir)
    if not ddir.is_dir():
        raise InputError(f"{ddir}: not a folder of depth maps")
    depth = {_key(f.name): f for f in sorted(ddir.iterdir()) if f.suffix.lower() in DEPTH_EXTS}
    if not depth:
        raise InputError(f"{ddir}: no depth maps ({', '.join(DEPTH_EXTS)})")
    colors = {}
    if color_dir is not None:
        cdir = Path(color_dir)
        if not cdir.is_dir():
            raise InputError(f"{cdir}: not a folder of colour images")
        colors = {_key(f.name, _COLOR_SUFFIXES): f for f in sorted(cdir.iterdir()) if f.suffix.lower() in IMAGE_EXTS}
    frames = [(i, depth[_key(n)], colors.get(_key(n))) for i, n in enumerate(cameras.names) if _key(n) in depth]
    if not frames:
        raise InputError(f"cameras do not match the depth maps: none of the {len(cameras)} camera names "
                         f"(e.g. '{cameras.names[0]}') names a file in {ddir} (e.g. '{next(iter(depth.values())).name}')")
    return frames


def _scene_box(cameras, frames, depths: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(min [3], max [3]) of a sparse back-projection (every 4th pixel) of every depth map."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for i, _, _ in frames:
        d = depths[i]
        v, u = np.nonzero(d[::4, ::4])
        if not len(u):
            continue
        px = np.stack([u * 4, v * 4], 1).astype(np.float64)
        p = cameras[i].unproject(px[None], d[v * 4, u * 4][None].astype(np.float64))[0].numpy()
        lo, hi = np.minimum(lo, p.min(0)), np.maximum(hi, p.max(0))
    return lo, hi


def fuse_depth(depth_dir: str | Path, cameras, *, color_dir: str | Path | None = None, voxel: float | None = None,
               trunc: float | None = None, depth_scale: float | None = None, depth_max: float | None = None,
               min_component: float = 0.05, info: dict[str, Any] | None = None,
               progress: Callable[[int, int], None] | None = None) -> Geometry:
    """TSDF-fuse the matched frames -> mesh `Geometry` (vertex colours when colour images were given).

    progress(done, total) is called after each integrated frame.
    """
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    from facet3d.core.resources import require_memory

    info = {} if info is None else info
    for flag, value in (("--voxel", voxel), ("--trunc", trunc), ("--depth-scale", depth_scale), ("--depth-max", depth_max)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be a positive number, got {value}")
    frames = find_frames(depth_dir, cameras, color_dir)
    depths, skipped = {}, []
    for i, dpath, _ in frames:
        d = read_depth(dpath, depth_scale)
        if cameras.image_size is not None and tuple(d.shape) != (int(cameras.height[i]), int(cameras.width[i])):
            raise InputError(f"cameras do not match the images: {dpath.name} is {d.shape[1]}x{d.shape[0]} but camera "
                             f"'{cameras.names[i]}' is {int(cameras.width[i])}x{int(cameras.height[i])}")
        if not (d > 0).any():
            skipped.append(dpath.name)
            continue
        depths[i] = d
    if not depths:
        raise GeometryError(f"no depth map has a valid pixel ({len(frames)} checked, e.g. {frames[0][1].name}): "
                            "every value is 0, NaN or infinite")
    frames = [f for f in frames if f[0] in depths]
    # A dense grid over the cube around the back-projected depth: open3d 0.20's hash-based volumes
    # (ScalableTSDFVolume, t.VoxelBlockGrid) return empty meshes in this CPU build, the uniform one works.
    lo, hi = _scene_box(cameras, frames, depths)
    extent = float((hi - lo).max())
    voxel = voxel or extent / DEFAULT_RESOLUTION
    trunc = trunc or 5.0 * voxel
    length = extent + 4 * trunc
    resolution = int(np.ceil(length / voxel))
    pixels = max(d.size for d in depths.values())
    require_memory(tsdf_memory(resolution, len(depths), pixels),
                   f"TSDF fusion on a {resolution}^3 grid (voxel {length / resolution:.3g})")
    if resolution > MAX_RESOLUTION:
        raise UsageError(f"--voxel {voxel:.3g} needs a {resolution}^3 grid for a scene {extent:.3g} wide "
                         f"(at most {MAX_RESOLUTION}^3): choose a larger voxel")
    origin = (lo + hi) / 2 - length / 2
    dmax = depth_max or 1.01 * max(float(d.max()) for d in depths.values())
    info.update(frames=len(frames), skipped_empty=skipped, voxel=length / resolution, trunc=trunc, depth_max=dmax,
                resolution=resolution, colored=any(c is not None for _, _, c in frames))
    if float(cameras.K[:, 0, 1].abs().max()) > 0:
        info["note"] = "camera skew ignored (open3d pinhole model)"
    color_type = (o3d.pipelines.integration.TSDFVolumeColorType.RGB8 if info["colored"]
                  else o3d.pipelines.integration.TSDFVolumeColorType.NoColor)
    vol = o3d.pipelines.integration.UniformTSDFVolume(length=length, resolution=resolution, sdf_trunc=trunc,
                                                      color_type=color_type, origin=origin.reshape(3, 1))
    K = cameras.K.numpy()
    W2C = cameras.world_to_camera().numpy()
    with quiet_open3d():
        for n, (i, _dpath, cpath) in enumerate(frames):
            d = depths[i]
            h, w = d.shape
            if cpath is not None:
                from PIL import Image

                with Image.open(cpath) as im:
                    rgb = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
                if rgb.shape[:2] != d.shape:
                    raise InputError(f"{cpath.name} is {rgb.shape[1]}x{rgb.shape[0]} but its depth map is {w}x{h}")
            else:
                rgb = np.zeros((h, w, 3), dtype=np.uint8)
            rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
                o3d.geometry.Image(rgb), o3d.geometry.Image(np.ascontiguousarray(d)), depth_scale=1.0,
                depth_trunc=dmax, convert_rgb_to_intensity=False)
            intr = o3d.camera.PinholeCameraIntrinsic(w, h, K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2])
            vol.integrate(rgbd, intr, W2C[i])
            if progress:
                progress(n + 1, len(frames))
        mesh = vol.extract_triangle_mesh()
    if len(mesh.triangles) == 0:
        raise GeometryError(f"TSDF fusion produced no surface (voxel {voxel:.3g}, truncation {trunc:.3g}): "
                            "do the cameras look at the depth they were given?")
    mesh = _keep_large_components(mesh, min_component, info)
    mesh.compute_vertex_normals()
    return Geometry(vertices=np.asarray(mesh.vertices).copy(), faces=np.asarray(mesh.triangles, dtype=np.int64).copy(),
                    normals=np.asarray(mesh.vertex_normals).copy(),
                    colors=np.asarray(mesh.vertex_colors, dtype=np.float32).copy() if info["colored"] else None)


def _keep_large_components(mesh, min_component: float, info: dict[str, Any]):
    """Drop connected pieces with fewer than ``min_component`` x the largest piece's triangles."""
    with quiet_open3d():
        labels, counts, _ = mesh.cluster_connected_triangles()
    labels, counts = np.asarray(labels), np.asarray(counts)
    small = counts < min_component * counts.max()
    info.update(components=int(len(counts)), components_removed=int(small.sum()))
    if small.any():
        mesh.remove_triangles_by_mask(small[labels])
        mesh.remove_unreferenced_vertices()
    return mesh


def render_depth_maps(geom: Geometry, cameras) -> np.ndarray:
    """Z-depth ``[B, H, W]`` float32 of mesh `geom` seen by ``cameras`` (one image size); 0 = miss.

    Ray casting (`facet3d.core.ops.raycast`); used to make test and demo data.
    """
    from facet3d.core.ops.raycast import raycast_mesh

    if cameras.image_size is None:
        raise GeometryError("rendering needs cameras with an image size")
    return raycast_mesh(geom.vertices, geom.faces, cameras)["depth"].numpy().astype(np.float32)
