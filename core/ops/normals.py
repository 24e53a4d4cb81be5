"""Normal estimation for point clouds (PCA over neighbourhoods) with consistent orientation.

* `estimate_normals`: the normal at p is the eigenvector of the smallest eigenvalue of the
  covariance of its k nearest neighbours (or of those within ``radius``, capped at ``k``, like
  open3d's hybrid search).  PCA gives an axis, not a direction: the sign is then fixed by
* `orient_towards_viewpoint`: flip so n . (viewpoint - p) >= 0 (right for single-view scans), or
* `orient_consistent`: Hoppe et al. 1992 propagation - a minimum spanning tree of the symmetric
  kNN graph with weights 1 - |n_i . n_j| (so orientation travels first across nearly parallel
  normals), walked breadth-first from one root per connected component, flipping each child to
  agree with its parent.  Each component's global sign is then chosen so that
  sum_i n_i . (p_i - centroid) > 0: for a closed surface sampled uniformly this sum estimates
  the surface integral of n . (x - c) = 3 * volume > 0 (divergence theorem), i.e. "outwards".

Neighbours come from `facet3d.core.ops.neighbors` (the kernels' knn dispatcher) on float64; ties
go to the lower point index.  numpy in -> numpy out, torch in -> torch out (same dtype/device);
points ``[N, 3]``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from scipy.sparse import csgraph

from ..errors import GeometryError
from ..convert import to_numpy
from .neighbors import ball_query, knn_points

__all__ = ["estimate_normals", "orient_towards_viewpoint", "orient_consistent", "neighbour_sign_agreement"]


def _check_points(points) -> np.ndarray:
    p = to_numpy(points).astype(np.float64, copy=False)
    if p.ndim != 2 or p.shape[1] != 3:
        raise GeometryError(f"points must be [N, 3], got {p.shape}")
    if len(p) < 3:
        raise GeometryError(f"need at least 3 points to estimate normals, got {len(p)}")
    if not np.isfinite(p).all():
        raise GeometryError("points have non-finite coordinates")
    return p


def _like(result: np.ndarray, reference):
    if isinstance(reference, torch.Tensor):
        return torch.as_tensor(result, dtype=reference.dtype if reference.is_floating_point() else torch.float32,
                               device=reference.device)
    return result.astype(reference.dtype if np.issubdtype(np.asarray(reference).dtype, np.floating)
                         else np.float64, copy=False)


def _knn(p: np.ndarray, k: int, radius: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``[N, k]`` and validity mask ``[N, k]`` of neighbours (self included).

    p: ndarray  # [N, 3] float64; radius: keep only neighbours closer than it (at most k)
    """
    k = min(k, len(p))
    if radius is None:
        _, idx = knn_points(p, p, k, squared=True)
        return idx, np.ones(idx.shape, dtype=bool)
    _, idx = ball_query(p, p, radius, k, squared=True)
    valid = idx >= 0
    return np.where(valid, idx, 0), valid


def estimate_normals(points, k: int = 30, radius: float | None = None, orient: str | None = "consistent",
                     viewpoint=None, return_curvature: bool = False):
    """Unit normals ``[N, 3]`` by PCA over neighbourhoods, oriented as asked.

    k: neighbours per point (self included; the cap in radius mode).
    radius: use only neighbours closer than this (points with < 3 of them keep the best
        plane their neighbours allow, which may be arbitrary; check ``curvature``).
    orient: ``"consistent"`` (MST propagation, outward for closed shapes), ``"viewpoint"``
        (towards ``viewpoint [3]``, default origin - the sensor of most scans) or None (raw PCA
        sign, arbitrary).
    return_curvature: also return the surface variation l0 / (l0 + l1 + l2) ``[N]``.
    """
    p = _check_points(points)
    if k < 3:
        raise GeometryError(f"k must be >= 3 for a plane fit, got {k}")
    idx, valid = _knn(p, k, radius)
    w = valid.astype(np.float64)[..., None]                       # [N, k, 1]
    cnt = np.maximum(w.sum(1), 1.0)                                # [N, 1]
    nb = p[idx]                                                    # [N, k, 3]
    mean = (nb * w).sum(1) / cnt
    d = (nb - mean[:, None]) * w
    cov = np.einsum("nki,nkj->nij", d, d) / cnt[..., None]
    evals, evecs = np.linalg.eigh(cov)                             # ascending eigenvalues
    normals = np.ascontiguousarray(evecs[:, :, 0])
    if orient == "consistent":
        normals = orient_consistent(p, normals, k=min(k, 16))
    elif orient == "viewpoint":
        normals = orient_towards_viewpoint(p, normals, np.zeros(3) if viewpoint is None else viewpoint)
    elif orient is not None:
        raise ValueError(f"orient must be 'consistent', 'viewpoint' or None, got {orient!r}")
    out = _like(normals, points)
    if return_curvature:
        curv = evals[:, 0] / np.maximum(evals.sum(1), 1e-300)
        return out, _like(curv, points)
    return out


def orient_towards_viewpoint(points, normals, viewpoint=(0.0, 0.0, 0.0)):
    """Flip ``normals [N, 3]`` so each points towards ``viewpoint [3]`` (n . (v - p) >= 0)."""
    p = to_numpy(points).astype(np.float64, copy=False)
    n = to_numpy(normals).astype(np.float64, copy=True)
    v = np.asarray(to_numpy(viewpoint), dtype=np.float64).reshape(3)
    flip = np.einsum("ij,ij->i", n, v[None] - p) < 0
    n[flip] *= -1
    return _like(n, normals)


def orient_consistent(points, normals, k: int = 16):
    """Make ``normals [N, 3]`` consistently oriented by MST propagation (see the module docstring).

    Works per connected component of the symmetric kNN graph; each component is then signed
    to point outwards from its centroid (divergence-theorem vote).
    """
    p = _check_points(points)
    n = to_numpy(normals).astype(np.float64, copy=True)
    N = len(p)
    k = min(k, N - 1)
    _, idx = knn_points(p, p, k + 1, squared=True)  # [N, k + 1]; column 0 is the point itself (bar duplicates)
    rows = np.repeat(np.arange(N), k)
    cols = idx[:, 1:].reshape(-1)
    # 1 - |cos| plus a tiny distance-free epsilon: scipy drops explicit zeros, which would cut
    # edges between exactly parallel normals out of the graph.
    wts = 1.0 - np.abs(np.einsum("ij,ij->i", n[rows], n[cols])) + 1e-9
    g = sparse.coo_matrix((wts, (rows, cols)), shape=(N, N)).tocsr()
    g = g.maximum(g.T)  # symmetric kNN graph
    mst = csgraph.minimum_spanning_tree(g)
    mst = mst + mst.T
    ncomp, labels = csgraph.connected_components(mst, directed=False)
    for c in range(ncomp):
        members = np.flatnonzero(labels == c)
        root = members[0]
        order, pred = csgraph.breadth_first_order(mst, root, directed=False, return_predecessors=True)
        # sign of each node relative to its parent, from the raw normals (vectorised); the
        # absolute sign is the product along the tree path, accumulated in BFS order (parents first)
        kids = order[1:]
        rel = np.where(np.einsum("ij,ij->i", n[kids], n[pred[kids]]) < 0, -1, 1).tolist()
        sign = {int(root): 1}
        par = pred[kids].tolist()
        for node, parent, r in zip(kids.tolist(), par, rel):
            sign[node] = sign[parent] * r
        flips = np.fromiter((node for node, s_ in sign.items() if s_ < 0), dtype=np.int64)
        n[flips] *= -1
        centroid = p[members].mean(0)
        if np.einsum("ij,ij->", n[members], p[members] - centroid) < 0:
            n[members] *= -1
    return _like(n, normals)


def neighbour_sign_agreement(points, normals, k: int = 10) -> float:
    """Fraction of kNN edges (i, j) with n_i . n_j > 0: 1.0 for perfectly consistent normals."""
    p = _check_points(points)
    n = to_numpy(normals).astype(np.float64)
    _, idx = knn_points(p, p, min(k + 1, len(p)), squared=True)
    dots = np.einsum("ij,ikj->ik", n, n[idx[:, 1:]])
    return float((dots > 0).mean())
