"""Pipeline steps of the built-in `geometry` plugin: `Geometry -> Geometry`, numpy in and out.

Steps that change the number of points drop per-point attributes they cannot carry over
(faces and per-face data go away when a mesh becomes a point cloud).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from facet3d.core.errors import GeometryError
from facet3d.core.io.record import Geometry


def _finite_or_fail(geom: Geometry, step: str) -> None:
    if geom.num_points == 0:
        raise GeometryError(f"{step}: the input has no points")
    if not np.isfinite(geom.vertices).all():
        raise GeometryError(f"{step}: the input has NaN or inf coordinates (use the drop-nonfinite step first)")


def _subset(geom: Geometry, idx: np.ndarray) -> Geometry:
    """The point cloud made of points `idx` (per-point attributes kept, faces dropped)."""
    pick = lambda a: None if a is None else np.asarray(a)[idx]  # noqa: E731
    return Geometry(vertices=geom.vertices[idx], normals=pick(geom.normals), colors=pick(geom.colors),
                    attributes={k: np.asarray(v)[idx] for k, v in geom.attributes.items()}, meta=dict(geom.meta),
                    source=dict(geom.source))


def drop_nonfinite(geom: Geometry) -> Geometry:
    keep = np.isfinite(geom.vertices).all(axis=1)
    if keep.all():
        return geom
    if geom.is_mesh:
        raise GeometryError("drop-nonfinite: a mesh with non-finite vertices cannot be repaired by dropping them")
    return _subset(geom, np.flatnonzero(keep))


def normalize(geom: Geometry) -> Geometry:
    from facet3d.core.ops.transforms import normalize_unit_sphere

    _finite_or_fail(geom, "normalize")
    res = normalize_unit_sphere(geom.vertices)
    meta = dict(geom.meta, normalization={"centre": np.asarray(res.centre).tolist(), "scale": float(res.scale)})
    return replace(geom, vertices=np.asarray(res.points), meta=meta)


def sample(geom: Geometry, n: int = 2048, seed: int = 0) -> Geometry:
    """Meshes: `n` area-weighted surface samples with face normals (and colours). Clouds: `n` random points."""
    _finite_or_fail(geom, "sample")
    if n < 1:
        raise GeometryError("sample: n must be at least 1")
    from facet3d.core.resources import require_memory

    # points, normals (float64) + colours, face index, barycentrics and torch's temporaries: ~160 B/point
    require_memory(160.0 * n, f"sampling {n} points")
    if geom.is_mesh:
        from facet3d.core.ops.sampling import sample_mesh_surface

        s = sample_mesh_surface(geom.vertices, geom.faces, n, seed=seed, vert_colors=geom.colors, face_colors=geom.face_colors)
        return Geometry(vertices=np.asarray(s.points), normals=np.asarray(s.normals),
                        colors=None if s.colors is None else np.asarray(s.colors, dtype=np.float32), meta=dict(geom.meta))
    if n >= geom.num_points:
        return geom
    idx = np.sort(np.random.default_rng(seed).choice(geom.num_points, size=n, replace=False))
    return _subset(geom, idx)


def normals(geom: Geometry, k: int = 30, force: bool = False, viewpoint: list | None = None) -> Geometry:
    """Estimate normals (PCA over k neighbours), oriented towards `viewpoint` or by propagation."""
    if geom.normals is not None and not force:
        return geom
    _finite_or_fail(geom, "normals")
    if geom.is_mesh:
        import trimesh

        tm = trimesh.Trimesh(geom.vertices, geom.faces, process=False)
        return replace(geom, normals=np.asarray(tm.vertex_normals))
    if geom.num_points < 3:
        raise GeometryError(f"normals: need at least 3 points, got {geom.num_points}")
    from facet3d.core.ops.normals import estimate_normals

    if viewpoint is not None:
        if len(viewpoint) != 3:
            raise GeometryError("normals: viewpoint needs three numbers 'x y z'")
        n = estimate_normals(geom.vertices, k=min(k, geom.num_points), orient="viewpoint", viewpoint=np.asarray(viewpoint))
    else:
        n = estimate_normals(geom.vertices, k=min(k, geom.num_points), orient="consistent")
    return replace(geom, normals=np.asarray(n))


def voxel_down(geom: Geometry, voxel: float = 0.01) -> Geometry:
    """Average points, normals and colours per voxel (mesh input becomes a point cloud of its vertices)."""
    from facet3d.core.ops.sampling import voxel_downsample

    _finite_or_fail(geom, "voxel-down")
    if voxel <= 0:
        raise GeometryError("voxel-down: voxel must be positive")
    r = voxel_downsample(geom.vertices, voxel, normals=geom.normals, colors=geom.colors)
    arr = lambda a: None if a is None else np.asarray(a)  # noqa: E731
    return Geometry(vertices=arr(r.points), normals=arr(r.normals), colors=arr(r.colors), meta=dict(geom.meta),
                    source=dict(geom.source))


def fps(geom: Geometry, n: int = 1024) -> Geometry:
    """Farthest point sampling, starting from the point farthest from the centroid (order-independent)."""
    import torch

    from facet3d.kernels.fps import farthest_point_sample

    _finite_or_fail(geom, "fps")
    if n >= geom.num_points:
        return geom
    pts = torch.as_tensor(geom.vertices, dtype=torch.float64)[None]
    idx = farthest_point_sample(pts, n, start="farthest_from_centroid", ordered=False)[0].numpy()  # a set is enough here
    return _subset(geom, idx)


def rotate(geom: Geometry, mode: str = "so3", seed: int = 0) -> Geometry:
    """Apply a uniformly random rotation (SO(3), or about +z), rotating normals too."""
    import torch

    from facet3d.core.ops.rotations import random_rotation_about_axis, random_rotations

    gen = torch.Generator().manual_seed(seed)
    if mode == "so3":
        R = random_rotations(1, generator=gen, dtype=torch.float64)[0].numpy()
    elif mode == "z":
        R = random_rotation_about_axis((0.0, 0.0, 1.0), 1, generator=gen, dtype=torch.float64)[0].numpy()
    else:
        raise GeometryError(f"rotate: mode must be 'so3' or 'z', got '{mode}'")
    rot = lambda a: None if a is None else np.asarray(a) @ R.T  # noqa: E731
    return replace(geom, vertices=geom.vertices @ R.T, normals=rot(geom.normals), face_normals=rot(geom.face_normals),
                   meta=dict(geom.meta, rotation=R.tolist()))


def read_input(path, format: str | None = None, fields: str | None = None) -> Geometry:
    """The `read` step: the input read with an explicit format (``fields``: ';'-separated bin columns)."""
    from facet3d.core.io.api import read

    options = {"fields": fields.replace(";", ",")} if fields else {}
    return read(path, format=format, **options)


def check_convert(to: str = "ply") -> None:
    from facet3d.core.io.api import output_format

    output_format(to, "step 'convert' parameter 'to'")


def convert(geom: Geometry, to: str = "ply") -> Geometry:
    """The `convert` step: geometry unchanged; the pipeline writes it in format ``to``."""
    return geom
