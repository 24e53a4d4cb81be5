"""Pipeline step `mesh`: ``facet3d pipeline ... mesh method=auto depth=8``."""

from __future__ import annotations

from facet3d.core.io.record import Geometry


def mesh(geom: Geometry, method: str = "auto", depth: int = 8, trim: float | None = None,
         watertight: bool = False, max_edge: float | None = None) -> Geometry:
    """Point cloud (or a mesh's vertices) -> mesh with `reconstruct_points` defaults."""
    from .surface_points import PointsToMesh, reconstruct_points

    return reconstruct_points(geom, PointsToMesh(method=method, depth=depth, trim=trim, watertight=watertight,
                                                 max_edge=max_edge))
