"""Reconstruction metrics between any two geometry files (meshes or point clouds).

Protocol (Occupancy Networks / Shape As Points): each geometry becomes a point set - meshes are
sampled uniformly by area (``n`` points with their face normals, fixed seed), clouds are used as
they are (a random ``n``-subset when larger).  With x = prediction samples, y = ground-truth
samples, and d(p, S) the distance from p to the surface S:

* accuracy      = mean_x d(x, GT),  completeness = mean_y d(y, PRED)
* Chamfer-L1    = (accuracy + completeness) / 2;   Chamfer-L2 = (mean_x d^2 + mean_y d^2) / 2
  (`facet3d.core.ops.metrics.chamfer_from_means`, the definition `chamfer_distance` uses too)
* F-score(tau)  = 2 P R / (P + R) with precision P = frac_x(d < tau), recall R = frac_y(d < tau);
  tau defaults to 1% of the ground truth's bounding-box diagonal (also 0.5% and 2%)
* normal consistency = mean over both directions of |n_p . n_nearest| (when both have normals)
* topology of each mesh: watertight, manifold, consistent winding (`facet3d.core.topology`).

d(p, S) is the distance to the nearest of S's samples (`facet3d.core.ops.neighbors`); where S is a mesh it is the smaller of that and
the exact point-to-triangle distance (open3d RaycastingScene, float32).  Both bound the true
distance from above, so the minimum is the closer estimate - and identical inputs, sampled with
the same seed, give exactly 0 distances and F = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.record import Geometry

__all__ = ["Samples", "sample_geometry", "surface_distances", "compare", "parse_thresholds", "DEFAULT_THRESHOLDS"]

DEFAULT_THRESHOLDS = ("0.5%", "1%", "2%")


@dataclass
class Samples:
    points: np.ndarray               # [S, 3] float64
    normals: np.ndarray | None       # [S, 3] unit, or None
    geom: Geometry                   # the source (a mesh gets point-to-triangle distances)


def sample_geometry(geom: Geometry, n: int = 100_000, seed: int = 0, what: str = "geometry") -> Samples:
    """Points ``[S, 3]`` (+ unit normals) standing for `geom`: area-weighted surface samples of a mesh,
    the points of a cloud (a seeded random ``n``-subset when it has more)."""
    from facet3d.core.ops.sampling import sample_mesh_surface

    v = np.asarray(geom.vertices, dtype=np.float64)
    if len(v) == 0:
        raise GeometryError(f"{what} is empty")
    if not np.isfinite(v).all():
        raise GeometryError(f"{what} has NaN or infinite coordinates")
    if geom.is_mesh:
        s = sample_mesh_surface(v, geom.faces, n, seed=seed)
        return Samples(np.asarray(s.points, dtype=np.float64), np.asarray(s.normals, dtype=np.float64), geom)
    normals = None if geom.normals is None else np.asarray(geom.normals, dtype=np.float64)
    if len(v) > n:
        keep = np.sort(np.random.default_rng(seed).choice(len(v), n, replace=False))
        v, normals = v[keep], None if normals is None else normals[keep]
    if normals is not None:
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.where(norm > 0, normals / np.where(norm > 0, norm, 1.0), 0.0)
    return Samples(v, normals, geom)


def surface_distances(query: Samples, target: Samples, point_to_mesh: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Distances ``[S]`` from ``query``'s points to ``target``'s surface, and ``|cos| [S]`` between
    each query normal and the normal of the nearest target element (None without normals)."""
    from facet3d.core.ops.neighbors import knn_points

    d, idx = knn_points(query.points, target.points, 1)
    d, idx = d[:, 0], idx[:, 0]
    tn = None if target.normals is None else target.normals[idx]
    if point_to_mesh and target.geom.is_mesh:
        from facet3d.core.o3d import import_open3d
        o3d = import_open3d()

        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(np.ascontiguousarray(target.geom.vertices, dtype=np.float32),
                            np.ascontiguousarray(target.geom.faces, dtype=np.uint32))
        q = o3d.core.Tensor(query.points.astype(np.float32))
        closest = scene.compute_closest_points(q)
        dm = np.linalg.norm(closest["points"].numpy().astype(np.float64) - query.points, axis=1)
        closer = dm < d
        d = np.where(closer, dm, d)
        if tn is not None:
            fn = closest["primitive_normals"].numpy().astype(np.float64)
            fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-300)
            tn = np.where(closer[:, None], fn, tn)
    if query.normals is None or tn is None:
        return d, None
    cos = np.abs(np.einsum("ij,ij->i", query.normals, tn))
    cos[(query.normals == tn).all(axis=1)] = 1.0  # identical unit vectors: exactly 1, not 1 - 1 ulp
    return d, np.minimum(cos, 1.0)


def parse_thresholds(values: Sequence[str | float] | None, diag: float) -> list[tuple[float, str]]:
    """``["1%", "0.002"]`` -> ``[(absolute tau, label)]``: a trailing % is relative to ``diag``."""
    out = []
    for v in values or DEFAULT_THRESHOLDS:
        s = str(v).strip()
        try:
            tau = float(s[:-1]) / 100.0 * diag if s.endswith("%") else float(s)
        except ValueError:
            raise UsageError(f"--threshold expects a distance or a percentage of the GT diagonal (e.g. 1%), got '{s}'") from None
        if not np.isfinite(tau) or tau <= 0:
            raise UsageError(f"--threshold must be positive, got '{s}'")
        out.append((tau, s))
    return out


def _topology(g: Geometry) -> dict[str, Any] | None:
    if not g.is_mesh:
        return None
    from facet3d.core.topology import mesh_checks

    c = mesh_checks(np.asarray(g.vertices), g.faces)
    return {k: c[k] for k in ("watertight", "manifold", "winding_consistent", "boundary_edges", "nonmanifold_edges")}


def compare(pred: Geometry, gt: Geometry, thresholds: Sequence[str | float] | None = None, n: int = 100_000,
            seed: int = 0, point_to_mesh: bool = True) -> dict[str, Any]:
    """All metrics of the module docstring as a JSON-able dict (see `facet3d compare --json`)."""
    if n < 1:
        raise UsageError(f"--samples must be positive, got {n}")
    ps = sample_geometry(pred, n, seed, "prediction")
    gs = sample_geometry(gt, n, seed, "ground truth")
    diag = float(np.linalg.norm(gs.points.max(0) - gs.points.min(0)))
    if gt.is_mesh:
        gv = np.asarray(gt.vertices, dtype=np.float64)[np.unique(gt.faces)]
        diag = float(np.linalg.norm(gv.max(0) - gv.min(0)))
    taus = parse_thresholds(thresholds, diag)
    d_pg, cos_p = surface_distances(ps, gs, point_to_mesh)
    d_gp, cos_g = surface_distances(gs, ps, point_to_mesh)
    from facet3d.core.ops.metrics import chamfer_from_means

    acc, comp = float(d_pg.mean()), float(d_gp.mean())
    scores = []
    for tau, label in taus:
        p, r = float((d_pg < tau).mean()), float((d_gp < tau).mean())
        scores.append({"threshold": tau, "label": label, "precision": p, "recall": r,
                       "fscore": 2 * p * r / (p + r) if p + r > 0 else 0.0})
    nc = None if cos_p is None or cos_g is None else float((cos_p.mean() + cos_g.mean()) / 2)
    return {
        "samples": {"pred": len(ps.points), "gt": len(gs.points), "seed": seed,
                    "point_to_mesh": bool(point_to_mesh and (pred.is_mesh or gt.is_mesh))},
        "gt_bbox_diagonal": diag,
        "chamfer_l1": chamfer_from_means(acc, comp),
        "chamfer_l2": float(chamfer_from_means((d_pg ** 2).mean(), (d_gp ** 2).mean())),
        "accuracy": acc, "completeness": comp,
        "fscore": scores,
        "normal_consistency": nc,
        "pred_topology": _topology(pred), "gt_topology": _topology(gt),
    }


def fscore_at(result: dict[str, Any], label: str = "1%") -> float:
    """The F-score of `compare`'s result at the threshold labelled ``label``."""
    return next(s["fscore"] for s in result["fscore"] if s["label"] == label)
