"""`AnnyBody`: NAVER's Anny model (code Apache-2.0, MakeHuman assets CC0) behind the body interface.

The redistributable default body model: every body command works with no user-supplied file once the
optional ``anny`` package is installed (``pip install 'facet3d[body]'``; it bundles its data and pulls
warp-lang, about 500 MB together). Conventions, read off Anny's "local-ref" pose parameterisation:

* metres, Z up, the body faces -Y, its left side is +X; 13,718 vertices, 104 bones (``bone_labels``);
* ``betas`` [B, 6]: Anny's phenotypes (gender, age, muscle, weight, height, proportions) minus 0.5, so
  that zeros are the mid body as they are the mean body in SMPL; each phenotype lies in [0, 1];
* ``body_pose`` [B, 3 * 103]: axis-angle per bone after the root, in world-aligned axes at rest
  (as SMPL's); ``global_orient`` rotates about the root joint, which ``transl`` places (Anny's root
  delta is absolute in this parameterisation: zeros put the root joint at the origin);
* joints: the bone heads [B, 104, 3].

Anny builds its model data once per machine (about a minute) and caches it in ``~/.cache/anny``.
"""

from __future__ import annotations

import contextlib
import io
import logging

import torch
from torch import Tensor

from facet3d.core.errors import UsageError

from .lbs import rodrigues
from .models import BodyModel, BodyOutput

__all__ = ["AnnyBody", "INSTALL_HINT", "anny_available"]

INSTALL_HINT = "the default body model needs the 'anny' package: pip install 'facet3d[body]'"


def anny_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("anny") is not None


def _build_anny():
    """Anny with plain-torch skinning (differentiable on every device, no warp kernels to compile)."""
    try:
        import anny
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    logging.getLogger("anny").setLevel(logging.ERROR)
    # the first build writes its cache and prints progress through warnings/print: keep it off stdout
    with contextlib.redirect_stdout(io.StringIO()):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return anny.Anny(skinning_method="lbs")


class AnnyBody(BodyModel):
    """Anny as a `BodyModel` (module docstring for the parameter conventions)."""

    name = "anny"
    up = (0.0, 0.0, 1.0)
    front = (0.0, -1.0, 0.0)
    betas_range = (-0.5, 0.5)

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        model = _build_anny()
        self.anny = model.to(dtype)
        self.joint_names = list(model.bone_labels)
        self.beta_names = list(model.phenotype_labels)
        self.register_buffer("parents", torch.as_tensor(model.bone_parents, dtype=torch.long))
        self.register_buffer("faces", model.get_triangular_faces().to(torch.long).clone())
        self.source = "anny"

    @property
    def num_betas(self) -> int:
        return len(self.beta_names)

    @property
    def dtype(self) -> torch.dtype:
        return self.anny.template_vertices.dtype

    def vertex_joint(self) -> Tensor:
        w, idx = self.anny.vertex_bone_weights, self.anny.vertex_bone_indices  # [V, K] each
        return idx.gather(1, w.argmax(1, keepdim=True))[:, 0].long()

    def forward(self, betas: Tensor | None = None, global_orient: Tensor | None = None,
                body_pose: Tensor | None = None, transl: Tensor | None = None) -> BodyOutput:
        betas, global_orient, body_pose, transl = self.complete(betas, global_orient, body_pose, transl)
        bsz = betas.shape[0]
        rot = rodrigues(torch.cat([global_orient[:, None], body_pose.reshape(bsz, -1, 3)], 1))  # [B, J, 3, 3]
        delta = torch.zeros(bsz, self.num_joints, 4, 4, dtype=rot.dtype, device=rot.device)
        delta[:, :, :3, :3] = rot
        delta[:, :, 3, 3] = 1.0
        delta[:, 0, :3, 3] = transl
        out = self.anny(pose_parameters=delta, phenotype_kwargs=betas + 0.5)
        return BodyOutput(out["vertices"], out["bone_poses"][..., :3, 3])
