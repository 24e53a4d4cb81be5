"""Benchmarks of the core: file reading against open3d and CLI start-up against bare Python."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from facet3d.core.bench import BenchResult, Timing, time_repeats


def _write_cloud(path: Path, n: int) -> None:
    """A binary PLY of `n` random points with normals and colours, written by open3d."""
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    rng = np.random.default_rng(0)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rng.random((n, 3))))
    pcd.normals = o3d.utility.Vector3dVector(rng.standard_normal((n, 3)))
    pcd.colors = o3d.utility.Vector3dVector(rng.random((n, 3)))
    o3d.io.write_point_cloud(str(path), pcd, write_ascii=False)


def read_ply(repeats: int = 5, device: str = "cpu", n: int = 1_000_000) -> BenchResult:
    """In one process: read a binary PLY of `n` points and summarise it, vs open3d reading it."""
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    from facet3d.core.io.api import read
    from facet3d.core.summary import summarize

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cloud.ply"
        _write_cloud(path, n)
        ours = time_repeats(lambda: summarize(read(path)), repeats)
        theirs = time_repeats(lambda: o3d.io.read_point_cloud(str(path)), repeats)
    return BenchResult("read-ply", "open3d", [Timing("open3d", theirs), Timing("facet3d read+summary", ours)],
                       params={"n": n, "properties": "xyz+normals+rgb"})


def info_ply(repeats: int = 5, device: str = "cpu", n: int = 1_000_000) -> BenchResult:
    """What a user waits for: `facet3d info cloud.ply` vs a Python process reading it with open3d."""

    def proc(args: list[str]) -> None:
        subprocess.run([sys.executable, *args], check=True, capture_output=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cloud.ply"
        _write_cloud(path, n)
        o3d_cmd = ["-c", f"import open3d as o3d; o3d.io.read_point_cloud({str(path)!r})"]
        theirs = time_repeats(lambda: proc(o3d_cmd), repeats)
        ours = time_repeats(lambda: proc(["-m", "facet3d", "info", str(path)]), repeats)
    res = BenchResult("info-ply", "python + open3d.io.read_point_cloud",
                      [Timing("python + open3d.io.read_point_cloud", theirs), Timing("facet3d info", ours)],
                      params={"n": n, "properties": "xyz+normals+rgb"})
    res.notes.append(f"facet3d info / open3d = {Timing('', ours).median / Timing('', theirs).median:.2f} (target <= 1.2)")
    return res


def cli_startup(repeats: int = 5, device: str = "cpu") -> BenchResult:
    """Process wall time of `facet3d --help` beside `python -c pass` (the floor)."""

    def proc(args: list[str]) -> None:
        subprocess.run([sys.executable, *args], check=True, capture_output=True)

    base = time_repeats(lambda: proc(["-c", "pass"]), repeats)
    helps = time_repeats(lambda: proc(["-m", "facet3d", "--help"]), repeats)
    res = BenchResult("cli-startup", "python -c pass", [Timing("python -c pass", base), Timing("facet3d --help", helps)])
    res.notes.append(f"facet3d --help median {Timing('', helps).median:.3f} s (target < 0.3 s)")
    return res
