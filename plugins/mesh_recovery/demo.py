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
    summary: dict[str, Any] = {"points": n}
    for name, opts in (("trimmed", PointsToMesh(method="poisson")), ("watertight", PointsToMesh(method="poisson", watertight=True))):
        mesh = reconstruct_points(pts, opts)
        write(out / f"bunny_poisson_{name}.ply", mesh)
        m = compare(mesh, gt, n=n)
        summary[name] = {"faces": mesh.num_faces, "fscore_1pct": round(fscore_at(m), 4),
                         "chamfer_l1": m["chamfer_l1"], "watertight": m["pred_topology"]["watertight"]}
    scan_path = Path(ctx.sample_dir) / "scans" / "bunny.pcd"
    if scan_path.is_file():
        scan = read(scan_path)
        opts = PointsToMesh()
        mesh = reconstruct_points(Geometry(scan.vertices), opts)
        write(out / "bunny_scan_mesh.ply", mesh)
        summary["scan"] = {"points": scan.num_points, "faces": mesh.num_faces, "method": opts.info.get("method_reason"),
                           "normals": opts.info.get("normals")}
    return summary
