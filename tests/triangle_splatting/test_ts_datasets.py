"""Multi-view datasets (Blender / COLMAP) and ``facet3d render --cameras`` with a COLMAP model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facet3d.core.errors import InputError
from facet3d.core.io.api import read
from facet3d.core.io.colmap import write_colmap_model
from facet3d.core.structures.cameras import Cameras
from facet3d.plugins.triangle_splatting.datasets import load_dataset
from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
from facet3d.plugins.triangle_splatting.scene import TriangleScene

FUZE = "meshes/fuze.obj"
SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"  # not via `conftest`: sub-folders have their own
LEGO = "multiview/nerf_synthetic_lego_200px"


# ---------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def lego(shared_data):
    path = shared_data / LEGO
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path


def test_lego_blender(lego):
    ds = load_dataset(lego)
    n = len(json.loads((lego / "transforms_train.json").read_text())["frames"])
    assert ds.format == "blender" and n == 87 and ds.points is None and ds.point_colors is None
    assert len(ds.test) == len(range(0, n, 8)) == 11 and len(ds.train) == n - 11
    assert ds.test.names[:2] == [ds.test.cameras.names[0], ds.test.cameras.names[1]]
    for v in (ds.train, ds.test):
        assert v.images.shape == (len(v), 200, 200, 3) and v.images.dtype == torch.float32
        assert v.masks.shape == (len(v), 200, 200) and v.cameras.K.dtype == torch.float32
        assert 0.0 <= float(v.images.min()) and float(v.images.max()) <= 1.0
        assert v.cameras.image_size.tolist() == [[200, 200]] * len(v)
        assert torch.all(v.images[v.masks == 0] == 1.0)  # white background where transparent
        assert 0.05 < float((v.masks > 0).float().mean()) < 0.9
        # cameras on a sphere of radius ~4 looking at the origin: it projects to the image centre
        assert torch.allclose(v.cameras.centers().norm(dim=1), torch.tensor(4.03), atol=0.05)
        px, depth = v.cameras.project(torch.zeros(1, 3))
        assert (depth > 3.5).all() and ((px - 99.5).abs() < 3).all()
    assert torch.equal(ds.bounds[0], torch.full((3,), -1.5)) and torch.equal(ds.bounds[1], torch.full((3,), 1.5))
    # compositing by hand on black, for the first test view (test = indices 0, 8, ...)
    black = load_dataset(lego, holdout=8, background=(0, 0, 0), max_size=None)
    rgba = np.asarray(Image.open(lego / black.test.names[0]), dtype=np.float32) / 255
    assert np.allclose(black.test.images[0].numpy(), rgba[..., :3] * rgba[..., 3:], atol=1e-6)
    assert np.allclose(black.test.masks[0].numpy(), rgba[..., 3])
    # max_size: 64x64 images, intrinsics scaled with integer pixel centres
    small = load_dataset(lego / "transforms_train.json", holdout=0, max_size=64)
    assert len(small.train) == n and len(small.test) == 0 and small.test.images.shape == (0, 64, 64, 3)
    assert small.train.images.shape == (n, 64, 64, 3)
    X = torch.randn(20, 3)
    big_px, _ = ds.test.cameras.project(X)
    small_px, _ = small.train.cameras[[0]].project(X)
    assert torch.allclose((big_px[0] + 0.5) * 64 / 200 - 0.5, small_px[0], atol=1e-3)


# ---------------------------------------------------------------------------------------- synthetic
def _orbit(n=6, size=(40, 56)):
    g = read(SAMPLE_DATA / FUZE)
    lo, hi = g.vertices.min(0), g.vertices.max(0)
    cams = orbit_cameras((lo + hi) / 2, 2.2 * float(np.linalg.norm(hi - lo)) / 2, n, size, fov=70)
    return g, cams


@pytest.fixture(scope="module")
def colmap_scene(tmp_path_factory):
    """Hard renders of fuze.obj as RGBA PNGs under images/ + a text COLMAP model with mesh-vertex points."""
    g, cams = _orbit()
    cams.names = [f"view_{5 - i:03d}.png" for i in range(len(cams))]  # not in name order: the loader sorts
    with torch.no_grad():
        o = render(TriangleScene.from_geometry(g), cams, background=(1, 1, 1), hard=True)
    root = tmp_path_factory.mktemp("colmap")
    (root / "images").mkdir()
    for i, name in enumerate(cams.names):
        rgba = torch.cat([o["rgb"][i], o["alpha"][i][..., None]], -1).clamp(0, 1)
        Image.fromarray((rgba * 255 + 0.5).to(torch.uint8).numpy(), "RGBA").save(root / "images" / name)
    pts = np.asarray(g.vertices, dtype=np.float64)[::3]
    cols = np.random.default_rng(0).integers(0, 256, size=(len(pts), 3)).astype(np.uint8)
    write_colmap_model(root / "sparse" / "0", cams, points=pts, colors=cols)
    return root, cams, pts, cols


def test_colmap_dataset(colmap_scene):
    root, cams, pts, cols = colmap_scene
    ds = load_dataset(root, holdout=3)
    assert ds.format == "colmap" and ds.warnings == [] and ds.background == (1.0, 1.0, 1.0)
    order = np.argsort(cams.names)  # sorted by name, then index % 3 == 0 -> test
    assert ds.test.names == [cams.names[i] for i in order[[0, 3]]]
    assert ds.train.names == [cams.names[i] for i in order[[1, 2, 4, 5]]]
    for v, idx in ((ds.test, order[[0, 3]]), (ds.train, order[[1, 2, 4, 5]])):
        ref = cams[list(idx)]
        assert v.cameras.names == v.names and v.cameras.K.dtype == torch.float32
        for a in ("K", "R", "t"):
            assert torch.allclose(getattr(v.cameras, a).double(), getattr(ref, a), atol=1e-5), a
        assert v.images.shape == (len(v), 40, 56, 3) and v.masks is not None
        assert torch.all(v.images[v.masks == 0] == 1.0)
    assert torch.allclose(ds.points.double(), torch.from_numpy(pts), atol=1e-6)
    assert torch.allclose(ds.point_colors, torch.from_numpy(cols).float() / 255)
    lo, hi = ds.bounds
    inside = ((ds.points >= lo) & (ds.points <= hi)).all(1).float().mean()
    assert inside > 0.97 and (hi - lo <= torch.from_numpy(np.ptp(pts, 0)).float() * 1.3).all()
    # binary model gives the same, found by format="colmap" from the model folder itself
    broot = root.parent / "colmap_bin"
    if not broot.exists():
        (broot / "sparse").mkdir(parents=True)
        (broot / "images").symlink_to(root / "images")
        write_colmap_model(broot / "sparse", cams, points=pts, colors=cols, binary=True)
    bds = load_dataset(broot / "sparse", format="colmap", holdout=3)
    assert bds.train.names == ds.train.names and torch.equal(bds.train.images, ds.train.images)
    assert torch.allclose(bds.train.cameras.K, ds.train.cameras.K) and torch.equal(bds.points, ds.points)


def test_colmap_downscale(colmap_scene):
    root, cams, pts, _ = colmap_scene
    full = load_dataset(root, holdout=0)
    half = load_dataset(root, holdout=0, downscale=2)
    assert half.train.images.shape == (6, 20, 28, 3) and half.train.cameras.image_size[0].tolist() == [20, 28]
    # projected points scale with the image: u' = (u + 0.5) / 2 - 0.5
    P = torch.from_numpy(pts).float()
    pf, df = full.train.cameras.project(P)
    ph, dh = half.train.cameras.project(P)
    assert torch.allclose((pf + 0.5) / 2 - 0.5, ph, atol=1e-4) and torch.allclose(df, dh)
    # box filter: a 2x2 block average of the composited image (and of the mask)
    box = full.train.images.reshape(6, 20, 2, 28, 2, 3).mean((2, 4))
    assert torch.allclose(box, half.train.images, atol=1e-5)
    assert torch.allclose(full.train.masks.reshape(6, 20, 2, 28, 2).mean((2, 4)), half.train.masks, atol=1e-5)
    capped = load_dataset(root, holdout=0, max_size=28)
    assert capped.train.images.shape == (6, 20, 28, 3)
    assert torch.allclose(capped.train.cameras.K, half.train.cameras.K)


def test_colmap_problems(colmap_scene, tmp_path):
    root, cams, pts, cols = colmap_scene
    ds = tmp_path / "ds"
    (ds / "pics").mkdir(parents=True)
    for f in (root / "images").iterdir():
        (ds / "pics" / f.name).write_bytes(f.read_bytes())
    K = cams.K.clone()
    write_colmap_model(ds / "sparse" / "0", cams)
    with pytest.raises(InputError, match="images folder not found"):
        load_dataset(ds)
    d = load_dataset(ds, images_dir="pics")
    assert d.points is None and any("no 3-D points" in w for w in d.warnings)
    # distortion: a warning, not a failure
    txt = (ds / "sparse" / "0" / "cameras.txt").read_text().replace("PINHOLE", "OPENCV")
    lines = [ln + (" 0.01 0 0 0" if not ln.startswith("#") and ln else "") for ln in txt.splitlines()]
    (ds / "sparse" / "0" / "cameras.txt").write_text("\n".join(lines) + "\n")
    d = load_dataset(ds, images_dir="pics")
    assert any("distortion" in w and "OPENCV" in w for w in d.warnings)
    train_idx = np.argsort(cams.names)[[i for i in range(6) if i % 8]]
    assert torch.allclose(d.train.cameras.K.double(), K[train_idx], atol=1e-5)
    # a downsampled images folder (as images_2 of Mip-NeRF 360): intrinsics follow the images
    (ds / "pics_2").mkdir()
    for f in (ds / "pics").iterdir():
        Image.open(f).resize((28, 20), Image.Resampling.BOX).save(ds / "pics_2" / f.name)
    d2 = load_dataset(ds, images_dir="pics_2")
    assert d2.train.images.shape[1:3] == (20, 28) and any("scaled" in w for w in d2.warnings)
    assert torch.allclose(d2.train.cameras.K.double(), cams[list(train_idx)].resized(20, 28).K, atol=1e-5)
    # inconsistent sizes, unreadable and missing images name the file
    Image.new("RGB", (30, 30)).save(ds / "pics" / cams.names[2])
    with pytest.raises(InputError, match=cams.names[2]):
        load_dataset(ds, images_dir="pics")
    (ds / "pics" / cams.names[2]).write_bytes(b"not a png")
    with pytest.raises(InputError, match=cams.names[2]):
        load_dataset(ds, images_dir="pics")
    (ds / "pics" / cams.names[2]).unlink()
    with pytest.raises(InputError, match=cams.names[2]):
        load_dataset(ds, images_dir="pics")
    with pytest.raises(InputError, match="transforms_.*sparse"):
        load_dataset(tmp_path)


def test_blender_synthetic(tmp_path):
    """transforms_train/test with file paths with and without extension; RGBA and RGB images."""
    g, cams = _orbit(4, size=(12, 16))
    c2w = cams.to_blender().numpy()
    fov = float(cams.fov_x()[0])
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    frames = {"train": [], "test": []}
    for i in range(4):
        split = "train" if i < 3 else "test"
        rgba = rng.integers(0, 256, size=(12, 16, 4)).astype(np.uint8)
        rgba[0, 0, 3] = 0
        Image.fromarray(rgba, "RGBA").save(tmp_path / split / f"r_{i}.png")
        fp = f"./{split}/r_{i}" if i % 2 == 0 else f"{split}/r_{i}.png"
        frames[split].append({"file_path": fp, "transform_matrix": c2w[i].tolist()})
    for split in frames:
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames[split]}))
    ds = load_dataset(tmp_path, background=(0.0, 0.5, 1.0))
    assert ds.format == "blender" and len(ds.train) == 3 and ds.test.names == ["test/r_3.png"]
    assert ds.train.names == ["train/r_0.png", "train/r_1.png", "train/r_2.png"]
    # the same cameras as the orbit (Blender principal point = image centre, as orbit_cameras)
    assert torch.allclose(ds.train.cameras.K.double(), cams.K[:3], atol=1e-4)
    assert torch.allclose(ds.test.cameras.world_to_camera().double(), cams[[3]].world_to_camera(), atol=1e-5)
    assert torch.allclose(ds.train.images[:, 0, 0], torch.tensor([0.0, 0.5, 1.0]))
    # holdout when the test images are absent (with a warning); a missing train image fails
    for f in (tmp_path / "test").iterdir():
        f.unlink()
    ds = load_dataset(tmp_path, holdout=2)
    assert ds.train.names == ["train/r_1.png"] and len(ds.test) == 2 and ds.warnings
    (tmp_path / "train" / "r_1.png").unlink()
    with pytest.raises(InputError, match="r_1"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------------------------------- CLI
def test_render_cli_colmap_cameras(cli, sample_data, tmp_path):
    from facet3d.core.io.cameras import read_cameras

    g, cams = _orbit(3, size=(24, 32))
    cams.names = ["a.png", "b.png", "c.png"]
    model = write_colmap_model(tmp_path / "ds" / "sparse" / "0", cams, binary=True)
    with torch.no_grad():
        ref = render(TriangleScene.from_geometry(g), cams, hard=True)["depth"].numpy()
    assert (ref > 0).mean() > 0.05
    out = tmp_path / "r"
    r = cli("render", str(sample_data / FUZE), "--cameras", str(model), "--out", str(out), "--save-depth")
    assert r.returncode == 0, r.stderr
    for i, name in enumerate("abc"):
        np.testing.assert_allclose(np.load(out / f"{name}_depth.npy"), ref[i], rtol=1e-5, atol=1e-6)
    # the dataset root and a file of the model work too (in process: each CLI run costs seconds)
    for arg in (tmp_path / "ds", model / "images.bin", model / "cameras.bin"):
        c, warnings = read_cameras(arg)
        assert not warnings
        assert c.names == cams.names and torch.allclose(c.K, cams.K) and torch.allclose(c.R, cams.R, atol=1e-12)
    # --size rescales the COLMAP intrinsics like any camera file
    big, _ = read_cameras(tmp_path / "ds", (48, 64))
    assert isinstance(big, Cameras) and torch.allclose(big.K, cams.resized(48, 64).K)
    assert torch.allclose(big.K[:, :2, 2], torch.tensor([31.5, 23.5], dtype=torch.float64))
