"""What ``facet3d lift`` does: per-pixel features of every camera -> a voxel grid + BEV map, or 3D points.

For every query point (voxel centre, BEV pillar point, or a given point) and camera, the point is
projected with core `Cameras` and the camera's feature map is read with the DFA3D operator
(`facet3d.kernels.dfa3d.deformable_attention_3d`): one head, one level, one sampling point at the
projected location ``(u, v, d)`` (d: the point's camera depth, normalised over the bins), attention
weight 1, ``value`` = the feature map with a channel of ones appended, ``depth_dist`` = the
per-pixel distribution over depth bins (from the lidar, from depth maps, or uniform). The result is

    lifted[q] = sum_cameras sum_corners w_bilinear * s_depth * [feature, 1]

so the last channel is the *lifted weight*: how strongly the pixels around the projection say the
surface is at the point's depth. The output feature is ``sum / weight`` (0 where the weight is 0);
a point is *seen* when its weight reaches ``min_weight`` times the distribution's peak value (the
weight a point exactly on a surface gets). With ``--depth none`` every pixel has the uniform
distribution and lifting is plain back-projection (every point along a ray gets the pixel).

Given depth: the lidar sweep is projected into each camera at the feature maps' resolution (nearest
pixel, nearest point kept: `splat_depth`), the holes are filled from the nearest pixel with depth up
to ``fill`` pixels away (`fill_depth`; default 1 % of the map's longer side), and each pixel's depth
becomes a one-hot or Gaussian distribution over the bins (`depth_to_distribution`); pixels with no
depth get ``empty``: zero (they lift nothing, the default) or uniform.

Cameras are processed one at a time (one camera's depth distribution is ``h * w * D`` floats).
Nothing here prints: progress and messages go through the `facet3d.core.progress` callbacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from facet3d.core.errors import InputError, UsageError
from facet3d.core.progress import LogFn, ProgressFn, say, tick
from facet3d.plugins.dfa3d.depth import DepthBins, depth_to_distribution, fill_depth, splat_depth
from facet3d.core.io.api import write_json
from facet3d.core.io.images import read_depth, read_rgb
from facet3d.plugins.dfa3d.scenes import Scene, load_feature_maps, read_points, target_size

__all__ = ["LiftOptions", "Grid", "default_grid", "LiftResult", "lift_points", "run_lift", "make_grid", "distribution_peak",
           "display_colors"]

MAX_LABELS = 1024


@dataclass
class LiftOptions:
    """The knobs of a lifting job (the CLI's options; docs/dfa3d.md)."""

    features: str = "colors"          # "colors" or a .npy file / folder of per-camera maps
    depth: str = "auto"               # "auto" | "lidar" | "maps" | "none" | a folder of depth maps
    bins: DepthBins = field(default_factory=DepthBins)
    mode: str = "gaussian"            # depth distribution: "gaussian" | "onehot"
    sigma: float = 1.0                # Gaussian standard deviation, in bins
    empty: str = "zero"               # pixels without depth: "zero" | "uniform"
    fill: float | None = None         # hole filling radius in pixels (None: 1 % of the longer side)
    gap: float | None = None          # lidar: vertical gaps joined in inverse depth, pixels (None: 8 % of the height)
    min_weight: float = 0.25          # "seen": weight >= min_weight * distribution peak
    bev_min_weight: float = 0.02      # BEV cells drawn: column weight >= this * peak (the road at range
                                      # fills a thin slab of one voxel: its weight falls as 1 / distance)
    max_size: int | None = None       # downscale images so the longer side is at most this
    device: str = "cpu"
    chunk: int = 1 << 19              # query points per operator call


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid: cell (i, j, k) has centre origin + (i + 0.5, j + 0.5, k + 0.5) * voxel."""

    origin: tuple[float, float, float]
    voxel: float
    shape: tuple[int, int, int]

    @property
    def num_cells(self) -> int:
        return int(np.prod(self.shape))

    def centres(self, dtype=torch.float64, device=None, z_samples: int = 1) -> torch.Tensor:
        """``[nx * ny * nz * K, 3]`` cell centres (C order over (i, j, k)); with ``z_samples`` K > 1, each
        cell's K points at heights (s + 0.5) / K through the cell instead of its centre."""
        axes = [self.origin[a] + (torch.arange(n, dtype=dtype, device=device) + 0.5) * self.voxel
                for a, n in enumerate(self.shape)]
        axes[2] = _sub_heights(axes[2], self.voxel, z_samples)
        g = torch.meshgrid(*axes, indexing="ij")
        return torch.stack(g, -1).reshape(-1, 3)

    def extent(self) -> list[float]:
        return [v for a in range(3) for v in (self.origin[a], self.origin[a] + self.shape[a] * self.voxel)]


def _sub_heights(zc: torch.Tensor, voxel: float, k: int) -> torch.Tensor:
    """Cell-centre heights ``[nz]`` -> ``[nz * k]``: k evenly spaced heights through each cell."""
    if k <= 1:
        return zc
    off = ((torch.arange(k, dtype=zc.dtype, device=zc.device) + 0.5) / k - 0.5) * voxel
    return (zc[:, None] + off[None, :]).reshape(-1)


def make_grid(bounds: Sequence[float], voxel: float) -> Grid:
    """``bounds`` = (x0, x1, y0, y1, z0, z1) and a voxel size -> `Grid` (whole cells from the low
    corner: n = floor((x1 - x0) / voxel), a remainder under one voxel is dropped). UsageError when a
    side is empty or reversed, or the grid has no cells."""
    if len(bounds) != 6:
        raise UsageError(f"--grid needs 6 numbers X0,X1,Y0,Y1,Z0,Z1, got {len(bounds)}")
    if not (voxel > 0 and math.isfinite(voxel)):
        raise UsageError(f"--voxel must be a positive size, got {voxel}")
    lo, hi = bounds[0::2], bounds[1::2]
    for a, l, h in zip("XYZ", lo, hi):
        if not h > l:
            raise UsageError(f"--grid: {a}1 ({h}) must be greater than {a}0 ({l})")
    shape = tuple(int(math.floor((h - l) / voxel + 1e-9)) for l, h in zip(lo, hi))
    if min(shape) < 1:
        raise UsageError(f"--grid {','.join(f'{b:g}' for b in bounds)} with --voxel {voxel:g} has no cells "
                         f"({shape[0]} x {shape[1]} x {shape[2]}): use a smaller voxel or a larger grid")
    return Grid(tuple(float(v) for v in lo), float(voxel), shape)


def default_grid(scene: Scene, bounds: Sequence[float] | None, voxel: float | None) -> tuple[tuple[float, ...], float]:
    """(bounds, voxel) of the grid: the given ones, else the layout's defaults (nuScenes, KITTI), else
    (plain scenes) the lidar sweep's bounding box and 1/128 of its largest side."""
    if bounds is None:
        bounds = scene.default_grid
    if bounds is None:
        if scene.lidar_path is None:
            raise UsageError(f"{scene.root}: a plain scene without lidar has no default grid: give --grid X0,X1,Y0,Y1,Z0,Z1")
        pts = scene.lidar_points()
        lo, hi = pts.min(0), pts.max(0)
        pad = 1e-3 * max(float((hi - lo).max()), 1e-9)
        bounds = tuple(float(v) for a in range(3) for v in (lo[a] - pad, hi[a] + pad))
    if voxel is None:
        voxel = scene.default_voxel or max(bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4]) / 128
    return tuple(bounds), float(voxel)


def distribution_peak(opts: LiftOptions, depth_kind: str) -> float:
    """The weight a point exactly on a surface (at a bin centre) gets: the distribution's largest value."""
    b = opts.bins
    if depth_kind == "none":
        return 1.0 / b.num_bins
    d = torch.tensor([b.d_min + (b.num_bins // 2 + 0.5) * b.step])
    return float(depth_to_distribution(d, b, opts.mode, opts.sigma, opts.empty).max())


@dataclass
class LiftResult:
    """Lifted sums for N query points: ``sums [N, C]`` (feature x weight), ``weight [N]``,
    ``camera_weight [N, Ncam]`` (each camera's share), ``cameras_seeing [N]`` (cameras whose own weight
    is over the threshold), ``threshold`` (absolute weight for "seen"), ``peak`` (a surface point's weight)."""

    sums: torch.Tensor
    weight: torch.Tensor
    camera_weight: torch.Tensor
    cameras_seeing: torch.Tensor
    threshold: float
    channels: list[str]
    kind: str
    feature_sizes: list[tuple[int, int]]
    peak: float = 1.0

    def features(self) -> torch.Tensor:
        """``[N, C]`` normalised features: sums / weight (0 where the weight is 0)."""
        w = self.weight[:, None]
        return torch.where(w > 0, self.sums / w.clamp_min(1e-30), torch.zeros_like(self.sums))

    @property
    def seen(self) -> torch.Tensor:
        return self.weight >= self.threshold


# ------------------------------------------------------------------------------------- per camera
def _feature_maps(scene: Scene, opts: LiftOptions) -> tuple[list[Any], str, list[str]]:
    """Per camera: a loader of the [h, w, C] float32 map; kind; channel names."""
    if opts.features == "colors":
        sizes = [target_size(int(h), int(w), opts.max_size) for h, w in scene.cameras.image_size.tolist()]
        loaders = [(lambda p=p, s=s: read_rgb(p, s)) for p, s in zip(scene.image_paths, sizes)]
        return loaders, "colors", ["red", "green", "blue"]
    maps, kind = load_feature_maps(opts.features, scene)
    if kind == "labels":
        top = max(int(m.max()) for m in maps)
        if top < 0:
            raise InputError(f"{opts.features}: the label maps hold no label (all negative)")
        if top >= MAX_LABELS:
            raise InputError(f"{opts.features}: label {top} is over the {MAX_LABELS} labels lifting one-hot allows")
        k = top + 1

        def onehot(m: np.ndarray) -> np.ndarray:
            out = np.zeros(m.shape + (k,), np.float32)
            ok = m >= 0
            out[ok, m[ok].astype(np.int64)] = 1.0
            return out

        return [(lambda m=m: onehot(m)) for m in maps], "labels", [f"label_{i}" for i in range(k)]
    c = maps[0].shape[-1]
    return [(lambda m=m: m.astype(np.float32)) for m in maps], "features", [f"feature_{i}" for i in range(c)]


def resolve_depth(scene: Scene, depth: str) -> str:
    """``auto`` -> ``lidar`` / ``maps`` by what the scene has; checks the named source exists."""
    if depth == "auto":
        if scene.lidar_path is not None:
            return "lidar"
        if scene.depth_paths is not None:
            return "maps"
        raise InputError(f"{scene.root}: the scene has no lidar sweep nor depth/ maps: give --depth DIR, "
                         "or --depth none for plain back-projection")
    if depth == "lidar" and scene.lidar_path is None:
        raise InputError(f"{scene.root}: --depth lidar, but the scene has no lidar sweep")
    if depth == "maps" and scene.depth_paths is None:
        raise InputError(f"{scene.root}: --depth maps, but the scene has no depth/ folder")
    if depth in ("lidar", "maps", "none"):
        return depth
    folder = Path(depth)
    if not folder.is_dir():
        raise UsageError(f"--depth {depth}: expected lidar, none, auto or a folder of depth maps")
    return "dir"


def _depth_paths(scene: Scene, kind: str, folder: str) -> list[Path]:
    if kind == "maps":
        return list(scene.depth_paths)
    from facet3d.plugins.dfa3d.scenes import DEPTH_EXTS, find_file

    out = []
    for name, img in zip(scene.camera_names, scene.image_paths):
        f = find_file(Path(folder), img.stem, DEPTH_EXTS) or find_file(Path(folder), name, DEPTH_EXTS)
        if f is None:
            raise InputError(f"{folder}: no depth map for camera '{name}' ({img.stem}.npy / .png / .tif)")
        out.append(f)
    return out


def _resize_nearest(d: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resampling with pixel centres kept: dest pixel i reads source floor((i + 0.5) * H / h)."""
    H, W = d.shape
    if (H, W) == (h, w):
        return d
    iy = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    ix = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    return d[iy[:, None], ix[None, :]]


def camera_distribution(scene: Scene, cam_index: int, h: int, w: int, kind: str, opts: LiftOptions,
                        lidar: torch.Tensor | None, depth_paths: list[Path] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``([h * w, D] distribution, [h, w] depth or None)`` of one camera at feature resolution h x w."""
    dev = torch.device(opts.device)
    D = opts.bins.num_bins
    if kind == "none":
        return torch.full((h * w, D), 1.0 / D, device=dev), None
    if kind == "lidar":
        cam = scene.cameras[cam_index].resized(h, w).to(dev)
        depth = splat_depth(lidar, cam, h, w)[0]
    else:
        depth = torch.from_numpy(_resize_nearest(read_depth(depth_paths[cam_index]), h, w)).to(dev)
    radius = opts.fill if opts.fill is not None else max(1.0, 0.01 * max(h, w))
    gap = opts.gap if opts.gap is not None else 0.08 * h
    if kind == "lidar":
        depth = fill_depth(depth, radius, gap, join=max(1.0, 0.004 * max(h, w)))
    else:
        depth = fill_depth(depth, radius)
    dist = depth_to_distribution(depth, opts.bins, opts.mode, opts.sigma, opts.empty)
    return dist.reshape(h * w, D), depth


def sample_camera(points: torch.Tensor, cam, value: torch.Tensor, dist: torch.Tensor, h: int, w: int,
                  bins: DepthBins, chunk: int = 1 << 19) -> torch.Tensor:
    """One camera's lifted ``[N, C]`` (value channels) for world ``points [N, 3]``, through the DFA3D
    operator (module docstring). cam: a single core `Cameras` at the map's size h x w."""
    from facet3d.kernels.dfa3d import deformable_attention_3d

    N, C = points.shape[0], value.shape[-1]
    out = torch.zeros(N, C, dtype=value.dtype, device=value.device)
    D = dist.shape[-1]
    shapes = torch.tensor([[h, w, D]], dtype=torch.int64, device=value.device)
    starts = torch.zeros(1, dtype=torch.int64, device=value.device)
    v = value[None, :, None, :]
    dd = dist[None, :, None, :]
    for q0 in range(0, N, chunk):
        p = points[q0:q0 + chunk]
        px, z = cam.project(p)  # [1, n, 2], [1, n]
        px, z = px[0], z[0]
        u = (px[:, 0] + 0.5) / w
        vv = (px[:, 1] + 0.5) / h
        ok = (z > 1e-6) & (u >= 0) & (u < 1) & (vv >= 0) & (vv < 1)
        idx = ok.nonzero().flatten()
        if len(idx) == 0:
            continue
        loc = torch.stack([u[idx], vv[idx], bins.normalise(z[idx])], -1).to(value.dtype)
        loc = loc.view(1, -1, 1, 1, 1, 3)
        attn = torch.ones(loc.shape[:5], dtype=value.dtype, device=value.device)
        res = deformable_attention_3d(v, dd, shapes, starts, loc, attn)[0]  # [n, C]
        out[q0 + idx] = res
    return out


def lift_points(scene: Scene, points: torch.Tensor, opts: LiftOptions, progress: ProgressFn | None = None,
                log: LogFn | None = None, maps: tuple | None = None) -> LiftResult:
    """Lift the scene's per-pixel features onto world ``points [N, 3]`` (module docstring).
    maps: the scene's feature maps already read (`_feature_maps`), else they are read here."""
    dev = torch.device(opts.device)
    loaders, fkind, channels = maps if maps is not None else _feature_maps(scene, opts)
    dkind = resolve_depth(scene, opts.depth)
    lidar = None
    if dkind == "lidar":
        lidar = torch.from_numpy(scene.lidar_points()).to(dev)
    depth_paths = _depth_paths(scene, dkind, opts.depth) if dkind in ("maps", "dir") else None
    pts = points.to(dev, torch.float64)
    n_cam = len(scene.cameras)
    C = len(channels)
    sums = torch.zeros(len(pts), C, dtype=torch.float32, device=dev)
    cam_w = torch.zeros(len(pts), n_cam, dtype=torch.float32, device=dev)
    peak = distribution_peak(opts, dkind)
    thr = opts.min_weight * peak
    sizes = []
    for i in range(n_cam):
        name = scene.camera_names[i]
        tick(progress, i, n_cam, f"lift: camera {name}")
        fmap = torch.from_numpy(np.ascontiguousarray(loaders[i]())).to(dev)
        h, w = fmap.shape[:2]
        sizes.append((h, w))
        dist, _ = camera_distribution(scene, i, h, w, dkind, opts, lidar, depth_paths)
        value = torch.cat([fmap.reshape(h * w, C), torch.ones(h * w, 1, device=dev)], 1)
        cam = scene.cameras[i].resized(h, w).to(dev)
        res = sample_camera(pts, cam, value, dist, h, w, opts.bins, opts.chunk)
        sums += res[:, :C]
        cam_w[:, i] = res[:, C]
        del dist, value, fmap
    tick(progress, n_cam, n_cam, "lift: done")
    weight = cam_w.sum(1)
    seeing = (cam_w >= thr).sum(1)
    say(log, f"lifted {C} channel(s) from {n_cam} camera(s) at {', '.join(f'{w}x{h}' for h, w in sizes[:3])}"
             f"{' ...' if n_cam > 3 else ''} onto {len(pts)} points (depth: {dkind})")
    return LiftResult(sums, weight, cam_w, seeing, thr, channels, fkind, sizes, peak)


# ------------------------------------------------------------------------------------- colours
_PALETTE = np.array([[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
                     [0.58, 0.4, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.5, 0.5, 0.5],
                     [0.74, 0.74, 0.13], [0.09, 0.75, 0.81]], np.float32)


def display_colors(features: np.ndarray, kind: str, valid: np.ndarray | None = None) -> np.ndarray:
    """``[N, C]`` lifted features -> ``[N, 3]`` float32 colours in [0, 1]: colours as they are, labels by
    a palette of their argmax, other features by PCA to 3 channels (1-99 % range over ``valid``)."""
    f = np.asarray(features, np.float32)
    if kind == "colors":
        return np.clip(f[:, :3], 0, 1)
    if kind == "labels":
        return _PALETTE[np.argmax(f, 1) % len(_PALETTE)]
    sel = f if valid is None or not valid.any() else f[valid]
    if f.shape[1] == 1:
        proj = f
        ref = sel
    else:
        mean = sel.mean(0)
        _, _, vt = np.linalg.svd(sel[: 100_000] - mean, full_matrices=False)
        comp = vt[: min(3, f.shape[1])]
        proj = (f - mean) @ comp.T
        ref = (sel - mean) @ comp.T
    lo, hi = np.percentile(ref, 1, 0), np.percentile(ref, 99, 0)
    out = np.clip((proj - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    if out.shape[1] < 3:
        out = np.repeat(out[:, :1], 3, 1) if out.shape[1] == 1 else np.concatenate([out, np.zeros_like(out[:, :1])], 1)
    return out.astype(np.float32)


def _quantised(colors: np.ndarray) -> np.ndarray:
    """Colours on the 8-bit levels a PLY stores (the exact features are in features.npy)."""
    return (np.round(colors * 255) / 255).astype(np.float32)


# ------------------------------------------------------------------------------------- the job
def _estimate_bytes(n_points: int, channels: int, scene: Scene, opts: LiftOptions) -> int:
    """Peak memory: per-point sums / features / camera weights / coordinates, one camera's maps and
    distribution, the operator's gather workspace."""
    per_point = 4 * (2 * channels + len(scene.cameras) + 2) + 8 * 3 * 2
    hw = max(int(np.prod(target_size(int(h), int(w), opts.max_size))) for h, w in scene.cameras.image_size.tolist())
    per_cam = hw * 4 * (opts.bins.num_bins * 2 + channels + 8)
    workspace = min(n_points, opts.chunk) * (4 * (channels + 1 + 8) * 4 + 8 * 16)
    return n_points * per_point + per_cam + workspace


def check_memory(n_points: int, channels: int, scene: Scene, opts: LiftOptions, what: str) -> None:
    from facet3d.core.resources import require_memory

    require_memory(_estimate_bytes(n_points, channels, scene, opts), what)


def _write_npy(path: Path, arr: np.ndarray) -> None:
    from facet3d.core.io.api import atomic_output

    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr))


def _write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    from facet3d.core.io.api import atomic_output

    with atomic_output(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def bev_image(features: np.ndarray, weight: np.ndarray, kind: str, threshold: float, min_side: int = 512) -> np.ndarray:
    """``[nx, ny, C]`` BEV features + ``[nx, ny]`` weights -> uint8 RGB ``[rows, cols, 3]`` looking down
    -z: +x to the right, +y up (row 0 = largest y); cells under the threshold black; nearest-upscaled
    by an integer factor to at least ``min_side`` pixels."""
    nx, ny, C = features.shape
    valid = (weight >= threshold).reshape(-1)
    rgb = display_colors(features.reshape(-1, C), kind, valid).reshape(nx, ny, 3)
    rgb[weight < threshold] = 0
    img = np.transpose(rgb, (1, 0, 2))[::-1]  # [ny, nx, 3], row 0 = top = max y
    s = max(1, int(math.ceil(min_side / max(nx, ny))))
    img = np.repeat(np.repeat(img, s, 0), s, 1)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def run_lift(scene: Scene, out_dir: Path, opts: LiftOptions, grid: Grid | None = None, bev_size: int | None = None,
             at: str | Path | None = None, seen_only: bool = False, z_samples: int = 4, progress: ProgressFn | None = None,
             log: LogFn | None = None) -> dict[str, Any]:
    """The whole job: lift onto ``grid`` (voxels + BEV) or onto the points of ``at`` (a point file,
    or ``"lidar"`` for the scene's own sweep), write the outputs into ``out_dir`` atomically, return
    the summary. z_samples: points per voxel, spread through its height (a thin horizontal surface
    seen at a grazing angle, like the road, falls between voxel centres otherwise). Files: grid -> voxels.ply, features.npy [nx, ny, nz, C], weight.npy [nx, ny, nz],
    bev.png, bev_features.npy [bx, by, C], bev_weight.npy [bx, by], lift.json; points -> points.ply,
    features.npy [N, C], weight.npy [N], lift.json."""
    from facet3d.core.io.api import write
    from facet3d.core.io.outputs import output_folder
    from facet3d.core.io.record import Geometry

    maps = _feature_maps(scene, opts)  # validates --features before any work
    _, fkind, channels = maps
    dkind = resolve_depth(scene, opts.depth)
    C = len(channels)
    summary: dict[str, Any] = {
        "scene": str(scene.root), "layout": scene.layout, "frame": scene.frame, "cameras": scene.camera_names,
        "features": opts.features if opts.features == "colors" else str(opts.features), "feature_kind": fkind,
        "channels": channels, "depth": dkind,
        "depth_bins": {"d_min": opts.bins.d_min, "d_max": opts.bins.d_max, "num_bins": opts.bins.num_bins,
                       "mode": opts.mode, "sigma": opts.sigma, "empty": opts.empty},
        "min_weight": opts.min_weight, "max_size": opts.max_size,
    }
    if at is not None:
        if str(at) == "lidar":
            pts_np = scene.lidar_points()
            summary["at"] = str(scene.lidar_path)
        else:
            if not Path(at).is_file():
                raise InputError(f"--at {at}: no such point file")
            pts_np = read_points(Path(at))
            summary["at"] = str(at)
        if len(pts_np) == 0:
            raise InputError(f"--at {at}: the point file has no points")
        check_memory(len(pts_np), C, scene, opts, f"lifting {C} channels onto {len(pts_np)} points")
        res = lift_points(scene, torch.from_numpy(pts_np), opts, progress, log, maps)
        feats = res.features().cpu().numpy()
        weight = res.weight.cpu().numpy()
        seen = res.seen.cpu().numpy()
        colors = _quantised(display_colors(feats, fkind, seen))
        colors[~seen] = 0
        keep = seen if seen_only else np.ones(len(seen), bool)
        geom = Geometry(pts_np[keep], colors=colors[keep],
                        attributes={"weight": weight[keep].astype(np.float32),
                                    "cameras": res.cameras_seeing.cpu().numpy()[keep].astype(np.int32),
                                    "feature": feats[keep].astype(np.float32)})
        if fkind == "labels":
            geom.attributes["label"] = np.where(seen, np.argmax(feats, 1), -1)[keep].astype(np.int32)
        with output_folder(Path(out_dir)):
            files = {"points": Path(out_dir) / "points.ply", "features": Path(out_dir) / "features.npy",
                     "weight": Path(out_dir) / "weight.npy", "summary": Path(out_dir) / "lift.json"}
            write(files["points"], geom)
            _write_npy(files["features"], feats.astype(np.float32))
            _write_npy(files["weight"], weight.astype(np.float32))
            summary.update(mode="points", points=len(pts_np), seen_points=int(seen.sum()), written_points=int(keep.sum()),
                           weight_threshold=res.threshold, feature_sizes=res.feature_sizes,
                           outputs={k: str(v) for k, v in files.items()})
            write_json(files["summary"], summary)
        return summary

    if grid is None:
        raise UsageError("give a grid (--grid, or a scene layout with a default grid) or --at POINTS")
    n_vox = grid.num_cells
    nx, ny, nz = grid.shape
    K = int(z_samples)
    if K < 1:
        raise UsageError(f"--z-samples must be a positive integer, got {z_samples}")
    bx = by = None
    if bev_size is not None:
        if int(bev_size) != bev_size or bev_size < 1:
            raise UsageError(f"--bev-size must be a positive integer, got {bev_size}")
        bx = by = int(bev_size)
    n_bev = 0 if bx is None else bx * by * nz
    check_memory((n_vox + n_bev) * K, C, scene, opts,
                 f"lifting {C} channels onto a {nx} x {ny} x {nz} grid" + (f" and a {bx} x {by} BEV" if bx else "")
                 + (f" ({K} samples a voxel)" if K > 1 else ""))
    pts = grid.centres(z_samples=K)
    if bx is not None:
        pts = torch.cat([pts, _pillar_centres(grid.extent(), bx, by, grid, K)])
    res = lift_points(scene, pts, opts, progress, log, maps)
    # a voxel's sums and weight: the mean over its K sub-samples (K = 1: its centre)
    # (seen: some sub-sample reaches the threshold, i.e. a surface passes through the voxel)
    sums = res.sums.cpu().numpy().reshape(-1, K, C).mean(1)
    sub_w = res.weight.cpu().numpy().reshape(-1, K)
    weight = sub_w.mean(1)
    vox_sum, vox_w = sums[:n_vox], weight[:n_vox]
    feats = np.where(vox_w[:, None] > 0, vox_sum / np.maximum(vox_w[:, None], 1e-30), 0).astype(np.float32)
    seen = sub_w[:n_vox].max(1) >= res.threshold
    if bx is None:
        bsum = vox_sum.reshape(nx, ny, nz, C).sum(2)
        bw = vox_w.reshape(nx, ny, nz).sum(2)
        bx, by = nx, ny
    else:
        bsum = sums[n_vox:].reshape(bx, by, nz, C).sum(2)
        bw = weight[n_vox:].reshape(bx, by, nz).sum(2)
    bfeat = np.where(bw[..., None] > 0, bsum / np.maximum(bw[..., None], 1e-30), 0).astype(np.float32)
    centres = grid.centres().numpy()
    colors = _quantised(display_colors(feats, fkind, seen))
    geom = Geometry(centres[seen], colors=colors[seen],
                    attributes={"weight": vox_w[seen].astype(np.float32), "feature": feats[seen]})
    if fkind == "labels":
        geom.attributes["label"] = np.argmax(feats[seen], 1).astype(np.int32)
    with output_folder(Path(out_dir)):
        o = Path(out_dir)
        files = {"voxels": o / "voxels.ply", "features": o / "features.npy", "weight": o / "weight.npy",
                 "bev": o / "bev.png", "bev_features": o / "bev_features.npy", "bev_weight": o / "bev_weight.npy",
                 "summary": o / "lift.json"}
        write(files["voxels"], geom)
        _write_npy(files["features"], feats.reshape(nx, ny, nz, C))
        _write_npy(files["weight"], vox_w.reshape(nx, ny, nz).astype(np.float32))
        bev_thr = opts.bev_min_weight * res.peak
        _write_png(files["bev"], bev_image(bfeat, bw, fkind, bev_thr))
        _write_npy(files["bev_features"], bfeat)
        _write_npy(files["bev_weight"], bw.astype(np.float32))
        summary.update(mode="grid", grid={"extent": grid.extent(), "voxel": grid.voxel, "shape": list(grid.shape),
                                          "origin": list(grid.origin), "z_samples": K},
                       bev={"shape": [bx, by], "cells_drawn": int((bw >= bev_thr).sum()), "weight_threshold": bev_thr},
                       voxels=n_vox, seen_voxels=int(seen.sum()), weight_threshold=res.threshold,
                       feature_sizes=res.feature_sizes, outputs={k: str(v) for k, v in files.items()})
        write_json(files["summary"], summary)
    return summary


def _pillar_centres(ext: list[float], bx: int, by: int, grid: Grid, z_samples: int = 1) -> torch.Tensor:
    """``[bx * by * nz * K, 3]``: BEV cells (bx x by over the grid's x/y extent) at the grid's heights."""
    x0, x1, y0, y1 = ext[:4]
    xs = x0 + (torch.arange(bx, dtype=torch.float64) + 0.5) * (x1 - x0) / bx
    ys = y0 + (torch.arange(by, dtype=torch.float64) + 0.5) * (y1 - y0) / by
    zs = _sub_heights(grid.origin[2] + (torch.arange(grid.shape[2], dtype=torch.float64) + 0.5) * grid.voxel,
                      grid.voxel, z_samples)
    g = torch.meshgrid(xs, ys, zs, indexing="ij")
    return torch.stack(g, -1).reshape(-1, 3)
