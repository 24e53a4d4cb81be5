"""Users' errors end in one clear line on stderr and a non-zero exit; never a traceback or a partial file."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest


def _assert_clean_failure(r, code: int | None = None):
    assert r.returncode != 0, r.stdout
    if code is not None:
        assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("facet3d: error:"), lines[0]


def _binary_ply(path, n=100):
    pts = np.random.default_rng(0).random((n, 3)).astype("<f4")
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    path.write_bytes(header.encode() + pts.tobytes())
    return path


def _bad_files(d):
    rng = np.random.default_rng(1)
    files = {}
    for ext in ("ply", "obj", "stl", "off", "pcd", "las", "glb", "npy"):
        files[f"random.{ext}"] = d / f"random.{ext}"
        files[f"random.{ext}"].write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    full = _binary_ply(d / "full.ply").read_bytes()
    files["truncated.ply"] = d / "truncated.ply"
    files["truncated.ply"].write_bytes(full[: len(full) - 500])
    files["huge-count.ply"] = d / "huge-count.ply"
    files["huge-count.ply"].write_bytes(full.replace(b"element vertex 100", b"element vertex 1000000000000"))
    files["zero.ply"] = d / "zero.ply"
    files["zero.ply"].write_bytes(b"")
    files["directory.ply"] = d / "directory.ply"
    files["directory.ply"].mkdir()
    files["missing.ply"] = d / "missing.ply"
    files["bad-face-index.obj"] = d / "bad-face-index.obj"
    files["bad-face-index.obj"].write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    files["stl-lies.stl"] = d / "stl-lies.stl"  # binary STL whose triangle count is larger than the file
    files["stl-lies.stl"].write_bytes(b"\0" * 80 + struct.pack("<I", 1000) + b"\0" * 50)
    return files


BAD = ["random.ply", "random.obj", "random.stl", "random.off", "random.pcd", "random.las", "random.glb", "random.npy",
       "truncated.ply", "huge-count.ply", "zero.ply", "directory.ply", "missing.ply", "bad-face-index.obj", "stl-lies.stl"]


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    return d, _bad_files(d)


@pytest.mark.parametrize("name", BAD)
def test_info_bad_file_is_one_line(cli, bad_dir, name):
    _, files = bad_dir
    r = cli("info", str(files[name]))
    _assert_clean_failure(r, 1)
    assert name.split(".")[0] in r.stderr


@pytest.mark.parametrize("name", ["random.ply", "truncated.ply", "zero.ply", "missing.ply", "bad-face-index.obj"])
def test_convert_failure_leaves_no_output(cli, bad_dir, tmp_path, name):
    _, files = bad_dir
    out = tmp_path / "out.ply"
    r = cli("convert", str(files[name]), str(out))
    _assert_clean_failure(r, 1)
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file


def test_convert_write_failure_leaves_no_output(cli, tmp_path):
    src = _binary_ply(tmp_path / "ok.ply")
    out = tmp_path / "out.stl"  # a point cloud cannot be stored as STL
    r = cli("convert", str(src), str(out))
    _assert_clean_failure(r, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.ply"]


@pytest.mark.slow
def test_real_bad_meshes_fail_cleanly_or_load(cli, shared_data):
    """meshes/bad: each file either loads with sane counts or fails with one line."""
    for path in sorted((shared_data / "meshes" / "bad").iterdir()):
        r = cli("info", "--json", str(path))
        assert "Traceback" not in r.stderr, (path, r.stderr)
        if r.returncode == 0:
            (summary,) = json.loads(r.stdout)
            assert summary["kind"] in ("mesh", "point_cloud")
        else:
            _assert_clean_failure(r, 1)


def test_batch_continues_past_a_bad_file_and_fails_at_the_end(cli, bad_dir, tmp_path):
    _, files = bad_dir
    good = _binary_ply(tmp_path / "good.ply")
    r = cli("info", "--json", str(files["random.ply"]), str(good))
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out[0]["path"] == str(good) and out[0]["points"] == 100
    assert "error" in out[1] and "random" in out[1]["path"]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,code", [
    (["info"], 2),                      # missing argument
    (["convert", "a.ply"], 2),          # missing OUT
    (["info", "--nope", "x.ply"], 2),   # unknown option
    (["nosuchcommand"], 2),
    (["bench", "nosuchbench"], 2),
    (["convert", "x.ply", "y.ply", "--sample", "0"], 2),
])
def test_usage_errors_exit_2_with_one_line(cli, args, code):
    _assert_clean_failure(cli(*args), code)


def test_debug_shows_traceback(cli, tmp_path):
    r = cli("--debug", "info", str(tmp_path / "missing.ply"))
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_nonfinite_coordinates_are_reported(cli, tmp_path):
    p = tmp_path / "nan.xyz"
    p.write_text("0 0 0\nnan 1 2\n1 inf 0\n1 1 1\n")
    r = cli("info", "--json", str(p))
    assert r.returncode == 0, r.stderr
    (s,) = json.loads(r.stdout)
    assert s["points"] == 4 and s["nonfinite_points"] == 2
    assert s["bounds"]["min"] == [0, 0, 0] and s["bounds"]["max"] == [1, 1, 1]
