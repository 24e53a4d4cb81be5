"""Conversions between `Geometry` (numpy) and torch structures, trimesh and open3d objects.

* numpy/torch helpers: `to_tensor`, `to_numpy`, `like_input` (give a result the array type of
  the input: numpy in -> numpy out, torch in -> torch out);
* `Geometry` <-> `Pointclouds` / `Meshes` (``facet3d.core.structures``);
* `Geometry` <-> ``trimesh.Trimesh`` / ``trimesh.PointCloud``;
* `Geometry` <-> ``open3d.geometry.PointCloud`` / ``TriangleMesh``.

trimesh and open3d are imported inside the functions (open3d alone takes ~1 s to import).
Colours are floats in [0, 1] in `Geometry`; trimesh stores uint8 RGBA, open3d float RGB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import GeometryError
from .io.record import Geometry

__all__ = [
    "to_tensor", "to_numpy", "like_input",
    "geometry_to_pointclouds", "pointclouds_to_geometry", "geometry_to_meshes", "meshes_to_geometry",
    "geometry_to_trimesh", "trimesh_to_geometry", "geometry_to_open3d", "open3d_to_geometry",
]


# --------------------------------------------------------------------------- numpy / torch helpers

def to_tensor(x: Any, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Anything array-like -> tensor (no copy when already a tensor of that dtype/device).

    float64 numpy stays float64 unless ``dtype`` says otherwise, so numpy round trips are exact.
    """
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype or x.dtype, device=device or x.device)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def to_numpy(x: Any) -> np.ndarray:
    """Tensor (any device, with or without grad) or array-like -> numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def like_input(result: torch.Tensor, reference: Any) -> Any:
    """Return ``result`` as numpy when ``reference`` was not a tensor, else as is."""
    if isinstance(reference, torch.Tensor) or result is None:
        return result
    return to_numpy(result)


def _opt(x, dtype=torch.float32):
    return None if x is None else to_tensor(np.ascontiguousarray(x), dtype=dtype)


# --------------------------------------------------------------------------- torch structures

def geometry_to_pointclouds(geoms: Geometry | list[Geometry], dtype: torch.dtype = torch.float32,
                            device: torch.device | str | None = None):
    """One or several `Geometry` -> a `Pointclouds` batch (vertices, normals, colours, attributes).

    Per-point attributes become ``features`` (concatenated, each flattened to columns) when every
    geometry has the same attribute names; otherwise they are dropped.
    """
    from .structures.pointclouds import Pointclouds
    return Pointclouds.from_geometry(geoms, dtype=dtype, device=device)


def pointclouds_to_geometry(clouds, index: int = 0) -> Geometry:
    """Cloud ``index`` of a `Pointclouds` batch -> `Geometry` (numpy)."""
    return clouds.to_geometry(index)


def geometry_to_meshes(geoms: Geometry | list[Geometry], dtype: torch.dtype = torch.float32,
                       device: torch.device | str | None = None):
    """One or several mesh `Geometry` -> a `Meshes` batch."""
    from .structures.meshes import Meshes
    return Meshes.from_geometry(geoms, dtype=dtype, device=device)


def meshes_to_geometry(meshes, index: int = 0) -> Geometry:
    """Mesh ``index`` of a `Meshes` batch -> `Geometry` (numpy)."""
    return meshes.to_geometry(index)


# --------------------------------------------------------------------------- trimesh

def _colors_to_uint8(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.ones((len(c), 1))], axis=1)
    return np.clip(np.round(c * 255.0), 0, 255).astype(np.uint8)


def geometry_to_trimesh(geom: Geometry, process: bool = False):
    """`Geometry` -> ``trimesh.Trimesh`` (mesh) or ``trimesh.PointCloud`` (point cloud).

    ``process=False`` keeps vertex order and count (trimesh would otherwise merge duplicates).
    Vertex normals are handed over only when present; trimesh recomputes them lazily otherwise.
    """
    import trimesh

    if geom.is_mesh:
        kwargs: dict[str, Any] = {}
        if geom.normals is not None:
            kwargs["vertex_normals"] = np.asarray(geom.normals, dtype=np.float64)
        if geom.colors is not None:
            kwargs["vertex_colors"] = _colors_to_uint8(geom.colors)
        elif geom.face_colors is not None:
            kwargs["face_colors"] = _colors_to_uint8(geom.face_colors)
        return trimesh.Trimesh(vertices=np.asarray(geom.vertices, dtype=np.float64), faces=geom.faces,
                               process=process, **kwargs)
    colors = None if geom.colors is None else _colors_to_uint8(geom.colors)
    pc = trimesh.PointCloud(np.asarray(geom.vertices, dtype=np.float64), colors=colors)
    return pc


def trimesh_to_geometry(obj) -> Geometry:
    """``trimesh.Trimesh`` / ``PointCloud`` / ``Scene`` (concatenated in world frame) -> `Geometry`."""
    import trimesh

    if isinstance(obj, trimesh.Scene):
        dumped = [g for g in obj.dump() if isinstance(g, trimesh.Trimesh)] if hasattr(obj, "dump") else []
        if not dumped:
            raise GeometryError("trimesh scene holds no triangle mesh")
        obj = trimesh.util.concatenate(dumped)
    if isinstance(obj, trimesh.PointCloud):
        colors = None
        if obj.colors is not None and len(obj.colors) == len(obj.vertices):
            colors = np.asarray(obj.colors, dtype=np.float32) / 255.0
        return Geometry(vertices=np.asarray(obj.vertices), colors=colors)
    if not isinstance(obj, trimesh.Trimesh):
        raise GeometryError(f"cannot convert {type(obj).__name__} from trimesh")
    colors = face_colors = None
    visual = obj.visual
    if getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float32) / 255.0
    elif getattr(visual, "kind", None) == "face":
        face_colors = np.asarray(visual.face_colors, dtype=np.float32) / 255.0
    # only hand over normals trimesh already has (from the file), not lazily recomputed ones
    normals = np.asarray(obj.vertex_normals) if "vertex_normals" in obj._cache else None
    return Geometry(vertices=np.asarray(obj.vertices), faces=np.asarray(obj.faces, dtype=np.int64),
                    normals=normals, colors=colors, face_colors=face_colors)


# --------------------------------------------------------------------------- open3d

def geometry_to_open3d(geom: Geometry):
    """`Geometry` -> ``open3d.geometry.TriangleMesh`` (mesh) or ``open3d.geometry.PointCloud``.

    open3d keeps float64 RGB colours, so an alpha channel is dropped.
    """
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    v = o3d.utility.Vector3dVector(np.ascontiguousarray(geom.vertices, dtype=np.float64))
    if geom.is_mesh:
        m = o3d.geometry.TriangleMesh(v, o3d.utility.Vector3iVector(np.ascontiguousarray(geom.faces, dtype=np.int32)))
        if geom.normals is not None:
            m.vertex_normals = o3d.utility.Vector3dVector(np.ascontiguousarray(geom.normals, dtype=np.float64))
        if geom.colors is not None:
            m.vertex_colors = o3d.utility.Vector3dVector(np.ascontiguousarray(geom.colors[:, :3], dtype=np.float64))
        if geom.face_normals is not None:
            m.triangle_normals = o3d.utility.Vector3dVector(np.ascontiguousarray(geom.face_normals, dtype=np.float64))
        return m
    pc = o3d.geometry.PointCloud(v)
    if geom.normals is not None:
        pc.normals = o3d.utility.Vector3dVector(np.ascontiguousarray(geom.normals, dtype=np.float64))
    if geom.colors is not None:
        pc.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(geom.colors[:, :3], dtype=np.float64))
    return pc


def open3d_to_geometry(obj) -> Geometry:
    """``open3d.geometry.PointCloud`` / ``TriangleMesh`` -> `Geometry` (float64 vertices)."""
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    if isinstance(obj, o3d.geometry.PointCloud):
        return Geometry(
            vertices=np.asarray(obj.points).copy(),
            normals=np.asarray(obj.normals).copy() if obj.has_normals() else None,
            colors=np.asarray(obj.colors, dtype=np.float32).copy() if obj.has_colors() else None,
        )
    if isinstance(obj, o3d.geometry.TriangleMesh):
        return Geometry(
            vertices=np.asarray(obj.vertices).copy(),
            faces=np.asarray(obj.triangles, dtype=np.int64).copy(),
            normals=np.asarray(obj.vertex_normals).copy() if obj.has_vertex_normals() else None,
            colors=np.asarray(obj.vertex_colors, dtype=np.float32).copy() if obj.has_vertex_colors() else None,
            face_normals=np.asarray(obj.triangle_normals).copy() if obj.has_triangle_normals() else None,
        )
    raise GeometryError(f"cannot convert {type(obj).__name__} from open3d")
