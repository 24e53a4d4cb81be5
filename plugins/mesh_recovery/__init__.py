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
                         gives="row", check=f"{_PKG}.steps:check_compare"),
            PipelineStep("body-fit", "scan -> fitted human body mesh (SMPLify-style 3D fit; Anny or an SMPL-format "
                         "model), per-vertex residual attribute", f"{_PKG}.steps:body_fit",
                         {"model": (str, "anny", "'anny' (needs facet3d[body]) or an SMPL-format .pkl/.npz"),
                          "iters": (int, 300, "optimisation steps"),
                          "gender": (str, "auto", "auto, female, male or neutral (Anny's gender held)"),
                          "units": (str, "auto", "the scan's unit: auto, m, dm, cm, mm, in, ft"),
                          "partial": (bool, False, "one depth view, sensor at the origin"),
                          "points": (int, 10_000, "scan points used"), "seed": (int, 0, "subset seed")},
                         setup=f"{_PKG}.steps:setup_body_fit", check=f"{_PKG}.steps:check_body_fit")]


@hookimpl
def facet3d_demo_steps() -> list[DemoStep]:
    return [DemoStep("mesh-recovery", "bunny scan points -> Poisson mesh (open surface kept open) -> metrics vs the mesh",
                     f"{_PKG}.demo:run", order=200),
            DemoStep("body-fit", "a random plausible Anny body -> 10k noisy scan points (full and one depth view) "
                     "-> body fit -> PVE / PA-MPJPE against the truth", f"{_PKG}.demo:body", order=210)]


@hookimpl
def facet3d_benchmarks() -> list[Benchmark]:
    return [Benchmark("mesh-poisson", "the plugin's Poisson reconstruction (normals given, trimming) vs open3d direct, same parameters",
                      f"{_PKG}.bench:mesh_poisson"),
            Benchmark("body-lbs", "body-model forward (LBS) in vertices per second, batch 1 and 64: ours vs smplx.lbs "
                      "on an SMPL-sized model, and Anny", f"{_PKG}.bench:body_lbs")]
