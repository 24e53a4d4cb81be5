"""The `classify` and `segment` pipeline steps give what `classify_file` / `segment_file` give, with
the checkpoint set up once (`setup`), and their `check` refuses a missing checkpoint up front."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.errors import UsageError
from facet3d.core.io.api import read
from facet3d.core.pipeline import Pipeline, make_step, step_kwargs


def _state_and_kwargs(name: str, params: dict):
    from facet3d.core.pipeline import available_steps
    from facet3d.core.specs import resolve

    spec = available_steps()[name]
    kwargs = step_kwargs(spec, make_step(name, params))
    return spec, resolve(spec.setup)(**kwargs), kwargs


def test_segment_step_matches_segment_file(sample_data, tmp_path):
    from facet3d.core.specs import resolve
    from facet3d.plugins.risurconv.checkpoint import load_for_task
    from facet3d.plugins.risurconv.predict import seg_mapping, segment_file

    ckpt = sample_data / "risurconv" / "segmenter_synthetic_tiny.safetensors"
    mesh = sample_data / "meshes" / "fuze.obj"
    spec, state, kwargs = _state_and_kwargs("segment", {"ckpt": str(ckpt), "device": "cpu"})
    assert (spec.takes, spec.gives) == ("geometry", "geometry")
    labelled = resolve(spec.run)(read(mesh), state=state, **kwargs)

    model, meta = load_for_task(ckpt, "segmentation")
    cats, cp, names = seg_mapping(meta)
    summary = segment_file(model, mesh, tmp_path / "direct.ply", meta["num_points"], cats, cp, names)
    direct = read(tmp_path / "direct.ply")
    np.testing.assert_array_equal(labelled.attributes["part"], direct.attributes["part"])
    np.testing.assert_array_equal(labelled.faces, direct.faces)
    assert summary["points"] == labelled.num_points == read(mesh).num_points


def test_classify_step_is_a_row_and_checks_its_checkpoint(sample_data, tmp_path):
    from facet3d.core.specs import resolve
    from facet3d.plugins.risurconv.checkpoint import load_for_task
    from facet3d.plugins.risurconv.predict import classify_file

    ckpt = sample_data / "risurconv" / "classifier_synthetic_tiny.safetensors"
    spec, state, kwargs = _state_and_kwargs("classify", {"ckpt": str(ckpt), "top_k": "4", "device": "cpu"})
    assert (spec.takes, spec.gives, spec.resources) == ("geometry", "row", {"cpus": 1, "gpus": 1})
    mesh = sample_data / "meshes" / "stanford-bunny.obj"
    row = resolve(spec.run)(read(mesh), state=state, **kwargs)
    model, meta = load_for_task(ckpt, "classification")
    direct = classify_file(model, mesh, meta["num_points"], list(meta["class_names"]), 4)
    assert row == {k: v for k, v in direct.items() if k != "file"}
    for bad, needle in (({"ckpt": str(tmp_path / "none.safetensors")}, "does not exist"),
                        ({"ckpt": str(ckpt), "device": "tpu"}, "device must be")):
        with pytest.raises(UsageError, match=needle):
            Pipeline([make_step("classify", bad)]).check()
