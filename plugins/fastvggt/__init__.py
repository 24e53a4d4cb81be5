"""Built-in plugin `fastvggt`: VGGT multi-view reconstruction with FastVGGT token merging.

VGGT (Wang et al., CVPR 2025) predicts cameras, depth and points for a set of photos in one forward
pass; FastVGGT (training-free token merging in the global attention) makes long sequences cheaper.
Commands: ``facet3d reconstruct``; models: ``vggt-1b`` and small configs; benchmark ``fastvggt``; pipeline
step ``reconstruct`` (``facet3d batch`` over folders of photos, the model loaded once per worker).
Everything is referenced by "module:attr" strings so loading the plugin imports neither torch nor the model.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import REQUIRED, Benchmark, ModelSpec, PipelineStep

_P = "facet3d.plugins.fastvggt"


@hookimpl
def facet3d_register_commands(app) -> None:
    from facet3d.plugins.fastvggt.cli import register

    register(app)


@hookimpl
def facet3d_models() -> list[ModelSpec]:
    rows = [
        ("vggt-1b", "vggt-1b", "VGGT-1B (facebook/VGGT-1B keys; 1,256,537,516 parameters), camera/depth/point/track heads"),
        ("vggt-1b-depth4", "vggt-1b-depth4", "VGGT at full width with 4 + 4 aggregator blocks (reduced depth)"),
        ("vggt-bench-cpu", "bench-cpu", "reduced VGGT for the CPU merging benchmark (256 wide, 2 + 2 blocks)"),
        ("vggt-tiny", "tiny", "tiny VGGT for tests (32 wide, 4 + 4 blocks)"),
    ]
    # the two big ones build on the meta device (the architecture, no memory): weights come from load_checkpoint
    big = {"vggt-1b", "vggt-1b-depth4"}
    return [ModelSpec(name=n, task="multiview-reconstruction", description=d, build=f"{_P}.model:build_model",
                      config={"config": c, **({"device": "meta"} if c in big else {})},
                      load_checkpoint=f"{_P}.checkpoint:load_model") for n, c, d in rows]


@hookimpl
def facet3d_benchmarks() -> list[Benchmark]:
    return [Benchmark("fastvggt", "VGGT aggregator with FastVGGT token merging vs without: time and peak memory "
                      "(--set frames=16,32,64)", f"{_P}.bench:aggregator")]


@hookimpl
def facet3d_pipeline_steps() -> list[PipelineStep]:
    return [PipelineStep(
        "reconstruct", "folder of photos -> VGGT (+ FastVGGT token merging) cameras and coloured points: points.ply, "
        "scene.glb, cameras.json, images/, sparse/0/ in a folder (as facet3d reconstruct PHOTOS --ckpt CKPT -o DIR)",
        f"{_P}.steps:reconstruct",
        {"ckpt": (str, REQUIRED, "VGGT weights: model.safetensors / model.pt of facebook/VGGT-1B, or a facet3d save"),
         "merge": (float, 0.9, "FastVGGT merge ratio in [0, 1]; 0 = plain VGGT (no merging)"),
         "preprocess": (str, "crop", "crop (width 518, centre-crop height) or pad (long side 518, white square)"),
         "conf_percentile": (float, 50.0, "drop points below this confidence percentile"),
         "config": (str, None, "architecture name (default: from the file, else vggt-1b)"),
         "device": (str, "cpu", "cpu, cuda[:N] or auto")},
        takes="path", gives="files", setup=f"{_P}.steps:setup_reconstruct", check=f"{_P}.steps:check_reconstruct",
        resources={"cpus": 1, "gpus": 1})]
