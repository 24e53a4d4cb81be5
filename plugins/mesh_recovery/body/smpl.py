"""`SMPLBody`: an SMPL-format body model as a torch module (shape, pose, global rotation and
translation -> vertices, joints), with the smplx argument names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .lbs import gemm_layout, joint_blend_shapes, lbs
from .model_files import BodyModelData, read_body_model
from .models import BodyModel, BodyOutput

__all__ = ["BodyOutput", "SMPLBody", "SMPL_JOINT_NAMES"]


# SMPL's 24 joints, in the order of the official files (used when a file has 24 joints)
SMPL_JOINT_NAMES = ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
                    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
                    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                    "left_wrist", "right_wrist", "left_hand", "right_hand"]
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


class SMPLBody(BodyModel):
    """Linear-blend-skinned body from `BodyModelData` (buffers follow ``.to(device, dtype)``).

    forward(betas [B, S], global_orient [B, 3], body_pose [B, 3(J-1)], transl [B, 3]) -> `BodyOutput`;
    missing arguments are zeros (the template in its rest pose).
    """

    def __init__(self, data: BodyModelData, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        self.register_buffer("v_template", t(data.v_template))
        self.register_buffer("shapedirs", gemm_layout(t(data.shapedirs)))  # [S, V * 3]
        self.register_buffer("posedirs", gemm_layout(t(data.posedirs)))  # [9(J-1), V * 3]
        self.register_buffer("J_regressor", t(data.J_regressor))
        self.register_buffer("lbs_weights", t(data.weights))
        j_template, j_dirs = joint_blend_shapes(t(data.J_regressor), t(data.v_template), self.shapedirs)
        self.register_buffer("J_template", j_template)  # [J, 3]
        self.register_buffer("J_dirs", j_dirs)  # [S, J * 3]
        self.register_buffer("parents", torch.as_tensor(data.parents, dtype=torch.long))
        self.register_buffer("faces", torch.as_tensor(data.faces, dtype=torch.long))
        self.source = data.source
        self.name = Path(data.source).name if data.source else "smpl"
        J = int(self.parents.shape[0])
        self.joint_names = SMPL_JOINT_NAMES if J == 24 else [f"joint{j:02d}" for j in range(J)]

    @classmethod
    def from_file(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> "SMPLBody":
        return cls(read_body_model(path), dtype)

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.v_template.dtype

    def vertex_joint(self) -> Tensor:
        return self.lbs_weights.argmax(1)

    def forward(self, betas: Tensor | None = None, global_orient: Tensor | None = None,
                body_pose: Tensor | None = None, transl: Tensor | None = None) -> BodyOutput:
        betas, global_orient, body_pose, transl = self.complete(betas, global_orient, body_pose, transl)
        bsz = betas.shape[0]
        pose = torch.cat([global_orient.reshape(bsz, 1, 3), body_pose.reshape(bsz, -1, 3)], 1)
        verts, joints = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs, self.J_regressor,
                            self.parents, self.lbs_weights, (self.J_template, self.J_dirs))
        return BodyOutput(verts + transl[:, None], joints + transl[:, None])
