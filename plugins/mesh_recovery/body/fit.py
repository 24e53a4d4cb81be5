"""Recovering a body from 3D points: an SMPLify-style optimisation in 3D (``facet3d body fit``).

Stages (``iters`` split 20/40/40):
0. orientation from the data: the model's rest surface is aligned by trimmed ICP from 32 starts (up
   along each sign of the data's two main axes, 8 turns about it); the best robust distance wins, and
   it and its half turn (front and back look alike to a rigid fit) both go through stages 1-2;
1. global rotation, translation and shape, pose held at rest;
2. + every free joint (`skeleton`), under a pose prior, the robust scale narrowing from 5 sigma to
   sigma (wide first, so limbs far from their points still feel them); the lower energy goes on;
   then a limb search (`limb_search`) re-seeds arms and legs left in a wrong place, settles them and
   looks once more;
3. the same with a weak prior and point-to-plane distances, steps decayed to zero: the fine fit;
4. a fit that still leaves loose points or vertices (`_loose_share` above `RETRY_LOOSE`) poses its limbs
   again from rest (body kept) through stages 2-3, and the lower final energy wins.

Energy: data terms scan -> body (nearest vertex, point-to-plane blended with point-to-point) and body ->
scan (every vertex; with ``partial``, only the vertices facing the sensor), each through a Geman-McClure
robust function of scale ``sigma``; a pose prior (per-joint stiffness, hinged knees and elbows held to
their axis and to [0, 130] degrees) and a shape prior (L2 in SMPL's Gaussian space; Anny's bounded
phenotypes through a sigmoid). Everything is in metres: `scan_units` guesses the scan's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import InputError, UsageError
from facet3d.core.ops.rotations import rotation_between
from facet3d.core.progress import ProgressFn

from .lbs import rodrigues
from .skeleton import Skeleton, skeleton_of

__all__ = ["FitOptions", "BodyFit", "fit_body", "scan_units", "UNITS"]

UNITS = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}
MAX_STARTS = 2  # placements taken through shape and pose (more cost as much each and rarely won)
SIGMA_START = 5.0  # the pose stage's robust scale starts at 5 sigma
LIMB_SIGMA = 3.0  # the limb search compares energies at this many sigma
LIMB_SEARCH_MIN_ITERS = 100  # quick, rough fits skip the limb search (it costs a few seconds)
LIMB_GAIN = 0.002  # ... and moves a limb for a clear gain only (twists of a round limb score alike)
PRIOR_WEIGHT = {"shape": 0.0, "pose": 2e-2, "fine": 2e-3}  # the pose prior's weight in each stage
LIMB_ROUNDS = 2  # searches, each after the last one's moves settled
RETRY_LOOSE = 0.002  # a fit with more loose points + vertices (farther than 2 sigma) poses its limbs again


@dataclass
class FitOptions:
    iters: int = 300
    partial: bool = False  # one depth view: body -> scan only where the body faces the sensor
    sensor: tuple[float, float, float] | None = None  # metres, the scan's frame; None: the origin
    fixed_betas: dict[int, float] = field(default_factory=dict)  # index -> value held (Anny's gender)
    max_points: int = 10_000
    sigma: float = 0.02  # robust scale, metres
    seed: int = 0

    def check(self) -> None:
        if self.iters < 10:
            raise UsageError(f"--iters must be at least 10, got {self.iters}")
        if self.max_points < 100:
            raise UsageError(f"--points must be at least 100, got {self.max_points}")


@dataclass
class BodyFit:
    params: dict[str, np.ndarray]  # betas, global_orient, body_pose, transl (the model's own names)
    vertices: np.ndarray  # [V, 3] metres
    joints: np.ndarray  # [J, 3]
    faces: np.ndarray  # [F, 3]
    vertex_residual: np.ndarray  # [V] distance of each vertex to the nearest scan point
    vertex_seen: np.ndarray  # [V] bool: faces the sensor (all True for full scans)
    point_residual: np.ndarray  # [N] distance of each (used) scan point to the nearest vertex
    points: np.ndarray  # [N, 3] the scan points used
    energy: list[dict] = field(default_factory=list)
    orientation: dict = field(default_factory=dict)
    seconds: float = 0.0


def scan_units(points: np.ndarray) -> tuple[str, float]:
    """Guess a scan's unit from its extent along its main axis (a body is 0.5-2.6 m tall)."""
    p = points - points.mean(0)
    axis = np.linalg.svd(p[:: max(1, len(p) // 5000)], full_matrices=False)[2][0]
    extent = float(np.ptp(p @ axis))
    for name in ("m", "dm", "cm", "mm", "in"):
        if 0.5 <= extent * UNITS[name] <= 2.6:
            return name, UNITS[name]
    raise InputError(f"the scan spans {extent:.4g} units along its main axis: no unit (m, dm, cm, mm, in) "
                     f"makes that a human body; give --units")


def _gmof(d2: Tensor, sigma2: float) -> Tensor:
    """Geman-McClure of squared distances, normalised to [0, 1)."""
    return d2 / (d2 + sigma2)


def _nearest(query, points):
    """(distance [M], index [M]) of each query's nearest point (core's knn: a KD-tree on the CPU,
    Triton on CUDA); numpy in -> numpy out, tensors are detached (indices only drive the terms)."""
    from facet3d.core.ops.neighbors import knn_points

    if isinstance(query, Tensor):
        query, points = query.detach(), points.detach()
    d, i = knn_points(query, points, 1)
    return d[:, 0], i[:, 0]


def _vertex_normals(v: Tensor, faces: Tensor) -> Tensor:
    from facet3d.core.structures.meshes import Meshes

    return Meshes([v], [faces]).verts_normals_packed()


def _kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R, t minimising |R src + t - dst| (rows paired)."""
    ms, md = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - ms).T @ (dst - md))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    R = vt.T @ np.diag([1, 1, d]) @ u.T
    return R, md - R @ ms


def _facing(x: np.ndarray, n: np.ndarray, sensor: np.ndarray) -> np.ndarray:
    return ((sensor - x) * n).sum(1) > 0


def initial_orientation(rest: np.ndarray, rest_normals: np.ndarray, up: np.ndarray, scan: np.ndarray,
                        partial: bool, sensor: np.ndarray, sigma: float, icp_iters: int = 15) -> dict:
    """Best rigid placement of the rest surface on the scan (module docstring, stage 0).

    rest, rest_normals: [M, 3] (a subsample); scan: [N, 3]. -> the 32 results {R [3, 3], t [3], score,
    up (the data axis tried as up)}, best first
    """
    c = scan.mean(0)
    axes = np.linalg.svd(scan - c, full_matrices=False)[2]
    cut = 4 * sigma
    found = []
    for up_data in (axes[0], -axes[0], axes[1], -axes[1]):
        align = rotation_between(torch.as_tensor(up / np.linalg.norm(up)), torch.as_tensor(up_data)).numpy()
        for k in range(8):
            turn = rodrigues(torch.as_tensor(up_data * (2 * math.pi * k / 8))).numpy()
            R = turn @ align
            t = c - R @ rest.mean(0)
            for _ in range(icp_iters):
                x = rest @ R.T + t
                nx = rest_normals @ R.T
                d_sm, i_sm = _nearest(scan, x)
                use = _facing(x, nx, sensor) if partial else np.ones(len(x), bool)
                d_ms, i_ms = _nearest(x[use], scan)
                tau = max(3 * np.median(np.concatenate([d_sm, d_ms])), cut)
                a = d_sm < tau
                b = d_ms < tau
                src = np.concatenate([rest[i_sm[a]], rest[use][b]])
                dst = np.concatenate([scan[a], scan[i_ms[b]]])
                if len(src) < 10:
                    break
                R, t = _kabsch(src, dst)
            x = rest @ R.T + t
            use = _facing(x, rest_normals @ R.T, sensor) if partial else np.ones(len(x), bool)
            score = float(np.minimum(_nearest(scan, x)[0], cut).mean()
                          + np.minimum(_nearest(x[use], scan)[0], cut).mean())
            found.append({"R": R, "t": t, "score": score, "up": up_data})
    return sorted(found, key=lambda c: c["score"])


class _Params(torch.nn.Module):
    """What stages 1-3 optimise: raw shape, a rotation update, translation, free-joint rotations."""

    def __init__(self, model, skeleton: Skeleton, R0: np.ndarray, t0: np.ndarray, fixed: dict[int, float]):
        super().__init__()
        like = dict(dtype=model.dtype, device=model.device)
        self.model, self.skeleton = model, skeleton
        self.z = torch.nn.Parameter(torch.zeros(model.num_betas, **like))
        self.dR = torch.nn.Parameter(torch.zeros(3, **like))
        self.t = torch.nn.Parameter(torch.as_tensor(t0, **like).clone())
        self.pose = torch.nn.Parameter(torch.zeros(len(skeleton.free), 3, **like))
        self.register_buffer("R0", torch.as_tensor(R0, **like))
        self.fixed = fixed
        self.free_index = torch.as_tensor(skeleton.free, device=model.device) - 1

    def betas(self) -> Tensor:
        rng = self.model.betas_range
        b = self.z if rng is None else rng[0] + (rng[1] - rng[0]) * torch.sigmoid(self.z)
        if self.fixed:  # held values (their raw entries get gradients that change nothing)
            b = b.clone()
            for i, v in self.fixed.items():
                b[i] = v
        return b

    def body_pose(self) -> Tensor:
        full = torch.zeros(self.model.num_joints - 1, 3, dtype=self.pose.dtype, device=self.pose.device)
        return full.index_copy(0, self.free_index, self.pose).reshape(1, -1)

    def rotation(self) -> Tensor:
        return rodrigues(self.dR) @ self.R0

    def surfaces(self, pose: Tensor) -> Tensor:
        """Vertices [B, V, 3] in the scan's frame for free-joint rotations pose [B, K, 3] (this shape)."""
        b = pose.shape[0]
        full = torch.zeros(b, self.model.num_joints - 1, 3, dtype=pose.dtype, device=pose.device)
        full = full.index_copy(1, self.free_index, pose)
        out = self.model(betas=self.betas()[None].expand(b, -1), body_pose=full.reshape(b, -1))
        return out.vertices @ self.rotation().T + self.t

    def surface(self) -> tuple[Tensor, Tensor]:
        """Vertices [V, 3] and joints [J, 3] in the scan's frame."""
        out = self.model(betas=self.betas()[None], body_pose=self.body_pose())
        R = self.rotation()
        return out.vertices[0] @ R.T + self.t, out.joints[0] @ R.T + self.t


def fit_body(points: np.ndarray, model, options: FitOptions | None = None,
             progress: ProgressFn | None = None) -> BodyFit:
    """Fit ``model`` (a `BodyModel`) to scan ``points`` [N, 3] in metres (module docstring)."""
    opt = options or FitOptions()
    opt.check()
    start = time.perf_counter()
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) < 100:
        raise InputError(f"a body fit needs at least 100 finite points, the scan has {len(pts)}")
    rng = np.random.default_rng(opt.seed)
    if len(pts) > opt.max_points:
        pts = pts[rng.choice(len(pts), opt.max_points, replace=False)]
    sensor = np.zeros(3) if opt.sensor is None else np.asarray(opt.sensor, dtype=np.float64)
    for i in opt.fixed_betas:
        if not 0 <= i < model.num_betas:
            raise UsageError(f"shape parameter {i} does not exist (the model has {model.num_betas})")
    skeleton = skeleton_of(model)
    like = dict(dtype=model.dtype, device=model.device)
    faces = model.faces

    # stage 0: orientation and placement of the rest surface
    with torch.no_grad():
        rest = model().vertices[0]
        rest_n = _vertex_normals(rest, faces)
    sub = rng.choice(len(rest), min(1500, len(rest)), replace=False)
    scan_sub = pts[rng.choice(len(pts), min(3000, len(pts)), replace=False)]
    placements = initial_orientation(rest[sub].double().cpu().numpy(), rest_n[sub].double().cpu().numpy(),
                                     np.asarray(model.up, dtype=np.float64), scan_sub, opt.partial, sensor,
                                     opt.sigma)
    P = torch.as_tensor(pts, **like)
    data = _Data(P, torch.as_tensor(sensor, **like), opt.partial, faces)
    n1 = max(1, round(0.2 * opt.iters))
    n2 = max(1, round(0.4 * opt.iters))
    n3 = opt.iters - n1 - n2
    ticks = _Ticks(progress, 0)
    # rigid fits of a rest body rank placements poorly (front and back look alike, limbs mislead):
    # the best few distinct ones and the best turned half round go through shape and pose
    starts = _distinct_starts(placements, pts.mean(0), MAX_STARTS)
    ticks.total = len(starts) * (n1 + n2) + n3
    runs = []
    for R0, t0 in starts:
        params = _Params(model, skeleton, R0, t0, opt.fixed_betas)
        optim = torch.optim.Adam([{"params": [params.dR], "lr": 0.01}, {"params": [params.t], "lr": 0.005},
                                  {"params": [params.z], "lr": 0.05}, {"params": [params.pose], "lr": 0.0}])
        history: list[dict] = []
        _stage(params, data, optim, "shape", n1, opt, history, ticks)
        optim.param_groups[3]["lr"] = 0.03
        energy = _stage(params, data, optim, "pose", n2, opt, history, ticks)
        runs.append((energy, params, optim, history))
    best = min(range(len(runs)), key=lambda k: runs[k][0])
    _, params, optim, history = runs[best]
    moved = _limbs_and_fine(params, data, optim, opt, history, ticks, n2, n3)
    retried = None
    if opt.iters >= LIMB_SEARCH_MIN_ITERS and _loose_share(params, data, 2 * opt.sigma) > RETRY_LOOSE:
        # a limb is still out of place (the pose stage can end in either of two basins on a float's
        # rounding): pose the limbs again from rest with the body kept, and keep the lower energy
        again, optim2, history2 = _limbs_from_rest(params, opt, skeleton)
        ticks.total += n2 + n3
        _stage(again, data, optim2, "pose", n2, opt, history2, ticks)
        moved2 = _limbs_and_fine(again, data, optim2, opt, history2, ticks, n2, n3)
        with torch.no_grad():
            e1, e2 = (float(_energy(p, data, "fine", opt.sigma)[0]) for p in (params, again))
        retried = {"energy_first": e1, "energy_again": e2, "kept": "again" if e2 < e1 else "first"}
        if e2 < e1:
            params, history, moved = again, history + history2, moved2
    init = {"score": placements[0]["score"], "tried": len(placements), "starts": len(starts), "chosen": best,
            "energies": [r[0] for r in runs], "limbs_moved": moved, "retried": retried}
    return _result(params, model, pts, data, opt, history, init, time.perf_counter() - start)


def _limbs_and_fine(params: _Params, data, optim, opt: FitOptions, history: list, ticks, n2: int, n3: int) -> list[str]:
    """The limb search (rounds, each settled) then the fine stage; returns the moved joints."""
    moved: list[str] = []
    for _ in range(LIMB_ROUNDS if opt.iters >= LIMB_SEARCH_MIN_ITERS else 0):
        now = _search_limbs(params, data, LIMB_SIGMA * opt.sigma, 3 * opt.sigma)
        if not now:
            break
        moved += now
        ticks.total += n2 // 2  # settle the moved limbs (and the rest with them) before searching again
        _stage(params, data, optim, "pose", n2 // 2, opt, history, ticks)
    for g in optim.param_groups:  # the fine stage refines: smaller steps, decayed to zero
        g["lr"] *= 0.3
    _stage(params, data, optim, "fine", n3, opt, history, ticks)
    return moved


@torch.no_grad()
def _loose_share(params: _Params, data, far: float) -> float:
    """Share of scan points farther than ``far`` from the body, plus (full scans) share of body vertices
    farther than ``far`` from the scan: 0 for a fit in place on a clean scan. One view leaves the body's
    hidden side without points, so partial scans count the points only."""
    x, _ = params.surface()
    share = float((_nearest(data.P, x)[0] > far).float().mean())
    if not data.partial:
        share += float((_nearest(x, data.P)[0] > far).float().mean())
    return share


def _limbs_from_rest(params: _Params, opt: FitOptions, skeleton) -> tuple[_Params, torch.optim.Optimizer, list]:
    """A copy of a fit with its arms and legs back at rest (rotation, translation, shape, spine, head kept)
    and a fresh optimizer at the pose stage's steps."""
    with torch.no_grad():
        again = _Params(params.model, skeleton, params.rotation().detach().cpu().double().numpy(),
                        params.t.detach().cpu().double().numpy(), params.fixed)
        again.z.copy_(params.z)
        again.pose.copy_(params.pose)
        slot = {j: i for i, j in enumerate(skeleton.free)}
        for root, hinge in skeleton.limbs:
            again.pose[slot[root]] = 0.0
            again.pose[slot[hinge]] = 0.0
    optim = torch.optim.Adam([{"params": [again.dR], "lr": 0.01}, {"params": [again.t], "lr": 0.005},
                              {"params": [again.z], "lr": 0.05}, {"params": [again.pose], "lr": 0.03}])
    return again, optim, []


@dataclass
class _Data:
    P: Tensor  # [N, 3] scan points
    sensor: Tensor  # [3]
    partial: bool
    faces: Tensor  # [F, 3] the model's


class _Ticks:
    def __init__(self, progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, stage: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, stage)


def _angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1.0, 1.0))))


def _distinct_starts(placements: list[dict], centre: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The best placement turned half round, then the best ones at least 45 degrees from those kept."""
    best = placements[0]
    starts = [(best["R"], best["t"]), _turned(best["R"], best["t"], best["up"], centre)]
    for c in placements[1:]:
        if len(starts) >= n:
            break
        if all(_angle(c["R"], R) > 45.0 for R, _ in starts):
            starts.append((c["R"], c["t"]))
    return starts


def _turned(R: np.ndarray, t: np.ndarray, up: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The placement (R, t) turned half a turn about ``up`` through ``centre``."""
    turn = rodrigues(torch.as_tensor(up / np.linalg.norm(up) * math.pi)).numpy()
    return turn @ R, turn @ (t - centre) + centre


def _facing_t(x: Tensor, n: Tensor, sensor: Tensor) -> Tensor:
    return ((sensor - x) * n).sum(-1) > 0


def _energy(params: _Params, data: _Data, stage: str, sigma: float) -> tuple[Tensor, dict]:
    """The fit's energy (module docstring) at robust scale ``sigma``, and its terms."""
    sigma2 = sigma * sigma
    p2p = {"shape": 1.0, "pose": 0.5, "fine": 0.2}[stage]
    prior_w = PRIOR_WEIGHT[stage]
    x, _ = params.surface()
    nrm = _vertex_normals(x, data.faces)
    _, i_sm = _nearest(data.P, x)
    diff = data.P - x[i_sm]
    d2 = p2p * (diff * diff).sum(-1) + (1 - p2p) * ((diff * nrm[i_sm]).sum(-1)) ** 2
    e_s2m = _gmof(d2, sigma2).mean()
    xs = x[_facing_t(x, nrm, data.sensor)] if data.partial else x
    _, i_ms = _nearest(xs, data.P)
    dm = xs - data.P[i_ms]
    e_m2s = _gmof((dm * dm).sum(-1), sigma2).mean()
    e_pose = params.skeleton.pose_prior(params.pose[None])[0]
    model = params.model
    e_shape = (params.betas() ** 2).sum() if model.betas_range is None else params.z.pow(2).sum()
    energy = e_s2m + e_m2s + prior_w * e_pose + 1e-3 * e_shape
    terms = {"scan_to_body": float(e_s2m.detach()), "body_to_scan": float(e_m2s.detach()),
             "pose_prior": float(e_pose.detach()), "sigma": sigma}
    return energy, terms


def _stage(params: _Params, data: _Data, optim, stage: str, n: int, opt: FitOptions, history: list,
           ticks: _Ticks) -> float:
    """``n`` Adam steps of one stage; returns the last energy."""
    base = [g["lr"] for g in optim.param_groups]
    energy = float("nan")
    for it in range(n):
        # coarse to fine: a wide robust scale reaches limbs far from their points, then narrows
        sigma = opt.sigma * {"shape": SIGMA_START, "pose": SIGMA_START ** (1 - it / max(1, n - 1)), "fine": 1.0}[stage]
        if stage == "fine":  # cosine decay
            for g, lr in zip(optim.param_groups, base):
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * it / n))
        optim.zero_grad(set_to_none=True)
        e, terms = _energy(params, data, stage, sigma)
        e.backward()
        optim.step()
        energy = float(e.detach())
        ticks(stage)
        if it == n - 1 or it % 10 == 0:
            history.append({"stage": stage, "iter": it, "energy": energy, **terms})
    for g, lr in zip(optim.param_groups, base):
        g["lr"] = lr
    return energy


def _search_limbs(params: _Params, data: _Data, sigma: float, far: float) -> list[str]:
    """`limb_search.limb_search` with this fit's energy (its fine stage's terms)."""
    from .limb_search import limb_search

    def facing(v: Tensor) -> Tensor:  # [B, V, 3] -> [B, V]
        return torch.stack([_facing_t(x, _vertex_normals(x, data.faces), data.sensor) for x in v])
    def prior(pose: Tensor) -> Tensor:  # [B, K, 3] -> [B], as weighted in the fine stage
        return PRIOR_WEIGHT["fine"] * params.skeleton.pose_prior(pose)

    return limb_search(params, lambda s: _energy(params, data, "fine", s)[0], data.P, sigma, far,
                       facing if data.partial else None, prior, LIMB_GAIN)


@torch.no_grad()
def _result(params: _Params, model, pts, data: _Data, opt: FitOptions, history, init, seconds) -> BodyFit:
    from facet3d.core.ops.rotations import matrix_to_axis_angle

    x, j = params.surface()
    nrm = _vertex_normals(x, model.faces)
    seen = _facing_t(x, nrm, data.sensor) if opt.partial else torch.ones(len(x), dtype=torch.bool)
    betas, body_pose = params.betas()[None], params.body_pose()
    go = matrix_to_axis_angle(params.rotation().double())[None].to(betas)
    # the model's own transl: whatever puts its output where the fit put the surface (models differ in
    # the point global_orient turns about; SMPL: its root joint, Anny: the origin)
    posed = model(betas=betas, global_orient=go, body_pose=body_pose).vertices[0]
    transl = (x - posed).mean(0)
    vr = _nearest(x.double().cpu().numpy(), pts)[0]
    pr = _nearest(pts, x.double().cpu().numpy())[0]
    np64 = lambda t: t.detach().double().cpu().numpy().reshape(-1)  # noqa: E731
    return BodyFit(
        params={"betas": np64(betas), "global_orient": np64(go), "body_pose": np64(body_pose), "transl": np64(transl)},
        vertices=x.double().cpu().numpy(), joints=j.double().cpu().numpy(), faces=model.faces.cpu().numpy(),
        vertex_residual=vr, vertex_seen=seen.cpu().numpy(), point_residual=pr, points=pts, energy=history,
        orientation=init, seconds=seconds)
