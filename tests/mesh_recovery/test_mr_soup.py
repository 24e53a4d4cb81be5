"""Triangle soup -> mesh: a real mesh split into unshared, jittered triangles welds back to its topology."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.errors import GeometryError
from facet3d.core.io.api import read, write
from facet3d.core.io.record import Geometry
from facet3d.core.topology import edge_face_counts, merge_coincident, mesh_checks
from facet3d.plugins.mesh_recovery.surface_soup import repair_soup


def _soup(g: Geometry, seed: int = 0, flip: float = 0.3) -> Geometry:
    """Unshared triangles, shuffled, 30% with reversed winding, every corner jittered by 1e-6."""
    rng = np.random.default_rng(seed)
    v = g.vertices[g.faces].reshape(-1, 3) + rng.uniform(-1e-6, 1e-6, (3 * len(g.faces), 3))
    f = np.arange(len(v)).reshape(-1, 3)[rng.permutation(len(g.faces))]
    rev = rng.random(len(f)) < flip
    f[rev] = f[rev][:, ::-1]
    return Geometry(v, f)


def _counts(vertices, faces):
    f = merge_coincident(vertices, faces)
    return len(np.unique(f)), len(edge_face_counts(f)[0]), len(f)


@pytest.mark.parametrize("name", ["stanford-bunny.obj", "spot.obj", "teapot.obj", "quadknot.obj", "fuze.obj"])
def test_soup_welds_back_to_original_topology(shared_data, name):
    g = read(shared_data / "meshes" / name)
    out, rep = repair_soup(_soup(g))
    assert _counts(out.vertices, out.faces) == _counts(g.vertices, g.faces)
    before, after = mesh_checks(g.vertices, g.faces), mesh_checks(out.vertices, out.faces, merge=False)
    assert after["watertight"] == before["watertight"]
    assert after["euler_characteristic"] == before["euler_characteristic"]
    assert after["winding_consistent"] and after.get("edge_manifold", after["manifold"])
    # vertex-manifold as far as the original is (the teapot itself has one pinched vertex)
    assert after["manifold"] or not before["manifold"]
    assert after.get("nonmanifold_vertices", 0) <= before.get("nonmanifold_vertices", 0)
    assert rep["flipped_faces"] > 0 and rep["unorientable_edges"] == 0 and rep["nonmanifold_edges"] == 0
    if before["watertight"]:  # closed: oriented outwards like the original (positive volume)
        tri = out.vertices[out.faces]
        assert np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) > 0


def test_floaters_degenerate_and_duplicates_are_dropped(shared_data):
    g = read(shared_data / "meshes" / "spot.obj")
    soup = _soup(g, flip=0.0)
    rng = np.random.default_rng(1)
    floater = rng.random((3, 3)) * 0.01 + 5.0                       # one far-away triangle
    sliver = np.repeat(soup.vertices[:1], 3, axis=0)                # zero-area
    dup = soup.vertices[soup.faces[0][::-1]]                         # same face, reversed
    v = np.concatenate([soup.vertices, floater, sliver, dup])
    n0 = len(soup.vertices)
    extra = np.arange(n0, n0 + 9).reshape(3, 3)
    out, rep = repair_soup(Geometry(v, np.concatenate([soup.faces, extra])))
    assert out.num_faces == g.num_faces
    assert rep["small_pieces_removed"] == 1 and rep["degenerate_faces_removed"] == 1 and rep["duplicate_faces_removed"] == 1


def test_nonmanifold_is_reported(tmp_path, cli):
    # three triangles on one edge (a "book" with three pages): cannot be made manifold
    v = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -1, 0], [0.5, 0, 1]], dtype=float)
    f = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    soup = Geometry(v[f].reshape(-1, 3), np.arange(9).reshape(3, 3))
    out, rep = repair_soup(soup, min_component=0.0)
    assert rep["nonmanifold_edges"] == 1 and not rep["manifold"]
    write(tmp_path / "book.ply", soup)
    r = cli("mesh", "--from-soup", str(tmp_path / "book.ply"), "--out", str(tmp_path / "fixed.ply"), "--min-component", "0")
    assert r.returncode == 0, r.stderr
    assert "edges shared by more than two faces" in r.stderr and (tmp_path / "fixed.ply").is_file()


def test_soup_errors(tmp_path, cli):
    with pytest.raises(GeometryError, match="only points"):
        repair_soup(Geometry(np.random.default_rng(0).random((10, 3))))
    v = np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]])
    with pytest.raises(GeometryError, match="NaN"):
        repair_soup(Geometry(v, np.array([[0, 1, 2]])))
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).random((10, 3)))
    r = cli("mesh", "--from-soup", str(tmp_path / "pts.npy"), "--out", str(tmp_path / "o.ply"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.ply").exists()
