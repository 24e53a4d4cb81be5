"""`Pointclouds`: a batch of point clouds of different sizes, with list / padded / packed views.

Same layout as pytorch3d's ``Pointclouds``:

* list:   ``points_list()``   -> B tensors ``[N_i, 3]``;
* padded: ``points_padded()`` -> ``[B, N_max, 3]``, rows past ``N_i`` filled with ``pad_value``;
* packed: ``points_packed()`` -> ``[sum N_i, 3]``, clouds one after another;
  ``packed_to_cloud_idx()`` ``[sum N_i]`` says which cloud each row came from and
  ``cloud_to_packed_first_idx()`` ``[B]`` where each cloud starts.

Per-point attributes (``normals [N_i, 3]``, ``colors [N_i, C]`` in [0, 1], ``features [N_i, F]``)
follow the points and have the same three views.  The object is immutable in spirit: views
are computed once and cached, and methods like `to` / `update_padded` return new objects.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError

__all__ = ["Pointclouds", "list_to_padded", "padded_to_list"]

_ATTRS = ("points", "normals", "colors", "features")


def list_to_padded(tensors: Sequence[Tensor], pad_value: float = 0.0) -> Tensor:
    """B tensors ``[N_i, C]`` -> ``[B, N_max, C]`` (rows past N_i = pad_value)."""
    if len(tensors) == 0:
        raise GeometryError("cannot pad an empty list")
    n_max = max(int(t.shape[0]) for t in tensors)
    ref = tensors[0]
    out = ref.new_full((len(tensors), n_max) + tuple(ref.shape[1:]), pad_value)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def batch_indices(index, size: int, what: str) -> list[int]:
    """Normalise a batch index (int, slice, list/tuple of ints, bool or long tensor) to a list of ints."""
    if isinstance(index, int):
        return [range(size)[index]]
    if isinstance(index, slice):
        return list(range(size))[index]
    if isinstance(index, Tensor) and index.dtype == torch.bool:
        return index.nonzero().flatten().tolist()
    if isinstance(index, (list, tuple, Tensor)):
        return [int(i) for i in index]
    raise TypeError(f"cannot index {what} with {type(index).__name__}")


def padded_to_list(padded: Tensor, lengths: Sequence[int] | Tensor) -> list[Tensor]:
    """``[B, N_max, C]`` + lengths ``[B]`` -> B tensors ``[N_i, C]`` (views, not copies)."""
    return [padded[i, : int(n)] for i, n in enumerate(lengths)]


class Pointclouds:
    """Batched point clouds.

    points:   list of B tensors ``[N_i, 3]`` or a padded tensor ``[B, N, 3]`` (then ``lengths [B]``
              says how many rows of each cloud are real; default: all N)
    normals:  same layout, ``[.., 3]``, or None
    colors:   same layout, ``[.., C]`` (C = 3 or 4, floats in [0, 1]), or None
    features: same layout, ``[.., F]``, or None (any per-point channels: intensity, labels, ...)

    Raises GeometryError for wrong shapes, mismatched attribute lengths or non-finite points.
    Empty clouds (N_i = 0) are allowed inside a batch; an empty batch is not.
    """

    def __init__(self, points, normals=None, colors=None, features=None, lengths=None) -> None:
        pts = self._as_list(points, lengths, "points")
        if len(pts) == 0:
            raise GeometryError("Pointclouds needs at least one cloud")
        for i, p in enumerate(pts):
            if p.ndim != 2 or p.shape[1] != 3:
                raise GeometryError(f"cloud {i}: points must be [N, 3], got {tuple(p.shape)}")
            if not p.is_floating_point():
                raise GeometryError(f"cloud {i}: points must be floating point, got {p.dtype}")
        device = pts[0].device
        if any(p.device != device for p in pts):
            raise GeometryError("all clouds must be on the same device")
        if not all(bool(torch.isfinite(p).all()) for p in pts):
            raise GeometryError("point cloud has non-finite coordinates (NaN or inf)")
        self._points_list = pts
        self._lengths = [int(p.shape[0]) for p in pts]
        self.device = device
        self._attr_lists: dict[str, list[Tensor] | None] = {"points": pts}
        for name, val in (("normals", normals), ("colors", colors), ("features", features)):
            if val is None:
                self._attr_lists[name] = None
                continue
            lst = self._as_list(val, self._lengths if not isinstance(val, (list, tuple)) else None, name)
            if len(lst) != len(pts):
                raise GeometryError(f"{name}: {len(lst)} clouds given for {len(pts)} point clouds")
            for i, (a, n) in enumerate(zip(lst, self._lengths)):
                if a.ndim != 2 or a.shape[0] != n or (name == "normals" and a.shape[1] != 3):
                    raise GeometryError(f"cloud {i}: {name} must be [{n}, {3 if name == 'normals' else 'C'}], "
                                        f"got {tuple(a.shape)}")
            self._attr_lists[name] = [a.to(device) for a in lst]
        self._cache: dict[str, Tensor] = {}
        self.feature_names: list[str] = []   # set by from_geometry: attribute name per feature block
        self.feature_widths: list[int] = []

    def _keep_names(self, new: "Pointclouds") -> "Pointclouds":
        new.feature_names, new.feature_widths = list(self.feature_names), list(self.feature_widths)
        return new

    @staticmethod
    def _as_list(x, lengths, name) -> list[Tensor]:
        if isinstance(x, (list, tuple)):
            return [torch.as_tensor(np.asarray(t)) if not isinstance(t, Tensor) else t for t in x]
        t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
        if t.ndim != 3:
            raise GeometryError(f"{name}: a padded tensor must be [B, N, C], got {tuple(t.shape)}")
        if lengths is None:
            return list(t.unbind(0))
        lengths = [int(n) for n in lengths]
        if len(lengths) != t.shape[0] or any(n < 0 or n > t.shape[1] for n in lengths):
            raise GeometryError(f"{name}: lengths {lengths} do not fit a padded tensor {tuple(t.shape)}")
        return padded_to_list(t, lengths)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self._points_list)

    def __repr__(self) -> str:
        return f"Pointclouds(B={len(self)}, points={self._lengths}, device={self.device})"

    def __getitem__(self, index) -> "Pointclouds":
        """int, slice, list of ints or bool/long tensor -> a new `Pointclouds` (sharing storage)."""
        idx = batch_indices(index, len(self), "Pointclouds")
        pick = lambda lst: None if lst is None else [lst[i] for i in idx]  # noqa: E731
        return self._keep_names(Pointclouds(pick(self._points_list), pick(self.normals_list()),
                                            pick(self.colors_list()), pick(self.features_list())))

    def isempty(self) -> bool:
        """True when every cloud has zero points."""
        return sum(self._lengths) == 0

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Pointclouds":
        """Copy to ``device``; ``dtype`` (if given) applies to points and normals only."""
        move = lambda lst, cast: None if lst is None else [  # noqa: E731
            t.to(device=device or t.device, dtype=(dtype if cast and dtype else t.dtype)) for t in lst]
        return self._keep_names(Pointclouds(move(self._points_list, True), move(self.normals_list(), True),
                                            move(self.colors_list(), False), move(self.features_list(), False)))

    def cpu(self) -> "Pointclouds":
        return self.to("cpu")

    def clone(self) -> "Pointclouds":
        cl = lambda lst: None if lst is None else [t.clone() for t in lst]  # noqa: E731
        return self._keep_names(Pointclouds(cl(self._points_list), cl(self.normals_list()),
                                            cl(self.colors_list()), cl(self.features_list())))

    # ------------------------------------------------------------------ index bookkeeping
    def num_points_per_cloud(self) -> Tensor:
        """``[B]`` int64: N_i."""
        return torch.tensor(self._lengths, dtype=torch.int64, device=self.device)

    def cloud_to_packed_first_idx(self) -> Tensor:
        """``[B]`` int64: row of ``points_packed()`` where cloud i starts."""
        n = self.num_points_per_cloud()
        return torch.cumsum(n, 0) - n

    def packed_to_cloud_idx(self) -> Tensor:
        """``[sum N_i]`` int64: the cloud each packed row belongs to."""
        if "packed_to_cloud" not in self._cache:
            self._cache["packed_to_cloud"] = torch.repeat_interleave(
                torch.arange(len(self), device=self.device), self.num_points_per_cloud())
        return self._cache["packed_to_cloud"]

    def padded_to_packed_idx(self) -> Tensor:
        """``[sum N_i]`` int64: index into ``points_padded().reshape(-1, 3)`` for each packed row."""
        n_max = max(self._lengths)
        within = torch.arange(sum(self._lengths), device=self.device) - self.cloud_to_packed_first_idx()[
            self.packed_to_cloud_idx()]
        return self.packed_to_cloud_idx() * n_max + within

    def padded_mask(self) -> Tensor:
        """``[B, N_max]`` bool: True on real points, False on padding."""
        n_max = max(self._lengths)
        return torch.arange(n_max, device=self.device)[None] < self.num_points_per_cloud()[:, None]

    # ------------------------------------------------------------------ views
    def _list(self, name: str) -> list[Tensor] | None:
        return self._attr_lists[name]

    def _packed(self, name: str) -> Tensor | None:
        lst = self._attr_lists[name]
        if lst is None:
            return None
        key = name + "_packed"
        if key not in self._cache:
            self._cache[key] = torch.cat(lst, dim=0)
        return self._cache[key]

    def _padded(self, name: str, pad_value: float) -> Tensor | None:
        lst = self._attr_lists[name]
        if lst is None:
            return None
        key = f"{name}_padded_{pad_value}"
        if key not in self._cache:
            self._cache[key] = list_to_padded(lst, pad_value)
        return self._cache[key]

    def points_list(self) -> list[Tensor]:
        """B tensors ``[N_i, 3]``."""
        return self._points_list

    def points_packed(self) -> Tensor:
        """``[sum N_i, 3]``."""
        return self._packed("points")

    def points_padded(self, pad_value: float = 0.0) -> Tensor:
        """``[B, N_max, 3]``; padding rows hold ``pad_value``."""
        return self._padded("points", pad_value)

    def normals_list(self) -> list[Tensor] | None:
        return self._list("normals")

    def normals_packed(self) -> Tensor | None:
        return self._packed("normals")

    def normals_padded(self, pad_value: float = 0.0) -> Tensor | None:
        return self._padded("normals", pad_value)

    def colors_list(self) -> list[Tensor] | None:
        return self._list("colors")

    def colors_packed(self) -> Tensor | None:
        return self._packed("colors")

    def colors_padded(self, pad_value: float = 0.0) -> Tensor | None:
        return self._padded("colors", pad_value)

    def features_list(self) -> list[Tensor] | None:
        return self._list("features")

    def features_packed(self) -> Tensor | None:
        return self._packed("features")

    def features_padded(self, pad_value: float = 0.0) -> Tensor | None:
        return self._padded("features", pad_value)

    def bounding_boxes(self) -> Tensor:
        """``[B, 3, 2]``: per-cloud (min, max) per axis; an empty cloud gives zeros."""
        out = torch.zeros(len(self), 3, 2, dtype=self._points_list[0].dtype, device=self.device)
        for i, p in enumerate(self._points_list):
            if len(p):
                out[i, :, 0], out[i, :, 1] = p.amin(0), p.amax(0)
        return out

    def update_padded(self, new_points_padded: Tensor, new_normals_padded: Tensor | None = None) -> "Pointclouds":
        """A new batch with points (and normals) replaced from ``[B, N_max, 3]`` tensors, same lengths.

        The usual way to apply a batched op (e.g. `transform_points`) and keep colours/features.
        """
        if new_points_padded.shape[:2] != (len(self), max(self._lengths)):
            raise GeometryError(f"update_padded: expected [{len(self)}, {max(self._lengths)}, 3], "
                                f"got {tuple(new_points_padded.shape)}")
        normals = (padded_to_list(new_normals_padded, self._lengths) if new_normals_padded is not None
                   else self.normals_list())
        return self._keep_names(Pointclouds(padded_to_list(new_points_padded, self._lengths), normals,
                                            self.colors_list(), self.features_list()))

    # ------------------------------------------------------------------ Geometry
    @classmethod
    def from_geometry(cls, geoms, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> "Pointclouds":
        """One `Geometry` or a list -> batch.  Mesh vertices are taken as points.

        Attributes become ``features`` (columns in sorted-name order; recorded in
        ``feature_names``) only when every geometry has the same attribute names.
        """
        from ..io.record import Geometry
        geoms = [geoms] if isinstance(geoms, Geometry) else list(geoms)
        if not geoms:
            raise GeometryError("from_geometry: no geometry given")
        t = lambda a, dt=dtype: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
        pts = [t(g.vertices) for g in geoms]
        normals = [t(g.normals) for g in geoms] if all(g.normals is not None for g in geoms) else None
        colors = ([t(g.colors, torch.float32) for g in geoms]
                  if all(g.colors is not None for g in geoms) else None)
        names = sorted(geoms[0].attributes)
        features = None
        if names and all(sorted(g.attributes) == names for g in geoms):
            features = [torch.cat([t(np.asarray(g.attributes[k], dtype=np.float64).reshape(g.num_points, -1),
                                     torch.float32) for k in names], dim=1) for g in geoms]
        out = cls(pts, normals=normals, colors=colors, features=features)
        out.feature_names = names if features is not None else []
        out.feature_widths = ([int(np.asarray(geoms[0].attributes[k]).reshape(geoms[0].num_points, -1).shape[1])
                               for k in names] if features is not None else [])
        return out

    def to_geometry(self, index: int = 0):
        """Cloud ``index`` -> `Geometry` (numpy).  Features split back into named attributes when
        this batch came from `from_geometry`, else stored as ``attributes["features"]``."""
        from ..io.record import Geometry
        index = range(len(self))[index]
        np_ = lambda lst: None if lst is None else lst[index].detach().cpu().numpy()  # noqa: E731
        attributes: dict[str, np.ndarray] = {}
        feats = np_(self.features_list())
        if feats is not None:
            names, widths = self.feature_names, self.feature_widths
            if names and sum(widths) == feats.shape[1]:
                start = 0
                for k, w in zip(names, widths):
                    col = feats[:, start:start + w]
                    attributes[k] = col[:, 0] if w == 1 else col
                    start += w
            else:
                attributes["features"] = feats
        return Geometry(vertices=np_(self._points_list), normals=np_(self.normals_list()),
                        colors=np_(self.colors_list()), attributes=attributes)
