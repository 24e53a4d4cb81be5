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


def claims(path: Path) -> bool:
    from facet3d.plugins.triangle_splatting.scene import is_scene_ply

    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".ply":
        return is_scene_ply(p)
    from facet3d.plugins.triangle_splatting.official import is_official_scene

    return is_official_scene(p)


def preview_mesh(scene, max_triangles: int | None = None):
    """The scene as an opaque coloured mesh -> (vertices [V, 3], faces [F, 3], colours [V, 3] uint8); above
    ``max_triangles`` only the most visible ones (opacity x area: what the render is mostly made of)."""
    import torch

    from facet3d.plugins.triangle_splatting.export import scene_to_geometry

    geom = scene_to_geometry(scene)
    v, f = np.asarray(geom.vertices, dtype=np.float64), np.asarray(geom.faces)
    if max_triangles is not None and len(f) > max_triangles:
        tri = scene.triangle_vertices().detach()
        area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1)
        keep = torch.topk(scene.triangle_opacity().detach() * area, max_triangles).indices.sort().values.numpy()
        f = f[keep]  # TS: the soup's faces; TS+: shared vertices, unused ones simply stay unreferenced
    return v, f, (np.clip(geom.colors[:, :3], 0, 1) * 255 + 0.5).astype(np.uint8)


def splat_layer(scene, name: str, source: str, max_triangles: int | None = None):
    """A `TriangleScene` -> `SplatLayer` (preview mesh, at most ``max_triangles``, + exact renderer)."""
    import torch

    from facet3d.core.viewing import MeshLayer, SplatLayer
    from facet3d.plugins.triangle_splatting.render import render

    preview = MeshLayer(f"{name}/preview", source, *preview_mesh(scene, max_triangles))
    scene32 = scene.to(dtype=torch.float32)
    v = preview.vertices
    near = max(1e-3 * float(np.linalg.norm(v.max(0) - v.min(0))), 1e-6) if len(v) else 0.01  # small scenes: the
    # renderer's default near plane (0.2, metres) would clip an object a browser looks at from 20 cm

    def render_view(cameras, background=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            o = render(scene32, cameras.to(dtype=torch.float32), background=background, hard=False, near=near)
        rgb = (o["rgb"][0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        # mostly-opaque pixels have a surface at their expected z; the rest count as empty
        depth = torch.where(o["alpha"][0] >= 0.5, o["depth"][0], torch.inf).cpu().numpy().astype(np.float32)
        return rgb, depth

    return SplatLayer(name, source, preview=preview, render=render_view, count=len(scene), form=scene.form)


def load(path: Path, name: str, options) -> list:
    from facet3d.plugins.triangle_splatting.scene import TriangleScene, is_scene_ply

    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".ply" and is_scene_ply(p):
        return [splat_layer(TriangleScene.load_ply(p), name, str(p), options.max_triangles)]
    from facet3d.plugins.triangle_splatting import official as off

    scene = off.load_official(p, opacity_floor=options.opacity_floor)
    layers = [splat_layer(scene, name, str(p), options.max_triangles)]
    cams = off.official_cameras(p)
    if cams is not None:
        from facet3d.core.viewing import CamerasLayer, camera_images

        roots = _training_image_dirs(off.official_model_dir(p))
        images = camera_images(cams, roots) if options.images and roots else [None] * len(cams)
        layers.append(CamerasLayer(f"{name}/cameras", str(p), cams, images))
    return layers


def _training_image_dirs(model_dir) -> list[Path]:
    """The training images of an official model: its ``cfg_args`` (the argparse Namespace the official
    train.py saves) names ``source_path`` and ``images``; only folders that exist on this machine."""
    import re

    if model_dir is None or not (Path(model_dir) / "cfg_args").is_file():
        return []
    text = (Path(model_dir) / "cfg_args").read_text(errors="replace")
    src = re.search(r"source_path=['\"]([^'\"]+)['\"]", text)
    sub = re.search(r"images=['\"]([^'\"]+)['\"]", text)
    if src is None:
        return []
    root = Path(src.group(1))
    dirs = [root / (sub.group(1) if sub else "images"), root / "images", root]
    return [d for d in dirs if d.is_dir()]
