"""Official Triangle Splatting (TS) / Triangle Splatting+ (TS+) outputs: activations, variant and
iteration choice, cameras.json, render / export / --to-scene / fit --init, clean errors for bad files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from facet3d.core.errors import FormatError, InputError
from facet3d.core.io.api import read
from facet3d.plugins.triangle_splatting.official import (find_state_file, is_official_scene, load_official,
                                                          official_cameras)
from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
from facet3d.plugins.triangle_splatting.scene import TriangleScene

N_TS = 40


def _ts_state(n: int = N_TS, seed: int = 0) -> dict:
    """Raw TS tensors: opacity 0 -> 0.5, sigma log(0.49) -> 0.5, SH degree 2 of 3 active."""
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 1, 3, generator=g) * 1.2 - 0.6
    tri = c + 0.25 * torch.randn(n, 3, 3, generator=g)
    return {"triangles_points": tri, "sigma": torch.full((n, 1), math.log(0.49)),
            "opacity": torch.zeros(n, 1), "features_dc": torch.randn(n, 1, 3, generator=g),
            "features_rest": 0.2 * torch.randn(n, 15, 3, generator=g), "active_sh_degree": 2}


def _tsplus_state() -> dict:
    """Raw TS+ tensors of a closed octahedron: vertex weight 0, sigma log(2) (a Python float)."""
    v = torch.tensor([[0.6, 0, 0], [-0.6, 0, 0], [0, 0.6, 0], [0, -0.6, 0], [0, 0, 0.6], [0, 0, -0.6]])
    f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]],
                     dtype=torch.int32)
    g = torch.Generator().manual_seed(1)
    return {"triangles_points": v, "_triangle_indices": f, "vertex_weight": torch.zeros(6, 1),
            "sigma": math.log(2.0), "active_sh_degree": torch.tensor(3),
            "features_dc": torch.randn(6, 1, 3, generator=g), "features_rest": 0.1 * torch.randn(6, 15, 3, generator=g),
            "importance_score": torch.zeros(8), "image_size": torch.zeros(8)}


def _cameras_json(path, n: int = 2, size=(64, 48)) -> None:
    """3DGS / official layout: position = centre, rotation = camera-to-world (OpenCV axes)."""
    cams = orbit_cameras((0, 0, 0), 2.6, n, (size[1], size[0]), fov=60)
    entries = [dict(id=i, img_name=f"DSC_{i:04d}", width=size[0], height=size[1],
                    position=cams.centers()[i].tolist(), rotation=cams.R[i].T.tolist(),
                    fx=float(cams.K[i, 0, 0]), fy=float(cams.K[i, 1, 1])) for i in range(n)]
    path.write_text(json.dumps(entries))


def _model(root, state: dict, older: dict | None = None):
    """An official model folder: iteration_7000 (older) and iteration_30000 (the latest by number)."""
    for it, sd in ((7000, older), (30000, state)):
        if sd is not None:
            d = root / "point_cloud" / f"iteration_{it}"
            d.mkdir(parents=True)
            torch.save(sd, d / "point_cloud_state_dict.pt")
    _cameras_json(root / "cameras.json")
    return root


@pytest.fixture
def ts_model(tmp_path):
    return _model(tmp_path / "ts_model", _ts_state(), older=_ts_state(7, seed=5))


@pytest.fixture
def tsplus_model(tmp_path):
    return _model(tmp_path / "tsp_model", _tsplus_state())


# ------------------------------------------------------------------ reading
def test_ts_activations_latest_iteration_and_detection(ts_model, tmp_path):
    raw = _ts_state()
    s = load_official(ts_model)
    assert s.form == "ts" and len(s) == N_TS
    assert s.meta["variant"] == "ts" and s.meta["iteration"] == 30000 and s.meta["opacity_floor"] is None
    assert s.meta["active_sh_degree"] == 2 and s.meta["source"].endswith("iteration_30000/point_cloud_state_dict.pt")
    torch.testing.assert_close(s.opacity, torch.full((N_TS,), 0.5))
    torch.testing.assert_close(s.sigma, torch.full((N_TS,), 0.5))
    assert torch.equal(s.triangles, raw["triangles_points"]) and torch.equal(s.sh_dc, raw["features_dc"][:, 0])
    assert s.sh_degree == 2 and torch.equal(s.sh_rest, raw["features_rest"][:, :8])  # above the active degree: dropped
    assert len(load_official(ts_model, iteration=7000)) == 7
    with pytest.raises(InputError, match="no iteration 5"):
        load_official(ts_model, iteration=5)
    pt = find_state_file(ts_model)[0]
    assert torch.equal(load_official(pt).triangles, s.triangles)
    renamed = tmp_path / "scene.pt"
    renamed.write_bytes(pt.read_bytes())
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    assert is_official_scene(ts_model) and is_official_scene(pt) and is_official_scene(pt.parent)
    assert is_official_scene(renamed) and not is_official_scene(other) and not is_official_scene(tmp_path)


def test_tsplus_activations_floor_and_sigma(tsplus_model):
    s = load_official(tsplus_model)
    assert s.form == "ts+" and s.meta["variant"] == "ts+" and s.meta["opacity_floor"] == 0.9999
    assert s.faces.dtype == torch.int64 and torch.equal(s.faces, _tsplus_state()["_triangle_indices"].long())
    torch.testing.assert_close(s.opacity, torch.full((6,), 0.99995))
    assert float(s.sigma) == pytest.approx(2.0) and s.sigma.ndim == 0
    assert s.sh_degree == 3 and s.meta["active_sh_degree"] == 3
    torch.testing.assert_close(load_official(tsplus_model, opacity_floor=0.5).opacity, torch.full((6,), 0.75))
    sd = _tsplus_state()
    sd["sigma"] = torch.tensor(math.log(2.0))  # a 0-d tensor works as well
    pt = find_state_file(tsplus_model)[0]
    torch.save(sd, pt)
    assert float(load_official(pt).sigma) == pytest.approx(2.0)


def test_official_cameras(ts_model):
    cams = official_cameras(ts_model)
    entries = json.loads((ts_model / "cameras.json").read_text())
    assert len(cams) == 2 and cams.names == ["DSC_0000", "DSC_0001"]
    torch.testing.assert_close(cams.centers(), torch.tensor([e["position"] for e in entries], dtype=torch.float64))
    c2w = torch.tensor([e["rotation"] for e in entries], dtype=torch.float64)
    torch.testing.assert_close(cams.R, c2w.transpose(1, 2))
    assert cams.image_size.tolist() == [[48, 64], [48, 64]]
    assert float(cams.K[0, 0, 2]) == 31.5 and float(cams.K[0, 1, 2]) == 23.5  # the official centred principal point
    uv, z = cams.project(torch.zeros(1, 3, dtype=torch.float64))  # the orbit looks at the origin
    torch.testing.assert_close(uv[:, 0], cams.K[:, :2, 2])
    assert official_cameras(find_state_file(ts_model)[0]) is not None  # from the .pt inside the folder too


# ------------------------------------------------------------------ render, export, convert, fit
def test_render_matches_the_scene_built_by_hand(ts_model):
    raw = _ts_state()
    n = N_TS
    by_hand = TriangleScene("ts", raw["features_dc"][:, 0], raw["features_rest"][:, :8],
                            torch.sigmoid(torch.zeros(n)), 0.01 + torch.exp(torch.full((n,), math.log(0.49))),
                            triangles=raw["triangles_points"])
    cams = official_cameras(ts_model).with_image_size(24, 32)
    with torch.no_grad():
        a = render(load_official(ts_model), cams, background=(1, 1, 1))
        b = render(by_hand, cams, background=(1, 1, 1))
    assert float(a["alpha"].amax()) > 0.3  # the triangles are in view
    for k in ("rgb", "alpha", "depth"):
        assert torch.equal(a[k], b[k]), k


def test_export_mesh_and_scene_ply(ts_model, tsplus_model, tmp_path):
    from facet3d.plugins.triangle_splatting.export import export_scene

    r = export_scene(ts_model, tmp_path / "ts.glb")
    assert r["form"] == "ts" and r["triangles"] == N_TS and read(tmp_path / "ts.glb").num_faces == N_TS
    export_scene(tsplus_model, tmp_path / "tsp.ply")
    assert read(tmp_path / "tsp.ply").num_faces == 8
    for model in (ts_model, tsplus_model):
        src = load_official(model)
        export_scene(model, tmp_path / "scene.ply", to_scene=True)
        back = TriangleScene.load_ply(tmp_path / "scene.ply")
        assert back.form == src.form and back.sh_degree == src.sh_degree
        for k in ("sh_dc", "sh_rest", "opacity", "sigma", "triangles", "vertices", "faces"):
            a, b = getattr(src, k), getattr(back, k)
            assert (a is None and b is None) or torch.equal(a, b), k


def test_from_scene_inverts_the_activations(ts_model, tsplus_model):
    from facet3d.plugins.triangle_splatting.model import SplatModel

    ts = load_official(ts_model)
    m = SplatModel.from_scene(ts).scene(sh_degree=2)
    for k in ("opacity", "sigma", "sh_dc", "sh_rest", "triangles"):
        torch.testing.assert_close(getattr(m, k).detach(), getattr(ts, k), rtol=1e-5, atol=1e-6)
    tsp = load_official(tsplus_model)
    mp = SplatModel.from_scene(tsp, opacity_floor=0.1)
    torch.testing.assert_close(mp.scene(3, sigma=2.0, opacity_floor=0.1).opacity.detach(), tsp.opacity)
    assert torch.equal(mp.faces, tsp.faces)
    as_ts = SplatModel.from_scene(tsp, "ts")  # unshared: one triangle per face
    assert as_ts.form == "ts" and len(as_ts) == 8


def _run_cli(*args):
    """facet3d in this process (no interpreter start-up) -> its exit code."""
    from facet3d.cli.main import run

    with pytest.raises(SystemExit) as exc:
        run([str(a) for a in args])
    return exc.value.code


def test_cli_to_scene_and_fit_init(ts_model, tsplus_model, tmp_path, capfd):
    out = tmp_path / "converted.ply"
    assert _run_cli("export", tsplus_model, "--to-scene", "-o", out) == 0
    assert "as a scene PLY" in capfd.readouterr().err
    assert TriangleScene.load_ply(out).form == "ts+"
    assert _run_cli("export", tsplus_model, "--to-scene", "-o", tmp_path / "x.glb") == 2
    capfd.readouterr()

    # a tiny Blender folder rendered from the TS scene itself; fit --init continues from the scene
    cams = orbit_cameras((0, 0, 0), 2.6, 4, 16, fov=60)
    with torch.no_grad():
        o = render(load_official(ts_model), cams, background=(0, 0, 0))
    (tmp_path / "ds" / "train").mkdir(parents=True)
    frames = []
    for i in range(4):
        rgba = torch.cat([o["rgb"][i], o["alpha"][i][..., None]], -1).clamp(0, 1).float().numpy()
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(tmp_path / "ds" / "train" / f"r_{i}.png")
        frames.append(dict(file_path=f"./train/r_{i}", transform_matrix=cams.to_blender()[i].tolist()))
    (tmp_path / "ds" / "transforms_train.json").write_text(
        json.dumps(dict(camera_angle_x=float(cams.fov_x()[0]), frames=frames)))
    run = tmp_path / "run"
    code = _run_cli("fit", tmp_path / "ds", "--out", run, "--iters", "2", "--checkpoint-every", "0",
                    "--init", ts_model, "--json")
    cap = capfd.readouterr()
    assert code == 0, cap.err
    assert f"initialised {N_TS} triangles from" in cap.err and "iteration_30000" in cap.err
    assert json.loads(cap.out)["iterations"] == 2
    assert json.loads((run / "log.json").read_text())["config"]["extra"]["init"] == str(ts_model)
    assert len(TriangleScene.load_ply(run / "scene.ply")) > 0
    # a TS scene cannot start a TS+ fit: refused before the dataset is read
    assert _run_cli("fit", tmp_path / "ds", "--out", tmp_path / "run2", "--mode", "ts+", "--init", ts_model) == 2
    assert "--mode ts" in capfd.readouterr().err


# ------------------------------------------------------------------ bad files
class _Opaque:
    """A custom class: unpickling it needs code (weights_only refuses it)."""


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (str(self.marker), "w"))


def test_bad_files_give_one_clean_error(tmp_path, capfd, cli):
    missing = tmp_path / "missing.pt"
    sd = _ts_state(4)
    del sd["opacity"], sd["features_rest"]
    torch.save(sd, missing)
    with pytest.raises(FormatError, match=r"missing.pt: not an official Triangle Splatting state dict: missing "
                                          r"opacity, features_rest"):
        load_official(missing)
    shape = tmp_path / "shape.pt"
    sd = _ts_state(4)
    sd["sigma"] = torch.zeros(5, 1)
    torch.save(sd, shape)
    with pytest.raises(FormatError, match=r"'sigma' has shape \[5, 1\], expected \[4, 1\]"):
        load_official(shape)
    bad_idx = tmp_path / "idx.pt"
    sd = _tsplus_state()
    sd["_triangle_indices"][0, 0] = 6
    torch.save(sd, bad_idx)
    with pytest.raises(FormatError, match="refers to vertex 6"):
        load_official(bad_idx)
    text = tmp_path / "text.pt"
    text.write_text("not torch")
    with pytest.raises(FormatError, match="not a torch file"):
        load_official(text)
    with pytest.raises(InputError, match="not an official Triangle Splatting model folder"):
        load_official(tmp_path)
    custom = tmp_path / "custom.pt"
    torch.save({"triangles_points": torch.zeros(2, 3, 3), "extra": _Opaque()}, custom)
    with pytest.raises(FormatError, match="code execution"):
        load_official(custom)

    marker = tmp_path / "pwned"
    evil = tmp_path / "point_cloud_state_dict.pt"
    torch.save(_Payload(marker), evil)
    for args in (("export", evil, "-o", tmp_path / "x.glb"), ("render", missing, "--orbit", "1", "--size", "8x8",
                                                             "-o", tmp_path / "v")):
        assert _run_cli(*args) == 1
        err = capfd.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    # the real command line, in a fresh interpreter: the refusal and exit code 1, no traceback
    r = cli("export", str(evil), "-o", str(tmp_path / "y.glb"))
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "code execution" in r.stderr and not marker.exists()


def test_render_command_uses_the_model_cameras(ts_model, tmp_path, cli):
    out = tmp_path / "views"
    r = cli("render", str(ts_model), "--size", "32x24", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["DSC_0000_rgb.png", "DSC_0001_rgb.png"]
    img = np.asarray(Image.open(out / "DSC_0000_rgb.png"))
    assert img.shape == (24, 32, 3) and img.max() > 0
