"""Regenerate sample_data/multiview/bunny_blender: a small NeRF-synthetic-style (Blender) dataset.

The Stanford bunny from sample_data/meshes with a smooth procedural vertex colour, rendered by
facet3d's hard rasterizer at 4x the size and box-filtered (anti-aliased like a photo) into RGBA
PNGs on two camera rings, plus ``transforms_train.json`` (OpenGL camera-to-world, camera_angle_x).
Used by ``facet3d demo`` (a short ``fit``) and the tests.

    .venv/bin/python scripts/make_sample_multiview.py [--size 64] [--views 32]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facet3d.core.io.api import read
from facet3d.core.structures.cameras import Cameras
from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
from facet3d.plugins.triangle_splatting.scene import TriangleScene

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--views", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "sample_data" / "multiview" / "bunny_blender"))
    a = ap.parse_args()
    g = read(ROOT / "sample_data" / "meshes" / "stanford-bunny.obj")
    v = np.asarray(g.vertices, dtype=np.float64)
    v = (v - (v.min(0) + v.max(0)) / 2) / (np.linalg.norm(v.max(0) - v.min(0)) / 2)  # unit bounding sphere
    v = v[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])  # y-up scan -> z-up like Blender scenes
    col = 0.5 + 0.35 * np.stack([np.sin(4 * v[:, 0] + 0.5), np.cos(3 * v[:, 2]), np.sin(5 * v[:, 1] + 1.0)], 1)
    scene = TriangleScene.from_mesh(v, np.asarray(g.faces), col)
    s, n = a.size, a.views // 2
    rings = [orbit_cameras((0, 0, 0), 3.0, n, s, fov=45, elevation=el, start_azimuth=az, dtype=torch.float64)
             for el, az in ((30.0, 0.0), (-10.0, 180.0 / n))]
    cams = Cameras(torch.cat([c.K for c in rings]), torch.cat([c.R for c in rings]), torch.cat([c.t for c in rings]),
                   (s, s), dtype=torch.float64)
    big = Cameras(cams.K.clone(), cams.R, cams.t, (4 * s, 4 * s), dtype=torch.float64)
    big.K[:, :2, :3] *= 4
    big.K[:, :2, 2] += 1.5  # integer pixel centres: u' = 4 (u + 0.5) - 0.5
    out = Path(a.out)
    (out / "train").mkdir(parents=True, exist_ok=True)
    frames = []
    c2w = cams.to_blender()
    with torch.no_grad():
        for i in range(len(cams)):
            o = render(scene, big[i], hard=True)
            rgba = torch.cat([o["rgb"][0], o["alpha"][0][..., None]], -1).permute(2, 0, 1)[None]
            rgba = torch.nn.functional.avg_pool2d(rgba, 4)[0].permute(1, 2, 0)
            # straight (not premultiplied) alpha, as PNG stores it
            a_ = rgba[..., 3:].clamp_min(1e-8)
            rgba = torch.cat([torch.where(rgba[..., 3:] > 0, rgba[..., :3] / a_, rgba[..., :3]), rgba[..., 3:]], -1)
            Image.fromarray((rgba.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8), "RGBA").save(out / "train" / f"r_{i}.png")
            frames.append(dict(file_path=f"./train/r_{i}", transform_matrix=c2w[i].tolist()))
    meta = dict(camera_angle_x=float(cams.fov_x()[0]), frames=frames)
    (out / "transforms_train.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {len(frames)} views of {s}x{s} to {out}")


if __name__ == "__main__":
    main()
