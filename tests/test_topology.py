"""Watertight / winding / manifold checks against trimesh and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from facet3d.core.io.api import read
from facet3d.core.topology import mesh_checks


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
    assert c["nonmanifold_edges"] == 1 and not c["manifold"]


def test_pinched_vertex_is_not_manifold():
    # two triangles sharing only a vertex: edge-manifold but not vertex-manifold
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], float)
    f = np.array([[0, 1, 2], [0, 3, 4]])
    c = mesh_checks(v, f)
    assert c["edge_manifold"] and not c["vertex_manifold"] and not c["manifold"]


def test_uv_seams_do_not_open_a_closed_mesh():
    box = trimesh.creation.box()
    # split every face's vertices apart (as OBJ loaders do along seams): still closed by position
    v = box.vertices[box.faces.reshape(-1)]
    f = np.arange(len(v)).reshape(-1, 3)
    assert mesh_checks(v, f)["watertight"]
    assert not mesh_checks(v, f, merge=False)["watertight"]


def test_agrees_with_trimesh_on_real_meshes(shared_data):
    files = sorted(shared_data.glob("meshes/*.obj")) + sorted(shared_data.glob("meshes/*.[sS][tT][lL]")) \
        + sorted(shared_data.glob("meshes/bad/*")) + sorted(shared_data.glob("modelnet/*/*.off"))
    checked = 0
    for f in files:
        try:
            g = read(f)
        except Exception:
            continue
        if not g.is_mesh:
            continue
        tm = trimesh.Trimesh(g.vertices, g.faces, process=True)  # merges coincident vertices
        c = mesh_checks(g.vertices, g.faces)
        assert c["watertight"] == tm.is_watertight, f
        assert c["winding_consistent"] == tm.is_winding_consistent, f
        checked += 1
    assert checked >= 10
