"""Lifting on synthetic plain scenes (closed form): colours back onto the surface, nothing off it,
labels, grids, outputs, and the one-line errors of bad scenes and options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dfa_scenes import PLANE_Z, H, W, colours, pixel_points, plain_scene
from facet3d.core.errors import InputError, ResourceError, UsageError
from facet3d.plugins.dfa3d.lift import LiftOptions, lift_points, make_grid, run_lift
from facet3d.plugins.dfa3d.scenes import load_scene


def test_plain_scene_is_read(tmp_path):
    sc = load_scene(plain_scene(tmp_path / "s", cams=(("cam0", 0.0), ("cam1", 1.0))))
    assert sc.layout == "plain" and sc.camera_names == ["cam0", "cam1"]
    assert [p.name for p in sc.image_paths] == ["cam0.png", "cam1.png"]
    assert sc.depth_paths is not None and sc.lidar_path.name == "lidar.ply"
    assert sc.cameras.image_size.tolist() == [[H, W], [H, W]]


@pytest.mark.parametrize("depth", ["maps", "lidar"])
def test_colours_come_back_on_the_surface_and_not_off_it(tmp_path, depth):
    sc = load_scene(plain_scene(tmp_path / "s"))
    v, u = np.mgrid[2:H - 2, 2:W - 2]
    on = pixel_points(u.ravel(), v.ravel())
    off = pixel_points(u.ravel(), v.ravel(), depth=PLANE_Z + 3.0)  # 6 bins behind the surface
    res = lift_points(sc, torch.from_numpy(np.concatenate([on, off])), LiftOptions(depth=depth))
    n = len(on)
    img = colours(0).astype(np.float32) / 255
    got = res.features()[:n].numpy()
    np.testing.assert_allclose(got, img[v.ravel(), u.ravel()], atol=1e-5)  # pixel centres: exact
    assert res.seen[:n].all() and not res.seen[n:].any()
    assert float(res.weight[n:].max()) < 1e-3
    # a point on the surface at a bin centre weighs the distribution's peak
    assert float(res.weight[:n].min()) > res.threshold


def test_bilinear_between_pixels_and_uniform_depth_is_back_projection(tmp_path):
    sc = load_scene(plain_scene(tmp_path / "s", lidar=False))
    img = colours(0).astype(np.float64) / 255
    u, v = np.array([10.5, 20.25]), np.array([7.5, 11.0])
    pts = pixel_points(u, v)
    res = lift_points(sc, torch.from_numpy(pts), LiftOptions(depth="maps"))
    want0 = img[7:9, 10:12].mean((0, 1))
    want1 = 0.75 * img[11, 20] + 0.25 * img[11, 21]
    np.testing.assert_allclose(res.features().numpy(), np.stack([want0, want1]), atol=1e-5)
    far = pixel_points(u, v, depth=30.0)  # nowhere near the surface: only --depth none lifts it
    uni = lift_points(sc, torch.from_numpy(far), LiftOptions(depth="none"))
    np.testing.assert_allclose(uni.features().numpy(), np.stack([want0, want1]), atol=1e-5)
    np.testing.assert_allclose(uni.weight.numpy(), 1 / 112, rtol=1e-5)
    assert uni.seen.all()


def test_two_cameras_average_and_points_outside_see_nothing(tmp_path):
    # camera 1 sits 1 m to the right: at depth 10 with f = 20 the same point is 2 px further left
    sc = load_scene(plain_scene(tmp_path / "s", cams=(("cam0", 0.0), ("cam1", 1.0)), lidar=False))
    u, v = np.array([20.0, 1.0]), np.array([10.0, 10.0])
    res = lift_points(sc, torch.from_numpy(pixel_points(u, v)), LiftOptions(depth="maps"))
    a, b = colours(0) / 255.0, colours(1) / 255.0
    np.testing.assert_allclose(res.features()[0].numpy(), (a[10, 20] + b[10, 18]) / 2, atol=1e-5)
    np.testing.assert_allclose(res.features()[1].numpy(), a[10, 1], atol=1e-5)  # outside camera 1: camera 0 alone
    assert res.cameras_seeing.tolist() == [2, 1]
    behind = lift_points(sc, torch.tensor([[0.0, 0.0, -5.0]], dtype=torch.float64), LiftOptions(depth="none"))
    assert float(behind.weight[0]) == 0 and not behind.seen[0]


def test_label_maps_lift_to_their_label(tmp_path):
    root = plain_scene(tmp_path / "s", lidar=False)
    labels = np.zeros((1, H, W), np.int64)
    labels[0, :, W // 2:] = 3
    labels[0, :2] = -1  # unlabelled rows
    np.save(root / "labels.npy", labels)
    sc = load_scene(root)
    pts = pixel_points(np.array([5.0, 40.0]), np.array([16.0, 16.0]))
    res = lift_points(sc, torch.from_numpy(pts), LiftOptions(features=str(root / "labels.npy"), depth="maps"))
    assert res.kind == "labels" and res.channels == [f"label_{i}" for i in range(4)]
    assert res.features().argmax(1).tolist() == [0, 3]


def test_grid_job_writes_every_output(tmp_path):
    root = plain_scene(tmp_path / "s")
    sc = load_scene(root)
    grid = make_grid((-6, 6, -4, 4, 8, 12), 0.5)
    assert grid.shape == (24, 16, 8)
    events = []
    s = run_lift(sc, tmp_path / "out", LiftOptions(depth="lidar"), grid=grid, bev_size=10,
                 progress=lambda *a: events.append(a), log=events.append)
    out = tmp_path / "out"
    for name in ("voxels.ply", "features.npy", "weight.npy", "bev.png", "bev_features.npy", "bev_weight.npy", "lift.json"):
        assert (out / name).is_file(), name
    assert np.load(out / "features.npy").shape == (24, 16, 8, 3)
    assert np.load(out / "bev_features.npy").shape == (10, 10, 3)
    assert s["seen_voxels"] > 0 and json.loads((out / "lift.json").read_text())["grid"]["shape"] == [24, 16, 8]
    w = np.load(out / "weight.npy")
    # the surface z = 10 lies on the boundary of layers 3 and 4 (z 9.5-10, 10-10.5): only they light up
    per_layer = w.sum((0, 1))
    assert per_layer[[3, 4]].min() > 10 * per_layer[[0, 1, 6, 7]].max()
    assert any(isinstance(e, tuple) for e in events) and any(isinstance(e, str) for e in events)
    from facet3d.core.io.api import read

    vox = read(out / "voxels.ply")
    assert vox.num_points == s["seen_voxels"] and "weight" in vox.attributes


def test_points_job_colourises_a_point_file(tmp_path):
    root = plain_scene(tmp_path / "s")
    s = run_lift(load_scene(root), tmp_path / "out", LiftOptions(), at="lidar", seen_only=True)
    from facet3d.core.io.api import read

    pts = read(tmp_path / "out" / "points.ply")
    assert s["mode"] == "points" and pts.num_points == s["seen_points"] > 0
    assert pts.colors is not None and {"weight", "cameras", "feature_0"} <= set(pts.attributes)


def test_bad_grids_options_and_scenes_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="no cells"):
        make_grid((0, 1, 0, 1, 0, 0.2), 0.5)
    with pytest.raises(UsageError, match="greater"):
        make_grid((0, -1, 0, 1, 0, 1), 0.1)
    root = plain_scene(tmp_path / "s")
    sc = load_scene(root)
    monkeypatch.setenv("FACET3D_MEMORY_LIMIT", "1M")
    with pytest.raises(ResourceError, match="grid"):
        run_lift(sc, tmp_path / "o", LiftOptions(), grid=make_grid((-50, 50, -50, 50, 0, 20), 0.1))
    assert not (tmp_path / "o").exists()  # refused before any output folder
    monkeypatch.delenv("FACET3D_MEMORY_LIMIT")
    (root / "images" / "cam0.png").unlink()
    with pytest.raises(InputError, match="missing camera image"):
        load_scene(root)


def test_size_mismatch_and_empty_lidar_are_refused(tmp_path):
    root = plain_scene(tmp_path / "s", sizes={"cam0": (40, 30)}, depth=False)
    with pytest.raises(InputError, match="image size mismatch"):
        load_scene(root)
    root = plain_scene(tmp_path / "e", lidar=False, depth=False)
    (root / "lidar.xyz").write_text("")
    sc = load_scene(root)
    with pytest.raises(InputError, match="empty"):
        lift_points(sc, torch.zeros(1, 3, dtype=torch.float64), LiftOptions(depth="lidar"))


def test_feature_maps_of_another_resolution_and_a_depth_folder(tmp_path):
    """A user's map at a quarter of the image size: the same normalised coordinates read it, so a
    linear map returns the point's own (continuous) low-resolution pixel coordinates."""
    root = plain_scene(tmp_path / "s", lidar=False)
    h, w = H // 4, W // 4
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    np.save(root / "feat.npy", np.stack([xx, yy], -1)[None])
    sc = load_scene(root)
    u, v = np.array([10.0, 30.0, 22.5]), np.array([9.0, 14.0, 20.0])
    res = lift_points(sc, torch.from_numpy(pixel_points(u, v)),
                      LiftOptions(features=str(root / "feat.npy"), depth=str(root / "depth")))
    assert res.kind == "features" and res.feature_sizes == [(h, w)]
    want = np.stack([(u + 0.5) / 4 - 0.5, (v + 0.5) / 4 - 0.5], -1)
    np.testing.assert_allclose(res.features().numpy(), want, atol=1e-5)


@pytest.mark.cuda
def test_lifting_on_cuda_matches_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    sc = load_scene(plain_scene(tmp_path / "s"))
    v, u = np.mgrid[1:H - 1:3, 1:W - 1:3]
    pts = torch.from_numpy(pixel_points(u.ravel() + 0.3, v.ravel() + 0.1))
    a = lift_points(sc, pts, LiftOptions(depth="lidar"))
    b = lift_points(sc, pts, LiftOptions(depth="lidar", device="cuda"))
    torch.testing.assert_close(b.features().cpu(), a.features(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.weight.cpu(), a.weight, atol=1e-5, rtol=1e-5)
