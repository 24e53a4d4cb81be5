"""Human3.6M (Ionescu et al., TPAMI 2014) in its public layout, as an evaluation set for the body detector.

    H36M/S9/MyPoseFeatures/D3_Positions_mono/Directions 1.54138969.cdf   'Pose' [1, N, 96]: 32 joints, mm, camera frame
    H36M/S9/MyPoseFeatures/D2_Positions/Directions 1.54138969.cdf        'Pose' [1, N, 64]: 32 joints, pixels
    H36M/S9/Images/Directions 1.54138969/<frames>                        extracted from Videos/*.mp4

The public release has 3-D joints but no body-model parameters (its MoSh fits are not public), so it
is evaluation-only: predicted bodies are compared through a joint regressor the user gives
(``J_regressor_h36m.npy``, [17, V], as SPIN / ROMP ship it), with MPJPE (pelvis-aligned) and PA-MPJPE
on the standard 17 of the 32 joints (`H36M_JOINTS`; pelvis first) and no PVE. The .cdf files are read
with the optional ``cdflib`` (``pip install 'facet3d[h36m]'``).

Frames: videos need a decoder we do not ship, so frames are read from ``S*/Images/<sequence>/`` (any
image names, in natural order). A folder holding fewer frames than pose rows holds every s-th frame from
the first (frame k <-> row k s): s is the smallest stride with ceil(rows / s) frames (the common
extraction, e.g. every 5th), else with rows // s frames (the tail left out); any other count is refused.
A sequence without an Images folder is skipped (listed in ``info["skipped"]``).

Splits: ``test`` S9 and S11 (the usual protocol), ``test-p2`` the same with the frontal camera 60457274
only (protocol 2), ``train`` S1, S5, S6, S7, S8. Samples look like `pw3d.Pw3dDataset`'s without the
body parameters: ``joints`` [T, 1, 17, 3] (metres, camera frame), ``transl`` [T, 1, 3] the pelvis,
``visible`` [T, 1], ``centre_px`` [T, 1, 2] the 2-D pelvis of D2_Positions through the letterbox, and
``rows`` [T] each frame's pose row.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import InputError, UsageError

__all__ = ["H36mDataset", "is_h36m", "load_joint_regressor", "H36M_JOINTS", "SPLITS", "INSTALL_HINT"]

H36M_JOINTS = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]  # the standard 17 of 32; pelvis first
SPLITS = {"test": ("S9", "S11"), "test-p2": ("S9", "S11"), "train": ("S1", "S5", "S6", "S7", "S8")}
FRONTAL_CAMERA = "60457274"  # protocol 2
VALID_PIXELS = 10_000  # `visible` of the (always shown) subject
INSTALL_HINT = "reading Human3.6M's .cdf files needs cdflib: pip install 'facet3d[h36m]'"
REGRESSOR_HINT = ("Human3.6M gives 3-D joints only: pass --joint-regressor J_regressor_h36m.npy "
                  "([17, V] for the body model's V vertices, as SPIN / ROMP ship it)")
EVAL_ONLY = ("Human3.6M is evaluation-only (its public release has 3-D joints, no body-model parameters: "
             "the MoSh fits are not public): use it with 'facet3d eval body ... --joint-regressor J_regressor_h36m.npy'")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def is_h36m(root: str | Path) -> bool:
    root = Path(root)
    return root.is_dir() and any((s / "MyPoseFeatures" / "D3_Positions_mono").is_dir() for s in root.glob("S*"))


def _natural(name: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.split(r"(\d+)", name) if p]


def _read_pose(path: Path, width: int) -> np.ndarray:
    """The 'Pose' variable of an H36M .cdf -> [N, 32, width] float64."""
    try:
        import cdflib
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    try:
        pose = np.asarray(cdflib.CDF(str(path)).varget("Pose"), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - any reader error is an unreadable file
        raise InputError(f"{path}: unreadable Human3.6M pose file ({type(exc).__name__}: {exc})") from None
    if pose.size == 0 or pose.size % (32 * width):
        raise InputError(f"{path}: 'Pose' of shape {list(pose.shape)} is not 32 joints x {width} per row")
    return pose.reshape(-1, 32, width)


def frame_stride(rows: int, frames: int) -> int | None:
    """The stride s with frame k <-> row k s (module docstring), or None when ``frames`` fits none."""
    if not 1 <= frames <= rows:
        return None
    for count in (lambda s: math.ceil(rows / s), lambda s: rows // s):
        for s in range(max(1, rows // (frames + 1)), rows // frames + 2):
            if count(s) == frames:
                return s
    return None


def load_joint_regressor(spec, num_vertices: int, num_joints: int = len(H36M_JOINTS)) -> Tensor:
    """A joint regressor (path to a .npy, or an array) -> [num_joints, num_vertices] float64, checked."""
    if spec is None:
        raise UsageError(REGRESSOR_HINT)
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--joint-regressor {path}: no such file")
        try:
            reg = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - not a plain .npy array
            raise InputError(f"{path}: not a .npy array ({type(exc).__name__}: {exc})") from None
    else:
        reg = spec.detach().cpu().numpy() if isinstance(spec, Tensor) else np.asarray(spec)
    if reg.shape != (num_joints, num_vertices):
        raise UsageError(f"the joint regressor is {list(reg.shape)}; Human3.6M needs [{num_joints}, {num_vertices}] "
                         f"({num_joints} joints from the body model's {num_vertices} vertices)")
    if not np.isfinite(reg).all():
        raise InputError("the joint regressor holds non-finite values")
    return torch.as_tensor(reg, dtype=torch.float64)


class H36mDataset:
    """Clips of ``clip`` consecutive extracted frames of the sequences of a Human3.6M ``split``."""

    def __init__(self, root: str | Path, split: str = "test", image_size: int = 128, clip: int = 1) -> None:
        if split not in SPLITS:
            raise UsageError(f"Human3.6M split must be test (S9, S11), test-p2 (S9, S11, camera {FRONTAL_CAMERA}) "
                             f"or train (S1, S5, S6, S7, S8), got '{split}'")
        self.root, self.image_size, self.clip = Path(root), image_size, clip
        self.sequences: list[dict] = []
        self.items: list[tuple[int, int]] = []
        skipped, missing = [], []
        for subject in SPLITS[split]:
            d3_dir = self.root / subject / "MyPoseFeatures" / "D3_Positions_mono"
            if not d3_dir.is_dir():
                missing.append(subject)
                continue
            for d3 in sorted(d3_dir.glob("*.cdf"), key=lambda p: _natural(p.stem)):
                name = d3.stem  # "Directions 1.54138969": action, sub-action and camera
                if name.startswith("_ALL") or (split == "test-p2" and not name.endswith("." + FRONTAL_CAMERA)):
                    continue
                images = self.root / subject / "Images" / name
                if not images.is_dir():
                    skipped.append(f"{subject}/{name} (no Images folder)")
                    continue
                self._add(subject, name, d3, images)
        if not self.sequences:
            why = f"; subjects missing: {', '.join(missing)}" if missing else ""
            raise InputError(f"{self.root}: no usable Human3.6M sequence in split '{split}' ({', '.join(SPLITS[split])}): "
                             f"frames are read from S*/Images/<sequence>/ (extract them from the videos){why}")
        self.info = {"format": "h36m", "split": split, "image_size": image_size, "clip": clip,
                     "joints_only": True, "num_joints": len(H36M_JOINTS), "sequences": len(self.sequences),
                     "subjects_missing": missing, "skipped": skipped}

    def _add(self, subject: str, name: str, d3: Path, images: Path) -> None:
        frames = sorted((f for f in images.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES), key=lambda p: _natural(p.name))
        d2 = self.root / subject / "MyPoseFeatures" / "D2_Positions" / d3.name
        if not d2.is_file():
            raise InputError(f"{d2}: missing (the 2-D joints place the subject's centre)")
        j3, j2 = _read_pose(d3, 3), _read_pose(d2, 2)
        if len(j3) != len(j2):
            raise InputError(f"{subject}/{name}: {len(j3)} rows of 3-D joints but {len(j2)} of 2-D joints")
        stride = frame_stride(len(j3), len(frames))
        if stride is None:
            raise InputError(f"{images}: {len(frames)} frames for {len(j3)} pose rows: not every n-th frame from the "
                             f"first (every frame: {len(j3)}, every 5th: {math.ceil(len(j3) / 5)})")
        rows = np.arange(len(frames)) * stride
        self.sequences.append({
            "name": f"{subject}/{name}", "frames": frames, "rows": rows, "stride": stride,
            "joints": (j3[rows][:, H36M_JOINTS] / 1000.0).astype(np.float32),  # mm -> metres
            "pelvis_px": j2[rows, 0].astype(np.float64)})
        n = len(frames)
        self.items += [(len(self.sequences) - 1, s) for s in range(0, n - self.clip + 1, self.clip)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        from .detect import _read, letterbox

        si, start = self.items[i]
        seq = self.sequences[si]
        idx = list(range(start, start + self.clip))
        frames, scale, pad = [], [], []
        for k in idx:
            x, s, p = letterbox(_read(seq["frames"][k]), self.image_size)
            frames.append(x)
            scale.append(s)
            pad.append(p)
        joints = torch.as_tensor(seq["joints"][idx])[:, None]  # [T, 1, 17, 3]
        uv = torch.as_tensor(seq["pelvis_px"][idx])  # [T, 2]
        px = uv * torch.tensor(scale, dtype=torch.float64)[:, None] + torch.tensor(pad, dtype=torch.float64) + 0.5
        return {"frames": torch.stack(frames), "joints": joints, "transl": joints[:, :, 0].clone(),
                "visible": torch.full((len(idx), 1), VALID_PIXELS), "centre_px": px[:, None].float(),
                "rows": torch.as_tensor(seq["rows"][idx])}
