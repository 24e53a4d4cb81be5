"""Render a `TriangleScene` through a batch of `Cameras`; orbit cameras; the work of ``facet3d render``.

`render` transforms the scene's triangles into each camera's frame, evaluates the view-dependent
colours and calls `facet3d.kernels.trisplat.rasterize_triangles` (torch reference on CPU, Triton on
CUDA).  Everything is differentiable w.r.t. the scene's tensors.

``facet3d render`` (`load_scene`, `render_cameras`, `frame_orbit`, `view_names`, `write_views`)
writes per view (``<view>`` = the camera's name made file-safe, ``view_000``... for --orbit):

* ``<view>_rgb.png``   8-bit RGB;
* ``<view>_depth.npy`` (save_depth) HxW float32 z-depth along the camera axis (not the ray
  length); hard renders: the nearest surface's z; soft renders: the expected z (weighted by the
  blending weights, normalised by alpha); **0 where nothing was hit** (alpha == 0);
* ``<view>_alpha.npy`` (save_alpha) HxW float32 accumulated opacity;
* ``cameras.json`` (cameras made here, i.e. --orbit): the cameras in the core JSON format, named
  ``<view>``, so ``facet3d mesh --from-depth DIR --cameras DIR/cameras.json`` fuses the depth maps.

Every file is written to a temporary file in the output folder and renamed into place.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.progress import tick
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R

__all__ = ["render", "orbit_cameras", "frame_orbit", "render_cameras", "load_scene", "auto_hard", "view_names",
           "write_views", "CAMERAS_FILE"]

CAMERAS_FILE = "cameras.json"

_KEYS = ("rgb", "alpha", "depth", "depth_acc", "normal")


def render(scene, cameras: Cameras, image_size=None, background=(0.0, 0.0, 0.0), hard: bool = False,
           tile: int = 16, **raster_kwargs) -> dict[str, Tensor]:
    """Render every camera.

    scene: TriangleScene
    cameras: Cameras          # B cameras (OpenCV convention, pixel centres at integer coordinates)
    image_size: (H, W)        # default: the cameras' image_size (must be equal for all cameras)
    background: [3]           # colour behind the scene
    hard: bool                # z-buffer limit (alpha cap 1, per-pixel depth order; see kernels/trisplat)
    returns dict: rgb [B, H, W, 3], alpha [B, H, W], depth [B, H, W] (normalised expected z),
                  depth_acc [B, H, W], normal [B, H, W, 3] (camera frame), max_weight [B, N],
                  n_touched [B, N] (tiles each triangle's footprint touches; 0 = culled / off screen)
    """
    from facet3d.kernels.trisplat import rasterize_triangles

    if image_size is None:
        if cameras.image_size is None:
            raise GeometryError("render needs image_size (cameras have none)")
        sizes = {tuple(s) for s in cameras.image_size.tolist()}
        if len(sizes) != 1:
            raise GeometryError(f"cameras have different image sizes {sorted(sizes)}; render them separately")
        image_size = sizes.pop()
    dtype, dev = scene.dtype, scene.device
    cams = cameras.to(dev, dtype)
    tri = scene.triangle_vertices()
    opacity, sigma = scene.triangle_opacity(), scene.triangle_sigma()
    centers = cams.centers()
    outs: dict[str, list[Tensor]] = {k: [] for k in _KEYS + ("max_weight", "n_touched")}
    for b in range(len(cams)):
        vc = tri @ cams.R[b].T + cams.t[b]
        colors = scene.triangle_colors(centers[b])
        o = rasterize_triangles(vc, cams.K[b], colors, opacity, sigma, image_size, background, tile=tile,
                                hard=hard, **raster_kwargs)
        for k in outs:
            outs[k].append(o[k])
    return {k: torch.stack(v) for k, v in outs.items()}


def orbit_cameras(center, radius: float, n: int, image_size, fov: float = 50.0, elevation: float = 20.0,
                  up=(0.0, 0.0, 1.0), start_azimuth: float = 0.0, dtype=torch.float64) -> Cameras:
    """n cameras evenly spaced on a circle around ``center`` looking at it.

    image_size: (H, W) or one int; fov: horizontal field of view in degrees; elevation in degrees
    above the plane orthogonal to ``up``; principal point at the image centre ((W-1)/2, (H-1)/2 in
    the integer-pixel-centre convention).
    """
    H, W = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    c = torch.as_tensor(center, dtype=torch.float64).reshape(3)
    u = torch.as_tensor(up, dtype=torch.float64)
    u = u / u.norm()
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(a @ u)) > 0.9:
        a = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    e1 = a - (a @ u) * u
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(u, e1)
    el = math.radians(elevation)
    f = 0.5 * W / math.tan(0.5 * math.radians(fov))
    K = intrinsics_matrix(f, f, (W - 1) / 2.0, (H - 1) / 2.0)
    Rs, ts = [], []
    for i in range(n):
        az = math.radians(start_azimuth) + 2 * math.pi * i / n
        eye = c + radius * (math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * u)
        R = look_at_R(eye, c, u)
        Rs.append(R)
        ts.append(-(R @ eye))
    return Cameras(K.expand(n, 3, 3), torch.stack(Rs), torch.stack(ts), (H, W), dtype=dtype)


# ---------------------------------------------------------------------------------------- facet3d render
def frame_orbit(scene, n: int, image_size: tuple[int, int], fov: float = 60.0, up=(0.0, 0.0, 1.0)) -> Cameras:
    """n orbit cameras around the scene's bounding-box centre at 2.2x its radius, named ``view_000``...

    image_size: (H, W); fov: field of view of the *shorter* image side in degrees (60 keeps the
    bounding sphere in view); up: the orbit axis [3].
    """
    tri = scene.triangle_vertices().detach().to(torch.float64).reshape(-1, 3).cpu()
    lo, hi = tri.min(0).values, tri.max(0).values
    radius = max(float((hi - lo).norm()) / 2.0, 1e-9)
    H, W = image_size
    fov_x = fov if W <= H else math.degrees(2 * math.atan(W / H * math.tan(math.radians(fov) / 2)))
    cams = orbit_cameras((lo + hi) / 2, 2.2 * radius, n, image_size, fov=fov_x, up=up)
    cams.names = [f"view_{i:03d}" for i in range(len(cams))]
    return cams


def render_cameras(path, image_size: tuple[int, int] | None) -> tuple[Cameras, list[str]]:
    """Cameras of any layout core reads (`read_cameras`) at ``image_size`` (H, W; None: their own)
    -> (cameras, warnings); cameras without a size need one."""
    from facet3d.core.io.cameras import read_cameras

    cams, warnings = read_cameras(path, image_size)
    if cams.image_size is None:
        raise UsageError("the cameras have no image size; give --size WxH")
    return cams, warnings


def view_names(names: list[str]) -> list[str]:
    """File-safe, unique stems from camera names (``view_000``... when they are not)."""
    out = []
    for n in names:
        stem = Path(str(n)).name
        stem = re.sub(r"\.(png|jpe?g|exr|tiff?)$", "", stem, flags=re.I)
        out.append(re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._"))
    if any(not s for s in out) or len(set(out)) != len(out):
        return [f"view_{i:03d}" for i in range(len(names))]
    return out


def load_scene(path):
    """-> ``(TriangleScene, is_mesh)``: a triangle-splat PLY, else any mesh facet3d reads."""
    from facet3d.core.io.api import check_input_path, read
    from facet3d.plugins.triangle_splatting.scene import TriangleScene, is_scene_ply

    p = check_input_path(path)
    if is_scene_ply(p):
        scene, is_mesh = TriangleScene.load_ply(p), False
    else:
        geom = read(p)
        if not geom.is_mesh:
            raise UsageError(f"{p}: a point cloud without faces: nothing to render (give a mesh or a triangle-splat PLY)")
        scene, is_mesh = TriangleScene.from_geometry(geom), True
    if len(scene) == 0:
        raise UsageError(f"{path}: no triangles: nothing to render")
    return scene, is_mesh


def auto_hard(scene, is_mesh: bool) -> bool:
    """Meshes, and TS+ scenes that are opaque (all opacity 1) with sigma <= 1e-3, render hard."""
    if is_mesh:
        return True
    return scene.form == "ts+" and bool((scene.opacity >= 1.0).all()) and float(scene.sigma) <= 1e-3


def _save_png(rgb) -> Callable[[Path], None]:
    from PIL import Image

    return lambda p: Image.fromarray(rgb, "RGB").save(p, format="PNG")


def _save_npy(arr) -> Callable[[Path], None]:
    import numpy as np

    def save(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, arr)

    return save


def _write(path: Path, writer: Callable[[Path], None]) -> None:
    from facet3d.core.io.api import atomic_output

    with atomic_output(path) as tmp:
        writer(tmp)


@torch.no_grad()
def write_views(scene, cameras: Cameras, names: list[str], out_dir, background=(0.0, 0.0, 0.0), hard: bool = True,
                save_depth: bool = False, save_alpha: bool = False, save_cameras: bool = False,
                progress=None) -> list[str]:
    """Render every camera and write its files into ``out_dir`` (created; module docstring) -> the paths.

    names: one file stem per camera; save_cameras: also write `CAMERAS_FILE` (the cameras, named
    ``names``); progress(done, total, description) after each view.
    """
    import numpy as np

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    tick(progress, 0, len(cameras), "render")
    for i in range(len(cameras)):
        o = render(scene, cameras[i], background=background, hard=hard)
        rgb = (o["rgb"][0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
        targets = [(out / f"{names[i]}_rgb.png", _save_png(rgb))]
        for flag, key in ((save_depth, "depth"), (save_alpha, "alpha")):
            if flag:
                arr = np.ascontiguousarray(o[key][0].cpu().numpy().astype(np.float32))
                targets.append((out / f"{names[i]}_{key}.npy", _save_npy(arr)))
        for path, writer in targets:
            _write(path, writer)
            written.append(str(path))
        tick(progress, i + 1, len(cameras))
    if save_cameras:
        named = cameras.to("cpu")
        named.names = list(names)  # the file stems: what `mesh --from-depth` matches depth maps by
        _write(out / CAMERAS_FILE, named.save_json)
        written.append(str(out / CAMERAS_FILE))
    return written
