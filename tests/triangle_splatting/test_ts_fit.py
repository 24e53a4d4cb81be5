"""Fitting: schedules, densify/prune bookkeeping, exact resume, a tiny synthetic scene recovered
(held-out PSNR > 30 dB), TS+ ending opaque and hard, and the `facet3d fit` command."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from facet3d.core.structures.cameras import Cameras
from facet3d.plugins.triangle_splatting.fit import FitConfig, Schedule, fit
from facet3d.plugins.triangle_splatting.model import SplatModel
from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
from facet3d.plugins.triangle_splatting.scene import TriangleScene


def _sphere_scene() -> TriangleScene:
    import trimesh

    m = trimesh.creation.icosphere(2, radius=0.6)
    v = np.asarray(m.vertices)
    col = 0.5 + 0.4 * np.stack([np.sin(3 * v[:, 0]), np.cos(2 * v[:, 1]), np.sin(4 * v[:, 2] + 1)], 1)
    return TriangleScene.from_mesh(v, m.faces, col)


def _cameras(size: int, n: int) -> Cameras:
    a = orbit_cameras((0, 0, 0), 2.5, n, size, fov=45, elevation=25, dtype=torch.float32)
    b = orbit_cameras((0, 0, 0), 2.5, n, size, fov=45, elevation=-20, start_azimuth=7, dtype=torch.float32)
    return Cameras(torch.cat([a.K, b.K]), torch.cat([a.R, b.R]), torch.cat([a.t, b.t]), (size, size),
                   [f"r_{i}" for i in range(2 * n)], dtype=torch.float32)


def synthetic_dataset(size: int = 48, n: int = 16):
    """A coloured sphere rendered from 2n cameras, anti-aliased like a photo (4x4 supersampled hard
    render, box-filtered); every 8th view held out (as 3DGS)."""
    cams = _cameras(size, n)
    big = Cameras(cams.K.clone(), cams.R, cams.t, (4 * size, 4 * size), dtype=torch.float32)
    big.K[:, :2, :3] *= 4
    big.K[:, :2, 2] += 1.5  # integer pixel centres: u' = 4 (u + 0.5) - 0.5
    with torch.no_grad():
        o = render(_sphere_scene(), big, background=(1, 1, 1), hard=True)
    pool = lambda x: torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 4).permute(0, 2, 3, 1)  # noqa: E731
    rgb, alpha = pool(o["rgb"].float()), pool(o["alpha"].float()[..., None])[..., 0]
    idx = torch.arange(len(cams))
    te, tr = idx[idx % 8 == 0], idx[idx % 8 != 0]
    views = lambda ii: NS(images=rgb[ii], cameras=cams[ii.tolist()],  # noqa: E731
                          names=[cams.names[i] for i in ii.tolist()], masks=alpha[ii])
    return NS(train=views(tr), test=views(te), points=None, point_colors=None,
              bounds=(torch.full((3,), -1.0), torch.full((3,), 1.0)), background=(1.0, 1.0, 1.0),
              source="synthetic sphere", format="synthetic")


# ------------------------------------------------------------------ schedules
def test_schedule_scales_the_published_recipe():
    s = Schedule(FitConfig(mode="ts+", iters=30000))
    assert s.sh_degree(999) == 0 and s.sh_degree(1000) == 1 and s.sh_degree(3000) == 3 and s.sh_degree(29999) == 3
    assert s.densify_now(500) and s.densify_now(25000) and not s.densify_now(25500) and not s.densify_now(250)
    assert s.sigma(0) == pytest.approx(1.0) and s.sigma(30000) == pytest.approx(1e-4)
    assert s.sigma(15000) == pytest.approx(1e-2, rel=1e-6)  # log-linear
    assert s.opacity_floor(5000) == pytest.approx(0.1) and s.opacity_floor(24000) == pytest.approx(0.9999)
    assert s.lr_verts(30000) == pytest.approx(0.0018 / 100) and s.lr_verts(0, extent=4.0) == pytest.approx(0.0072)
    short = Schedule(FitConfig(mode="ts", iters=300))
    assert [i for i in range(301) if short.densify_now(i)] == list(range(5, 251, 5))
    epoch = Schedule(FitConfig(mode="ts", iters=300), n_views=40)  # at least one pass over the views
    assert [i for i in range(301) if epoch.densify_now(i)] == [40, 80, 120, 160, 200, 240]
    assert short.opacity_floor(200) == 0.0  # TS has no floor


# ------------------------------------------------------------------ densify / prune
def test_ts_split_clone_prune_and_adam_state():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(50, 3, generator=g)
    m = SplatModel.from_points("ts", pts, torch.rand(50, 3, generator=g), g)
    opt = torch.optim.Adam([dict(params=[t], lr=1e-3, name=k) for k, t in m.params.items()])
    loss = sum(t.square().sum() for t in m.params.values())
    loss.backward()
    opt.step()
    before = m.params["verts"].detach().clone()
    edge = (before - before.roll(-1, 1)).norm(dim=-1).amax(-1)
    thr = float(edge.median())
    counts = m.densify(20, thr, g, opt)
    assert len(m) == 50 + 3 * counts["split"] + counts["cloned"]
    assert 20 <= len(m) - 50 <= 22
    # every parameter is still the one the optimiser updates, with matching Adam moments
    for group in opt.param_groups:
        p = group["params"][0]
        assert p is m.params[group["name"]]
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape
    n = len(m)
    removed = m.prune(torch.arange(n) % 3 == 0, opt)
    assert removed == (n + 2) // 3 and len(m) == n - removed
    assert opt.state[m.params["verts"]]["exp_avg"].shape[0] == len(m)


def test_ts_split_tiles_the_parent():
    tri = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [0, 2, 0]]])
    m = SplatModel("ts", dict(verts=tri, dc=torch.zeros(1, 3), rest=torch.zeros(1, 15, 3), opacity=torch.zeros(1),
                              sigma=torch.zeros(1)))
    assert m.densify(3, 0.5) == dict(split=1, cloned=0)
    ch = m.params["verts"].detach()
    area = 0.5 * torch.linalg.cross(ch[:, 1] - ch[:, 0], ch[:, 2] - ch[:, 0]).norm(dim=-1)
    assert torch.allclose(area, torch.full((4,), 0.5))
    assert {tuple(v) for v in ch.reshape(-1, 3).tolist()} == {(0, 0, 0), (2, 0, 0), (0, 2, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)}
    m2 = SplatModel("ts", dict(verts=tri, dc=torch.zeros(1, 3), rest=torch.zeros(1, 15, 3), opacity=torch.zeros(1),
                               sigma=torch.zeros(1)))
    assert m2.densify(1, 10.0, torch.Generator().manual_seed(0)) == dict(split=0, cloned=1)
    o = torch.sigmoid(m2.params["opacity"].detach())
    assert torch.allclose(1 - (1 - o[0]) * (1 - o[1]), torch.tensor(0.5), atol=1e-5)  # pair covers like the parent


def test_tsplus_subdivision_shares_midpoints_and_prune_drops_vertices():
    import trimesh

    g = torch.Generator().manual_seed(1)
    box = trimesh.creation.box()
    m = SplatModel("ts+", dict(verts=torch.tensor(box.vertices, dtype=torch.float32),
                               dc=torch.zeros(8, 3), rest=torch.zeros(8, 15, 3), opacity=torch.zeros(8)),
                   faces=torch.tensor(box.faces, dtype=torch.int64))
    m.densify(10_000, 0.0, g)  # budget above 3x12: every face is split
    assert len(m) == 48
    mesh = trimesh.Trimesh(m.params["verts"].detach().numpy(), m.faces.numpy(), process=False)
    # 8 corners + one midpoint per edge (18 edges): shared, so the surface stays closed
    assert m.params["verts"].shape[0] == 8 + 18
    assert mesh.is_watertight and mesh.euler_number == 2
    m.prune(torch.arange(48) < 40)
    assert len(m) == 8 and int(m.faces.max()) < m.params["verts"].shape[0]
    assert torch.unique(m.faces).numel() == m.params["verts"].shape[0]


# ------------------------------------------------------------------ fitting
@pytest.fixture(scope="module")
def sphere_data():
    return synthetic_dataset()


@pytest.mark.slow
def test_fit_recovers_a_synthetic_scene(sphere_data, tmp_path):
    cfg = FitConfig(mode="ts", iters=400, init_points=1500, max_triangles=6000, checkpoint_every=0, threads=2)
    m = fit(sphere_data, tmp_path, cfg)
    print(f"TS-NUMBER synthetic sphere 48x48: held-out PSNR {m['psnr']:.2f} dB SSIM {m['ssim']:.4f} "
          f"({m['triangles']} triangles, {m['train_seconds']} s)")
    assert m["eval_split"] == "test" and m["eval_views"] == 4
    assert m["psnr"] > 30.0
    scene = TriangleScene.load_ply(tmp_path / "scene.ply")
    assert len(scene) == m["triangles"]
    assert (tmp_path / "previews").is_dir() and any((tmp_path / "previews").iterdir())


@pytest.fixture
def one_thread():
    """Bit-exact runs need one thread: multi-threaded CPU scatter-adds in backward sum in varying order."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_fit_threads_apply_to_the_call_only(sphere_data, tmp_path, one_thread):
    seen = []
    fit(sphere_data, tmp_path, FitConfig(mode="ts", iters=2, init_points=100, checkpoint_every=0, threads=2),
        on_step=lambda it, rec: seen.append(torch.get_num_threads()))
    assert seen == [2, 2] and torch.get_num_threads() == 1  # the caller's setting comes back


def test_resume_continues_exactly(sphere_data, tmp_path, one_thread):
    cfg = FitConfig(mode="ts", iters=24, init_points=300, checkpoint_every=12, densify_every=1 / 6,
                    densify_from=1 / 6)
    fit(sphere_data, tmp_path / "a", cfg)
    full = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)

    class Stop(Exception):
        pass

    def interrupt(it, rec):
        if it == 17:  # killed mid-run: the checkpoint of iteration 12 is what survives
            raise Stop

    with pytest.raises(Stop):
        fit(sphere_data, tmp_path / "c", cfg, on_step=interrupt)
    assert torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)["iteration"] == 12
    fit(sphere_data, tmp_path / "c", cfg, resume=True)
    resumed = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert resumed["iteration"] == full["iteration"] == 24
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k


def test_tsplus_ends_opaque_and_hard(sphere_data, tmp_path):
    cfg = FitConfig(mode="ts+", iters=120, init_points=400, checkpoint_every=0)
    m = fit(sphere_data, tmp_path, cfg)
    scene = TriangleScene.load_ply(tmp_path / "scene.ply")
    assert scene.form == "ts+"
    assert float(scene.sigma) == pytest.approx(1e-4, rel=1e-3)
    assert float(scene.opacity.min()) >= 0.9999 - 1e-6
    assert m["psnr"] > 15  # a short run: only checks it learns something


@pytest.mark.slow
def test_fit_command_on_a_blender_folder(tmp_path, cli):
    from PIL import Image

    size, cams = 32, _cameras(32, 8)
    with torch.no_grad():
        o = render(_sphere_scene(), cams, background=(0, 0, 0), hard=True)
    (tmp_path / "ds" / "train").mkdir(parents=True)
    frames = []
    c2w = cams.to_blender()
    for i in range(len(cams)):
        rgba = torch.cat([o["rgb"][i], o["alpha"][i][..., None]], -1).clamp(0, 1)
        Image.fromarray((rgba.numpy() * 255 + 0.5).astype(np.uint8), "RGBA").save(tmp_path / "ds" / "train" / f"r_{i}.png")
        frames.append(dict(file_path=f"./train/r_{i}", transform_matrix=c2w[i].tolist()))
    fov = float(cams.fov_x()[0])
    (tmp_path / "ds" / "transforms_train.json").write_text(json.dumps(dict(camera_angle_x=fov, frames=frames)))
    run = tmp_path / "run"
    r = cli("fit", str(tmp_path / "ds"), "--format", "blender", "--out", str(run), "--iters", "30",
            "--init-points", "300", "--checkpoint-every", "20", "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["iterations"] == 30 and metrics["eval_views"] == 2 and math.isfinite(metrics["psnr"])
    for name in ("scene.ply", "checkpoint.pt", "metrics.json", "log.json", "index.html"):
        assert (run / name).is_file()
    page = (run / "index.html").read_text()  # the run's page: its previews, numbers and this command
    assert "previews/it000030.png" in page and "<th>psnr</th>" in page and "--init-points 300" in page
    r2 = cli("fit", str(tmp_path / "ds"), "--out", str(run), "--iters", "30")
    assert r2.returncode == 2 and "--resume" in r2.stderr and "Traceback" not in r2.stderr
    r3 = cli("fit", str(tmp_path / "ds"), "--out", str(run), "--iters", "40", "--resume", "--json")
    assert r3.returncode == 0, r3.stderr
    assert json.loads(r3.stdout)["iterations"] == 40
    r4 = cli("fit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run2"))
    assert r4.returncode == 1 and r4.stderr.count("\n") == 1 and "nowhere" in r4.stderr


def test_raycast_mesh_renderer_agrees_with_hard_rasterizer():
    """mesh_eval's open3d ray caster (used to score exported TS+ meshes) vs our z-buffer mode."""
    from facet3d.plugins.triangle_splatting.export import scene_to_geometry
    from facet3d.plugins.triangle_splatting.mesh_eval import raycast_colors

    scene = _sphere_scene()
    cams = _cameras(64, 3)
    g = scene_to_geometry(scene)
    ray = raycast_colors(np.asarray(g.vertices), np.asarray(g.faces), np.asarray(g.colors), cams, (1.0, 1.0, 1.0))
    with torch.no_grad():
        ours = render(scene, cams, background=(1, 1, 1), hard=True)["rgb"].float()
    diff = (ray - ours).abs().amax(-1)
    assert float((diff < 1e-3).float().mean()) > 0.995  # only silhouette pixels may differ
    assert float(diff.mean()) < 2e-3


def test_fit_on_a_colmap_dataset_starts_from_its_sfm_points(tmp_path):
    """images/ + sparse/0 (binary) with SfM points on the surface: TS puts one triangle per point."""
    from PIL import Image

    from facet3d.core.io.colmap import write_colmap_model
    from facet3d.plugins.triangle_splatting.datasets import load_dataset

    cams = _cameras(32, 8)
    with torch.no_grad():
        o = render(_sphere_scene(), cams, background=(0.2, 0.3, 0.4), hard=True)
    (tmp_path / "images").mkdir()
    for i, name in enumerate(cams.names):
        Image.fromarray((o["rgb"][i].numpy() * 255 + 0.5).astype(np.uint8), "RGB").save(tmp_path / "images" / f"{name}.png")
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(300, 3, generator=g, dtype=torch.float64)
    pts = 0.6 * pts / pts.norm(dim=-1, keepdim=True)
    write_colmap_model(tmp_path / "sparse" / "0", cams, [f"{n}.png" for n in cams.names], points=pts.numpy(),
                       colors=np.full((300, 3), 128, np.uint8), binary=True)
    ds = load_dataset(tmp_path, None, background=(0.2, 0.3, 0.4))
    assert ds.format == "colmap" and ds.points.shape == (300, 3)
    m = fit(ds, tmp_path / "run", FitConfig(mode="ts", iters=40, checkpoint_every=0))
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert m["eval_views"] == 2 and log["history"][0]["triangles"] == 300
    assert m["psnr"] > 12


# ------------------------------------------------------------------ devices
def _fit_devices(data, tmp_path, device: str, mode: str = "ts") -> tuple[set, dict, dict]:
    """Fit a few iterations (with a densification) on `device`; -> (devices seen by the training step:
    parameters, camera, background, image, target), metrics, the raw checkpoint loaded without map_location."""
    import facet3d.core.ops.image_metrics as im
    from facet3d.plugins.triangle_splatting import fit as fit_mod

    seen: set = set()
    render_train, ssim = fit_mod._render_train, im.ssim

    def spy_render(model, sched, it, cam, background, image_size):
        seen.update({str(t.device) for t in model.params.values()} | {str(cam.K.device), str(background.device)})
        if model.faces is not None:
            seen.add(str(model.faces.device))
        return render_train(model, sched, it, cam, background, image_size)

    def spy_ssim(img, gt, *a, **k):
        seen.update({str(img.device), str(gt.device)})
        return ssim(img, gt, *a, **k)

    cfg = FitConfig(mode=mode, iters=8, init_points=200, max_triangles=2000, checkpoint_every=4,
                    densify_every=0.25, densify_from=0.25, device=device)
    pm = pytest.MonkeyPatch()
    pm.setattr(fit_mod, "_render_train", spy_render)
    pm.setattr(im, "ssim", spy_ssim)
    try:
        metrics = fit(data, tmp_path, cfg)
    finally:
        pm.undo()
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no map_location: must hold CPU tensors
    return seen, metrics, ck


def _tensor_devices(obj) -> set:
    if isinstance(obj, torch.Tensor):
        return {str(obj.device)}
    if isinstance(obj, dict):
        return set().union(*(_tensor_devices(v) for v in obj.values())) if obj else set()
    if isinstance(obj, (list, tuple)):
        return set().union(*(_tensor_devices(v) for v in obj)) if obj else set()
    return set()


def test_dataset_to_moves_every_tensor():
    """dtype stands in for a device: every tensor of the dataset must pass through the mover."""
    from facet3d.plugins.triangle_splatting.datasets import dataset_to

    d = synthetic_dataset(size=8, n=8)
    d.points, d.point_colors = torch.rand(5, 3), torch.rand(5, 3)
    moved = dataset_to(d, "cpu", torch.float64)
    floats = [moved.train.images, moved.train.masks, moved.test.images, moved.test.masks, moved.points,
              moved.point_colors, *moved.bounds, moved.train.cameras.K, moved.train.cameras.R, moved.test.cameras.t]
    assert all(t.dtype == torch.float64 for t in floats)
    assert moved.train.names == d.train.names and moved.train.cameras.names == d.train.cameras.names
    assert moved.train.cameras.image_size.dtype == torch.int64
    torch.testing.assert_close(moved.train.images, d.train.images.double())


def test_fit_on_cpu_keeps_everything_on_cpu(tmp_path):
    seen, metrics, ck = _fit_devices(synthetic_dataset(size=16, n=8), tmp_path, "cpu")
    assert seen == {"cpu"} and metrics["device"] == "cpu"
    assert _tensor_devices(ck) == {"cpu"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["ts", "ts+"])
def test_fit_on_cuda_trains_on_the_gpu(tmp_path, mode):
    """The model, its optimizer, the images, cameras and background live on the GPU; the checkpoint
    is saved on the CPU, so it resumes on the GPU and loads on a CPU-only machine."""
    seen, metrics, ck = _fit_devices(synthetic_dataset(size=16, n=8), tmp_path, "cuda", mode)
    assert seen == {"cuda:0"} and metrics["device"] == "cuda:0"
    assert _tensor_devices(ck) == {"cpu"}
    cfg = FitConfig(mode=mode, iters=10, init_points=200, max_triangles=2000, checkpoint_every=0, device="cuda")
    again = fit(synthetic_dataset(size=16, n=8), tmp_path, cfg, resume=True)
    assert again["iterations"] == 10 and again["device"] == "cuda:0"
