"""Cameras: conventions checked against direct numpy computations and the real multiview data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from facet3d.core.errors import GeometryError, InputError
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R


def _random_cams(n=6, seed=0):
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    t = rng.normal(size=(n, 3))
    K = intrinsics_matrix(rng.uniform(300, 600, n), rng.uniform(300, 600, n), rng.uniform(150, 170, n),
                          rng.uniform(110, 130, n)).numpy()
    return K, R, t


def test_project_matches_numpy_and_unproject_inverts():
    K, R, t = _random_cams()
    cams = Cameras(K, R, t, image_size=(240, 320))
    X = np.random.default_rng(1).normal(size=(50, 3)) * 3
    px, depth = cams.project(X)
    for b in range(len(cams)):
        xc = X @ R[b].T + t[b]
        uvw = xc @ K[b].T
        assert np.allclose(px[b].numpy(), uvw[:, :2] / uvw[:, 2:], atol=1e-9)
        assert np.allclose(depth[b].numpy(), xc[:, 2])
    # pixels -> world -> pixels, and the world points themselves
    back = cams.unproject(px, depth)
    assert np.allclose(back.numpy(), np.broadcast_to(X, back.shape), atol=1e-8)
    pix = torch.rand(len(cams), 30, 2, dtype=torch.float64) * torch.tensor([320.0, 240.0])
    d = torch.rand(len(cams), 30, dtype=torch.float64) * 10 + 0.5
    px2, d2 = cams.project(cams.unproject(pix, d))
    assert torch.allclose(px2, pix, atol=1e-8) and torch.allclose(d2, d, atol=1e-10)
    # centres project nowhere: they sit at depth 0 in their own camera
    C = cams.centers()
    assert torch.allclose(cams.transform_to_camera(C)[torch.arange(len(cams)), torch.arange(len(cams))],
                          torch.zeros(len(cams), 3, dtype=torch.float64), atol=1e-12)
    assert np.allclose(C.numpy(), np.einsum("bji,bj->bi", R, -t))
    # rays: unit directions from the centre through the unprojected points
    o, dirs = cams.rays(pix)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(len(cams), 30, dtype=torch.float64))
    assert torch.allclose(torch.linalg.cross(cams.unproject(pix, d) - o, dirs), torch.zeros_like(o), atol=1e-9)
    assert cams.in_image(pix * (319.0 / 320.0), d).all()
    assert not cams.in_image(pix, -d).any()
    assert not cams.in_image(torch.tensor([[[319.6, 10.0]]], dtype=torch.float64).expand(len(cams), 1, 2)).any()


def test_colmap_roundtrip_against_scipy():
    K, R, t = _random_cams(seed=2)
    cams = Cameras(K, R, t)
    q, tv = cams.to_colmap()
    assert (q[:, 0] >= 0).all()
    # scipy's quaternion is (x, y, z, w); COLMAP's is (w, x, y, z)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]].numpy()).as_matrix()
    assert np.allclose(ref, R, atol=1e-12)
    again = Cameras.from_colmap(q, tv, K)
    assert torch.allclose(again.R, cams.R, atol=1e-12) and torch.allclose(again.t, cams.t)


def test_blender_roundtrip_and_direct_opengl_projection():
    rng = np.random.default_rng(3)
    c2w = np.tile(np.eye(4), (4, 1, 1))
    c2w[:, :3, :3] = Rotation.random(4, random_state=3).as_matrix()
    c2w[:, :3, 3] = rng.normal(size=(4, 3)) * 4
    W, H, fov = 200, 150, 0.8
    cams = Cameras.from_blender(c2w, fov_x=fov, width=W, height=H)
    assert np.allclose(cams.to_blender().numpy(), c2w, atol=1e-12)
    assert np.allclose(cams.fov_x().numpy(), fov)
    # project by hand in OpenGL camera space: camera looks down -z, +y is up in the image; the optical
    # axis goes through the image centre, ((W - 1)/2, (H - 1)/2) with integer pixel centres
    f = 0.5 * W / math.tan(fov / 2)
    X = rng.normal(size=(40, 3))
    px, depth = cams.project(X)
    for b in range(4):
        xg = (np.linalg.inv(c2w[b]) @ np.c_[X, np.ones(40)].T).T[:, :3]
        u = (W - 1) / 2 + f * xg[:, 0] / -xg[:, 2]
        v = (H - 1) / 2 - f * xg[:, 1] / -xg[:, 2]
        assert np.allclose(px[b].numpy(), np.c_[u, v], atol=1e-8)
        assert np.allclose(depth[b].numpy(), -xg[:, 2])


def test_nerf_lego_cameras(shared_data):
    path = shared_data / "multiview" / "nerf_synthetic_lego_200px" / "transforms_train.json"
    cams = Cameras.from_nerf_transforms(path)
    meta = json.loads(path.read_text())
    assert len(cams) == len(meta["frames"]) and cams.width[0] == 200 and cams.height[0] == 200
    c2w = np.array([fr["transform_matrix"] for fr in meta["frames"]])
    assert np.allclose(cams.to_blender().numpy(), c2w, atol=1e-6)
    # the scene sits at the world origin: it projects near the image centre, in front of every camera
    px, depth = cams.project(torch.zeros(1, 3))
    assert (depth > 0).all()
    assert torch.allclose(depth[:, 0], torch.as_tensor(np.linalg.norm(c2w[:, :3, 3], axis=1)), rtol=0.02)
    assert ((px - 100).abs() < 10).all()


def test_strecha_convention(shared_data):
    path = shared_data / "multiview" / "strecha_fountain-P11" / "cameras.json"
    raw = json.loads(path.read_text())["cameras"]
    cams = Cameras.load_strecha(path)
    names = sorted(raw)
    assert cams.names == names and len(cams) == 11
    # R_file has 6 digits, so it is orthonormal only to ~1e-6: centres agree to that
    assert np.allclose(cams.centers().numpy(), [raw[n]["C"] for n in names], atol=1e-4)
    # the point closest (least squares) to all optical axes: the fountain every camera looks at
    Cs = np.array([raw[n]["C"] for n in names])
    axes = np.array([np.array(raw[n]["R_file"])[:, 2] for n in names])  # camera z axis in world
    A = sum(np.eye(3) - np.outer(a, a) for a in axes)
    b = sum((np.eye(3) - np.outer(a, a)) @ c for a, c in zip(axes, Cs))
    X = np.linalg.solve(A, b)
    px, depth = cams.project(X[None])
    for i, n in enumerate(names):
        K, Rf, C = (np.array(raw[n][k]) for k in ("K", "R_file", "C"))
        xc = Rf.T @ (X - C)  # the file's stated convention
        uv = (K @ xc)[:2] / xc[2]
        assert np.allclose(px[i, 0].numpy(), uv, atol=1e-8) and np.isclose(depth[i, 0].item(), xc[2])
    assert (depth > 0).all()
    assert cams.in_image(px, depth).all()
    # the other reading (x_cam = R_file (X - C)) would put the scene behind or outside the images
    wrong = np.array([np.array(raw[n]["R_file"]) @ (X - np.array(raw[n]["C"])) for n in names])
    assert not (wrong[:, 2] > 0).all() or not cams.in_image(
        torch.as_tensor(wrong[:, None, :2] / wrong[:, None, 2:] * 690 + 380), torch.as_tensor(wrong[:, None, 2])).all()


def test_json_roundtrip_and_errors(tmp_path):
    K, R, t = _random_cams(3, seed=4)
    cams = Cameras(K, R, t, image_size=[[100, 200], [110, 210], [120, 220]], names=["a", "b", "c"])
    p = tmp_path / "cams.json"
    cams.save_json(p)
    data = json.loads(p.read_text())
    assert data["format"] == "facet3d.cameras" and data["cameras"][1]["width"] == 210
    back = Cameras.load_json(p)
    assert back.names == ["a", "b", "c"] and torch.equal(back.image_size, cams.image_size)
    assert torch.allclose(back.K, cams.K) and torch.allclose(back.R, cams.R) and torch.allclose(back.t, cams.t)
    p.write_text(json.dumps(data["cameras"]))  # bare list accepted
    assert len(Cameras.load_json(p)) == 3
    p.write_text("{}")
    with pytest.raises(InputError):
        Cameras.load_json(p)
    with pytest.raises(GeometryError):
        Cameras(K, R, np.full((3, 3), np.nan))
    sub = cams[[2, 0]]
    assert sub.names == ["c", "a"] and sub.width.tolist() == [220, 200]


def test_look_at():
    R = look_at_R([5.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    cams = Cameras(intrinsics_matrix(100, 100, 50, 50), R, -(R @ torch.tensor([5.0, 0, 0], dtype=torch.float64)))
    px, depth = cams.project(torch.tensor([[0.0, 0, 0], [0.0, 0, 1]]))
    assert torch.allclose(px[0, 0], torch.tensor([50.0, 50.0], dtype=torch.float64))
    assert px[0, 1, 1] < 50  # world up is image up (smaller v)
    assert torch.isclose(depth[0, 0], torch.tensor(5.0, dtype=torch.float64))


def test_blender_principal_point_is_the_image_centre():
    """The rays through the left / right image edges (u = -0.5 and W - 0.5) make +-fov_x/2 with the axis."""
    W, H, fov = 64, 48, 0.9
    cams = Cameras.from_blender(np.eye(4)[None], fov_x=fov, width=W, height=H)
    assert np.allclose(cams.K[0, :2, 2].numpy(), [(W - 1) / 2, (H - 1) / 2])
    _, d = cams.rays(torch.tensor([[-0.5, (H - 1) / 2], [W - 0.5, (H - 1) / 2], [(W - 1) / 2, -0.5]]))
    ang = torch.atan2(d[0, :, 0], -d[0, :, 2])
    assert np.allclose(ang[:2].numpy(), [-fov / 2, fov / 2], atol=1e-12)
    fov_y = 2 * math.atan(H / W * math.tan(fov / 2))
    assert math.isclose(float(torch.atan2(d[0, 2, 1], -d[0, 2, 2])), fov_y / 2, abs_tol=1e-12)  # top edge: +y


def test_resized_keeps_the_image_edges():
    """Resampling maps the image rectangle [-0.5, W - 0.5] onto [-0.5, W' - 0.5]: same rays through the edges."""
    cams = Cameras.from_blender(np.eye(4)[None], fov_x=0.8, width=200, height=150)
    small = cams.resized(75, 100)
    assert small.image_size.tolist() == [[75, 100]]
    ref = Cameras.from_blender(np.eye(4)[None], fov_x=0.8, width=100, height=75)
    assert torch.allclose(small.K, ref.K)
    X = torch.tensor([[0.3, -0.2, -3.0], [-1.0, 0.5, -4.0]])
    big_px, _ = cams.project(X)
    small_px, _ = small.project(X)
    assert torch.allclose((small_px + 0.5) * 2 - 0.5, big_px)


# ---------------------------------------------------------------------------------------- distortion
def _distorted(n=3, seed=5) -> Cameras:
    K, R, t = _random_cams(n, seed=seed)
    coef = np.random.default_rng(seed).normal(scale=0.05, size=(n, 4))
    return Cameras(K, R, t, image_size=(48, 64), names=[f"c{i}" for i in range(n)], distortion=coef,
                   distortion_model="OPENCV")


def test_distortion_survives_indexing_to_resize_and_json(tmp_path):
    cams = _distorted()
    assert cams.distortion.shape == (3, 4) and cams.has_distortion
    sub = cams[[2, 0]]
    assert sub.distortion_model == "OPENCV" and torch.equal(sub.distortion, cams.distortion[[2, 0]])
    assert torch.equal(cams[1].distortion, cams.distortion[1:2])
    f32 = cams.to("cpu", torch.float32)
    assert f32.distortion.dtype == torch.float32 and f32.distortion_model == "OPENCV"
    torch.testing.assert_close(f32.distortion.double(), cams.distortion, atol=1e-7, rtol=1e-6)
    # coefficients act on normalised coordinates: resampling the image leaves them alone
    big = cams.resized(96, 128)
    assert torch.equal(big.distortion, cams.distortion) and big.distortion_model == "OPENCV"
    p = tmp_path / "c.json"
    cams.save_json(p)
    entry = json.loads(p.read_text())["cameras"][0]
    assert entry["distortion_model"] == "OPENCV" and len(entry["distortion"]) == 4
    back = Cameras.load_json(p)
    assert back.distortion_model == "OPENCV" and torch.equal(back.distortion, cams.distortion)


def test_pinhole_files_and_bad_distortion(tmp_path):
    K, R, t = _random_cams(2, seed=6)
    old = {"format": "facet3d.cameras", "version": 1,  # a file as written before distortion existed
           "cameras": [{"name": str(i), "K": K[i].tolist(), "R": R[i].tolist(), "t": t[i].tolist()} for i in range(2)]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    c = Cameras.load_json(tmp_path / "old.json")
    assert c.distortion is None and c.distortion_model is None and not c.has_distortion
    assert c.has_distortion is False
    # a model with all-zero coefficients bends nothing, a fisheye one does
    assert not Cameras(K, R, t, distortion_model="RADIAL").has_distortion
    assert Cameras(K, R, t, distortion_model="OPENCV_FISHEYE").has_distortion
    with pytest.raises(GeometryError, match="unknown distortion model"):
        Cameras(K, R, t, distortion=np.zeros((2, 1)), distortion_model="BROWN")
    with pytest.raises(GeometryError, match=r"\[B, 4\]"):
        Cameras(K, R, t, distortion=np.zeros((2, 3)), distortion_model="OPENCV")


# ---------------------------------------------------------------------------------------- read_cameras
def test_read_cameras_sample_blender_and_size(sample_data):
    from facet3d.core.io.cameras import read_cameras

    path = sample_data / "multiview" / "bunny_blender" / "transforms_train.json"
    direct = Cameras.from_nerf_transforms(path)
    for arg in (path, path.parent):  # the file, or the folder holding it
        cams, warnings = read_cameras(arg)
        assert warnings == [] and cams.names == direct.names and torch.allclose(cams.K, direct.K)
        assert torch.allclose(cams.world_to_camera(), direct.world_to_camera())
    # another size: NeRF intrinsics rebuilt for it (principal point at the image centre, f from the fov)
    H, W = (int(v) for v in direct.image_size[0])
    cams, _ = read_cameras(path, (2 * H, 2 * W))
    assert cams.image_size[0].tolist() == [2 * H, 2 * W]
    torch.testing.assert_close(cams.K[:, 0, 2], torch.full((len(cams),), (2 * W - 1) / 2, dtype=torch.float64))
    torch.testing.assert_close(cams.fov_x(), direct.fov_x())


def test_read_cameras_shared_layouts(shared_data):
    from facet3d.core.io.cameras import read_cameras

    strecha = shared_data / "multiview" / "strecha_fountain-P11" / "cameras.json"
    cams, _ = read_cameras(strecha)
    ref = Cameras.load_strecha(strecha)
    assert cams.names == ref.names and torch.equal(cams.R, ref.R) and torch.equal(cams.t, ref.t)
    lego = shared_data / "multiview" / "nerf_synthetic_lego_200px"
    cams, _ = read_cameras(lego)  # the folder: transforms_train.json is the only camera file
    assert len(cams) == len(Cameras.from_nerf_transforms(lego / "transforms_train.json"))


def test_read_cameras_core_json_colmap_and_errors(tmp_path):
    from facet3d.core.errors import FormatError
    from facet3d.core.io.cameras import read_cameras
    from facet3d.core.io.colmap import write_colmap_model

    cams = _distorted()
    cams.save_json(tmp_path / "cameras.json")
    back, warnings = read_cameras(tmp_path)  # a folder holding cameras.json
    assert back.names == cams.names and torch.equal(back.distortion, cams.distortion) and warnings == []
    half, _ = read_cameras(tmp_path / "cameras.json", (24, 32))  # core cameras: K scaled
    torch.testing.assert_close(half.K, cams.resized(24, 32).K)
    for binary in (False, True):
        model = write_colmap_model(tmp_path / f"m{int(binary)}" / "sparse" / "0", cams, binary=binary)
        for arg in (model, model.parent.parent, model / ("images.bin" if binary else "cameras.txt")):
            c, warnings = read_cameras(arg)
            assert c.names == sorted(cams.names) and c.distortion_model == "OPENCV"
            torch.testing.assert_close(c.distortion, cams.distortion)
            assert len(warnings) == 1 and "distortion" in warnings[0] and "not applied" in warnings[0]
    (tmp_path / "odd.json").write_text(json.dumps({"intrinsics": [1, 2, 3]}))
    with pytest.raises(FormatError, match="odd.json.*unknown camera layout"):
        read_cameras(tmp_path / "odd.json")
    with pytest.raises(InputError, match="no such file"):
        read_cameras(tmp_path / "missing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no camera JSON"):
        read_cameras(tmp_path / "empty")
