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


def check_body_fit(model: str = "anny", iters: int = 300, gender: str = "auto", units: str = "auto",
                   **_: object) -> None:
    from pathlib import Path

    from facet3d.core.errors import UsageError

    from .body.fit import UNITS

    if model.lower() != "anny" and not Path(model).is_file():
        raise UsageError(f"body-fit: model {model} does not exist (give 'anny' or an SMPL-format .pkl/.npz)")
    if iters < 10:
        raise UsageError(f"body-fit: iters must be at least 10, got {iters}")
    if gender not in ("auto", "female", "male", "neutral"):
        raise UsageError(f"body-fit: gender must be auto, female, male or neutral, got '{gender}'")
    if units != "auto" and units not in UNITS:
        raise UsageError(f"body-fit: units must be auto or one of {', '.join(UNITS)}, got '{units}'")


def setup_body_fit(model: str = "anny", **_: object):
    """The body model, loaded once per worker."""
    import torch

    from .body.models import load_body_model

    return load_body_model(model, dtype=torch.float32)


def body_fit(geom: Geometry, state, model: str = "anny", iters: int = 300, gender: str = "auto",
             units: str = "auto", partial: bool = False, points: int = 10_000, seed: int = 0) -> Geometry:
    """Scan -> the fitted body mesh (scan frame and units) with a per-vertex ``residual`` attribute;
    the parameters and fit summary in ``meta["body_fit"]`` (as `facet3d body fit`)."""
    import numpy as np

    from .body.api import fit_geometry
    from .body.fit_outputs import fit_summary

    fit, name, scale = fit_geometry(geom, state, iters=iters, gender=gender, units=units, partial=partial,
                                    max_points=points, seed=seed)
    summary = fit_summary(fit, state.name, name, scale, iters, partial)
    summary["params"] = {k: v.tolist() for k, v in fit.params.items()}
    return Geometry(vertices=fit.vertices / scale, faces=fit.faces,
                    attributes={"residual": (fit.vertex_residual / scale).astype(np.float32)},
                    meta={"body_fit": summary})
