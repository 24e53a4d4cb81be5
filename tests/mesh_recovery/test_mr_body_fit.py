"""Anny behind the body interface, the skeleton's priors and plausible poses, and body fitting:
recovery of known bodies (full and single-view partial, 5 mm noise), units, the CLI's outputs (params
round-trip through `body pose`), the pipeline step, and the MakeHuman base mesh as a real scan."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from facet3d.core.errors import UsageError
from facet3d.plugins.mesh_recovery.body.lbs import rodrigues

pytest.importorskip("anny")


@pytest.fixture(scope="module")
def anny64():
    from facet3d.plugins.mesh_recovery.body.models import load_body_model

    return load_body_model("anny", dtype=torch.float64)


@pytest.fixture(scope="module")
def anny32():
    from facet3d.plugins.mesh_recovery.body.models import load_body_model

    return load_body_model("anny", dtype=torch.float32)


def _pose(model, **joints) -> torch.Tensor:
    p = torch.zeros(1, 3 * (model.num_joints - 1), dtype=model.dtype)
    for name, aa in joints.items():
        j = model.joint_names.index(name.replace("_", "."))
        p[0, 3 * (j - 1): 3 * j] = torch.as_tensor(aa, dtype=model.dtype)
    return p


def test_anny_global_rotation_and_translation_are_rigid(anny64):
    rest = anny64()
    go = torch.tensor([[0.3, -0.2, 1.1]], dtype=torch.float64)
    tr = torch.tensor([[0.5, -1.0, 0.25]], dtype=torch.float64)
    out = anny64(global_orient=go, transl=tr)
    R = rodrigues(go[0])
    assert torch.allclose(out.vertices[0], rest.vertices[0] @ R.T + tr, atol=1e-9)
    assert torch.allclose(out.joints[0], rest.joints[0] @ R.T + tr, atol=1e-9)
    assert torch.allclose(rest.joints[0, 0], torch.zeros(3, dtype=torch.float64), atol=1e-12)  # root at origin


def test_anny_joint_rotations_follow_smpl_semantics(anny64):
    """A joint's axis-angle turns its subtree about the joint, in world axes at rest; a child's turn
    applies in its parent's turned frame (as SMPL's body_pose)."""
    names = anny64.joint_names
    hip, knee, foot = (names.index(n) for n in ("upperleg01.L", "lowerleg01.L", "foot.L"))
    rest = anny64().joints[0]
    a_knee, a_hip = torch.tensor([1.0, 0.0, 0.2]), torch.tensor([0.1, -0.3, 0.5])
    out = anny64(body_pose=_pose(anny64, lowerleg01_L=a_knee, upperleg01_L=a_hip)).joints[0]
    Rk, Rh = rodrigues(a_knee.double()), rodrigues(a_hip.double())
    expect = rest[hip] + Rh @ ((rest[knee] - rest[hip]) + Rk @ (rest[foot] - rest[knee]))
    assert torch.allclose(out[foot], expect, atol=1e-6)


def test_anny_betas_are_phenotypes_minus_half(anny64):
    assert anny64.beta_names == ["gender", "age", "muscle", "weight", "height", "proportions"]
    tall = anny64(betas=torch.tensor([[0, 0, 0, 0, 0.5, 0]], dtype=torch.float64)).vertices[0]
    short = anny64(betas=torch.tensor([[0, 0, 0, 0, -0.5, 0]], dtype=torch.float64)).vertices[0]
    up = torch.tensor(anny64.up, dtype=torch.float64)
    height = lambda v: float((v @ up).max() - (v @ up).min())  # noqa: E731
    assert height(tall) > height(short) + 0.2


def test_missing_anny_is_one_clear_error(monkeypatch):
    from facet3d.plugins.mesh_recovery.body import anny_body

    monkeypatch.setitem(sys.modules, "anny", None)  # import anny -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'facet3d\[body\]'"):
        anny_body._build_anny()


def test_hinges_flex_the_right_way_and_priors(anny64):
    from facet3d.plugins.mesh_recovery.body.skeleton import HINGE_MAX, skeleton_of

    sk = skeleton_of(anny64)
    names = anny64.joint_names
    knee, ankle = names.index("lowerleg01.L"), names.index("foot.L")
    elbow, wrist = names.index("lowerarm01.L"), names.index("wrist.L")
    front = torch.tensor(anny64.front, dtype=torch.float64)
    rest = anny64().joints[0]
    bent = anny64(body_pose=_pose(anny64, lowerleg01_L=0.8 * sk.hinge_axis[knee],
                                  lowerarm01_L=0.8 * sk.hinge_axis[elbow])).joints[0]
    assert float((bent[ankle] - rest[ankle]) @ front) < -0.1  # knees bend backwards
    assert float((bent[wrist] - rest[wrist]) @ front) > 0.05  # elbows forwards
    # prior: zero at rest; a hinge bent the wrong way or off its axis costs more than the same angle right
    zero = torch.zeros(1, len(sk.free), 3, dtype=torch.float64)
    assert float(sk.pose_prior(zero)) == 0.0
    i = sk.free.index(knee)
    right, wrong, off = zero.clone(), zero.clone(), zero.clone()
    right[0, i] = 0.8 * sk.hinge_axis[knee]
    wrong[0, i] = -0.8 * sk.hinge_axis[knee]
    off[0, i] = 0.8 * torch.linalg.cross(sk.hinge_axis[knee], sk.seg[knee])
    assert float(sk.pose_prior(wrong)) > 10 * float(sk.pose_prior(right))
    assert float(sk.pose_prior(off)) > 10 * float(sk.pose_prior(right))
    # random plausible poses keep hinges on their axis, within range
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = sk.sample_pose(g)
        for j in (knee, elbow):
            r = p[sk.free.index(j)]
            theta = float(r @ sk.hinge_axis[j])
            assert 0.0 <= theta <= HINGE_MAX
            assert float((r - theta * sk.hinge_axis[j]).norm()) < 1e-9


def test_scan_units_guess():
    from facet3d.plugins.mesh_recovery.body.fit import scan_units

    pts = np.random.default_rng(0).uniform(-0.5, 0.5, size=(2000, 3)) * [0.4, 0.25, 1.7]  # 1.7 m along z
    assert scan_units(pts)[0] == "m"
    assert scan_units(pts * 100)[0] == "cm"
    assert scan_units(pts * 1000)[0] == "mm"
    with pytest.raises(Exception, match="give --units"):
        scan_units(pts * 1e5)


def _truth_params(model, scan):
    """The fit's parameters (`fit._Params`) set to a synthetic scan's true body."""
    from facet3d.core.ops.rotations import axis_angle_to_matrix
    from facet3d.plugins.mesh_recovery.body.fit import _Params
    from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of

    sk = skeleton_of(model)
    p = scan.params
    tp = _Params(model, sk, axis_angle_to_matrix(torch.as_tensor(p["global_orient"])).numpy(), p["transl"], {})
    lo, hi = model.betas_range
    with torch.no_grad():
        tp.z.copy_(torch.logit((torch.as_tensor(p["betas"]) - lo) / (hi - lo)))
        tp.pose.copy_(torch.as_tensor(p["body_pose"]).reshape(-1, 3)[tp.free_index])
    return tp, sk


def test_misplaced_limbs_are_caught_and_posed_again(anny32):
    """The second try's trigger: a fit on its true body leaves no loose points (5 mm noise << 4 cm);
    one arm turned away does. The second try starts the limbs at rest and keeps everything else; the
    limb search's own trigger (`suspect`) flags no limb of the true body and flags that arm."""
    from facet3d.plugins.mesh_recovery.body.fit import RETRY_LOOSE, FitOptions, _Data, _limbs_from_rest, _loose_share
    from facet3d.plugins.mesh_recovery.body.limb_search import suspect
    from facet3d.plugins.mesh_recovery.body.scans import synthetic_scan
    from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of

    scan = synthetic_scan(anny32, skeleton_of(anny32), seed=3)
    tp, sk = _truth_params(anny32, scan)
    P = torch.as_tensor(scan.points, dtype=torch.float32)
    data = _Data(P, torch.zeros(3), False, anny32.faces)
    part = anny32.vertex_joint()
    parents = anny32.parents.tolist()

    def flagged() -> list[int]:
        out = []
        for root, _ in sk.limbs:
            below = {root}
            for j, p in enumerate(parents):
                if p in below:
                    below.add(j)
            verts = torch.nonzero(torch.isin(part, torch.tensor(sorted(below))))[:, 0]
            with torch.no_grad():
                if suspect(tp.surfaces(tp.pose[None])[0], verts, P, 0.06, None):
                    out.append(root)
        return out

    assert _loose_share(tp, data, 0.04) == 0.0 and flagged() == []
    slot = {j: i for i, j in enumerate(sk.free)}
    arm, elbow = sk.limbs[0]
    swing = torch.linalg.cross(sk.seg[arm], sk.up)
    with torch.no_grad():  # the upper arm swung 1.5 rad forward or back: out of its points
        tp.pose[slot[arm]] += (1.5 * swing / swing.norm()).float()
    assert _loose_share(tp, data, 0.04) > RETRY_LOOSE
    assert arm in flagged()  # (limbs whose reach covers the arm's loose points are searched too)
    again, _, _ = _limbs_from_rest(tp, FitOptions(), sk)
    for root, hinge in sk.limbs:
        assert not again.pose[slot[root]].detach().any() and not again.pose[slot[hinge]].detach().any()
    keep = [i for j, i in slot.items() if all(j not in lim for lim in sk.limbs)]
    assert torch.equal(again.pose[keep], tp.pose[keep]) and torch.equal(again.z, tp.z)
    assert torch.allclose(again.rotation(), tp.rotation(), atol=1e-6) and torch.allclose(again.t, tp.t)


@pytest.mark.slow
@pytest.mark.parametrize("partial, pve_max", [(False, 15.0), (True, 30.0)])
def test_fit_recovers_a_known_body(anny32, partial, pve_max):
    """A random plausible Anny body (seed 1), 10k points with 5 mm noise per axis, over the whole
    surface or one depth view: PVE and PA-MPJPE against the truth (the issue's goals: 15 / 30 mm)."""
    from facet3d.plugins.mesh_recovery.body.fit import FitOptions, fit_body
    from facet3d.plugins.mesh_recovery.body.metrics import pa_mpjpe, pve
    from facet3d.plugins.mesh_recovery.body.scans import synthetic_scan
    from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of

    sk = skeleton_of(anny32)
    scan = synthetic_scan(anny32, sk, seed=1, partial=partial)
    assert len(scan.points) == 10_000
    start = pve(anny32().vertices[0].double().numpy(), scan.vertices)  # the rest body: far from the answer
    fit = fit_body(scan.points, anny32, FitOptions(iters=300, partial=partial,
                                                   sensor=None if scan.sensor is None else tuple(scan.sensor)))
    err = pve(fit.vertices, scan.vertices)
    assert start > 200.0
    assert err < pve_max, fit.orientation
    assert pa_mpjpe(fit.joints[sk.main_joints], scan.joints[sk.main_joints]) < pve_max
    # the returned parameters reproduce the returned surface through the model itself
    out = anny32(**{k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in fit.params.items()})
    assert np.abs(out.vertices[0].double().numpy() - fit.vertices).max() < 1e-4


@pytest.mark.slow
def test_cli_body_fit_outputs_and_params_round_trip(cli, tmp_path, anny32):
    from facet3d.core.io.api import read, write
    from facet3d.core.io.record import Geometry
    from facet3d.plugins.mesh_recovery.body.scans import synthetic_scan
    from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of

    scan = synthetic_scan(anny32, skeleton_of(anny32), seed=3, n_points=4000)
    src = tmp_path / "scan_cm.ply"
    write(src, Geometry(scan.points * 100.0))  # centimetres
    out = tmp_path / "fit"
    r = cli("body", "fit", str(src), "--out", str(out), "--iters", "30", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["scan_units"] == "cm" and summary["scan_scale_to_metres"] == 0.01
    assert "looks like it is in cm" in r.stderr
    for name in ("body.ply", "params.json", "residuals.ply", "fit.png", "fit.json"):
        assert (out / name).is_file(), name
    body = read(out / "body.ply")
    assert body.vertices.shape == (13718, 3)
    res = read(out / "residuals.ply")
    assert res.attributes["residual"].shape == (13718,) and (res.attributes["residual"] >= 0).all()
    # params.json (metres) through `body pose` gives body.ply (centimetres) back
    posed = tmp_path / "posed.ply"
    r = cli("body", "pose", "--params", str(out / "params.json"), "--out", str(posed))
    assert r.returncode == 0, r.stderr
    assert np.abs(read(posed).vertices * 100.0 - body.vertices).max() < 0.05  # 0.5 mm, float32 fit
    # outputs are never silently replaced; options are checked before any work
    r = cli("body", "fit", str(src), "--out", str(out), "--iters", "30")
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    r = cli("body", "fit", str(src), "--out", str(tmp_path / "x"), "--sensor", "0,0,0")
    assert r.returncode == 2 and "--partial" in r.stderr and not (tmp_path / "x").exists()


def test_body_fit_step_checks_its_options():
    from facet3d.plugins.mesh_recovery.steps import check_body_fit

    check_body_fit()
    for bad in ({"model": "/no/such.pkl"}, {"iters": 3}, {"gender": "x"}, {"units": "furlong"}):
        with pytest.raises(UsageError):
            check_body_fit(**bad)


@pytest.mark.slow
def test_makehuman_base_mesh_fits_as_a_scan(shared_data, anny32):
    """The MakeHuman base mesh (decimetres, Y up, with its helper geometry: a skirt, tights, hair
    shells) loads and fits: its unit is found and most of it lies on the fitted body."""
    from facet3d.core.io.api import read
    from facet3d.plugins.mesh_recovery.body.api import fit_geometry

    geom = read(shared_data / "body" / "base.obj")
    fit, unit, scale = fit_geometry(geom, anny32, iters=90)  # under LIMB_SEARCH_MIN_ITERS: no search, no second try
    assert (unit, scale) == ("dm", 0.1)
    assert np.median(fit.point_residual) < 0.02  # metres; the helpers stay unexplained
    assert np.median(fit.vertex_residual) < 0.015
    up = rodrigues(torch.as_tensor(fit.params["global_orient"])).numpy() @ np.array(anny32.up)
    assert up[1] > 0.95  # the base mesh is Y up


@pytest.mark.slow
def test_pipeline_step_writes_the_fitted_body(cli, tmp_path, anny32):
    from facet3d.core.io.api import read, write
    from facet3d.core.io.record import Geometry
    from facet3d.plugins.mesh_recovery.body.scans import synthetic_scan
    from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of

    src = tmp_path / "scans"
    src.mkdir()
    scan = synthetic_scan(anny32, skeleton_of(anny32), seed=5, n_points=3000)
    write(src / "a.ply", Geometry(scan.points))
    r = cli("pipeline", "run", str(src), "-s", "body-fit:iters=20", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    out = read(tmp_path / "out" / "a.ply")
    assert out.vertices.shape == (13718, 3) and out.faces is not None
    assert out.attributes["residual"].shape == (13718,)


def test_gender_is_held_for_anny_and_refused_for_smpl_files(anny32, tmp_path):
    from facet3d.plugins.mesh_recovery.body.api import held_gender
    from facet3d.plugins.mesh_recovery.body.smpl import SMPLBody

    from test_mr_body_model import synthetic_model

    assert held_gender(anny32, "male") == {0: 0.5} and held_gender(anny32, "auto") == {}
    np.savez(tmp_path / "m.npz", **synthetic_model())
    with pytest.raises(UsageError, match="per gender"):
        held_gender(SMPLBody.from_file(tmp_path / "m.npz"), "female")


def test_fit_runs_on_an_smpl_format_model_and_its_params_reproduce_the_surface(tmp_path):
    """The fit is model-agnostic: on an SMPL-format file (24 joints, SMPL's names and roles) the
    returned transl follows SMPL's convention (global_orient turns about the root joint, not the
    origin), so the parameters reproduce the fitted surface through the model."""
    from facet3d.plugins.mesh_recovery.body.fit import FitOptions, fit_body
    from facet3d.plugins.mesh_recovery.body.smpl import SMPLBody

    from test_mr_body_model import synthetic_model

    arrays = synthetic_model(n_verts=400)
    arrays["v_template"] = arrays["v_template"] * [0.2, 0.8, 0.1]  # tall along y, as SMPL
    np.savez(tmp_path / "m.npz", **arrays)
    body = SMPLBody.from_file(tmp_path / "m.npz", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    truth = body(betas=0.5 * torch.randn(1, 10, generator=g, dtype=torch.float64),
                 global_orient=torch.tensor([[0.0, 0.8, 0.0]], dtype=torch.float64),
                 transl=torch.tensor([[0.3, 0.1, -0.2]], dtype=torch.float64)).vertices[0].numpy()
    fit = fit_body(truth, body, FitOptions(iters=40, max_points=400))
    out = body(**{k: torch.as_tensor(v)[None] for k, v in fit.params.items()})
    assert np.abs(out.vertices[0].numpy() - fit.vertices).max() < 1e-6
    assert np.abs(out.joints[0, 0].numpy() - fit.joints[0]).max() < 1e-6
