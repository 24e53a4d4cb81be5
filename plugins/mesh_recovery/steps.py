"""Pipeline step `mesh`: ``facet3d pipeline ... mesh method=auto depth=8``."""

from __future__ import annotations

from facet3d.core.io.record import Geometry


def mesh(geom: Geometry, method: str = "auto", depth: int = 8, trim: float | None = None,
         watertight: bool = False, max_edge: float | None = None) -> Geometry:
    """Point cloud (or a mesh's vertices) -> mesh with `reconstruct_points` defaults."""
    from .surface_points import PointsToMesh, reconstruct_points

    return reconstruct_points(geom, PointsToMesh(method=method, depth=depth, trim=trim, watertight=watertight,
                                                 max_edge=max_edge))


def check_compare(reference: str, n: int = 100_000, **_: object) -> None:
    import string

    from facet3d.core.errors import UsageError

    fields = {f for _, f, _, _ in string.Formatter().parse(reference) if f is not None}
    if fields - {"stem"}:
        raise UsageError(f"compare: reference '{reference}' may use only {{stem}} (the input's name without extension)")
    if not fields and not __import__("os").path.isfile(reference):
        raise UsageError(f"compare: reference {reference} does not exist")
    if n < 1:
        raise UsageError(f"compare: n must be at least 1, got {n}")


def compare(geom: Geometry, reference: str, n: int = 100_000, seed: int = 0, thresholds: str | None = None,
            point_to_mesh: bool = True) -> dict:
    """One row of `facet3d compare --json` metrics against ``reference`` (``{stem}``: this input's stem)."""
    from pathlib import Path

    from facet3d.core.io.api import read

    from .surface_metrics import compare as run_compare

    stem = Path(str(geom.meta.get("path", "input"))).stem
    ref = reference.format(stem=stem)
    taus = [t for t in (thresholds or "").replace(";", " ").split() if t] or None
    return {"reference": ref, **run_compare(geom, read(ref), taus, n=n, seed=seed, point_to_mesh=point_to_mesh)}
