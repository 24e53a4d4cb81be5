"""Real driving samples (../shared/data/driving; skipped without them): the nuScenes and KITTI readers,
and lifting image colours with lidar depth onto the lidar points against direct projection."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facet3d.core.errors import InputError
from facet3d.plugins.dfa3d.lift import LiftOptions, lift_points
from facet3d.core.io.images import read_rgb
from facet3d.plugins.dfa3d.scenes import load_scene, target_size


@pytest.fixture(scope="module")
def driving(shared_data):
    d = shared_data / "driving"
    if not (d / "nuscenes_sample").is_dir():
        pytest.skip("driving samples are not present")
    return d


def direct_colours(scene, pts: torch.Tensor, max_size: int, weights: torch.Tensor) -> torch.Tensor:
    """Each point projected into each camera, the image sampled bilinearly (pixel centres at integers,
    align_corners=False), averaged over the cameras with the lifted per-camera weights."""
    acc = torch.zeros(len(pts), 3, dtype=torch.float64)
    wsum = torch.zeros(len(pts), dtype=torch.float64)
    for i in range(len(scene.cameras)):
        h, w = target_size(int(scene.cameras.height[i]), int(scene.cameras.width[i]), max_size)
        img = torch.from_numpy(read_rgb(scene.image_paths[i], (h, w))).double()
        cam = scene.cameras[i].resized(h, w)
        px, z = cam.project(pts)
        grid = torch.stack([(px[0, :, 0] + 0.5) / w * 2 - 1, (px[0, :, 1] + 0.5) / h * 2 - 1], -1)
        s = F.grid_sample(img.permute(2, 0, 1)[None], grid[None, :, None], align_corners=False)[0, :, :, 0].T
        cw = torch.where(cam.in_image(px, z)[0], weights[:, i].double(), torch.zeros(len(pts), dtype=torch.float64))
        acc += s * cw[:, None]
        wsum += cw
    return acc / wsum.clamp_min(1e-12)[:, None]


def test_nuscenes_colours_lifted_onto_the_lidar_match_direct_projection(driving):
    scene = load_scene(driving / "nuscenes_sample")
    assert scene.layout == "nuscenes" and len(scene.cameras) == 6
    assert scene.cameras.image_size.tolist() == [[900, 1600]] * 6
    pts = torch.from_numpy(scene.lidar_points())
    assert len(pts) == 34688
    res = lift_points(scene, pts, LiftOptions(max_size=400))
    seen = res.seen
    ref = direct_colours(scene, pts, 400, res.camera_weight)
    mad = float((res.features()[seen].double() - ref[seen]).abs().mean())
    print(f"nuScenes lidar colour agreement: {mad * 255:.3f}/255 over {int(seen.sum())} of {len(pts)} points")
    assert int(seen.sum()) > 15_000  # ~57 % of the sweep is in front of a camera, unoccluded, in 2-58 m
    assert mad < 2 / 255


def test_nuscenes_missing_camera_image_is_refused(driving, tmp_path):
    src = driving / "nuscenes_sample"
    info = next(src.glob("*.json"))
    (tmp_path / info.name).write_text(info.read_text())
    with pytest.raises(InputError, match="missing camera image"):
        load_scene(tmp_path)


def test_kitti_cameras_reproduce_lidar2img_and_lift_the_sweep(driving, tmp_path):
    d = driving / "kitti_000008"
    scene = load_scene(d)
    assert scene.layout == "kitti" and scene.camera_names == ["CAM2"]
    pts = torch.from_numpy(scene.lidar_points())
    info = json.loads((d / "000008.json").read_text())["data_list"][0]
    l2i = np.array(info["images"]["CAM2"]["lidar2img"])
    hom = np.concatenate([pts.numpy(), np.ones((len(pts), 1))], 1) @ l2i.T
    want = hom[:, :2] / hom[:, 2:3]
    px, z = scene.cameras.project(pts)
    front = z[0].numpy() > 1
    np.testing.assert_allclose(px[0].numpy()[front], want[front], atol=1e-3)  # P2's offset column included
    # the standard calib/<id>.txt layout gives the same camera
    cal = info["images"]
    P2 = np.array(cal["CAM2"]["cam2img"])[:3, :4]
    R0 = np.array(cal["R0_rect"])[:3, :3]
    Tr = np.array(info["lidar_points"]["Tr_velo_to_cam"])[:3, :4]
    frame = tmp_path / "kitti"
    for sub in ("image_2", "velodyne", "calib"):
        (frame / sub).mkdir(parents=True)
    os.symlink(d / "000008.png", frame / "image_2" / "000008.png")
    os.symlink(d / "000008.bin", frame / "velodyne" / "000008.bin")
    (frame / "calib" / "000008.txt").write_text(
        "".join(f"{k}: {' '.join(repr(float(x)) for x in np.ravel(v))}\n" for k, v in
                (("P2", P2), ("R0_rect", R0), ("Tr_velo_to_cam", Tr))))
    txt_scene = load_scene(frame)
    assert txt_scene.layout == "kitti"
    px2, _ = txt_scene.cameras.project(pts)
    np.testing.assert_allclose(px2[0].numpy()[front], px[0].numpy()[front], atol=1e-3)
    res = lift_points(scene, pts, LiftOptions(max_size=400))
    assert float(res.seen.float().mean()) > 0.9  # the sweep holds the points in the camera's view
