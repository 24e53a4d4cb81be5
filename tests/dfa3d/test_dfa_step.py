"""Pipeline step `lift` (dfa3d): the files of ``facet3d lift SCENE --out DIR`` byte for byte (lift.json: the
same summary with the outputs named relative to the folder), and refusals before any scene is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dfa_scenes import plain_scene

from facet3d.core.errors import UsageError
from facet3d.core.pipeline import Pipeline, available_steps, make_step, step_kwargs


def _compare_folders(step_out: Path, ref_out: Path, summary: dict) -> dict:
    """Every file byte-identical but lift.json, which must be the reference's with relative outputs."""
    names = sorted(p.name for p in step_out.iterdir())
    assert names == sorted(p.name for p in ref_out.iterdir())
    for n in names:
        if n != "lift.json":
            assert (step_out / n).read_bytes() == (ref_out / n).read_bytes(), n
    ref = json.loads((ref_out / "lift.json").read_text())
    mine = json.loads((step_out / "lift.json").read_text())
    assert ref["outputs"] == {k: str(ref_out / v) for k, v in mine["outputs"].items()}
    assert {**mine, "outputs": None} == {**ref, "outputs": None}
    assert json.loads(json.dumps(summary)) == mine  # the returned summary is JSON-able as is, and is lift.json
    return mine


def test_lift_is_registered_as_path_to_files():
    spec = available_steps()["lift"]
    assert (spec.takes, spec.gives) == ("path", "files")
    assert spec.setup is None and spec.check is not None and spec.resources.get("gpus") == 1
    assert {k: d for k, (_, d, _) in spec.params.items()} == {
        "layout": "auto", "grid": None, "voxel": None, "bev_size": None, "at": None, "max_size": None,
        "depth": "auto", "device": "cpu"}


def test_lift_step_writes_what_the_cli_writes(cli, tmp_path):
    from facet3d.plugins.dfa3d.steps import lift

    root = plain_scene(tmp_path / "scene", cams=(("cam0", 0.0), ("cam1", 1.5)))
    ref = tmp_path / "cli"
    r = cli("lift", str(root), "-o", str(ref), "--grid", "-6,6,-4,4,8,12", "--voxel", "0.5", "--bev-size", "12",
            "--max-size", "24", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    # parameters as `-s lift:grid=...,voxel=...` gives them, with the declared defaults for the others
    step = make_step("lift", {"grid": "-6 6 -4 4 8 12", "voxel": "0.5", "bev_size": "12", "max_size": "24"})
    kwargs = step_kwargs(available_steps()["lift"], step)
    assert kwargs["grid"] == [-6.0, 6.0, -4.0, 4.0, 8.0, 12.0] and kwargs["device"] == "cpu"
    out = tmp_path / "step"
    out.mkdir()  # the engine hands the step a fresh empty folder
    summary = lift(root, out_dir=out, **kwargs)
    mine = _compare_folders(out, ref, summary)
    assert mine["mode"] == "grid" and mine["grid"]["shape"] == [24, 16, 8] and mine["seen_voxels"] > 0
    assert mine["outputs"]["voxels"] == "voxels.ply" and mine["max_size"] == 24


def test_lift_step_onto_the_lidar_matches_run_lift(tmp_path):
    from facet3d.plugins.dfa3d.lift import LiftOptions, run_lift
    from facet3d.plugins.dfa3d.scenes import load_scene
    from facet3d.plugins.dfa3d.steps import lift

    root = plain_scene(tmp_path / "scene")
    ref = tmp_path / "lib"
    run_lift(load_scene(root), ref, LiftOptions(depth="maps"), at="lidar")  # the CLI's defaults otherwise
    out = tmp_path / "step"
    summary = lift(root, out_dir=out, at="lidar", depth="maps", layout="plain")
    mine = _compare_folders(out, ref, summary)
    assert mine["mode"] == "points" and mine["depth"] == "maps" and mine["seen_points"] > 0


@pytest.mark.parametrize("params, needle", [
    ({"layout": "waymo"}, "layout"), ({"at": "lidar", "voxel": "0.5"}, "at"), ({"at": "nope.ply"}, "at nope.ply"),
    ({"grid": "0 1 0 1 0"}, "grid"), ({"voxel": "-1"}, "voxel"), ({"bev_size": "0"}, "bev_size"),
    ({"max_size": "4"}, "max_size"), ({"depth": "radar"}, "depth"), ({"device": "gpu"}, "device"),
])
def test_bad_parameters_are_refused_before_any_scene(params, needle):
    with pytest.raises(UsageError, match=needle):
        Pipeline([make_step("lift", params)]).check()


def test_a_folder_that_is_no_scene_fails_in_one_line(tmp_path):
    from facet3d.plugins.dfa3d.steps import lift

    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="not a scene facet3d knows") as e:
        lift(tmp_path / "empty", out_dir=tmp_path / "out")
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()
