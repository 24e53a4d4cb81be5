"""Pipeline step `render` (triangle_splatting): the files of ``facet3d render MESH --orbit N``, byte for byte;
refusals before any file is read; one run through the batch engine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from facet3d.core.errors import UsageError
from facet3d.core.io.api import read
from facet3d.core.io.record import Geometry
from facet3d.core.pipeline import Pipeline, available_steps, make_step

FUZE = "meshes/fuze.obj"  # has vertex normals: the shading interpolates them


def _same_files(a, b) -> list[str]:
    """The file names of folders a and b, which must hold the same names with the same bytes."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    return names


@pytest.fixture(scope="module")
def cli_views(tmp_path_factory, sample_data):
    """``facet3d render fuze.obj --orbit 2 --size 64x48`` (the CLI's defaults otherwise)."""
    out = tmp_path_factory.mktemp("cli") / "views"
    r = subprocess.run([sys.executable, "-m", "facet3d", "render", str(sample_data / FUZE), "--orbit", "2",
                        "--size", "64x48", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_render_is_registered_as_geometry_to_files():
    spec = available_steps()["render"]
    assert (spec.takes, spec.gives) == ("geometry", "files")
    assert {k: d for k, (_, d, _) in spec.params.items()} == {
        "views": 8, "size": "256x256", "up": "z", "fov": 60.0, "shading": "lambert", "save_depth": False}
    from facet3d.plugins.triangle_splatting.render import SHADINGS
    from facet3d.plugins.triangle_splatting.steps import _SHADINGS

    assert _SHADINGS == SHADINGS  # check's copy (no torch import) is the renderer's list


def test_render_step_writes_what_the_cli_writes(sample_data, tmp_path, cli_views):
    from facet3d.plugins.triangle_splatting.steps import render

    out = tmp_path / "step"
    out.mkdir()  # the engine hands the step a fresh empty folder
    summary = render(read(sample_data / FUZE), out_dir=out, views=2, size="64x48")
    names = _same_files(out, cli_views)
    assert names == ["cameras.json", "view_000_rgb.png", "view_001_rgb.png"]
    assert summary == {"views": 2, "size": [64, 48], "shading": "lambert", "triangles": summary["triangles"],
                       "files": 3}
    assert summary["triangles"] == read(sample_data / FUZE).num_faces
    json.dumps(summary)  # JSON-able as is


def test_render_step_options_match_the_cli_options(cli, sample_data, tmp_path):
    from facet3d.plugins.triangle_splatting.steps import render

    ref = tmp_path / "cli"
    r = cli("render", str(sample_data / FUZE), "--orbit", "3", "--size", "40x56", "--up", "-y", "--fov", "45",
            "--shading", "normal", "--save-depth", "-o", str(ref))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "step"
    render(read(sample_data / FUZE), out_dir=out, views=3, size="40x56", up="-y", fov=45.0, shading="normal",
           save_depth=True)
    names = _same_files(out, ref)
    assert len(names) == 7 and "view_002_depth.npy" in names


@pytest.mark.parametrize("params, needle", [
    ({"size": "64by48"}, "size"), ({"size": "0x48"}, "size"), ({"up": "w"}, "up"), ({"shading": "phong"}, "shading"),
    ({"views": "0"}, "views"), ({"fov": "180"}, "fov"), ({"fov": "0"}, "fov"),
])
def test_bad_parameters_are_refused_before_any_file(params, needle):
    pipeline = Pipeline([make_step("render", params)])
    with pytest.raises(UsageError, match=needle):
        pipeline.check()


def test_a_point_cloud_is_refused_in_one_line(tmp_path):
    from facet3d.plugins.triangle_splatting.steps import render

    cloud = Geometry(np.random.default_rng(0).normal(size=(50, 3)), meta={"path": "cloud.ply"})
    with pytest.raises(UsageError, match=r"^cloud.ply: a point cloud without faces") as e:
        render(cloud, out_dir=tmp_path, views=1, size="8x8")
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_render_through_the_batch_engine(sample_data, tmp_path, cli_views):
    from facet3d.core.batch import REPORT, BatchOptions, plan_batch, run_batch

    src = tmp_path / "in" / "fuze.obj"
    src.parent.mkdir()
    shutil.copy(sample_data / FUZE, src)
    (tmp_path / "in" / "cloud.xyz").write_text("0 0 0\n1 0 0\n0 1 0\n")  # a point cloud: this file fails
    opts = BatchOptions(out_dir=tmp_path / "out", workers=1)
    plan = plan_batch(Pipeline([make_step("render", {"views": "2", "size": "64x48"})]), [str(tmp_path / "in")], opts)
    result = run_batch(plan, opts)
    report = json.loads((tmp_path / "out" / REPORT).read_text())
    assert report == result.report
    assert report["totals"]["files"] == 2 and report["totals"]["ok"] == 1 and result.failed == 1
    entries = {e["input"].rsplit("/", 1)[-1]: e for e in report["files"]}
    ok = entries["fuze.obj"]
    assert ok["status"] == "ok" and ok["output"] == str(tmp_path / "out" / "fuze")
    assert ok["summary"] == {"views": 2, "size": [64, 48], "shading": "lambert",
                             "triangles": read(src).num_faces, "files": 3}
    _same_files(tmp_path / "out" / "fuze", cli_views)
    bad = entries["cloud.xyz"]
    assert bad["status"] == "failed" and "point cloud without faces" in bad["error"] and "\n" not in bad["error"]
    # nothing else in the output folder: no half-written folder of the failed file
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([REPORT, "fuze"])
