"""Body models: linear blend skinning against smplx's `lbs` (an independent implementation), the
SMPL-format readers (.pkl through the restricted unpickler, chumpy objects without chumpy; .npz),
and the refusals (a pickle that would run code, a file that is not a body model)."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from facet3d.core.errors import CheckpointError, InputError
from facet3d.plugins.mesh_recovery.body.lbs import rodrigues
from facet3d.plugins.mesh_recovery.body.model_files import read_body_model
from facet3d.plugins.mesh_recovery.body.smpl import SMPLBody

# SMPL's kinematic tree (24 joints)
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


def synthetic_model(n_verts: int = 300, n_betas: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """An SMPL-format model: a valid kinematic tree, normalised weights, random blend shapes."""
    rng = np.random.default_rng(seed)
    j = len(SMPL_PARENTS)
    v = rng.normal(size=(n_verts, 3))
    jreg = rng.random((j, n_verts)) * (rng.random((j, n_verts)) < 0.1)
    jreg[np.arange(j), rng.integers(0, n_verts, j)] += 1.0
    jreg /= jreg.sum(1, keepdims=True)
    w = rng.random((n_verts, j)) ** 4
    w /= w.sum(1, keepdims=True)
    kin = np.stack([np.array(SMPL_PARENTS, dtype=np.int64) % (2 ** 32), np.arange(j)])
    kin[0, 0] = 2 ** 32 - 1  # as the official files store the root's parent
    return {"v_template": v, "shapedirs": rng.normal(scale=0.05, size=(n_verts, 3, n_betas)),
            "posedirs": rng.normal(scale=0.01, size=(n_verts, 3, 9 * (j - 1))), "J_regressor": jreg,
            "weights": w, "kintree_table": kin, "f": rng.integers(0, n_verts, (2 * n_verts, 3))}


@pytest.fixture
def npz_model(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, **synthetic_model())
    return path


def _smplx_reference(arrays: dict, betas, pose):
    smplx_lbs = pytest.importorskip("smplx.lbs")
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    parents = torch.as_tensor(SMPL_PARENTS, dtype=torch.long)
    posedirs = t(arrays["posedirs"]).reshape(-1, arrays["posedirs"].shape[-1]).T  # smplx's [P, V*3] layout
    return smplx_lbs.lbs(betas, pose.reshape(pose.shape[0], -1), t(arrays["v_template"]), t(arrays["shapedirs"]),
                         posedirs, t(arrays["J_regressor"]), parents, t(arrays["weights"]))


def test_lbs_matches_smplx_in_float64(npz_model):
    arrays = synthetic_model()
    body = SMPLBody.from_file(npz_model, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    betas = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    pose = torch.randn(4, 24, 3, generator=gen, dtype=torch.float64) * 0.6
    pose[0] = 0.0  # the rest pose exactly
    out = body(betas=betas, global_orient=pose[:, 0], body_pose=pose[:, 1:].reshape(4, -1))
    verts, joints = _smplx_reference(arrays, betas, pose)
    torch.testing.assert_close(out.vertices, verts, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.joints, joints, rtol=0, atol=1e-6)
    # smplx's batch_rodrigues adds 1e-8 to every rotation vector before its norm, so the two agree to
    # ~1e-8 here, not to round-off; the rest pose (no rotation anywhere) agrees exactly
    torch.testing.assert_close(out.vertices[0], verts[0], rtol=0, atol=1e-12)
    moved = body(betas=betas, global_orient=pose[:, 0], body_pose=pose[:, 1:].reshape(4, -1),
                 transl=torch.ones(4, 3, dtype=torch.float64))
    torch.testing.assert_close(moved.vertices, out.vertices + 1, rtol=0, atol=1e-12)


def test_lbs_float32_and_gradients(npz_model):
    body64 = SMPLBody.from_file(npz_model, dtype=torch.float64)
    body32 = SMPLBody.from_file(npz_model)
    pose = (torch.randn(2, 69, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.5).requires_grad_()
    betas = torch.zeros(2, 10, dtype=torch.float64, requires_grad=True)
    out64 = body64(betas=betas, body_pose=pose)
    out32 = body32(betas=betas.float(), body_pose=pose.float())
    torch.testing.assert_close(out32.vertices.double(), out64.vertices, rtol=0, atol=1e-5)
    # a known shape: the rest-pose template with zero shape
    rest = body64()
    torch.testing.assert_close(rest.vertices[0], body64.v_template, rtol=0, atol=1e-12)
    small = lambda p: body64(betas=betas[:1], body_pose=p).vertices.sum()  # noqa: E731
    assert torch.autograd.gradcheck(small, (pose[:1].detach().clone().requires_grad_(),), eps=1e-6, atol=1e-5)


def test_rodrigues_against_scipy_and_at_zero():
    from scipy.spatial.transform import Rotation

    v = torch.randn(64, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    np.testing.assert_allclose(rodrigues(v).numpy(), Rotation.from_rotvec(v.numpy()).as_matrix(), atol=1e-12)
    z = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    rodrigues(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    np.testing.assert_allclose(rodrigues(z).detach()[0].numpy(), np.eye(3), atol=0)


def _fake_chumpy_module():
    """A stand-in `chumpy.ch` module to write a chumpy-style pickle as the official files are."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set(), "_depends_on_deps": {}}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    return ch_mod, Ch


def test_reads_a_chumpy_style_pickle_without_chumpy(tmp_path, monkeypatch):
    import scipy.sparse

    arrays = synthetic_model(seed=5)
    ch_mod, Ch = _fake_chumpy_module()
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    data = dict(arrays, shapedirs=Ch(arrays["shapedirs"]), posedirs=Ch(arrays["posedirs"]),
                J_regressor=scipy.sparse.csc_matrix(arrays["J_regressor"]), bs_style="lbs")
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    monkeypatch.delitem(sys.modules, "chumpy")
    model = read_body_model(path)
    np.testing.assert_array_equal(model.shapedirs, arrays["shapedirs"])
    np.testing.assert_array_equal(model.J_regressor, arrays["J_regressor"])
    assert model.parents.tolist() == SMPL_PARENTS and "chumpy" not in sys.modules


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_a_pickle_that_would_run_code_and_files_that_are_not_models(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"v_template": _RunsCode()}, protocol=2))
    with pytest.raises(CheckpointError, match="refusing global 'posix.system'|refusing global 'os.system'"):
        read_body_model(evil)
    partial = tmp_path / "partial.npz"
    np.savez(partial, v_template=np.zeros((3, 3)), f=np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(InputError, match="missing shapedirs, posedirs, J_regressor, weights, kintree_table"):
        read_body_model(partial)
    bad = synthetic_model()
    bad["weights"] = bad["weights"][:, :5]
    shape = tmp_path / "shape.npz"
    np.savez(shape, **bad)
    with pytest.raises(InputError, match=r"weights must be \[300, 24\]"):
        read_body_model(shape)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(InputError, match="not a readable body model pickle"):
        read_body_model(tmp_path / "junk.pkl")


def test_metrics_in_the_fields_definitions():
    from scipy.spatial import procrustes
    from scipy.spatial.transform import Rotation

    from facet3d.plugins.mesh_recovery.body.metrics import mpjpe, pa_mpjpe, per_joint_errors, pve, similarity_procrustes

    rng = np.random.default_rng(7)
    gt = rng.normal(size=(24, 3)) * 0.3
    # a similarity transform of gt: PA-MPJPE is 0, MPJPE is not
    moved = 1.3 * gt @ Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix().T + [0.1, 2.0, -0.4]
    assert pa_mpjpe(moved, gt) < 1e-9 and mpjpe(moved, gt) > 10
    # against scipy's Procrustes disparity (both standardised: the residual sum of squares agrees)
    noisy = moved + rng.normal(scale=0.01, size=gt.shape)
    aligned = similarity_procrustes(noisy, gt)[0]
    _, _, disparity = procrustes(gt, noisy)
    gc = gt - gt.mean(0)
    np.testing.assert_allclose(((aligned - gt) ** 2).sum() / (gc ** 2).sum(), disparity, rtol=1e-9)
    # closed forms: a constant 5 mm shift of every joint but the root
    shifted = gt.copy()
    shifted[1:] += [0.005, 0.0, 0.0]
    assert mpjpe(shifted, gt) == pytest.approx(5.0 * 23 / 24)
    np.testing.assert_allclose(per_joint_errors(shifted, gt), [0.0] + [5.0] * 23, atol=1e-9)
    verts = rng.normal(size=(100, 3))
    assert pve(verts + [0, 0, 0.002], verts) == pytest.approx(2.0)
    assert pve(verts + 1.0, verts, gt + 1.0, gt) == pytest.approx(0.0, abs=1e-9)  # root-aligned


def test_body_pose_command_writes_the_posed_mesh_and_joints(tmp_path, cli):
    import json

    import trimesh

    arrays = synthetic_model(seed=9)
    model = tmp_path / "model.npz"
    np.savez(model, **arrays)
    rng = np.random.default_rng(4)
    params = {"betas": rng.normal(size=10).tolist(), "global_orient": [[0.2, -0.1, 0.4]],  # smplx's [1, 3] accepted
              "body_pose": (rng.normal(size=69) * 0.4).tolist(), "transl": [0.5, 0.0, -1.0]}
    (tmp_path / "p.json").write_text(json.dumps(params))
    r = cli("body", "pose", "--model", str(model), "--params", str(tmp_path / "p.json"), "--out", str(tmp_path / "b.obj"))
    assert r.returncode == 0, r.stderr
    mesh = trimesh.load(tmp_path / "b.obj", process=False)
    pose = torch.as_tensor([params["global_orient"][0]] + np.reshape(params["body_pose"], (23, 3)).tolist(),
                           dtype=torch.float64)[None]
    verts, joints = _smplx_reference(arrays, torch.as_tensor([params["betas"]], dtype=torch.float64), pose)
    np.testing.assert_allclose(mesh.vertices, verts[0].numpy() + params["transl"], atol=1e-6)  # model order kept
    np.testing.assert_array_equal(mesh.faces, arrays["f"])
    saved = json.loads((tmp_path / "b.joints.json").read_text())
    np.testing.assert_allclose(saved["joints"], joints[0].numpy() + params["transl"], atol=1e-6)
    assert saved["parents"] == SMPL_PARENTS
    r = cli("body", "pose", "--model", str(model), "--rest", "--out", str(tmp_path / "rest.ply"))
    rest = trimesh.load(tmp_path / "rest.ply", process=False)
    np.testing.assert_allclose(rest.vertices, arrays["v_template"], atol=1e-6)
    for args, needle in ((["--rest", "--out", str(tmp_path / "b.obj")], "exists"),
                         (["--params", str(tmp_path / "p.json"), "--rest", "--out", str(tmp_path / "x.ply")], "exactly one"),
                         (["--rest", "--out", str(tmp_path / "y.ply"), "--model", str(tmp_path / "p.json")], "not a readable body model")):
        argv = ["body", "pose", *args] if "--model" in args else ["body", "pose", "--model", str(model), *args]
        r = cli(*argv)
        assert r.returncode != 0 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
