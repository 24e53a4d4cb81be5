"""`facet3d convert` and `facet3d pipeline run` end to end, checked with open3d / trimesh."""

from __future__ import annotations

import pytest

import json
import shutil

import numpy as np

from facet3d.core.io.api import read


def _distance_to_mesh(points, mesh_path):
    import open3d as o3d

    m = o3d.io.read_triangle_mesh(str(mesh_path))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(m))
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


@pytest.mark.slow
def test_convert_samples_surface_with_normals(cli, sample_data, tmp_path):
    src = sample_data / "meshes" / "stanford-bunny.obj"
    out = tmp_path / "bunny_pts.ply"
    r = cli("convert", str(src), str(out), "--sample", "3000", "--normals")
    assert r.returncode == 0, r.stderr
    g = read(out)
    assert g.kind == "point_cloud" and g.num_points == 3000 and g.normals is not None
    assert _distance_to_mesh(g.vertices, src).max() < 1e-5  # samples lie on the surface
    np.testing.assert_allclose(np.linalg.norm(g.normals, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_convert_mesh_keeps_faces_through_formats(cli, sample_data, tmp_path):
    import trimesh

    src = sample_data / "meshes" / "fuze.obj"
    ref = read(src)
    for ext in ("ply", "off", "glb", "obj"):
        out = tmp_path / f"fuze.{ext}"
        assert cli("convert", str(src), str(out)).returncode == 0
        tm = trimesh.load(out, force="mesh", process=False)
        assert len(tm.faces) == ref.num_faces
        # same surface: corner positions of every face agree as sets
        a = np.sort(np.round(ref.vertices[ref.faces].reshape(-1, 3), 5), axis=0)
        b = np.sort(np.round(np.asarray(tm.vertices)[np.asarray(tm.faces)].reshape(-1, 3), 5), axis=0)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_folder_conversion_continues_past_a_bad_file(cli, sample_data, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sample_data / "scans" / "milk.pcd", src)
    shutil.copy(sample_data / "las" / "simple.las", src)
    (src / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nproperty float x\nend_header\n\x00")
    out = tmp_path / "out"
    r = cli("convert", str(src), str(out), "--to", "ply")
    assert r.returncode == 1
    assert "broken.ply" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["milk.ply", "simple.ply"]
    assert read(out / "simple.ply").num_points == 1065


def test_pipeline_run_steps_and_json_report(cli, sample_data, tmp_path):
    r = cli("pipeline", "run", str(sample_data / "scans"), "-s", "voxel-down:voxel=0.01", "-s", "normals",
            "-s", "normalize", "--out", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert not report["failed"] and len(report["written"]) == 2
    for item in report["written"]:
        g = read(item["output"])
        assert g.normals is not None
        radius = np.linalg.norm(g.vertices - (g.vertices.max(0) + g.vertices.min(0)) / 2, axis=1).max()
        assert abs(radius - 1.0) < 1e-6


def test_pipeline_rejects_unknown_step_and_parameter(cli, sample_data, tmp_path):
    for step in ("nosuchstep", "sample:bogus=1", "sample:n=abc"):
        r = cli("pipeline", "run", str(sample_data / "scans"), "-s", step, "--out", str(tmp_path))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_lidar_bin_needs_explicit_format_and_round_trips(cli, shared_data, tmp_path):
    src = shared_data / "driving" / "kitti_000008" / "000008.bin"
    ref = np.fromfile(src, dtype="<f4").reshape(-1, 4)
    r = cli("info", str(src))
    assert r.returncode == 1 and "--format" in r.stderr  # headerless: never guessed
    out = tmp_path / "sweep.ply"
    assert cli("convert", str(src), str(out), "--format", "kitti-bin").returncode == 0
    g = read(out)
    np.testing.assert_array_equal(g.vertices.astype(np.float32), ref[:, :3])
    np.testing.assert_array_equal(np.asarray(g.attributes["intensity"], np.float32), ref[:, 3])
    back = tmp_path / "again.bin"
    assert cli("convert", str(out), str(back), "-F", "kitti-bin").returncode == 0
    np.testing.assert_array_equal(np.fromfile(back, dtype="<f4").reshape(-1, 4), ref)
