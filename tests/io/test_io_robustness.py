"""Bad input gives one-line Facet3DError naming the file; content detection; light imports; plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

from facet3d.core.errors import Facet3DError, InputError
from facet3d.core.io import api, ply
from facet3d.core.io.record import Geometry


def _check_error_or_valid(path, **kw):
    try:
        g = api.read(path, **kw)
    except Facet3DError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg, msg
        return None
    return g


@pytest.mark.parametrize("name", ["busted.STL", "empty.ply", "soup.stl", "wallhole.obj"])
def test_shared_bad_meshes(shared_data, name):
    g = _check_error_or_valid(shared_data / "meshes" / "bad" / name)
    # all four are valid files of broken geometry: they must load (geometry ops judge them later)
    assert g is not None
    if name != "empty.ply":
        assert g.num_faces > 0 and np.isfinite(g.vertices).all()


@pytest.mark.parametrize("ext", [".ply", ".obj", ".off", ".stl", ".glb", ".gltf", ".pcd", ".las", ".laz", ".npy",
                                 ".npz", ".xyz", ".csv"])
def test_random_bytes(tmp_path, ext):
    path = tmp_path / f"noise{ext}"
    path.write_bytes(np.random.default_rng(len(ext)).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(Facet3DError) as info:
        api.read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _good_ply(tmp_path):
    g = Geometry(vertices=np.random.default_rng(0).random((100, 3)), faces=np.array([[0, 1, 2]] * 10))
    ply.write(tmp_path / "good.ply", g)
    return (tmp_path / "good.ply").read_bytes(), g


def test_truncated_and_absurd_ply(tmp_path):
    raw, _ = _good_ply(tmp_path)
    cases = {
        "trunc.ply": raw[: len(raw) - 37],
        "trunc_vertex.ply": raw[:400],
        "huge.ply": raw.replace(b"element vertex 100", b"element vertex 1000000000000"),
        "huge_faces.ply": raw.replace(b"element face 10", b"element face 1000000000000"),
        "huge_ascii.ply": b"ply\nformat ascii 1.0\nelement vertex 1000000000000\nproperty float x\nproperty float y\n"
                          b"property float z\nend_header\n0 0 0\n",
        "bad_index.ply": b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                         b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n",
        "no_end.ply": b"ply\nformat ascii 1.0\nelement vertex 1\n",
        "bad_type.ply": b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n0\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert _check_error_or_valid(tmp_path / name) is None, name


def test_nonfinite_loaded_and_flagged(tmp_path):
    (tmp_path / "nan.xyz").write_text("0 0 0\nnan 1 2\n1 inf 2\n3 3 3\n")
    g = api.read(tmp_path / "nan.xyz")
    assert g.num_points == 4 and g.meta["non_finite_points"] == 2
    v = np.array([[0, 0, 0], [np.nan, 0, 0]], np.float32)
    ply.write(tmp_path / "nan.ply", Geometry(vertices=v))
    assert api.read(tmp_path / "nan.ply").meta["non_finite_points"] == 1


def test_empty_dir_missing(tmp_path):
    (tmp_path / "zero.ply").write_bytes(b"")
    for p in (tmp_path / "zero.ply", tmp_path, tmp_path / "missing.ply"):
        with pytest.raises(InputError, match=str(p)):
            api.read(p)


def test_content_beats_extension(tmp_path):
    raw, g = _good_ply(tmp_path)
    for name in ("renamed.xyz", "noext", "lying.obj", "lying.stl"):
        (tmp_path / name).write_bytes(raw)
        r = api.read(tmp_path / name)
        assert r.meta["format"] == "ply", name
        np.testing.assert_array_equal(r.vertices, g.vertices)
    (tmp_path / "cloud").write_text("1 2 3\n4 5 6\n")
    assert api.read(tmp_path / "cloud").meta["format"] == "xyz"
    (tmp_path / "mesh").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert api.read(tmp_path / "mesh").meta["format"] == "obj"


def test_plugin_lists_formats():
    from facet3d.core.plugins import get_plugins

    names = set(get_plugins().formats())
    assert {"ply", "pcd", "obj", "off", "stl", "glb", "gltf", "xyz", "npy", "npz", "las", "kitti-bin",
            "nuscenes-bin"} <= names
    assert get_plugins().infos["formats"].status == "ok"


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FACET3D_PLUGINS": "formats"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_registering_formats_imports_nothing_heavy():
    code = ("import sys, json\nfrom facet3d.core.plugins import get_plugins\nget_plugins().formats()\n"
            "print(json.dumps([m for m in ('numpy', 'trimesh', 'laspy', 'torch', 'open3d') if m in sys.modules]))")
    assert _run(code) == []


READ_ALL = """
import json, sys, pathlib
import numpy as np
from facet3d.core.io import api
from facet3d.core.io.record import Geometry
tmp, shared = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
g = Geometry(vertices=np.random.rand(10, 3), faces=np.array([[0, 1, 2]]))
for ext in ("ply", "obj", "off", "stl", "xyz", "npy", "las"):
    p = tmp / f"a.{ext}"
    api.write(p, g if ext in ("ply", "obj", "off", "stl") else Geometry(vertices=g.vertices))
    api.read(p)
for rel in ("meshes/cow.obj", "meshes/fuze.obj", "modelnet/chair/chair_0001.off", "meshes/featuretype.STL",
            "las/simple.laz", "meshes/points_agisoft.xyz"):
    if (shared / rel).exists():
        api.read(shared / rel)
print(json.dumps([m for m in ("torch", "open3d") if m in sys.modules]))
"""


def test_reading_does_not_import_torch_or_open3d(tmp_path):
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    assert _run(READ_ALL, str(tmp_path), str(shared)) == []
