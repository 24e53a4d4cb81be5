"""3DPW (von Marcard et al., ECCV 2018) in its public layout, as detector training / evaluation data.

    3DPW/imageFiles/<sequence>/image_00000.jpg ...
    3DPW/sequenceFiles/{train,validation,test}/<sequence>.pkl

Each sequence file (a latin1 pickle, read through the restricted unpickler: no code runs from it) holds
per actor SMPL ``betas`` [10], ``poses`` [N, 72] and ``trans`` [N, 3] in the world frame, and per frame
``cam_poses`` [N, 4, 4] (world -> camera), ``cam_intrinsics`` [3, 3] and ``campose_valid`` per actor.
The bodies need an SMPL-format model (users supply it). In the camera frame SMPL turns about its root
joint J0(betas): ``global_orient_c = R_c R_g`` and ``transl_c = R_c (J0 + trans) + t_c - J0``.

Samples look like `people_data.BodyDataset`'s: frames letterboxed to ``image_size`` (`detect.letterbox`),
the bodies in the camera frame, ``visible`` (a large count where the camera pose is valid for that actor,
0 otherwise: 3DPW has no masks) and ``centre_px`` [T, P, 2], the root projected with the real intrinsics
into the letterboxed image, which places the targets' centre cells (the real focal is not ROMP's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import InputError, UsageError

__all__ = ["Pw3dDataset", "is_3dpw", "camera_frame_bodies"]

SPLITS = ("train", "validation", "test")
VALID_PIXELS = 10_000  # `visible` for an actor with a valid camera pose


def is_3dpw(root: str | Path) -> bool:
    return (Path(root) / "sequenceFiles").is_dir() and (Path(root) / "imageFiles").is_dir()


def camera_frame_bodies(model, betas: Tensor, poses: Tensor, trans: Tensor, cam: Tensor) -> dict[str, Tensor]:
    """World-frame SMPL parameters of one actor -> the model's arguments in the camera frame.

    betas: [S]; poses: [N, 72]; trans: [N, 3]; cam: [N, 4, 4] world -> camera.
    -> betas [N, S'], global_orient [N, 3], body_pose [N, 69], transl [N, 3] (S' = the model's count)
    """
    from facet3d.core.ops.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    n = len(poses)
    b = torch.zeros(n, model.num_betas, dtype=torch.float64)
    k = min(model.num_betas, len(betas))
    b[:, :k] = betas[:k].double()
    with torch.no_grad():
        j0 = model(betas=b[:1].to(model.dtype)).joints[0, 0].double()  # the root of the shaped rest body
    R_c, t_c = cam[:, :3, :3].double(), cam[:, :3, 3].double()
    orient = matrix_to_axis_angle(R_c @ axis_angle_to_matrix(poses[:, :3].double()))
    transl = (R_c @ (j0 + trans.double())[..., None])[..., 0] + t_c - j0
    return {"betas": b, "global_orient": orient, "body_pose": poses[:, 3:].double(), "transl": transl}


class Pw3dDataset:
    """Clips of ``clip`` consecutive frames of every sequence of a 3DPW ``split`` (module docstring)."""

    def __init__(self, root: str | Path, model, split: str = "test", image_size: int = 128, clip: int = 1) -> None:
        from .model_files import load_restricted_pickle

        if split not in SPLITS:
            raise UsageError(f"3DPW split must be one of {', '.join(SPLITS)}, got '{split}'")
        if model.num_joints != 24:
            raise UsageError("3DPW's bodies are SMPL: give an SMPL-format model (--model SMPL_NEUTRAL.pkl)")
        self.root, self.model, self.image_size, self.clip = Path(root), model, image_size, clip
        files = sorted((self.root / "sequenceFiles" / split).glob("*.pkl"))
        if not files:
            raise InputError(f"{self.root}: no 3DPW sequence files in sequenceFiles/{split}/")
        self.sequences, self.items = [], []
        for f in files:
            seq = load_restricted_pickle(f, "3DPW sequence")
            missing = [k for k in ("poses", "trans", "betas", "cam_poses", "cam_intrinsics", "campose_valid")
                       if k not in seq]
            if missing:
                raise InputError(f"{f}: not a 3DPW sequence file (missing {', '.join(missing)})")
            name = str(seq.get("sequence", f.stem))
            n = len(np.asarray(seq["cam_poses"]))
            self.sequences.append((name, seq))
            self.items += [(len(self.sequences) - 1, s) for s in range(0, n - clip + 1, clip)]
        self.info = {"format": "3dpw", "split": split, "image_size": image_size, "clip": clip}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        from .detect import _read, letterbox

        si, start = self.items[i]
        name, seq = self.sequences[si]
        frames_idx = range(start, start + self.clip)
        cam = torch.as_tensor(np.asarray(seq["cam_poses"], dtype=np.float64)[list(frames_idx)])
        K = np.asarray(seq["cam_intrinsics"], dtype=np.float64)
        frames, scale_pad = [], []
        for f in frames_idx:
            img = _read(self.root / "imageFiles" / name / f"image_{f:05d}.jpg")
            x, scale, pad = letterbox(img, self.image_size)
            frames.append(x)
            scale_pad.append((scale, pad))
        bodies = []
        for a in range(len(seq["poses"])):
            poses = torch.as_tensor(np.asarray(seq["poses"][a], dtype=np.float64)[list(frames_idx)])
            trans = torch.as_tensor(np.asarray(seq["trans"][a], dtype=np.float64)[list(frames_idx)])
            betas = torch.as_tensor(np.asarray(seq["betas"][a], dtype=np.float64).reshape(-1))
            bodies.append(camera_frame_bodies(self.model, betas, poses, trans, cam))
        valid = np.stack([np.asarray(seq["campose_valid"][a], dtype=bool)[list(frames_idx)]
                          for a in range(len(bodies))], 1)  # [T, P]
        transl = torch.stack([b["transl"] for b in bodies], 1)  # [T, P, 3]
        with torch.no_grad():  # the root joint in the camera frame, projected, then letterboxed
            like = dict(dtype=self.model.dtype)
            roots = torch.stack([self.model(**{k: v.to(**like) for k, v in b.items()}).joints[:, 0].double()
                                 for b in bodies], 1)  # [T, P, 3]
        uv = roots @ torch.as_tensor(K).T
        uv = uv[..., :2] / uv[..., 2:].clamp_min(1e-9)
        scale = torch.tensor([s for s, _ in scale_pad], dtype=torch.float64)[:, None, None]
        pad = torch.tensor([p for _, p in scale_pad], dtype=torch.float64)[:, None, :]
        return {"frames": torch.stack(frames), "betas": torch.stack([b["betas"][0] for b in bodies]).float(),
                "global_orient": torch.stack([b["global_orient"] for b in bodies], 1).float(),
                "body_pose": torch.stack([b["body_pose"] for b in bodies], 1).float(),
                "transl": transl.float(), "visible": torch.as_tensor(valid * VALID_PIXELS),
                "centre_px": (uv * scale + pad + 0.5).float()}  # continuous pixel coordinates (edges at 0)
