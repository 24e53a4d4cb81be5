"""Mesh shading in `render` / ``facet3d render --shading``: Lambert (head light) and normal colours
against closed forms, vertex / face colours kept, scenes refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facet3d.core.io.api import read, write
from facet3d.core.io.record import Geometry
from facet3d.core.structures.cameras import Cameras, intrinsics_matrix, look_at_R
from facet3d.plugins.triangle_splatting.render import AMBIENT, load_scene, render
from facet3d.plugins.triangle_splatting.scene import TriangleScene

D = torch.float64
H = W = 48
F = 40.0


def _camera(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> Cameras:
    eye = torch.tensor(eye, dtype=D)
    R = look_at_R(eye, torch.tensor(target, dtype=D), torch.tensor(up, dtype=D))
    K = intrinsics_matrix(F, F, (W - 1) / 2, (H - 1) / 2)
    return Cameras(K[None], R[None], (-(R @ eye))[None], (H, W), dtype=D)


def _pixel_rays(cam: Cameras) -> np.ndarray:
    """Unit world directions of every pixel's ray [H, W, 3] (numpy, from K, R alone)."""
    K, R = cam.K[0].numpy(), cam.R[0].numpy()
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))
    x = (jj - K[0, 2]) / K[0, 0]
    y = (ii - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x, y, np.ones_like(x)], -1)
    d = d_cam @ R  # R^T d_cam, row-wise
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _tilted_plane(tilt_deg: float, vertex_colors=None, face_colors=None, with_normals=False) -> Geometry:
    """A 4x4 square through the origin, normal (sin t, 0, cos t) (tilted about y), two triangles."""
    t = np.radians(tilt_deg)
    n = np.array([np.sin(t), 0.0, np.cos(t)])
    u = np.array([np.cos(t), 0.0, -np.sin(t)])
    v = np.array([0.0, 1.0, 0.0])
    corners = np.array([-2 * u - 2 * v, 2 * u - 2 * v, 2 * u + 2 * v, -2 * u + 2 * v])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return Geometry(corners, faces, normals=np.tile(n, (4, 1)) if with_normals else None,
                    colors=vertex_colors, face_colors=face_colors)


def _load(tmp_path, geom: Geometry, name="m.ply") -> TriangleScene:
    write(tmp_path / name, geom)
    scene, is_mesh = load_scene(tmp_path / name)
    assert is_mesh
    return scene


@pytest.mark.parametrize("tilt", [0.0, 35.0, 60.0])
def test_lambert_plane_matches_closed_form(tmp_path, tilt):
    """Grey plane seen along +z from 6 units: every pixel = 0.7 (ambient + (1 - ambient) |n . ray|)."""
    scene = _load(tmp_path, _tilted_plane(tilt))  # no vertex normals: face normals
    cam = _camera((0.0, 0.0, 6.0), up=(0.0, 1.0, 0.0))
    o = render(scene, cam, hard=True, shading="lambert", background=(0.1, 0.2, 0.3))
    rgb, alpha = o["rgb"][0].numpy(), o["alpha"][0].numpy()
    n = np.array([np.sin(np.radians(tilt)), 0.0, np.cos(np.radians(tilt))])
    expect = 0.7 * (AMBIENT + (1 - AMBIENT) * np.abs(_pixel_rays(cam) @ n))
    hit = alpha == 1
    assert hit.mean() > 0.1 and set(np.unique(alpha)) <= {0.0, 1.0}
    np.testing.assert_allclose(rgb[hit], np.repeat(expect[hit][:, None], 3, 1), atol=2e-5)
    np.testing.assert_allclose(rgb[~hit], np.broadcast_to([0.1, 0.2, 0.3], rgb[~hit].shape), atol=1e-6)
    # the pixel nearest the optical axis sees the plane at exactly the tilt: 0.7 (a + (1 - a) cos t)
    c = rgb[H // 2, W // 2, 0]
    ray_c = _pixel_rays(cam)[H // 2, W // 2]
    assert abs(c - 0.7 * (AMBIENT + (1 - AMBIENT) * abs(ray_c @ n))) < 2e-5
    assert abs(abs(ray_c @ n) - np.cos(np.radians(tilt))) < 0.02  # half a pixel off the axis


def test_lambert_is_two_sided_and_flat_is_unlit(tmp_path):
    scene = _load(tmp_path, _tilted_plane(30.0))
    front = render(scene, _camera((0.0, 0.0, 6.0), up=(0.0, 1.0, 0.0)), hard=True, shading="lambert")
    back = render(scene, _camera((0.0, 0.0, -6.0), up=(0.0, 1.0, 0.0)), hard=True, shading="lambert")
    # seen from behind (n . l < 0) the head light still lights the visible side: |n . l|
    cf = front["rgb"][0][H // 2, W // 2]
    cb = back["rgb"][0][H // 2, W // 2]
    assert torch.allclose(cf, cb, atol=1e-3) and float(cb[0]) > 0.7 * AMBIENT + 0.1
    flat = render(scene, _camera((0.0, 0.0, 6.0), up=(0.0, 1.0, 0.0)), hard=True)  # default: flat
    lit = flat["alpha"][0] == 1
    assert torch.allclose(flat["rgb"][0][lit], torch.full((int(lit.sum()), 3), 0.7, dtype=flat["rgb"].dtype))


def _sphere(subdivisions=4):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    v = np.asarray(s.vertices)
    return v, np.asarray(s.faces), v / np.linalg.norm(v, axis=1, keepdims=True)


def _sphere_hits(o, cam):
    """World points of the covered pixels (from the rendered z-depth) and their mask."""
    depth, alpha = o["depth"][0].to(D), o["alpha"][0]
    hit = (alpha == 1).numpy()
    ii, jj = np.nonzero(hit)
    px = torch.tensor(np.stack([jj, ii], -1), dtype=D)
    P = cam.unproject(px, depth[hit][None])[0].numpy()
    return P, hit


def test_sphere_vertex_normals_lambert_and_normal_mode(tmp_path):
    """Unit sphere with analytic vertex normals: the interpolated normal at a pixel is the
    direction of the (facet) point it sees, so shading follows the closed form per pixel."""
    v, f, vn = _sphere()
    rng = np.random.default_rng(0)
    cols = rng.uniform(0.2, 1.0, (len(v), 3)).astype(np.float32)
    scene = _load(tmp_path, Geometry(v, f, normals=vn, colors=cols))
    assert scene.meta["normals"].shape == (len(f), 3, 3)
    cam = _camera((2.0, -3.0, 1.5))
    lam = render(scene, cam, hard=True, shading="lambert")
    nrm = render(scene, cam, hard=True, shading="normal", background=(1.0, 1.0, 1.0))
    flat = render(scene, cam, hard=True, shading="flat")
    P, hit = _sphere_hits(lam, cam)
    assert hit.mean() > 0.1
    n = P / np.linalg.norm(P, axis=1, keepdims=True)      # analytic normal at the seen point
    rays = _pixel_rays(cam)[hit]
    cos = np.abs((n * rays).sum(-1))
    albedo = flat["rgb"][0].numpy()[hit]                    # the interpolated vertex colours
    np.testing.assert_allclose(lam["rgb"][0].numpy()[hit], albedo * (AMBIENT + (1 - AMBIENT) * cos)[:, None],
                               atol=2e-3)
    np.testing.assert_allclose(nrm["rgb"][0].numpy()[hit], (n + 1) / 2, atol=2e-3)
    assert np.allclose(nrm["rgb"][0].numpy()[~hit], 1.0)
    # the silhouette is darker than the centre (grazing vs facing), never darker than the ambient term
    ratio = lam["rgb"][0].numpy()[hit] / np.maximum(albedo, 1e-6)
    assert ratio.min() >= AMBIENT - 1e-4 and ratio.max() <= 1 + 1e-4 and ratio.max() - ratio.min() > 0.5


def test_sphere_without_vertex_normals_is_faceted(tmp_path):
    v, f, _ = _sphere(subdivisions=2)
    scene = _load(tmp_path, Geometry(v, f))
    assert "normals" not in scene.meta
    cam = _camera((0.0, -4.0, 0.0))
    o = render(scene, cam, hard=True, shading="normal")
    P, hit = _sphere_hits(o, cam)
    # face normals: each pixel's colour is its triangle's normal, (n_face + 1) / 2
    tri = v[f]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    got = o["rgb"][0].numpy()[hit] * 2 - 1
    # the face each seen point lies on: the facing face (n . P > 0) whose plane is nearest to it
    pn = np.einsum("pk,fk->pf", P, fn)
    d = np.abs(pn - np.einsum("fk,fk->f", tri[:, 0], fn)[None])
    near = np.argmin(d + 10 * (pn < 0), axis=1)
    agree = np.abs(got - fn[near]).max(1) < 1e-3
    assert agree.mean() > 0.95  # (edge pixels lie on two planes)
    assert len(np.unique(np.round(got, 3), axis=0)) <= len(f)  # piecewise constant


def test_vertex_and_face_colours_are_kept(tmp_path):
    """Flat mode = the colours; Lambert = the colours times one grey factor per pixel."""
    vc = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    scene = _load(tmp_path, _tilted_plane(20.0, vertex_colors=vc), "vc.ply")
    assert scene.form == "ts+"
    cam = _camera((0.0, 0.0, 6.0), up=(0.0, 1.0, 0.0))
    flat = render(scene, cam, hard=True)["rgb"][0].numpy()
    lam = render(scene, cam, hard=True, shading="lambert")["rgb"][0].numpy()
    hit = render(scene, cam, hard=True)["alpha"][0].numpy() == 1
    n = np.array([np.sin(np.radians(20)), 0, np.cos(np.radians(20))])
    factor = AMBIENT + (1 - AMBIENT) * np.abs(_pixel_rays(cam) @ n)
    np.testing.assert_allclose(lam[hit], flat[hit] * factor[hit][:, None], atol=2e-5)
    assert flat[hit].std(0).min() > 0.1  # interpolated, not one colour
    # the corners' colours at the pixels nearest the corners' projections
    px, _ = cam.project(torch.tensor(_tilted_plane(20.0).vertices, dtype=D))
    inner = (px[0] * 0.9 + torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=D) * 0.1).round().long()
    for k in range(4):  # near each corner, its own colour dominates
        j, i = inner[k].tolist()
        assert hit[i, j] and np.argmin(np.abs(vc - flat[i, j]).sum(1)) == k
    fc = np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.8]], np.float32)
    scene = _load(tmp_path, _tilted_plane(20.0, face_colors=fc), "fc.ply")
    assert scene.form == "ts"
    flat = render(scene, cam, hard=True)["rgb"][0].numpy()
    lam = render(scene, cam, hard=True, shading="lambert")["rgb"][0].numpy()
    got = {tuple(np.round(c, 4)) for c in flat[hit]}
    stored = read(tmp_path / "fc.ply").face_colors[:, :3]  # PLY keeps 8-bit colours
    assert np.abs(stored - fc).max() < 1 / 255 + 1e-6
    assert got == {tuple(np.round(c, 4)) for c in stored}
    np.testing.assert_allclose(lam[hit], flat[hit] * factor[hit][:, None], atol=2e-5)


def test_shading_arguments_are_checked():
    from facet3d.core.errors import GeometryError, UsageError

    scene = TriangleScene.from_triangles(torch.tensor([[[-1.0, -1, 0], [1, -1, 0], [0, 1, 0]]]))
    cam = _camera((0.0, 0.0, 5.0), up=(0.0, 1.0, 0.0))
    with pytest.raises(UsageError):
        render(scene, cam, shading="phong")
    with pytest.raises(UsageError):
        render(scene, cam, shading="lambert", ambient=1.5)
    with pytest.raises(GeometryError):
        render(scene, cam, shading="normal", normals=torch.ones(2, 3))


# --------------------------------------------------------------------------------- the command
def test_cli_default_lambert_and_modes(cli, tmp_path):
    v, f, vn = _sphere(3)
    write(tmp_path / "s.ply", Geometry(v, f, normals=vn))
    for mode in ("lambert", "normal", "flat", None):
        out = tmp_path / str(mode)
        args = ["render", str(tmp_path / "s.ply"), "--orbit", "1", "--size", "40x40", "-o", str(out), "--save-alpha"]
        r = cli(*args, *(["--shading", mode] if mode else []))
        assert r.returncode == 0, r.stderr
        assert f"{mode or 'lambert'} shading" in r.stderr
        img = np.asarray(Image.open(out / "view_000_rgb.png")).astype(int)
        alpha = np.load(out / "view_000_alpha.npy")
        lit = img[alpha == 1]
        if mode == "flat":
            assert np.all(np.abs(lit - 178) <= 1)
        elif mode == "normal":
            assert lit.std(0).min() > 20  # colours vary with the normal
        else:
            assert lit.min() >= int(0.7 * AMBIENT * 255) - 1 and lit.max() <= 179 and lit[:, 0].std() > 10
    assert (np.asarray(Image.open(tmp_path / "None" / "view_000_rgb.png"))
            == np.asarray(Image.open(tmp_path / "lambert" / "view_000_rgb.png"))).all()


def test_cli_shading_on_a_scene_is_refused(cli, tmp_path):
    tri = torch.tensor([[[0.0, -1.0, -1.0], [0.0, -1.0, 1.0], [0.0, 1.0, 0.0]]])
    TriangleScene.from_triangles(tri, [[0.9, 0.1, 0.1]], opacity=0.8, sigma=1.0).save_ply(tmp_path / "scene.ply")
    r = cli("render", str(tmp_path / "scene.ply"), "--orbit", "1", "--size", "16x16", "-o", str(tmp_path / "o"),
            "--shading", "lambert")
    assert r.returncode == 2 and "--shading applies to meshes" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("render", str(tmp_path / "scene.ply"), "--orbit", "1", "--size", "16x16", "-o", str(tmp_path / "o"))
    assert r.returncode == 0 and "(16x16, soft)" in r.stderr  # no shading named for a scene
