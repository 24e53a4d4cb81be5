"""Point cloud -> mesh on real meshes: F-score at 1% against the source, open and closed, clean and noisy."""

from __future__ import annotations

import numpy as np
import pytest

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.api import read, write
from facet3d.core.io.record import Geometry
from facet3d.core.ops.sampling import sample_mesh_surface
from facet3d.core.topology import mesh_checks
from facet3d.plugins.mesh_recovery.surface_metrics import compare, fscore_at
from facet3d.plugins.mesh_recovery.surface_points import PointsToMesh, reconstruct_points

N = 100_000


def _half(g: Geometry) -> Geometry:
    """The bunny cut in half: a genuinely open surface (a scan seen from one side)."""
    c = g.vertices[g.faces].mean(1)
    return Geometry(g.vertices, g.faces[c[:, 0] > np.median(c[:, 0])])


@pytest.fixture(scope="module")
def meshes(shared_data):
    bunny = read(shared_data / "meshes" / "stanford-bunny.obj")
    return {"bunny (open, 223 boundary edges)": bunny, "half bunny (open cut)": _half(bunny),
            "cow (closed)": read(shared_data / "meshes" / "cow.obj")}


def _points(g: Geometry, noisy: bool) -> Geometry:
    s = sample_mesh_surface(g.vertices, g.faces, N, seed=0)
    p = np.asarray(s.points)
    if noisy:
        diag = np.linalg.norm(g.vertices.max(0) - g.vertices.min(0))
        return Geometry(p + np.random.default_rng(0).normal(scale=0.002 * diag, size=p.shape))
    return Geometry(p, normals=np.asarray(s.normals))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bunny (open, 223 boundary edges)", "half bunny (open cut)", "cow (closed)"])
def test_default_method_with_normals_fscore(meshes, name):
    gt = meshes[name]
    opts = PointsToMesh()
    mesh = reconstruct_points(_points(gt, noisy=False), opts)
    f = fscore_at(compare(mesh, gt))
    print(f"MR-NUMBER F@1% clean+normals {name}: {f:.4f} ({mesh.num_faces} faces)")
    assert opts.info["method"] == "poisson" and opts.info["method_reason"].startswith("auto: poisson")
    assert opts.info["normals"] == "input"
    assert f >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bunny (open, 223 boundary edges)", "cow (closed)"])
def test_default_method_noisy_without_normals(meshes, name):
    gt = meshes[name]
    opts = PointsToMesh()
    mesh = reconstruct_points(_points(gt, noisy=True), opts)
    f = fscore_at(compare(mesh, gt))
    print(f"MR-NUMBER F@1% noisy(0.2% diag), no normals {name}: {f:.4f}")
    assert opts.info["method"] == "poisson"
    assert opts.info["normals"].startswith("estimated")
    assert f >= 0.90


@pytest.mark.slow
def test_trimming_is_what_keeps_an_open_surface_open(meshes):
    """Plain Poisson invents a closed blob over the cut; the default trim removes it."""
    gt = meshes["half bunny (open cut)"]
    s = sample_mesh_surface(gt.vertices, gt.faces, 20_000, seed=0)
    pts = Geometry(np.asarray(s.points), normals=np.asarray(s.normals))
    closed_opts = PointsToMesh(method="poisson", watertight=True)
    closed = reconstruct_points(pts, closed_opts)
    opened = reconstruct_points(pts, PointsToMesh(method="poisson"))
    f_closed, f_open = fscore_at(compare(closed, gt, n=20_000)), fscore_at(compare(opened, gt, n=20_000))
    print(f"MR-NUMBER half bunny 20k: watertight Poisson F@1% {f_closed:.4f}, default (trimmed) {f_open:.4f}")
    checks = mesh_checks(closed.vertices, closed.faces)
    assert checks["watertight"] and checks["manifold"] and checks["winding_consistent"] and closed_opts.info["watertight"]
    assert not mesh_checks(opened.vertices, opened.faces)["watertight"]
    assert f_open > f_closed + 0.05


@pytest.mark.parametrize("method", ["bpa", "alpha"])
def test_bpa_and_alpha_with_spacing_defaults(meshes, method):
    gt = meshes["cow (closed)"]
    s = sample_mesh_surface(gt.vertices, gt.faces, 20_000, seed=0)
    opts = PointsToMesh(method=method)
    mesh = reconstruct_points(Geometry(np.asarray(s.points), normals=np.asarray(s.normals)), opts)
    assert ("radii" if method == "bpa" else "alpha") in opts.info
    assert fscore_at(compare(mesh, gt, n=20_000)) >= 0.9


def test_real_scan_with_viewpoint(sample_data):
    scan = read(sample_data / "scans" / "bunny.pcd")
    opts = PointsToMesh(method="poisson", viewpoint=(0.0, 0.0, 1.0))
    mesh = reconstruct_points(Geometry(scan.vertices), opts)
    assert mesh.num_faces > 100 and "viewpoint" in opts.info["normals"]


def _bad_clouds():
    rng = np.random.default_rng(0)
    t = rng.random(200)
    line = np.stack([t, 2 * t, 3 * t], 1)
    plane = np.stack([rng.random(200), rng.random(200), np.zeros(200)], 1)
    nan = rng.random((200, 3))
    nan[5, 1] = np.nan
    return {"few": (rng.random((4, 3)), "too few"), "collinear": (line, "one line"),
            "coplanar": (plane, "one plane"), "nan": (nan, "NaN")}


@pytest.mark.parametrize("case", ["few", "collinear", "coplanar", "nan"])
def test_bad_points_raise_one_line_errors(case, tmp_path, cli):
    """Coplanar points are bad for Poisson only (the default, auto, meshes them by 2-D Delaunay)."""
    pts, words = _bad_clouds()[case]
    method = "poisson" if case == "coplanar" else "auto"
    with pytest.raises(GeometryError, match=words):
        reconstruct_points(Geometry(pts), PointsToMesh(method=method))
    src = tmp_path / "bad.npy"
    np.save(src, pts)
    out = tmp_path / "out.ply"
    r = cli("mesh", str(src), "--out", str(out), "--method", method)
    assert r.returncode == 1, r.stderr
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.ply*"))


def test_option_errors():
    for opts in (PointsToMesh(method="nope"), PointsToMesh(watertight=True, trim=0.1),
                 PointsToMesh(method="bpa", watertight=True), PointsToMesh(trim=1.5),
                 PointsToMesh(method="poisson", scale=float("nan")), PointsToMesh(depth=0), PointsToMesh(k=2),
                 PointsToMesh(method="alpha", alpha=-1.0), PointsToMesh(method="bpa", radii=[]),
                 PointsToMesh(method="bpa", max_edge=1.0), PointsToMesh(viewpoint=(0.0, float("inf"), 0.0))):
        with pytest.raises(UsageError):
            opts.validate()


@pytest.mark.slow
def test_cli_mesh_then_compare(sample_data, tmp_path, cli):
    gt = sample_data / "meshes" / "fuze.obj"
    g = read(gt)
    s = sample_mesh_surface(g.vertices, g.faces, 10_000, seed=0)
    write(tmp_path / "pts.ply", Geometry(np.asarray(s.points), normals=np.asarray(s.normals)))
    r = cli("mesh", str(tmp_path / "pts.ply"), "--out", str(tmp_path / "m.ply"), "--json")
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout)["faces"] > 1000
    r = cli("compare", str(tmp_path / "m.ply"), str(gt), "--json", "--threshold", "1%", "-n", "10000")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["fscore"][0]["label"] == "1%" and res["fscore"][0]["fscore"] > 0.95
