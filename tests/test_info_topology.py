"""`facet3d info`: topology as stored and welded, against trimesh (process=False / True) and open3d."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh



def _split_seam_cube() -> tuple[np.ndarray, np.ndarray]:
    """A unit cube as OBJ exports store it: 24 vertices (4 per side), 12 faces."""
    box = trimesh.creation.box()
    v, f = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            side = np.flatnonzero(np.isclose(box.face_normals[:, axis], sign))
            corners = np.unique(box.faces[side])
            remap = {int(c): len(v) + i for i, c in enumerate(corners)}
            v.extend(box.vertices[corners])
            f.extend([[remap[int(i)] for i in tri] for tri in box.faces[side]])
    return np.asarray(v), np.asarray(f)

KEYS = {"watertight", "winding_consistent", "edge_manifold", "vertex_manifold", "manifold", "boundary_edges",
        "nonmanifold_edges", "nonmanifold_vertices", "degenerate_faces", "unreferenced_vertices",
        "euler_characteristic"}


def _info(cli, *paths):
    r = cli("info", "--json", *map(str, paths))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _write_obj(path, v, f):
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    path.write_text("\n".join(lines) + "\n")


def test_info_split_seam_cube_obj(cli, tmp_path):
    v, f = _split_seam_cube()
    path = tmp_path / "cube.obj"
    _write_obj(path, v, f)
    (s,) = _info(cli, path)
    assert s["vertices"] == 24 and s["faces"] == 12
    assert "watertight" not in s  # no unlabelled flat key: every fact says which reading it is
    topo = s["topology"]
    assert set(topo) == {"as_stored", "welded", "welded_vertices"}
    assert set(topo["as_stored"]) == set(topo["welded"]) == KEYS
    o3d = pytest.importorskip("open3d")
    # open3d's OBJ reader welds by itself: give it the 24 stored vertices directly
    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f.astype(np.int32)))
    # as stored: what trimesh without processing and open3d see -> six loose squares, open
    assert topo["as_stored"]["watertight"] is trimesh.load(path, process=False).is_watertight is False
    assert m.is_watertight() is False and m.is_edge_manifold(allow_boundary_edges=False) is False
    assert topo["as_stored"]["edge_manifold"] is m.is_edge_manifold() is True
    assert topo["as_stored"]["vertex_manifold"] is m.is_vertex_manifold() is True
    assert topo["as_stored"]["boundary_edges"] == 24
    # welded by position: the closed cube (trimesh's default processing merges the same vertices)
    tw = trimesh.load(path, process=True)
    assert topo["welded"]["watertight"] is tw.is_watertight is True
    assert topo["welded_vertices"] == len(tw.vertices) == 8
    assert topo["welded"]["manifold"] and topo["welded"]["euler_characteristic"] == 2


def test_info_text_names_both_readings(cli, tmp_path):
    v, f = _split_seam_cube()
    _write_obj(tmp_path / "cube.obj", v, f)
    r = cli("info", str(tmp_path / "cube.obj"))
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "as stored: watertight False" in text and "welded by position, 8 vertices: watertight True" in text
    r = cli("info", "--no-topology", "--json", str(tmp_path / "cube.obj"))
    assert r.returncode == 0 and "topology" not in json.loads(r.stdout)[0]


def test_info_real_mesh_matches_trimesh_and_open3d(cli, shared_data):
    o3d = pytest.importorskip("open3d")
    names = ["spot.obj", "fuze.obj", "stanford-bunny.obj", "octagonal_pocket.ply", "Duck.glb"]
    paths = [shared_data / "meshes" / n for n in names]
    for s, p in zip(_info(cli, *paths), paths):
        from facet3d.core.io.api import read

        g = read(p)  # the faces facet3d reads (GLB scenes are concatenated): the same as info's
        topo = s["topology"]
        tm = trimesh.Trimesh(g.vertices, g.faces, process=False)
        m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(g.vertices, np.float64)),
                                      o3d.utility.Vector3iVector(np.asarray(g.faces, np.int32)))
        st = topo["as_stored"]
        assert st["watertight"] == tm.is_watertight == m.is_edge_manifold(allow_boundary_edges=False), p
        assert st["winding_consistent"] == tm.is_winding_consistent, p
        assert st["edge_manifold"] == m.is_edge_manifold(), p
        assert st["vertex_manifold"] == m.is_vertex_manifold(), p
        tw = trimesh.Trimesh(g.vertices, g.faces, process=True)
        assert topo["welded"]["watertight"] == tw.is_watertight, p
        assert topo["welded"]["winding_consistent"] == tw.is_winding_consistent, p
        assert topo["welded_vertices"] == len(tw.vertices), p
    spot = _info(cli, paths[0])[0]["topology"]
    assert not spot["as_stored"]["watertight"] and spot["welded"]["watertight"]  # UV seams: open as stored
