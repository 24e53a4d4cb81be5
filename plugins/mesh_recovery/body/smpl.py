"""`SMPLBody`: an SMPL-format body model as a torch module (shape, pose, global rotation and
translation -> vertices, joints), with the smplx argument names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from facet3d.core.errors import UsageError

from .lbs import lbs
from .model_files import BodyModelData, read_body_model

__all__ = ["BodyOutput", "SMPLBody"]


@dataclass
class BodyOutput:
    vertices: Tensor  # [B, V, 3]
    joints: Tensor  # [B, J, 3]


class SMPLBody(nn.Module):
    """Linear-blend-skinned body from `BodyModelData` (buffers follow ``.to(device, dtype)``).

    forward(betas [B, S], global_orient [B, 3], body_pose [B, 3(J-1)], transl [B, 3]) -> `BodyOutput`;
    missing arguments are zeros (the template in its rest pose).
    """

    def __init__(self, data: BodyModelData, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        self.register_buffer("v_template", t(data.v_template))
        self.register_buffer("shapedirs", t(data.shapedirs))
        self.register_buffer("posedirs", t(data.posedirs))
        self.register_buffer("J_regressor", t(data.J_regressor))
        self.register_buffer("lbs_weights", t(data.weights))
        self.register_buffer("parents", torch.as_tensor(data.parents, dtype=torch.long))
        self.register_buffer("faces", torch.as_tensor(data.faces, dtype=torch.long))
        self.source = data.source

    @classmethod
    def from_file(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> "SMPLBody":
        return cls(read_body_model(path), dtype)

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    def forward(self, betas: Tensor | None = None, global_orient: Tensor | None = None,
                body_pose: Tensor | None = None, transl: Tensor | None = None) -> BodyOutput:
        given = [x for x in (betas, global_orient, body_pose, transl) if x is not None]
        bsz = given[0].shape[0] if given else 1
        like = dict(dtype=self.v_template.dtype, device=self.v_template.device)
        betas = torch.zeros(bsz, self.num_betas, **like) if betas is None else betas
        if betas.shape[-1] > self.num_betas:
            raise UsageError(f"{betas.shape[-1]} shape parameters given; the model has {self.num_betas}")
        global_orient = torch.zeros(bsz, 3, **like) if global_orient is None else global_orient
        body_pose = torch.zeros(bsz, 3 * (self.num_joints - 1), **like) if body_pose is None else body_pose
        if body_pose.shape[-1] != 3 * (self.num_joints - 1):
            raise UsageError(f"body_pose needs {3 * (self.num_joints - 1)} values (3 per joint after the root), "
                             f"got {body_pose.shape[-1]}")
        pose = torch.cat([global_orient.reshape(bsz, 1, 3), body_pose.reshape(bsz, -1, 3)], 1)
        verts, joints = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs, self.J_regressor,
                            self.parents, self.lbs_weights)
        if transl is not None:
            verts = verts + transl[:, None]
            joints = joints + transl[:, None]
        return BodyOutput(verts, joints)
