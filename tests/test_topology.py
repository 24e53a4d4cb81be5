"""Watertight / winding / manifold checks against trimesh, open3d and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from facet3d.core.io.api import read
from facet3d.core.topology import mesh_checks, topology_report


def _o3d_mesh(v, f):
    o3d = pytest.importorskip("open3d")
    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(v, dtype=np.float64)),
                                     o3d.utility.Vector3iVector(np.asarray(f, dtype=np.int32)))


def test_closed_box_and_its_defects():
    box = trimesh.creation.box()
    c = mesh_checks(box.vertices, box.faces)
    assert c["watertight"] and c["winding_consistent"] and c["manifold"] and c["euler_characteristic"] == 2
    open_box = box.faces[1:]
    c = mesh_checks(box.vertices, open_box)
    assert not c["watertight"] and c["boundary_edges"] == 3 and c["manifold"]
    flipped = box.faces.copy()
    flipped[0] = flipped[0, ::-1]
    c = mesh_checks(box.vertices, flipped)
    assert c["watertight"] and not c["winding_consistent"]
    # a fin: a third face on one edge makes the edge non-manifold
    fin_v = np.vstack([box.vertices, [[5.0, 5.0, 5.0]]])
    e = box.faces[0][:2]
    fin_f = np.vstack([box.faces, [[e[0], e[1], len(box.vertices)]]])
    c = mesh_checks(fin_v, fin_f)
    assert c["nonmanifold_edges"] == 1 and not c["manifold"] and not c["edge_manifold"]
    m = _o3d_mesh(fin_v, fin_f)
    assert c["vertex_manifold"] == m.is_vertex_manifold() and c["edge_manifold"] == m.is_edge_manifold()


def test_pinched_vertex_is_not_manifold():
    # two triangles sharing only a vertex: edge-manifold but not vertex-manifold
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], float)
    f = np.array([[0, 1, 2], [0, 3, 4]])
    c = mesh_checks(v, f)
    assert c["edge_manifold"] and not c["vertex_manifold"] and not c["manifold"] and c["nonmanifold_vertices"] == 1
    assert not _o3d_mesh(v, f).is_vertex_manifold()


def test_two_closed_fans_at_one_vertex_are_not_manifold():
    """Two tetrahedra touching at one vertex: every edge has two faces, yet the vertex is pinched
    (a face-minus-edge count misses this; the link-connectivity rule, as open3d's, does not)."""
    tet_v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    tet_f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    v = np.vstack([tet_v, -tet_v[1:]])
    f = np.vstack([tet_f, np.where(tet_f == 0, 0, tet_f + 3)])
    c = mesh_checks(v, f, merge=False)
    assert c["watertight"] and c["edge_manifold"] and not c["vertex_manifold"] and c["nonmanifold_vertices"] == 1
    m = _o3d_mesh(v, f)
    assert m.is_edge_manifold(allow_boundary_edges=False) and not m.is_vertex_manifold()
    assert len(m.get_non_manifold_vertices()) == 1


def _split_seam_cube() -> tuple[np.ndarray, np.ndarray]:
    """A unit cube as OBJ exports store it: 24 vertices (4 per side, one normal / UV each), 12 faces."""
    box = trimesh.creation.box()
    v, f = [], []
    normals = box.face_normals
    for axis in range(3):
        for sign in (-1.0, 1.0):
            side = np.flatnonzero(np.isclose(normals[:, axis], sign))  # the side's two triangles
            corners = np.unique(box.faces[side])
            remap = {int(c): len(v) + i for i, c in enumerate(corners)}
            v.extend(box.vertices[corners])
            f.extend([[remap[int(i)] for i in tri] for tri in box.faces[side]])
    return np.asarray(v), np.asarray(f)


def test_split_seam_cube_as_stored_and_welded():
    v, f = _split_seam_cube()
    assert v.shape == (24, 3) and f.shape == (12, 3)
    r = topology_report(v, f)
    stored, welded = r["as_stored"], r["welded"]
    tm = trimesh.Trimesh(v, f, process=False)
    m = _o3d_mesh(v, f)
    # as stored: six separate squares (each edge of a side has one face)
    assert not stored["watertight"] and not tm.is_watertight and not m.is_watertight()
    assert not m.is_edge_manifold(allow_boundary_edges=False)
    assert stored["boundary_edges"] == 24 and stored["edge_manifold"] == m.is_edge_manifold() is True
    assert stored["vertex_manifold"] == m.is_vertex_manifold() is True
    assert stored["euler_characteristic"] == m.euler_poincare_characteristic() == 6  # six discs
    # welded by position: the closed cube, as trimesh with process=True
    tw = trimesh.Trimesh(v, f, process=True)
    assert welded["watertight"] and tw.is_watertight and welded["manifold"]
    assert welded["winding_consistent"] == tw.is_winding_consistent is True
    assert r["welded_vertices"] == len(tw.vertices) == 8 and welded["euler_characteristic"] == 2
    assert mesh_checks(v, f) == welded and mesh_checks(v, f, merge=False) == stored


def test_uv_seams_do_not_open_a_closed_mesh():
    box = trimesh.creation.box()
    # split every face's vertices apart (as OBJ loaders do along seams): still closed by position
    v = box.vertices[box.faces.reshape(-1)]
    f = np.arange(len(v)).reshape(-1, 3)
    assert mesh_checks(v, f)["watertight"]
    assert not mesh_checks(v, f, merge=False)["watertight"]


def test_nothing_to_weld_reuses_the_as_stored_facts():
    box = trimesh.creation.box()
    r = topology_report(box.vertices, box.faces)
    assert r["as_stored"] == r["welded"] and r["welded_vertices"] == 8 and r["as_stored"]["watertight"]


def _real_meshes(shared_data):
    files = sorted(shared_data.glob("meshes/*.obj")) + sorted(shared_data.glob("meshes/*.[sS][tT][lL]")) \
        + sorted(shared_data.glob("meshes/*.ply")) + sorted(shared_data.glob("meshes/*.glb")) \
        + sorted(shared_data.glob("meshes/bad/*")) + sorted(shared_data.glob("modelnet/*/*.off"))
    for f in files:
        try:
            g = read(f)
        except Exception:
            continue
        if g.is_mesh:
            yield f, g


def test_agrees_with_trimesh_on_real_meshes(shared_data):
    checked = 0
    for f, g in _real_meshes(shared_data):
        tm = trimesh.Trimesh(g.vertices, g.faces, process=True)  # merges coincident vertices
        c = mesh_checks(g.vertices, g.faces)
        assert c["watertight"] == tm.is_watertight, f
        assert c["winding_consistent"] == tm.is_winding_consistent, f
        checked += 1
    assert checked >= 10


def test_as_stored_agrees_with_trimesh_and_open3d_on_real_meshes(shared_data):
    checked, seams = 0, 0
    for f, g in _real_meshes(shared_data):
        r = topology_report(g.vertices, g.faces)
        s = r["as_stored"]
        tm = trimesh.Trimesh(g.vertices, g.faces, process=False)
        m = _o3d_mesh(g.vertices, g.faces)
        assert s["watertight"] == tm.is_watertight == m.is_edge_manifold(allow_boundary_edges=False), f
        assert s["winding_consistent"] == tm.is_winding_consistent, f
        assert s["edge_manifold"] == m.is_edge_manifold(allow_boundary_edges=True), f
        assert s["vertex_manifold"] == m.is_vertex_manifold(), f
        assert s["nonmanifold_vertices"] == len(m.get_non_manifold_vertices()), f
        assert s["euler_characteristic"] == m.euler_poincare_characteristic() - s["unreferenced_vertices"], f
        assert r["welded_vertices"] == len(trimesh.Trimesh(g.vertices, g.faces, process=True).vertices), f
        seams += s["watertight"] != r["welded"]["watertight"]
        checked += 1
    assert checked >= 10 and seams >= 3  # e.g. spot, fuze, Duck: open as stored, closed welded


def test_spot_is_open_as_stored_and_closed_welded(shared_data):
    g = read(shared_data / "meshes" / "spot.obj")
    r = topology_report(g.vertices, g.faces)
    m = _o3d_mesh(g.vertices, g.faces)
    assert not r["as_stored"]["watertight"] and not m.is_watertight()
    assert not trimesh.Trimesh(g.vertices, g.faces, process=False).is_watertight
    assert r["welded"]["watertight"] and r["welded"]["manifold"] and r["welded"]["euler_characteristic"] == 2
    assert r["welded_vertices"] < len(g.vertices)
