"""Depth bins, the learned depth head (`DepthNet`) and given depth as a distribution over the bins.

Bin convention (the one DFA3D's operator assumes; tested in tests/dfa3d/test_dfa_depth.py):
``D`` bins of width ``step = (d_max - d_min) / D`` tile ``[d_min, d_max]``; bin ``i`` covers
``[d_min + i*step, d_min + (i+1)*step)`` and its centre is ``d_min + (i + 0.5)*step``. A depth
``d`` has the normalised coordinate ``z_norm = (d - d_min) / (d_max - d_min)``, which the operator
turns into the bin coordinate ``z = z_norm*D - 0.5`` (align_corners=False): a depth at the centre of
bin ``i`` lands exactly on bin ``i`` (z = i), a depth on the edge between bins ``i`` and ``i + 1``
reads half of each, and depths within half a bin of ``d_min`` / ``d_max`` fade to zero (zero padding).
Paper default: 112 bins over 2-58 m (step 0.5 m).

Depth is the camera-frame z (what `Cameras.project` returns), not the ray length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from facet3d.core.errors import UsageError

__all__ = ["DepthBins", "DepthNet", "depth_to_distribution", "splat_depth", "fill_depth", "flatten_levels"]


@dataclass(frozen=True)
class DepthBins:
    """``num_bins`` equal bins over ``[d_min, d_max]`` metres (module docstring)."""

    d_min: float = 2.0
    d_max: float = 58.0
    num_bins: int = 112

    def __post_init__(self) -> None:
        if not (math.isfinite(self.d_min) and math.isfinite(self.d_max)) or not 0 <= self.d_min < self.d_max:
            raise UsageError(f"depth range must be 0 <= d_min < d_max, got {self.d_min}, {self.d_max}")
        if int(self.num_bins) != self.num_bins or self.num_bins < 1:
            raise UsageError(f"the number of depth bins must be a positive integer, got {self.num_bins}")

    @property
    def step(self) -> float:
        return (self.d_max - self.d_min) / self.num_bins

    def centres(self, dtype=torch.float32, device=None) -> Tensor:
        """``[D]`` bin centres ``d_min + (i + 0.5) * step``."""
        return self.d_min + (torch.arange(self.num_bins, dtype=dtype, device=device) + 0.5) * self.step

    def normalise(self, depth: Tensor) -> Tensor:
        """Depth (metres) -> ``z_norm = (depth - d_min) / (d_max - d_min)`` (the operator's z input)."""
        return (depth - self.d_min) / (self.d_max - self.d_min)

    def index(self, depth: Tensor) -> Tensor:
        """The bin holding each depth (int64; out-of-range depths give indices outside [0, D))."""
        return torch.floor((depth - self.d_min) / self.step).long()

    def contains(self, depth: Tensor) -> Tensor:
        return (depth >= self.d_min) & (depth < self.d_max)


class DepthNet(nn.Module):
    """A small depth head: ``num_convs`` 3x3 conv + BN + ReLU layers, a 1x1 conv to D logits, softmax.

    forward(features [B, C, H, W]) -> distribution [B, H, W, D] (sums to 1 over D).
    """

    def __init__(self, in_channels: int, num_bins: int = 112, mid_channels: int | None = None, num_convs: int = 2) -> None:
        super().__init__()
        mid = mid_channels or in_channels
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(c, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)]
            c = mid
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, num_bins, 1)
        self.num_bins = num_bins

    def logits(self, features: Tensor) -> Tensor:  # [B, C, H, W] -> [B, D, H, W]
        return self.head(self.body(features))

    def forward(self, features: Tensor) -> Tensor:  # [B, C, H, W] -> [B, H, W, D]
        return self.logits(features).softmax(1).permute(0, 2, 3, 1)


def depth_to_distribution(depth: Tensor, bins: DepthBins, mode: str = "gaussian", sigma: float | Tensor = 1.0,
                          empty: str = "zero") -> Tensor:
    """Given depth (metres; 0, negative or non-finite = no depth) -> a distribution over the bins.

    depth: Tensor   # [..., H, W]
    mode:  "onehot" (all mass in the bin holding the depth) or "gaussian" (weights
           exp(-(c_i - d)^2 / (2 (sigma*step)^2)) over the bin centres c_i, renormalised over the bins)
    sigma: the Gaussian's standard deviation in bins: one number, or per pixel [..., H, W]
    empty: what a pixel without a depth inside [d_min, d_max) gets: "zero" (all bins 0: the pixel
           lifts nothing) or "uniform" (1/D everywhere: it lifts equally onto every depth)
    returns: Tensor # [..., H, W, D]; sums to 1 over D where the depth is in range
    """
    if mode not in ("onehot", "gaussian"):
        raise UsageError(f"depth distribution mode must be onehot or gaussian, got {mode!r}")
    if empty not in ("zero", "uniform"):
        raise UsageError(f"empty depth must be zero or uniform, got {empty!r}")
    per_pixel = isinstance(sigma, Tensor)
    if mode == "gaussian" and not per_pixel and not (sigma > 0 and math.isfinite(sigma)):
        raise UsageError(f"sigma must be a positive number of bins, got {sigma}")
    d = torch.nan_to_num(depth.float(), nan=-1.0, posinf=-1.0, neginf=-1.0)
    valid = (d > 0) & bins.contains(d)  # [..., H, W]
    D = bins.num_bins
    out = torch.full(d.shape + (D,), 0.0 if empty == "zero" else 1.0 / D, dtype=torch.float32, device=d.device)
    flat = out.view(-1, D)
    rows = valid.reshape(-1).nonzero().flatten()  # only pixels with depth are computed
    dv = d.reshape(-1)[rows]
    i0 = bins.index(dv).clamp(0, D - 1)
    flat[rows] = 0.0
    if mode == "onehot":
        flat[rows, i0] = 1.0
        return out
    # the Gaussian within +-(4 sigma + 1) bins of the depth's bin (the mass beyond is < 1e-4), renormalised
    if per_pixel:
        sv = sigma.float().to(d.device).expand_as(d).reshape(-1)[rows][:, None]  # [n, 1]
        top = float(sv.max()) if len(sv) else 1.0
    else:
        sv, top = float(sigma), float(sigma)
    half = int(math.ceil(4 * top)) + 1
    cols = i0[:, None] + torch.arange(-half, half + 1, device=d.device)  # [n, 2h+1]
    inside = (cols >= 0) & (cols < D)
    centres = bins.d_min + (cols.to(torch.float32) + 0.5) * bins.step
    z = (dv[:, None] - centres) / (sv * bins.step)
    w = torch.exp(-0.5 * z * z) * inside
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    flat.index_put_((rows[:, None].expand_as(cols), cols.clamp(0, D - 1)), w, accumulate=True)
    return out


def splat_depth(points: Tensor, cameras, height: int | None = None, width: int | None = None) -> Tensor:
    """Sparse depth maps from 3D points: each point's z-depth at its nearest pixel, nearest point kept.

    points: Tensor   # [N, 3] world
    cameras: core `Cameras` (B cameras, with image_size, or give height and width for all)
    returns: Tensor  # [B, H, W] float32 depth; 0 where no point projects
    """
    if height is None or width is None:
        if cameras.image_size is None:
            raise UsageError("splat_depth needs cameras with an image size (or height and width)")
        height, width = int(cameras.height[0]), int(cameras.width[0])
    px, z = cameras.project(points)  # [B, N, 2], [B, N]
    B = len(cameras)
    out = torch.full((B, height * width), float("inf"), dtype=torch.float32, device=px.device)
    u = torch.round(px[..., 0])
    v = torch.round(px[..., 1])
    ok = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height) & torch.isfinite(u) & torch.isfinite(v)
    for b in range(B):
        m = ok[b]
        flat = (v[b, m] * width + u[b, m]).long()
        out[b].scatter_reduce_(0, flat, z[b, m].float(), reduce="amin")
    out[~torch.isfinite(out)] = 0.0
    return out.view(B, height, width)


def _fill_columns(d: np.ndarray, max_gap: float, ratio: float = 1.5) -> np.ndarray:
    """Fill vertical gaps of at most ``max_gap`` rows between two pixels with depth whose depths agree
    within ``ratio``, linearly in inverse depth (exact for a plane seen by a pinhole camera: 1/z is
    affine in the pixel coordinates). A spinning lidar's rings are near-horizontal lines, so this
    joins a ring to the next on the road without bridging a depth edge."""
    H, W = d.shape
    valid = d > 0
    rows = np.broadcast_to(np.arange(H)[:, None], (H, W))
    prev = np.maximum.accumulate(np.where(valid, rows, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(valid, rows, H)[::-1], axis=0)[::-1]
    hole = ~valid & (prev >= 0) & (nxt < H)
    if not hole.any():
        return d
    cols = np.broadcast_to(np.arange(W)[None, :], (H, W))
    dp = d[np.clip(prev, 0, H - 1), cols]
    dn = d[np.clip(nxt, 0, H - 1), cols]
    gap = (nxt - prev).astype(np.float64)
    ok = hole & (gap <= max_gap) & (np.maximum(dp, dn) <= ratio * np.minimum(dp, dn))
    out = d.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rows - prev) / gap
        inv = (1 - t) / dp + t / dn
        out[ok] = (1.0 / inv[ok]).astype(d.dtype)
    return out


def _nearest(d: np.ndarray, radius: float) -> np.ndarray:
    """Holes (0) take the depth of the nearest pixel with depth up to ``radius`` pixels away."""
    from scipy.ndimage import distance_transform_edt

    empty = d <= 0
    if radius <= 0 or not empty.any() or empty.all():
        return d
    dist, (iy, ix) = distance_transform_edt(empty, return_indices=True)
    return d[iy, ix] * (dist <= radius)  # pixels with depth are their own nearest (distance 0)


def fill_depth(depth: Tensor, radius: float, max_gap: float = 0.0, ratio: float = 1.5, join: float = 0.0) -> Tensor:
    """Densify a sparse depth map ([..., H, W], 0 = no depth), in three steps:

    1. ``join``: each pixel with depth spreads to holes up to ``join`` pixels away (nearest wins), so
       the points of one lidar ring (a few pixels apart along the ring) join into a line;
    2. ``max_gap``: vertical gaps of at most ``max_gap`` rows between agreeing depths are
       interpolated in inverse depth (`_fill_columns`: ring to ring, exact on a plane);
    3. ``radius``: the remaining holes take the nearest depth up to ``radius`` pixels away.
    Farther pixels stay 0.
    """
    if radius <= 0 and max_gap <= 0 and join <= 0:
        return depth
    arr = depth.detach().cpu().numpy()
    flat = arr.reshape(-1, *arr.shape[-2:])
    out = flat.copy()
    for i, d in enumerate(flat):
        if max_gap > 0:
            d = _fill_columns(_nearest(d, join), max_gap, ratio)
        out[i] = _nearest(d, radius)
    return torch.from_numpy(out.reshape(arr.shape)).to(depth.device, depth.dtype)


def flatten_levels(maps: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-level maps ``[B, H_l, W_l, K]`` -> (``[B, S, K]`` flattened row-major and concatenated,
    spatial shapes ``[L, 2]`` int64 (H_l, W_l), level start index ``[L]``)."""
    shapes = torch.tensor([[m.shape[1], m.shape[2]] for m in maps], dtype=torch.int64, device=maps[0].device)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    flat = torch.cat([m.reshape(m.shape[0], -1, m.shape[-1]) for m in maps], 1)
    return flat, shapes, starts
