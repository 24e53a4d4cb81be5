"""Demo step of the `triangle_splatting` plugin, run by ``facet3d demo`` on sample_data/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facet3d.core.errors import Facet3DError
from facet3d.core.specs import DemoContext

MESH = "meshes/fuze.obj"


def triangle_splatting(ctx: DemoContext) -> dict[str, Any]:
    """Render a mesh from an orbit (hard, 160x120), save it as a TS+ scene PLY, export it back to a mesh."""
    import numpy as np
    import torch
    from PIL import Image

    from facet3d.core.io.api import atomic_output, read, write
    from facet3d.plugins.triangle_splatting.export import scene_to_geometry
    from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
    from facet3d.plugins.triangle_splatting.scene import TriangleScene

    src = Path(ctx.sample_dir) / MESH
    if not src.is_file():
        raise Facet3DError(f"sample file {src} is missing")
    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    geom = read(src)
    scene = TriangleScene.from_geometry(geom)
    n_views = 2 if ctx.quick else 4
    H, W = 120, 160
    tri = scene.triangle_vertices().detach().to(torch.float64).reshape(-1, 3)
    lo, hi = tri.min(0).values, tri.max(0).values
    radius = max(float((hi - lo).norm()) / 2.0, 1e-9)
    cams = orbit_cameras((lo + hi) / 2, 2.2 * radius, n_views, (H, W), fov=70.0)
    images, coverage = [], []
    with torch.no_grad():
        for i in range(n_views):
            o = render(scene, cams[i], background=(1.0, 1.0, 1.0), hard=True, shading="lambert")
            rgb = (o["rgb"][0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
            coverage.append(float((o["alpha"][0] > 0).float().mean()))
            path = out / f"ts_view_{i:03d}.png"
            with atomic_output(path) as tmp:
                Image.fromarray(rgb, "RGB").save(tmp, format="PNG")
            images.append(path.name)
    if min(coverage) <= 0.0:
        raise Facet3DError("a demo view rendered nothing")
    scene_path = scene.save_ply(out / "fuze_ts_plus.ply")
    back_scene = TriangleScene.load_ply(scene_path)
    mesh_path = write(out / "fuze_ts_export.ply", scene_to_geometry(back_scene))
    back = read(mesh_path)
    if back.num_faces != geom.num_faces or back.num_points != geom.num_points:
        raise Facet3DError(f"export round trip changed counts: {geom.num_points}/{geom.num_faces} -> "
                           f"{back.num_points}/{back.num_faces} (vertices/faces)")
    return {"mesh": MESH, "views": n_views, "image_size": f"{W}x{H}", "images": images,
            "min_coverage": round(min(coverage), 4), "scene": scene_path.name, "scene_form": back_scene.form,
            "export": mesh_path.name, "faces": geom.num_faces, "exported_faces": back.num_faces,
            "exported_vertices": back.num_points, "round_trip_faces_equal": back.num_faces == geom.num_faces,
            "has_vertex_colors": back.colors is not None and bool(np.isfinite(back.colors).all()),
            "commands": [f"facet3d render {src} --orbit {n_views} --size {W}x{H} --shading lambert --out OUT",
                         "facet3d export OUT/fuze_ts_plus.ply --out OUT/fuze_ts_export.ply"]}


SCENE = "multiview/bunny_blender"


def triangle_splatting_fit(ctx: DemoContext) -> dict[str, Any]:
    """A short `fit` (TS) on the small sample Blender scene; held-out PSNR/SSIM and a preview PNG."""
    import torch

    from facet3d.plugins.triangle_splatting.datasets import load_dataset
    from facet3d.plugins.triangle_splatting.fit import FitConfig, fit

    src = Path(ctx.sample_dir) / SCENE
    if not (src / "transforms_train.json").is_file():
        raise Facet3DError(f"sample scene {src} is missing (scripts/make_sample_multiview.py writes it)")
    ds = load_dataset(src, "blender", holdout=8, background=(1.0, 1.0, 1.0))
    iters = 60 if ctx.quick else 300
    torch.manual_seed(0)
    run = Path(ctx.out_dir) / "bunny_fit"
    if (run / "checkpoint.pt").exists():
        (run / "checkpoint.pt").unlink()  # the demo always starts fresh
    m = fit(ds, run, FitConfig(mode="ts", iters=iters, init_points=1500, max_triangles=8000, checkpoint_every=0))
    if not m["psnr"] > 15.0:
        raise Facet3DError(f"the sample fit did not learn (held-out PSNR {m['psnr']:.2f} dB)")
    previews = sorted((run / "previews").glob("*.png"))
    return {"scene": SCENE, "iterations": m["iterations"], "train_views": m["train_views"],
            "heldout_views": m["eval_views"], "heldout_psnr_db": round(m["psnr"], 2), "heldout_ssim": round(m["ssim"], 4),
            "triangles": m["triangles"], "seconds": m["train_seconds"], "run_dir": str(run),
            "preview": previews[-1].name if previews else None,
            "command": f"facet3d fit {src} --format blender --out RUN --iters {iters} --init-points 1500"}
