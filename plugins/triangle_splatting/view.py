"""Triangle-splat scenes in ``facet3d view`` (the `ViewLoader` this plugin registers).

Claims our scene PLYs (their header tag) and the official Triangle Splatting / TS+ outputs (a
``point_cloud_state_dict.pt`` or its model folder, `official`). The viewer gets the scene as a preview
mesh (its SH DC colours, opaque) and a ``render`` function: this plugin's rasterizer for one camera,
soft edges, opacity and view-dependent SH included; the viewer shows that image as the exact view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["claims", "load", "splat_layer"]


def _official():
    try:
        from facet3d.plugins.triangle_splatting import official
    except ImportError:  # pragma: no cover - the module ships with the plugin
        return None
    return official


def claims(path: Path) -> bool:
    from facet3d.plugins.triangle_splatting.scene import is_scene_ply

    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".ply":
        return is_scene_ply(p)
    off = _official()
    return off is not None and off.is_official_scene(p)


def splat_layer(scene, name: str, source: str):
    """A `TriangleScene` -> `SplatLayer` (preview mesh + exact renderer)."""
    import torch

    from facet3d.core.viewing import MeshLayer, SplatLayer
    from facet3d.plugins.triangle_splatting.export import scene_to_geometry
    from facet3d.plugins.triangle_splatting.render import render

    geom = scene_to_geometry(scene)
    preview = MeshLayer(f"{name}/preview", source, np.asarray(geom.vertices, dtype=np.float64),
                        np.asarray(geom.faces), (np.clip(geom.colors[:, :3], 0, 1) * 255 + 0.5).astype(np.uint8))
    scene32 = scene.to(dtype=torch.float32)
    v = preview.vertices
    near = max(1e-3 * float(np.linalg.norm(v.max(0) - v.min(0))), 1e-6) if len(v) else 0.01  # small scenes: the
    # renderer's default near plane (0.2, metres) would clip an object a browser looks at from 20 cm

    def render_view(cameras, background=(1.0, 1.0, 1.0)) -> np.ndarray:
        with torch.no_grad():
            o = render(scene32, cameras.to(dtype=torch.float32), background=background, hard=False, near=near)
        return (o["rgb"][0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()

    return SplatLayer(name, source, preview=preview, render=render_view, count=len(scene), form=scene.form)


def load(path: Path, name: str, options) -> list:
    from facet3d.plugins.triangle_splatting.scene import TriangleScene, is_scene_ply

    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".ply" and is_scene_ply(p):
        return [splat_layer(TriangleScene.load_ply(p), name, str(p))]
    off = _official()
    scene = off.load_official(p, opacity_floor=options.opacity_floor)
    layers = [splat_layer(scene, name, str(p))]
    cams = off.official_cameras(p)
    if cams is not None:
        from facet3d.core.viewing import CamerasLayer

        layers.append(CamerasLayer(f"{name}/cameras", str(p), cams, [None] * len(cams)))
    return layers
