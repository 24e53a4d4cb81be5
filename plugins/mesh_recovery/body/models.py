"""The one interface every parametric body follows, and `load_body_model` (a path or ``anny``).

A `BodyModel` is a torch module: forward(betas [B, S], global_orient [B, 3], body_pose [B, 3(J-1)],
transl [B, 3]) -> `BodyOutput` (vertices [B, V, 3], joints [B, J, 3]); missing arguments are zeros.
It carries ``faces`` [F, 3], ``parents`` [J] (the kinematic tree, root -1), ``joint_names``, the
rest pose's ``up`` and ``front`` directions, and ``betas_range`` (None: Gaussian shape space, as
SMPL's; (lo, hi): a bounded one, as Anny's phenotypes). Poses are axis-angle in world-aligned axes at
rest (SMPL's convention), so priors, joint limits and random plausible poses (`skeleton`) are written
once for every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from facet3d.core.errors import UsageError

__all__ = ["BodyModel", "BodyOutput", "load_body_model", "DEFAULT_MODEL"]

DEFAULT_MODEL = "anny"


@dataclass
class BodyOutput:
    vertices: Tensor  # [B, V, 3]
    joints: Tensor  # [B, J, 3]


class BodyModel(nn.Module):
    """Base of the body models (module docstring). Subclasses set the attributes and `forward`."""

    name: str = "body"
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    front: tuple[float, float, float] = (0.0, 0.0, 1.0)
    betas_range: tuple[float, float] | None = None
    joint_names: list[str]
    parents: Tensor  # [J]
    faces: Tensor  # [F, 3]

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def num_betas(self) -> int:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.faces.device

    def complete(self, betas, global_orient, body_pose, transl) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four parameter tensors with zeros for the missing ones, their sizes checked."""
        given = [x for x in (betas, global_orient, body_pose, transl) if x is not None]
        bsz = given[0].shape[0] if given else 1
        like = dict(dtype=self.dtype, device=self.device)
        zeros = lambda n: torch.zeros(bsz, n, **like)  # noqa: E731
        betas = zeros(self.num_betas) if betas is None else betas
        if betas.shape[-1] > self.num_betas:
            raise UsageError(f"{betas.shape[-1]} shape parameters given; the model has {self.num_betas}")
        if betas.shape[-1] < self.num_betas:
            betas = torch.cat([betas, zeros(self.num_betas - betas.shape[-1])], -1)
        n_pose = 3 * (self.num_joints - 1)
        body_pose = zeros(n_pose) if body_pose is None else body_pose
        if body_pose.shape[-1] != n_pose:
            raise UsageError(f"body_pose needs {n_pose} values (3 per joint after the root) for the "
                             f"{self.name} model, got {body_pose.shape[-1]}")
        global_orient = zeros(3) if global_orient is None else global_orient
        transl = zeros(3) if transl is None else transl
        return betas, global_orient, body_pose, transl

    def vertex_joint(self) -> Tensor:
        """[V] the joint that moves each vertex most (its largest skinning weight): body parts."""
        raise NotImplementedError


def load_body_model(spec: str | Path = DEFAULT_MODEL, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> BodyModel:
    """``anny`` (the bundled default, needs the optional package) or an SMPL-format .pkl/.npz path."""
    if str(spec).lower() == "anny":
        from .anny_body import AnnyBody

        return AnnyBody(dtype).to(device)
    from .smpl import SMPLBody

    return SMPLBody.from_file(spec, dtype).to(device)
