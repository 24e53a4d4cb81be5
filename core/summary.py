"""The `facet3d info` summary of a `Geometry` (numpy only: no torch, no open3d)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facet3d.core.io.record import Geometry
from facet3d.core.topology import mesh_checks


def _bounds(v: np.ndarray) -> dict[str, Any] | None:
    if len(v) == 0:
        return None
    finite = np.isfinite(v).all(axis=1)
    if not finite.any():
        return None
    f = v[finite] if not finite.all() else v
    lo, hi = f.min(axis=0), f.max(axis=0)
    return {"min": lo.tolist(), "max": hi.tolist(), "extent": (hi - lo).tolist(), "diagonal": float(np.linalg.norm(hi - lo))}


def summarize(geom: Geometry, topology: bool = True) -> dict[str, Any]:
    """Kind, counts, bounds, attributes, mesh topology and format facts (e.g. the LAS header)."""
    v = geom.vertices
    nonfinite = int((~np.isfinite(v).all(axis=1)).sum()) if len(v) else 0
    out: dict[str, Any] = {
        "path": geom.meta.get("path"),
        "format": geom.meta.get("format"),
        "kind": geom.kind,
        "points" if not geom.is_mesh else "vertices": geom.num_points,
    }
    if geom.is_mesh:
        out["faces"] = geom.num_faces
    out["bounds"] = _bounds(v)
    if nonfinite:
        out["nonfinite_points"] = nonfinite
    out["attributes"] = geom.attribute_names()
    if geom.is_mesh and topology:
        out.update(mesh_checks(v, geom.faces))  # type: ignore[arg-type]
    header = geom.meta.get("header")
    if header:
        out["header"] = header
    return out
