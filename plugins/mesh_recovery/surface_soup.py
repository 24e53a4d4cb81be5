"""Triangle soup -> indexed, consistently oriented mesh (what a Triangle Splatting or STL export needs
before Blender or a game engine).

Steps, each counted in the report:

1. **weld** vertices closer than ``tol`` (radius-search pairs -> connected components -> one vertex at the
   cluster mean).  Default ``tol = min(1e-4 x bbox diagonal, 0.1 x 1st-percentile edge length)``:
   far above float jitter, far below any real edge of the model;
2. drop **degenerate** faces (two corners welded together, or zero area) and **duplicate** faces
   (same three vertices, either winding: a double-sided sheet is non-manifold);
3. drop **small pieces**: edge-connected components with fewer than ``min_component`` x the face
   count (default 0.1%; floaters of splat exports);
4. **orient** faces consistently: breadth-first over each component's manifold edges, flipping a
   face whose shared edge runs the same way as its parent's; closed components are then turned
   to enclose positive volume (outward), open ones keep the majority winding of the input;
5. **report** what is still not manifold: edges shared by > 2 faces, pinched vertices, edges
   whose faces could not be oriented consistently (Moebius-like), and the boundary edges.

Input: a mesh `Geometry` (``vertices [V, 3]``, ``faces [F, 3]``; colours per vertex or face kept).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facet3d.core.errors import GeometryError
from facet3d.core.io.record import Geometry

__all__ = ["repair_soup", "weld_vertices", "orient_faces", "default_weld_tolerance"]


def default_weld_tolerance(vertices: np.ndarray, faces: np.ndarray) -> float:
    """``min(1e-4 x bbox diagonal, 0.1 x 1st-percentile edge length)`` (edges of positive length)."""
    v = vertices[np.unique(faces)]
    diag = float(np.linalg.norm(v.max(0) - v.min(0)))
    e = np.linalg.norm(vertices[faces[:, [1, 2, 0]]] - vertices[faces], axis=-1).ravel()
    e = e[e > 0]
    tol = 1e-4 * diag
    if len(e):
        tol = min(tol, 0.1 * float(np.percentile(e, 1)))
    return tol if tol > 0 else 1e-12


def weld_vertices(vertices: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``vertices [V, 3]`` closer than ``tol`` -> (cluster of each vertex ``[V]``, cluster means ``[C, 3]``)."""
    from scipy import sparse
    from scipy.sparse import csgraph

    from facet3d.core.ops.neighbors import pairs_within

    n = len(vertices)
    pairs = pairs_within(np.asarray(vertices, dtype=np.float64), tol) if tol > 0 else np.zeros((0, 2), np.int64)
    g = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    ncomp, labels = csgraph.connected_components(g, directed=False)
    counts = np.bincount(labels, minlength=ncomp).astype(np.float64)
    means = np.stack([np.bincount(labels, weights=vertices[:, i], minlength=ncomp) for i in range(3)], 1)
    return labels, means / counts[:, None]


def _edge_faces(faces: np.ndarray):
    """Per directed half-edge (3F): undirected edge id, and per edge its face count."""
    he = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    und = np.sort(he, axis=1)
    base = np.int64(faces.max()) + 1
    _, eid, counts = np.unique(und[:, 0] * base + und[:, 1], return_inverse=True, return_counts=True)
    return he, eid.reshape(-1), counts


def face_components(faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Edge-connected components of the faces -> (count, label per face ``[F]``)."""
    from scipy import sparse
    from scipy.sparse import csgraph

    _, eid, counts = _edge_faces(faces)
    F = len(faces)
    fid = np.repeat(np.arange(F), 3)
    # face-edge incidence; faces sharing an edge end up in one component of the bipartite graph
    inc = sparse.coo_matrix((np.ones(3 * F), (fid, F + eid)), shape=(F + len(counts), F + len(counts)))
    ncomp, labels = csgraph.connected_components(inc, directed=False)
    lab = labels[:F]
    uniq, lab = np.unique(lab, return_inverse=True)
    return len(uniq), lab


def orient_faces(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Consistently wound copy of ``faces [F, 3]`` (see step 4) and counts: flipped faces and
    edges whose two faces still disagree (non-orientable parts)."""
    from scipy import sparse
    from scipy.sparse import csgraph

    faces = faces.copy()
    F = len(faces)
    he, eid, counts = _edge_faces(faces)
    fid = np.repeat(np.arange(F), 3)
    manifold = counts[eid] == 2
    order = np.argsort(eid[manifold], kind="stable")
    pair_f = fid[manifold][order].reshape(-1, 2)          # the two faces of each manifold edge
    pair_h = he[manifold][order].reshape(-1, 2, 2)
    same_dir = (pair_h[:, 0] == pair_h[:, 1]).all(axis=1)  # both traverse a->b: winding disagrees
    # parity graph: weight 1 (+1 so zeros survive) where the neighbour must be flipped relative to its parent
    g = sparse.coo_matrix((same_dir + 1.0, (pair_f[:, 0], pair_f[:, 1])), shape=(F, F)).tocsr()
    g = g.maximum(g.T)
    ncomp, labels = csgraph.connected_components(g, directed=False)
    flip = np.zeros(F, dtype=bool)
    for c in range(ncomp):
        members = np.flatnonzero(labels == c)
        if len(members) == 1:
            continue
        bfs, pred = csgraph.breadth_first_order(g, members[0], directed=False, return_predecessors=True)
        kids = bfs[1:]
        rel = (np.asarray(g[kids, pred[kids]]).ravel() == 2.0)
        for node, parent, r in zip(kids.tolist(), pred[kids].tolist(), rel.tolist()):
            flip[node] = flip[parent] ^ r
    faces[flip] = faces[flip][:, ::-1]
    # global sign per component: outward for closed components, input-majority for open ones
    he2, eid2, counts2 = _edge_faces(faces)
    boundary_face = np.zeros(F, dtype=bool)
    boundary_face[fid[counts2[eid2] == 1]] = True
    tri = vertices[faces]
    vol6 = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))  # 6 x signed tetra volume to origin
    closed = ~np.bincount(labels, weights=boundary_face, minlength=ncomp).astype(bool)
    vol = np.bincount(labels, weights=vol6, minlength=ncomp)
    flipped_share = np.bincount(labels, weights=flip, minlength=ncomp) / np.bincount(labels, minlength=ncomp)
    turn = np.where(closed, vol < 0, flipped_share > 0.5)
    faces[turn[labels]] = faces[turn[labels]][:, ::-1]
    flip ^= turn[labels]
    # what is still inconsistent: manifold edges traversed the same way by both faces
    he3, eid3, counts3 = _edge_faces(faces)
    m3 = counts3[eid3] == 2
    o3 = np.argsort(eid3[m3], kind="stable")
    h3 = he3[m3][o3].reshape(-1, 2, 2)
    bad = int((h3[:, 0] == h3[:, 1]).all(axis=1).sum())
    return faces, {"flipped_faces": int(flip.sum()), "unorientable_edges": bad}


def repair_soup(geom: Geometry, tol: float | None = None, min_component: float = 0.001) -> tuple[Geometry, dict[str, Any]]:
    """Weld, clean and orient a triangle soup (module docstring) -> (mesh, report)."""
    from facet3d.core.topology import mesh_checks

    if not geom.is_mesh:
        raise GeometryError("a triangle soup needs faces: this file holds only points")
    v = np.asarray(geom.vertices, dtype=np.float64)
    f = np.asarray(geom.faces, dtype=np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise GeometryError(f"face index out of range (vertices: {len(v)}, largest index: {int(f.max())})")
    if not np.isfinite(v[np.unique(f)]).all():
        raise GeometryError("soup has vertices with NaN or infinite coordinates")
    if not 0.0 <= min_component < 1.0:
        raise GeometryError(f"min_component is a fraction of the faces in [0, 1), got {min_component}")
    report: dict[str, Any] = {"input_vertices": len(v), "input_faces": len(f)}
    tol = default_weld_tolerance(v, f) if tol is None else float(tol)
    report["weld_tolerance"] = tol
    used = np.unique(f)
    labels, pos = weld_vertices(v[used], tol)
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[used] = labels
    f = remap[f]
    report["welded_vertices"] = len(pos)
    # 2. degenerate and duplicate faces
    tri = pos[f]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2]) | (area2 <= 0)
    key = np.sort(f, axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    duplicate = np.ones(len(f), dtype=bool)
    duplicate[first] = False
    duplicate &= ~degenerate
    keep = ~(degenerate | duplicate)
    report["degenerate_faces_removed"] = int(degenerate.sum())
    report["duplicate_faces_removed"] = int(duplicate.sum())
    face_idx = np.flatnonzero(keep)
    f = f[keep]
    if not len(f):
        raise GeometryError("every face of the soup is degenerate after welding (is --weld-tol larger than the triangles?)")
    # 3. small pieces
    ncomp, comp = face_components(f)
    sizes = np.bincount(comp)
    floor = min_component * len(f)
    small = sizes[comp] < floor
    report["small_pieces_removed"] = int((sizes < floor).sum())
    report["small_piece_faces_removed"] = int(small.sum())
    f, face_idx = f[~small], face_idx[~small]
    report["components"] = int((sizes >= floor).sum())
    # 4. orientation
    f, orient = orient_faces(pos, f)
    report.update(orient)
    # compact: drop vertices no face uses any more
    used2, f = np.unique(f, return_inverse=True)
    f = f.reshape(-1, 3)
    out_v = pos[used2]
    colors = None
    if geom.colors is not None and len(geom.colors) == len(v):
        c = np.asarray(geom.colors, dtype=np.float64)[used]
        cnt = np.bincount(labels, minlength=len(pos))[:, None]
        acc = np.stack([np.bincount(labels, weights=c[:, i], minlength=len(pos)) for i in range(c.shape[1])], 1)
        colors = (acc / cnt)[used2].astype(np.float32)
    face_colors = None if geom.face_colors is None else np.asarray(geom.face_colors)[face_idx]
    out = Geometry(vertices=out_v, faces=f, colors=colors, face_colors=face_colors)
    # 5. what is left
    checks = mesh_checks(out_v, f, merge=False)
    report.update(vertices=out.num_points, faces=out.num_faces, watertight=checks["watertight"],
                  manifold=checks["manifold"], winding_consistent=checks["winding_consistent"],
                  boundary_edges=checks["boundary_edges"], nonmanifold_edges=checks["nonmanifold_edges"],
                  nonmanifold_vertices=_pinched_vertices(f, len(out_v)) if checks["nonmanifold_edges"] == 0 else None,
                  euler_characteristic=checks["euler_characteristic"])
    return out, report


def _pinched_vertices(faces: np.ndarray, n: int) -> int:
    """Vertices whose faces form more than one fan (same count as core.topology's vertex-manifold test)."""
    from facet3d.core.topology import edge_face_counts

    face_count = np.bincount(faces.reshape(-1), minlength=n)
    uniq, counts = edge_face_counts(faces)
    edge_count = np.bincount(uniq[counts == 2].reshape(-1), minlength=n)
    return int(((face_count - edge_count) > 1).sum())


def describe(report: dict[str, Any]) -> str:
    """One paragraph for stderr: what was fixed and what could not be made manifold."""
    parts = [f"welded {report['input_vertices']} -> {report['vertices']} vertices (tol {report['weld_tolerance']:.3g})",
             f"{report['faces']} faces kept",
             f"removed {report['degenerate_faces_removed']} degenerate, {report['duplicate_faces_removed']} duplicate, "
             f"{report['small_piece_faces_removed']} in {report['small_pieces_removed']} small pieces",
             f"flipped {report['flipped_faces']}"]
    problems = []
    if report["nonmanifold_edges"]:
        problems.append(f"{report['nonmanifold_edges']} edges shared by more than two faces")
    if report.get("nonmanifold_vertices"):
        problems.append(f"{report['nonmanifold_vertices']} pinched vertices")
    if report["unorientable_edges"]:
        problems.append(f"{report['unorientable_edges']} edges whose faces cannot be oriented consistently")
    tail = ("not manifold: " + ", ".join(problems)) if problems else "manifold"
    tail += "; watertight" if report["watertight"] else f"; open ({report['boundary_edges']} boundary edges)"
    return "; ".join(parts) + "; " + tail
