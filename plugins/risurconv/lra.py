"""The group-all reference axis (LRA) with a deterministic, rotation-equivariant sign.

Official axis: the eigenvector of the smallest eigenvalue of the distance-weighted covariance
``M = sum_i w_i c_i c_i^T`` of the centred points ``c_i``, with ``w_i = (d_max - d_i) / sum(d_max - d)``,
``d_i = |c_i|`` (weights 1 when they sum to 0). The official code leaves its sign to the eigen
solver, which flips under some rotations (log-prob changes ~5e-3). The sign rule here:

1. third moment: make ``sum_i (c_i . a)^3 > 0`` (the side where the shape's tail lies);
2. if that is ~0 relative to ``sum_i |c_i . a|^3`` (shape symmetric across the plane normal to a),
   make ``sum_i n_i . a > 0`` with the points' normals;
3. if that is ~0 too, make the axis' first clearly non-zero component positive. This last rule is
   deterministic but not rotation-equivariant — only reached by shapes with exact symmetries, for
   which no rule can be (and the features would differ anyway, since they are not reflection-invariant).

Rules 1-2 are exact functions of rotated inputs, so the sign is equivariant up to rounding whenever
the deciding sum is clearly away from 0. A degenerate smallest eigenvalue (e.g. a sphere) leaves the
axis itself undetermined; nothing fixes that.
"""

from __future__ import annotations

import torch
from torch import Tensor

REL_TOL = 1e-6  # |sum| below this fraction of its absolute sum counts as "zero"


def lra_axis(centred: Tensor) -> Tensor:
    """Official group-all axis (unsigned): smallest-eigenvalue eigenvector of the weighted covariance.

    centred: Tensor  # [B, N, 3] points minus their centroid
    returns: Tensor  # [B, 3] unit axis, sign as returned by the eigen solver
    """
    d = torch.linalg.vector_norm(centred, dim=-1, keepdim=True)       # [B, N, 1]
    d = d.amax(dim=1, keepdim=True) - d
    w = d / d.sum(dim=1, keepdim=True)
    w = torch.nan_to_num(w, nan=1.0)                                  # official: nan weights -> 1
    M = centred.transpose(1, 2) @ (w * centred)                       # [B, 3, 3]
    _, vec = torch.linalg.eigh(M, UPLO="U")
    a = vec[..., 0]
    return a / torch.linalg.vector_norm(a, dim=-1, keepdim=True)


def orient_axis(axis: Tensor, centred: Tensor, normals: Tensor | None = None) -> Tensor:
    """Flip `axis` by the deterministic sign rule in the module docstring.

    axis: Tensor     # [B, 3] unit axes
    centred: Tensor  # [B, N, 3] centred points
    normals: Tensor  # [B, N, 3] their normals, or None (skip rule 2)
    returns: Tensor  # [B, 3]
    """
    with torch.no_grad():
        proj = (centred * axis[:, None, :]).sum(-1)                   # [B, N]
        s3 = (proj ** 3).sum(-1)
        ok3 = s3.abs() > REL_TOL * (proj.abs() ** 3).sum(-1)
        sign = torch.where(s3 >= 0, 1.0, -1.0).to(axis.dtype)
        if normals is not None:
            pn = (normals * axis[:, None, :]).sum(-1)
            sn = pn.sum(-1)
            okn = sn.abs() > REL_TOL * pn.abs().sum(-1)
            sign_n = torch.where(sn >= 0, 1.0, -1.0).to(axis.dtype)
        else:
            okn = torch.zeros_like(ok3)
            sign_n = sign
        # rule 3: first component with |a_j| > 1e-3 (some always exists for a unit vector)
        big = axis.abs() > 1e-3
        first = torch.argmax(big.to(torch.int8), dim=-1, keepdim=True)
        sign_f = torch.where(torch.gather(axis, -1, first).squeeze(-1) >= 0, 1.0, -1.0).to(axis.dtype)
        sign = torch.where(ok3, sign, torch.where(okn, sign_n, sign_f))
    return axis * sign[:, None]


def group_all_axis(xyz: Tensor, normals: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Centroid and signed LRA of each whole cloud (the group-all stage's centre and centre normal).

    xyz: Tensor      # [B, N, 3]
    normals: Tensor  # [B, N, 3] or None
    returns (centroid [B, 3], axis [B, 3])
    """
    centroid = xyz.mean(dim=1)
    centred = xyz - centroid[:, None, :]
    return centroid, orient_axis(lra_axis(centred), centred, normals)
