"""What ``facet3d body fit`` writes into its output folder (names in `FIT_FILES`).

* ``body.ply``: the fitted mesh, vertices in the model's order, in the scan's frame and units;
* ``params.json``: betas, global_orient, body_pose, transl (metres; ``facet3d body pose --params``
  reads it back, to the model's units);
* ``residuals.ply``: the fitted mesh with per-vertex ``residual`` (distance to the nearest scan point,
  scan units), ``seen`` (1 where it faces the sensor of a partial scan) and colours (green 0, red >= 3 cm);
* ``fit.png``: the fit over the scan, front and side (`picture`);
* ``fit.json``: the summary (model, units, residual statistics, energies, orientation, seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facet3d.core.errors import UsageError

from .fit import BodyFit

__all__ = ["FIT_FILES", "check_fit_outputs", "write_fit", "fit_summary"]

FIT_FILES = ("body.ply", "params.json", "residuals.ply", "fit.png", "fit.json")


def check_fit_outputs(out_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder that holds any of `FIT_FILES` (unless ``overwrite``), before the fit."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")
    taken = [n for n in FIT_FILES if (out_dir / n).exists()]
    if taken and not overwrite:
        raise UsageError(f"{out_dir} already holds {', '.join(taken)} (use --overwrite to replace them)")


def fit_summary(fit: BodyFit, model_name: str, units: str, scale: float, iters: int, partial: bool) -> dict:
    seen = fit.vertex_residual[fit.vertex_seen]
    mm = lambda a: round(float(a) * 1000.0, 3)  # noqa: E731  (metres -> mm)
    return {
        "model": model_name, "scan_units": units, "scan_scale_to_metres": scale, "partial": partial,
        "iters": iters, "points_used": int(len(fit.points)), "seconds": round(fit.seconds, 3),
        "scan_to_body_mm": {"mean": mm(fit.point_residual.mean()), "median": mm(np.median(fit.point_residual)),
                            "p95": mm(np.percentile(fit.point_residual, 95))},
        "body_to_scan_mm": {"mean": mm(seen.mean()) if len(seen) else None,
                            "median": mm(np.median(seen)) if len(seen) else None},
        "betas": fit.params["betas"].round(6).tolist(),
        "orientation": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fit.orientation.items()},
        "final_energy": fit.energy[-1] if fit.energy else None,
    }


def write_fit(fit: BodyFit, out_dir: Path, scale: float, model, summary: dict) -> dict:
    """Write `FIT_FILES` into ``out_dir`` (each through a temporary file); -> {name: path}.
    ``model``: the fitted `BodyModel` (its rest up / front, turned by the fit, frame the PNG)."""
    import torch

    from facet3d.core.io.api import atomic_output, write
    from facet3d.core.io.record import Geometry

    from .lbs import rodrigues
    from .picture import fit_picture

    R = rodrigues(torch.as_tensor(fit.params["global_orient"])).numpy()
    up, front = R @ np.asarray(model.up), R @ np.asarray(model.front)

    out_dir.mkdir(parents=True, exist_ok=True)
    verts = fit.vertices / scale
    paths = {n: out_dir / n for n in FIT_FILES}
    write(paths["body.ply"], Geometry(vertices=verts, faces=fit.faces))
    c = np.clip(fit.vertex_residual / 0.03, 0, 1)[:, None]
    colours = ((1 - c) * np.array([0.1, 0.75, 0.2]) + c * np.array([0.9, 0.1, 0.1])).astype(np.float32)
    colours[~fit.vertex_seen] = 0.6
    write(paths["residuals.ply"], Geometry(vertices=verts, faces=fit.faces, colors=colours, attributes={
        "residual": (fit.vertex_residual / scale).astype(np.float32), "seen": fit.vertex_seen.astype(np.uint8)}))
    with atomic_output(paths["params.json"]) as tmp:
        tmp.write_text(json.dumps({k: v.tolist() for k, v in fit.params.items()}, indent=1) + "\n")
    fit_picture(paths["fit.png"], fit.vertices, fit.faces, fit.points, fit.point_residual, up, front)
    with atomic_output(paths["fit.json"]) as tmp:
        tmp.write_text(json.dumps(dict(summary, outputs={k: str(v) for k, v in paths.items()}), indent=1) + "\n")
    return {k: str(v) for k, v in paths.items()}
