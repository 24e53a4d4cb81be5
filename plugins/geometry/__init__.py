"""Built-in plugin `geometry`: core pipeline steps, demo steps and benchmarks (kernel benchmarks included).

The kernels' backends themselves belong to facet3d.kernels and need no plugin.

Registered through facet3d's own entry point exactly like a third-party plugin. Everything is
referenced by "module:attr" strings so loading this plugin imports neither torch nor open3d.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import Benchmark, DemoStep, PipelineStep

_STEPS = "facet3d.plugins.geometry.steps"
_DEMO = "facet3d.plugins.geometry.demo"


@hookimpl
def facet3d_pipeline_steps() -> list[PipelineStep]:
    return [
        PipelineStep("normalize", "centre and scale into the unit sphere", f"{_STEPS}:normalize"),
        PipelineStep("sample", "meshes: area-weighted surface samples with normals; clouds: random subset",
                     f"{_STEPS}:sample", {"n": (int, 2048, "number of points"), "seed": (int, 0, "random seed")}),
        PipelineStep("normals", "estimate consistently oriented normals where missing",
                     f"{_STEPS}:normals", {"k": (int, 30, "neighbours for PCA"),
                                           "force": (bool, False, "re-estimate even if present"),
                                           "viewpoint": (list, None, "orient towards 'x y z' (scans); default: tangent-plane propagation")}),
        PipelineStep("voxel-down", "average points per voxel", f"{_STEPS}:voxel_down", {"voxel": (float, 0.01, "voxel size")}),
        PipelineStep("fps", "farthest point sampling (deterministic start)", f"{_STEPS}:fps", {"n": (int, 1024, "number of points")}),
        PipelineStep("rotate", "random rotation (so3 or about z)", f"{_STEPS}:rotate",
                     {"mode": (str, "so3", "so3 or z"), "seed": (int, 0, "random seed")}),
        PipelineStep("drop-nonfinite", "remove points with NaN or inf coordinates", f"{_STEPS}:drop_nonfinite"),
        PipelineStep("read", "read the input with an explicit format (default: detected)", f"{_STEPS}:read_input",
                     {"format": (str, None, "input format"), "fields": (str, None, "format bin: the columns, e.g. x;y;z;intensity")},
                     takes="path"),
        PipelineStep("convert", "write the result in this format (last step)", f"{_STEPS}:convert",
                     {"to": (str, "ply", "output format or extension (ply, pcd, las, laz, obj, glb, xyz, npy, ...)")},
                     check=f"{_STEPS}:check_convert"),
    ]


@hookimpl
def facet3d_demo_steps() -> list[DemoStep]:
    return [
        DemoStep("info", "describe every sample file", f"{_DEMO}:info", order=0),
        DemoStep("convert", "convert sample files between formats and check the round trip", f"{_DEMO}:convert", order=10),
        DemoStep("normals", "estimate oriented normals on a real scan", f"{_DEMO}:normals", order=20),
        DemoStep("sampling", "area-weighted surface sampling, voxel and farthest point down-sampling, Chamfer/F-score", f"{_DEMO}:sampling", order=30),
    ]


@hookimpl
def facet3d_benchmarks() -> list[Benchmark]:
    return [
        Benchmark("knn", "k-nearest neighbours: every backend vs the torch reference", "facet3d.kernels.knn.bench:run"),
        Benchmark("fps", "farthest point sampling: every backend vs the torch reference", "facet3d.kernels.fps.bench:run"),
        Benchmark("gather", "grouping gather: every backend vs the torch reference",
                  "facet3d.kernels.gather.bench:run"),
        Benchmark("trisplat", "triangle-splatting rasterizer (soft, one view): every backend vs the torch reference",
                  "facet3d.kernels.trisplat.bench:run"),
        Benchmark("dfa3d", "3D deformable attention: fused vs materialised-volume memory, 3D vs 2D time, "
                  "Triton vs the torch reference (CUDA)", "facet3d.kernels.dfa3d.bench:run"),
        Benchmark("read-ply", "facet3d's PLY read + info summary vs open3d.io.read_point_cloud (1M points)",
                  "facet3d.plugins.geometry.bench:read_ply"),
        Benchmark("info-ply", "`facet3d info` on a 1M-point binary PLY vs a Python process reading it with open3d",
                  "facet3d.plugins.geometry.bench:info_ply"),
        Benchmark("batch", "facet3d batch throughput (normals + Poisson on small clouds): local 1 vs 2 workers vs Ray, "
                  "and the engine's per-file overhead", "facet3d.plugins.geometry.bench_batch:run"),
        Benchmark("cli-startup", "`facet3d --help` wall time vs `python -c pass`", "facet3d.plugins.geometry.bench:cli_startup"),
    ]
