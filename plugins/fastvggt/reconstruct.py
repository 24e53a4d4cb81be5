"""`reconstruct`: photos -> VGGT (optionally FastVGGT-merged) -> cameras, point cloud and a COLMAP model.

Writes into ``out`` (created; removed again if nothing was written):

* ``images/NAME.png``: the preprocessed images the model saw (the cameras describe these pixels);
* ``points.ply``: coloured points (depth unprojected with the predicted cameras, or the point head),
  filtered by a confidence percentile;  ``scene.glb``: the points plus one line frustum per camera;
* ``cameras.json``: core camera JSON;  ``sparse/0/{cameras,images,points3D}.txt``: a COLMAP text model,
  so ``facet3d fit OUT --format colmap`` and ``facet3d mesh`` can run on ``out`` directly;
* ``predictions.npz`` (``save_raw``): exactly upstream's keys and shapes, batch dimension kept:
  images [1, S, 3, H, W], pose_enc [1, S, 9], depth [1, S, H, W, 1], depth_conf, world_points
  [1, S, H, W, 3], world_points_conf [1, S, H, W].

Library code: progress through ``progress(done, total, description)``, messages through ``log``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from facet3d.core.errors import UsageError
from facet3d.core.progress import LogFn, ProgressFn, say, tick
from facet3d.core.resources import human_bytes, require_memory

RAW_KEYS = ("images", "pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")
_STAGES = ["images", "weights", "aggregator", "camera", "depth", "points", "export"]


def autocast_dtype(device: str, dtype: str = "auto") -> torch.dtype | None:
    """The aggregator's autocast dtype: auto = bf16 on CUDA when supported, else fp16; float32 on CPU."""
    if dtype == "fp32" or (dtype == "auto" and not device.startswith("cuda")):
        return None
    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype not in table:
        raise UsageError(f"--dtype {dtype!r}: expected auto, fp32, bf16 or fp16")
    return table[dtype]


def estimate_memory(frames: int, height: int, width: int, params: int, embed_dim: int = 1024,
                    patch: int = 14, device: str = "cpu") -> int:
    """Rough peak bytes in host memory (weights + activations on a CPU run; weights only for CUDA)."""
    weights = 4 * params
    if device.startswith("cuda"):
        return int(1.1 * weights)
    N = frames * ((height // patch) * (width // patch) + 5)
    acts = N * embed_dim * 4 * 16 + 4 * N * 2 * embed_dim * 4  # block temporaries + the 4 kept layers
    heads = min(frames, 8) * 256 * height * width * 4 * 3 + frames * height * width * 4 * 12
    return int(weights + acts + heads)


def _unique_png_names(names: Sequence[str]) -> list[str]:
    out, seen = [], set()
    for i, n in enumerate(names):
        stem = Path(n).stem or f"{i:04d}"
        cand = f"{stem}.png"
        if cand in seen:
            cand = f"{i:04d}_{stem}.png"
        seen.add(cand)
        out.append(cand)
    return out


def frusta_segments(cameras, scale: float) -> np.ndarray:
    """``[8 * S, 2, 3]`` line segments: centre to the 4 image corners at depth ``scale``, and the rectangle."""
    K, R, t = (a.double().cpu() for a in (cameras.K, cameras.R, cameras.t))
    H, W = cameras.image_size[0].tolist()
    corners = torch.tensor([[-0.5, -0.5, 1.0], [W - 0.5, -0.5, 1.0], [W - 0.5, H - 0.5, 1.0], [-0.5, H - 0.5, 1.0]],
                           dtype=torch.float64)
    segs = []
    for i in range(len(cameras)):
        rays = torch.linalg.solve(K[i], corners.T).T * scale  # camera coordinates at depth `scale`
        world = (rays - t[i]) @ R[i]
        c = cameras.centers()[i].double().cpu()
        for j in range(4):
            segs.append([c.numpy(), world[j].numpy()])
            segs.append([world[j].numpy(), world[(j + 1) % 4].numpy()])
    return np.asarray(segs, dtype=np.float64).reshape(-1, 2, 3)


def write_scene_glb(path: Path, xyz: np.ndarray, rgb: np.ndarray, cameras) -> None:
    """Points (vertex colours) and camera frusta (lines) as one binary glTF, written atomically."""
    import trimesh

    from facet3d.core.io.api import atomic_output
    from facet3d.core.io.arrays import to_uint8_colors

    geoms = []
    if len(xyz):
        geoms.append(trimesh.PointCloud(xyz.astype(np.float64), colors=to_uint8_colors(rgb, "glb")))
    centres = cameras.centers().double().cpu().numpy()
    extent = np.ptp(np.concatenate([xyz, centres]) if len(xyz) else centres, axis=0).max() if len(centres) else 1.0
    scale = 0.05 * float(extent) if extent > 0 else 0.1
    geoms.append(trimesh.load_path(frusta_segments(cameras, scale)))
    data = trimesh.Scene(geoms).export(file_type="glb")
    with atomic_output(path) as tmp:
        tmp.write_bytes(data if isinstance(data, bytes) else bytes(data))


def _checkpoint_config(ckpt: str | Path, config: Any = None) -> tuple[Path, dict[str, Any]]:
    """(path, full config) of a VGGT checkpoint: ``config``, else the file's own, else vggt-1b;
    `CheckpointError` when the file does not exist."""
    from facet3d.plugins.fastvggt.checkpoint import _metadata_config
    from facet3d.plugins.fastvggt.model import resolve_config

    ck = Path(ckpt)
    if not ck.exists():
        from facet3d.core.errors import CheckpointError

        raise CheckpointError(f"{ck}: no such file (the VGGT weights: model.safetensors or model.pt of "
                              "facebook/VGGT-1B, or a file saved by facet3d)")
    return ck, resolve_config(config if config is not None else ((_metadata_config(ck) if ck.is_file() else None) or "vggt-1b"))


def load_reconstruction_model(ckpt: str | Path, config: Any = None, device: str = "cpu") -> Any:
    """The VGGT `reconstruct` runs (no track head), in eval mode on ``device``: load it once and pass it as
    ``reconstruct(..., model=)`` to reconstruct many photo sets. Refuses (`ResourceError`) weights that
    cannot fit in memory before reading them."""
    from facet3d.plugins.fastvggt.checkpoint import load_model
    from facet3d.plugins.fastvggt.model import parameter_count

    ck, cfg = _checkpoint_config(ckpt, config)
    params = parameter_count(cfg)
    require_memory(estimate_memory(0, 0, 0, params, cfg["embed_dim"], cfg["patch_size"], device),
                   f"loading a {params / 1e9:.2f} B-parameter VGGT")
    return load_model(ck, cfg, device=device, enable_track=False)


def reconstruct(images: Sequence[str | Path], ckpt: str | Path | None, out: str | Path, *, config: Any = None,
                merge: float = 0.9, merge_from_block: int = 0, protected: float = 0.1, proportional: bool = False,
                preprocess: str = "crop", conf_percentile: float = 50.0, points_from: str = "depth",
                device: str = "cpu", dtype: str = "auto", save_raw: bool = False, frames_chunk_size: int = 8,
                progress: ProgressFn | None = None, log: LogFn | None = None, model: Any = None) -> dict[str, Any]:
    """Reconstruct ``images`` (at least 2, one size after preprocessing) into ``out``; -> a summary dict.

    merge: FastVGGT merge ratio (0 = plain VGGT); merge_from_block: first merging global block;
    protected: unmerged fraction; proportional: ToMe proportional attention.
    conf_percentile: drop points below this percentile of confidence (0 keeps all).
    points_from: "depth" (unproject depth with the predicted cameras, upstream's advice) or "head".
    model: a VGGT already loaded on ``device`` (`load_reconstruction_model`); ``ckpt`` and ``config`` are
    then not used, and the memory check leaves out the weights (they are in memory already).
    """
    from facet3d.core.io.api import atomic_output, write
    from facet3d.core.io.colmap import write_colmap_model
    from facet3d.core.io.outputs import output_folder
    from facet3d.core.io.record import Geometry
    from facet3d.plugins.fastvggt.decode import point_cloud, pose_encoding_to_cameras, unproject_depth
    from facet3d.plugins.fastvggt.merging import merger
    from facet3d.plugins.fastvggt.model import parameter_count
    from facet3d.plugins.fastvggt.preprocess import load_images

    paths = [Path(p) for p in images]
    if len(paths) < 2:
        raise UsageError(f"reconstruct needs at least 2 images (got {len(paths)}): VGGT estimates cameras "
                         "relative to each other")
    if preprocess not in ("crop", "pad"):
        raise UsageError(f"--preprocess {preprocess!r}: expected crop or pad")
    if points_from not in ("depth", "head"):
        raise UsageError(f"points_from {points_from!r}: expected depth or head")
    if not 0 <= conf_percentile <= 100:
        raise UsageError(f"--conf-percentile {conf_percentile}: expected a value in [0, 100]")
    try:
        mg = merger(merge, merge_from_block, protected, proportional)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ac = autocast_dtype(device, dtype)
    total = len(_STAGES)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    def stage(name: str) -> None:
        times[name] = time.perf_counter()
        tick(progress, _STAGES.index(name), total, name)

    # everything that can be refused is checked before the weights load: images, checkpoint, memory
    stage("images")
    prep = load_images(paths, preprocess)
    S, _, H, W = prep.images.shape
    if model is None:
        ck, cfg = _checkpoint_config(ckpt, config)
        params = parameter_count(cfg)
    else:
        cfg, params = model.config, sum(p.numel() for p in model.parameters())
    need = estimate_memory(S, H, W, params if model is None else 0, cfg["embed_dim"], cfg["patch_size"], device)
    require_memory(need, f"reconstructing {S} images at {W}x{H} with a {params / 1e9:.2f} B-parameter VGGT")
    stage("weights")
    if model is None:
        from facet3d.plugins.fastvggt.checkpoint import load_model

        model = load_model(ck, cfg, device=device, enable_track=False)
    say(log, f"{S} images at {W}x{H}; estimated host memory {human_bytes(need)}")
    x = prep.images[None].to(device)

    def on_stage(name: str) -> None:
        if name in _STAGES:
            stage(name)

    with torch.inference_mode():
        pred = model(x, merging=mg, autocast_dtype=ac, frames_chunk_size=frames_chunk_size, progress=on_stage)
    stats = list(model.aggregator.last_merge_stats)
    del model
    stage("export")
    names = _unique_png_names(prep.names)
    cams = pose_encoding_to_cameras(pred["pose_enc"][0], (H, W), names)
    if points_from == "depth":
        pts = unproject_depth(pred["depth"][0, ..., 0], cams)
        conf = pred["depth_conf"][0]
    else:
        pts, conf = pred["world_points"][0].float().cpu(), pred["world_points_conf"][0]
    xyz, rgb, _frame = point_cloud(pts, conf, prep.images, conf_percentile)
    out = Path(out)
    written = []
    with output_folder(out) as tree:
        from PIL import Image

        img_dir = out / "images"
        for n, t in zip(names, prep.images):
            f = tree.prepare(img_dir / n)
            arr = (t.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            with atomic_output(f) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
        written.append(str(img_dir))
        write(out / "points.ply", Geometry(xyz, colors=rgb))
        write_scene_glb(out / "scene.glb", xyz, rgb, cams)
        with atomic_output(out / "cameras.json") as tmp:
            cams.save_json(tmp)
        sparse = out / "sparse" / "0"
        tree.prepare(sparse / "cameras.txt")
        write_colmap_model(sparse, cams, names, xyz, rgb)
        written += [str(out / n) for n in ("points.ply", "scene.glb", "cameras.json")] + [str(sparse)]
        if save_raw:
            raw = {k: pred[k].detach().float().cpu().numpy() for k in RAW_KEYS}
            with atomic_output(out / "predictions.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **raw)
            written.append(str(out / "predictions.npz"))
    tick(progress, total, total, "done")
    order = [s for s in _STAGES if s in times]
    stamps = [times[s] for s in order] + [time.perf_counter()]
    summary: dict[str, Any] = {
        "images": len(paths), "image_size": [int(W), int(H)], "device": device,
        "dtype": "fp32" if ac is None else str(ac).removeprefix("torch."), "preprocess": preprocess,
        "merge": {"ratio": merge, "first_block": merge_from_block, "protected": protected, "proportional": proportional}
        if mg is not None else None,
        "points": int(len(xyz)), "conf_percentile": conf_percentile, "points_from": points_from,
        "seconds": {s: round(stamps[i + 1] - stamps[i], 3) for i, s in enumerate(order)},
        "total_seconds": round(time.perf_counter() - t_all, 3), "out": str(out), "written": written,
    }
    if stats:
        tokens, kept = stats[-1]["tokens"], stats[-1]["merged_tokens"]
        summary["tokens"] = {"per_frame": tokens // S, "kept_fraction": round(kept / tokens, 4),
                             "merged_blocks": len(stats)}
    return summary
