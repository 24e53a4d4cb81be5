"""Built-in plugin `triangle_splatting`: differentiable triangle splatting (TS and TS+).

Modules (imported lazily; this module imports neither torch nor open3d):

* `scene`  - `TriangleScene` (TS free triangles / TS+ shared vertices), SH colour, mesh
  conversion, PLY save/load (layout: docs/triangle_splat_ply.md);
* `render` - `render(scene, cameras, ...)` over a batch of `Cameras`, `orbit_cameras`, and the work of
  ``facet3d render`` (scene loading, orbit framing, camera reading, view naming, output files);
* the rasterizer itself lives in `facet3d.kernels.trisplat` (torch reference = CPU path, Triton on CUDA);
* `datasets` - Blender / COLMAP multi-view datasets with a held-out split;
* `model` - trainable parameters, initialisation, densify / prune; `fit` - the training loop;
* `bench`  - ``facet3d bench ts-render``;
* `cli` - the commands only (parse, call, print): ``facet3d render`` (scene PLY or mesh -> PNG /
  depth / alpha per camera, + cameras.json for --orbit), ``facet3d export`` (scene PLY -> coloured
  mesh .ply / .glb / .obj) and ``facet3d fit``;
* `export`  - `scene_to_geometry`, `export_scene` (TS+ -> shared mesh, TS -> triangle soup; SH DC colours);
* `mesh_eval` - TS+ mesh scoring by ray casting (core's `facet3d.core.ops.raycast`);
* `demo`    - the ``triangle-splatting`` step of ``facet3d demo``;
* `official` - scenes trained by the official Triangle Splatting / TS+ code (`load_official`);
* `view`    - the `ViewLoader` for ``facet3d view`` (preview mesh + exact render of a scene);
* `steps`   - the ``render`` pipeline step of ``facet3d batch`` (mesh -> a folder of orbit views).
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import Benchmark, DemoStep, PipelineStep, ViewLoader

_STEPS = "facet3d.plugins.triangle_splatting.steps"


@hookimpl
def facet3d_register_commands(app) -> None:
    from facet3d.plugins.triangle_splatting.cli import register

    register(app)


@hookimpl
def facet3d_pipeline_steps() -> list[PipelineStep]:
    return [
        PipelineStep("render", "mesh -> orbit views: view_NNN_rgb.png (+ _depth.npy) and cameras.json in a folder "
                     "(as facet3d render MESH --orbit N)", f"{_STEPS}:render",
                     {"views": (int, 8, "cameras on the orbit"), "size": (str, "256x256", "image size WxH"),
                      "up": (str, "z", "orbit axis x|y|z (optionally -x, -y, -z)"),
                      "fov": (float, 60.0, "field of view of the shorter image side, degrees in (0, 180)"),
                      "shading": (str, "lambert", "lambert, normal or flat"),
                      "save_depth": (bool, False, "also write view_NNN_depth.npy (z-depth, 0 where empty)")},
                     gives="files", check=f"{_STEPS}:check_render"),
    ]


@hookimpl
def facet3d_view_loaders() -> list[ViewLoader]:
    return [ViewLoader("triangle-splat-scene", "triangle-splat scene PLYs and official TS / TS+ outputs "
                       "(point_cloud_state_dict.pt or the model folder): preview mesh + exact render",
                       "facet3d.plugins.triangle_splatting.view:claims", "facet3d.plugins.triangle_splatting.view:load",
                       order=10)]


@hookimpl
def facet3d_benchmarks() -> list[Benchmark]:
    return [
        Benchmark("ts-render", "triangle-splatting renderer backends (numba, torch reference; triton on CUDA; hard "
                  "and soft, bunny, 512x512) vs an open3d RaycastingScene of the same mesh; backward/forward "
                  "ratios, speed-ups over the reference, compile time",
                  "facet3d.plugins.triangle_splatting.bench:ts_render"),
    ]


@hookimpl
def facet3d_demo_steps() -> list[DemoStep]:
    return [
        DemoStep("triangle-splatting", "render a mesh as a hard triangle-splat scene from an orbit, save it as a "
                 "TS+ scene PLY and export it back to a mesh", "facet3d.plugins.triangle_splatting.demo:triangle_splatting",
                 order=300),
        DemoStep("triangle-splatting-fit", "fit triangles (TS) to the small sample Blender scene for a few hundred "
                 "iterations; held-out PSNR/SSIM", "facet3d.plugins.triangle_splatting.demo:triangle_splatting_fit",
                 order=310),
    ]
