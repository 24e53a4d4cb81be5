"""What a body's joints mean: the joints a fit frees, hinge axes, pose priors and plausible random poses.

Roles (hip, knee, elbow...) are named once per joint layout (`ROLES`: Anny's bones, SMPL's 24 joints);
everything else is derived from the rest pose: a hinge's axis is ``seg x bend`` (``seg``: the joint to
its child joint, ``bend``: the way the limb flexes: knees back, elbows front), so positive angles flex.
Angles are axis-angle components in world-aligned axes at rest (`models` docstring). A layout with no
roles frees every joint under a plain L2 prior and has no random-pose sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from facet3d.core.errors import UsageError

__all__ = ["Skeleton", "skeleton_of", "ROLES"]

# role -> joint names; paired roles list left then right. The child joint gives the segment direction.
ROLES = {
    "anny": {
        "spine": ["spine05", "spine04", "spine03", "spine02", "spine01"], "neck": ["neck01"], "head": ["head"],
        "collar": ["clavicle.L", "clavicle.R"], "shoulder": ["upperarm01.L", "upperarm01.R"],
        "elbow": ["lowerarm01.L", "lowerarm01.R"], "wrist": ["wrist.L", "wrist.R"],
        "hip": ["upperleg01.L", "upperleg01.R"], "knee": ["lowerleg01.L", "lowerleg01.R"],
        "ankle": ["foot.L", "foot.R"],
    },
    "smpl": {
        "spine": ["spine1", "spine2", "spine3"], "neck": ["neck"], "head": ["head"],
        "collar": ["left_collar", "right_collar"], "shoulder": ["left_shoulder", "right_shoulder"],
        "elbow": ["left_elbow", "right_elbow"], "wrist": ["left_wrist", "right_wrist"],
        "hip": ["left_hip", "right_hip"], "knee": ["left_knee", "right_knee"],
        "ankle": ["left_ankle", "right_ankle"],
    },
}
CHILD = {"shoulder": "elbow", "elbow": "wrist", "hip": "knee", "knee": "ankle"}
HINGES = {"knee": "back", "elbow": "front"}
# flexion beyond this is penalised (softly: the fine stage's prior is weak, so a squat's data still wins);
# without it a forearm folded onto its upper arm hides inside it, a minimum fits fall into
HINGE_MAX = math.radians(130.0)
# prior stiffness per role (larger: stiffer); hinge roles weigh their flexion angle, off-axis is OFF_AXIS
STIFFNESS = {"spine": 4.0, "neck": 3.0, "head": 2.0, "collar": 8.0, "shoulder": 0.5, "elbow": 0.05,
             "wrist": 3.0, "hip": 0.5, "knee": 0.05, "ankle": 3.0}
OFF_AXIS = 20.0


def _unit(v: Tensor) -> Tensor:
    return v / v.norm().clamp_min(1e-12)


@dataclass
class Skeleton:
    """A model's free joints and what they mean (built by `skeleton_of`)."""

    free: list[int]  # joint indices (>= 1) a fit optimises; the rest stay at rest
    role: dict[int, str] = field(default_factory=dict)  # joint -> role
    hinge_axis: dict[int, Tensor] = field(default_factory=dict)  # joint -> unit axis [3] (float64)
    seg: dict[int, Tensor] = field(default_factory=dict)  # joint -> unit direction to its child at rest
    length: dict[int, float] = field(default_factory=dict)  # joint -> distance to its child at rest
    up: Tensor = None  # [3]
    front: Tensor = None  # [3]
    lateral: Tensor = None  # [3] up x front: the body's left for Anny and SMPL
    rest_joints: Tensor = None  # [J, 3] float64
    main_joints: list[int] = field(default_factory=list)  # root + the role joints: scored by MPJPE
    limbs: list[tuple[int, int]] = field(default_factory=list)  # (shoulder|hip, its elbow|knee)

    def stiffness(self, dtype=torch.float64, device=None) -> Tensor:
        """[len(free)] prior weight of each free joint."""
        return torch.tensor([STIFFNESS.get(self.role.get(j, ""), 1.0) for j in self.free], dtype=dtype,
                            device=device)

    def pose_prior(self, pose: Tensor) -> Tensor:
        """Energy of free-joint rotations pose [B, len(free), 3]: weighted L2, hinges held to their axis
        and range [0, 130 deg] (softly). -> [B]"""
        w = self.stiffness(pose.dtype, pose.device)
        energy = (w * (pose * pose).sum(-1)).sum(-1)  # [B]
        for i, j in enumerate(self.free):
            a = self.hinge_axis.get(j)
            if a is None:
                continue
            r, a = pose[:, i], a.to(pose)
            theta = r @ a
            off = r - theta[:, None] * a
            energy = energy + OFF_AXIS * (off * off).sum(-1) + 100.0 * (torch.relu(-theta) ** 2
                                                                       + torch.relu(theta - HINGE_MAX) ** 2)
        return energy

    def sample_pose(self, generator: torch.Generator) -> Tensor:
        """A random plausible pose: [len(free), 3] axis-angle for the free joints (roles needed)."""
        if not self.role:
            raise UsageError("this body model's joints have no known roles: no random plausible poses")
        u = lambda lo, hi: math.radians(lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64)))  # noqa: E731
        out = torch.zeros(len(self.free), 3, dtype=torch.float64)
        n_spine = sum(1 for r in self.role.values() if r == "spine")
        bend = u(-10, 25) * self.lateral * -1.0 + u(-10, 10) * self.front + u(-15, 15) * self.up
        for i, j in enumerate(self.free):
            role = self.role.get(j)
            side = 1.0 if float((self.rest_joints[j] - self.rest_joints[0]) @ self.lateral) > 0 else -1.0
            outward = side * self.lateral
            if role == "spine":
                out[i] = bend / n_spine
            elif role in ("neck", "head", "wrist", "ankle"):
                out[i] = torch.tensor([u(-12, 12), u(-12, 12), u(-12, 12)], dtype=torch.float64)
            elif role == "collar":
                out[i] = torch.tensor([u(-4, 4), u(-4, 4), u(-4, 4)], dtype=torch.float64)
            elif role == "shoulder":
                s = self.seg[j]
                out[i] = (u(-25, 35) * _unit(torch.linalg.cross(s, self.up)) + u(-15, 55)
                          * _unit(torch.linalg.cross(s, self.front)) + u(-20, 20) * s)
            elif role == "hip":
                s = self.seg[j]
                out[i] = (u(-15, 55) * _unit(torch.linalg.cross(s, self.front)) + u(-5, 20)
                          * _unit(torch.linalg.cross(s, outward)) + u(-10, 10) * s)
            elif role == "elbow":
                out[i] = u(0, 100) * self.hinge_axis[j]
            elif role == "knee":
                out[i] = u(0, 80) * self.hinge_axis[j]
        return out


def skeleton_of(model) -> Skeleton:
    """The `Skeleton` of a `BodyModel`, from `ROLES` and its rest pose."""
    from .smpl import SMPL_JOINT_NAMES

    names = list(model.joint_names)
    layout = "anny" if model.name == "anny" else ("smpl" if names == SMPL_JOINT_NAMES else None)
    up = _unit(torch.tensor(model.up, dtype=torch.float64))
    front = _unit(torch.tensor(model.front, dtype=torch.float64))
    with torch.no_grad():
        rest = model().joints[0].detach().to("cpu", torch.float64)
    sk = Skeleton(free=[], up=up, front=front, lateral=_unit(torch.linalg.cross(up, front)), rest_joints=rest)
    if layout is None:
        sk.free = list(range(1, len(names)))
        sk.main_joints = list(range(len(names)))
        return sk
    roles = ROLES[layout]
    for role, joints in roles.items():
        for k, name in enumerate(joints):
            j = names.index(name)
            sk.role[j] = role
            sk.free.append(j)
            if role in CHILD:
                child = names.index(roles[CHILD[role]][k])
                sk.seg[j] = _unit(rest[child] - rest[j])
                sk.length[j] = float((rest[child] - rest[j]).norm())
            if role in HINGES:
                bend = -front if HINGES[role] == "back" else front
                sk.hinge_axis[j] = _unit(torch.linalg.cross(sk.seg[j], bend))
    sk.free.sort()
    sk.main_joints = [0] + sk.free
    for root, hinge in (("shoulder", "elbow"), ("hip", "knee")):
        for a, b in zip(roles[root], roles[hinge]):
            sk.limbs.append((names.index(a), names.index(b)))
    return sk
