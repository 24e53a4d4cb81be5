"""Edge-based mesh checks in numpy (no torch, so `facet3d info` stays light).

Definitions follow trimesh: *watertight* = every edge is shared by exactly two faces;
*winding consistent* = each shared edge is traversed in opposite directions by its two faces;
*edge-manifold* = no edge is shared by more than two faces; *vertex-manifold* = the faces around
every vertex form a single fan (checked on the faces' vertex-link graph).
"""

from __future__ import annotations

import numpy as np


def _edges(faces: np.ndarray) -> np.ndarray:
    """Directed edges of every face, [3F, 2]."""
    return faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)


def _unique_rows(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(e, axis=0, return_counts=True) for non-negative int pairs, via one int64 key (much faster)."""
    base = np.int64(e.max()) + 1 if len(e) else np.int64(1)
    keys, counts = np.unique(e[:, 0].astype(np.int64) * base + e[:, 1], return_counts=True)
    return np.stack([keys // base, keys % base], axis=1), counts


def edge_face_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges [E, 2] and how many faces use each [E]."""
    return _unique_rows(np.sort(_edges(faces), axis=1))


def merge_coincident(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces re-indexed so vertices at exactly the same position share one index.

    OBJ/GLB loaders split vertices along UV and normal seams; without this a closed textured
    mesh (e.g. spot) would look open and non-manifold along its seams.
    """
    v = np.asarray(vertices, dtype=np.float64)
    # Quantise at 1e-7 of the size (about float32 precision) so float noise does not split vertices.
    finite = np.isfinite(v).all(axis=1)
    scale = float(np.abs(v[finite]).max()) if finite.any() else 1.0
    v = np.ascontiguousarray(np.round(v / (max(scale, 1e-300) * 1e-7)) + 0.0)  # + 0.0 turns -0.0 into 0.0
    rows = v.view(np.dtype((np.void, v.dtype.itemsize * 3))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)][faces]


def mesh_checks(vertices: np.ndarray, faces: np.ndarray, merge: bool = True) -> dict[str, object]:
    """Topology facts of a triangle mesh.

    vertices: [N, 3]; faces: int [F, 3]
    merge: treat vertices at identical positions as one (see `merge_coincident`)
    Returns watertight, winding_consistent, edge_manifold, vertex_manifold, manifold,
    boundary_edges, nonmanifold_edges, degenerate_faces, unreferenced_vertices, euler_characteristic.
    """
    faces = np.asarray(faces, dtype=np.int64)
    n = len(vertices)
    if len(faces) == 0:
        return {"watertight": False, "winding_consistent": True, "edge_manifold": True, "vertex_manifold": True,
                "manifold": True, "boundary_edges": 0, "nonmanifold_edges": 0, "degenerate_faces": 0,
                "unreferenced_vertices": n, "euler_characteristic": n}
    used = np.zeros(n, dtype=bool)
    used[faces.reshape(-1)] = True
    if merge and len(vertices):
        faces = merge_coincident(vertices, faces)
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    good = faces  # degenerate faces still count for edges, as in trimesh; they are reported separately
    uniq, counts = edge_face_counts(good) if len(good) else (np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    boundary = int((counts == 1).sum())
    nonmanifold = int((counts > 2).sum())
    # Winding, over manifold edges (shared by exactly two faces): the two faces must traverse the
    # edge in opposite directions, i.e. the directed edge must not appear twice.
    drows, dcounts = _unique_rows(_edges(good))
    twice = np.sort(drows[dcounts >= 2], axis=1)
    if len(twice):
        shared = {tuple(e) for e in uniq[counts == 2].tolist()}
        winding_ok = not any(tuple(e) in shared for e in twice.tolist())
    else:
        winding_ok = True
    vertex_manifold = _vertex_manifold(good, n) if nonmanifold == 0 else False
    used_merged = np.zeros(n, dtype=bool)
    used_merged[good.reshape(-1)] = True
    return {
        "watertight": bool(len(counts) > 0 and (counts == 2).all()),
        "winding_consistent": winding_ok,
        "edge_manifold": nonmanifold == 0,
        "vertex_manifold": vertex_manifold,
        "manifold": nonmanifold == 0 and vertex_manifold,
        "boundary_edges": boundary,
        "nonmanifold_edges": nonmanifold,
        "degenerate_faces": int(degenerate.sum()),
        "unreferenced_vertices": int((~used).sum()),
        "euler_characteristic": int(used_merged.sum() - len(uniq) + len(good)),
    }


def _vertex_manifold(faces: np.ndarray, n: int) -> bool:
    """Every vertex's incident faces are connected through shared edges (one fan per vertex).

    Counted without loops: for each vertex, (#incident faces) - (#interior edges around it) is the
    number of fans for an edge-manifold mesh when every fan is a disc or half-disc: one fan means
    faces - interior_edges == 1 (open fan) or == 0 (closed fan). Two *closed* fans meeting at one
    vertex (two surfaces touching at a point) also give 0 and are not caught by this count.
    """
    face_count = np.bincount(faces.reshape(-1), minlength=n)
    uniq, counts = edge_face_counts(faces)
    interior = uniq[counts == 2]
    edge_count = np.bincount(interior.reshape(-1), minlength=n)
    fans = face_count - edge_count  # 0 for a closed disc, 1 for an open one, >1 for a pinch
    used = face_count > 0
    return bool((fans[used] <= 1).all())
