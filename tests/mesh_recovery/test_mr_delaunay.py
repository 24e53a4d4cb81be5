"""Planar and 2.5-D clouds: 2-D Delaunay (edge limit), BPA / alpha on planes, ``--method auto``.

Independent answers: closed-form areas (square, annulus, L-shape, a height field's surface integral
by quadrature), scipy's own Delaunay / ConvexHull, trimesh's topology (Euler number, face normals),
laspy's coordinates for the Autzen lidar tile.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from facet3d.core.errors import GeometryError, UsageError
from facet3d.core.io.api import read, write
from facet3d.core.io.record import Geometry
from facet3d.plugins.mesh_recovery.surface_delaunay import analyse_shape
from facet3d.plugins.mesh_recovery.surface_points import PointsToMesh, reconstruct_points

LAS_OFFSET = np.array([636_000.0, 849_000.0, 400.0])  # Autzen-like coordinates: precision matters


def _trimesh(g: Geometry):
    import trimesh

    return trimesh.Trimesh(np.asarray(g.vertices, dtype=np.float64), np.asarray(g.faces), process=False)


def _used_trimesh(g: Geometry):
    """The mesh without its unreferenced vertices (Delaunay keeps every input point as a vertex)."""
    m = _trimesh(g)
    m.remove_unreferenced_vertices()
    return m


def _tilted_frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal (u, v, n) of a plane tilted away from every coordinate axis."""
    from scipy.spatial.transform import Rotation

    R = Rotation.from_euler("xyz", [35, -20, 50], degrees=True).as_matrix()
    return R[:, 0], R[:, 1], R[:, 2]


def _on_plane(uv: np.ndarray, offset=LAS_OFFSET) -> np.ndarray:
    u, v, _ = _tilted_frame()
    return offset + uv[:, :1] * u + uv[:, 1:2] * v


def _square(n=3000, seed=0) -> np.ndarray:
    return _on_plane(np.random.default_rng(seed).random((n, 2)))


def _annulus_uv(n=4000, r_in=0.4, r_out=1.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = np.sqrt(rng.uniform(r_in ** 2, r_out ** 2, n))
    t = rng.uniform(0, 2 * np.pi, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _terrain(n=6000, seed=0) -> tuple[np.ndarray, callable]:
    def f(x, y):
        return 0.15 * np.sin(2 * np.pi * x) * np.cos(np.pi * y) + 0.1 * x

    xy = np.random.default_rng(seed).random((n, 2))
    return np.c_[xy, f(xy[:, 0], xy[:, 1])] + LAS_OFFSET, f


def _height_field_area(f, m=1500) -> float:
    """Closed-form integrand, midpoint rule: area of z = f(x, y) over the unit square."""
    h = 1.0 / m
    x, y = np.meshgrid((np.arange(m) + 0.5) * h, (np.arange(m) + 0.5) * h)
    e = 1e-6
    fx = (f(x + e, y) - f(x - e, y)) / (2 * e)
    fy = (f(x, y + e) - f(x, y - e)) / (2 * e)
    return float(np.sqrt(1 + fx ** 2 + fy ** 2).sum() * h * h)


def _rim_ok(area: float, exact: float, perimeter: float, spacing: float) -> bool:
    """Area of a mesh of random samples of a region: the region's (closed form) less at most a rim
    1.5 spacings wide along its outline, where the edge limit opens the triangles spanning the
    outline's gaps (measured: 0.7 - 1.0 spacings)."""
    return exact - 1.5 * perimeter * spacing <= area <= exact * 1.005


def _ply_vertex_properties(path) -> list[str]:
    """The vertex property names in a PLY header, read byte by byte (no reader in between)."""
    raw = open(path, "rb").read(65536)
    header = raw[: raw.index(b"end_header")].decode("ascii").splitlines()
    props, in_vertex = [], False
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"]:
            in_vertex = parts[1] == "vertex"
        elif parts[:1] == ["property"] and in_vertex:
            props.append(parts[-1])
    return props


# ---------------------------------------------------------------- planar clouds

@pytest.mark.parametrize("method", ["auto", "delaunay", "bpa", "alpha"])
def test_planar_cloud_is_meshed_by_every_2d_method(method):
    """A tilted unit square far from the origin: area 1 (closed form), normals along the plane's."""
    _, _, normal = _tilted_frame()
    opts = PointsToMesh(method=method)
    mesh = reconstruct_points(Geometry(_square()), opts)
    tm = _used_trimesh(mesh)
    print(f"MR-NUMBER planar unit square, {method}: area {tm.area:.4f}, {mesh.num_faces} faces")
    assert _rim_ok(tm.area, 1.0, 4.0, opts.info["spacing"] * (2 if method == "bpa" else 1))
    dots = tm.face_normals @ normal
    assert np.abs(np.abs(dots) - 1).max() < 1e-6           # every face lies in the plane
    if method in ("auto", "delaunay", "alpha"):
        assert (dots > 0).all() or (dots < 0).all()        # consistently wound
    if method == "auto":
        assert opts.info["method"] == "delaunay" and "planar" in opts.info["method_reason"]


def test_planar_cloud_refused_by_poisson_with_the_alternatives():
    with pytest.raises(GeometryError, match="one plane.*delaunay, bpa or alpha"):
        reconstruct_points(Geometry(_square()), PointsToMesh(method="poisson"))


def test_planar_alpha_shape_keeps_the_hole():
    """2-D alpha shape of an annulus: area pi (R^2 - r^2), one hole (Euler number 0, 2 boundary loops)."""
    opts = PointsToMesh(method="alpha")
    mesh = reconstruct_points(Geometry(_on_plane(_annulus_uv())), opts)
    tm = _used_trimesh(mesh)
    assert opts.info["alpha_mode"].startswith("2-D")
    assert _rim_ok(tm.area, np.pi * (1 - 0.16), 2 * np.pi * 1.4, opts.info["spacing"])
    assert tm.euler_number == 0


# ---------------------------------------------------------------- Delaunay edge limit

def test_delaunay_edge_limit_keeps_holes_and_concave_outlines_open():
    from scipy.spatial import ConvexHull

    uv = _annulus_uv()
    pts = _on_plane(uv)
    opts = PointsToMesh(method="delaunay")
    holed = _used_trimesh(reconstruct_points(Geometry(pts), opts))
    assert opts.info["max_edge"] == pytest.approx(10 * opts.info["spacing"])
    assert _rim_ok(holed.area, np.pi * (1 - 0.16), 2 * np.pi * 1.4, opts.info["spacing"])
    assert holed.euler_number == 0                       # an annulus: the hole stayed open
    filled = _used_trimesh(reconstruct_points(Geometry(pts), PointsToMesh(method="delaunay", max_edge=0)))
    assert filled.area == pytest.approx(ConvexHull(uv).volume, rel=1e-9)  # no limit: the convex hull
    assert filled.euler_number == 1

    rng = np.random.default_rng(1)
    ell = rng.random((8000, 2)) * 2
    ell = ell[~((ell[:, 0] > 1) & (ell[:, 1] > 1))]        # L-shape: area 3, convex hull 3.5
    opts = PointsToMesh(method="delaunay")
    tm = _used_trimesh(reconstruct_points(Geometry(_on_plane(ell)), opts))
    assert _rim_ok(tm.area, 3.0, 8.0, opts.info["spacing"])
    assert tm.euler_number == 1


def test_delaunay_terrain_matches_scipy_and_the_surface_integral():
    """A height field with LAS-sized coordinates: the triangulation is scipy's Delaunay of (x, y),
    lifted onto the untouched input points, every face facing +z; with the default edge limit the
    area is the closed-form integral (without it, the hull's slivers stand up: +15 % at 6000 points)."""
    from scipy.spatial import Delaunay

    pts, f = _terrain()
    opts = PointsToMesh(method="delaunay", max_edge=0)
    mesh = reconstruct_points(Geometry(pts), opts)
    assert opts.info["projection"] == "z axis"
    np.testing.assert_array_equal(mesh.vertices, pts)    # every input point, bit for bit, in order
    ours = {tuple(sorted(t)) for t in mesh.faces.tolist()}
    ref = {tuple(sorted(t)) for t in Delaunay(pts[:, :2] - pts[:, :2].mean(0)).simplices.tolist()}
    assert ours == ref
    tm = _trimesh(mesh)
    assert (tm.face_normals[:, 2] > 0).all()
    assert np.linalg.norm(mesh.normals, axis=1) == pytest.approx(1.0)
    opts = PointsToMesh()
    limited = _used_trimesh(reconstruct_points(Geometry(pts), opts))
    exact = _height_field_area(f)
    print(f"MR-NUMBER terrain area: limited {limited.area:.4f}, no limit {tm.area:.4f}, closed form {exact:.4f}")
    assert _rim_ok(limited.area, exact, 4.0 * 1.2, opts.info["spacing"])   # outline of the lifted square < 4.8


def test_faces_face_the_viewpoint():
    """A vertical wall x = const: normals towards the viewpoint on either side."""
    rng = np.random.default_rng(0)
    wall = np.c_[np.full(2000, 5.0), rng.random((2000, 2)) * [4.0, 2.0]] + LAS_OFFSET
    for side in (+1, -1):
        view = LAS_OFFSET + [5.0 + 10.0 * side, 2.0, 1.0]
        mesh = reconstruct_points(Geometry(wall), PointsToMesh(viewpoint=tuple(view)))
        nx = _trimesh(mesh).face_normals[:, 0]
        assert (np.sign(nx) == side).all()


def test_colours_and_attributes_are_carried(tmp_path):
    pts, _ = _terrain(3000)
    rng = np.random.default_rng(0)
    colors = rng.random((len(pts), 3)).astype(np.float32)
    intensity = rng.integers(0, 65535, len(pts)).astype(np.uint16)
    mesh = reconstruct_points(Geometry(pts, colors=colors, attributes={"intensity": intensity}))
    np.testing.assert_array_equal(mesh.colors, colors)
    np.testing.assert_array_equal(mesh.attributes["intensity"], intensity)
    write(tmp_path / "t.ply", mesh)
    back = read(tmp_path / "t.ply")
    np.testing.assert_array_equal(back.attributes["intensity"], intensity)
    assert np.abs(back.colors - colors).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(back.vertices, pts)


# ---------------------------------------------------------------- auto

def test_auto_chooses_by_shape(sample_data):
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(8000, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    opts = PointsToMesh(depth=6)
    mesh = reconstruct_points(Geometry(sphere * 3 + LAS_OFFSET), opts)
    assert opts.info["method"] == "poisson" and "fold" in opts.info["method_reason"]
    assert _trimesh(mesh).area == pytest.approx(4 * np.pi * 9, rel=0.05)  # closed form, sphere of radius 3

    pts, _ = _terrain()
    opts = PointsToMesh()
    reconstruct_points(Geometry(pts), opts)
    assert opts.info["method"] == "delaunay" and "height field" in opts.info["method_reason"]

    scan = read(sample_data / "scans" / "bunny.pcd")  # one real range scan: single-valued along the view
    opts = PointsToMesh()
    reconstruct_points(Geometry(scan.vertices), opts)
    assert opts.info["method"] == "delaunay"


def test_auto_on_real_closed_and_cut_meshes(shared_data):
    from facet3d.core.ops.sampling import sample_mesh_surface
    from facet3d.plugins.mesh_recovery._common import point_spacing

    for name in ("cow.obj", "stanford-bunny.obj", "spot.obj"):
        g = read(shared_data / "meshes" / name)
        p = np.asarray(sample_mesh_surface(g.vertices, g.faces, 20_000, seed=0).points)
        c = p - p.mean(0)
        shape = analyse_shape(c, point_spacing(c))
        assert shape.kind == "volumetric", (name, shape.reason)


def test_auto_refuses_options_of_the_method_it_did_not_choose():
    pts, _ = _terrain(2000)
    with pytest.raises(UsageError, match="auto chose delaunay.*--watertight"):
        reconstruct_points(Geometry(pts), PointsToMesh(watertight=True))
    for bad in (PointsToMesh(radii=[1.0]), PointsToMesh(alpha=1.0), PointsToMesh(method="poisson", max_edge=1.0),
                PointsToMesh(max_edge=1.0, trim=0.1), PointsToMesh(method="delaunay", max_edge=float("nan")),
                PointsToMesh(max_edge=-1.0), PointsToMesh(scale=0.0), PointsToMesh(depth=17),
                PointsToMesh(method="bpa", radii=[1.0, float("inf")])):
        with pytest.raises(UsageError):
            bad.validate()


def test_delaunay_on_a_folded_cloud_warns():
    from facet3d.core.errors import Facet3DWarning

    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(3000, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    with pytest.warns(Facet3DWarning, match="not a height field"):
        reconstruct_points(Geometry(sphere), PointsToMesh(method="delaunay"))


def test_progress_reports_each_stage():
    pts, _ = _terrain(3000)
    seen = []
    reconstruct_points(Geometry(pts), PointsToMesh(), progress=lambda d, t, s=None: seen.append((d, t, s)))
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1] == 4
    assert any(s and "delaunay" in s for _, _, s in seen)


# ---------------------------------------------------------------- the command

def test_cli_autzen_terrain_in_one_command(shared_data, tmp_path, cli):
    import laspy

    src = shared_data / "las" / "autzen_trim.laz"
    out = tmp_path / "terrain.ply"
    t0 = time.perf_counter()
    r = cli("mesh", str(src), "-o", str(out), "--json")
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    print(f"MR-NUMBER facet3d mesh autzen_trim.laz ({info['points']} points): {elapsed:.1f} s, "
          f"{info['faces']} faces, {info['long_edge_removed']} long-edge triangles removed")
    assert out.is_file() and elapsed < 120
    assert info["method"] == "delaunay" and "height field" in info["method_reason"]
    las = laspy.read(src)
    ref = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], 1)
    tm = _trimesh(read(out))
    np.testing.assert_allclose(tm.vertices, ref, rtol=0, atol=1e-6)
    assert (tm.face_normals[:, 2] > 0).all()
    assert {"red", "green", "blue", "intensity", "classification"} <= set(_ply_vertex_properties(out))


@pytest.mark.parametrize("method", ["poisson", "bpa", "alpha", "delaunay"])
def test_cli_writes_no_invented_colours(method, tmp_path, cli):
    """An uncoloured cloud gives a mesh file without red/green/blue (open3d's Poisson adds black)."""
    rng = np.random.default_rng(0)
    if method == "delaunay":
        pts = _terrain(3000)[0]
    else:
        pts = rng.normal(size=(3000, 3))
        pts /= np.linalg.norm(pts, axis=1, keepdims=True)
        pts *= rng.uniform(0.99, 1.01, (3000, 1))  # not cospherical: open3d's 3-D Qhull refuses that
    src = tmp_path / "pts.ply"
    write(src, Geometry(pts))
    out = tmp_path / "mesh.ply"
    r = cli("mesh", str(src), "-o", str(out), "-m", method, *(["--depth", "6"] if method == "poisson" else []))
    assert r.returncode == 0, r.stderr
    props = _ply_vertex_properties(out)
    assert "x" in props and not {"red", "green", "blue"} & set(props), props
    assert read(out).colors is None


def test_coloured_input_keeps_colours_through_poisson():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    mesh = reconstruct_points(Geometry(p, colors=np.tile(np.float32([1, 0, 0]), (3000, 1))), PointsToMesh(depth=6))
    assert mesh.colors is not None and np.abs(mesh.colors - [1, 0, 0]).max() < 1e-3


@pytest.mark.parametrize("args, flag", [
    (["--scale", "0"], "--scale"), (["--scale", "nan"], "--scale"), (["--scale", "-1"], "--scale"),
    (["--depth", "0"], "--depth"), (["--depth", "17"], "--depth"),
    (["-m", "alpha", "--alpha", "0"], "--alpha"), (["-m", "alpha", "--alpha", "inf"], "--alpha"),
    (["--max-edge", "-1"], "--max-edge"), (["--max-edge", "nan"], "--max-edge"),
    (["--trim", "2"], "--trim"), (["--trim-distance", "-1"], "--trim-distance"),
    (["--voxel", "0"], "--voxel"), (["--trunc", "-1"], "--trunc"), (["--depth-scale", "0"], "--depth-scale"),
    (["--weld-tol", "nan"], "--weld-tol"), (["--min-component", "1.5"], "--min-component"),
])
def test_cli_refuses_bad_numbers_naming_the_flag(args, flag, tmp_path, cli):
    src = tmp_path / "pts.npy"
    np.save(src, _terrain(200)[0])
    out = tmp_path / "out.ply"
    r = cli("mesh", str(src), "-o", str(out), *args)
    assert r.returncode == 2, r.stderr
    assert flag in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_max_edge_none_disables_the_limit(tmp_path, cli):
    src = tmp_path / "pts.ply"
    write(src, Geometry(_on_plane(_annulus_uv(1500))))
    r = cli("mesh", str(src), "-o", str(tmp_path / "m.ply"), "--max-edge", "none", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["max_edge"] is None and _used_trimesh(read(tmp_path / "m.ply")).euler_number == 1


def test_cli_leaves_no_output_folder_behind(tmp_path, cli):
    src = tmp_path / "pts.npy"
    np.save(src, _terrain(200)[0])
    r = cli("mesh", str(src), "-o", str(tmp_path / "new" / "sub" / "out.ply"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (tmp_path / "new").exists()
