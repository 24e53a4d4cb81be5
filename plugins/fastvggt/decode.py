"""From VGGT's outputs to geometry: pose encoding -> core `Cameras`, depth -> world points, confidence filter.

Pose encoding ``[..., 9] = [t (3), quaternion x y z w (4), fov_h, fov_w]``: camera-from-world (OpenCV),
``R = R(q / |q|)``; ``fy = (H / 2) / tan(fov_h / 2)``, ``fx = (W / 2) / tan(fov_w / 2)``; principal point
``(W / 2, H / 2)`` exactly as upstream's ``pose_encoding_to_extri_intri``, with pixel (i, j) at
coordinate (i, j) as upstream's unprojection (in core's integer-pixel-centre convention that is half
a pixel right / below the geometric centre; kept so the point cloud equals upstream's).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from facet3d.core.structures.cameras import Cameras


def quaternion_xyzw_to_matrix(q: Tensor) -> Tensor:
    """``[..., 4]`` (x, y, z, w; any norm) -> rotation ``[..., 3, 3]``."""
    i, j, k, r = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    o = torch.stack((1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
                     two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
                     two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j)), -1)
    return o.reshape(q.shape[:-1] + (3, 3))


def extrinsics_intrinsics(pose_enc: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """``pose_enc [..., 9]`` -> (extrinsics ``[..., 3, 4]`` camera-from-world, intrinsics ``[..., 3, 3]``)."""
    H, W = image_hw
    t, q, fov_h, fov_w = pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7], pose_enc[..., 8]
    E = torch.cat([quaternion_xyzw_to_matrix(q), t[..., None]], dim=-1)
    K = torch.zeros(pose_enc.shape[:-1] + (3, 3), dtype=pose_enc.dtype, device=pose_enc.device)
    K[..., 0, 0] = (W / 2.0) / torch.tan(fov_w / 2.0)
    K[..., 1, 1] = (H / 2.0) / torch.tan(fov_h / 2.0)
    K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = W / 2, H / 2, 1.0
    return E, K


def pose_encoding_to_cameras(pose_enc: Tensor, image_hw: tuple[int, int], names: Sequence[str] | None = None) -> Cameras:
    """``pose_enc [S, 9]`` (one sample) -> `Cameras` (float64, OpenCV, image size ``image_hw``).

    Degenerate encodings (an untrained model's) are made usable: FoV clamped to [1e-3, pi - 1e-3],
    a zero quaternion read as the identity."""
    pe = pose_enc.detach().double().cpu().clone()
    pe[..., 7:9] = pe[..., 7:9].clamp(1e-3, torch.pi - 1e-3)
    zero = (pe[..., 3:7] ** 2).sum(-1) < 1e-24
    pe[zero, 3:7] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=pe.dtype)
    E, K = extrinsics_intrinsics(pe, image_hw)
    return Cameras(K, E[..., :3], E[..., 3], image_hw, names)


def unproject_depth(depth: Tensor, cameras: Cameras) -> Tensor:
    """``depth [S, H, W]`` (z) with `cameras` (S) -> world points ``[S, H, W, 3]`` (float32), pixel (u, v) at (u, v)."""
    S, H, W = depth.shape
    K, R, t = (a.to(torch.float64) for a in (cameras.K, cameras.R, cameras.t))
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    d = depth.double().cpu()
    x = (u[None] - K[:, 0, 2, None, None]) * d / K[:, 0, 0, None, None]
    y = (v[None] - K[:, 1, 2, None, None]) * d / K[:, 1, 1, None, None]
    cam = torch.stack([x, y, d], dim=-1)  # [S, H, W, 3]
    world = torch.einsum("shwj,sjk->shwk", cam - t[:, None, None, :], R)  # R^T (x - t)
    return world.float()


def confidence_mask(conf: Tensor, percentile: float, eps: float = 1e-5) -> Tensor:
    """``conf [...]`` -> bool mask keeping values ``>=`` the ``percentile`` of all values (and ``> eps``),
    as upstream's demos do (over every frame together)."""
    c = conf.detach().float().cpu().numpy()
    thr = np.percentile(c, percentile) if percentile > 0 else -np.inf
    return torch.from_numpy((c >= thr) & (c > eps))


def point_cloud(points: Tensor, conf: Tensor, images: Tensor, percentile: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """points ``[S, H, W, 3]``, conf ``[S, H, W]``, images ``[S, 3, H, W]`` -> (xyz ``[M, 3]`` float32,
    rgb ``[M, 3]`` float32 in [0, 1], frame index ``[M]`` int32) of the points passing the filter and finite."""
    keep = confidence_mask(conf, percentile) & torch.isfinite(points).all(-1).cpu()
    rgb = images.detach().float().cpu().permute(0, 2, 3, 1)
    frame = torch.arange(points.shape[0])[:, None, None].expand(keep.shape)
    return (points.cpu()[keep].numpy().astype(np.float32), rgb[keep].numpy().astype(np.float32),
            frame[keep].numpy().astype(np.int32))
