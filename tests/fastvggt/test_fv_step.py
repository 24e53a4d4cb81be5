"""Pipeline step `reconstruct` (fastvggt): the model set up once, then the files of ``facet3d reconstruct
PHOTOS --ckpt CKPT -o DIR`` byte for byte; refusals before any photo is read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facet3d.core.errors import UsageError
from facet3d.core.pipeline import Pipeline, available_steps, make_step, step_kwargs
from facet3d.core.specs import REQUIRED


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_reconstruct_is_registered_as_path_to_files():
    spec = available_steps()["reconstruct"]
    assert (spec.takes, spec.gives) == ("path", "files")
    assert spec.setup is not None and spec.check is not None and spec.resources.get("gpus") == 1
    assert {k: d for k, (_, d, _) in spec.params.items()} == {
        "ckpt": REQUIRED, "merge": 0.9, "preprocess": "crop", "conf_percentile": 50.0, "config": None, "device": "cpu"}


def test_reconstruct_step_writes_what_the_cli_writes(cli, tmp_path, tiny_ckpt, photos, monkeypatch):
    from facet3d.core.specs import resolve

    d = tmp_path / "photos"  # two photos: the least VGGT takes (keeps the test short)
    d.mkdir()
    for n in ("im0.png", "im2.png"):
        shutil.copy(photos[0] / n, d / n)
    ref = tmp_path / "cli"
    r = cli("reconstruct", str(d), "--ckpt", str(tiny_ckpt), "-o", str(ref), "--merge", "0.5",
            "--conf-percentile", "20", "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    cli_summary = json.loads(r.stdout)

    spec = available_steps()["reconstruct"]
    step = make_step("reconstruct", {"ckpt": str(tiny_ckpt), "merge": "0.5", "conf_percentile": "20"})
    kwargs = step_kwargs(spec, step)
    resolve(spec.check)(**kwargs)
    state = resolve(spec.setup)(**kwargs)  # what a worker does once
    assert not state.training and state.track_head is None

    def no_loading(*a, **k):
        raise AssertionError("the step loaded the checkpoint again")

    monkeypatch.setattr("facet3d.plugins.fastvggt.checkpoint.load_model", no_loading)
    out = tmp_path / "step"
    out.mkdir()  # the engine hands the step a fresh empty folder
    summary = resolve(spec.run)(d, out_dir=out, state=state, **kwargs)

    mine, theirs = _files(out), _files(ref)
    assert sorted(mine) == sorted(theirs)
    assert {"points.ply", "scene.glb", "cameras.json", "sparse/0/points3D.txt", "images/im0.png", "images/im2.png"} <= set(mine)
    for name in mine:
        assert mine[name] == theirs[name], name
    # the same summary, with the files named relative to the folder and no absolute "out"
    assert summary["written"] == ["images", "points.ply", "scene.glb", "cameras.json", "sparse/0"]
    assert cli_summary["written"] == [str(ref / w) for w in summary["written"]]
    timing = {"seconds", "total_seconds", "out", "written"}
    assert "out" not in summary
    assert {k: v for k, v in summary.items() if k not in timing} == {k: v for k, v in cli_summary.items() if k not in timing}
    assert summary["merge"]["ratio"] == 0.5 and summary["points"] > 0
    json.dumps(summary)  # JSON-able as is


def test_the_step_rechecks_its_parameters(tmp_path, tiny_ckpt, photos):
    from facet3d.plugins.fastvggt.steps import reconstruct

    with pytest.raises(UsageError, match="merge"):
        reconstruct(photos[0], out_dir=tmp_path / "o", ckpt=str(tiny_ckpt), merge=2.0)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("params, needle", [
    ({}, "needs parameter 'ckpt'"), ({"ckpt": "nope.safetensors"}, "nope.safetensors does not exist"),
    ({"merge": "1.5"}, "merge"), ({"merge": "-0.1"}, "merge"), ({"preprocess": "squash"}, "preprocess"),
    ({"conf_percentile": "101"}, "conf_percentile"), ({"device": "tpu"}, "device"),
])
def test_bad_parameters_are_refused_before_any_photo(params, needle, tiny_ckpt):
    params = {"ckpt": str(tiny_ckpt), **params} if "ckpt" not in params and params else params
    with pytest.raises(UsageError, match=needle):
        Pipeline([make_step("reconstruct", params)]).check()
