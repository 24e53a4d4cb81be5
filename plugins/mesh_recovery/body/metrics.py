"""Body-recovery metrics in the field's definitions (HMR / SPIN / ROMP evaluation code), millimetres.

* MPJPE: mean per-joint position error after aligning the root joints (``root`` index), or none;
* PA-MPJPE: MPJPE after the similarity Procrustes alignment (rotation, uniform scale, translation)
  of the predicted joints onto the ground truth, per sample;
* PVE: mean per-vertex error (same root alignment as MPJPE when joints are given);
* per-joint errors: the mean over the batch of each joint's error.

Inputs are in metres (``[B, N, 3]`` or ``[N, 3]`` arrays); outputs in millimetres.
"""

from __future__ import annotations

import numpy as np

__all__ = ["similarity_procrustes", "mpjpe", "pa_mpjpe", "pve", "per_joint_errors"]

MM = 1000.0


def _batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 2 else x


def similarity_procrustes(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred`` [B, N, 3] moved onto ``gt`` by the best rotation, uniform scale and translation
    (least squares; Umeyama 1991, reflections excluded)."""
    p, g = _batch(pred), _batch(gt)
    mp, mg = p.mean(1, keepdims=True), g.mean(1, keepdims=True)
    pc, gc = p - mp, g - mg
    cov = np.einsum("bni,bnj->bij", gc, pc)  # [B, 3, 3]
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))  # no reflection
    fix = np.ones_like(s)
    fix[:, -1] = d
    rot = u @ (fix[..., None] * vt)
    scale = (s * fix).sum(1) / (pc ** 2).sum((1, 2))
    return scale[:, None, None] * np.einsum("bij,bnj->bni", rot, pc) + mg


def _root_aligned(pred: np.ndarray, gt: np.ndarray, root: int | None) -> tuple[np.ndarray, np.ndarray]:
    p, g = _batch(pred), _batch(gt)
    if root is None:
        return p, g
    return p - p[:, root:root + 1], g - g[:, root:root + 1]


def mpjpe(pred: np.ndarray, gt: np.ndarray, root: int | None = 0) -> float:
    """Mean per-joint position error in mm after root alignment (``root=None``: none)."""
    p, g = _root_aligned(pred, gt, root)
    return float(np.linalg.norm(p - g, axis=-1).mean() * MM)


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE after similarity Procrustes alignment per sample, in mm."""
    g = _batch(gt)
    return float(np.linalg.norm(similarity_procrustes(pred, g) - g, axis=-1).mean() * MM)


def pve(pred_verts: np.ndarray, gt_verts: np.ndarray, pred_joints: np.ndarray | None = None,
        gt_joints: np.ndarray | None = None, root: int = 0) -> float:
    """Mean per-vertex error in mm; with joints, both meshes are first moved so their root joints meet."""
    p, g = _batch(pred_verts), _batch(gt_verts)
    if pred_joints is not None and gt_joints is not None:
        p = p - _batch(pred_joints)[:, root:root + 1]
        g = g - _batch(gt_joints)[:, root:root + 1]
    return float(np.linalg.norm(p - g, axis=-1).mean() * MM)


def per_joint_errors(pred: np.ndarray, gt: np.ndarray, root: int | None = 0) -> np.ndarray:
    """Each joint's mean error over the batch, in mm: [N]."""
    p, g = _root_aligned(pred, gt, root)
    return np.linalg.norm(p - g, axis=-1).mean(0) * MM
