"""Training and evaluating the body detector (`detector`) on rendered data (`people_data`).

Targets per frame: every person shown by at least `MIN_PIXELS` pixels whose centre (the projected root)
falls in the map; when two share a cell the nearer one keeps it. Losses (ROMP's, simplified):
- centre heatmap: CenterNet's penalty-reduced focal loss against Gaussians at the centres;
- at each true centre cell (the network's Body Center Attention is given the true centres, as ROMP's
  training samples the parameter map at them): the camera (L1), every predicted joint's rotation (L2
  between matrices), the shape (L1), and the main joints in 3D (L1, metres) through the body model with
  the predicted pose and the true shape, the root at the origin.

Evaluation: true people and detections are paired one to one, nearest first, within `MATCH_CELLS`
cells; recall is the matched share; MPJPE / PA-MPJPE (main joints) and PVE (all vertices) in
millimetres over the matched, root-aligned, as the field reports them. Human3.6M (`h36m`) gives joints
only: its 17 joints against those a user-given regressor takes from the predicted vertices, no PVE.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facet3d.core.errors import UsageError
from facet3d.core.progress import LogFn, ProgressFn, say, tick

__all__ = ["TrainOptions", "train_detector", "evaluate_detector", "frame_targets", "open_dataset"]

MIN_PIXELS = 20  # a person shown by fewer pixels is neither a target nor counted in recall
MATCH_CELLS = 1.5  # a detection within this many cells of a true centre finds that person
LOSS_WEIGHTS = {"centre": 1.0, "camera": 5.0, "rotation": 1.0, "betas": 1.0, "joints": 5.0}


@dataclass
class TrainOptions:
    config: str = "tiny"
    epochs: int = 10
    minutes: float | None = None  # stop after this much training time (checkpoint kept)
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    frames: str = "clip"  # "clip": whole clips; "single": each frame alone (image mode)
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UsageError("--epochs and --batch-size must be >= 1 and --lr > 0")
        if self.frames not in ("clip", "single"):
            raise UsageError(f"--frames must be clip or single, got '{self.frames}'")
        if self.minutes is not None and self.minutes <= 0:
            raise UsageError(f"--minutes must be positive, got {self.minutes}")


def frame_targets(sample: dict[str, Tensor], t: int, det) -> list[dict[str, Any]]:
    """The target people of frame ``t`` of a dataset sample: dicts with cell (row, col), flat, camera [3],
    betas, global_orient, body_pose, transl (module docstring for who counts); a sample with ``joints``
    (Human3.6M: [T, P, K, 3] metres, ``transl`` the pelvis) gives ``joints`` [K, 3] instead of the body."""
    from .romp import _cell_of, transl_to_camera

    h = w = det.net.config.map_size
    found: dict[tuple[int, int], dict] = {}
    for p in range(sample["transl"].shape[1]):
        tr = sample["transl"][t, p].double()
        if float(tr[2]) <= 0.1 or int(sample["visible"][t, p]) < MIN_PIXELS:
            continue
        cam = transl_to_camera(tr, det.focal, det.image_size)
        if "centre_px" in sample:  # real images: the root projected with their own camera (3DPW)
            x, y = (float(v) for v in sample["centre_px"][t, p])
            r, c = math.floor(y / det.image_size * h), math.floor(x / det.image_size * w)
        else:
            r, c = _cell_of(cam, (h, w))
        if not (0 <= r < h and 0 <= c < w):
            continue
        if (r, c) in found and float(found[(r, c)]["transl"][2]) < float(tr[2]):
            continue  # the nearer person keeps the cell
        tg = {"cell": (r, c), "flat": r * w + c, "camera": cam.float(), "person": p, "transl": tr.float()}
        if "joints" in sample:  # joints only (Human3.6M): no body parameters
            tg["joints"] = sample["joints"][t, p].float()
        else:
            tg.update(betas=sample["betas"][p].float(), global_orient=sample["global_orient"][t, p].float(),
                      body_pose=sample["body_pose"][t, p].float())
        found[(r, c)] = tg
    return list(found.values())


def _heatmap(targets: list[dict], h: int, w: int, sigma: float = 1.0) -> Tensor:
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    out = torch.zeros(h, w)
    for tg in targets:
        r, c = tg["cell"]
        out = torch.maximum(out, torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma ** 2)))
    return out


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of centres (>= 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target >= 1 - 1e-6
    pos_loss = -((1 - p) ** 2 * torch.log(p))[pos].sum()
    neg_loss = -((1 - target) ** 4 * p ** 2 * torch.log(1 - p))[~pos].sum()
    return (pos_loss + neg_loss) / max(1, int(pos.sum()))


def _centres_for(targets: list[dict], k: int, hw: int, g: torch.Generator) -> Tensor:
    """[max(k, len)] distinct flat cells: the targets' first, then random others (BCA's candidates)."""
    cells = [tg["flat"] for tg in targets]
    others = [int(i) for i in torch.randperm(hw, generator=g) if int(i) not in cells]
    return torch.tensor((cells + others)[:max(k, len(cells))])


def _clips(sample: dict[str, Tensor], frames: str) -> list[tuple[Tensor, list[int]]]:
    """(frames [T', 3, H, W], their indices) per network input: the clip, or each frame alone."""
    x = sample["frames"]
    if frames == "single":
        return [(x[t:t + 1], [t]) for t in range(len(x))]
    return [(x, list(range(len(x))))]


def detector_loss(det, model, inputs: list[tuple[Tensor, list[dict]]], g: torch.Generator,
                  main_joints: list[int]) -> tuple[Tensor, dict[str, float]]:
    """Loss of one batch: inputs = [(frames [T, 3, H, W], per frame its targets)] (all clips the same T)."""
    from facet3d.core.ops.rotations import axis_angle_to_matrix, rotation_6d_to_matrix

    cfg = det.net.config
    h = w = cfg.map_size
    frames = torch.stack([x for x, _ in inputs])  # [B, T, 3, H, W]
    B, T = frames.shape[:2]
    k = max([cfg.num_centres] + [len(tg) for _, tgs in inputs for tg in tgs])
    centres = torch.stack([torch.stack([_centres_for(tg, k, h * w, g) for tg in tgs]) for _, tgs in inputs])
    out = det(frames, centres=centres)
    heat = torch.stack([torch.stack([_heatmap(tg, h, w) for tg in tgs]) for _, tgs in inputs])[:, :, None]
    terms = {"centre": focal_loss(out["centre_logits"], heat)}
    rows = [(b, t, tg) for b, (_, tgs) in enumerate(inputs) for t, tgt in enumerate(tgs) for tg in tgt]
    if rows:
        params = out["params"].reshape(B, T, -1, h * w)
        pred = torch.stack([params[b, t, :, tg["flat"]] for b, t, tg in rows])  # [N, C]
        lay = det.layout
        cam = torch.stack([tg["camera"] for _, _, tg in rows])
        terms["camera"] = F.l1_loss(pred[:, lay.camera], cam)
        R = rotation_6d_to_matrix(pred[:, lay.rotations].reshape(len(rows), -1, 6))  # [N, P, 3, 3]
        pose = torch.stack([torch.cat([tg["global_orient"][None], tg["body_pose"].reshape(-1, 3)]) for _, _, tg in rows])
        R_true = axis_angle_to_matrix(pose[:, list(lay.joints)])
        terms["rotation"] = ((R - R_true) ** 2).sum((-1, -2)).mean()
        betas = torch.stack([tg["betas"] for _, _, tg in rows])
        terms["betas"] = F.l1_loss(pred[:, lay.betas], betas)
        full = torch.zeros(len(rows), lay.num_joints, 3, 3, dtype=R.dtype)
        full[:] = torch.eye(3)
        full[:, list(lay.joints)] = R
        from facet3d.core.ops.rotations import matrix_to_axis_angle

        aa = matrix_to_axis_angle(full)  # [N, J, 3]
        like = dict(dtype=model.dtype, device=model.device)
        j_pred = model(betas=betas.to(**like), global_orient=aa[:, 0].to(**like),
                       body_pose=aa[:, 1:].reshape(len(rows), -1).to(**like)).joints[:, main_joints]
        with torch.no_grad():
            j_true = model(betas=betas.to(**like), global_orient=pose[:, 0].to(**like),
                           body_pose=pose[:, 1:].reshape(len(rows), -1).to(**like)).joints[:, main_joints]
        terms["joints"] = (j_pred - j_pred[:, :1] - (j_true - j_true[:, :1])).abs().sum(-1).mean()
    loss = sum(LOSS_WEIGHTS[k] * v for k, v in terms.items())
    return loss, {k: float(v.detach()) for k, v in terms.items()}


def open_dataset(path: str | Path, model, image_size: int, clip: int = 1, split: str = "test"):
    """A `people_data` folder, a 3DPW root (its ``split``; frames letterboxed to ``image_size``, clips
    of ``clip``; needs an SMPL-format ``model``) or a Human3.6M root (`h36m`: evaluation only; ``split``
    test, test-p2 or train)."""
    from .h36m import H36mDataset, is_h36m
    from .people_data import BodyDataset
    from .pw3d import Pw3dDataset, is_3dpw

    if is_3dpw(path):
        return Pw3dDataset(path, model, split, image_size, clip)
    if is_h36m(path):
        return H36mDataset(path, split, image_size, clip)
    return BodyDataset(path)


def _batches(n: int, size: int, g: torch.Generator) -> list[list[int]]:
    order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + size] for i in range(0, n, size)]


def train_detector(data: str | Path, out_dir: str | Path, opt: TrainOptions, model, test: str | Path | None = None,
                   resume: bool = False, progress: ProgressFn | None = None, log: LogFn | None = None) -> dict:
    """Train (or resume) a detector on a `people_data` folder or 3DPW (`open_dataset`: its train split,
    ``test`` its test split); writes last/best checkpoints (safetensors +
    JSON sidecar), train_state.pt, log.json and curves.png in ``out_dir``. Returns a summary."""
    from facet3d.core.io.api import atomic_output, write_json

    from .detector import build_detector, save_detector
    from .skeleton import skeleton_of

    from .h36m import EVAL_ONLY, is_h36m

    opt.check()
    for what, path in (("", data), ("--test ", test)):
        if path is not None and is_h36m(path):
            raise UsageError(f"{what}{path}: {EVAL_ONLY}")
    torch.manual_seed(opt.seed)
    det = build_detector(opt.config, model)
    clip_len = det.net.config.clip_length if opt.frames == "clip" else 1
    train_ds = open_dataset(data, model, det.image_size, clip_len, "train")
    test_ds = open_dataset(test, model, det.image_size, clip_len, "test") if test is not None else None
    if train_ds.info["image_size"] != det.image_size:
        raise UsageError(f"{data}: images of {train_ds.info['image_size']} px; config '{opt.config}' takes "
                         f"{det.image_size} px (make the data with --image-size {det.image_size})")
    clip = train_ds.info["clip"]
    if opt.frames == "clip" and clip > det.net.config.clip_length:
        raise UsageError(f"{data}: clips of {clip} frames; config '{opt.config}' takes at most {det.net.config.clip_length}")
    main_joints = skeleton_of(model).main_joints
    optim = torch.optim.AdamW(det.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    out = Path(out_dir)
    rows: list[dict] = []
    start, best = 1, {"value": math.inf, "epoch": 0}
    state_path = out / "train_state.pt"
    if resume:
        start, best, rows = _restore(out, det, optim)
        say(log, f"resuming {out} at epoch {start}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run.json", {**asdict(opt), "data": str(data), "test": None if test is None else str(test),
                                   "model": model.name})
    g = torch.Generator().manual_seed(opt.seed)
    began = time.perf_counter()
    stopped = False
    for epoch in range(start, opt.epochs + 1):
        t0 = time.perf_counter()
        det.train()
        g.manual_seed(opt.seed * 100_003 + epoch)
        sums: dict[str, float] = {}
        steps = 0
        batches = _batches(len(train_ds), opt.batch_size, g)
        for bi, idx in enumerate(batches):
            inputs = []
            for i in idx:
                s = train_ds[i]
                for x, ts in _clips(s, opt.frames):
                    inputs.append((x, [frame_targets(s, t, det) for t in ts]))
            loss, terms = detector_loss(det, model, inputs, g, main_joints)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(det.parameters(), 5.0)
            optim.step()
            steps += 1
            for k, v in {"loss": float(loss.detach()), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v
            tick(progress, bi + 1, len(batches), f"epoch {epoch}/{opt.epochs}")
            if opt.minutes is not None and time.perf_counter() - began > 60 * opt.minutes:
                stopped = True
                break
        rec = {"epoch": epoch, **{f"train_{k}": v / max(1, steps) for k, v in sums.items()},
               "seconds": round(time.perf_counter() - t0, 2)}
        if test_ds is not None:
            m = evaluate_detector(det, model, test_ds, frames=opt.frames)
            rec.update({f"test_{k}": v for k, v in m.items() if isinstance(v, (int, float))})
        rows.append(rec)
        # the best epoch: lowest test MPJPE (a model that finds nobody has none: infinite), else train loss
        value = rec.get("test_mpjpe_mm", rec["train_loss"])
        value = math.inf if math.isnan(value) else value
        if best["epoch"] == 0 or value < best["value"]:
            best = {"value": float(value), "epoch": epoch}
            save_detector(det, out / "best_model.safetensors", {"epoch": epoch, **rec})
        save_detector(det, out / "last_model.safetensors", {"epoch": epoch, **rec})
        with atomic_output(state_path) as tmp:
            torch.save({"optimizer": optim.state_dict(), "epoch": epoch, "best_value": best["value"],
                        "best_epoch": best["epoch"], "torch_rng": torch.get_rng_state()}, tmp)
        write_json(out / "log.json", rows)
        _plot(rows, out / "curves.png")
        say(log, f"epoch {epoch}/{opt.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in rec.items()
                                                           if k != "epoch" and isinstance(v, float)))
        if stopped:
            say(log, f"stopped after {opt.minutes} minute(s) of training (--minutes)")
            break
    return {"out_dir": str(out), "epochs_run": len(rows), "best_epoch": best["epoch"], "last": rows[-1] if rows else None,
            "seconds": round(time.perf_counter() - began, 1), "best_model": str(out / "best_model.safetensors"),
            "last_model": str(out / "last_model.safetensors")}


def _restore(out: Path, det, optim) -> tuple[int, dict, list[dict]]:
    from facet3d.core.checkpoints import load_run_state

    weights, state, rows = load_run_state(out)
    det.net.load_state_dict(weights)
    optim.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]) + 1, {"value": float(state["best_value"]), "epoch": int(state["best_epoch"])}, rows


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facet3d.core.io.api import atomic_output

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for k in ("train_loss", "train_centre", "train_joints"):
        a.plot(ep, [r.get(k, float("nan")) for r in rows], marker="o", label=k)
    a.set_xlabel("epoch")
    a.set_yscale("log")
    a.legend()
    for k in ("test_mpjpe_mm", "test_pa_mpjpe_mm", "test_pve_mm"):
        if any(k in r for r in rows):
            b.plot([r["epoch"] for r in rows if k in r], [r[k] for r in rows if k in r], marker="o", label=k)
    b.set_xlabel("epoch")
    b.set_ylabel("mm")
    b.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _match(targets: list[dict], dets: list[dict]) -> list[tuple[dict, dict]]:
    """One-to-one pairs (target, detection) within `MATCH_CELLS` of each other, nearest pairs first."""
    pairs = sorted((math.dist(d["cell"], tg["cell"]), -d["score"], i, k)
                   for i, tg in enumerate(targets) for k, d in enumerate(dets)
                   if math.dist(d["cell"], tg["cell"]) <= MATCH_CELLS)
    used_t, used_d, out = set(), set(), []
    for _, _, i, k in pairs:
        if i not in used_t and k not in used_d:
            used_t.add(i)
            used_d.add(k)
            out.append((targets[i], dets[k]))
    return out


@torch.no_grad()
def evaluate_detector(det, model, dataset, frames: str = "clip", threshold: float = 0.25,
                      progress: ProgressFn | None = None, joint_regressor=None) -> dict[str, Any]:
    """Recall, MPJPE, PA-MPJPE and PVE (mm) of ``det`` on a `people_data` dataset (module docstring);
    ``frames``: "clip" feeds whole clips, "single" each frame alone (image mode). Targets with ``joints``
    only (Human3.6M) are compared on the joints that ``joint_regressor`` (a .npy path or a [K, V] array,
    required for them) gives from the predicted vertices: MPJPE (aligned at joint 0, the pelvis) and
    PA-MPJPE, no PVE."""
    from .metrics import pa_mpjpe
    from .romp import batch_persons
    from .skeleton import skeleton_of

    main = skeleton_of(model).main_joints
    like = dict(dtype=model.dtype, device=model.device)
    found = total = 0
    err_j, err_pa, err_v = [], [], []
    h = det.net.config.map_size
    info = getattr(dataset, "info", {}) or {}
    joints_only = bool(info.get("joints_only"))
    reg = None

    def regressor(k: int) -> Tensor:
        from .h36m import load_joint_regressor

        nonlocal reg
        if reg is None:
            reg = load_joint_regressor(joint_regressor, int(model().vertices.shape[1]), k).to(model.device)
        return reg

    if joints_only:
        regressor(int(info.get("num_joints", 17)))  # refuse a missing or misfit regressor before any work
    for i in range(len(dataset)):
        s = dataset[i]
        for x, ts in _clips(s, frames):
            people = det.detect(x[None], threshold)[0]
            for t, dets in zip(ts, people):
                targets = frame_targets(s, t, det)
                total += len(targets)
                for tg, d in _match(targets, dets):
                    found += 1
                    pred = model(**{k: v.to(**like) for k, v in batch_persons([d]).items() if k != "transl"})
                    if "joints" in tg:  # Human3.6M: the regressed joints against the given ones, no PVE
                        joints_only = True
                        jt = tg["joints"].double().to(model.device)
                        jp = regressor(len(jt)) @ pred.vertices[0].double()
                        err_j.append(float((jp - jp[0] - (jt - jt[0])).norm(dim=-1).mean()) * 1000)
                        err_pa.append(pa_mpjpe(jp.cpu().numpy(), jt.cpu().numpy()))
                        continue
                    true = model(betas=tg["betas"][None].to(**like), global_orient=tg["global_orient"][None].to(**like),
                                 body_pose=tg["body_pose"][None].to(**like))
                    jp, jt = pred.joints[0, main].double(), true.joints[0, main].double()
                    err_j.append(float((jp - jp[0] - (jt - jt[0])).norm(dim=-1).mean()) * 1000)
                    err_pa.append(pa_mpjpe(jp.cpu().numpy(), jt.cpu().numpy()))
                    vp, vt = pred.vertices[0].double(), true.vertices[0].double()
                    err_v.append(float((vp - jp[0] - (vt - jt[0])).norm(dim=-1).mean()) * 1000)
        tick(progress, i + 1, len(dataset), "eval")
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    out = {"people": total, "found": found, "recall": found / total if total else float("nan"),
           "mpjpe_mm": mean(err_j), "pa_mpjpe_mm": mean(err_pa), "pve_mm": mean(err_v), "frames": frames,
           "match_cells": MATCH_CELLS, "threshold": threshold, "map_size": h}
    if joints_only:
        out.update(pve_mm=None, pve_note="no PVE: Human3.6M gives 3-D joints only (no public body-model fits)",
                   joints="h36m17 (through the joint regressor), MPJPE aligned at the pelvis",
                   dataset={k: info[k] for k in ("format", "split", "sequences", "skipped", "subjects_missing")
                            if k in info})
    return out
