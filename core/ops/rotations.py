"""Rotations in SO(3): random sampling and conversions between representations.

Conventions (shared with `facet3d.core.structures.cameras` and COLMAP):

* quaternions are ``(w, x, y, z)``, scalar first, unit norm; ``q`` and ``-q`` are the same
  rotation, and the functions returning quaternions pick ``w >= 0``;
* axis-angle vectors are ``axis * angle`` with the angle in radians;
* matrices act on column vectors: ``x' = R @ x`` (for row-stacked points ``P @ R.T``);
* the continuous 6-D representation (Zhou et al., CVPR 2019) is the matrix's first two ROWS,
  ``[R00, R01, R02, R10, R11, R12]``, as pytorch3d stores it (SPIN and ROMP store the first two
  COLUMNS instead, ``R[:, :2]`` flattened row by row: another layout of the same idea).

Every function takes leading batch dimensions (``[..., 4]``, ``[..., 3, 3]``) and works on any
floating dtype/device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "random_quaternions",
    "random_rotations",
    "random_rotation_about_axis",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "quaternion_multiply",
    "quaternion_invert",
    "rotation_angle",
    "rotation_between",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
]


def random_quaternions(n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                       device: torch.device | str | None = None) -> Tensor:
    """Haar-uniform random unit quaternions.  Returns ``[n, 4]`` (w, x, y, z) with ``w >= 0``.

    A normalised 4-D Gaussian is uniform on S^3, and the double cover S^3 -> SO(3) carries the
    uniform measure to the Haar measure; sampling in float64 avoids a bias from tiny norms.
    """
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=generator.device if generator else device)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.to(dtype=dtype, device=device)


def random_rotations(n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> Tensor:
    """``n`` Haar-uniform random rotation matrices.  Returns ``[n, 3, 3]`` (orthonormal, det +1)."""
    return quaternion_to_matrix(random_quaternions(n, generator=generator, dtype=torch.float64)).to(
        dtype=dtype, device=device)


def random_rotation_about_axis(axis: Tensor | tuple[float, float, float], n: int = 1, *,
                               max_angle: float = math.pi, generator: torch.Generator | None = None,
                               dtype: torch.dtype = torch.float32,
                               device: torch.device | str | None = None) -> Tensor:
    """Rotations about a fixed ``axis`` by angles uniform in ``[-max_angle, max_angle]``.

    axis: ``[3]`` (any length, normalised here).  Returns ``[n, 3, 3]``.  With ``max_angle=pi``
    this is the uniform distribution on the circle subgroup (e.g. "random yaw" with axis z).
    """
    a = torch.as_tensor(axis, dtype=torch.float64).reshape(3)
    norm = a.norm()
    if not torch.isfinite(norm) or norm <= 0:
        from ..errors import GeometryError
        raise GeometryError(f"rotation axis must be a finite non-zero vector, got {a.tolist()}")
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device if generator else None)
    angles = (2.0 * u.cpu() - 1.0) * max_angle
    return axis_angle_to_matrix((a / norm)[None] * angles[:, None]).to(dtype=dtype, device=device)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (w, x, y, z) -> rotation matrices ``[..., 3, 3]``.

    The input is normalised first, so slightly off-norm quaternions (e.g. from files) are fine.
    """
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` (w, x, y, z), ``w >= 0``.

    Shepperd's method: build all four candidate quaternions and keep, per matrix, the one whose
    largest component sits on the divisor, so it stays accurate near 180 degrees.
    """
    m = R
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * (w^2, x^2, y^2, z^2)
    sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    cands = torch.stack([
        torch.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], -1),
        torch.stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], -1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, sq[..., 3]], -1),
    ], -2)  # [..., 4, 4]; row i = 4 * q_i * q
    best = sq.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Axis-angle ``[..., 3]`` (axis * angle) -> rotation matrices ``[..., 3, 3]`` (Rodrigues)."""
    return quaternion_to_matrix(axis_angle_to_quaternion(axis_angle))


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> axis-angle ``[..., 3]`` with angle in ``[0, pi]``."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def axis_angle_to_quaternion(axis_angle: Tensor) -> Tensor:
    """Axis-angle ``[..., 3]`` -> unit quaternions ``[..., 4]`` (w, x, y, z).

    Uses sin(a/2)/a with its Taylor series near 0 so tiny rotations keep full precision and
    the result stays differentiable at the identity.
    """
    angle = axis_angle.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    small = angle < 1e-6
    safe = torch.where(small, torch.ones_like(angle), angle)
    s = torch.where(small, 0.5 - angle * angle / 48.0, torch.sin(half) / safe)
    return torch.cat([torch.cos(half), axis_angle * s], dim=-1)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` -> axis-angle ``[..., 3]`` with angle in ``[0, pi]``."""
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    xyz = q[..., 1:]
    sin_half = xyz.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, q[..., :1])
    small = sin_half < 1e-6
    scale = torch.where(small, 2.0 + angle * angle / 12.0, angle / torch.where(small, torch.ones_like(sin_half), sin_half))
    return xyz * scale


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of ``[..., 4]`` quaternions: the rotation "first b, then a"."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quaternion_invert(q: Tensor) -> Tensor:
    """Inverse of unit quaternions ``[..., 4]`` (the conjugate)."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def rotation_angle(R: Tensor) -> Tensor:
    """Rotation angle in ``[0, pi]`` of matrices ``[..., 3, 3]``, computed stably via the quaternion."""
    return matrix_to_axis_angle(R).norm(dim=-1)


def rotation_between(a: Tensor, b: Tensor) -> Tensor:
    """The smallest rotation ``[3, 3]`` taking unit vector ``a`` [3] to unit vector ``b`` [3]
    (Rodrigues about a x b); opposite vectors give a half turn about an axis orthogonal to ``a``."""
    v, c = torch.linalg.cross(a, b), float(a @ b)
    eye = torch.eye(3, dtype=a.dtype, device=a.device)
    if c < -1 + 1e-9:
        other = torch.tensor([1.0, 0, 0] if abs(float(a[0])) < 0.9 else [0, 1.0, 0], dtype=a.dtype, device=a.device)
        o = torch.linalg.cross(a, other)
        o = o / o.norm()
        return 2 * torch.outer(o, o) - eye
    k = torch.zeros(3, 3, dtype=a.dtype, device=a.device)
    k[0, 1], k[0, 2], k[1, 0], k[1, 2], k[2, 0], k[2, 1] = -v[2], v[1], v[2], -v[0], -v[1], v[0]
    return eye + k + k @ k / (1 + c)


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """6-D rotations ``[..., 6]`` -> rotation matrices ``[..., 3, 3]`` (Zhou et al. 2019).

    The two 3-vectors are the first two rows, Gram-Schmidt orthonormalised; the third row is their
    cross product, so any input with non-parallel halves gives a proper rotation (det +1). This is
    why networks regress it: unlike axis-angle or quaternions it has no discontinuity.
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rotation_6d(R: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> 6-D rotations ``[..., 6]``: the first two rows, flattened."""
    return R[..., :2, :].reshape(R.shape[:-2] + (6,))
