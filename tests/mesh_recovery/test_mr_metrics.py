"""`compare` agrees with a direct KD-tree computation and is exactly 0 / 1 on identical inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.api import read
from facet3d.core.io.record import Geometry
from facet3d.core.ops.metrics import chamfer_distance
from facet3d.plugins.mesh_recovery.surface_metrics import compare, parse_thresholds, sample_geometry

N = 20_000


@pytest.fixture(scope="module")
def pair(shared_data):
    gt = read(shared_data / "meshes" / "spot.obj")
    # a perturbed copy as prediction: every vertex moved along a smooth field
    v = gt.vertices + 0.01 * np.sin(3 * gt.vertices[:, [1, 2, 0]])
    return Geometry(v, gt.faces), gt


@pytest.mark.parametrize("name", ["spot.obj", "stanford-bunny.obj"])
def test_identical_inputs_are_exact(shared_data, name):
    g = read(shared_data / "meshes" / name)
    r = compare(g, g, n=N)
    assert r["chamfer_l1"] == 0.0 and r["chamfer_l2"] == 0.0
    assert r["accuracy"] == 0.0 and r["completeness"] == 0.0
    assert all(s["fscore"] == 1.0 and s["precision"] == 1.0 and s["recall"] == 1.0 for s in r["fscore"])
    assert r["normal_consistency"] == 1.0


def test_identical_clouds_are_exact(shared_data):
    g = read(shared_data / "scans" / "milk.pcd")
    r = compare(g, g)
    assert r["chamfer_l1"] == 0.0 and r["fscore"][1]["fscore"] == 1.0 and r["pred_topology"] is None


def test_agrees_with_direct_kdtree(pair):
    pred, gt = pair
    r = compare(pred, gt, thresholds=["1%", "0.02"], n=N, seed=3, point_to_mesh=False)
    x = sample_geometry(pred, N, 3).points
    y = sample_geometry(gt, N, 3).points
    dx, ix = cKDTree(y).query(x)
    dy, iy = cKDTree(x).query(y)
    assert r["accuracy"] == pytest.approx(dx.mean(), rel=1e-12)
    assert r["completeness"] == pytest.approx(dy.mean(), rel=1e-12)
    assert r["chamfer_l1"] == pytest.approx((dx.mean() + dy.mean()) / 2, rel=1e-12)
    assert r["chamfer_l2"] == pytest.approx(((dx ** 2).mean() + (dy ** 2).mean()) / 2, rel=1e-12)
    gv = gt.vertices[np.unique(gt.faces)]
    assert r["gt_bbox_diagonal"] == pytest.approx(np.linalg.norm(gv.max(0) - gv.min(0)))
    for s, tau in zip(r["fscore"], (0.01 * r["gt_bbox_diagonal"], 0.02)):
        p, rc = (dx < tau).mean(), (dy < tau).mean()
        assert s["threshold"] == pytest.approx(tau)
        assert s["fscore"] == pytest.approx(2 * p * rc / (p + rc), rel=1e-12)
    # normal consistency against the nearest sample's face normal
    nx, ny = sample_geometry(pred, N, 3).normals, sample_geometry(gt, N, 3).normals
    nc = (np.abs((nx * ny[ix]).sum(1)).mean() + np.abs((ny * nx[iy]).sum(1)).mean()) / 2
    assert r["normal_consistency"] == pytest.approx(nc, abs=1e-9)


def _dist_to_mesh(p: np.ndarray, v: np.ndarray, f: np.ndarray, chunk: int = 100) -> np.ndarray:
    """Brute-force exact distance ``[P]`` from ``p [P, 3]`` to the triangles ``v[f]``: the plane
    distance where the projection falls inside a triangle, else the nearest of its three edges."""
    a, b, c = (v[f[:, i]][None] for i in range(3))                       # [1, F, 3]
    n = np.cross(b - a, c - a)
    area2 = np.linalg.norm(n, axis=-1)
    nh = n / np.where(area2 > 0, area2, 1.0)[..., None]

    def seg(q, s0, s1):
        e = s1 - s0
        t = np.clip(((q - s0) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-300), 0, 1)
        return np.linalg.norm(q - (s0 + t[..., None] * e), axis=-1)

    out = []
    for i in range(0, len(p), chunk):
        q = p[i:i + chunk, None]                                          # [c, 1, 3]
        h = ((q - a) * nh).sum(-1)
        proj = q - h[..., None] * nh
        inside = area2 > 0
        for s0, s1 in ((a, b), (b, c), (c, a)):
            inside = inside & ((np.cross(s1 - s0, proj - s0) * n).sum(-1) >= 0)
        edge = np.minimum(np.minimum(seg(q, a, b), seg(q, b, c)), seg(q, c, a))
        out.append(np.where(inside, np.abs(h), edge).min(1))
    return np.concatenate(out)


@pytest.mark.slow
def test_point_to_mesh_matches_bruteforce_triangles(pair):
    pred, gt = pair
    n = 1500
    b = compare(pred, gt, n=n, point_to_mesh=True)
    a = compare(pred, gt, n=n, point_to_mesh=False)
    x, y = sample_geometry(pred, n, 0).points, sample_geometry(gt, n, 0).points
    # d = min(nearest sample, exact point-to-triangle) in each direction (the module's protocol)
    dx = np.minimum(cKDTree(y).query(x)[0], _dist_to_mesh(x, gt.vertices, gt.faces))
    dy = np.minimum(cKDTree(x).query(y)[0], _dist_to_mesh(y, pred.vertices, pred.faces))
    # open3d measures in float32: the means differ by ~3e-10 here; the kd-only ones by ~2e-2
    assert b["accuracy"] == pytest.approx(dx.mean(), abs=1e-8)
    assert b["completeness"] == pytest.approx(dy.mean(), abs=1e-8)
    assert b["chamfer_l1"] == pytest.approx((dx.mean() + dy.mean()) / 2, abs=1e-8)
    assert b["accuracy"] < a["accuracy"] and b["completeness"] < a["completeness"]


def test_compare_and_core_chamfer_share_one_definition():
    # clouds (no point-to-mesh): a 5^3 grid and the same grid shifted by s, plus one far outlier
    g = np.stack(np.meshgrid(*[np.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3) * 0.1
    s = 0.02
    pred = np.concatenate([g + [s, 0, 0], [[2.0, 0, 0]]])
    r = compare(Geometry(pred), Geometry(g), thresholds=["0.05"])
    far = np.linalg.norm([2.0, 0, 0] - g, axis=1).min()                     # 1.6
    acc, comp = (len(g) * s + far) / len(pred), s
    assert r["accuracy"] == pytest.approx(acc, rel=1e-12) and r["completeness"] == pytest.approx(comp, rel=1e-12)
    assert r["chamfer_l1"] == pytest.approx((acc + comp) / 2, rel=1e-12)
    assert r["chamfer_l2"] == pytest.approx(((len(g) * s ** 2 + far ** 2) / len(pred) + s ** 2) / 2, rel=1e-12)
    core = {norm: chamfer_distance(pred, g, norm=norm).chamfer.item() for norm in ("l1", "l2")}
    assert core["l1"] == pytest.approx(r["chamfer_l1"], rel=1e-12)
    assert core["l2"] == pytest.approx(r["chamfer_l2"], rel=1e-12)


def test_topology_flags(shared_data):
    closed = read(shared_data / "meshes" / "spot.obj")
    opened = read(shared_data / "meshes" / "stanford-bunny.obj")
    r = compare(opened, closed, n=2000)
    assert r["gt_topology"]["watertight"] and r["gt_topology"]["manifold"]
    assert not r["pred_topology"]["watertight"] and r["pred_topology"]["boundary_edges"] == 223


def test_threshold_parsing_and_errors():
    assert parse_thresholds(["1%", "0.5"], 10.0) == [(0.1, "1%"), (0.5, "0.5")]
    with pytest.raises(UsageError):
        parse_thresholds(["-1"], 1.0)
    with pytest.raises(UsageError):
        parse_thresholds(["abc"], 1.0)
    with pytest.raises(GeometryError):
        compare(Geometry(np.array([[0.0, 0, 0], [np.nan, 0, 0]])), Geometry(np.zeros((3, 3))))


@pytest.mark.slow
def test_cli_compare_json_identical(shared_data, cli):
    f = shared_data / "meshes" / "fuze.obj"
    r = cli("compare", str(f), str(f), "--json", "-n", "5000")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["chamfer_l1"] == 0.0 and res["fscore"][1]["fscore"] == 1.0
    r = cli("compare", str(f), str(shared_data / "meshes" / "bad" / "empty.ply"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
