"""3DPW's public layout as detector data: bodies moved into the camera frame exactly (checked against
posing the world-frame body and applying the extrinsics), roots projected with the real intrinsics through
the letterbox, a sequence file carrying code refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from facet3d.core.errors import CheckpointError


@pytest.fixture(scope="module")
def smpl(tmp_path_factory):
    from test_mr_body_model import synthetic_model

    from facet3d.plugins.mesh_recovery.body.models import load_body_model

    path = tmp_path_factory.mktemp("smpl") / "model.npz"
    np.savez(path, **synthetic_model())
    return load_body_model(path, dtype=torch.float64)


def _sequence(rng, n_frames=4, actors=2):
    from facet3d.core.ops.rotations import random_rotations

    cams = np.tile(np.eye(4), (n_frames, 1, 1))
    cams[:, :3, :3] = random_rotations(n_frames, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    cams[:, :3, 3] = rng.normal(size=(n_frames, 3)) + [0, 0, 6]
    return {"sequence": "courtyard_test_00", "betas": [rng.normal(size=10) for _ in range(actors)],
            "poses": [0.3 * rng.normal(size=(n_frames, 72)) for _ in range(actors)],
            "trans": [0.3 * rng.normal(size=(n_frames, 3)) for _ in range(actors)],
            "cam_poses": cams, "cam_intrinsics": np.array([[120.0, 0, 41.0], [0, 118.0, 29.0], [0, 0, 1]]),
            "campose_valid": [np.array([True, True, False, True]) for _ in range(actors)], "genders": ["m", "f"]}


@pytest.fixture(scope="module")
def pw3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("3DPW")
    rng = np.random.default_rng(0)
    seq = _sequence(rng)
    (root / "sequenceFiles" / "test").mkdir(parents=True)
    with open(root / "sequenceFiles" / "test" / "courtyard_test_00.pkl", "wb") as fh:
        pickle.dump(seq, fh, protocol=2)
    (root / "imageFiles" / "courtyard_test_00").mkdir(parents=True)
    for f in range(4):  # 80 x 60 photos
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(
            root / "imageFiles" / "courtyard_test_00" / f"image_{f:05d}.jpg")
    return root, seq


def test_bodies_in_the_camera_frame_match_the_extrinsics(smpl, pw3d):
    from facet3d.plugins.mesh_recovery.body.pw3d import Pw3dDataset

    root, seq = pw3d
    ds = Pw3dDataset(root, smpl, "test", image_size=64, clip=2)
    assert len(ds) == 2
    s = ds[1]  # frames 2 and 3
    assert s["frames"].shape == (2, 3, 64, 64)
    assert s["visible"][:, 0].tolist() == [0, 10_000]  # frame 2's camera pose is not valid
    for a in range(2):
        for t, f in enumerate((2, 3)):
            world = smpl(betas=torch.as_tensor(seq["betas"][a])[None], global_orient=torch.as_tensor(seq["poses"][a][f, :3])[None],
                         body_pose=torch.as_tensor(seq["poses"][a][f, 3:])[None], transl=torch.as_tensor(seq["trans"][a][f])[None])
            R, tc = torch.as_tensor(seq["cam_poses"][f, :3, :3]), torch.as_tensor(seq["cam_poses"][f, :3, 3])
            expect = world.vertices[0] @ R.T + tc
            cam = smpl(betas=s["betas"][a][None].double(), global_orient=s["global_orient"][t, a][None].double(),
                       body_pose=s["body_pose"][t, a][None].double(), transl=s["transl"][t, a][None].double())
            assert torch.allclose(cam.vertices[0], expect, atol=2e-5)  # float32 storage of the sample
            # the root through K and the letterbox (80 x 60 -> 64 x 48 at scale 0.8, 8 px bars top and bottom)
            r = world.joints[0, 0] @ R.T + tc
            K = seq["cam_intrinsics"]
            u, v = K[0, 0] * r[0] / r[2] + K[0, 2], K[1, 1] * r[1] / r[2] + K[1, 2]
            assert s["centre_px"][t, a].tolist() == pytest.approx([float(u) * 0.8 + 0.5, float(v) * 0.8 + 8 + 0.5], abs=1e-3)


def test_targets_use_the_real_projection_and_bad_files_are_refused(smpl, pw3d, tmp_path):
    from facet3d.plugins.mesh_recovery.body.detector import build_detector
    from facet3d.plugins.mesh_recovery.body.net_train import frame_targets, open_dataset

    root, _ = pw3d
    det = build_detector("tiny", smpl)
    ds = open_dataset(root, smpl, det.image_size, 1, "test")
    s = ds[0]
    for tg in frame_targets(s, 0, det):
        x, y = s["centre_px"][0, tg["person"]].tolist()
        assert tg["cell"] == (int(y // det.net.config.stride), int(x // det.net.config.stride))
    bad = tmp_path / "3DPW"
    (bad / "sequenceFiles" / "test").mkdir(parents=True)
    (bad / "imageFiles").mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(bad / "sequenceFiles" / "test" / "x.pkl", "wb") as fh:
        pickle.dump({"poses": Evil()}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="refusing global"):
        open_dataset(bad, smpl, 128, 1, "test")
