"""render() over camera batches, orbit cameras, the hard path with partial opacity, the plugin module."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from facet3d.kernels.trisplat.reference import rasterize_triangles
from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
from facet3d.plugins.triangle_splatting.scene import TriangleScene

D = torch.float64


def test_orbit_cameras_look_at_centre():
    cams = orbit_cameras((1.0, 2.0, 3.0), 4.0, 5, (48, 64), fov=60)
    assert len(cams) == 5 and cams.image_size.tolist() == [[48, 64]] * 5
    px, depth = cams.project(torch.tensor([[1.0, 2.0, 3.0]], dtype=D))
    assert torch.allclose(px[:, 0], torch.tensor([31.5, 23.5], dtype=D).expand(5, 2), atol=1e-9)
    assert torch.allclose(depth, torch.full((5, 1), 4.0, dtype=D))
    assert torch.allclose((cams.centers() - torch.tensor([1.0, 2.0, 3.0], dtype=D)).norm(dim=-1),
                          torch.full((5,), 4.0, dtype=D))
    assert torch.allclose(cams.fov_x(), torch.full((5,), np.radians(60), dtype=D))


def test_render_batches_cameras():
    tri = torch.tensor([[[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]]])
    scene = TriangleScene.from_triangles(tri, [[0.2, 0.4, 0.8]], opacity=0.9, sigma=1.0, sh_degree=2)
    cams = orbit_cameras((0, 0, 0), 5.0, 3, 32, fov=40, elevation=60)
    out = render(scene, cams, background=(1.0, 1.0, 1.0))
    assert out["rgb"].shape == (3, 32, 32, 3) and out["alpha"].shape == (3, 32, 32)
    assert out["max_weight"].shape == (3, 1) and bool((out["max_weight"] > 0.5).all())
    for b in range(3):  # each view equals rendering that camera alone
        one = render(scene, cams[b], background=(1.0, 1.0, 1.0))
        assert torch.allclose(one["rgb"][0], out["rgb"][b])
    # where alpha = 0 the background shows
    assert torch.allclose(out["rgb"][out["alpha"] == 0], torch.ones(3))
    # normals face the camera (negative z in camera coordinates)
    n = out["normal"][out["alpha"] > 0.5]
    assert bool((n[:, 2] < 0).all())


def test_hard_partial_opacity_matches_per_pixel_depth_sort():
    """Hard mode: per-pixel depth order (not centroid order), alpha = opacity, stop after T < 1e-4."""
    # two crossing triangles (each in front over part of the image) + one behind
    tris = torch.tensor([[[-2.0, -2.0, 3.0], [2.0, -2.0, 5.0], [0.0, 2.0, 4.0]],
                         [[-2.0, -1.5, 5.0], [2.0, -1.5, 3.0], [0.0, 2.2, 4.0]],
                         [[-3.0, -3.0, 6.0], [3.0, -3.0, 6.0], [0.0, 3.0, 6.0]]], dtype=D)
    K = torch.tensor([[6.0, 0, 11.5], [0, 6.0, 11.5], [0, 0, 1]], dtype=D)
    cols = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], dtype=D)
    op = torch.tensor([0.6, 0.7, 1.0], dtype=D)
    out = rasterize_triangles(tris, K, cols, op, 1.0, (24, 24), hard=True)
    uv = (tris / tris[..., 2:]) @ K.T
    rgb = np.zeros((24, 24, 3))
    for i in range(24):
        for j in range(24):
            hits = []
            for t in range(3):
                a, b, c = uv[t, :, :2].numpy()
                p = np.array([j, i], dtype=np.float64)
                cr = lambda o, q, r: (q[0] - o[0]) * (r[1] - o[1]) - (q[1] - o[1]) * (r[0] - o[0])  # noqa: E731
                area = cr(a, b, c)
                lam = np.array([cr(p, b, c), cr(a, p, c), cr(a, b, p)]) / area
                if np.all(lam >= 0):
                    z = 1.0 / np.sum(lam / tris[t, :, 2].numpy())
                    hits.append((z, t))
            T, col = 1.0, np.zeros(3)
            for z, t in sorted(hits):
                if T < 1e-4:
                    break
                col += cols[t].numpy() * float(op[t]) * T
                T *= 1 - float(op[t])
            rgb[i, j] = col
    np.testing.assert_allclose(out["rgb"].numpy(), rgb, atol=1e-9)
    # the crossing is visible: both red-dominant and green-dominant pixels exist
    assert (rgb[..., 0] > rgb[..., 1] + 0.1).sum() > 5 and (rgb[..., 1] > rgb[..., 0] + 0.1).sum() > 5


def test_plugin_module_does_not_import_torch():
    code = ("import sys, facet3d.plugins.triangle_splatting as p; "
            "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules)); "
            "print([b.name for b in p.facet3d_benchmarks()])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["False", "['ts-render']"]


def test_bench_smoke(shared_data):
    from facet3d.plugins.triangle_splatting.bench import ts_render

    res = ts_render(repeats=1, size=32, mesh=str(shared_data / "meshes" / "spot.obj"))
    names = [t.name for t in res.timings]
    assert res.baseline == "open3d raycast" and {"reference hard forward", "numba soft forward+backward"} <= set(names)
    assert sum("backward/forward" in n for n in res.notes) == 4 and any("compile" in n for n in res.notes)
    assert sum("the reference's forward speed" in n for n in res.notes) == 2


def test_bad_inputs_raise_usage_error():
    import pytest

    from facet3d.core.errors import UsageError

    v = torch.ones(2, 3, 3, dtype=D)
    K = torch.eye(3, dtype=D)
    ok = dict(colors=torch.ones(2, 3, dtype=D), opacity=torch.ones(2, dtype=D))
    with pytest.raises(UsageError):
        rasterize_triangles(torch.ones(2, 3, dtype=D), K, ok["colors"], ok["opacity"], 1.0, (8, 8))
    with pytest.raises(UsageError):
        rasterize_triangles(v, K, torch.ones(3, 3, dtype=D), ok["opacity"], 1.0, (8, 8))
    with pytest.raises(UsageError):
        rasterize_triangles(v, K, ok["colors"], torch.ones(3, dtype=D), 1.0, (8, 8))
    # empty scene renders the background
    out = rasterize_triangles(torch.zeros(0, 3, 3, dtype=D), K, torch.zeros(0, 3, dtype=D), torch.zeros(0, dtype=D),
                              1.0, (5, 7), background=torch.tensor([0.1, 0.2, 0.3], dtype=D))
    assert out["rgb"].shape == (5, 7, 3) and torch.allclose(out["rgb"], torch.tensor([0.1, 0.2, 0.3], dtype=D))
    assert float(out["alpha"].abs().max()) == 0


def test_render_memory_estimate_and_refusal(monkeypatch, tmp_path):
    import pytest

    from facet3d.core.errors import ResourceError
    from facet3d.plugins.triangle_splatting.render import check_render_memory, render_memory, write_views

    small, big = render_memory((100, 100)), render_memory((200, 200))
    per_px = (big - small) / (200 * 200 - 100 * 100)
    assert 250 < per_px < 600  # image buffers + ~2 covered pairs per pixel (see render.py)
    assert render_memory((100, 100), shading="lambert") > small
    assert render_memory((100, 100), n_triangles=10**6) > small + 10**8
    monkeypatch.setenv("FACET3D_MEMORY_LIMIT", "1G")
    with pytest.raises(ResourceError, match="20000x20000"):
        check_render_memory((20000, 20000))
    check_render_memory((64, 64))
    tri = torch.tensor([[[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]]])
    scene = TriangleScene.from_triangles(tri)
    cams = orbit_cameras((0, 0, 0), 5.0, 2, (20000, 20000))
    with pytest.raises(ResourceError):
        write_views(scene, cams, ["a", "b"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written
