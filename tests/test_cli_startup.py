"""Start-up stays light: --help, --version, plugins and info (for light formats) never import torch/open3d."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

PROBE = r"""
import sys
from facet3d.cli.main import run
try:
    run(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("torch", "open3d", "triton", "scipy") if m in sys.modules)
sys.stderr.write("\nHEAVY=" + ",".join(heavy) + f"\nCODE={code}\n")
"""


def _probe(*args: str) -> tuple[list[str], int, str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                       env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    lines = r.stderr.strip().splitlines()
    heavy = lines[-2].removeprefix("HEAVY=")
    return [h for h in heavy.split(",") if h], int(lines[-1].removeprefix("CODE=")), r.stdout


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["plugins"], ["plugins", "--json"], ["info", "--help"], ["bench"]])
def test_light_commands_import_no_torch_or_open3d(args):
    heavy, code, _ = _probe(*args)
    assert code == 0
    assert "torch" not in heavy and "open3d" not in heavy, heavy


def _write_light_files(d):
    import laspy
    import trimesh

    rng = np.random.default_rng(0)
    pts = rng.random((50, 3))
    mesh = trimesh.creation.icosphere(subdivisions=1)
    files = {}
    for ext in ("ply", "obj", "off", "stl"):
        files[ext] = d / f"m.{ext}"
        mesh.export(files[ext])
    files["xyz"] = d / "p.xyz"
    np.savetxt(files["xyz"], pts)
    files["npy"] = d / "p.npy"
    np.save(files["npy"], pts)
    files["las"] = d / "p.las"
    las = laspy.create(point_format=3, file_version="1.2")
    las.header.scales = [0.001] * 3
    las.x, las.y, las.z = pts[:, 0], pts[:, 1], pts[:, 2]
    las.write(files["las"])
    return files


def test_info_on_light_formats_imports_no_torch_or_open3d(tmp_path):
    files = _write_light_files(tmp_path)
    heavy, code, stdout = _probe("info", "--json", *map(str, files.values()))
    assert code == 0, stdout
    assert "torch" not in heavy and "open3d" not in heavy, heavy
    summaries = json.loads(stdout)
    assert [s["format"] for s in summaries] == ["ply", "obj", "off", "stl", "xyz", "npy", "las"]
