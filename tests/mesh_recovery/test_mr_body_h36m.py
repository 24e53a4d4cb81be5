"""Human3.6M's public layout as an evaluation set: a tiny tree written with cdflib whose 3-D joints are a
known body through a known regressor and whose 2-D joints are their pinhole projection; the loader
(frame stride, the 17 joints, mm -> m, the centre through the letterbox, skipped sequences, protocol 2),
evaluation through the regressor (the true bodies: 0 mm; a perturbed pose: more; no PVE), and the
refusals (no or misfit regressor, no cdflib, training on it)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from facet3d.core.errors import InputError, UsageError

cdfwrite = pytest.importorskip("cdflib.cdfwrite")

N_VERTS = 300
K = np.array([[40.0, 0, 25.0], [0, 40.0, 20.0], [0, 0, 1]])  # 50 x 40 px frames
SEQS = {"Directions 1.54138969": (23, 5), "Posing.55011271": (7, None), "Walking.60457274": (6, 6)}  # rows, frames


@pytest.fixture(scope="module")
def smpl(tmp_path_factory):
    from test_mr_body_model import synthetic_model

    from facet3d.plugins.mesh_recovery.body.models import load_body_model

    path = tmp_path_factory.mktemp("smpl") / "model.npz"
    np.savez(path, **synthetic_model(n_verts=N_VERTS))
    return load_body_model(path, dtype=torch.float64), path


def _write_pose(path, pose: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cdfwrite.CDF(str(path), delete=True)
    w.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_DOUBLE, "Num_Elements": 1, "Rec_Vary": True,
                 "Dim_Sizes": list(pose.shape)}, var_data=pose[None])
    w.close()


@pytest.fixture(scope="module")
def h36m(smpl, tmp_path_factory):
    """S9 with three sequences (every 5th frame extracted; no Images folder; every frame), no S11."""
    from facet3d.plugins.mesh_recovery.body.h36m import H36M_JOINTS

    model, model_path = smpl
    root = tmp_path_factory.mktemp("H36M")
    rng = np.random.default_rng(0)
    reg = rng.random((17, N_VERTS)) * (rng.random((17, N_VERTS)) < 0.1)
    reg[np.arange(17), rng.integers(0, N_VERTS, 17)] += 1.0
    reg /= reg.sum(1, keepdims=True)
    np.save(root / "J_regressor_h36m.npy", reg)
    truth = {}
    for name, (rows, frames) in SEQS.items():
        body = {"betas": torch.as_tensor(rng.normal(size=(1, 10))).expand(rows, 10),
                "global_orient": torch.as_tensor(0.3 * rng.normal(size=(rows, 3))),
                "body_pose": torch.as_tensor(0.3 * rng.normal(size=(rows, 69))),
                "transl": torch.as_tensor(rng.normal(scale=0.1, size=(rows, 3)) + [0, 0, 4.0])}
        with torch.no_grad():
            verts = model(**body).vertices.numpy()
        j17 = np.einsum("jv,nvc->njc", reg, verts)  # metres, camera frame
        j32 = rng.normal(scale=0.3, size=(rows, 32, 3)) + [0, 0, 4.0]
        j32[:, H36M_JOINTS] = j17
        uv = j32 @ K.T
        _write_pose(root / "S9" / "MyPoseFeatures" / "D3_Positions_mono" / f"{name}.cdf", (j32 * 1000).reshape(rows, 96))
        _write_pose(root / "S9" / "MyPoseFeatures" / "D2_Positions" / f"{name}.cdf",
                    (uv[..., :2] / uv[..., 2:]).reshape(rows, 64))
        if frames is not None:
            img = root / "S9" / "Images" / name
            img.mkdir(parents=True)
            step = -(-rows // frames)  # every 5th from the first (ceil(23 / 5) = 5 frames), or every one
            for k in range(frames):  # named by video frame: natural order is not the names' order
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(img / f"frame_{k * step}.png")
        truth[name] = {"body": body, "j17": j17, "pelvis_px": uv[:, 0, :2] / uv[:, 0, 2:]}
    return root, truth, model_path


def test_frame_stride():
    from facet3d.plugins.mesh_recovery.body.h36m import frame_stride

    assert frame_stride(1383, 277) == 5  # every 5th from the first: ceil(1383 / 5) (rows // frames would say 4)
    assert frame_stride(1380, 276) == 5 and frame_stride(23, 5) == 5 and frame_stride(6, 6) == 1
    assert frame_stride(23, 7) == 3  # every 3rd, the last row's frame left out
    assert frame_stride(23, 13) is None and frame_stride(5, 6) is None and frame_stride(5, 0) is None


def test_loader_reads_the_public_layout(h36m, tmp_path):
    from facet3d.plugins.mesh_recovery.body.h36m import H36mDataset

    root, truth, _ = h36m
    ds = H36mDataset(root, "test", image_size=64, clip=1)
    assert [s["name"] for s in ds.sequences] == ["S9/Directions 1.54138969", "S9/Walking.60457274"]
    assert [s["stride"] for s in ds.sequences] == [5, 1] and len(ds) == 5 + 6
    assert ds.info["skipped"] == ["S9/Posing.55011271 (no Images folder)"] and ds.info["subjects_missing"] == ["S11"]
    assert [p.name for p in ds.sequences[0]["frames"]] == [f"frame_{r}.png" for r in (0, 5, 10, 15, 20)]
    s = ds[3]  # Directions, frame 3 = pose row 15
    assert s["rows"].tolist() == [15] and s["frames"].shape == (1, 3, 64, 64)
    t = truth["Directions 1.54138969"]
    assert s["joints"].shape == (1, 1, 17, 3)
    np.testing.assert_allclose(s["joints"][0, 0].numpy(), t["j17"][15], atol=1e-6)  # mm -> metres
    assert torch.equal(s["transl"][0, 0], s["joints"][0, 0, 0]) and s["visible"].tolist() == [[10_000]]
    # 50 x 40 -> 64 x 51 at scale 1.28, 6 px bar at the top
    u, v = t["pelvis_px"][15]
    assert s["centre_px"][0, 0].tolist() == pytest.approx([u * 1.28 + 0.5, v * 1.28 + 6 + 0.5], abs=1e-4)
    assert len(H36mDataset(root, "test", 64, clip=2)) == 2 + 3
    p2 = H36mDataset(root, "test-p2", 64)  # the frontal camera only
    assert [s["name"] for s in p2.sequences] == ["S9/Walking.60457274"]
    with pytest.raises(UsageError, match="split must be test"):
        H36mDataset(root, "validation")
    with pytest.raises(InputError, match="no usable Human3.6M sequence.*subjects missing: S1, S5, S6, S7, S8"):
        H36mDataset(root, "train")
    # a folder that is not every n-th frame is refused
    bad = tmp_path / "H36M"
    shutil.copytree(root / "S9", bad / "S9")
    for f in sorted((bad / "S9" / "Images" / "Walking.60457274").iterdir())[:2]:
        f.unlink()
    with pytest.raises(InputError, match="4 frames for 6 pose rows"):
        H36mDataset(bad, "test")


def test_missing_cdflib_is_one_line(h36m, monkeypatch):
    from facet3d.plugins.mesh_recovery.body.h36m import H36mDataset

    monkeypatch.setitem(sys.modules, "cdflib", None)  # import cdflib -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'facet3d\[h36m\]'") as e:
        H36mDataset(h36m[0], "test")
    assert "\n" not in str(e.value)


def test_evaluation_through_the_regressor(smpl, h36m, monkeypatch, tmp_path):
    """Detections that are the true bodies -> recall 1 and 0 mm; a perturbed pose -> errors; no PVE;
    a missing or misfit regressor refused before any work, and training on Human3.6M refused."""
    from facet3d.plugins.mesh_recovery.body.detector import build_detector
    from facet3d.plugins.mesh_recovery.body.net_train import (TrainOptions, evaluate_detector, frame_targets,
                                                              open_dataset, train_detector)

    model, _ = smpl
    root, truth, _ = h36m
    reg = root / "J_regressor_h36m.npy"
    det = build_detector("tiny", model)
    ds = open_dataset(root, model, det.image_size, 1, "test")
    state = {"noise": 0.0}

    class DS:
        info = ds.info

        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            state["seq"] = ds.sequences[ds.items[i][0]]["name"].split("/")[1]
            state["sample"] = ds[i]
            return state["sample"]

    def fake_detect(frames, threshold=0.25):
        s, body = state["sample"], truth[state["seq"]]["body"]
        out = []
        for t, row in enumerate(s["rows"].tolist()):
            tgs = frame_targets(s, t, det)
            assert len(tgs) == 1 and "joints" in tgs[0] and "betas" not in tgs[0]
            pose = body["body_pose"][row] + state["noise"] * torch.linspace(-1, 1, 69, dtype=torch.float64)
            out.append([{"score": 0.9, "cell": tgs[0]["cell"], "betas": body["betas"][row].float(),
                         "global_orient": body["global_orient"][row].float(), "body_pose": pose.float(),
                         "transl": body["transl"][row].float()}])
        return [out]

    monkeypatch.setattr(det, "detect", fake_detect)
    m = evaluate_detector(det, model, DS(), frames="single", joint_regressor=reg)
    assert m["people"] == 11 and m["recall"] == 1.0
    assert m["mpjpe_mm"] < 0.01 and m["pa_mpjpe_mm"] < 0.01
    assert m["pve_mm"] is None and "joints only" in m["pve_note"]
    assert m["dataset"]["skipped"] == ["S9/Posing.55011271 (no Images folder)"]
    state["noise"] = 0.5
    m = evaluate_detector(det, model, DS(), frames="single", joint_regressor=np.load(reg))
    assert m["recall"] == 1.0 and m["mpjpe_mm"] > 5 and 0 < m["pa_mpjpe_mm"] < m["mpjpe_mm"]

    with pytest.raises(UsageError, match="pass --joint-regressor J_regressor_h36m.npy"):
        evaluate_detector(det, model, ds)
    np.save(tmp_path / "short.npy", np.load(reg)[:, :-1])
    with pytest.raises(UsageError, match=r"regressor is \[17, 299\]; Human3.6M needs \[17, 300\]"):
        evaluate_detector(det, model, ds, joint_regressor=tmp_path / "short.npy")
    with pytest.raises(UsageError, match=r"needs \[17, 300\]"):
        evaluate_detector(det, model, ds, joint_regressor=np.load(reg)[:16])
    with pytest.raises(UsageError, match="no such file"):
        evaluate_detector(det, model, ds, joint_regressor=tmp_path / "nope.npy")
    for data, test in ((root, None), (tmp_path / "unused", root)):
        with pytest.raises(UsageError, match="Human3.6M is evaluation-only"):
            train_detector(data, tmp_path / "run", TrainOptions(), model, test=test)
    assert not (tmp_path / "run").exists()


def test_eval_body_command(cli, smpl, h36m, tmp_path):
    from facet3d.plugins.mesh_recovery.body.detector import build_detector, save_detector

    model, model_path = smpl
    root, _, _ = h36m
    torch.manual_seed(0)
    ckpt = save_detector(build_detector("tiny", model), tmp_path / "d.safetensors")
    r = cli("eval", "body", str(ckpt), str(root), "--model", str(model_path), "--joint-regressor",
            str(root / "J_regressor_h36m.npy"), "--frames", "single", "--threshold", "0", "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["people"] == 11 and 0 <= m["recall"] <= 1 and m["pve_mm"] is None and "pve_note" in m
