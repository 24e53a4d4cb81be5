"""Time `facet3d view`'s exact triangle-splat view: one frame as the viewer renders it for a browser camera.

    .venv/bin/python scripts/view_exact_timing.py [SCENE.ply ...] [--height 360] [--repeats 5]

Without scenes, random TS scenes of 10k, 50k and 200k soft triangles. Prints the median per frame and
the frame rate at a 16:9 view ``--height`` pixels high (the viewer's default, --exact-height 360).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch


def _camera(vertices: np.ndarray, height: int):
    from facet3d.core.structures.cameras import look_at_R
    from facet3d.plugins.viewer.server import _quat_wxyz, start_view, viser_camera

    c, eye = start_view(np.percentile(vertices, 1, 0), np.percentile(vertices, 99, 0))  # where a browser starts
    R = look_at_R(eye, c, (0, 0, 1)).numpy()
    return viser_camera(_quat_wxyz(R.T), eye, math.radians(60), 16 / 9, height)


def _time(name: str, layer, height: int, repeats: int) -> None:
    cam = _camera(layer.preview.vertices, height)
    layer.render(cam)  # warm-up (numba compiles once)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        rgb, _ = layer.render(cam)
        ts.append(time.perf_counter() - t)
    med = float(np.median(ts))
    print(f"{name}: {rgb.shape[1]}x{rgb.shape[0]}, {(rgb < 250).any(-1).mean():.0%} of the view covered, "
          f"median {med * 1000:.0f} ms per frame ({1 / med:.1f} fps)")


def main() -> None:
    from facet3d.plugins.triangle_splatting.scene import TriangleScene
    from facet3d.plugins.triangle_splatting.view import splat_layer

    ap = argparse.ArgumentParser()
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    for path in a.scenes:
        sc = TriangleScene.load_ply(path)
        _time(f"{path} ({sc.form}, {len(sc):,} triangles)", splat_layer(sc, "s", path), a.height, a.repeats)
    if not a.scenes:
        g = torch.Generator().manual_seed(0)
        for n in (10_000, 50_000, 200_000):
            tri = torch.rand(n, 1, 3, generator=g) + 0.03 * torch.randn(n, 3, 3, generator=g)
            sc = TriangleScene.from_triangles(tri, torch.rand(n, 3, generator=g), opacity=0.7, sigma=0.8)
            _time(f"random TS, {n:,} triangles", splat_layer(sc, "s", "random"), a.height, a.repeats)


if __name__ == "__main__":
    main()
