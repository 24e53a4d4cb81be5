"""Edge-based mesh checks in numpy (no torch, no open3d, so `facet3d info` stays light).

Definitions (each checked against trimesh and open3d in tests/test_topology.py):

* *watertight* = every edge is shared by exactly two faces (trimesh's ``is_watertight``;
  open3d's ``is_edge_manifold(allow_boundary_edges=False)``.  open3d's own ``is_watertight``
  additionally requires vertex-manifoldness and no self-intersections, which is not checked here);
* *winding consistent* = each edge shared by two faces is traversed in opposite directions by them
  (trimesh's ``is_winding_consistent``);
* *edge-manifold* = no edge is shared by more than two faces (open3d's ``is_edge_manifold()``);
* *vertex-manifold* = around every vertex, the edges opposite it in its faces (its *link*) form one
  connected graph, i.e. the faces around the vertex are a single fan (open3d's
  ``is_vertex_manifold``, same rule, degenerate faces included);
* *manifold* = edge-manifold and vertex-manifold.

`mesh_checks` computes them on the faces as stored (``merge=False``: two vertices are the same
only if they have the same index) or after welding vertices at identical positions
(``merge=True``, `merge_coincident`: OBJ/GLB/PLY exports split vertices along UV and normal
seams, so a closed textured mesh is open *as stored* and closed *welded*).  `topology_report`
gives both, as ``facet3d info`` shows them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["edge_face_counts", "merge_coincident", "mesh_checks", "topology_report"]


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


def _weld_map(vertices: np.ndarray) -> np.ndarray:
    """[N] index of the first vertex at the same position (quantised at 1e-7 of the extent)."""
    v = np.asarray(vertices, dtype=np.float64)
    # Quantise at 1e-7 of the size (about float32 precision) so float noise does not split vertices.
    finite = np.isfinite(v).all(axis=1)
    scale = float(np.abs(v[finite]).max()) if finite.any() else 1.0
    v = np.ascontiguousarray(np.round(v / (max(scale, 1e-300) * 1e-7)) + 0.0)  # + 0.0 turns -0.0 into 0.0
    rows = v.view(np.dtype((np.void, v.dtype.itemsize * 3))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def merge_coincident(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces re-indexed so vertices at exactly the same position share one index (welding).

    OBJ/GLB loaders split vertices along UV and normal seams; without this a closed textured
    mesh (e.g. spot) would look open and non-manifold along its seams.
    """
    return _weld_map(vertices)[np.asarray(faces, dtype=np.int64)]


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root label [n] of every node of the graph with edges (a, b) (hook-and-compress union-find)."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]  # parent is fully compressed here: these are roots
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        diff = lo != hi
        if not diff.any():
            return parent
        np.minimum.at(parent, hi[diff], lo[diff])  # hook each root under the smallest root it meets
        while True:  # pointer jumping until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def _nonmanifold_vertices(faces: np.ndarray, n: int) -> int:
    """Vertices whose link (the edges opposite them in their faces) is not connected (open3d's rule).

    For face (f0, f1, f2) and corner k, vertex f[k] gets the link edge (f[k+1], f[k+2]) unless that
    edge contains f[k] itself (degenerate faces, as open3d's ``GetNonManifoldVertices``).
    """
    if len(faces) == 0:
        return 0
    v = faces.reshape(-1)                                   # corner vertex, [3F]
    p = faces[:, [1, 2, 0]].reshape(-1)                      # the two others, in order
    q = faces[:, [2, 0, 1]].reshape(-1)
    keep = (p != v) & (q != v)
    v, p, q = v[keep], p[keep], q[keep]
    if len(v) == 0:
        return 0
    base = np.int64(max(n, 1))
    keys, inv = np.unique(np.concatenate([v * base + p, v * base + q]), return_inverse=True)
    m = len(v)
    root = _components(len(keys), inv[:m], inv[m:])
    owner = keys // base                                     # the vertex each link node belongs to
    roots = root == np.arange(len(keys))
    fans = np.bincount(owner[roots], minlength=n)            # connected pieces of each vertex's link
    return int((fans > 1).sum())


def mesh_checks(vertices: np.ndarray, faces: np.ndarray, merge: bool = True) -> dict[str, object]:
    """Topology facts of a triangle mesh (definitions in the module docstring).

    vertices: [N, 3]; faces: int [F, 3]
    merge: weld vertices at identical positions first (`merge_coincident`); False: the faces as stored
    Returns watertight, winding_consistent, edge_manifold, vertex_manifold, manifold,
    boundary_edges, nonmanifold_edges, nonmanifold_vertices, degenerate_faces,
    unreferenced_vertices (of the vertices as stored), euler_characteristic (V - E + F over the
    referenced, possibly welded, vertices).
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    n = len(vertices)
    if len(faces) == 0:
        return {"watertight": False, "winding_consistent": True, "edge_manifold": True, "vertex_manifold": True,
                "manifold": True, "boundary_edges": 0, "nonmanifold_edges": 0, "nonmanifold_vertices": 0,
                "degenerate_faces": 0, "unreferenced_vertices": n, "euler_characteristic": n}
    used = np.zeros(n, dtype=bool)
    used[faces.reshape(-1)] = True
    if merge and n:
        faces = merge_coincident(vertices, faces)
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    # degenerate faces still count for edges, as in trimesh and open3d; they are reported separately
    uniq, counts = edge_face_counts(faces)
    boundary = int((counts == 1).sum())
    nonmanifold = int((counts > 2).sum())
    # Winding, over edges shared by exactly two faces: the two faces must traverse the edge in
    # opposite directions, i.e. the directed edge must not appear twice.
    drows, dcounts = _unique_rows(_edges(faces))
    twice = np.sort(drows[dcounts >= 2], axis=1)
    if len(twice):
        base = np.int64(max(n, 1))
        shared = uniq[counts == 2]
        winding_ok = not np.isin(twice[:, 0] * base + twice[:, 1], shared[:, 0] * base + shared[:, 1]).any()
    else:
        winding_ok = True
    bad_vertices = _nonmanifold_vertices(faces, n)
    used_now = np.zeros(n, dtype=bool)
    used_now[faces.reshape(-1)] = True
    return {
        "watertight": bool(len(counts) > 0 and (counts == 2).all()),
        "winding_consistent": bool(winding_ok),
        "edge_manifold": nonmanifold == 0,
        "vertex_manifold": bad_vertices == 0,
        "manifold": nonmanifold == 0 and bad_vertices == 0,
        "boundary_edges": boundary,
        "nonmanifold_edges": nonmanifold,
        "nonmanifold_vertices": bad_vertices,
        "degenerate_faces": int(degenerate.sum()),
        "unreferenced_vertices": int((~used).sum()),
        "euler_characteristic": int(used_now.sum() - len(uniq) + len(faces)),
    }


def topology_report(vertices: np.ndarray, faces: np.ndarray) -> dict[str, object]:
    """Both readings of a mesh's topology, as ``facet3d info`` reports them.

    returns {"as_stored": mesh_checks(merge=False)  (the faces' own vertex indices: what
             trimesh.Trimesh(process=False) and open3d see),
             "welded": mesh_checks(merge=True)      (vertices at identical positions merged: what
             trimesh.Trimesh(process=True) sees; seams of OBJ/GLB exports closed),
             "welded_vertices": distinct positions among the referenced vertices}
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    stored = mesh_checks(vertices, faces, merge=False)
    if len(faces) == 0 or len(vertices) == 0:
        return {"as_stored": stored, "welded": dict(stored), "welded_vertices": 0}
    wmap = _weld_map(vertices)
    ref = np.unique(faces.reshape(-1))
    n_welded = int(len(np.unique(wmap[ref])))
    if n_welded == len(ref) and np.array_equal(wmap[ref], ref):
        welded = dict(stored)  # welding changes no face: same facts, computed once
    else:
        welded = mesh_checks(vertices, faces, merge=True)
    return {"as_stored": stored, "welded": welded, "welded_vertices": n_welded}
