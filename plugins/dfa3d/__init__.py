"""Built-in plugin `dfa3d`: 3D deformable attention modules and 2D-to-3D feature lifting.

DFA3D (Li et al., ICCV 2023): `attention.DeformableAttention3D` (mmcv's MultiScaleDeformableAttention
with a depth axis), `spatial_cross_attention.SpatialCrossAttention` (BEVFormer's, with DFA3D),
`depth` (depth bins, `DepthNet`, given depth as distributions), `encoder` (a small BEV lifting
encoder, its named configs and checkpoints), `scenes` (nuScenes / KITTI / plain multi-camera
scenes), `lift` (what ``facet3d lift`` does), `steps` (the ``lift`` step of ``facet3d batch``) and `cli`
(the command only). The operator itself is `facet3d.kernels.dfa3d`. Everything is referenced by
"module:attr" strings, so loading the plugin imports no torch.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import ModelSpec, PipelineStep, ViewLoader

_P = "facet3d.plugins.dfa3d"


@hookimpl
def facet3d_register_commands(app) -> None:
    from facet3d.plugins.dfa3d.cli import register

    register(app)


@hookimpl
def facet3d_models() -> list[ModelSpec]:
    rows = [
        ("dfa3d-lift-tiny", "tiny", "DFA3D lifting encoder for tests (32 channels, 1 level, BEV 8x8, 2 layers, 16 depth bins)"),
        ("dfa3d-lift-small", "small", "DFA3D lifting encoder, reference 'small' sizes (1 level, BEV 150x150, 3 layers, 112 bins)"),
        ("dfa3d-lift-base", "base", "DFA3D lifting encoder, BEVFormer-base sizes (256 channels, 4 levels, BEV 200x200, 6 layers)"),
    ]
    return [ModelSpec(name=n, task="lifting", description=d, build=f"{_P}.encoder:build_encoder", config={"config": c},
                      load_checkpoint=f"{_P}.encoder:load_encoder_model") for n, c, d in rows]


@hookimpl
def facet3d_pipeline_steps() -> list[PipelineStep]:
    return [PipelineStep(
        "lift", "scene folder (nuScenes / KITTI / plain) -> image colours lifted into 3D with DFA3D: voxels.ply, "
        "bev.png, features and weights, lift.json in a folder (as facet3d lift SCENE --out DIR)", f"{_P}.steps:lift",
        {"layout": (str, "auto", "auto, nuscenes, kitti or plain"),
         "grid": (list, None, "'X0 X1 Y0 Y1 Z0 Z1' in the scene frame (default: the layout's, plain: the lidar's bounds)"),
         "voxel": (float, None, "voxel size (default 0.4; plain scenes: 1/128 of the largest side)"),
         "bev_size": (int, None, "BEV map cells per side (default: the grid's x/y cells)"),
         "at": (str, None, "lift onto points instead of a grid: 'lidar' (the scene's sweep) or a point file"),
         "max_size": (int, None, "downscale images so the longer side is at most this"),
         "depth": (str, "auto", "auto (lidar, else depth/ maps), lidar, maps or none"),
         "device": (str, "cpu", "cpu, cuda[:N] or auto")},
        takes="path", gives="files", check=f"{_P}.steps:check_lift", resources={"cpus": 1, "gpus": 1})]


@hookimpl
def facet3d_view_loaders() -> list[ViewLoader]:
    return [ViewLoader("driving-frame", "nuScenes keyframes and KITTI frames: the lidar sweep and the cameras "
                       "with their photos", "facet3d.plugins.dfa3d.view:claims", "facet3d.plugins.dfa3d.view:load",
                       order=20)]
