"""Body recovery on files: what ``facet3d body fit`` and the ``fit`` pipeline step call."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facet3d.core.errors import UsageError
from facet3d.core.progress import LogFn, ProgressFn, say

__all__ = ["scan_points", "held_gender", "fit_geometry", "fit_scan_file"]


def held_gender(model, gender: str) -> dict[int, float]:
    """``gender`` as held shape values: Anny's gender phenotype (female -0.5, neutral 0, male +0.5 in
    betas); "auto" holds nothing. SMPL files are per gender and refuse it."""
    if gender == "auto":
        return {}
    names = list(getattr(model, "beta_names", []))
    if "gender" not in names:
        raise UsageError(f"--gender {gender}: the {model.name} model has no gender parameter (SMPL files are "
                         f"per gender: give SMPL_MALE.pkl, SMPL_FEMALE.pkl or SMPL_NEUTRAL.pkl)")
    return {names.index("gender"): {"female": -0.5, "male": 0.5, "neutral": 0.0}[gender]}


def scan_points(geom, n: int, seed: int) -> np.ndarray:
    """[M, 3] float64 points of a scan: a mesh sampled uniformly (n points), a cloud as it is."""
    if geom.faces is not None and len(geom.faces):
        from facet3d.core.ops.sampling import sample_mesh_surface

        return np.asarray(sample_mesh_surface(np.asarray(geom.vertices, dtype=np.float64), geom.faces, n,
                                   seed=seed).points, dtype=np.float64)
    return np.asarray(geom.vertices, dtype=np.float64)


def fit_geometry(geom, model, *, iters: int = 300, gender: str = "auto", units: str = "auto",
                 partial: bool = False, sensor=None, max_points: int = 10_000, seed: int = 0,
                 progress: ProgressFn | None = None, log: LogFn | None = None):
    """Fit ``model`` to a scan `Geometry`. -> (BodyFit in metres, unit name, scale to metres)."""
    from .fit import UNITS, FitOptions, fit_body, scan_units

    pts = scan_points(geom, max_points, seed)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) < 100:
        from facet3d.core.errors import InputError

        raise InputError(f"a body fit needs at least 100 finite points, the scan has {len(pts)}")
    name, scale = scan_units(pts) if units == "auto" else (units, UNITS[units])
    if units == "auto" and name != "m":
        say(log, f"the scan looks like it is in {name} (use --units to say otherwise)")
    opts = FitOptions(iters=iters, partial=partial, sensor=None if sensor is None else tuple(np.asarray(sensor) * scale),
                      fixed_betas=held_gender(model, gender), max_points=max_points, seed=seed)
    return fit_body(pts * scale, model, opts, progress=progress), name, scale


def fit_scan_file(scan: Path, out_dir: Path, *, model: str = "anny", iters: int = 300, gender: str = "auto",
                  units: str = "auto", partial: bool = False, sensor=None, max_points: int = 10_000, seed: int = 0,
                  progress: ProgressFn | None = None, log: LogFn | None = None) -> dict:
    """Read ``scan``, fit, write `fit_outputs.FIT_FILES` into ``out_dir``; -> the summary."""
    import torch

    from facet3d.core.io.api import read

    from .fit_outputs import fit_summary, write_fit
    from .models import load_body_model

    geom = read(scan)
    body = load_body_model(model, dtype=torch.float32)
    fit, name, scale = fit_geometry(geom, body, iters=iters, gender=gender, units=units, partial=partial,
                                    sensor=sensor, max_points=max_points, seed=seed, progress=progress, log=log)
    summary = fit_summary(fit, body.name, name, scale, iters, partial)
    summary["scan"] = str(scan)
    summary["outputs"] = write_fit(fit, out_dir, scale, body, summary)
    return summary
