"""Render a `TriangleScene` through a batch of `Cameras`; orbit cameras; the work of ``facet3d render``.

`render` transforms the scene's triangles into each camera's frame, evaluates the view-dependent
colours and calls `facet3d.kernels.trisplat.rasterize_triangles` (the compiled numba kernels on CPU
for float32, Triton on CUDA, the torch reference otherwise).  Everything is differentiable w.r.t.
the scene's tensors.

``facet3d render`` (`load_scene`: scene PLYs, official Triangle Splatting / TS+ outputs through
`facet3d.plugins.triangle_splatting.official`, meshes; `render_cameras`, `frame_orbit`,
`view_names`, `write_views`) writes per view (``<view>`` = the camera's name made file-safe,
``view_000``... for --orbit):

* ``<view>_rgb.png``   8-bit RGB;
* ``<view>_depth.npy`` (save_depth) HxW float32 z-depth along the camera axis (not the ray
  length); hard renders: the nearest surface's z; soft renders: the expected z (weighted by the
  blending weights, normalised by alpha); **0 where nothing was hit** (alpha == 0);
* ``<view>_alpha.npy`` (save_alpha) HxW float32 accumulated opacity;
* ``cameras.json`` (cameras made here, i.e. --orbit): the cameras in the core JSON format, named
  ``<view>``, so ``facet3d mesh --from-depth DIR --cameras DIR/cameras.json`` fuses the depth maps.

Every file is written to a temporary file in the output folder and renamed into place.

Mesh shading (``shading=``, ``facet3d render --shading``; meshes only, triangle-splat scenes keep
their own SH appearance):

* ``"lambert"`` (the CLI's default for meshes): a head light, i.e. a light at the camera centre, so
  the light direction at a surface point is the reversed view ray ``l = -d`` of its pixel.
  ``rgb = albedo * (ambient + (1 - ambient) |n . l|)`` with ``ambient = AMBIENT`` (0.2): surfaces
  facing the camera keep exactly their albedo, grazing ones fall to ``0.2 albedo`` (never black).
  Two-sided ``|n . l|`` rather than ``max(0, n . l)``: with the light at the eye, the side of a
  surface that is seen is always the side that is lit, whatever way its normal points, so
  ``|n . l|`` is the exact cosine for that side; ``max(0, .)`` would paint every inward-wound or
  inconsistently oriented face (common in OBJ/STL files) and the inside of open meshes ambient-dark.
* ``"normal"``: ``rgb = (n + 1) / 2`` with n the unit **world-frame** normal as stored in the mesh
  (not flipped towards the camera): a surface keeps its colour from every view, and faces wound
  against their neighbours show up as colour jumps.
* ``"flat"``: the unlit colours (the renderer's output as is; what ``render`` does by default).

n is the per-pixel, perspective-correctly interpolated vertex normal (renormalised: Phong
interpolation) when the mesh has vertex normals (`load_scene` keeps them in
``scene.meta["normals"]``), else the triangle's face normal from its winding.  albedo is the
interpolated vertex colour or the face colour when the mesh has them, else grey 0.7.  Shading is
deferred: the rasterizer composites albedo and normal per pixel (with the background at 0) and
the pixel is lit afterwards, ``rgb = alpha shade + (1 - alpha) background`` (exact for hard,
opaque meshes; for ``--soft`` mesh renders the blended normal is lit).

Memory: `render_memory` estimates one view's peak (image buffers plus the reference rasterizer's
per-pixel working set); `write_views` refuses a render that cannot fit (`require_memory`) before
writing anything.
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
from facet3d.core.structures.cameras import Cameras, orbit_cameras  # orbit_cameras: re-exported (callers of render)

__all__ = ["render", "orbit_cameras", "frame_orbit", "render_cameras", "load_scene", "auto_hard", "view_names",
           "write_views", "render_memory", "check_render_memory", "shade", "CAMERAS_FILE", "SHADINGS", "AMBIENT"]

CAMERAS_FILE = "cameras.json"
SHADINGS = ("lambert", "normal", "flat")
AMBIENT = 0.2

_KEYS = ("rgb", "alpha", "depth", "depth_acc", "normal")


def render(scene, cameras: Cameras, image_size=None, background=(0.0, 0.0, 0.0), hard: bool = False,
           tile: int = 16, shading: str = "flat", normals=None, ambient: float = AMBIENT,
           **raster_kwargs) -> dict[str, Tensor]:
    """Render every camera.

    scene: TriangleScene
    cameras: Cameras          # B cameras (OpenCV convention, pixel centres at integer coordinates)
    image_size: (H, W)        # default: the cameras' image_size (must be equal for all cameras)
    background: [3]           # colour behind the scene
    hard: bool                # z-buffer limit (alpha cap 1, per-pixel depth order; see kernels/trisplat)
    shading: str              # "flat" (the scene's colours, unlit), "lambert" or "normal" (module docstring)
    normals: [N, 3, 3] | [N, 3] | None  # lambert/normal: world normals per triangle corner or per
                              # triangle; None: scene.meta["normals"] if present, else face normals
    ambient: float            # lambert's ambient term in [0, 1] (diffuse = 1 - ambient)
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
    if shading not in SHADINGS:
        raise UsageError(f"shading {shading!r}: expected one of {', '.join(SHADINGS)}")
    if not 0.0 <= float(ambient) <= 1.0:
        raise UsageError(f"ambient {ambient!r}: expected a value in [0, 1]")
    dtype, dev = scene.dtype, scene.device
    cams = cameras.to(dev, dtype)
    tri = scene.triangle_vertices()
    opacity, sigma = scene.triangle_opacity(), scene.triangle_sigma()
    centers = cams.centers()
    nrm = None if shading == "flat" else _world_normals(tri, scene.meta.get("normals") if normals is None else normals)
    outs: dict[str, list[Tensor]] = {k: [] for k in _KEYS + ("max_weight", "n_touched")}
    for b in range(len(cams)):
        vc = tri @ cams.R[b].T + cams.t[b]
        colors = scene.triangle_colors(centers[b])
        if nrm is None:
            o = rasterize_triangles(vc, cams.K[b], colors, opacity, sigma, image_size, background, tile=tile,
                                    hard=hard, **raster_kwargs)
        else:  # deferred: composite albedo and normal (background 0), light the pixels afterwards
            if colors.ndim == 3 or nrm.ndim == 3:
                colors = colors if colors.ndim == 3 else colors[:, None].expand(-1, 3, -1)
                n_b = nrm if nrm.ndim == 3 else nrm[:, None].expand(-1, 3, -1)
            else:
                n_b = nrm
            o = rasterize_triangles(vc, cams.K[b], torch.cat([colors, n_b], -1), opacity, sigma, image_size,
                                    None, tile=tile, hard=hard, **raster_kwargs)
            o = dict(o, rgb=shade(o["rgb"][..., :3], o["rgb"][..., 3:], o["alpha"], cams.K[b], cams.R[b],
                                  shading, background, ambient))
        for k in outs:
            outs[k].append(o[k])
    return {k: torch.stack(v) for k, v in outs.items()}


def _world_normals(tri: Tensor, normals) -> Tensor:
    """Unit world normals [N, 3, 3] (per corner) or [N, 3] (per face) for `render`'s shading.

    normals None -> the face normals of ``tri`` [N, 3, 3] from their winding; corners whose given
    normal is zero or non-finite take their face's.
    """
    face = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    face = face / face.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    if normals is None:
        return face
    n = torch.as_tensor(normals, dtype=tri.dtype, device=tri.device)
    if n.shape not in ((tri.shape[0], 3, 3), (tri.shape[0], 3)):
        raise GeometryError(f"normals must be [N, 3, 3] or [N, 3] with N={tri.shape[0]}, got {tuple(n.shape)}")
    length = n.norm(dim=-1, keepdim=True)
    ok = torch.isfinite(n).all(-1, keepdim=True) & (length > 1e-12)
    n = torch.where(ok, n / torch.where(ok, length, torch.ones_like(length)),
                    face if n.ndim == 2 else face[:, None].expand_as(n))
    return n


def shade(albedo_acc: Tensor, normal_acc: Tensor, alpha: Tensor, K: Tensor, R: Tensor, shading: str,
          background=(0.0, 0.0, 0.0), ambient: float = AMBIENT) -> Tensor:
    """Light composited pixels (module docstring): -> rgb [H, W, 3].

    albedo_acc [H, W, 3], normal_acc [H, W, 3]: sums of w * albedo and w * world normal over the
    pixel's triangles (rendered over a zero background); alpha [H, W] = sum of w;
    K, R: the view's intrinsics and world-to-camera rotation (the pixel's view ray).
    """
    H, W = alpha.shape
    dtype, dev = albedo_acc.dtype, albedo_acc.device
    a = alpha[..., None]
    n = normal_acc / normal_acc.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    bg = torch.as_tensor(background, dtype=dtype, device=dev).reshape(3)
    if shading == "normal":
        lit = 0.5 * (n + 1.0)
    elif shading == "lambert":
        albedo = albedo_acc / a.clamp_min(1e-30)
        jj, ii = torch.meshgrid(torch.arange(W, dtype=dtype, device=dev), torch.arange(H, dtype=dtype, device=dev),
                                indexing="xy")
        pix = torch.stack([jj, ii, torch.ones_like(ii)], -1)
        ray = pix @ (R.T @ torch.linalg.inv(K)).T.to(dtype)  # world direction of each pixel's ray: R^T K^-1 (u, v, 1)
        ray = ray / ray.norm(dim=-1, keepdim=True)
        cos = (n * ray).sum(-1, keepdim=True).abs()          # |n . l|, l = -ray: the head light
        lit = albedo * (ambient + (1.0 - ambient) * cos)
    else:
        raise UsageError(f"shading {shading!r}: expected lambert or normal here")
    return a * lit + (1.0 - a) * bg


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
    """Cameras of any layout core reads (`read_cameras`, the official Triangle Splatting / 3DGS
    ``cameras.json`` included) at ``image_size`` (H, W; None: their own) -> (cameras, warnings);
    cameras without a size need one."""
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


def load_scene(path, opacity_floor: float = 0.9999):
    """-> ``(TriangleScene, is_mesh)``: a triangle-splat PLY, an official Triangle Splatting / TS+
    output (model folder or ``.pt``, `official.load_official`), else any mesh facet3d reads.

    Meshes with (finite, non-zero) vertex normals keep them, per triangle corner in the scene's
    triangle order, as ``scene.meta["normals"]`` [N, 3, 3] float32 (numpy): `render`'s shading
    interpolates them.
    """
    from facet3d.core.io.api import check_input_path, read
    from facet3d.plugins.triangle_splatting.official import is_official_input, load_official
    from facet3d.plugins.triangle_splatting.scene import TriangleScene, is_scene_ply

    if is_official_input(path):
        scene = load_official(path, opacity_floor=opacity_floor)
        if len(scene) == 0:
            raise UsageError(f"{path}: no triangles: nothing to render")
        return scene, False
    p = check_input_path(path)
    if is_scene_ply(p):
        scene = TriangleScene.load_ply(p)
        if len(scene) == 0:
            raise UsageError(f"{path}: no triangles: nothing to render")
        return scene, False
    return scene_from_mesh(read(p), str(path)), True


def scene_from_mesh(geom, where: str):
    """A mesh `Geometry` -> its opaque `TriangleScene`; vertex normals kept (see `load_scene`).

    where: the input named in errors (a point cloud or an empty mesh is refused with one line).
    """
    import numpy as np

    from facet3d.plugins.triangle_splatting.scene import TriangleScene

    if not geom.is_mesh:
        raise UsageError(f"{where}: a point cloud without faces: nothing to render (give a mesh or a triangle-splat PLY)")
    scene = TriangleScene.from_geometry(geom)
    # from_geometry keeps the faces' order in both forms (TS+: the faces; TS: v[faces])
    if geom.normals is not None and len(geom.normals) == len(geom.vertices):
        vn = np.asarray(geom.normals, dtype=np.float64)
        if (np.isfinite(vn).all(axis=1) & (np.linalg.norm(vn, axis=1) > 1e-12)).any():
            scene.meta["normals"] = vn[np.asarray(geom.faces, dtype=np.int64)].astype(np.float32)
    if len(scene) == 0:
        raise UsageError(f"{where}: no triangles: nothing to render")
    return scene


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


# Bytes per pixel of one view, reference rasterizer (kernels/trisplat/reference.py; the numba backend
# needs less: O(pixels + pairs), so this bounds it from above) in float32 (meshes
# and scenes load as float32), C colour channels (3; 6 when shading: albedo + normal):
#   image accumulator acc [H W, C + 5] and its index_add copy (both alive during the add), the final
#   cat and the rgb / alpha / depth / depth_acc / normal outputs: 3 (C + 5) + 4 floats;
#   hard opaque z-buffer: zmin (float) and rmin (int64) per pixel: 12 B;
#   covered (pixel, triangle) pairs, PAIRS_PER_PIXEL per pixel (a closed surface seen from outside
#   covers its silhouette twice, front and back; the whole frame is assumed covered), each holding
#   t, p (int64), px [2], L [3], alpha, zpix, wz [3], barycentrics [3] and filtered copies:
#   _PAIR_BYTES (measured on CPU at 2048x2048: 105-110 B per extra covered layer);
#   shading (lambert/normal): rays, normals, albedo, lit colour [H, W, 3] each: 12 floats;
#   write_views: the clamped / scaled rgb [H, W, 3] twice, uint8 rgb, float32 depth and alpha.
# Measured peaks (frame-filling surfaces, 2048x2048): 225 / 277 / 535 B per pixel for 1 / 2 / 4
# layers (flat), 336 with lambert; the estimate is 383 (flat) / 467 (lambert) B per pixel.
# Plus a constant: the coverage test's candidate chunk (CHUNK_ELEMS = 2^21 candidates, ~64 B each).
PAIRS_PER_PIXEL = 2
_PAIR_BYTES = 112
_CHUNK_BYTES = (1 << 21) * 64
_TRIANGLE_BYTES = 600  # preprocess: uv, lines, incenter, normals, bbox, ranks... ~150 floats per triangle


def render_memory(image_size, n_triangles: int = 0, shading: str = "flat", itemsize: int = 4) -> int:
    """Estimated peak bytes of rendering and writing one view of ``image_size`` (H, W) (`write_views`).

    Views are rendered one at a time, so this is the peak whatever the number of views; the
    per-pixel cost is derived in the comment above (a lower bound for soft scenes with many
    overlapping translucent triangles, whose pairs per pixel grow with the depth complexity).
    """
    H, W = (int(v) for v in image_size)
    C = 3 if shading == "flat" else 6
    per_pixel = (3 * (C + 5) + 4) * itemsize + 12 + PAIRS_PER_PIXEL * _PAIR_BYTES \
        + (12 * itemsize if shading != "flat" else 0) + 2 * 3 * itemsize + 3 + 2 * 4
    return H * W * per_pixel + int(n_triangles) * _TRIANGLE_BYTES + _CHUNK_BYTES


def check_render_memory(image_size, n_triangles: int = 0, shading: str = "flat") -> None:
    """Raise `ResourceError` when one view of ``image_size`` (H, W) cannot fit in memory (`render_memory`)."""
    from facet3d.core.resources import require_memory

    H, W = (int(v) for v in image_size)
    what = f"rendering a {W}x{H} view" + (f" of {n_triangles} triangles" if n_triangles else "")
    require_memory(render_memory((H, W), n_triangles, shading), what + " (views render one at a time)")


@torch.no_grad()
def write_views(scene, cameras: Cameras, names: list[str], out_dir, background=(0.0, 0.0, 0.0), hard: bool = True,
                save_depth: bool = False, save_alpha: bool = False, save_cameras: bool = False,
                progress=None, shading: str = "flat", ambient: float = AMBIENT) -> list[str]:
    """Render every camera and write its files into ``out_dir`` (created; module docstring) -> the paths.

    names: one file stem per camera; save_cameras: also write `CAMERAS_FILE` (the cameras, named
    ``names``); progress(done, total, description) after each view; shading, ambient: as `render`
    (meshes; the normals are ``scene.meta["normals"]`` or the face normals).  Refuses up front
    (`ResourceError`) a view too large for the memory available (`check_render_memory`).
    """
    import numpy as np

    if shading not in SHADINGS:
        raise UsageError(f"shading {shading!r}: expected one of {', '.join(SHADINGS)}")
    if cameras.image_size is None:
        raise UsageError("the cameras have no image size; give --size WxH")
    biggest = max(cameras.image_size.tolist(), key=lambda hw: int(hw[0]) * int(hw[1]))
    check_render_memory(biggest, len(scene), shading)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    tick(progress, 0, len(cameras), "render")
    for i in range(len(cameras)):
        o = render(scene, cameras[i], background=background, hard=hard, shading=shading, ambient=ambient)
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
