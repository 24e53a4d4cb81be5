"""Local triangle surfaces and the 14 rotation-invariant surface features (RISP) of RISurConv.

Everything is vectorised over ``[B, S, K]`` (batch, centres, neighbours) and follows the official
code's arithmetic (epsilons, ordering quirks) so that the values match it to round-off; see
`order_neighbours` for the ordering rule as the official code actually executes it.

Conventions: ``p`` is the reference point (the centre, or the origin for the group-all stage),
``x_i`` the ordered neighbours, ``x_{i-1} = roll(x, s)``, ``x_{i+1} = roll(x, -s)`` cyclically over
K with ``s = 2`` when a layer has >= 1024 centres, else 1, and ``u(a->b) = (b - a) / (|b - a| + 1e-7)``.
The features are invariant under rotations (normals rotating with the points), not reflections.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-7  # the official epsilon in every unit-vector division

FEATURE_NAMES = (
    "|x_i - p|",                      # 1
    "u(p->x_i).n_p",                  # 2
    "u(x_i->p).n_i",                  # 3
    "cos(x_i, p, x_{i-1})",           # 4
    "u(p->x_{i-1}).n_p",              # 5
    "u(x_{i-1}->p).n_{i-1}",          # 6
    "cos(p, x_{i-1}, x_i)",           # 7
    "-u(x_{i-1}->x_i).n_i",           # 8
    "u(x_{i-1}->x_i).n_{i-1}",        # 9
    "cos(x_{i+1}, p, x_i)",           # 10
    "cos(p, x_{i+1}, x_i)",           # 11
    "u(x_i->x_{i+1}).n_{i+1}",        # 12
    "u(p->x_i).n_{i+1}",              # 13
    "(u(p->x_{i+1}) x u(p->x_i)).(u(p->x_{i-1}) x u(p->x_i))",  # 14
)


def roll_shift(num_centres: int) -> int:
    """The official neighbour step: 2 when the layer has >= 1024 centres, else 1."""
    return 2 if num_centres >= 1024 else 1


def _roll(x: Tensor, shift: int, dim: int) -> Tensor:
    """torch.roll along one axis as two slices (torch.roll's index path is slow on CPU)."""
    n = x.shape[dim]
    shift %= n
    if shift == 0:
        return x
    return torch.cat([x.narrow(dim, n - shift, shift), x.narrow(dim, 0, n - shift)], dim=dim)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def _unit(v: Tensor) -> Tensor:
    """v / (|v| + 1e-7): zero vectors stay zero (the official epsilon, not a nan-to-zero)."""
    return v / (torch.linalg.vector_norm(v, dim=-1, keepdim=True) + EPS)


def order_neighbours(rel: Tensor, centre_normal: Tensor) -> Tensor:
    """Angular order of neighbours around the centre normal (the official order, made robust).

    rel: Tensor            # [B, S, K, 3] neighbour positions minus the centre, in the incoming
                           # (kNN: ascending distance) order
    centre_normal: Tensor  # [B, S, 3] unit normal (or reference axis) at each centre
    returns perm: Tensor   # [B, S, K] int64, ordered slot -> incoming position

    Official rule: project onto the tangent plane; ref = the projection with the largest length
    (first on ties); c = unit(proj) . unit(ref), side = sign((unit(proj) x unit(ref)) . n);
    key = side * c - (1 - side), sorted descending; the first incoming neighbour (the centre itself
    under kNN: zero projection, key 0) has its side forced to +1; other zero projections get key -1.
    That key is a monotone function of the signed angle around n, so here the same order is
    computed from angles, two stable sorts: first the half (side + before side -), then the
    unsigned angle theta = atan2(|sin|, cos) ascending on the + side and descending on the - side.
    Why: cos has no float32 resolution near the reference ray (1 - theta^2 / 2), so the official key
    ties or swaps neighbours within ~3e-4 rad of it under rotation. The reference itself is put
    first (theta 0, side +): its official cross product is 0 only in exact arithmetic; torch's
    fused multiply-adds leave noise whose sign sends it first or last at random (about half each in
    the official oracle, i.e. a cyclic shift of the order, which SA1's centre-axis renormalisation
    can see). The result is deterministic and a rotation-invariant function of the geometry except
    for neighbours within rounding of the reference ray or with near-equal angles.
    """
    n = centre_normal.unsqueeze(-2)                                   # [B, S, 1, 3]
    proj = rel - _dot(rel, n).unsqueeze(-1) * n
    length = torch.linalg.vector_norm(proj, dim=-1, keepdim=True)
    unit = torch.nan_to_num(proj / length, nan=0.0)                   # official: 0/0 -> 0
    ref_pos = torch.argmax(length.squeeze(-1), dim=-1, keepdim=True)  # first maximum
    ref = torch.take_along_dim(unit, ref_pos.unsqueeze(-1), dim=-2)   # [B, S, 1, 3]
    cos = _dot(unit, ref)
    sin = _dot(torch.linalg.cross(unit, ref.expand_as(unit), dim=-1), n)
    theta = torch.atan2(sin.abs(), cos)                               # [0, pi]
    slot = torch.arange(rel.shape[-2], device=rel.device)
    is_ref = slot == ref_pos                                          # [B, S, K]
    zero = length.squeeze(-1) == 0
    first = slot == 0
    theta = torch.where(is_ref, torch.zeros_like(theta), theta)
    # zero projections: official key 0 (= cos(pi/2)) at slot 0, else -1 (= angle pi)
    theta = torch.where(zero, torch.where(first, torch.full_like(theta, torch.pi / 2),
                                          torch.full_like(theta, torch.pi)), theta)
    minus = (sin < 0) & ~is_ref & ~zero & ~first                      # slot 0 is forced to side +
    t = torch.where(minus, -theta, theta)
    p1 = torch.sort(t, dim=-1, stable=True).indices
    p2 = torch.sort(torch.gather(minus.to(torch.int8), -1, p1), dim=-1, stable=True).indices
    return torch.gather(p1, -1, p2)


def risp_features(rel: Tensor, nbr_normals: Tensor, centre_normal: Tensor, shift: int) -> Tensor:
    """The 14 RISP features of ordered neighbourhoods (official feature order, see FEATURE_NAMES).

    rel: Tensor            # [B, S, K, 3] ordered neighbours minus the reference point p
    nbr_normals: Tensor    # [B, S, K, 3] their unit normals
    centre_normal: Tensor  # [B, S, 3] normal (or reference axis) at p
    shift: int             # roll step s for x_{i-1}, x_{i+1}
    returns: Tensor        # [B, S, K, 14]
    """
    n_p = centre_normal.unsqueeze(-2)
    n_i = nbr_normals
    length = torch.linalg.vector_norm(rel, dim=-1, keepdim=True)
    e = rel / (length + EPS)                                   # u(p->x_i)
    e_prev = _roll(e, shift, dim=-2)                     # u(p->x_{i-1})
    e_next = _roll(e, -shift, dim=-2)                    # u(p->x_{i+1})
    n_next = _roll(n_i, -shift, dim=-2)
    u_next = _unit(_roll(rel, -shift, dim=-2) - rel)     # u(x_i->x_{i+1})
    u_prev = _roll(u_next, shift, dim=-2)                # u(x_{i-1}->x_i)

    f2 = _dot(e, n_p)
    f3 = -_dot(e, n_i)
    f4 = _dot(e, e_prev)
    f12 = _dot(u_next, n_next)
    # Several features are the same quantity one neighbour earlier/later: roll instead of recompute.
    f5 = _roll(f2, shift, dim=-1)                        # u(p->x_{i-1}).n_p
    f6 = _roll(f3, shift, dim=-1)                        # u(x_{i-1}->p).n_{i-1}
    f7 = -_dot(e_prev, u_prev)                                 # cos at x_{i-1}
    f8 = -_roll(f12, shift, dim=-1)                      # -u(x_{i-1}->x_i).n_i
    f9 = _dot(u_prev, _roll(n_i, shift, dim=-2))
    f10 = _roll(f4, -shift, dim=-1)                      # cos at p between x_{i+1}, x_i
    f11 = _dot(e_next, u_next)                                 # cos at x_{i+1}
    f13 = _dot(e, n_next)
    f14 = _dot(torch.linalg.cross(e_next, e, dim=-1), torch.linalg.cross(e_prev, e, dim=-1))
    return torch.stack([length.squeeze(-1), f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14], dim=-1)


def local_surfaces(grouped_xyz: Tensor, grouped_normals: Tensor, centre_xyz: Tensor, centre_normal: Tensor,
                   num_centres: int | None = None, origin_reference: bool = False) -> tuple[Tensor, Tensor]:
    """Order each neighbourhood and compute its RISP features.

    grouped_xyz: Tensor      # [B, S, K, 3] neighbour positions in incoming order (kNN: nearest first)
    grouped_normals: Tensor  # [B, S, K, 3]
    centre_xyz: Tensor       # [B, S, 3] centres (ordering is always around the centre)
    centre_normal: Tensor    # [B, S, 3]
    num_centres: int         # for the roll step (default S)
    origin_reference: bool   # group-all stage: features use p = origin with absolute positions
                             # (official), while ordering still uses the centroid centre
    returns (features [B, S, K, 14], perm [B, S, K] int64: ordered position -> incoming position)
    """
    rel = grouped_xyz - centre_xyz.unsqueeze(-2)
    perm = order_neighbours(rel, centre_normal)
    take = perm.unsqueeze(-1)
    pts = grouped_xyz if origin_reference else rel
    rel_o = torch.take_along_dim(pts, take, dim=-2)
    nrm_o = torch.take_along_dim(grouped_normals, take, dim=-2)
    s = roll_shift(centre_xyz.shape[1] if num_centres is None else num_centres)
    return risp_features(rel_o, nrm_o, centre_normal, s), perm
