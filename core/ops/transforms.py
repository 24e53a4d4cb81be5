"""Rigid (and affine) transforms of points and normals, and unit-sphere normalisation.

Points are row vectors: ``points: [..., N, 3]``, a transform ``(R [..., 3, 3], t [..., 3])``
maps ``p -> R p + t`` (i.e. ``points @ R.T + t``), the 4x4 form is ``[[R, t], [0, 1]]``.
Leading dims broadcast, so one transform can move a batch of clouds or one transform per cloud.
numpy in -> numpy out, torch in -> torch out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError
from ..convert import like_input, to_tensor

__all__ = [
    "make_transform",
    "split_transform",
    "invert_transform",
    "compose_transforms",
    "transform_points",
    "transform_normals",
    "Normalization",
    "normalize_unit_sphere",
    "denormalize",
]


def make_transform(R, t=None):
    """``R [..., 3, 3]``, ``t [..., 3]`` -> homogeneous ``[..., 4, 4]``."""
    Rt = to_tensor(R)
    tt = torch.zeros(Rt.shape[:-1], dtype=Rt.dtype, device=Rt.device) if t is None else to_tensor(t, dtype=Rt.dtype, device=Rt.device)
    shape = torch.broadcast_shapes(Rt.shape[:-2], tt.shape[:-1])
    T = torch.zeros(shape + (4, 4), dtype=Rt.dtype, device=Rt.device)
    T[..., :3, :3] = Rt
    T[..., :3, 3] = tt
    T[..., 3, 3] = 1
    return like_input(T, R)


def split_transform(T):
    """Homogeneous ``[..., 4, 4]`` (or ``[..., 3, 4]``) -> ``(R [..., 3, 3], t [..., 3])``."""
    return T[..., :3, :3], T[..., :3, 3]


def invert_transform(R, t):
    """Inverse of a rigid transform: ``(R^T, -R^T t)``; R must be a rotation (not checked)."""
    Rt = R.swapaxes(-1, -2) if isinstance(R, np.ndarray) else R.transpose(-1, -2)
    return Rt, -(Rt @ t[..., None])[..., 0]


def compose_transforms(R1, t1, R2, t2):
    """The transform "first (R1, t1), then (R2, t2)": ``(R2 R1, R2 t1 + t2)``."""
    return R2 @ R1, (R2 @ t1[..., None])[..., 0] + t2


def _linear_and_offset(R, t, matrix):
    if matrix is not None:
        if R is not None or t is not None:
            raise ValueError("pass either matrix or (R, t), not both")
        m = to_tensor(matrix)
        if m.shape[-2:] not in ((4, 4), (3, 4)):
            raise GeometryError(f"transform matrix must be [..., 4, 4] or [..., 3, 4], got {tuple(m.shape)}")
        return m[..., :3, :3], m[..., :3, 3]
    return (None if R is None else to_tensor(R)), (None if t is None else to_tensor(t))


def transform_points(points, R=None, t=None, *, matrix=None):
    """Apply ``p -> R p + t`` (or a 4x4 ``matrix``) to ``points [..., N, 3]``.

    R: ``[..., 3, 3]`` or None (identity); t: ``[..., 3]`` or None (zero).  The 4x4 may be any
    affine map (scale, shear); the last row is assumed to be (0, 0, 0, 1).
    """
    p = to_tensor(points)
    Rm, tm = _linear_and_offset(R, t, matrix)
    out = p
    if Rm is not None:
        out = out @ Rm.to(p.dtype).transpose(-1, -2)
    if tm is not None:
        out = out + tm.to(p.dtype)[..., None, :]
    return like_input(out, points)


def transform_normals(normals, R=None, *, matrix=None, normalize: bool = True):
    """Transform ``normals [..., N, 3]`` by the linear part of ``R`` or a 4x4 ``matrix``.

    Normals transform with the inverse transpose of the linear part (equal to R itself for a
    rotation); translation is ignored.  With ``normalize`` the result is re-normalised, which
    only matters for non-rigid (scaled/sheared) transforms; zero normals stay zero.
    """
    n = to_tensor(normals)
    A, _ = _linear_and_offset(R, None, matrix)
    if A is None:
        return normals
    A = A.to(n.dtype)
    # inverse-transpose keeps normals perpendicular to transformed tangents; inverse of an
    # orthonormal R is R^T, so the rigid case is exact either way.
    M = torch.linalg.inv(A).transpose(-1, -2)
    out = n @ M.transpose(-1, -2)
    if normalize:
        norm = out.norm(dim=-1, keepdim=True)
        out = out / torch.where(norm > 0, norm, torch.ones_like(norm))
    return like_input(out, normals)


class Normalization(NamedTuple):
    """Result of `normalize_unit_sphere`: ``points = (original - centre) / scale``."""

    points: Tensor | np.ndarray   # [..., N, 3]
    centre: Tensor | np.ndarray   # [..., 3]
    scale: Tensor | np.ndarray    # [...]


def normalize_unit_sphere(points, *, centre: str = "bbox") -> Normalization:
    """Centre ``points [..., N, 3]`` and scale them so the farthest point has radius 1.

    centre: ``"bbox"`` (middle of the axis-aligned box: the tightest-ish, outlier-robust
    choice for meshes) or ``"mean"`` (centroid).  Returns ``Normalization(points, centre, scale)``;
    undo with `denormalize`.  Raises GeometryError on empty, non-finite or single-point input.
    """
    p = to_tensor(points)
    if p.ndim < 2 or p.shape[-1] != 3 or p.shape[-2] == 0:
        raise GeometryError(f"cannot normalise points of shape {tuple(p.shape)}: need [..., N>0, 3]")
    if not torch.isfinite(p).all():
        raise GeometryError("cannot normalise points: non-finite coordinates")
    if centre == "bbox":
        c = 0.5 * (p.amin(dim=-2) + p.amax(dim=-2))
    elif centre == "mean":
        c = p.mean(dim=-2)
    else:
        raise ValueError(f"centre must be 'bbox' or 'mean', got {centre!r}")
    s = (p - c[..., None, :]).norm(dim=-1).amax(dim=-1)
    if (s <= 0).any():
        raise GeometryError("cannot normalise points: all points coincide (zero radius)")
    out = (p - c[..., None, :]) / s[..., None, None]
    return Normalization(like_input(out, points), like_input(c, points), like_input(s, points))


def denormalize(points, centre, scale):
    """Undo `normalize_unit_sphere`: ``points * scale + centre`` (``[..., N, 3]``, ``[..., 3]``, ``[...]``)."""
    p = to_tensor(points)
    c = to_tensor(centre, dtype=p.dtype, device=p.device)
    s = to_tensor(scale, dtype=p.dtype, device=p.device)
    return like_input(p * s[..., None, None] + c[..., None, :], points)
