"""Triangle-splat scene -> plain mesh `Geometry` (for ``facet3d export``: PLY / GLB / OBJ).

The scene is our scene PLY or an official Triangle Splatting / TS+ output (model folder or
``.pt``; `facet3d.plugins.triangle_splatting.official`).  ``to_scene=True`` (``facet3d export
--to-scene``) writes our scene PLY instead of a mesh: the way to convert an official output into
the documented layout (docs/triangle_splat_ply.md) keeping SH, opacity and sigma.

* TS+ scenes: the shared vertices and faces as they are; per-vertex colour from the SH DC term
  (``0.5 + C0 * dc``, clipped to [0, 1]).
* TS scenes (free triangles): a triangle soup (3 vertices per face, nothing shared); every
  vertex carries its triangle's colour (SH DC), so the colour survives in every format
  (OBJ and GLB keep vertex colours, not face colours).

View-dependent SH (degree > 0), sigma and opacity are not exported; ``opaque=True`` drops the
triangles whose opacity is below ``min_opacity`` (TS+: a triangle's opacity is the min of its
vertices').  Unused TS+ vertices are kept, so vertex indices match the scene.
"""

from __future__ import annotations

import numpy as np

from facet3d.core.errors import GeometryError
from facet3d.core.io.record import Geometry

__all__ = ["scene_to_geometry", "export_scene", "EXPORT_EXTS"]

EXPORT_EXTS = (".ply", ".glb", ".obj")


def export_scene(src, dest, opaque: bool = False, min_opacity: float = 0.5, to_scene: bool = False,
                 opacity_floor: float = 0.9999) -> dict:
    """Read the triangle-splat scene ``src`` (our scene PLY, or an official TS / TS+ output: model
    folder or ``.pt``, `official.load_official`), write it as a mesh to ``dest`` (one of `EXPORT_EXTS`).

    to_scene: write our scene PLY instead (`TriangleScene.save_ply`, every parameter kept;
    docs/triangle_splat_ply.md): ``dest`` must be a .ply (``opaque`` does not apply).
    returns dict(form, triangles, dropped, vertices, faces) for the command's summary line.
    """
    from pathlib import Path

    from facet3d.core.errors import UsageError
    from facet3d.core.io.api import check_input_path, write
    from facet3d.plugins.triangle_splatting.official import is_official_input, load_official
    from facet3d.plugins.triangle_splatting.scene import TriangleScene, is_scene_ply

    if is_official_input(src):
        scene = load_official(src, opacity_floor=opacity_floor)
    else:
        p = check_input_path(src)
        if not is_scene_ply(p):
            raise UsageError(f"{p}: not a triangle-splat scene (use facet3d convert for meshes)")
        scene = TriangleScene.load_ply(p)
    if to_scene:
        if Path(dest).suffix.lower() != ".ply":
            raise UsageError(f"{dest}: a scene is written as .ply (docs/triangle_splat_ply.md)")
        if opaque:
            raise UsageError("--opaque applies to mesh exports, not to --to-scene (which keeps every triangle)")
        scene.save_ply(dest)
        n_vert = scene.vertices.shape[0] if scene.form == "ts+" else 3 * len(scene)
        return dict(form=scene.form, triangles=len(scene), dropped=0, vertices=n_vert, faces=len(scene))
    geom = scene_to_geometry(scene, opaque=opaque, min_opacity=min_opacity)
    write(Path(dest), geom)
    return dict(form=scene.form, triangles=len(scene), dropped=len(scene) - geom.num_faces,
                vertices=geom.num_points, faces=geom.num_faces)


def scene_to_geometry(scene, opaque: bool = False, min_opacity: float = 0.5) -> Geometry:
    """A `TriangleScene` -> mesh `Geometry` with vertex colours (see the module docstring)."""
    from facet3d.plugins.triangle_splatting.scene import sh_to_rgb

    def np_(t) -> np.ndarray:
        return t.detach().cpu().numpy()

    rgb = np.clip(np_(sh_to_rgb(scene.sh_dc)).astype(np.float32), 0.0, 1.0)
    keep = None
    if opaque:
        keep = np_(scene.triangle_opacity()) >= min_opacity
    if scene.form == "ts+":
        verts = np_(scene.vertices).astype(np.float64)
        faces = np_(scene.faces).astype(np.int64).reshape(-1, 3)
        if keep is not None:
            faces = faces[keep]
        colors = rgb
    else:
        tri = np_(scene.triangles).astype(np.float64)
        if keep is not None:
            tri, rgb = tri[keep], rgb[keep]
        n = tri.shape[0]
        verts = tri.reshape(-1, 3)
        faces = np.arange(3 * n, dtype=np.int64).reshape(n, 3)
        colors = np.repeat(rgb, 3, axis=0)
    if len(faces) == 0:
        why = f" with opacity >= {min_opacity:g}" if opaque else ""
        raise GeometryError(f"the scene has no triangles{why}: nothing to export")
    return Geometry(verts, faces, colors=colors, meta={"source": f"triangle-splatting {scene.form}"})
