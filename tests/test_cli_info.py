"""`facet3d info --json` against independent readers (laspy, open3d, trimesh)."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _info(cli, *paths):
    r = cli("info", "--json", *map(str, paths))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", ["simple.las", "simple.laz"])
def test_las_header_fields_match_laspy(cli, sample_data, name):
    import laspy

    path = sample_data / "las" / name
    (s,) = _info(cli, path)
    las = laspy.read(path)
    h = las.header
    assert s["points"] == h.point_count == s["metadata"]["point_count"]
    assert s["metadata"]["las_version"] == f"{h.version.major}.{h.version.minor}"
    assert s["metadata"]["point_format"] == h.point_format.id
    np.testing.assert_allclose(s["metadata"]["scales"], h.scales)
    np.testing.assert_allclose(s["bounds"]["min"], [las.x.min(), las.y.min(), las.z.min()])
    np.testing.assert_allclose(s["bounds"]["max"], [las.x.max(), las.y.max(), las.z.max()])
    assert {"intensity", "classification", "gps_time", "colors"} <= set(s["attributes"])


def test_scan_counts_and_bounds_match_open3d(cli, sample_data):
    import open3d as o3d

    paths = sorted((sample_data / "scans").glob("*.pcd"))
    for s, p in zip(_info(cli, *paths), paths):
        ref = np.asarray(o3d.io.read_point_cloud(str(p)).points)
        assert s["points"] == len(ref)
        np.testing.assert_allclose(s["bounds"]["min"], ref.min(0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(s["bounds"]["max"], ref.max(0), rtol=1e-6, atol=1e-6)


def test_mesh_counts_and_topology_match_trimesh(cli, sample_data):
    import trimesh

    path = sample_data / "meshes" / "stanford-bunny.obj"
    (s,) = _info(cli, path)
    tm = trimesh.load(path, process=True)
    assert s["kind"] == "mesh" and s["faces"] == len(tm.faces)
    welded = s["topology"]["welded"]  # trimesh's process=True welds too
    assert welded["watertight"] == tm.is_watertight is False  # the scanned bunny is open at the bottom
    assert welded["winding_consistent"] == tm.is_winding_consistent
    np.testing.assert_allclose(s["bounds"]["min"], tm.bounds[0], rtol=1e-6)
