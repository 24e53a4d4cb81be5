"""RISurConv commands end to end (subprocess CLI): classify, segment, eval, train/resume, demo, bench, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

CLS = "risurconv/classifier_synthetic_tiny.safetensors"
SEG = "risurconv/segmenter_synthetic_tiny.safetensors"


def _one_line_errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if "error:" in ln]


def test_plugin_registers_without_torch():
    code = ("import sys; from facet3d.core.plugins import get_plugins; p = get_plugins(); "
            "print(sorted(n for n in p.models() if n.startswith('risurconv')), 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "risurconv-cls-modelnet40" in res.stdout and res.stdout.strip().endswith("False")


def test_shipped_checkpoints_are_small_and_say_how_they_were_trained(sample_data):
    for rel in (CLS, SEG):
        path = sample_data / rel
        assert path.is_file() and path.stat().st_size < 1_000_000
        meta = json.loads(path.with_suffix(".json").read_text())
        tw = meta["trained_with"]
        assert tw["dataset"] == "synthetic" and tw["command"].startswith("facet3d train")
        assert tw["epochs"] >= 1 and ("test_instance_acc" in tw or "test_instance_miou" in tw)


def test_classify_sample_files_and_bad_ones(cli, sample_data, tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n")
    files = [sample_data / "meshes" / "fuze.obj", bad, sample_data / "scans" / "bunny.pcd", tmp_path / "missing.obj"]
    res = cli("classify", *map(str, files), "--ckpt", str(sample_data / CLS), "--top-k", "2", "--json")
    assert res.returncode == 1
    rows = json.loads(res.stdout)
    assert [r["file"] for r in rows] == [str(files[0]), str(files[2])]  # the batch went on past bad.ply
    names = json.loads((sample_data / CLS).with_suffix(".json").read_text())["class_names"]
    for r in rows:
        assert r["label"] in names and 0 < r["prob"] <= 1 and len(r["top_k"]) == 2
        assert r["top_k"][0]["prob"] >= r["top_k"][1]["prob"]
    errors = _one_line_errors(res.stderr)
    assert len(errors) == 2 and "bad.ply" in errors[0] and "missing.obj" in errors[1]


def test_classify_official_format_checkpoint(cli, sample_data, tmp_path):
    import torch

    from facet3d.plugins.risurconv.checkpoint import MODELNET40_CLASSES
    from facet3d.plugins.risurconv.models import CONFIGS, build_model

    # the official layout (5 stages, n=2, Transformer) at reduced widths, saved like the official
    # train script does: a torch.save dict with numpy float64 accuracies beside the weights
    model = build_model(dict(CONFIGS["modelnet40"], channels=[16, 32, 64, 64, 128], transformer_layers=1,
                             ff_dim=64, head=[64, 32]))
    ckpt = tmp_path / "best_model.pth"
    torch.save({"epoch": 3, "instance_acc": np.float64(0.91), "class_acc": np.float64(0.88),
                "model_state_dict": model.state_dict(), "optimizer_state_dict": {}}, ckpt)
    res = cli("classify", str(sample_data / "meshes" / "featuretype.STL"), "--ckpt", str(ckpt), "--json")
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["label"] in MODELNET40_CLASSES and len(row["top_k"]) == 3


@pytest.mark.slow
def test_segment_writes_a_ply_with_parts(cli, sample_data, tmp_path):
    from facet3d.core.io.api import read

    out = tmp_path / "parts.ply"
    res = cli("segment", str(sample_data / "meshes" / "fuze.obj"), "--ckpt", str(sample_data / SEG),
              "--out", str(out), "--category", "cylinder", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["category"] == "cylinder" and out.is_file()
    geom = read(out)
    meta = json.loads((sample_data / SEG).with_suffix(".json").read_text())
    part = geom.attributes["part"]
    # every vertex of the input mesh is labelled (nearest model sample), faces kept, same coordinates
    src = read(sample_data / "meshes" / "fuze.obj")
    assert geom.num_points == src.num_points and geom.num_faces == src.num_faces
    np.testing.assert_allclose(geom.vertices, src.vertices, rtol=1e-6, atol=1e-7)
    assert part.shape == (geom.num_points,) and summary["model_points"] == meta["num_points"]
    assert set(np.unique(part)) <= {0, 1} and geom.colors is not None
    res = cli("segment", str(sample_data / "meshes" / "fuze.obj"), "--ckpt", str(sample_data / SEG),
              "--out", str(out), "--category", "cylinder", "--samples-only")
    assert res.returncode == 0, res.stderr
    geom = read(out)
    assert geom.num_points == meta["num_points"] and geom.attributes["part"].shape == (geom.num_points,)
    # points are written in the file's own coordinates, not the unit sphere
    assert np.allclose(geom.vertices.min(0), src.vertices.min(0), atol=0.05 * np.ptp(src.vertices))

    import open3d as o3d
    import trimesh

    assert len(o3d.io.read_point_cloud(str(out)).points) == geom.num_points
    assert len(trimesh.load(str(out)).vertices) == geom.num_points
    # no category: the most confident one is chosen
    res = cli("segment", str(sample_data / "scans" / "milk.pcd"), "--ckpt", str(sample_data / SEG), "--out", str(out))
    assert res.returncode == 0, res.stderr
    res = cli("segment", str(sample_data / "scans" / "milk.pcd"), "--ckpt", str(sample_data / SEG), "--out",
              str(out), "--category", "teapot")
    assert res.returncode == 2 and len(_one_line_errors(res.stderr)) == 1 and "unknown category" in res.stderr
    res = cli("segment", str(sample_data / "scans" / "milk.pcd"), "--ckpt", str(sample_data / CLS), "--out", str(out))
    assert res.returncode == 2 and "classification checkpoint" in res.stderr


@pytest.mark.slow
def test_eval_is_rotation_invariant(cli, sample_data, tmp_path):
    accs = {}
    for rot in ("none", "so3"):
        res = cli("eval", "classifier", "--format", "synthetic", "--samples-per-class", "12", "--ckpt",
                  str(sample_data / CLS), "--rotate", rot, "--out", str(tmp_path / "ev"), "--json")
        assert res.returncode == 0, res.stderr
        m = json.loads(res.stdout)
        accs[rot] = m
        assert (tmp_path / "ev" / f"eval_classification_{rot}.json").is_file()
        assert (tmp_path / "ev" / f"eval_classification_{rot}_confusion.png").is_file()
    assert accs["none"]["samples"] == 24
    assert accs["so3"]["instance_acc"] == accs["none"]["instance_acc"]
    assert accs["so3"]["confusion"] == accs["none"]["confusion"]
    assert accs["none"]["instance_acc"] > 0.5  # the shipped model has learnt something


@pytest.mark.slow
def test_train_cli_resume_and_usage_errors(cli, tmp_path):
    run = tmp_path / "run"
    args = ("train", "classifier", "--format", "synthetic", "--config", "tiny", "--num-points", "128",
            "--samples-per-class", "2", "--batch-size", "8", "--out", str(run))
    res = cli(*args, "--epochs", "1", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["epochs"] == 1
    res = cli("train", "classifier", "--out", str(run), "--resume", "--epochs", "2")
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    log = json.loads((run / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2]
    page = (run / "index.html").read_text()  # rewritten by the resumed run: its command line
    assert 'src="curves.png"' in page and "--resume --epochs 2" in page
    meta = json.loads((run / "last_model.json").read_text())
    assert meta["trained_with"]["epochs"] == 2 and "--resume" in meta["trained_with"]["command"]
    for bad, needle in ((("train", "classifier", "--out", str(tmp_path / "x")), "--format"),
                        (("train", "classifier", "--format", "nope", "--out", str(tmp_path / "x")), "unknown dataset format"),
                        (("train", "segmenter", "--format", "modelnet40", "--data", str(tmp_path), "--out", str(tmp_path / "x")), "no segmentation labels"),
                        (("eval", "classifier", "--format", "synthetic", "--ckpt", str(tmp_path / "none.safetensors")), "none.safetensors")):
        res = cli(*bad)
        assert res.returncode in (1, 2) and len(_one_line_errors(res.stderr)) == 1 and needle in res.stderr, res.stderr


@pytest.mark.slow
def test_demo_step(cli, tmp_path):
    res = cli("demo", "--only", "risurconv", "--quick", "--out", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    (step,) = json.loads(res.stdout)
    s = step["summary"]
    assert step["status"] == "ok" and s["synthetic"]["rotation_agreement"] == 1.0
    assert (tmp_path / "risurconv" / "lollipop_parts.ply").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["risurconv-infer", "risurconv-train"])
def test_benchmarks_run(cli, name):
    res = cli("bench", name, "--set", "config=tiny", "--set", "num_points=128", "--set", "batch=2", "-n", "1", "--json")
    assert res.returncode == 0, res.stderr
    (r,) = json.loads(res.stdout)
    assert r["baseline"] == "plain-pytorch" and {"kernels", "plain-pytorch"} <= {t["name"] for t in r["timings"]}
