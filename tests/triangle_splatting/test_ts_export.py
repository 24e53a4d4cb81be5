"""``facet3d export`` / `scene_to_geometry` (TS+ mesh, TS soup, --opaque), other readers, CLI errors, demo step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facet3d.core.errors import GeometryError
from facet3d.core.io.api import read, write
from facet3d.core.specs import DemoContext
from facet3d.plugins.triangle_splatting.export import scene_to_geometry
from facet3d.plugins.triangle_splatting.scene import TriangleScene, rgb_to_sh, sh_to_rgb

FUZE = "meshes/fuze.obj"


@pytest.fixture(scope="module")
def fuze_scene(sample_data):
    """TS+ scene from the real fuze mesh, with varied per-vertex colours (the file itself has none)."""
    geom = read(sample_data / FUZE)
    scene = TriangleScene.from_geometry(geom)
    assert scene.form == "ts+"
    rgb = torch.as_tensor(np.random.default_rng(0).uniform(0.05, 0.95, (len(scene.vertices), 3)), dtype=scene.dtype)
    scene.sh_dc = rgb_to_sh(rgb)
    return geom, scene


def _soup_scene(opacity):
    rng = np.random.default_rng(1)
    n = len(opacity)
    tri = rng.normal(size=(n, 3, 3))
    cols = rng.uniform(0.1, 0.9, (n, 3))
    s = TriangleScene.from_triangles(tri, cols)
    s.opacity = torch.as_tensor(opacity, dtype=s.dtype)
    return s, tri, cols


def _scene_rgb(scene) -> np.ndarray:
    return np.clip(sh_to_rgb(scene.sh_dc).numpy(), 0, 1)


def test_ts_plus_export_keeps_mesh_and_colours(fuze_scene):
    geom, scene = fuze_scene
    g = scene_to_geometry(scene)
    assert g.num_points == geom.num_points and g.num_faces == geom.num_faces
    np.testing.assert_array_equal(g.faces, geom.faces)
    np.testing.assert_allclose(g.vertices, geom.vertices, atol=1e-5)
    np.testing.assert_allclose(g.colors, _scene_rgb(scene), atol=1e-6)
    # opaque scene: --opaque keeps everything
    assert scene_to_geometry(scene, opaque=True).num_faces == geom.num_faces


@pytest.mark.parametrize("ext", ["ply", "glb"])
def test_ts_plus_export_opens_in_trimesh_and_open3d(fuze_scene, tmp_path, ext):
    trimesh = pytest.importorskip("trimesh")
    o3d = pytest.importorskip("open3d")
    geom, scene = fuze_scene
    dst = write(tmp_path / f"fuze.{ext}", scene_to_geometry(scene))
    want = (_scene_rgb(scene) * 255.0).round()

    tm = trimesh.load(str(dst), process=False, force="mesh")
    assert len(tm.faces) == geom.num_faces and len(tm.vertices) == geom.num_points
    vc = np.asarray(tm.visual.vertex_colors)[:, :3].astype(np.float64)
    np.testing.assert_allclose(vc, want, atol=1.0)

    om = o3d.io.read_triangle_mesh(str(dst))
    assert len(om.triangles) == geom.num_faces and len(om.vertices) == geom.num_points
    assert om.has_vertex_colors()
    # open3d may renumber GLB vertices: compare the colour at every face corner
    o_corner = np.asarray(om.vertex_colors)[np.asarray(om.triangles)] * 255.0
    o_pos = np.asarray(om.vertices)[np.asarray(om.triangles)]
    np.testing.assert_allclose(o_pos, geom.vertices[geom.faces], atol=1e-4)
    np.testing.assert_allclose(o_corner, want[geom.faces], atol=1.0)


def test_ts_plus_opaque_uses_min_vertex_opacity(fuze_scene):
    _, scene = fuze_scene
    s = TriangleScene("ts+", scene.sh_dc, scene.sh_rest, scene.opacity.clone(), scene.sigma,
                      vertices=scene.vertices, faces=scene.faces)
    s.opacity[0] = 0.1
    expect = int((~(s.faces == 0).any(1)).sum())
    g = scene_to_geometry(s, opaque=True)
    assert g.num_faces == expect < len(s)
    assert not (g.faces == 0).any() and g.num_points == len(s.vertices)


def test_ts_export_is_a_coloured_soup_and_opaque_drops(tmp_path):
    opacity = [1.0, 0.2, 0.7, 0.49, 0.9]
    s, tri, cols = _soup_scene(opacity)
    g = scene_to_geometry(s)
    assert g.num_faces == 5 and g.num_points == 15
    np.testing.assert_array_equal(g.faces, np.arange(15).reshape(5, 3))
    np.testing.assert_allclose(g.vertices.reshape(5, 3, 3), tri, atol=1e-6)
    np.testing.assert_allclose(g.colors.reshape(5, 3, 3), np.repeat(cols[:, None], 3, 1), atol=1e-6)

    keep = np.asarray(opacity) >= 0.5
    go = scene_to_geometry(s, opaque=True)
    assert go.num_faces == int(keep.sum()) == 3 and go.num_points == 9
    np.testing.assert_allclose(go.vertices.reshape(-1, 3, 3), tri[keep], atol=1e-6)
    np.testing.assert_allclose(go.colors[::3], cols[keep], atol=1e-6)
    assert scene_to_geometry(s, opaque=True, min_opacity=0.3).num_faces == 4

    with pytest.raises(GeometryError):
        scene_to_geometry(s, opaque=True, min_opacity=1.01)

    # every format keeps the per-triangle colour (as vertex colours)
    for ext in ("ply", "glb", "obj"):
        back = read(write(tmp_path / f"soup.{ext}", go))
        assert back.num_faces == 3, ext
        assert back.colors is not None, ext
        np.testing.assert_allclose(back.colors[:, :3], go.colors, atol=1.5 / 255, err_msg=ext)


@pytest.mark.slow
def test_cli_export(cli, tmp_path, fuze_scene):
    geom, scene = fuze_scene
    src = scene.save_ply(tmp_path / "scene.ply")
    r = cli("export", str(src), "--out", str(tmp_path / "mesh.glb"))
    assert r.returncode == 0, r.stderr
    assert "exported" in r.stderr and str(geom.num_faces) in r.stderr
    back = read(tmp_path / "mesh.glb")
    assert back.num_faces == geom.num_faces and back.colors is not None

    soup, _, _ = _soup_scene([1.0, 0.2, 0.9])
    ssrc = soup.save_ply(tmp_path / "soup_scene.ply")
    r = cli("export", str(ssrc), "--out", str(tmp_path / "soup.obj"), "--opaque", "--min-opacity", "0.5")
    assert r.returncode == 0, r.stderr
    assert read(tmp_path / "soup.obj").num_faces == 2

    # a plain mesh PLY is not a scene
    mesh_ply = write(tmp_path / "plain.ply", geom)
    r = cli("export", str(mesh_ply), "--out", str(tmp_path / "x.ply"))
    assert r.returncode == 2
    assert "not a triangle-splat scene (use facet3d convert for meshes)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    r = cli("export", str(src), "--out", str(tmp_path / "x.stl"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert ".stl" in r.stderr
    assert not (tmp_path / "x.stl").exists() and not (tmp_path / "x.ply").exists()


def test_demo_step_quick(sample_data, tmp_path):
    from facet3d.plugins.triangle_splatting.demo import triangle_splatting

    out = tmp_path / "demo"
    out.mkdir()
    s = triangle_splatting(DemoContext(sample_data, out, quick=True))
    assert s["views"] == 2 and len(s["images"]) == 2
    assert all((out / n).is_file() for n in s["images"])
    assert s["exported_faces"] == s["faces"] == read(sample_data / FUZE).num_faces
    assert s["round_trip_faces_equal"] is True
    assert (out / s["scene"]).is_file() and (out / s["export"]).is_file()


def test_demo_step_registered():
    from facet3d.core.plugins import get_plugins

    steps = get_plugins().demo_steps()
    step = steps["triangle-splatting"] if isinstance(steps, dict) else None
    assert step is not None and step.order == 300
