"""Demo steps of the built-in `geometry` plugin, run by `facet3d demo` on sample_data/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import Facet3DError
from facet3d.core.specs import DemoContext

BUNNY = "meshes/stanford-bunny.obj"
SCAN = "scans/bunny.pcd"


def _need(ctx: DemoContext, rel: str) -> Path:
    p = Path(ctx.sample_dir) / rel
    if not p.is_file():
        raise Facet3DError(f"sample file {p} is missing")
    return p


def info(ctx: DemoContext) -> dict[str, Any]:
    """Summarise every readable file in the sample folder into info.json."""
    from facet3d.core.io.api import read
    from facet3d.core.io.inputs import list_input_files
    from facet3d.core.summary import summarize

    files, _ = list_input_files([ctx.sample_dir], recursive=True)
    summaries = [summarize(read(p)) for p in files]
    (Path(ctx.out_dir) / "info.json").write_text(json.dumps(summaries, indent=2, default=str))
    return {"files": len(summaries), "report": str(Path(ctx.out_dir) / "info.json")}


def convert(ctx: DemoContext) -> dict[str, Any]:
    """Convert the bunny mesh, a scan and a LAS file to other formats and read each result back."""
    from facet3d.core.io.api import read, write

    out = Path(ctx.out_dir)
    jobs = [(BUNNY, ["ply", "glb", "off", "stl", "obj"]), (SCAN, ["ply", "xyz", "npz", "las"]), ("las/simple.las", ["ply", "laz"])]
    results = []
    for rel, exts in jobs:
        src = read(_need(ctx, rel))
        for ext in exts:
            dst = write(out / f"{Path(rel).stem}.{ext}", src)
            back = read(dst)
            # STL stores a triangle soup: only the faces survive as such
            same = back.num_faces == src.num_faces and (ext == "stl" or back.num_points == src.num_points)
            results.append({"from": rel, "to": dst.name, "points": back.num_points, "faces": back.num_faces, "round_trip_counts_equal": same})
    from facet3d.core.preview import save_preview

    save_preview(out / "stanford-bunny_views.png", read(out / "stanford-bunny.glb"), up=(0, 1, 0))
    if not all(r["round_trip_counts_equal"] for r in results):
        bad = [r["to"] for r in results if not r["round_trip_counts_equal"]]
        raise Facet3DError(f"round trip changed counts for {', '.join(bad)}")
    return {"converted": len(results), "files": [r["to"] for r in results],
            "commands": [f"facet3d convert {ctx.sample_dir}/{BUNNY} OUT/stanford-bunny.glb",
                         f"facet3d convert {ctx.sample_dir}/las/simple.las OUT/simple.laz"]}


def normals(ctx: DemoContext) -> dict[str, Any]:
    """Estimate consistently oriented normals on a real scan; report how consistent they are."""
    from facet3d.core.io.api import read, write
    from facet3d.core.ops.normals import estimate_normals, neighbour_sign_agreement

    geom = read(_need(ctx, SCAN))
    geom.normals = np.asarray(estimate_normals(geom.vertices, k=20, orient="consistent"))
    agreement = float(neighbour_sign_agreement(geom.vertices, geom.normals, k=10))
    dst = write(Path(ctx.out_dir) / "bunny_scan_normals.ply", geom)
    from facet3d.core.preview import save_preview

    # normals as colours ((n + 1) / 2): a consistently oriented field changes colour smoothly
    save_preview(Path(ctx.out_dir) / "bunny_scan_normals.png", geom, up=(0, 1, 0), colors=(geom.normals + 1) / 2)
    return {"points": geom.num_points, "neighbour_sign_agreement": round(agreement, 4), "output": dst.name,
            "command": f"facet3d pipeline run {ctx.sample_dir}/{SCAN} -s normals --out OUT"}


def sampling(ctx: DemoContext) -> dict[str, Any]:
    """Sample the bunny's surface, down-sample two ways, and score the samples against the mesh."""
    import torch

    from facet3d.core.io.api import read, write
    from facet3d.core.io.record import Geometry
    from facet3d.core.ops.metrics import chamfer_distance, fscore
    from facet3d.core.ops.sampling import sample_mesh_surface, voxel_downsample
    from facet3d.kernels.fps import farthest_point_sample

    mesh = read(_need(ctx, BUNNY))
    n = 5000 if ctx.quick else 50000
    s = sample_mesh_surface(mesh.vertices, mesh.faces, n, seed=0)
    pts, nrm = np.asarray(s.points), np.asarray(s.normals)
    out = Path(ctx.out_dir)
    write(out / "bunny_samples.ply", Geometry(vertices=pts, normals=nrm))
    diag = float(np.linalg.norm(pts.max(0) - pts.min(0)))
    vox = voxel_downsample(pts, diag / 100, normals=nrm)
    write(out / "bunny_voxel.ply", Geometry(vertices=np.asarray(vox.points), normals=np.asarray(vox.normals)))
    idx = farthest_point_sample(torch.as_tensor(pts)[None], 1024, start="farthest_from_centroid")[0].numpy()
    write(out / "bunny_fps1024.ply", Geometry(vertices=pts[idx], normals=nrm[idx]))
    other = np.asarray(sample_mesh_surface(mesh.vertices, mesh.faces, n, seed=1).points)
    cd = chamfer_distance(pts, other, norm="l2")
    fs = fscore(pts, other, 0.01 * diag)
    from facet3d.core.preview import save_preview

    save_preview(out / "bunny_fps1024.png", Geometry(vertices=pts[idx]), up=(0, 1, 0))
    return {"samples": n, "voxel_points": int(len(vox.points)), "fps_points": 1024,
            "chamfer_l2_between_two_samplings": float(cd.chamfer.reshape(-1)[0]),
            "fscore_at_1pct": float(fs.fscore.reshape(-1)[0])}
