"""Built-in plugin `risurconv`: rotation-invariant point cloud classification and part segmentation.

RISurConv (Zhang, Yang, Hua 2024): commands (`train`, `eval`, `classify`, `segment`), named model
configs, a demo step and benchmarks. Everything is referenced by "module:attr" strings so loading
this plugin imports neither torch nor the model code.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import REQUIRED, Benchmark, DemoStep, ModelSpec, PipelineStep

_P = "facet3d.plugins.risurconv"
_BUILD = f"{_P}.models:build_model"
_LOAD = f"{_P}.checkpoint:load_model"


@hookimpl
def facet3d_register_commands(app) -> None:
    from facet3d.plugins.risurconv.cli import register

    register(app)


@hookimpl
def facet3d_models() -> list[ModelSpec]:
    # build(config=NAME) -> models.build_model(NAME); the config dicts live in models.CONFIGS
    rows = [
        ("risurconv-cls-modelnet40", "classification", "modelnet40", "official ModelNet40 classifier (13.96 M parameters, 1024 points)"),
        ("risurconv-cls-scanobjectnn", "classification", "scanobjectnn", "official ScanObjectNN classifier (13.96 M parameters)"),
        ("risurconv-partseg", "segmentation", "partseg", "official ShapeNet part segmenter (4.06 M parameters, 2048 points)"),
        ("risurconv-cls-small", "classification", "small", "reduced classifier for CPU training (1.6 M parameters)"),
        ("risurconv-cls-tiny", "classification", "tiny", "tiny classifier for tests and the demo (0.18 M parameters)"),
        ("risurconv-partseg-small", "segmentation", "partseg_small", "reduced part segmenter for CPU training"),
    ]
    return [ModelSpec(name=n, task=t, description=d, build=_BUILD, config={"config": c}, load_checkpoint=_LOAD)
            for n, t, c, d in rows]


@hookimpl
def facet3d_pipeline_steps() -> list[PipelineStep]:
    model = {"ckpt": (str, REQUIRED, "checkpoint (.safetensors with its .json, or official .pth)"),
             "num_points": (int, None, "points fed to the model (default: the checkpoint's)"),
             "device": (str, "auto", "auto, cpu or cuda")}
    common = dict(setup=None, check=f"{_P}.steps:check_ckpt", resources={"cpus": 1, "gpus": 1})
    return [
        PipelineStep("classify", "RISurConv classification: one row per file (label, probability, top-k)",
                     f"{_P}.steps:classify", {**model, "top_k": (int, 3, "classes listed per file")},
                     gives="row", **{**common, "setup": f"{_P}.steps:setup_classifier"}),
        PipelineStep("segment", "RISurConv part segmentation: every point / vertex gets an int 'part' and a colour",
                     f"{_P}.steps:segment", {**model, "category": (str, None, "object category (default: most confident)"),
                                             "samples_only": (bool, False, "only the points the model saw")},
                     **{**common, "setup": f"{_P}.steps:setup_segmenter"}),
    ]


@hookimpl
def facet3d_demo_steps() -> list[DemoStep]:
    return [DemoStep("risurconv", "rotation-invariant classification and part segmentation of sample shapes",
                     f"{_P}.demo:run", order=200)]


@hookimpl
def facet3d_benchmarks() -> list[Benchmark]:
    return [
        Benchmark("risurconv-infer", "RISurConv inference latency (batch 1) and throughput (batch 16), kernel dispatch vs plain PyTorch",
                  f"{_P}.bench:infer"),
        Benchmark("risurconv-train", "RISurConv training throughput (samples/s)", f"{_P}.bench:train"),
    ]
