"""The body detector around the network: rendered training data (camera convention, ground truth), the
targets and losses, evaluation (checked with maps that encode the truth), checkpoints, training that
learns, and the commands (make-data, train body, eval body, body detect) with their bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from facet3d.core.errors import CheckpointError

pytest.importorskip("anny")


@pytest.fixture(scope="module")
def anny():
    from facet3d.plugins.mesh_recovery.body.models import load_body_model

    return load_body_model("anny")


@pytest.fixture(scope="module")
def dataset(anny, tmp_path_factory):
    from facet3d.plugins.mesh_recovery.body.people_data import DataOptions, write_dataset

    root = tmp_path_factory.mktemp("people")
    write_dataset(root, anny, 3, DataOptions(image_size=64, clip=2, max_people=3, max_depth=5.0), seed=4)
    return root


def test_model_frame_turns_to_face_the_camera(anny):
    from facet3d.plugins.mesh_recovery.body.people_data import camera_from_model

    A = camera_from_model(anny)
    assert torch.allclose(A @ torch.tensor(anny.up, dtype=torch.float64), torch.tensor([0.0, -1, 0], dtype=torch.float64))
    assert torch.allclose(A @ torch.tensor(anny.front, dtype=torch.float64), torch.tensor([0.0, 0, -1], dtype=torch.float64))
    assert torch.allclose(A @ A.T, torch.eye(3, dtype=torch.float64)) and float(torch.det(A)) > 0


def test_rendered_person_sits_where_the_camera_puts_it(anny):
    """One person: the drawn pixels surround the pinhole projection of the root, the head is above the
    feet in the image (y down), and the pixel count is what the ground truth says."""
    from facet3d.plugins.mesh_recovery.body.people_data import DataOptions, _face_palette, focal_for, make_sample
    from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of

    opt = DataOptions(image_size=128, clip=1, max_people=1, min_depth=3.0, max_depth=3.5)
    s = make_sample(anny, skeleton_of(anny), _face_palette(anny), torch.Generator().manual_seed(2), opt, [])
    # the same sample over a flat black background tells the body's pixels apart
    tr = s["transl"][0, 0]
    f = focal_for(128)
    u, v = f * tr[0] / tr[2] + 63.5, f * tr[1] / tr[2] + 63.5
    with torch.no_grad():
        out = anny(betas=torch.as_tensor(s["betas"]).float(), global_orient=torch.as_tensor(s["global_orient"][0]).float(),
                   body_pose=torch.as_tensor(s["body_pose"][0]).float(), transl=torch.as_tensor(s["transl"][0]).float())
    from facet3d.plugins.mesh_recovery.body.people_data import render_people

    img, pixels = render_people(out.vertices, anny.faces, torch.full((1, len(anny.faces), 3), 0.8), torch.zeros(3, 128, 128), f)
    mask = img.sum(0) > 0.05
    rows, cols = np.nonzero(mask.numpy())
    assert int(pixels[0]) == int(s["visible"][0, 0]) == len(rows) > 200
    assert cols.min() <= u <= cols.max() and rows.min() <= v <= rows.max()
    # the body is upright: ~1.6 m tall at 3-3.5 m is ~40-60 px
    assert 30 < rows.max() - rows.min() < 80
    head = out.joints[0, anny.joint_names.index("head")]
    foot = out.joints[0, anny.joint_names.index("foot.L")]
    assert float(head[1]) < float(foot[1])  # y down: the head above the feet


def test_targets_keep_visible_people_inside_the_map(anny, dataset):
    from facet3d.plugins.mesh_recovery.body.detector import build_detector
    from facet3d.plugins.mesh_recovery.body.net_train import MIN_PIXELS, frame_targets
    from facet3d.plugins.mesh_recovery.body.people_data import BodyDataset
    from facet3d.plugins.mesh_recovery.body.romp import camera_to_transl

    det = build_detector("tiny", anny)
    ds = BodyDataset(dataset)
    s = ds[0]
    s["visible"][0, 0] = MIN_PIXELS - 1  # hidden
    tg = frame_targets(s, 0, det)
    assert 0 not in [t["person"] for t in tg]
    for t in tg:  # the camera encodes the translation exactly
        assert torch.allclose(camera_to_transl(t["camera"].double(), det.focal, det.image_size), t["transl"].double(), atol=1e-5)
        assert len({x["cell"] for x in tg}) == len(tg)


def test_focal_loss_closed_form():
    from facet3d.plugins.mesh_recovery.body.net_train import focal_loss

    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5 at the centre, 0.75 next to it
    target = torch.tensor([[1.0, 0.5]])
    expect = -(0.5 ** 2) * math.log(0.5) - (0.5 ** 4) * (0.75 ** 2) * math.log(0.25)
    assert float(focal_loss(logits, target)) == pytest.approx(expect, rel=1e-4)


def _truth_maps(det, sample, frames):
    """A detector output holding the encoded truth (logits +-20 at / off the centres)."""
    from facet3d.plugins.mesh_recovery.body.net_train import frame_targets
    from facet3d.plugins.mesh_recovery.body.romp import encode_maps

    h = det.net.config.map_size
    cl, pm = [], []
    for t in frames:
        people = [{"camera": tg["camera"], "betas": tg["betas"], "global_orient": tg["global_orient"],
                   "body_pose": tg["body_pose"], "cell": tg["cell"]} for tg in frame_targets(sample, t, det)]
        c, p = encode_maps(people, det.layout, h, det.image_size, det.focal)
        cl.append(torch.where(c >= 1 - 1e-6, 20.0, -20.0))
        p[0] = torch.log(p[0].clamp_min(1e-9)) + 1.0  # the raw scale the detector's activation undoes
        pm.append(p)
    return {"centre_logits": torch.stack(cl)[None], "params": torch.stack(pm)[None]}


def test_evaluation_of_the_truth_is_perfect_and_of_noise_is_not(anny, dataset, monkeypatch):
    """Maps encoding the ground truth -> recall 1 and zero errors (decode, pose, match and metrics agree);
    the same maps with the rotations perturbed -> errors of the size of the perturbation."""
    from facet3d.plugins.mesh_recovery.body.detector import build_detector
    from facet3d.plugins.mesh_recovery.body.net_train import evaluate_detector
    from facet3d.plugins.mesh_recovery.body.people_data import BodyDataset

    det = build_detector("tiny", anny)
    ds = BodyDataset(dataset)
    state = {}

    def fake(frames, centres=None):
        out = _truth_maps(det, state["sample"], range(frames.shape[1]))
        if state.get("noise"):
            g = torch.Generator().manual_seed(0)
            out["params"][:, :, det.layout.rotations] += 0.3 * torch.randn(out["params"][:, :, det.layout.rotations].shape, generator=g)
        return {**out, "params": det.activate(out["params"])}

    class DS:
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            state["sample"] = ds[i]
            return state["sample"]

    monkeypatch.setattr(det, "forward", fake)
    m = evaluate_detector(det, anny, DS())
    assert m["people"] >= 3 and m["recall"] == 1.0
    assert m["mpjpe_mm"] < 0.05 and m["pa_mpjpe_mm"] < 0.05 and m["pve_mm"] < 0.05
    state["noise"] = True
    m = evaluate_detector(det, anny, DS())
    assert m["recall"] == 1.0 and 20 < m["mpjpe_mm"] < 400 and m["pa_mpjpe_mm"] < m["mpjpe_mm"]


def test_checkpoint_round_trip_and_refusals(anny, tmp_path):
    from facet3d.plugins.mesh_recovery.body.detector import build_detector, load_detector, save_detector

    torch.manual_seed(0)
    det = build_detector("tiny", anny)
    p = save_detector(det, tmp_path / "d.safetensors", {"epoch": 1})
    back, info = load_detector(p, anny)
    x = torch.rand(1, 2, 3, 128, 128)
    det.eval(), back.eval()
    with torch.no_grad():
        assert torch.equal(det(x)["params"], back(x)["params"])
    assert info["config_name"] == "tiny"
    side = json.loads((tmp_path / "d.json").read_text())
    side["config"]["embed_dim"] = 32  # another architecture under the same tensors
    (tmp_path / "d.json").write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="not a checkpoint of body detector"):
        load_detector(p, anny)
    side["model"] = "smpl"
    (tmp_path / "d.json").write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="body model 'smpl'"):
        load_detector(p, anny)
    with pytest.raises(CheckpointError, match="no such"):
        load_detector(tmp_path / "missing.safetensors", anny)


def test_training_steps_lower_the_loss(anny, dataset):
    """The losses fall on a fixed batch within a few steps (the gradients reach every term)."""
    from facet3d.plugins.mesh_recovery.body.coordformer import CONFIGS
    from facet3d.plugins.mesh_recovery.body.detector import BodyDetector
    from facet3d.plugins.mesh_recovery.body.coordformer import build_network
    from facet3d.plugins.mesh_recovery.body.net_train import detector_loss, frame_targets
    from facet3d.plugins.mesh_recovery.body.people_data import BodyDataset
    from facet3d.plugins.mesh_recovery.body.romp import ParamLayout
    from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of
    import dataclasses

    torch.manual_seed(0)
    layout = ParamLayout.from_model(anny)
    cfg = dataclasses.replace(CONFIGS["tiny"], image_size=64, map_size=8)
    det = BodyDetector(build_network(cfg, layout.channels), layout, "tiny64", anny.name)
    ds = BodyDataset(dataset)
    inputs = []
    for i in range(2):
        s = ds[i]
        inputs.append((s["frames"], [frame_targets(s, t, det) for t in range(2)]))
    main = skeleton_of(anny).main_joints
    optim = torch.optim.Adam(det.parameters(), lr=2e-3)
    first = None
    for step in range(12):
        loss, terms = detector_loss(det, anny, inputs, torch.Generator().manual_seed(0), main)
        first = first or terms
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert set(terms) == {"centre", "camera", "rotation", "betas", "joints"}
    assert terms["centre"] < 0.7 * first["centre"] and terms["rotation"] < first["rotation"]
    assert terms["camera"] < first["camera"]


@pytest.mark.slow
def test_commands_make_train_detect(cli, anny, tmp_path):
    """The commands end to end on a tiny run (each subprocess loads the model: few of them), and their
    bad inputs: one line, non-zero; `eval body` and an empty detection in-process."""
    from PIL import Image

    from facet3d.plugins.mesh_recovery.body.net_train import TrainOptions, train_detector
    from facet3d.plugins.mesh_recovery.body.people_data import BodyDataset

    data = tmp_path / "data"
    r = cli("body", "make-data", "--out", str(data), "--count", "2", "--clip", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["count"] == 2 and len(BodyDataset(data)) == 2
    r = cli("body", "make-data", "--out", str(data), "--count", "2")
    assert r.returncode == 2 and "--overwrite" in r.stderr
    run = tmp_path / "run"
    r = cli("train", "body", str(data), "--test", str(data), "--epochs", "1", "--batch-size", "2", "--out", str(run), "--json")
    assert r.returncode == 0, r.stderr
    for name in ("best_model.safetensors", "best_model.json", "last_model.safetensors", "log.json", "curves.png",
                 "train_state.pt", "index.html"):
        assert (run / name).is_file(), name
    assert 'src="curves.png"' in (run / "index.html").read_text()
    train_detector(data, run, TrainOptions(epochs=2, batch_size=2), anny, resume=True)  # resumes at epoch 2
    assert [row["epoch"] for row in json.loads((run / "log.json").read_text())] == [1, 2]
    ckpt = run / "best_model.safetensors"
    frames = tmp_path / "frames"
    frames.mkdir()
    with np.load(data / "sample_000000.npz") as z:
        for i, f in enumerate(z["frames"]):
            Image.fromarray(f).resize((160, 120)).save(frames / f"f{i}.png")
    (frames / "f9.png").write_bytes(b"not a png")
    out = tmp_path / "people"
    r = cli("body", "detect", str(frames), "--ckpt", str(ckpt), "--out", str(out), "--threshold", "0.01", "--json")
    assert r.returncode == 1 and "f9.png" in r.stderr  # the bad frame is reported, the others done
    res = json.loads(r.stdout)
    assert res["frames"] == 2 and len(res["failed"]) == 1
    first = res["results"][0]
    assert (out / first["overlay"]).is_file()
    assert first["people"], "threshold 0.01 finds someone"
    for p in first["people"]:
        assert (out / p["mesh"]).is_file() and len(p["transl"]) == 3
    r = cli("body", "detect", str(frames), "--ckpt", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    from facet3d.plugins.mesh_recovery.body.detect import detect_people
    from facet3d.plugins.mesh_recovery.body.detector import load_detector
    from facet3d.plugins.mesh_recovery.body.net_train import evaluate_detector

    m = evaluate_detector(load_detector(ckpt, anny)[0], anny, BodyDataset(data), threshold=0.01)
    assert m["people"] >= 1 and 0 <= m["recall"] <= 1
    (frames / "f9.png").unlink()
    res = detect_people([frames], ckpt, tmp_path / "none", threshold=0.999)
    assert res["people"] == 0 and res["frames"] == 2 and not res["failed"]
    assert json.loads((tmp_path / "none" / "people.json").read_text())["results"][0]["people"] == []
