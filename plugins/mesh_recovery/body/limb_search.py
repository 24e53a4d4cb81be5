"""Re-seeding limbs a body fit left in a wrong place (``fit.py``'s limb search).

Gradients cannot move an arm that lies behind the torso, or a forearm folded the wrong way whose points
the head explains well enough: the energy is flat or rising on every path out. The search scores, for
each arm and leg, a few hundred placements of the whole limb at once (upper segment aimed along a sphere
of directions, twisted, elbow / knee bent), ranks them with the exact change they make to the fit's data
terms (only the limb's vertices move, so only the points near it need looking at), and lets the fit's own
energy decide between the best few, each refined on the limb alone, and the limb as it was.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from facet3d.core.ops.rotations import axis_angle_to_matrix, matrix_to_axis_angle, rotation_between

__all__ = ["limb_search", "LimbScore", "limb_placements", "sphere_directions", "suspect"]

TWISTS = (0.0, 90.0, 180.0, 270.0)  # degrees about the upper segment: the plane the elbow / knee bends in
FLEXES = (45.0, 90.0, 130.0)  # elbow / knee bends tried besides straight
DIRECTIONS = 16  # upper-segment directions tried, besides its own
CHUNK = 16  # placements posed per batch
MAX_LIMB_VERTICES = 200  # vertices scored per limb, evenly thinned
MAX_NEAR_POINTS = 1500  # scan points near the limb scored, evenly thinned
SUSPECT_VERTICES = 0.05  # a limb is searched when this share of its vertices is far from the scan ...
SUSPECT_POINTS = 0.005  # ... or this share of the scan, far from the body, lies within its reach


def sphere_directions(n: int) -> np.ndarray:
    """[n, 3] unit vectors spread evenly over the sphere (a Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (3 - math.sqrt(5)) * k
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def limb_placements(current: Tensor, seg: Tensor, hinge_axis: Tensor) -> tuple[Tensor, Tensor]:
    """Placements of one limb: (upper [P, 3], hinge [P, 3]) axis-angle rows of the fit's pose.

    current: [3] the upper segment's rotation now; seg: [3] its rest direction; hinge_axis: [3]. The
    directions are spread over the sphere in the parent's frame (evenly, so any frame serves)."""
    dirs = [axis_angle_to_matrix(current) @ seg]
    dirs += [torch.as_tensor(d) for d in sphere_directions(DIRECTIONS)]
    uppers, hinges = [], []
    for d in dirs:
        aim = rotation_between(seg, d / d.norm())
        for t_i, twist in enumerate(TWISTS):
            r = matrix_to_axis_angle(aim @ axis_angle_to_matrix(math.radians(twist) * seg))
            for flex in (0.0,) + FLEXES if t_i == 0 else FLEXES:  # a straight limb's twist hardly shows
                uppers.append(r)
                hinges.append(math.radians(flex) * hinge_axis)
    return torch.stack(uppers), torch.stack(hinges)


def _gmof(d2: Tensor, sigma2: float) -> Tensor:
    return d2 / (d2 + sigma2)


class LimbScore:
    """The change one limb's placement makes to the fit's data terms (scan -> body and body -> scan,
    Geman-McClure at ``sigma``) plus its pose prior: only the limb's vertices move, so only the scan
    points near it are looked at (both thinned evenly, each kept one standing for those dropped).

    surfaces: pose [B, K, 3] -> vertices [B, V, 3]; pose: [K, 3] now; rows: the limb's (upper, hinge)
    rows; limb_vertices: [L] indices of the vertices the limb moves; points: [N, 3] the scan; facing:
    vertices [B, V, 3] -> [B, V] bool (partial scans: body -> scan counts the vertices facing the
    sensor), None for full scans; prior: pose [B, K, 3] -> [B], weighted as in the fit's energy."""

    def __init__(self, surfaces, pose: Tensor, rows: tuple[int, int], limb_vertices: Tensor, points: Tensor,
                 sigma: float, facing, prior) -> None:
        self.surfaces, self.pose, self.rows, self.facing, self.prior = surfaces, pose.detach(), rows, facing, prior
        self.s2 = sigma * sigma
        with torch.no_grad():
            now = surfaces(self.pose[None])[0]
            rest = torch.ones(len(now), dtype=torch.bool, device=now.device)
            rest[limb_vertices] = False
            centre, reach = _limb_reach(now[limb_vertices])  # only points the limb can come near matter
            self.near = points[(points - centre).norm(dim=1) < reach + 3 * sigma]
            self.sub = self.near[:: max(1, -(-len(self.near) // MAX_NEAR_POINTS))]
            self.limb_sub = limb_vertices[:: -(-len(limb_vertices) // MAX_LIMB_VERTICES)]
            self.w_pts = len(self.near) / max(1, len(self.sub)) / len(points)
            self.w_limb = len(limb_vertices) / len(self.limb_sub) / len(now)
            self.d_rest = (torch.cdist(self.sub, now[rest]).min(1).values if len(self.sub)
                           else self.sub.new_zeros(0))

    def __call__(self, uppers: Tensor, hinges: Tensor) -> Tensor:
        """uppers, hinges: [B, 3] the limb's rows -> [B] (differentiable)."""
        p = self.pose[None].repeat(len(uppers), 1, 1)
        p = p.index_copy(1, torch.tensor(self.rows, device=p.device), torch.stack([uppers, hinges], 1))
        score = self.prior(p)
        if len(self.near) == 0:
            return score
        v = self.surfaces(p)  # [B, V, 3]
        limb = v[:, self.limb_sub]  # [B, L, 3]
        d_pts = torch.cdist(self.sub[None].expand(len(v), -1, -1), limb).min(2).values  # [B, M]
        s2m = self.w_pts * _gmof(torch.minimum(d_pts, self.d_rest[None]) ** 2, self.s2).sum(1)
        d_limb = torch.cdist(limb, self.near[None].expand(len(v), -1, -1)).min(2).values  # [B, L]
        w = self.facing(v.detach())[:, self.limb_sub].to(d_limb) if self.facing else torch.ones_like(d_limb)
        return score + s2m + self.w_limb * (_gmof(d_limb ** 2, self.s2) * w).sum(1)

    def rank(self, uppers: Tensor, hinges: Tensor) -> Tensor:
        """[P] scores of many placements, in batches."""
        with torch.no_grad():
            return torch.cat([self(uppers[lo:lo + CHUNK], hinges[lo:lo + CHUNK])
                              for lo in range(0, len(uppers), CHUNK)])

    def refine(self, uppers: Tensor, hinges: Tensor, steps: int, lr: float = 0.05) -> tuple[Tensor, Tensor]:
        """Adam steps on placements [B, 3] each (together: the scores are independent)."""
        u = uppers.detach().clone().requires_grad_(True)
        h = hinges.detach().clone().requires_grad_(True)
        optim = torch.optim.Adam([u, h], lr=lr)
        for _ in range(steps):
            optim.zero_grad(set_to_none=True)
            self(u, h).sum().backward()
            optim.step()
        return u.detach(), h.detach()


def _limb_reach(vertices: Tensor) -> tuple[Tensor, float]:
    """Centre [3] and radius of the ball a limb's vertices [L, 3] can sweep about their centre (about)."""
    centre = vertices.mean(0)
    return centre, 2 * float((vertices - centre).norm(dim=1).max())


def suspect(vertices: Tensor, limb_vertices: Tensor, points: Tensor, far: float,
            facing: Callable[[Tensor], Tensor] | None) -> bool:
    """Whether a limb looks misplaced: many of its vertices [V, 3] (those facing the sensor, with
    ``facing``) lie farther than ``far`` from the scan, or many scan points [N, 3] farther than ``far``
    from the body lie within its reach. Fits whose limbs are all in place skip the search."""
    from facet3d.core.ops.neighbors import knn_points

    limb = vertices[limb_vertices]
    d_limb = knn_points(limb, points, 1)[0][:, 0]
    if facing is not None:
        d_limb = d_limb[facing(vertices[None])[0][limb_vertices]]
    if len(d_limb) and float((d_limb > far).float().mean()) > SUSPECT_VERTICES:
        return True
    d_pts = knn_points(points, vertices, 1)[0][:, 0]
    centre, radius = _limb_reach(limb)
    loose = points[d_pts > far]
    return int(((loose - centre).norm(dim=1) < radius).sum()) > SUSPECT_POINTS * len(points)


def limb_search(params, energy: Callable[[float], Tensor], points: Tensor, sigma: float, far: float,
                facing: Callable[[Tensor], Tensor] | None, prior: Callable[[Tensor], Tensor], gain: float,
                keep_best: int = 5, refine: int = 12, final: int = 3) -> list[str]:
    """Try each arm and leg of a fit (``params``: fit._Params) that looks misplaced (`suspect`) in its
    `limb_placements`: the ``keep_best`` by `LimbScore` and the limb as it is get ``refine`` steps on
    that score together; the fit's own ``energy`` (at robust scale ``sigma``) of the ``final`` best
    decides, and the limb moves when one lowers it by ``gain``. Returns the names of the moved joints."""
    sk, model = params.skeleton, params.model
    slot = {j: i for i, j in enumerate(sk.free)}
    part = model.vertex_joint()
    parents = model.parents.tolist()
    moved = []
    for root, hinge in sk.limbs:
        i, k = slot[root], slot[hinge]
        below = {root}
        for j, p in enumerate(parents):  # parents come before children
            if p in below:
                below.add(j)
        limb_vertices = torch.nonzero(torch.isin(part, torch.tensor(sorted(below), device=part.device)))[:, 0]
        with torch.no_grad():
            if not suspect(params.surfaces(params.pose[None])[0], limb_vertices, points, far, facing):
                continue
            keep = params.pose[[i, k]].clone()
            original = float(energy(sigma))
        score = LimbScore(params.surfaces, params.pose, (i, k), limb_vertices, points, sigma, facing, prior)
        uppers, hinges = limb_placements(keep[0].double(), sk.seg[root], sk.hinge_axis[hinge])
        uppers, hinges = uppers.to(keep), hinges.to(keep)
        order = torch.argsort(score.rank(uppers, hinges))[:keep_best]
        u, h = score.refine(torch.cat([keep[:1], uppers[order]]), torch.cat([keep[1:], hinges[order]]), refine)
        best = (original, keep[0], keep[1])
        with torch.no_grad():
            for n in torch.argsort(score.rank(u, h))[:final].tolist():
                params.pose[i], params.pose[k] = u[n], h[n]
                e = float(energy(sigma))
                if e < best[0] - (gain if best[0] == original else 0.0):
                    best = (e, u[n], h[n])
            params.pose[i], params.pose[k] = best[1], best[2]
        if best[0] != original:
            moved.append(model.joint_names[root])
    return moved
