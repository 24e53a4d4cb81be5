"""`facet3d lift` end to end (subprocess): a run with --json, and bad input ending in one line."""

from __future__ import annotations

import json
import subprocess
import sys

from dfa_scenes import plain_scene


def _one_error_line(r) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_registering_the_plugin_imports_no_torch():
    code = ("import sys; from facet3d.cli.main import build_app; build_app(); "
            "from facet3d.core.plugins import get_plugins; print('dfa3d' in get_plugins().infos, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]


def test_lift_json_summary_and_outputs(cli, tmp_path):
    root = plain_scene(tmp_path / "s")
    out = tmp_path / "o"
    r = cli("lift", str(root), "-o", str(out), "--grid", "-6,6,-4,4,8,12", "--voxel", "0.5", "--bev-size", "12", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["layout"] == "plain" and s["depth"] == "lidar" and s["grid"]["shape"] == [24, 16, 8]
    assert s["bev"]["shape"] == [12, 12] and (out / "bev.png").is_file() and (out / "voxels.ply").is_file()
    assert "Traceback" not in r.stderr


def test_bad_input_is_one_line(cli, tmp_path):
    root = plain_scene(tmp_path / "s")
    out = tmp_path / "o"
    line = _one_error_line(cli("lift", str(root), "-o", str(out), "--grid", "0,1,0,1,0,0.2", "--voxel", "0.5"))
    assert "no cells" in line
    line = _one_error_line(cli("lift", str(root), "-o", str(out), "--voxel", "-1"))
    assert "--voxel" in line
    line = _one_error_line(cli("lift", str(root), "-o", str(out), "--at", "lidar", "--grid", "0,1,0,1,0,1"))
    assert "--at" in line
    (root / "images" / "cam0.png").unlink()
    line = _one_error_line(cli("lift", str(root), "-o", str(out)))
    assert "missing camera image" in line
    assert not out.exists()  # a failed run leaves no output folder
