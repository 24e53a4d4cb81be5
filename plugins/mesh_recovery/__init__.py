"""Built-in plugin `mesh_recovery`: recover surface meshes from points, depth maps and triangle soups.

Surfaces (modules ``surface_*``: points, TSDF, soup, metrics); ``recover`` is what ``facet3d mesh``
does and ``cli`` holds the commands only. Registered like a third-party plugin; everything is
referenced by "module:attr" strings, so loading the plugin imports neither open3d nor torch.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import REQUIRED, Benchmark, DemoStep, PipelineStep

_PKG = "facet3d.plugins.mesh_recovery"


@hookimpl
def facet3d_register_commands(app) -> None:
    from facet3d.plugins.mesh_recovery.cli import register

    register(app)


@hookimpl
def facet3d_pipeline_steps() -> list[PipelineStep]:
    return [PipelineStep("mesh", "point cloud -> surface mesh (auto: 2.5-D Delaunay for planar/terrain clouds, else Poisson "
                         "trimmed to the input; or BPA, alpha shapes)",
                         f"{_PKG}.steps:mesh",
                         {"method": (str, "auto", "auto, poisson, delaunay, bpa or alpha"), "depth": (int, 8, "Poisson octree depth"),
                          "max_edge": (float, None, "delaunay: longest 3-D edge kept (default 10 x spacing, 0: no limit)"),
                          "trim": (float, None, "also drop vertices below this density quantile"),
                          "watertight": (bool, False, "keep Poisson's closed surface")}),
            PipelineStep("compare", "one row of surface metrics (Chamfer, F-score, normal consistency, topology) "
                         "against a reference file", f"{_PKG}.steps:compare",
                         {"reference": (str, REQUIRED, "reference mesh / cloud; {stem} is the input's name, e.g. gt/{stem}.obj"),
                          "n": (int, 100_000, "points sampled on each surface"), "seed": (int, 0, "sampling seed"),
                          "thresholds": (str, None, "F-score thresholds separated by ';' (distances or N%; default 0.5%;1%;2%)"),
                          "point_to_mesh": (bool, True, "exact point-to-triangle distances to meshes")},
                         gives="row", check=f"{_PKG}.steps:check_compare")]


@hookimpl
def facet3d_demo_steps() -> list[DemoStep]:
    return [DemoStep("mesh-recovery", "bunny scan points -> Poisson mesh (open surface kept open) -> metrics vs the mesh",
                     f"{_PKG}.demo:run", order=200)]


@hookimpl
def facet3d_benchmarks() -> list[Benchmark]:
    return [Benchmark("mesh-poisson", "the plugin's Poisson reconstruction (normals given, trimming) vs open3d direct, same parameters",
                      f"{_PKG}.bench:mesh_poisson")]
