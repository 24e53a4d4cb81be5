"""The `facet3d info` summary of a `Geometry` (numpy only: no torch, no open3d)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facet3d.core.io.record import Geometry
from facet3d.core.topology import topology_report


def _finite_rows(v: np.ndarray) -> np.ndarray | None:
    """Boolean [N] of rows without NaN/inf, or None when every row is finite (the fast, common case)."""
    if np.isfinite(v).all():  # flat reduction: far cheaper than a per-row one on [N, 3]
        return None
    return np.isfinite(v).all(axis=1)


def _bounds(v: np.ndarray, finite: np.ndarray | None) -> dict[str, Any] | None:
    if len(v) == 0 or (finite is not None and not finite.any()):
        return None
    f = v if finite is None else v[finite]
    lo, hi = f.min(axis=0), f.max(axis=0)
    return {"min": lo.tolist(), "max": hi.tolist(), "extent": (hi - lo).tolist(), "diagonal": float(np.linalg.norm(hi - lo))}


def summarize(geom: Geometry, topology: bool = True) -> dict[str, Any]:
    """Kind, counts, bounds, attributes, mesh topology and format facts (`metadata`: e.g. the LAS header).

    Meshes (topology=True): ``"topology": {"as_stored": {...}, "welded": {...}, "welded_vertices": n}``
    (`facet3d.core.topology.topology_report`: watertight, winding_consistent, edge_manifold,
    vertex_manifold, manifold, boundary_edges, nonmanifold_edges, nonmanifold_vertices,
    degenerate_faces, unreferenced_vertices, euler_characteristic in each reading).
    """
    v = geom.vertices
    finite = _finite_rows(v) if len(v) else None
    nonfinite = 0 if finite is None else int((~finite).sum())
    out: dict[str, Any] = {
        "path": geom.meta.get("path"),
        "format": geom.meta.get("format"),
        "kind": geom.kind,
        "points" if not geom.is_mesh else "vertices": geom.num_points,
    }
    if geom.is_mesh:
        out["faces"] = geom.num_faces
    out["bounds"] = _bounds(v, finite)
    if nonfinite:
        out["nonfinite_points"] = nonfinite
    out["attributes"] = geom.attribute_names()
    if geom.is_mesh and topology:
        # both readings, named: "as_stored" (the faces' own vertex indices, as trimesh with
        # process=False and open3d see them) and "welded" (vertices at one position merged, so
        # UV/normal seams of OBJ/GLB/PLY exports do not open the mesh); see facet3d.core.topology
        out["topology"] = topology_report(v, geom.faces)  # type: ignore[arg-type]
    # Format facts (LAS header fields, PLY comments and encoding, PCD fields, ...): small values only.
    meta = {k: v for k, v in geom.meta.items() if k not in ("path", "format") and _small(v)}
    if meta:
        out["metadata"] = meta
    return out


def _small(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.size <= 16
    if isinstance(value, (list, tuple, dict)):
        return len(value) <= 64
    return not hasattr(value, "__array__")
