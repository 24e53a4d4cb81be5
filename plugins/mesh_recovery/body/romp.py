"""The maps of a ROMP-style single-stage multi-person body network (CoordFormer's output format) and
their decoding into bodies (../../../docs/mesh_recovery.md; ROMP: Sun et al., ICCV 2021).

The network sees a square image (ROMP: 512 px, padded) and predicts, on a coarse grid (ROMP: 64 x 64):

* a centre heatmap [1, H, W]: one peak per person, at the cell of the person's centre;
* a parameter map [C, H, W]: at each person's centre cell, that person's body (`ParamLayout`):
  a weak-perspective camera (s, tx, ty), a 6-D rotation per predicted joint (the root's global
  orientation first), and the shape betas.

`decode_maps` turns the two maps into people (peaks: threshold + max-pool non-maximum suppression +
top-k, as ROMP's parser); `encode_maps` writes known bodies into maps (training targets, and the
exact inverse the tests check decoding against).

Camera (ROMP's convention). A body point X (camera frame: x right, y down, z forward; metres, relative
to the body's ``transl`` point) projects weak-perspectively to normalised image coordinates
``s * X[:2] + (tx, ty)`` in [-1, 1], pixel = (that + 1) * image_size / 2. The matching perspective
translation for a pinhole of focal ``f`` (pixels) centred in an image of ``image_size`` pixels is::

    transl = (tx / s, ty / s, 2 f / (image_size * s))

so a point at the translation's depth projects identically both ways; with ROMP's f = 443.4 px at
512 px (a 60 degree field of view: 256 / tan 30 deg) the depth is 1 / (s * tan 30 deg), which is
ROMP/BEV's ``denormalize_cam_params_to_trans`` (romp/lib/utils/cam_utils.py, FOV=60 and
focal_length=443.4 in romp/lib/config.py) without its +1e-3 guard. ROMP's head maps its raw scale
channel through ``1.1 ** x`` before parsing: the maps here hold ``s`` itself (after that step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from facet3d.core.errors import UsageError
from facet3d.core.ops.rotations import (axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rotation_6d,
                                        rotation_6d_to_matrix)

__all__ = ["ParamLayout", "ROMP_FOCAL", "ROMP_IMAGE_SIZE", "ROMP_MAP_SIZE", "ROMP_THRESHOLD",
           "camera_to_transl", "transl_to_camera", "find_centres", "encode_maps", "decode_maps",
           "batch_persons"]

ROMP_IMAGE_SIZE = 512  # input side, pixels
ROMP_MAP_SIZE = 64  # centre / parameter map side, cells
ROMP_FOCAL = 443.4  # pixels at 512 px: 256 / tan(30 deg), a 60 degree field of view
ROMP_THRESHOLD = 0.25  # centre confidence a person needs
ROMP_NMS_KERNEL = 5  # ROMP's max-pool suppression window (kernel_sizes=[5] in romp/lib/config.py)
ROMP_MAX_PEOPLE = 64


@dataclass(frozen=True)
class ParamLayout:
    """The channels of the parameter map for one body model.

    ``joints``: the predicted joints, the root (0, the global orientation) first, then the others in
    order; every other joint stays at rest. Channels: camera (s, tx, ty), 6 per predicted joint,
    ``num_betas`` shape values (stored raw, as the model takes them).

    `from_model` predicts the joints a fit frees (`skeleton_of(model).free`). For SMPL's 24 joints
    that is 19 (spine x3, neck, head, collars, shoulders, elbows, wrists, hips, knees, ankles: no
    feet, no hands), so 3 + 20 * 6 + 10 = 133 channels; ROMP also predicts the two feet
    (joints 1..21) for its 145: ``ParamLayout.from_model(smpl, joints=range(22))``. Anny: 21 free
    joints + root and 6 phenotypes: 3 + 22 * 6 + 6 = 141.
    """

    joints: tuple[int, ...]  # predicted joint indices, joints[0] == 0
    num_joints: int  # the model's J
    num_betas: int
    betas_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        j = self.joints
        if not j or j[0] != 0 or len(set(j)) != len(j) or not all(0 < i < self.num_joints for i in j[1:]):
            raise UsageError(f"predicted joints must be the root (0) then distinct joints of the model "
                             f"(1..{self.num_joints - 1}), got {list(j)}")

    @classmethod
    def from_model(cls, model, skeleton=None, joints=None) -> "ParamLayout":
        """The layout of ``model`` (a `BodyModel`): root + ``skeleton.free`` (default `skeleton_of`),
        or root + ``joints`` when given (ROMP's SMPL layout: ``range(22)``)."""
        if joints is None:
            from .skeleton import skeleton_of

            joints = (skeleton or skeleton_of(model)).free
        rest = [int(j) for j in joints if int(j) != 0]
        return cls((0, *rest), model.num_joints, model.num_betas, model.betas_range)

    @property
    def camera(self) -> slice:
        return slice(0, 3)

    @property
    def rotations(self) -> slice:
        return slice(3, 3 + 6 * len(self.joints))

    @property
    def betas(self) -> slice:
        return slice(self.rotations.stop, self.rotations.stop + self.num_betas)

    @property
    def channels(self) -> int:
        return self.betas.stop


# --- camera <-> translation -------------------------------------------------------------------------


def camera_to_transl(camera: Tensor, focal: float = ROMP_FOCAL, image_size: int = ROMP_IMAGE_SIZE) -> Tensor:
    """Weak-perspective cameras [..., 3] (s, tx, ty) -> translations [..., 3] (module docstring).

    ``s`` must be positive (a person in front of the camera); it is floored at 1e-6 so a network's
    stray non-positive scale gives a far-away body instead of infinities.
    """
    s = camera[..., 0].clamp_min(1e-6)
    return torch.stack([camera[..., 1] / s, camera[..., 2] / s, 2.0 * focal / (image_size * s)], -1)


def transl_to_camera(transl: Tensor, focal: float = ROMP_FOCAL, image_size: int = ROMP_IMAGE_SIZE) -> Tensor:
    """Translations [..., 3] (depth > 0) -> weak-perspective cameras [..., 3] (s, tx, ty): the inverse
    of `camera_to_transl`."""
    if bool((transl[..., 2] <= 0).any()):
        raise UsageError("a body to encode must lie in front of the camera (transl z > 0)")
    s = 2.0 * focal / (image_size * transl[..., 2])
    return torch.stack([s, s * transl[..., 0], s * transl[..., 1]], -1)


# --- body parameters <-> one parameter vector --------------------------------------------------------


def _vector_of(person: dict, layout: ParamLayout, focal: float, image_size: int, dtype) -> Tensor:
    """One person's parameters -> its [C] parameter vector (non-predicted joints are dropped)."""
    get = lambda k: torch.as_tensor(person[k], dtype=dtype).reshape(-1)  # noqa: E731
    if "camera" in person:
        camera = get("camera")
    else:
        camera = transl_to_camera(get("transl"), focal, image_size)
    pose = torch.zeros(layout.num_joints, 3, dtype=dtype)
    if "global_orient" in person:
        pose[0] = get("global_orient")
    if "body_pose" in person:
        pose[1:] = get("body_pose").reshape(layout.num_joints - 1, 3)
    d6 = matrix_to_rotation_6d(axis_angle_to_matrix(pose[list(layout.joints)]))  # [P, 6]
    betas = get("betas") if "betas" in person else torch.zeros(layout.num_betas, dtype=dtype)
    if betas.numel() != layout.num_betas:
        raise UsageError(f"{betas.numel()} betas given; the model has {layout.num_betas}")
    return torch.cat([camera, d6.reshape(-1), betas])


def _bodies_of(vectors: Tensor, layout: ParamLayout) -> dict[str, Tensor]:
    """Parameter vectors [K, C] -> betas [K, S], global_orient [K, 3], body_pose [K, 3(J-1)], camera [K, 3]."""
    k = vectors.shape[0]
    d6 = vectors[:, layout.rotations].reshape(k, len(layout.joints), 6)
    aa = matrix_to_axis_angle(rotation_6d_to_matrix(d6))  # [K, P, 3]
    pose = vectors.new_zeros(k, layout.num_joints, 3)  # joints not predicted stay at rest
    pose[:, list(layout.joints)] = aa
    betas = vectors[:, layout.betas]
    if layout.betas_range is not None:  # a bounded shape space (Anny's phenotypes): clamp, stored raw
        betas = betas.clamp(*layout.betas_range)
    body_pose = pose[:, 1:].reshape(k, 3 * (layout.num_joints - 1))  # explicit size: k may be 0
    return {"betas": betas, "global_orient": pose[:, 0], "body_pose": body_pose, "camera": vectors[:, layout.camera]}


# --- maps --------------------------------------------------------------------------------------------


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _cell_of(camera: Tensor, map_hw: tuple[int, int]) -> tuple[int, int]:
    """The cell holding the normalised image point (tx, ty): row from ty, column from tx (ROMP's
    ``int((c + 1) / 2 * size)``)."""
    col = math.floor((float(camera[1]) + 1.0) / 2.0 * map_hw[1])
    row = math.floor((float(camera[2]) + 1.0) / 2.0 * map_hw[0])
    return row, col


def encode_maps(persons: list[dict], layout: ParamLayout, map_size: int | tuple[int, int] = ROMP_MAP_SIZE,
                image_size: int = ROMP_IMAGE_SIZE, focal: float = ROMP_FOCAL, *, sigma: float = 1.0,
                radius: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Known bodies -> (centre heatmap [1, H, W], parameter map [C, H, W]).

    persons: dicts with ``betas`` [S], ``global_orient`` [3], ``body_pose`` [3(J-1)] (the model's full
    axis-angle pose; joints outside ``layout.joints`` are dropped) and either ``transl`` [3] (camera
    frame, metres) or ``camera`` [3] (s, tx, ty); optionally ``cell`` (row, col) for the centre,
    otherwise the cell under the projected translation point. The heatmap is a Gaussian of ``sigma``
    cells peaking at exactly 1 on each centre (maximum where they overlap); the parameter vector is
    written in the cells within ``radius`` (Chebyshev) of its centre, the nearest centre winning where
    neighbourhoods meet, so decoding may sample near a peak and still read that person.
    """
    H, W = _hw(map_size)
    rows = torch.arange(H, dtype=torch.float64)[:, None]
    cols = torch.arange(W, dtype=torch.float64)[None, :]
    centre = torch.zeros(H, W, dtype=torch.float64)
    params = torch.zeros(layout.channels, H, W, dtype=dtype)
    nearest = torch.full((H, W), math.inf, dtype=torch.float64)  # distance to the owning centre
    seen = set()
    for i, person in enumerate(persons):
        vec = _vector_of(person, layout, focal, image_size, dtype)
        r, c = person["cell"] if "cell" in person else _cell_of(vec[layout.camera], (H, W))
        if not (0 <= r < H and 0 <= c < W):
            raise UsageError(f"person {i}'s centre cell ({r}, {c}) lies outside the {H} x {W} map")
        if (r, c) in seen:
            raise UsageError(f"person {i} shares its centre cell ({r}, {c}) with another person")
        seen.add((r, c))
        d2 = (rows - r) ** 2 + (cols - c) ** 2
        centre = torch.maximum(centre, torch.exp(-d2 / (2.0 * sigma ** 2)))
        near = ((rows - r).abs() <= radius) & ((cols - c).abs() <= radius) & (d2 < nearest)
        near[r, c] = True  # a person's own centre is always its own (centres are distinct)
        nearest = torch.where(near, d2, nearest)
        params[:, near] = vec[:, None]
    return centre[None].to(dtype), params


def find_centres(centre: Tensor, threshold: float = ROMP_THRESHOLD, max_people: int = ROMP_MAX_PEOPLE,
                 nms_kernel: int = ROMP_NMS_KERNEL) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Peaks of centre heatmaps [B, 1, H, W] -> per image (scores [K], rows [K], cols [K]), best first.

    A cell is a peak when it equals the maximum of its ``nms_kernel`` window (ROMP's max-pool
    non-maximum suppression: equal neighbours on a plateau both survive) and its score is above
    ``threshold``; at most ``max_people`` per image.
    """
    B, _, H, W = centre.shape
    pooled = F.max_pool2d(centre, nms_kernel, stride=1, padding=nms_kernel // 2)
    peaks = torch.where(pooled == centre, centre, torch.zeros_like(centre)).reshape(B, H * W)
    scores, idx = peaks.topk(min(max_people, H * W), dim=1)
    out = []
    for b in range(B):
        keep = scores[b] > threshold
        flat = idx[b][keep]
        out.append((scores[b][keep], flat // W, flat % W))
    return out


def decode_maps(centre: Tensor, params: Tensor, layout: ParamLayout, threshold: float = ROMP_THRESHOLD,
                max_people: int = ROMP_MAX_PEOPLE, image_size: int = ROMP_IMAGE_SIZE,
                focal: float = ROMP_FOCAL, *, nms_kernel: int = ROMP_NMS_KERNEL) -> list[list[dict]]:
    """Network maps -> the people in each image.

    centre: Tensor  # [B, 1, H, W] centre confidence (after the sigmoid)
    params: Tensor  # [B, C, H, W] with C = layout.channels (camera scale already positive)

    Returns per image a list (best score first) of dicts: ``score`` (float), ``cell`` (row, col),
    ``centre_xy`` (x, y) the centre cell's middle in image pixels, ``betas`` [S] (clamped to
    ``layout.betas_range`` when the model has one), ``global_orient`` [3], ``body_pose`` [3(J-1)]
    (axis-angle; joints outside ``layout.joints`` zero), ``transl`` [3] (camera frame, metres, for
    ``focal`` and ``image_size``: module docstring) and ``camera`` [3] (s, tx, ty). Feed them to the
    model with `batch_persons`.
    """
    if params.shape[1] != layout.channels:
        raise UsageError(f"the parameter map has {params.shape[1]} channels; the layout needs {layout.channels}")
    H, W = centre.shape[-2:]
    cell_h, cell_w = image_size / H, image_size / W
    out = []
    for b, (scores, rows, cols) in enumerate(find_centres(centre, threshold, max_people, nms_kernel)):
        bodies = _bodies_of(params[b][:, rows, cols].T, layout)  # [K, C]: each person at its centre
        bodies["transl"] = camera_to_transl(bodies["camera"], focal, image_size)
        people = []
        for k in range(len(scores)):
            r, c = int(rows[k]), int(cols[k])
            person = {"score": float(scores[k]), "cell": (r, c),
                      "centre_xy": ((c + 0.5) * cell_w, (r + 0.5) * cell_h)}
            person.update({key: v[k] for key, v in bodies.items()})
            people.append(person)
        out.append(people)
    return out


def batch_persons(persons: list[dict]) -> dict[str, Tensor]:
    """Decoded persons -> the model's batched arguments: betas [N, S], global_orient [N, 3],
    body_pose [N, 3(J-1)], transl [N, 3] (``model(**batch_persons(people))``; N >= 1)."""
    return {k: torch.stack([p[k] for p in persons]) for k in ("betas", "global_orient", "body_pose", "transl")}
