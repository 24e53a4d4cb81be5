"""`facet3d bench ts-render`: the torch reference renderer beside open3d's ray caster."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facet3d.core.bench import BenchResult, Timing, time_repeats

_BUNNY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meshes" / "stanford-bunny.obj"


def _mesh(path):
    from facet3d.core.io.api import read

    if path is not None:
        return read(path)
    if _BUNNY.is_file():
        return read(_BUNNY)
    import trimesh  # fallback: an icosphere of similar size

    m = trimesh.creation.icosphere(subdivisions=6)
    from facet3d.core.io.record import Geometry

    return Geometry(np.asarray(m.vertices), np.asarray(m.faces))


def ts_render(repeats: int = 3, device: str = "cpu", size: int = 512, mesh: str | None = None) -> BenchResult:
    """Render one view of the Stanford bunny (``size`` x ``size``) with the reference rasterizer
    (forward, and forward + backward of the sum of rgb and depth w.r.t. vertices and colours) vs
    open3d ``RaycastingScene.cast_rays`` through the same pixel centres."""
    import torch

    from facet3d.core.ops.raycast import MeshRaycaster, pixel_centres
    from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
    from facet3d.plugins.triangle_splatting.scene import TriangleScene

    geom = _mesh(mesh)
    scene = TriangleScene.from_geometry(geom, dtype=torch.float32).to(device)
    lo, hi = geom.vertices.min(0), geom.vertices.max(0)
    cams = orbit_cameras((lo + hi) / 2, 1.3 * float(np.linalg.norm(hi - lo)), 1, size, fov=40, up=(0, 1, 0))
    sync = torch.cuda.synchronize if device.startswith("cuda") else None

    # soft: upstream culls triangles with inradius < 1 px, which removes most of a dense mesh's
    # triangles at this size; the culls are switched off so the soft path does comparable work
    modes = {"hard": dict(hard=True), "soft": dict(hard=False, min_size=0.0, min_inradius=0.0)}

    def fwd(kw):
        with torch.no_grad():
            render(scene, cams, **kw)

    def fwd_bwd(kw):
        s = scene.to()
        s.vertices = s.vertices.detach().requires_grad_()
        s.sh_dc = s.sh_dc.detach().requires_grad_()
        s.opacity = s.opacity.detach().requires_grad_()
        o = render(s, cams, **kw)
        (o["rgb"].sum() + o["depth"].sum() + o["alpha"].sum()).backward()

    rows, notes = [], []
    for name, kw in modes.items():
        f = Timing(f"reference {name} forward", time_repeats(lambda: fwd(kw), repeats, sync=sync))
        fb = Timing(f"reference {name} forward+backward", time_repeats(lambda: fwd_bwd(kw), repeats, sync=sync))
        rows += [f, fb]
        notes.append(f"{name}: backward/forward time ratio {(fb.median - f.median) / f.median:.2f}")

    # the rays are built once so only open3d's cast is timed
    caster = MeshRaycaster(geom.vertices, geom.faces)
    o, d = cams[0].rays(pixel_centres(size, size))
    t_o3d = time_repeats(lambda: caster.cast_rays(o[0], d[0]), repeats)

    res = BenchResult("ts-render", "open3d raycast", [Timing("open3d raycast", t_o3d), *rows],
                      params={"size": size, "triangles": len(scene), "device": device}, notes=notes)
    return res
