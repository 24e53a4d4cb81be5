"""Headerless lidar sweeps: KITTI ``.bin`` and nuScenes ``.pcd.bin`` (chosen with ``--format``).

kitti-bin:    float32 records (x, y, z, intensity)        -> 16 bytes per point
nuscenes-bin: float32 records (x, y, z, intensity, ring)  -> 20 bytes per point

Read: ``vertices: [N, 3] float32``, ``attributes["intensity"]: [N] float32`` and, for nuScenes,
``attributes["ring"]: [N] float32`` (the laser index, stored as a float in the file).
The file size must be a multiple of the record size: a wrong ``--format`` is caught this way
(a 20-byte-record file is a multiple of 16 only by chance: every 4th point count).
Write: missing intensity / ring are written as 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.io.arrays import note_nonfinite
from facet3d.core.io.record import Geometry

_LAYOUTS = {"kitti-bin": ("intensity",), "nuscenes-bin": ("intensity", "ring")}


def _read(path: str | Path, name: str) -> Geometry:
    extra = _LAYOUTS[name]
    cols = 3 + len(extra)
    size = os.path.getsize(path)
    if size % (4 * cols):
        raise ValueError(f"size {size} bytes is not a multiple of the {4 * cols}-byte {name} record "
                         f"(float32 x y z {' '.join(extra)})")
    data = np.fromfile(path, dtype="<f4").reshape(-1, cols)
    geom = Geometry(vertices=np.ascontiguousarray(data[:, :3]))
    for i, k in enumerate(extra):
        geom.attributes[k] = np.ascontiguousarray(data[:, 3 + i])
    geom.meta["record_bytes"] = 4 * cols
    return note_nonfinite(geom)


def _write(path: str | Path, geom: Geometry, name: str) -> None:
    n = geom.num_points
    cols = [np.asarray(geom.vertices, dtype=np.float32)]
    for k in _LAYOUTS[name]:
        a = geom.attributes.get(k)
        cols.append(np.zeros((n, 1), np.float32) if a is None else np.asarray(a, np.float32).reshape(n, 1))
    np.hstack(cols).astype("<f4").tofile(path)


def read_kitti(path: str | Path, **_: Any) -> Geometry:
    return _read(path, "kitti-bin")


def read_nuscenes(path: str | Path, **_: Any) -> Geometry:
    return _read(path, "nuscenes-bin")


def write_kitti(path: str | Path, geom: Geometry, **_: Any) -> None:
    _write(path, geom, "kitti-bin")


def write_nuscenes(path: str | Path, geom: Geometry, **_: Any) -> None:
    _write(path, geom, "nuscenes-bin")
