"""`facet3d reconstruct`: outputs, raw predictions, one-line errors."""

from __future__ import annotations

import json

import numpy as np

RAW = {"images", "pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"}


def _one_line_error(r, *needles):
    assert r.returncode != 0, r.stdout
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_reconstruct_writes_every_output(cli, tmp_path, tiny_ckpt, photos):
    d, _ = photos
    out = tmp_path / "rec"
    r = cli("reconstruct", str(d), "--ckpt", str(tiny_ckpt), "--out", str(out), "--save-raw", "--json",
            "--device", "cpu", "--conf-percentile", "20")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["images"] == 3 and summary["image_size"] == [518, 364] and summary["points"] > 0
    for f in ("points.ply", "scene.glb", "cameras.json", "sparse/0/cameras.txt", "sparse/0/images.txt",
              "sparse/0/points3D.txt", "images/im0.png", "predictions.npz"):
        assert (out / f).is_file(), f
    raw = np.load(out / "predictions.npz")
    assert set(raw.files) == RAW
    assert raw["images"].shape == (1, 3, 3, 364, 518) and raw["pose_enc"].shape == (1, 3, 9)
    assert raw["depth"].shape == (1, 3, 364, 518, 1) and raw["world_points"].shape == (1, 3, 364, 518, 3)
    assert raw["depth_conf"].shape == raw["world_points_conf"].shape == (1, 3, 364, 518)
    from facet3d.core.io.api import read
    from facet3d.core.io.colmap import read_colmap_model
    from facet3d.core.structures.cameras import Cameras

    cams = Cameras.load_json(out / "cameras.json")
    model = read_colmap_model(out / "sparse" / "0")
    assert model.image_names == ["im0.png", "im1.png", "im2.png"] and len(model.points) == summary["points"]
    np.testing.assert_allclose(model.cameras.R.numpy(), cams.R.numpy(), atol=1e-12)
    assert read(out / "points.ply").num_points == summary["points"]
    import trimesh

    scene = trimesh.load(out / "scene.glb")
    kinds = sorted(type(g).__name__ for g in scene.geometry.values())
    assert kinds == ["Path3D", "PointCloud"]


def test_reconstruct_without_merging_and_pad(cli, tmp_path, tiny_ckpt, photos):
    d, odd = photos
    r = cli("reconstruct", str(d / "im0.png"), str(odd / "tall.png"), "--ckpt", str(tiny_ckpt), "--out",
            str(tmp_path / "r"), "--merge", "0", "--preprocess", "pad", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["merge"] is None and "tokens" not in s and s["image_size"] == [518, 518]


def test_reconstruct_errors(cli, tmp_path, tiny_ckpt, photos):
    d, odd = photos
    out = tmp_path / "never"
    base = ["reconstruct", "--out", str(out)]
    _one_line_error(cli(*base, str(d), "--ckpt", str(tmp_path / "nope.safetensors")), "no such file")
    wrong = tmp_path / "wrong.pt"
    import torch

    torch.save({"encoder.weight": torch.zeros(2, 2)}, wrong)
    _one_line_error(cli(*base, str(d), "--ckpt", str(wrong), "--config", "tiny"), "missing (first: ", "unexpected (first: encoder.weight")
    _one_line_error(cli(*base, str(d / "im0.png"), str(odd / "tall.png"), "--ckpt", str(tiny_ckpt)), "different sizes")
    _one_line_error(cli(*base, str(d / "im0.png"), str(odd / "broken.jpg"), "--ckpt", str(tiny_ckpt)), "broken.jpg", "cannot read")
    _one_line_error(cli(*base, str(d / "im0.png"), "--ckpt", str(tiny_ckpt)), "at least 2 images")
    _one_line_error(cli(*base, str(d), "--ckpt", str(tiny_ckpt), "--merge", "1.5"), "--merge")
    assert not out.exists()  # no empty output folder left behind
