"""Synthetic scenes for the dfa3d tests: cameras looking at a fronto-parallel plane, written in the
plain layout (cameras.json + images/ + optional depth/ and lidar.ply)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PLANE_Z = 10.0
W, H, F = 48, 32, 20.0


def camera(name: str, centre_x: float = 0.0, width: int = W, height: int = H) -> dict:
    """A camera at (centre_x, 0, 0) looking along +z (R = I), f = F, principal point at the image centre."""
    K = [[F, 0.0, (width - 1) / 2], [0.0, F, (height - 1) / 2], [0.0, 0.0, 1.0]]
    return {"name": name, "K": K, "R": np.eye(3).tolist(), "t": [-centre_x, 0.0, 0.0], "width": width, "height": height}


def colours(seed: int = 0, width: int = W, height: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def plain_scene(root: Path, cams=(("cam0", 0.0),), depth: bool = True, lidar: bool = True, seed: int = 0,
                sizes: dict | None = None) -> Path:
    """Write a plain-layout scene; every camera sees the plane z = PLANE_Z (depth PLANE_Z everywhere)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    entries = []
    for i, (name, cx) in enumerate(cams):
        entries.append(camera(name, cx))
        w, h = (sizes or {}).get(name, (W, H))
        Image.fromarray(colours(seed + i, w, h)).save(root / "images" / f"{name}.png")
        if depth:
            (root / "depth").mkdir(exist_ok=True)
            np.save(root / "depth" / f"{name}.npy", np.full((h, w), PLANE_Z, np.float32))
    (root / "cameras.json").write_text(json.dumps({"format": "facet3d.cameras", "version": 1, "cameras": entries}))
    if lidar:
        from facet3d.core.io.api import write
        from facet3d.core.io.record import Geometry

        xs, ys = np.meshgrid(np.linspace(-12, 12, 97), np.linspace(-8, 8, 65))
        pts = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, PLANE_Z)], 1)
        write(root / "lidar.ply", Geometry(pts))
    return root


def pixel_points(u: np.ndarray, v: np.ndarray, depth: float = PLANE_Z, centre_x: float = 0.0) -> np.ndarray:
    """World points seen by a scene camera at pixel (u, v) and depth ``depth``."""
    cx, cy = (W - 1) / 2, (H - 1) / 2
    return np.stack([(u - cx) / F * depth + centre_x, (v - cy) / F * depth, np.full(np.shape(u), depth)], -1)
