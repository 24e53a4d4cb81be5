"""Trainable triangle-splatting parameters: initialisation, activation, densification and pruning.

`SplatModel` holds the *raw* leaf tensors an optimiser updates and builds an activated
`TriangleScene` from them each step (so rendering and export share one code path).

TS (free triangles)            TS+ (shared vertices)
  verts   [N, 3, 3] world        verts   [V, 3] world; faces [T, 3] (buffer, not trained)
  dc      [N, 3]                 dc      [V, 3]
  rest    [N, 15, 3]             rest    [V, 15, 3]
  opacity [N]  sigmoid           opacity [V]  floor + (1 - floor) sigmoid  (triangle = min of corners)
  sigma   [N]  0.01 + exp        sigma   scheduled globally (annealed), not trained

Published recipe (docs/../shared reference, Held et al. 2025 and Triangle Splatting+):
init: one triangle per SfM point, radius 2.23 sqrt(mean squared distance to the 3 nearest
neighbours), random orientation, opacity 0.28, sigma 1.16; TS+: a 3-D Delaunay of the points.
Densification: grow the count by 1.3x, choosing triangles with probability proportional to
opacity / sigma (MCMC-style); large ones are split 1 -> 4 at their edge midpoints, small ones
cloned with noise (the pair's opacity adjusted so that the two together cover like the parent:
``1 - (1 - o')^2 = o``); prune triangles whose max blending weight stayed below a threshold.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import GeometryError
from facet3d.plugins.triangle_splatting.scene import TriangleScene, rgb_to_sh

__all__ = ["SplatModel", "triangles_from_points", "delaunay_faces", "PARAM_NAMES"]

PARAM_NAMES = ("verts", "dc", "rest", "opacity", "sigma")
N_REST = 15  # degree-3 SH; lower active degrees use a prefix


def _logit(p: float | Tensor) -> Tensor:
    p = torch.as_tensor(p, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


def triangles_from_points(points: Tensor, generator: torch.Generator | None = None, scale: float = 2.23,
                          max_radius: float | None = None) -> Tensor:
    """One equilateral triangle per point, randomly oriented.

    points: Tensor  # [P, 3]
    returns Tensor  # [P, 3, 3]; circumradius = scale * sqrt(mean squared distance to the 3 nearest neighbours)
    """
    from facet3d.core.ops.neighbors import knn_points
    from facet3d.core.ops.rotations import random_rotations

    p = points.detach().cpu().double().numpy()
    if len(p) < 4:
        raise GeometryError(f"need at least 4 points to initialise triangles, got {len(p)}")
    d2, _ = knn_points(p, p, 4, squared=True)  # [P, 4]: the point itself, then its 3 nearest
    r = scale * np.sqrt(d2[:, 1:].mean(1))
    r = np.maximum(r, 1e-7)
    if max_radius is not None:
        r = np.minimum(r, max_radius)
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    base = torch.stack([ang.cos(), ang.sin(), torch.zeros(3, dtype=torch.float64)], -1)  # [3, 3]
    R = random_rotations(len(p), generator=generator, dtype=torch.float64)
    tri = torch.as_tensor(p)[:, None] + torch.as_tensor(r)[:, None, None] * (base[None] @ R.transpose(1, 2))
    return tri.to(points.dtype)


def delaunay_faces(points: Tensor, max_edge_ratio: float = 3.0) -> Tensor:
    """Triangles of a 3-D Delaunay tetrahedralisation (TS+ init), long-edged ones dropped.

    points: Tensor  # [P, 3]
    returns faces [T, 3] int64: the unique faces of all tetrahedra whose longest edge is at most
    ``max_edge_ratio`` x the median longest edge (very long faces only slow the first iterations
    down and are pruned anyway).
    """
    from scipy.spatial import Delaunay

    p = points.detach().cpu().double().numpy()
    try:
        tets = Delaunay(p).simplices
    except Exception as exc:  # noqa: BLE001 - qhull raises its own error type for flat inputs
        raise GeometryError(f"Delaunay of the initial points failed ({exc})") from exc
    f = np.concatenate([tets[:, [0, 1, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 3]], tets[:, [1, 2, 3]]])
    f = np.unique(np.sort(f, 1), axis=0)
    e = np.stack([np.linalg.norm(p[f[:, i]] - p[f[:, (i + 1) % 3]], axis=1) for i in range(3)], 1).max(1)
    f = f[e <= max_edge_ratio * np.median(e)]
    return torch.as_tensor(f, dtype=torch.int64)


class SplatModel:
    """Raw parameters of a TS or TS+ scene (see the module docstring)."""

    def __init__(self, form: str, params: dict[str, Tensor], faces: Tensor | None = None) -> None:
        if form not in ("ts", "ts+"):
            raise GeometryError(f"mode must be 'ts' or 'ts+', got {form!r}")
        self.form = form
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.faces = faces

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_points(cls, form: str, points: Tensor, colors: Tensor | None, generator: torch.Generator | None = None,
                    opacity: float = 0.28, sigma: float = 1.16, max_radius: float | None = None) -> "SplatModel":
        """Initial model: TS -> a triangle per point; TS+ -> Delaunay faces over the points.

        points: Tensor  # [P, 3]; colors: Tensor  # [P, 3] in [0, 1] or None (grey)
        """
        points = points.float()
        P = points.shape[0]
        rgb = torch.full((P, 3), 0.5) if colors is None else colors.float().clamp(0, 1)
        dc = rgb_to_sh(rgb)
        rest = torch.zeros(P, N_REST, 3)
        op = _logit(opacity).expand(P).clone()
        if form == "ts":
            tri = triangles_from_points(points, generator, max_radius=max_radius)
            sig = torch.full((P,), math.log(max(sigma - 0.01, 1e-6)))
            return cls("ts", dict(verts=tri, dc=dc, rest=rest, opacity=op, sigma=sig))
        faces = delaunay_faces(points)
        return cls("ts+", dict(verts=points.clone(), dc=dc, rest=rest, opacity=op), faces=faces)

    @classmethod
    def from_scene(cls, scene: TriangleScene, form: str | None = None, opacity_floor: float = 0.0) -> "SplatModel":
        """Raw parameters that `scene` (activated values) activates back to: the inverse of
        `SplatModel.scene`'s activations (``fit --init``).

        form: the model's form (default: the scene's); a TS+ scene makes a TS model by unsharing
        its triangles (`TriangleScene.to_ts`), a TS scene cannot make a TS+ one.
        opacity_floor: the TS+ opacity floor the raw opacities are taken under (the schedule's at
        the first step); vertex opacities below it come back at the floor.
        TS: opacity -> logit, sigma -> ``log(sigma - 0.01)`` (sigma below ~0.01 comes back as
        0.01 + 1e-6: the parametrisation's floor); TS+: opacity -> ``logit((o - floor) / (1 - floor))``
        and the scene's sigma is dropped (TS+ sigma is scheduled, not trained).  SH above the
        scene's degree start at 0; logits are clamped to probabilities in [1e-6, 1 - 1e-6].
        """
        form = form or scene.form
        if form == "ts" and scene.form == "ts+":
            scene = scene.to_ts()
        elif form == "ts+" and scene.form == "ts":
            raise GeometryError("a TS scene (free triangles) cannot start a TS+ model (shared vertices)")
        f32 = lambda t: t.detach().to("cpu", torch.float32).clone()  # noqa: E731
        n = scene.sh_dc.shape[0]
        m = scene.sh_rest.shape[1]
        rest = torch.zeros(n, N_REST, 3)
        rest[:, :m] = f32(scene.sh_rest)[:, :N_REST]
        op = f32(scene.opacity)
        if form == "ts":
            sig = torch.log((f32(scene.sigma) - 0.01).clamp_min(1e-6))
            return cls("ts", dict(verts=f32(scene.triangles), dc=f32(scene.sh_dc), rest=rest, opacity=_logit(op),
                                  sigma=sig))
        op = (op - opacity_floor) / (1.0 - opacity_floor)
        return cls("ts+", dict(verts=f32(scene.vertices), dc=f32(scene.sh_dc), rest=rest, opacity=_logit(op)),
                   faces=scene.faces.detach().to("cpu", torch.int64).clone())

    # ------------------------------------------------------------------ activation
    def __len__(self) -> int:
        return self.params["verts"].shape[0] if self.form == "ts" else self.faces.shape[0]

    def scene(self, sh_degree: int = 3, sigma: float | None = None, opacity_floor: float = 0.0) -> TriangleScene:
        """Activated, differentiable `TriangleScene` (SH truncated to ``sh_degree``)."""
        p = self.params
        m = (sh_degree + 1) ** 2 - 1
        op = torch.sigmoid(p["opacity"])
        if opacity_floor > 0:
            op = opacity_floor + (1.0 - opacity_floor) * op
        if self.form == "ts":
            sg = 0.01 + torch.exp(p["sigma"])
            return TriangleScene("ts", p["dc"], p["rest"][:, :m], op, sg, triangles=p["verts"])
        s = torch.as_tensor(1.0 if sigma is None else sigma, dtype=p["verts"].dtype, device=p["verts"].device)
        return TriangleScene("ts+", p["dc"], p["rest"][:, :m], op, s, vertices=p["verts"], faces=self.faces)

    def triangle_opacity(self, opacity_floor: float = 0.0) -> Tensor:
        with torch.no_grad():
            op = torch.sigmoid(self.params["opacity"])
            op = opacity_floor + (1.0 - opacity_floor) * op
            return op if self.form == "ts" else op[self.faces].amin(-1)

    @property
    def device(self) -> torch.device:
        return self.params["verts"].device

    def to(self, device) -> "SplatModel":
        """This model's parameters (new leaves: build the optimiser afterwards) and faces on ``device``."""
        faces = None if self.faces is None else self.faces.to(device)
        return SplatModel(self.form, {k: v.detach().to(device) for k, v in self.params.items()}, faces)

    # ------------------------------------------------------------------ state (checkpoints)
    def state_dict(self) -> dict[str, Tensor]:
        sd = {k: v.detach().clone() for k, v in self.params.items()}
        if self.faces is not None:
            sd["faces"] = self.faces.clone()
        return sd

    @classmethod
    def from_state_dict(cls, form: str, sd: dict[str, Tensor]) -> "SplatModel":
        params = {k: v for k, v in sd.items() if k in PARAM_NAMES}
        return cls(form, params, faces=sd.get("faces"))

    # ------------------------------------------------------------------ topology changes
    def _replace(self, opt: torch.optim.Optimizer | None, keep: Tensor, new: dict[str, Tensor]) -> None:
        """Keep rows ``keep`` of every parameter and append ``new`` rows; Adam moments follow
        the kept rows and start at zero for new ones (as 3DGS's densification does)."""
        for name in list(self.params):
            old = self.params[name]
            add = new.get(name, old.new_zeros((0,) + old.shape[1:])).to(old.dtype)
            value = torch.cat([old.detach()[keep], add]).requires_grad_(True)
            if opt is not None:
                for group in opt.param_groups:
                    if group["params"][0] is old:
                        st = opt.state.pop(old, None)
                        if st:
                            for k in ("exp_avg", "exp_avg_sq"):
                                st[k] = torch.cat([st[k][keep], torch.zeros_like(add)])
                            opt.state[value] = st
                        group["params"][0] = value
            self.params[name] = value

    @torch.no_grad()
    def prune(self, remove: Tensor, opt: torch.optim.Optimizer | None = None) -> int:
        """Drop triangles where ``remove [len(self)]`` is True (TS+: faces, then unused vertices)."""
        remove = remove.bool()
        n = int(remove.sum())
        if n == 0:
            return 0
        if self.form == "ts":
            self._replace(opt, (~remove).nonzero().flatten(), {})
            return n
        faces = self.faces[~remove]
        used = torch.zeros(self.params["verts"].shape[0], dtype=torch.bool, device=faces.device)
        used[faces.flatten()] = True
        remap = torch.cumsum(used.long(), 0) - 1
        self._replace(opt, used.nonzero().flatten(), {})
        self.faces = remap[faces]
        return n

    @torch.no_grad()
    def densify(self, n_add: int, split_min_edge: float, generator: torch.Generator | None = None,
                opt: torch.optim.Optimizer | None = None, opacity_floor: float = 0.0) -> dict[str, int]:
        """Add about ``n_add`` triangles (see the module docstring); returns counts by kind.

        split_min_edge: triangles whose longest edge is at least this long are split 1 -> 4; shorter
        ones are cloned with noise (TS) or left alone (TS+ only splits: shared midpoints keep it a mesh).
        """
        if n_add <= 0 or len(self) == 0:
            return dict(split=0, cloned=0)
        p = self.params
        N = len(self)
        if self.form == "ts":
            sig = 0.01 + torch.exp(p["sigma"])
            w = torch.sigmoid(p["opacity"]) / sig
            tri = p["verts"]
        else:
            w = self.triangle_opacity(opacity_floor).clone()
            tri = p["verts"][self.faces]
        edge = (tri - tri.roll(-1, 1)).norm(dim=-1).amax(-1)
        w = torch.nan_to_num(w.clamp_min(0), 0.0) + 1e-12
        if self.form == "ts+":
            w = torch.where(edge >= split_min_edge, w, torch.zeros_like(w))
            if not bool((w > 0).any()):
                return dict(split=0, cloned=0)
        # drawn on the CPU: the generator is a CPU one (checkpointed), and CPU and CUDA runs draw alike
        cand = torch.multinomial(w.cpu(), min(N, n_add), replacement=False, generator=generator).to(w.device)
        big = edge[cand] >= split_min_edge
        # take candidates in sampled order until the budget is met: a split adds 3, a clone 1
        gain = torch.where(big, 3, 1)
        take = (torch.cumsum(gain, 0) - gain) < n_add
        cand, big = cand[take], big[take]
        if self.form == "ts":
            return self._densify_ts(cand, big, generator, opt)
        return self._densify_tsplus(cand, opt)

    def _densify_ts(self, cand: Tensor, big: Tensor, generator, opt) -> dict[str, int]:
        p = self.params
        split, clone = cand[big], cand[~big]
        A, B, C = p["verts"][split].unbind(1)
        ab, bc, ca = (A + B) / 2, (B + C) / 2, (C + A) / 2
        children = torch.stack([torch.stack([A, ab, ca], 1), torch.stack([ab, B, bc], 1),
                                torch.stack([ca, bc, C], 1), torch.stack([ab, bc, ca], 1)], 1).reshape(-1, 3, 3)
        rep = lambda t: t.repeat_interleave(4, 0)  # noqa: E731
        # clones: jitter by a tenth of the triangle's size; parent and clone share the opacity
        cv = p["verts"][clone]
        size = (cv - cv.mean(1, keepdim=True)).norm(dim=-1).amax(-1)
        noise = torch.randn(cv.shape, generator=generator, dtype=cv.dtype).to(cv.device) * (0.1 * size)[:, None, None]
        o = torch.sigmoid(p["opacity"][clone])
        o_pair = _logit(1.0 - torch.sqrt((1.0 - o).clamp_min(1e-6)))
        p["opacity"].data[clone] = o_pair.to(p["opacity"].dtype)
        new = dict(verts=torch.cat([children, cv + noise]),
                   dc=torch.cat([rep(p["dc"][split]), p["dc"][clone]]),
                   rest=torch.cat([rep(p["rest"][split]), p["rest"][clone]]),
                   opacity=torch.cat([rep(p["opacity"][split]), o_pair.to(p["opacity"].dtype)]),
                   sigma=torch.cat([rep(p["sigma"][split]), p["sigma"][clone]]))
        keep = torch.ones(len(self), dtype=torch.bool, device=cand.device)
        keep[split] = False
        self._replace(opt, keep.nonzero().flatten(), new)
        return dict(split=int(split.numel()), cloned=int(clone.numel()))

    def _densify_tsplus(self, cand: Tensor, opt) -> dict[str, int]:
        """1 -> 4 midpoint subdivision of faces ``cand``; a midpoint is shared by both faces of its edge."""
        p = self.params
        V = p["verts"].shape[0]
        f = self.faces[cand]  # [S, 3]
        edges = torch.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 1).reshape(-1, 2)
        key = edges.sort(1).values
        uniq, inv = torch.unique(key, dim=0, return_inverse=True)
        mid = V + inv.reshape(-1, 3)  # [S, 3] midpoint ids of edges (01, 12, 20)
        a, b, c = f.unbind(1)
        m01, m12, m20 = mid.unbind(1)
        children = torch.stack([torch.stack([a, m01, m20], 1), torch.stack([m01, b, m12], 1),
                                torch.stack([m20, m12, c], 1), torch.stack([m01, m12, m20], 1)], 1).reshape(-1, 3)
        avg = lambda t: (t[uniq[:, 0]] + t[uniq[:, 1]]) / 2  # noqa: E731
        new = {k: avg(p[k]) for k in ("verts", "dc", "rest", "opacity")}
        self._replace(opt, torch.arange(V, device=f.device), new)
        keep = torch.ones(self.faces.shape[0], dtype=torch.bool, device=f.device)
        keep[cand] = False
        self.faces = torch.cat([self.faces[keep], children])
        return dict(split=int(cand.numel()), cloned=0)
