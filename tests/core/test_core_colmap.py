"""COLMAP sparse models: text / binary round trips, text vs binary, pixel convention, bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from facet3d.core.errors import InputError
from facet3d.core.io.colmap import (find_colmap_model, is_colmap_path, read_colmap_cameras, read_colmap_model,
                                    write_colmap_model)
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix


def _cameras(n=5, seed=0) -> Cameras:
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    t = rng.normal(size=(n, 3))
    # two distinct intrinsics / sizes: the writer shares COLMAP cameras between equal ones
    K = np.stack([intrinsics_matrix(300.0 + 10 * (i % 2), 290.0, 159.5 + i % 2, 119.5).numpy() for i in range(n)])
    sizes = [(240, 320) if i % 2 == 0 else (240, 321) for i in range(n)]
    return Cameras(K, R, t, sizes, names=[f"img_{n - i:03d}.png" for i in range(n)])


def _points(p=50, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(p, 3)), rng.integers(0, 256, size=(p, 3)).astype(np.uint8), rng.random(p)


def _assert_same(m, cams: Cameras, pts=None, atol=1e-12):
    order = np.argsort(cams.names)
    assert m.image_names == [cams.names[i] for i in order] == m.cameras.names
    assert torch.allclose(m.cameras.K, cams.K[order], atol=atol)
    assert torch.allclose(m.cameras.R, cams.R[order], atol=atol)
    assert torch.allclose(m.cameras.t, cams.t[order], atol=atol)
    assert torch.equal(m.cameras.image_size, cams.image_size[order])
    assert m.camera_models == ["PINHOLE"] * len(cams) and not m.has_distortion
    if pts is None:
        assert m.points is None and m.colors is None
    else:
        xyz, rgb, err = pts
        assert m.points.dtype == np.float64 and m.points.shape == xyz.shape
        assert np.array_equal(m.points, xyz) and m.colors.dtype == np.uint8 and np.array_equal(m.colors, rgb)
        assert np.array_equal(m.errors, err) and np.array_equal(m.point_ids, np.arange(1, len(xyz) + 1))


@pytest.mark.parametrize("binary", [False, True])
def test_roundtrip(tmp_path, binary):
    cams, pts = _cameras(), _points()
    folder = write_colmap_model(tmp_path / "m", cams, points=pts[0], colors=pts[1], errors=pts[2], binary=binary)
    ext = ".bin" if binary else ".txt"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}{ext}" for s in ("cameras", "images", "points3D"))
    m = read_colmap_model(folder)
    assert m.binary == binary
    _assert_same(m, cams, pts)  # repr floats / raw doubles: exact
    # two distinct (size, K): two COLMAP cameras
    if not binary:
        assert len([ln for ln in (folder / "cameras.txt").read_text().splitlines() if not ln.startswith("#")]) == 2
    # every entry point: a file of the model, the folder, a dataset root holding sparse/0
    for p in (folder / f"cameras{ext}", folder / f"points3D{ext}"):
        assert is_colmap_path(p) and find_colmap_model(p) == folder
    root = tmp_path / "root"
    write_colmap_model(root / "sparse" / "0", cams, binary=binary)
    assert find_colmap_model(root) == root / "sparse" / "0"
    _assert_same(read_colmap_model(root), cams)
    c = read_colmap_cameras(folder / f"images{ext}")
    assert torch.allclose(c.K, m.cameras.K) and c.has_distortion is False


def test_text_and_binary_agree(tmp_path):
    cams, pts = _cameras(7, seed=4), _points(20, seed=5)
    write_colmap_model(tmp_path / "t", cams, points=pts[0], colors=pts[1], errors=pts[2])
    write_colmap_model(tmp_path / "b", cams, points=pts[0], colors=pts[1], errors=pts[2], binary=True)
    mt, mb = read_colmap_model(tmp_path / "t"), read_colmap_model(tmp_path / "b")
    for a in ("K", "R", "t", "image_size"):
        assert torch.equal(getattr(mt.cameras, a), getattr(mb.cameras, a))
    assert mt.image_names == mb.image_names
    for a in ("points", "colors", "errors", "point_ids"):
        assert np.array_equal(getattr(mt, a), getattr(mb, a))
    # both in one folder: text wins for the folder, naming a .bin file picks binary
    for f in (tmp_path / "b").iterdir():
        (tmp_path / "t" / f.name).write_bytes(f.read_bytes())
    assert not read_colmap_model(tmp_path / "t").binary and read_colmap_model(tmp_path / "t" / "images.bin").binary


def test_pixel_centre_convention(tmp_path):
    """COLMAP: top-left pixel centre (0.5, 0.5), u = fx x/z + cx.  Core: (0, 0), so u_core = u_colmap - 0.5."""
    fx, fy, cx, cy, W, H = 500.0, 480.0, 320.0, 240.0, 640, 480  # COLMAP's own numbers: centre of a 640x480 image
    (tmp_path / "cameras.txt").write_text(f"1 PINHOLE {W} {H} {fx} {fy} {cx} {cy}\n"
                                          f"2 SIMPLE_PINHOLE {W} {H} {fx} {cx} {cy}\n")
    qvec = Rotation.from_euler("xyz", [0.1, -0.2, 0.3]).as_quat()[[3, 0, 1, 2]]  # (w, x, y, z)
    tvec = [0.2, -0.1, 3.0]
    pose = " ".join(repr(float(x)) for x in [*qvec, *tvec])
    (tmp_path / "images.txt").write_text(f"# header\n1 {pose} 1 a.jpg\n\n2 {pose} 2 b.jpg\n1.0 2.0 -1\n")
    m = read_colmap_model(tmp_path)
    X = np.array([[0.3, -0.4, 0.5], [-0.2, 0.1, -0.3]])
    xc = X @ Rotation.from_quat(qvec[[1, 2, 3, 0]]).as_matrix().T + tvec
    for i, (gx, gy) in enumerate([(fx, fy), (fx, fx)]):
        u_colmap = gx * xc[:, 0] / xc[:, 2] + cx
        v_colmap = gy * xc[:, 1] / xc[:, 2] + cy
        px, depth = m.cameras.project(X)
        assert np.allclose(px[i].numpy(), np.c_[u_colmap - 0.5, v_colmap - 0.5], atol=1e-9)
        assert np.allclose(depth[i].numpy(), xc[:, 2])
    # the image centre of COLMAP (W/2, H/2) is core's ((W - 1)/2, (H - 1)/2); the writer adds 0.5 back
    assert np.allclose(m.cameras.K[0, :2, 2].numpy(), [(W - 1) / 2, (H - 1) / 2])
    write_colmap_model(tmp_path / "out", m.cameras[[0]])
    line = [ln for ln in (tmp_path / "out" / "cameras.txt").read_text().splitlines() if not ln.startswith("#")][0]
    assert [float(x) for x in line.split()[4:]] == [fx, fy, cx, cy]


def test_distortion_flag_and_points_optional(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 OPENCV 64 48 50 50 32 24 0.1 0 0 0\n2 PINHOLE 64 48 50 50 32 24\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 1 1 b.png\n\n2 1 0 0 0 0 0 2 2 a.png\n\n")
    m = read_colmap_model(tmp_path)
    assert m.image_names == ["a.png", "b.png"] and m.distorted == [False, True]
    assert m.camera_models == ["PINHOLE", "OPENCV"] and m.points is None
    assert read_colmap_cameras(tmp_path).has_distortion is True


def test_bad_and_truncated_files(tmp_path):
    cams, pts = _cameras(3), _points(10)
    folder = write_colmap_model(tmp_path / "b", cams, points=pts[0], binary=True)
    for name, cut in (("images.bin", 30), ("cameras.bin", 12), ("points3D.bin", 100), ("images.bin", 3)):
        bad = tmp_path / f"bad_{name}_{cut}"
        bad.mkdir()
        for f in folder.iterdir():
            data = f.read_bytes()
            (bad / f.name).write_bytes(data[:cut] if f.name == name else data)
        with pytest.raises(InputError, match=name.replace(".", r"\.")) as exc:
            read_colmap_model(bad)
        assert "\n" not in str(exc.value)
    # a garbage count is refused at once rather than looping
    g = tmp_path / "garbage"
    g.mkdir()
    for f in folder.iterdir():
        (g / f.name).write_bytes(f.read_bytes())
    (g / "images.bin").write_bytes(struct.pack("<Q", 2 ** 40) + b"\x01" * 100)
    with pytest.raises(InputError, match="images.bin"):
        read_colmap_model(g)
    # text: a camera the images refer to is missing; malformed lines
    t = write_colmap_model(tmp_path / "t", cams)
    (t / "cameras.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="refers to camera"):
        read_colmap_model(t)
    (t / "cameras.txt").write_text("1 PINHOLE 64 48 abc 50 32 24\n")
    with pytest.raises(InputError, match="cameras.txt|COLMAP"):
        read_colmap_model(t)
    with pytest.raises(InputError, match="not a COLMAP model"):
        read_colmap_model(tmp_path / "b" / "..")
    with pytest.raises(InputError, match="no such file"):
        read_colmap_model(tmp_path / "missing")


def test_distortion_is_read_and_written(tmp_path):
    # every model's coefficients land in Cameras.distortion, in COLMAP's order
    (tmp_path / "cameras.txt").write_text(
        "1 SIMPLE_RADIAL 64 48 50 32 24 0.1\n2 OPENCV 64 48 50 52 32 24 0.2 0.3 0.01 0.02\n"
        "3 PINHOLE 64 48 50 50 32 24\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 1 1 a.png\n\n2 1 0 0 0 0 0 2 2 b.png\n\n"
                                         "3 1 0 0 0 0 0 3 3 c.png\n\n")
    c = read_colmap_cameras(tmp_path)
    # one model per batch: SIMPLE_RADIAL and PINHOLE embed into OPENCV (k1, k2, p1, p2)
    assert c.distortion_model == "OPENCV"
    assert c.distortion.tolist() == [[0.1, 0.0, 0.0, 0.0], [0.2, 0.3, 0.01, 0.02], [0.0, 0.0, 0.0, 0.0]]
    assert c.K[0, 0, 0] == c.K[0, 1, 1] == 50 and c.K[1, 1, 1] == 52
    for binary in (False, True):
        out = write_colmap_model(tmp_path / f"out{int(binary)}", c, binary=binary)
        back = read_colmap_model(out)
        assert back.camera_models == ["OPENCV"] * 3 and back.distorted == [True, True, False]
        assert torch.equal(back.cameras.distortion, c.distortion) and torch.equal(back.cameras.K, c.K)
    # a single-focal model with fx != fy is written as its two-focal family member
    rad = Cameras(intrinsics_matrix(50.0, 55.0, 31.5, 23.5), torch.eye(3), torch.tensor([0.0, 0.0, 1.0]), (48, 64),
                  ["x.png"], distortion=[[0.1, -0.05]], distortion_model="RADIAL")
    line = [ln for ln in (write_colmap_model(tmp_path / "r", rad) / "cameras.txt").read_text().splitlines()
            if not ln.startswith("#")][0].split()
    assert line[1] == "OPENCV" and [float(x) for x in line[4:]] == [50.0, 55.0, 32.0, 24.0, 0.1, -0.05, 0.0, 0.0]
    # FOV has two focal lengths (fx fy cx cy omega)
    (tmp_path / "fov").mkdir()
    (tmp_path / "fov" / "cameras.txt").write_text("1 FOV 64 48 50 60 32 24 0.9\n")
    (tmp_path / "fov" / "images.txt").write_text("1 1 0 0 0 0 0 1 1 a.png\n\n")
    f = read_colmap_cameras(tmp_path / "fov")
    assert (f.K[0, 0, 0], f.K[0, 1, 1]) == (50.0, 60.0) and f.distortion_model == "FOV"
    assert f.distortion.tolist() == [[0.9]] and f.has_distortion
