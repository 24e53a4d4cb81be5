"""Pipeline steps: ``run(geometry, **params) -> Geometry``; they return a new Geometry."""

from __future__ import annotations

import dataclasses

import numpy as np

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.record import Geometry


def center(geom: Geometry, mode: str = "mean") -> Geometry:
    """Translate the geometry so its centroid (``mode="mean"``) or bbox centre (``"bbox"``) is the origin."""
    v = np.asarray(geom.vertices)
    finite = np.isfinite(v).all(axis=1)
    if not finite.any():
        raise GeometryError("center: no finite points")
    if mode == "mean":
        offset = v[finite].astype(np.float64).mean(axis=0)
    elif mode == "bbox":
        offset = (v[finite].min(axis=0) + v[finite].max(axis=0)).astype(np.float64) / 2
    else:
        raise UsageError(f"step 'center' parameter 'mode': expected 'mean' or 'bbox', got '{mode}'")
    meta = dict(geom.meta, center_offset=offset.tolist())
    # Keep the input dtype (float32 stays float32); normals, colours and faces are unchanged by a translation.
    return dataclasses.replace(geom, vertices=(v - offset).astype(v.dtype, copy=False), meta=meta,
                               attributes=dict(geom.attributes), face_attributes=dict(geom.face_attributes))
