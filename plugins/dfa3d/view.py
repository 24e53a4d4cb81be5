"""Driving frames in ``facet3d view`` (the `ViewLoader` this plugin registers).

A nuScenes keyframe or a KITTI frame folder (`scenes.detect_layout`) shows as its lidar sweep, coloured
by height, and its cameras as frustums with their photos, in the scene's frame (the lidar's): what the
``lift`` command sees before it lifts. Folders in the ``plain`` layout are left to core's readers.
"""

from __future__ import annotations

from pathlib import Path

from facet3d.core.errors import Facet3DError

__all__ = ["claims", "load"]


def claims(path: Path) -> bool:
    from facet3d.plugins.dfa3d.scenes import detect_layout

    p = Path(path)
    if not p.is_dir():
        return False
    try:
        return detect_layout(p) in ("nuscenes", "kitti")
    except Facet3DError:
        return False


def load(path: Path, name: str, options) -> list:
    from facet3d.core.io.record import Geometry
    from facet3d.core.viewing import CamerasLayer, thumbnail, geometry_layer
    from facet3d.plugins.dfa3d.scenes import load_scene

    scene = load_scene(Path(path))
    layers = []
    if scene.lidar_path is not None:
        layers.append(geometry_layer(Geometry(scene.lidar_points()), f"{name}/lidar", str(scene.lidar_path), options))
    images = [thumbnail(p) if options.images else None for p in scene.image_paths]
    layers.append(CamerasLayer(f"{name}/cameras", str(scene.root), scene.cameras, images))
    return layers
