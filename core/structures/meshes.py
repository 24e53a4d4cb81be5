"""`Meshes`: a batch of triangle meshes of different sizes, with list / padded / packed views.

Layout as in pytorch3d's ``Meshes``:

* ``verts_list()`` B x ``[V_i, 3]``, ``verts_padded()`` ``[B, V_max, 3]``, ``verts_packed()`` ``[sum V_i, 3]``;
* ``faces_list()`` B x ``[F_i, 3]`` (indices local to mesh i), ``faces_padded()`` ``[B, F_max, 3]``
  (padding rows = -1), ``faces_packed()`` ``[sum F_i, 3]`` (indices into ``verts_packed()``, i.e.
  offset by ``mesh_to_verts_packed_first_idx()``);
* per-vertex colours / normals follow the vertices, per-face colours / normals / areas the faces.

Vertex normals, when not given, are area-weighted averages of the incident face normals (the
sum of the un-normalised face cross products, whose length is twice the area).  Vertices with
no incident face (or only degenerate ones) get a zero normal.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError
from .pointclouds import batch_indices, list_to_padded, padded_to_list

__all__ = ["Meshes"]


def _tensor(x, dtype=None) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


class Meshes:
    """Batched triangle meshes.

    verts:        list of B tensors ``[V_i, 3]`` or padded ``[B, V, 3]`` (all V rows used)
    faces:        list of B int tensors ``[F_i, 3]`` or padded ``[B, F, 3]`` (rows of -1 are padding)
    verts_colors: per-vertex ``[V_i, C]`` in [0, 1] (list or padded), optional
    face_colors:  per-face ``[F_i, C]`` in [0, 1] (list or padded), optional
    verts_normals: per-vertex ``[V_i, 3]``, optional (computed when missing)

    Raises GeometryError on shape errors, out-of-range face indices or non-finite vertices.
    """

    def __init__(self, verts, faces, verts_colors=None, face_colors=None, verts_normals=None) -> None:
        vl = [_tensor(v) for v in verts] if isinstance(verts, (list, tuple)) else list(_tensor(verts).unbind(0))
        if isinstance(faces, (list, tuple)):
            fl = [_tensor(f, torch.int64) for f in faces]
        else:
            fp = _tensor(faces, torch.int64)
            fl = [f[(f >= 0).all(dim=1)] for f in fp.unbind(0)]  # drop -1 padding rows
        if len(vl) == 0 or len(vl) != len(fl):
            raise GeometryError(f"Meshes needs as many face sets as vertex sets (got {len(vl)} and {len(fl)})")
        for i, (v, f) in enumerate(zip(vl, fl)):
            if v.ndim != 2 or v.shape[1] != 3 or not v.is_floating_point():
                raise GeometryError(f"mesh {i}: verts must be float [V, 3], got {tuple(v.shape)} {v.dtype}")
            if f.ndim != 2 or f.shape[1] != 3:
                raise GeometryError(f"mesh {i}: faces must be [F, 3], got {tuple(f.shape)}")
            if len(f) and (int(f.min()) < 0 or int(f.max()) >= len(v)):
                raise GeometryError(f"mesh {i}: face index out of range [0, {len(v)})")
            if not bool(torch.isfinite(v).all()):
                raise GeometryError(f"mesh {i}: non-finite vertex coordinates")
        self.device = vl[0].device
        self._verts_list = vl
        self._faces_list = [f.to(self.device) for f in fl]
        self._nv = [int(v.shape[0]) for v in vl]
        self._nf = [int(f.shape[0]) for f in fl]
        self._verts_colors = self._per_item(verts_colors, self._nv, "verts_colors")
        self._face_colors = self._per_item(face_colors, self._nf, "face_colors")
        self._verts_normals_given = self._per_item(verts_normals, self._nv, "verts_normals")
        self._cache: dict[str, object] = {}

    def _per_item(self, x, counts, name) -> list[Tensor] | None:
        if x is None:
            return None
        lst = [_tensor(a) for a in x] if isinstance(x, (list, tuple)) else padded_to_list(_tensor(x), counts)
        if len(lst) != len(counts) or any(a.ndim != 2 or a.shape[0] != n for a, n in zip(lst, counts)):
            raise GeometryError(f"{name}: shapes {[tuple(a.shape) for a in lst]} do not match counts {counts}")
        return [a.to(self.device) for a in lst]

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self._verts_list)

    def __repr__(self) -> str:
        return f"Meshes(B={len(self)}, verts={self._nv}, faces={self._nf}, device={self.device})"

    def __getitem__(self, index) -> "Meshes":
        """int, slice, list of ints or bool/long tensor -> a new `Meshes`."""
        idx = batch_indices(index, len(self), "Meshes")
        pick = lambda lst: None if lst is None else [lst[i] for i in idx]  # noqa: E731
        return Meshes(pick(self._verts_list), pick(self._faces_list), pick(self._verts_colors),
                      pick(self._face_colors), pick(self._verts_normals_given))

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Meshes":
        """Copy to ``device``; ``dtype`` applies to vertices and normals."""
        mv = lambda lst, cast=False: None if lst is None else [  # noqa: E731
            t.to(device=device or t.device, dtype=dtype if (cast and dtype) else t.dtype) for t in lst]
        return Meshes(mv(self._verts_list, True), mv(self._faces_list), mv(self._verts_colors),
                      mv(self._face_colors), mv(self._verts_normals_given, True))

    def cpu(self) -> "Meshes":
        return self.to("cpu")

    def isempty(self) -> bool:
        return sum(self._nf) == 0

    # ------------------------------------------------------------------ bookkeeping
    def num_verts_per_mesh(self) -> Tensor:
        """``[B]`` int64."""
        return torch.tensor(self._nv, dtype=torch.int64, device=self.device)

    def num_faces_per_mesh(self) -> Tensor:
        """``[B]`` int64."""
        return torch.tensor(self._nf, dtype=torch.int64, device=self.device)

    def mesh_to_verts_packed_first_idx(self) -> Tensor:
        """``[B]``: row of ``verts_packed()`` where mesh i starts."""
        n = self.num_verts_per_mesh()
        return torch.cumsum(n, 0) - n

    def mesh_to_faces_packed_first_idx(self) -> Tensor:
        """``[B]``: row of ``faces_packed()`` where mesh i starts."""
        n = self.num_faces_per_mesh()
        return torch.cumsum(n, 0) - n

    def verts_packed_to_mesh_idx(self) -> Tensor:
        """``[sum V_i]``: the mesh each packed vertex belongs to."""
        return torch.repeat_interleave(torch.arange(len(self), device=self.device), self.num_verts_per_mesh())

    def faces_packed_to_mesh_idx(self) -> Tensor:
        """``[sum F_i]``: the mesh each packed face belongs to."""
        return torch.repeat_interleave(torch.arange(len(self), device=self.device), self.num_faces_per_mesh())

    # ------------------------------------------------------------------ vertices / faces
    def _cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def verts_list(self) -> list[Tensor]:
        return self._verts_list

    def verts_packed(self) -> Tensor:
        """``[sum V_i, 3]``."""
        return self._cached("verts_packed", lambda: torch.cat(self._verts_list, 0))

    def verts_padded(self, pad_value: float = 0.0) -> Tensor:
        """``[B, V_max, 3]``."""
        return self._cached(("verts_padded", pad_value), lambda: list_to_padded(self._verts_list, pad_value))

    def faces_list(self) -> list[Tensor]:
        """B x ``[F_i, 3]`` int64, indices local to each mesh."""
        return self._faces_list

    def faces_packed(self) -> Tensor:
        """``[sum F_i, 3]`` int64, indices into ``verts_packed()``."""
        def build():
            first = self.mesh_to_verts_packed_first_idx().tolist()
            return torch.cat([f + o for f, o in zip(self._faces_list, first)], 0)
        return self._cached("faces_packed", build)

    def faces_padded(self) -> Tensor:
        """``[B, F_max, 3]`` int64, local indices, padding rows = -1."""
        return self._cached("faces_padded", lambda: list_to_padded(self._faces_list, -1))

    # ------------------------------------------------------------------ colours
    def verts_colors_list(self) -> list[Tensor] | None:
        return self._verts_colors

    def verts_colors_packed(self) -> Tensor | None:
        return None if self._verts_colors is None else torch.cat(self._verts_colors, 0)

    def verts_colors_padded(self) -> Tensor | None:
        return None if self._verts_colors is None else list_to_padded(self._verts_colors)

    def face_colors_list(self) -> list[Tensor] | None:
        return self._face_colors

    def face_colors_packed(self) -> Tensor | None:
        return None if self._face_colors is None else torch.cat(self._face_colors, 0)

    def face_colors_padded(self) -> Tensor | None:
        return None if self._face_colors is None else list_to_padded(self._face_colors)

    # ------------------------------------------------------------------ normals / areas
    def _face_cross_packed(self) -> Tensor:
        """``[sum F_i, 3]``: (v1 - v0) x (v2 - v0); length = 2 * area, direction = right-hand normal."""
        def build():
            v, f = self.verts_packed(), self.faces_packed()
            v0, v1, v2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
            return torch.cross(v1 - v0, v2 - v0, dim=1)
        return self._cached("face_cross", build)

    def faces_areas_packed(self) -> Tensor:
        """``[sum F_i]`` triangle areas."""
        return 0.5 * self._face_cross_packed().norm(dim=1)

    def faces_areas_list(self) -> list[Tensor]:
        return list(self.faces_areas_packed().split(self._nf))

    def faces_areas_padded(self) -> Tensor:
        """``[B, F_max]``, zero on padding."""
        return list_to_padded([a[:, None] for a in self.faces_areas_list()])[..., 0]

    def faces_normals_packed(self) -> Tensor:
        """``[sum F_i, 3]`` unit face normals (counter-clockwise winding); zero for degenerate faces."""
        c = self._face_cross_packed()
        n = c.norm(dim=1, keepdim=True)
        return c / torch.where(n > 0, n, torch.ones_like(n))

    def faces_normals_list(self) -> list[Tensor]:
        return list(self.faces_normals_packed().split(self._nf))

    def faces_normals_padded(self) -> Tensor:
        return list_to_padded(self.faces_normals_list())

    def verts_normals_packed(self) -> Tensor:
        """``[sum V_i, 3]`` unit vertex normals: the given ones, else area-weighted face normals."""
        if self._verts_normals_given is not None:
            return torch.cat(self._verts_normals_given, 0)

        def build():
            c = self._face_cross_packed()  # already area-weighted (|c| = 2A)
            f = self.faces_packed()
            acc = torch.zeros_like(self.verts_packed())
            for k in range(3):
                acc.index_add_(0, f[:, k], c)
            n = acc.norm(dim=1, keepdim=True)
            return acc / torch.where(n > 0, n, torch.ones_like(n))
        return self._cached("verts_normals", build)

    def verts_normals_list(self) -> list[Tensor]:
        return list(self.verts_normals_packed().split(self._nv))

    def verts_normals_padded(self) -> Tensor:
        return list_to_padded(self.verts_normals_list())

    def update_padded(self, new_verts_padded: Tensor) -> "Meshes":
        """Same topology and colours, vertices from ``[B, V_max, 3]`` (normals recomputed)."""
        if new_verts_padded.shape[:2] != (len(self), max(self._nv)):
            raise GeometryError(f"update_padded: expected [{len(self)}, {max(self._nv)}, 3], "
                                f"got {tuple(new_verts_padded.shape)}")
        return Meshes(padded_to_list(new_verts_padded, self._nv), self._faces_list, self._verts_colors,
                      self._face_colors)

    # ------------------------------------------------------------------ Geometry
    @classmethod
    def from_geometry(cls, geoms, dtype: torch.dtype = torch.float32, device=None) -> "Meshes":
        """One mesh `Geometry` or a list -> batch (vertex normals kept when every mesh has them)."""
        from ..io.record import Geometry
        geoms = [geoms] if isinstance(geoms, Geometry) else list(geoms)
        if not geoms:
            raise GeometryError("from_geometry: no geometry given")
        for g in geoms:
            if g.faces is None:
                raise GeometryError("from_geometry: a point cloud has no faces; use Pointclouds")
        t = lambda a, dt=dtype: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
        allp = lambda name: all(getattr(g, name) is not None for g in geoms)  # noqa: E731
        return cls([t(g.vertices) for g in geoms], [t(g.faces, torch.int64) for g in geoms],
                   verts_colors=[t(g.colors, torch.float32) for g in geoms] if allp("colors") else None,
                   face_colors=[t(g.face_colors, torch.float32) for g in geoms] if allp("face_colors") else None,
                   verts_normals=[t(g.normals) for g in geoms] if allp("normals") else None)

    def to_geometry(self, index: int = 0):
        """Mesh ``index`` -> `Geometry` with vertex normals (given or computed) and face normals."""
        from ..io.record import Geometry
        index = range(len(self))[index]
        np_ = lambda lst: None if lst is None else lst[index].detach().cpu().numpy()  # noqa: E731
        return Geometry(vertices=np_(self._verts_list), faces=np_(self._faces_list),
                        normals=np_(self.verts_normals_list()), colors=np_(self._verts_colors),
                        face_colors=np_(self._face_colors), face_normals=np_(self.faces_normals_list()))
