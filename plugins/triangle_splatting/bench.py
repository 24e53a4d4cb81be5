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


def _backends(device: str, backends: str | None) -> list[str]:
    if backends:
        return [b.strip() for b in backends.split(",") if b.strip()]
    return ["triton", "torch"] if device.startswith("cuda") else ["numba", "torch"]


def ts_render(repeats: int = 3, device: str = "cpu", size: int = 512, mesh: str | None = None,
              backends: str | None = None) -> BenchResult:
    """Render one view of the Stanford bunny (``size`` x ``size``) with each rasterizer backend
    (forward, and forward + backward of the sum of rgb, depth and alpha w.r.t. vertices, colours and
    opacity; hard and soft) vs open3d ``RaycastingScene.cast_rays`` through the same pixel centres.

    backends: comma-separated (default: numba,torch on CPU; triton,torch on CUDA). Notes: each
    backend's backward/forward ratio, each backend's speed-up over the torch reference, and the
    first-call compile (or on-disk cache load) time of the numba kernels.
    """
    import torch

    from facet3d.core.ops.raycast import MeshRaycaster, pixel_centres
    from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
    from facet3d.plugins.triangle_splatting.scene import TriangleScene

    names = _backends(device, backends)
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

    rows, notes, med = [], [], {}
    compile_note = None
    for be in names:
        if be == "numba":
            from facet3d.kernels.trisplat.numba_impl import warm_up

            rep = warm_up()
            compile_note = (f"numba first call (compile, or load from the on-disk cache): "
                            f"{sum(r['seconds'] for r in rep.values()):.2f} s over {len(rep)} kernels, "
                            f"{'all' if all(r['from_cache'] for r in rep.values()) else 'not all'} from the cache")
        label = "reference" if be == "torch" else be
        for name, kw in modes.items():
            kw = dict(kw, backend=be)
            f = Timing(f"{label} {name} forward", time_repeats(lambda: fwd(kw), repeats, sync=sync))
            fb = Timing(f"{label} {name} forward+backward", time_repeats(lambda: fwd_bwd(kw), repeats, sync=sync))
            rows += [f, fb]
            med[be, name] = (f.median, fb.median)
            notes.append(f"{label} {name}: backward/forward time ratio {(fb.median - f.median) / f.median:.2f}")
    for be in names:
        if be != "torch" and "torch" in names:
            for name in modes:
                (f0, fb0), (f1, fb1) = med["torch", name], med[be, name]
                notes.append(f"{be} {name}: {f0 / f1:.1f}x the reference's forward speed, "
                             f"{fb0 / fb1:.1f}x its forward+backward speed")
    if compile_note:
        notes.append(compile_note)

    # the rays are built once so only open3d's cast is timed
    caster = MeshRaycaster(geom.vertices, geom.faces)
    o, d = cams[0].rays(pixel_centres(size, size))
    t_o3d = time_repeats(lambda: caster.cast_rays(o[0], d[0]), repeats)

    res = BenchResult("ts-render", "open3d raycast", [Timing("open3d raycast", t_o3d), *rows],
                      params={"size": size, "triangles": len(scene), "device": device, "backends": ",".join(names)},
                      notes=notes)
    return res
