"""Demo step `mesh-recovery`: sampled bunny points -> Poisson mesh (trimmed vs closed) -> metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import Facet3DError
from facet3d.core.specs import DemoContext


def run(ctx: DemoContext) -> dict[str, Any]:
    """Mesh 30k points (10k with --quick) of the bunny, an open real mesh, two ways, and score both
    against the source mesh; then mesh the real PCL bunny scan with --method auto (a single view: 2.5-D Delaunay)."""
    from facet3d.core.io.api import read, write
    from facet3d.core.io.record import Geometry
    from facet3d.core.ops.sampling import sample_mesh_surface
    from facet3d.core.preview import save_preview

    from .surface_metrics import compare, fscore_at
    from .surface_points import PointsToMesh, reconstruct_points

    src = Path(ctx.sample_dir) / "meshes" / "stanford-bunny.obj"
    if not src.is_file():
        raise Facet3DError(f"sample file {src} is missing")
    gt = read(src)
    n = 10_000 if ctx.quick else 30_000
    s = sample_mesh_surface(gt.vertices, gt.faces, n, seed=0)
    pts = Geometry(np.asarray(s.points), normals=np.asarray(s.normals))
    out = Path(ctx.out_dir)
    write(out / "bunny_points.ply", pts)
    summary: dict[str, Any] = {"points": n, "commands": [
        f"facet3d convert {src} OUT/bunny_points.ply --sample {n} --normals",
        "facet3d mesh OUT/bunny_points.ply --method poisson --out OUT/bunny_poisson_trimmed.ply",
        f"facet3d mesh {Path(ctx.sample_dir) / 'scans' / 'bunny.pcd'} --out OUT/bunny_scan_mesh.ply"]}
    for name, opts in (("trimmed", PointsToMesh(method="poisson")), ("watertight", PointsToMesh(method="poisson", watertight=True))):
        mesh = reconstruct_points(pts, opts)
        write(out / f"bunny_poisson_{name}.ply", mesh)
        save_preview(out / f"bunny_poisson_{name}.png", mesh, up=(0, 1, 0))
        m = compare(mesh, gt, n=n)
        summary[name] = {"faces": mesh.num_faces, "fscore_1pct": round(fscore_at(m), 4),
                         "chamfer_l1": m["chamfer_l1"], "watertight": m["pred_topology"]["watertight"]}
    scan_path = Path(ctx.sample_dir) / "scans" / "bunny.pcd"
    if scan_path.is_file():
        scan = read(scan_path)
        opts = PointsToMesh()
        mesh = reconstruct_points(Geometry(scan.vertices), opts)
        write(out / "bunny_scan_mesh.ply", mesh)
        save_preview(out / "bunny_scan_mesh.png", mesh, up=(0, 1, 0))
        summary["scan"] = {"points": scan.num_points, "faces": mesh.num_faces, "method": opts.info.get("method_reason"),
                           "normals": opts.info.get("normals")}
    return summary


def body(ctx: DemoContext) -> dict[str, Any]:
    """A random plausible body from Anny (the bundled model) sampled to 10k points with 5 mm noise,
    over its whole surface and as one depth sensor's view; each fitted with `facet3d body fit`'s
    code, written (mesh, params, residuals, PNG) and scored against the truth (PVE, PA-MPJPE in mm)."""
    import torch

    from facet3d.core.io.api import write
    from facet3d.core.io.record import Geometry

    from .body.fit import FitOptions, fit_body
    from .body.fit_outputs import fit_summary, write_fit
    from .body.metrics import pa_mpjpe, pve
    from .body.models import load_body_model
    from .body.scans import synthetic_scan
    from .body.skeleton import skeleton_of

    model = load_body_model("anny", dtype=torch.float32)
    sk = skeleton_of(model)
    iters = 150 if ctx.quick else 300
    summary: dict[str, Any] = {"model": "anny", "iters": iters, "noise_mm": 5.0}
    for kind in ("full", "partial"):
        scan = synthetic_scan(model, sk, seed=1, partial=kind == "partial")
        out = Path(ctx.out_dir) / f"body_{kind}"
        out.mkdir(parents=True, exist_ok=True)
        write(out / "scan.ply", Geometry(scan.points))
        fit = fit_body(scan.points, model, FitOptions(iters=iters, partial=kind == "partial",
                                                      sensor=None if scan.sensor is None else tuple(scan.sensor)))
        info = fit_summary(fit, "anny", "m", 1.0, iters, kind == "partial")
        write_fit(fit, out, 1.0, model, info)
        mj = sk.main_joints
        summary[kind] = {"points": int(len(scan.points)), "pve_mm": round(pve(fit.vertices, scan.vertices), 2),
                         "pa_mpjpe_mm": round(pa_mpjpe(fit.joints[mj], scan.joints[mj]), 2),
                         "seconds": round(fit.seconds, 1)}
    return summary
