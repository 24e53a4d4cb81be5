"""`compare` agrees with a direct KD-tree computation and is exactly 0 / 1 on identical inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.api import read
from facet3d.core.io.record import Geometry
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


def test_point_to_mesh_is_tighter_and_close(pair):
    pred, gt = pair
    a = compare(pred, gt, n=N, point_to_mesh=False)
    b = compare(pred, gt, n=N, point_to_mesh=True)
    assert b["accuracy"] <= a["accuracy"] and b["completeness"] <= a["completeness"]
    # sample spacing bounds the difference
    assert b["chamfer_l1"] == pytest.approx(a["chamfer_l1"], rel=0.5)
    assert b["fscore"][1]["fscore"] >= a["fscore"][1]["fscore"]


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


def test_cli_compare_json_identical(shared_data, cli):
    f = shared_data / "meshes" / "fuze.obj"
    r = cli("compare", str(f), str(f), "--json", "-n", "5000")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["chamfer_l1"] == 0.0 and res["fscore"][1]["fscore"] == 1.0
    r = cli("compare", str(f), str(shared_data / "meshes" / "bad" / "empty.ply"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
