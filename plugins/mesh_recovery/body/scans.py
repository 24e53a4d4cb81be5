"""Synthetic body scans with known answers: a random plausible body from a model, sampled to noisy
points over its whole surface or as one depth sensor's view (ray cast), for tests, the demo and
`facet3d body sample`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .skeleton import Skeleton

__all__ = ["SyntheticScan", "random_body", "synthetic_scan"]


@dataclass
class SyntheticScan:
    points: np.ndarray  # [N, 3] float64, metres
    params: dict[str, np.ndarray]  # betas, global_orient, body_pose, transl (the truth)
    vertices: np.ndarray  # [V, 3] the true surface
    joints: np.ndarray  # [J, 3]
    sensor: np.ndarray | None  # [3] the depth sensor's centre (partial scans)


def random_body(model, skeleton: Skeleton, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random plausible parameters (batch 1, float64): shape, pose of the free joints, a yaw about
    the model's up axis with a small tilt, and a translation."""
    from .lbs import rodrigues

    r = lambda *s: torch.rand(*s, generator=generator, dtype=torch.float64)  # noqa: E731
    if model.betas_range is None:
        betas = (torch.randn(model.num_betas, generator=generator, dtype=torch.float64)).clamp(-2, 2)
    else:
        lo, hi = model.betas_range
        betas = lo + 0.15 + (hi - lo - 0.3) * r(model.num_betas)
    body_pose = torch.zeros(model.num_joints, 3, dtype=torch.float64)
    body_pose[skeleton.free] = skeleton.sample_pose(generator)
    yaw = rodrigues(skeleton.up * (2 * math.pi * float(r(()))))
    tilt = rodrigues(math.radians(10) * (2 * r(3) - 1) * (skeleton.lateral + skeleton.front))
    from facet3d.core.ops.rotations import matrix_to_axis_angle

    global_orient = matrix_to_axis_angle(yaw @ tilt)
    transl = 0.5 * (2 * r(3) - 1)
    return {"betas": betas[None], "global_orient": global_orient[None], "body_pose": body_pose[1:].reshape(1, -1),
            "transl": transl[None]}


def _descendants(parents: list[int], root: int) -> set[int]:
    out = {root}
    for j, p in enumerate(parents):  # parents come before children
        if p in out:
            out.add(j)
    return out


def passes_through_itself(vertices: np.ndarray, model, skeleton: Skeleton, gap: float = 0.015) -> bool:
    """Whether a forearm / hand or shank / foot comes within ``gap`` of a body part outside its own limb
    (interpenetration, or contact that a scan cannot tell apart): such poses are not plausible samples."""
    from facet3d.core.ops.neighbors import knn_points

    parents = model.parents.tolist()
    part = model.vertex_joint().cpu().numpy()
    for root, hinge in skeleton.limbs:
        limb = np.isin(part, sorted(_descendants(parents, root)))
        distal = np.isin(part, sorted(_descendants(parents, hinge)))
        if not distal.any() or limb.all():
            continue
        d, _ = knn_points(vertices[distal], vertices[~limb], 1)
        if float(d.min()) < gap:
            return True
    return False


def synthetic_scan(model, skeleton: Skeleton, seed: int = 0, n_points: int = 10_000, noise: float = 0.005,
                   partial: bool = False, sensor_distance: float = 2.5, image_size=(640, 480)) -> SyntheticScan:
    """A random plausible body (``seed``; poses whose forearms or shanks touch or pass through another
    part are drawn again) as ``n_points`` points with Gaussian noise of ``noise`` metres per axis: its whole surface, or (``partial``) what one depth sensor sees from in front of it
    (azimuth within 60 degrees of the body's front, 2.5 m away)."""
    from facet3d.core.ops.sampling import sample_mesh_surface

    g = torch.Generator().manual_seed(int(seed))
    like = dict(dtype=model.dtype, device=model.device)
    for _ in range(50):  # resample poses whose limbs pass through the body
        params = random_body(model, skeleton, g)
        with torch.no_grad():
            out = model(**{k: v.to(**like) for k, v in params.items()})
        verts = out.vertices[0].double().cpu()
        if not passes_through_itself(verts.numpy(), model, skeleton):
            break
    faces = model.faces.cpu()
    sensor = None
    if partial:
        pts, sensor = _depth_view(verts, faces, params, skeleton, g, sensor_distance, image_size)
        keep = torch.randperm(len(pts), generator=g)[:n_points]
        pts = pts[keep]
    else:
        pts = sample_mesh_surface(verts, faces, n_points, generator=g).points
    pts = pts + noise * torch.randn(pts.shape, generator=g, dtype=torch.float64)
    return SyntheticScan(pts.numpy(), {k: v[0].numpy() for k, v in params.items()}, verts.numpy(),
                         out.joints[0].double().cpu().numpy(), None if sensor is None else sensor.numpy())


def _depth_view(verts, faces, params, skeleton, g, distance, image_size):
    """Points a pinhole depth sensor sees of the mesh, and the sensor's centre."""
    from facet3d.core.ops.raycast import pixel_centres, raycast_mesh
    from facet3d.core.ops.rotations import axis_angle_to_matrix
    from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R

    R_body = axis_angle_to_matrix(torch.as_tensor(params["global_orient"][0], dtype=torch.float64))
    front = R_body @ skeleton.front
    up = skeleton.up
    front = front - (front @ up) * up
    az = math.radians(120.0 * (float(torch.rand((), generator=g, dtype=torch.float64)) - 0.5))
    cos, sin = math.cos(az), math.sin(az)
    side = torch.linalg.cross(up, front)
    view = cos * front + sin * side
    target = verts.mean(0)
    eye = target + distance * (view / view.norm()) + 0.3 * up
    H, W = image_size
    f = 0.5 * H / math.tan(math.radians(30.0))  # 60 degree vertical field of view: the whole body
    R = look_at_R(eye, target, up)
    cams = Cameras(intrinsics_matrix(f, f, (W - 1) / 2, (H - 1) / 2), R, -(R @ eye), (H, W))
    hit = raycast_mesh(verts, faces, cams)
    px = pixel_centres(H, W)
    ok = hit["hit"][0].reshape(-1)
    world = cams.unproject(px[ok][None], hit["depth"][0].reshape(-1)[ok][None])[0]
    return world, eye
