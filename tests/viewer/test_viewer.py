"""`facet3d view`: what each path becomes (core.viewing), what the server holds, and a real browser."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facet3d.core.errors import UsageError
from facet3d.core.io.api import write
from facet3d.core.io.record import Geometry
from facet3d.core.viewing import (CamerasLayer, MeshLayer, PointsLayer, SplatLayer, ViewOptions, collect_layers,
                                  display_subset, point_colours)

viser = pytest.importorskip("viser")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cube(colors: bool = True) -> Geometry:
    import trimesh

    box = trimesh.creation.box((1.0, 1.0, 1.0))
    cols = np.linspace(0, 1, len(box.vertices) * 3, dtype=np.float32).reshape(-1, 3) if colors else None
    return Geometry(np.asarray(box.vertices), np.asarray(box.faces, dtype=np.int64), colors=cols)


def _cloud(n: int = 3000, seed: int = 0) -> Geometry:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * [1.0, 1.0, 0.2] + [2.5, 0.0, 0.0]
    return Geometry(pts, attributes={"classification": rng.integers(0, 7, n).astype(np.uint8),
                                     "intensity": rng.uniform(0, 1000, n).astype(np.float32)})


def _cameras(path: Path, n: int = 6) -> None:
    import torch

    from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R

    eyes = [(4 * math.cos(a), 4 * math.sin(a), 1.5) for a in np.linspace(0, 2 * math.pi, n, endpoint=False)]
    R = torch.stack([look_at_R(torch.tensor(e, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)) for e in eyes])
    C = torch.tensor(eyes, dtype=torch.float64)
    K = intrinsics_matrix(60.0, 60.0, 39.5, 29.5).expand(n, 3, 3)
    Cameras(K, R, -(R @ C[..., None])[..., 0], image_size=[(60, 80)], names=[f"v{i}" for i in range(n)]).save_json(path)
    from PIL import Image

    (path.parent / "images").mkdir(exist_ok=True)
    for i in range(n):  # images beside the cameras: the frustums show them
        Image.new("RGB", (80, 60), (40 * i, 100, 200)).save(path.parent / "images" / f"v{i}.png")


def _scene(path: Path):
    import torch

    from facet3d.plugins.triangle_splatting.scene import TriangleScene

    g = _cube()
    sc = TriangleScene.from_mesh(torch.as_tensor(g.vertices) + torch.tensor([0.0, 2.5, 0.0]), torch.as_tensor(g.faces),
                                 vertex_colors=torch.as_tensor(g.colors), sigma=0.01, opacity=0.9)
    sc.save_ply(path)
    return sc


@pytest.fixture(scope="module")
def content(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("view")
    write(d / "cube.ply", _cube())
    write(d / "cloud.ply", _cloud())
    _cameras(d / "cameras.json")
    _scene(d / "scene.ply")
    return d


def test_each_path_becomes_its_layer(content):
    layers, skipped = collect_layers([content / "cube.ply", content / "cloud.ply", content / "cameras.json",
                                      content / "scene.ply"], ViewOptions(color_by=None))
    assert skipped == []
    by = {ly.name: ly for ly in layers}
    mesh, cloud, cams, splat = by["cube"], by["cloud"], by["cameras"], by["scene"]
    assert isinstance(mesh, MeshLayer) and len(mesh.faces) == 12
    assert np.array_equal(mesh.colors, (_cube().colors * 255 + 0.5).astype(np.uint8))  # vertex colours kept
    assert isinstance(cloud, PointsLayer) and cloud.total == len(cloud.points) == 3000
    # no colours in the file: the label attribute is shown, one tab20 colour per class
    from matplotlib import colormaps

    tab = (np.asarray(colormaps["tab20"].colors) * 255 + 0.5).astype(np.uint8)
    assert cloud.colored_by == "classification"
    assert np.array_equal(cloud.colors, tab[_cloud().attributes["classification"].astype(int)])
    assert isinstance(cams, CamerasLayer) and len(cams.cameras) == 6
    assert all(im is not None and im.shape == (60, 80, 3) for im in cams.images)
    assert isinstance(splat, SplatLayer) and splat.count == 12 and splat.form == "ts+"
    assert len(splat.preview.faces) == 12


def test_a_folder_shows_everything_in_it_and_reports_what_it_skips(content, tmp_path):
    for f in content.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    shutil.copytree(content / "images", tmp_path / "images")
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5\nend_header\n1 2\n")
    layers, skipped = collect_layers([tmp_path])
    kinds = sorted(ly.kind for ly in layers)
    assert kinds == ["cameras", "mesh", "points", "splat"]
    assert len(skipped) == 1 and "broken.ply" in skipped[0]


def test_an_official_triangle_splatting_model_shows_with_its_cameras(tmp_path):
    import json

    import torch

    from facet3d.core.structures.cameras import Cameras

    it = tmp_path / "garden" / "point_cloud" / "iteration_30000"
    it.mkdir(parents=True)
    n = 5
    torch.save({"triangles_points": torch.rand(n, 3, 3), "sigma": torch.zeros(n, 1), "opacity": torch.zeros(n, 1),
                "features_dc": torch.zeros(n, 1, 3), "features_rest": torch.zeros(n, 15, 3), "active_sh_degree": 0},
               it / "point_cloud_state_dict.pt")
    cams = Cameras.from_centre(torch.tensor([[0.0, 0, -3]]), torch.eye(3)[None], torch.tensor([[[50.0, 0, 31.5],
                               [0, 50, 23.5], [0, 0, 1]]]), [(48, 64)])
    (tmp_path / "garden" / "cameras.json").write_text(json.dumps([dict(
        id=0, img_name="DSC_0001", width=64, height=48, position=[0, 0, -3], rotation=np.eye(3).tolist(),
        fx=50.0, fy=50.0)]))
    # cfg_args (the Namespace official train.py saves) says where the training images are
    from PIL import Image

    (tmp_path / "data" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 48), (10, 200, 30)).save(tmp_path / "data" / "images" / "DSC_0001.JPG")
    (tmp_path / "garden" / "cfg_args").write_text(f"Namespace(sh_degree=3, source_path='{tmp_path / 'data'}', "
                                                  "model_path='./output/garden', images='images', resolution=-1)")
    layers, _ = collect_layers([tmp_path / "garden"], ViewOptions())
    assert [ly.kind for ly in layers] == ["splat", "cameras"]
    assert layers[1].images[0] is not None and tuple(layers[1].images[0][0, 0]) == (10, 200, 30)
    assert layers[0].count == n and layers[0].form == "ts" and layers[0].name == "garden"
    got = layers[1].cameras
    assert torch.allclose(got.K, cams.K) and torch.allclose(got.R, cams.R) and torch.allclose(got.t, cams.t)


def test_big_splat_scenes_preview_their_most_visible_triangles(tmp_path):
    import torch

    from facet3d.plugins.triangle_splatting.scene import TriangleScene

    g = torch.Generator().manual_seed(0)
    n = 400
    tri = torch.rand(n, 1, 3, generator=g) + 0.05 * torch.randn(n, 3, 3, generator=g)
    opacity = torch.rand(n, generator=g)
    TriangleScene.from_triangles(tri, opacity=opacity, sigma=0.5).save_ply(tmp_path / "big.ply")
    ly = collect_layers([tmp_path / "big.ply"], ViewOptions(max_triangles=50))[0][0]
    assert ly.count == n and len(ly.preview.faces) == 50 and ly.summary()["preview_triangles"] == 50
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1)
    best = set(torch.topk(opacity * area, 50).indices.tolist())  # TS soup: face k is triangle k's 3 vertices
    assert {int(f[0]) // 3 for f in ly.preview.faces} == best


def test_colour_by_scalar_and_bad_attribute():
    g = _cloud()
    cols, what = point_colours(g, "intensity")
    assert what == "intensity"
    v = g.attributes["intensity"]
    lo, hi = np.percentile(v, [1, 99])
    # a brighter value maps further along viridis: its colour is the colour map's at the same place
    from matplotlib import colormaps

    i = int(np.argmin(np.abs(v - np.median(v))))
    want = (np.asarray(colormaps["viridis"]((v[i] - lo) / (hi - lo))[:3]) * 255 + 0.5).astype(np.uint8)
    assert np.abs(cols[i].astype(int) - want.astype(int)).max() <= 1
    with pytest.raises(UsageError, match="no such per-point attribute.*classification, intensity"):
        point_colours(g, "reflectance")


def test_large_clouds_are_downsampled_for_display_with_the_count_kept():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1, (50_000, 3)) * [10, 10, 0.01]  # a flat survey-like patch
    for how in ("voxel", "random"):
        keep = display_subset(pts, 5000, how)
        assert 1000 < len(keep) <= 5000 and len(np.unique(keep)) == len(keep)
    keep = display_subset(pts, 5000, "voxel")
    # one point per voxel: the shown points cover the patch evenly (no 1 m cell left empty)
    cells = np.unique(np.floor(pts[keep, :2]).astype(int), axis=0)
    assert len(cells) == 100
    ly = collect_layers([_write(pts)], ViewOptions(max_points=5000))[0][0]
    assert ly.total == 50_000 and len(ly.points) <= 5000


def _write(pts: np.ndarray) -> Path:
    import tempfile

    p = Path(tempfile.mkdtemp()) / "big.npy"
    np.save(p, pts)
    return p


def test_server_holds_each_layer_and_keeps_survey_precision(content, tmp_path):
    from facet3d.plugins.viewer.server import ViewerServer

    far = _cloud(500)
    far.vertices = far.vertices + [512_345.678, 5_401_234.567, 250.0]  # UTM-like coordinates
    write(tmp_path / "survey.ply", far)
    layers, _ = collect_layers([content / "cube.ply", content / "cloud.ply", content / "cameras.json",
                                content / "scene.ply"])
    survey, _ = collect_layers([tmp_path / "survey.ply"])
    v = ViewerServer(survey, port=_free_port())
    try:
        assert np.any(v.shift) and np.abs(v.shift).max() > 1e5
        shown = np.asarray(survey[0].points - v.shift, dtype=np.float32).astype(np.float64) + v.shift
        assert np.abs(shown - survey[0].points).max() < 1e-3  # float32 after the shift: sub-millimetre
    finally:
        v.stop()
    v = ViewerServer(layers, port=_free_port())
    try:
        types = {m["name"]: m["type"] for m in v.scene_messages() if "props" in m}
        assert types["/cube"] == "GlbMessage" and types["/cloud"] == "PointCloudMessage"
        assert types["/scene/preview"] == "GlbMessage"
        assert [types.get(f"/cameras/{i:04d}") for i in range(7)] == ["CameraFrustumMessage"] * 6 + [None]
        v.set_mode("exact")  # the exact view hides the preview mesh (the renderer's image replaces it)
        seen = [m["visible"] for m in v.scene_messages() if m.get("name") == "/scene/preview" and "visible" in m]
        assert seen[-1] is False
        with pytest.raises(UsageError):
            v.set_mode("fast")
    finally:
        v.stop()


def test_exact_view_is_the_renderer_s_image_for_the_browser_camera(content):
    import torch

    from facet3d.plugins.triangle_splatting.render import render
    from facet3d.plugins.triangle_splatting.scene import TriangleScene
    from facet3d.plugins.viewer.server import _quat_wxyz, viser_camera

    from facet3d.core.io.cameras import read_cameras

    cams, _ = read_cameras(content / "cameras.json")
    c2w = cams.camera_to_world()[2].numpy()
    fov = 2 * math.atan(0.5 * 60 / 60.0)
    vc = viser_camera(_quat_wxyz(c2w[:3, :3]), c2w[:3, 3], fov, 80 / 60, 60)
    assert torch.allclose(vc.R, cams.R[2:3], atol=1e-9) and torch.allclose(vc.t, cams.t[2:3], atol=1e-9)
    assert torch.allclose(vc.K, cams.K[2:3], atol=1e-9)
    layers, _ = collect_layers([content / "scene.ply"])
    got, depth = layers[0].render(vc, background=(1.0, 1.0, 1.0))
    scene = TriangleScene.load_ply(content / "scene.ply")
    want = render(scene, cams[2].to(dtype=torch.float32), background=(1.0, 1.0, 1.0))
    assert np.array_equal(got, (want["rgb"][0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    assert (got < 250).any(axis=-1).mean() > 0.02  # the cube is in view
    # the depth viser composites with: the cube's camera z where it is drawn, empty (inf) elsewhere
    drawn = want["alpha"][0].numpy() >= 0.5
    assert np.isinf(depth[~drawn]).all() and np.allclose(depth[drawn], want["depth"][0].numpy()[drawn])
    z_centre = float(cams[2].transform_to_camera(torch.tensor([[0.0, 2.5, 0.0]], dtype=torch.float64))[0, 0, 2])
    half = math.sqrt(3) / 2  # the unit cube's half diagonal: every point's z is within it of the centre's
    assert (np.abs(depth[drawn] - z_centre) <= half + 1e-4).all() and np.ptp(depth[drawn]) > 0.2


def test_a_busy_port_moves_to_the_next_free_one(content):
    from facet3d.plugins.viewer.server import ViewerServer

    layers, _ = collect_layers([content / "cube.ply"])
    port = _free_port()
    a = ViewerServer(layers, port=port)
    try:
        b = ViewerServer(layers, port=port)
        try:
            assert a.port == port and b.port != port and b.url.endswith(f":{b.port}")
        finally:
            b.stop()
    finally:
        a.stop()
    assert _port_free(port)


def test_missing_viser_says_how_to_get_it(monkeypatch):
    import importlib.util

    from facet3d.plugins.viewer import server

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "viser" else real(n, *a))
    with pytest.raises(UsageError, match=r"pip install 'facet3d\[view\]'"):
        server.ViewerServer([], port=_free_port())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    """Nothing listens there and a new server could (SO_REUSEADDR, as servers bind, ignores the browser's
    closed connections in TIME_WAIT)."""
    with socket.socket() as c:
        if c.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_view_command_serves_a_page_a_browser_draws_and_stops_cleanly(content, tmp_path):
    port = _free_port()
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FACET3D_PLUGINS", None)
    proc = subprocess.Popen([sys.executable, "-m", "facet3d", "view", str(content / "cube.ply"),
                             str(content / "cloud.ply"), str(content / "cameras.json"), str(content / "scene.ply"),
                             "--port", str(port), "--up", "z"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}", proc.stderr.read() if proc.poll() is not None else url
        shot = tmp_path / "viewer.png"
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--enable-unsafe-swiftshader",
                            "--use-angle=swiftshader", "--window-size=800,600", "--virtual-time-budget=5000",
                            f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
        assert shot.is_file(), r.stderr[-2000:]
        from PIL import Image

        img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        # the 3-D canvas (left of the control panel, below the notices): coloured things drawn on white
        canvas = img[200:560, 60:440]
        drawn = (np.abs(canvas - 255).sum(-1) > 60).mean()
        assert drawn > 0.01, f"only {drawn:.4f} of the canvas is not background"
        if os.environ.get("FACET3D_KEEP_SCREENSHOTS"):
            shutil.copy(shot, os.environ["FACET3D_KEEP_SCREENSHOTS"])
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    deadline = time.time() + 5
    while not _port_free(port) and time.time() < deadline:
        time.sleep(0.1)
    assert _port_free(port)


def test_view_command_errors_are_one_line(cli, tmp_path):
    r = cli("view", str(tmp_path / "missing.ply"), "--no-block")
    assert r.returncode != 0 and "missing.ply: no such file or folder" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_real_folders_driving_frames_and_same_stem_files(shared_data):
    """A nuScenes keyframe (the dfa3d plugin's loader): its lidar and six cameras with photos; a folder
    holding simple.las and simple.laz shows both under distinct names; README.txt is a document."""
    layers, skipped = collect_layers([shared_data / "driving" / "nuscenes_sample", shared_data / "las"])
    by = {ly.name: ly for ly in layers}
    lidar, cams = by["nuscenes_sample/lidar"], by["nuscenes_sample/cameras"]
    assert lidar.kind == "points" and lidar.total > 30_000
    assert len(cams.cameras) == 6 and all(im is not None for im in cams.images)
    assert {"las/simple.las", "las/simple.laz"} <= set(by) and len(by) == len(layers)
    assert skipped == []  # LICENSE.txt beside the LAS files is not a bad point file
