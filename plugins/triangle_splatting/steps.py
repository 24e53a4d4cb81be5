"""Pipeline step `render` for ``facet3d batch``: orbit views of a mesh, as ``facet3d render MESH --orbit N``.

A thin adapter over `facet3d.plugins.triangle_splatting.render` (`frame_orbit`, `write_views`): the
folder holds ``view_000_rgb.png``... (+ ``view_000_depth.npy`` with ``save_depth``) and
``cameras.json``, byte for byte what ``facet3d render MESH --orbit N --size WxH --up Z --fov F
--shading S -o DIR`` writes. `check` imports no torch (it runs before any file is read).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from facet3d.core.errors import UsageError
from facet3d.core.values import parse_axis, parse_size

__all__ = ["check_render", "render"]

# = render.SHADINGS (the CLI's --shading choices), kept here so that `check_render` imports no torch
_SHADINGS = ("lambert", "normal", "flat")


def _size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(H, W)`` (as the CLI's ``--size``)."""
    return parse_size(text, "render: size")


def _up(text: str) -> tuple[float, float, float]:
    """``x|y|z`` with an optional sign -> the unit axis (as the CLI's ``--up``)."""
    return parse_axis(text, "render: up")


def check_render(views: int = 8, size: str = "256x256", up: str = "z", fov: float = 60.0, shading: str = "lambert",
                 **_: Any) -> None:
    """Refuse parameters that can never work (before any file is read)."""
    if views is None or int(views) < 1:
        raise UsageError(f"render: views must be at least 1, got {views}")
    _size(size)
    _up(up)
    if fov is None or not math.isfinite(fov) or not 0.0 < fov < 180.0:
        raise UsageError(f"render: fov {fov}: expected degrees in (0, 180)")
    if shading not in _SHADINGS:
        raise UsageError(f"render: shading {shading!r}: expected one of {', '.join(_SHADINGS)}")


def render(geom: Any, out_dir: Path, views: int = 8, size: str = "256x256", up: str = "z", fov: float = 60.0,
           shading: str = "lambert", save_depth: bool = False) -> dict[str, Any]:
    """Write ``views`` orbit views of the mesh ``geom`` (+ cameras.json) into ``out_dir`` -> a summary."""
    check_render(views, size, up, fov, shading)
    from facet3d.plugins.triangle_splatting.render import auto_hard, frame_orbit, scene_from_mesh, write_views

    hw = _size(size)
    scene = scene_from_mesh(geom, str(geom.meta.get("path", "the input")))
    cams = frame_orbit(scene, int(views), hw, fov=float(fov), up=_up(up))
    hard = auto_hard(scene, True)
    written = write_views(scene, cams, cams.names, Path(out_dir), hard=hard, save_depth=bool(save_depth),
                          save_cameras=True, shading=shading)
    return {"views": len(cams), "size": [hw[1], hw[0]], "shading": shading, "triangles": len(scene),
            "files": len(written)}
