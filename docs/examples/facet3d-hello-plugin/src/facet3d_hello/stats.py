"""The numbers `facet3d hello-stats` prints (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facet3d.core.errors import GeometryError
from facet3d.core.io.record import Geometry


def compute(geom: Geometry) -> dict[str, Any]:
    """Count, centroid, radius (largest distance to the centroid) and bounding box.

    Non-finite points are left out of the numbers (and counted); a geometry with no finite
    point is a `GeometryError`: the CLI prints it as one line and exits 1.
    """
    v = np.asarray(geom.vertices, dtype=np.float64)
    finite = np.isfinite(v).all(axis=1)
    where = geom.meta.get("path", "geometry")
    if not finite.any():
        raise GeometryError(f"{where}: no finite points" if len(v) else f"{where}: no points")
    f = v[finite]
    centroid = f.mean(axis=0)
    radius = float(np.sqrt(((f - centroid) ** 2).sum(axis=1)).max())
    return {
        "path": geom.meta.get("path"),
        "format": geom.meta.get("format"),
        "kind": geom.kind,
        "points": geom.num_points,
        "nonfinite_points": int((~finite).sum()),
        "centroid": centroid.tolist(),
        "radius": radius,
        "bbox_min": f.min(axis=0).tolist(),
        "bbox_max": f.max(axis=0).tolist(),
    }
