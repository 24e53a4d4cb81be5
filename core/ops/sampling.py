"""Mesh surface sampling and voxel down-sampling.

`sample_mesh_surface` draws points uniformly by area: a face is picked with probability
proportional to its area, then a point inside it with barycentrics from the square-root trick
(u, v ~ U(0, 1): w = (1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v)), which is uniform on the
triangle.  Each sample carries its face's normal and, when the mesh has colours, the
interpolated vertex colour (or its face's colour).

`voxel_downsample` averages points (and normals / colours / features) per voxel of a regular
grid anchored at ``min(points) - voxel_size / 2`` (open3d's ``voxel_down_sample`` grid, so the
voxel count matches it), vectorised with torch ``unique`` + ``index_add``.

numpy in -> numpy out, torch in -> torch out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError
from ..convert import like_input, to_tensor

__all__ = ["SurfaceSamples", "sample_mesh_surface", "sample_points_from_meshes", "VoxelDownsample",
           "voxel_downsample"]


class SurfaceSamples(NamedTuple):
    points: Tensor | np.ndarray         # [S, 3]
    normals: Tensor | np.ndarray        # [S, 3] unit normals of the sampled faces
    colors: Tensor | np.ndarray | None  # [S, C] or None
    face_index: Tensor | np.ndarray     # [S] int64
    barycentrics: Tensor | np.ndarray   # [S, 3]


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None:
        return generator
    if seed is None:
        return None
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def sample_mesh_surface(verts, faces, num_samples: int, *, seed: int | None = None,
                        generator: torch.Generator | None = None, vert_colors=None,
                        face_colors=None) -> SurfaceSamples:
    """Sample ``num_samples`` points uniformly on one mesh's surface.

    verts ``[V, 3]``, faces ``[F, 3]``, vert_colors ``[V, C]`` / face_colors ``[F, C]`` optional
    (vertex colours win when both are given).  ``seed`` or a CPU ``generator`` make it
    reproducible.  Raises GeometryError when the mesh has no face of positive area.
    """
    v = to_tensor(verts)
    if not v.is_floating_point():
        v = v.double()
    f = to_tensor(faces, dtype=torch.int64, device=v.device)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise GeometryError(f"need verts [V, 3] and faces [F, 3], got {tuple(v.shape)} and {tuple(f.shape)}")
    if len(f) == 0:
        raise GeometryError("cannot sample a mesh without faces")
    if int(f.min()) < 0 or int(f.max()) >= len(v):
        raise GeometryError("face index out of range")
    if not bool(torch.isfinite(v).all()):
        raise GeometryError("mesh has non-finite vertices")
    gen = _generator(generator, seed)
    v0, v1, v2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = torch.cross(v1 - v0, v2 - v0, dim=1)
    dbl_area = cross.norm(dim=1)
    total = float(dbl_area.sum())
    if not total > 0:
        raise GeometryError("cannot sample a mesh whose faces all have zero area")
    # multinomial in float64 on CPU: float32 probabilities of tiny faces underflow, and a CPU
    # generator is what the caller's seed drives
    face_idx = torch.multinomial(dbl_area.detach().double().cpu(), num_samples, replacement=True, generator=gen)
    u = torch.rand(num_samples, 2, generator=gen, dtype=torch.float64)
    su = u[:, 0].sqrt()
    bary = torch.stack([1 - su, su * (1 - u[:, 1]), su * u[:, 1]], dim=1)
    face_idx, bary = face_idx.to(v.device), bary.to(v.device, v.dtype)
    tri = v[f[face_idx]]                                            # [S, 3 corners, 3]
    pts = (bary[..., None] * tri).sum(1)
    normals = (cross / torch.where(dbl_area > 0, dbl_area, torch.ones_like(dbl_area))[:, None])[face_idx]
    colors = None
    if vert_colors is not None:
        vc = to_tensor(vert_colors, device=v.device)
        vc = vc.float() if not vc.is_floating_point() else vc
        colors = (bary.to(vc.dtype)[..., None] * vc[f[face_idx]]).sum(1)
    elif face_colors is not None:
        colors = to_tensor(face_colors, device=v.device)[face_idx]
    return SurfaceSamples(like_input(pts, verts), like_input(normals, verts), like_input(colors, verts),
                          like_input(face_idx, verts), like_input(bary, verts))


def sample_points_from_meshes(meshes, num_samples: int, *, seed: int | None = None,
                              generator: torch.Generator | None = None, return_colors: bool = True):
    """Sample every mesh of a `Meshes` batch -> ``(points [B, S, 3], normals [B, S, 3], colors [B, S, C] | None)``.

    Colours come from vertex colours, else face colours, and only when every mesh has them.
    """
    gen = _generator(generator, seed)
    vc, fc = meshes.verts_colors_list(), meshes.face_colors_list()
    outs = [sample_mesh_surface(v, f, num_samples, generator=gen,
                                vert_colors=vc[i] if (vc is not None and return_colors) else None,
                                face_colors=fc[i] if (fc is not None and return_colors) else None)
            for i, (v, f) in enumerate(zip(meshes.verts_list(), meshes.faces_list()))]
    pts = torch.stack([o.points for o in outs])
    nrm = torch.stack([o.normals for o in outs])
    cols = torch.stack([o.colors for o in outs]) if all(o.colors is not None for o in outs) else None
    return pts, nrm, cols


class VoxelDownsample(NamedTuple):
    points: Tensor | np.ndarray                 # [M, 3] mean point per occupied voxel
    normals: Tensor | np.ndarray | None         # [M, 3] mean normal, re-normalised
    colors: Tensor | np.ndarray | None          # [M, C] mean colour
    features: Tensor | np.ndarray | None        # [M, F] mean feature
    voxel_index: Tensor | np.ndarray            # [M, 3] int64 integer voxel coordinates
    inverse: Tensor | np.ndarray                # [N] int64: output row of each input point
    counts: Tensor | np.ndarray                 # [M] int64 points per voxel


def voxel_downsample(points, voxel_size: float, normals=None, colors=None, features=None,
                     origin=None) -> VoxelDownsample:
    """Average points ``[N, 3]`` (and normals / colours ``[N, C]`` / features ``[N, F]``) per voxel.

    origin: grid corner ``[3]``; default ``min(points) - voxel_size / 2`` (open3d's).  Output rows
    are sorted by voxel coordinate (x slowest).  Normals are averaged then re-normalised
    (a voxel whose normals cancel keeps a zero normal).
    """
    p = to_tensor(points)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise GeometryError(f"voxel_downsample needs points [N>0, 3], got {tuple(p.shape)}")
    if not voxel_size > 0:
        raise GeometryError(f"voxel_size must be positive, got {voxel_size}")
    if not bool(torch.isfinite(p).all()):
        raise GeometryError("points have non-finite coordinates")
    p64 = p.double()  # voxel keys in float64 so boundary points fall where open3d (double) puts them
    o = p64.amin(0) - 0.5 * voxel_size if origin is None else to_tensor(origin, torch.float64, p.device)
    keys = torch.floor((p64 - o) / voxel_size).long()
    if bool((keys < 0).any()):
        raise GeometryError("origin must not lie above any point (negative voxel index)")
    ext = keys.amax(0) + 1
    if float(ext.double().prod()) < 2 ** 62:
        # one int64 key per voxel: 1-D unique is much faster than unique(dim=0)
        lin = (keys[:, 0] * ext[1] + keys[:, 1]) * ext[2] + keys[:, 2]
        _, inverse, counts = torch.unique(lin, return_inverse=True, return_counts=True)
    else:
        _, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    M = len(counts)

    def mean(x):
        if x is None:
            return None
        x = to_tensor(x, device=p.device)
        x = x.reshape(len(p), -1) if x.ndim == 1 else x
        if len(x) != len(p):
            raise GeometryError(f"attribute has {len(x)} rows for {len(p)} points")
        acc = torch.zeros((M,) + tuple(x.shape[1:]), dtype=torch.float64, device=p.device)
        acc.index_add_(0, inverse, x.double())
        return (acc / counts.reshape((M,) + (1,) * (x.ndim - 1))).to(x.dtype if x.is_floating_point() else torch.float32)

    vox = torch.zeros(M, 3, dtype=torch.int64, device=p.device)
    vox[inverse] = keys
    n_out = mean(normals)
    if n_out is not None:
        nn_ = n_out.norm(dim=1, keepdim=True)
        n_out = n_out / torch.where(nn_ > 0, nn_, torch.ones_like(nn_))
    return VoxelDownsample(like_input(mean(p), points), like_input(n_out, points), like_input(mean(colors), points),
                           like_input(mean(features), points), like_input(vox, points),
                           like_input(inverse, points), like_input(counts, points))
