"""`facet3d body detect`: every person's body mesh in images or the frames of a video.

Frames are letterboxed to the detector's square input (ROMP pads the shorter side), run in clips of up
to ``clip`` frames (Body Center Attention looks across a clip), decoded (`romp.decode_maps`) and posed
with the body model. People keep an id across the frames: each is matched to the nearest person of the
previous frame (translation within `TRACK_METRES`), else gets a new id. Outputs per frame:
``NAME_pK.ply`` (person K's mesh in the camera frame, metres), ``NAME_overlay.png`` (the meshes drawn
over the image by kernels.trisplat with the camera the detector assumed), and ``people.json`` for all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from facet3d.core.errors import InputError, UsageError
from facet3d.core.progress import LogFn, ProgressFn, say, tick

__all__ = ["detect_people", "frame_paths", "letterbox"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
TRACK_METRES = 0.6  # a person moves less than this between frames


def frame_paths(inputs: list[Path]) -> list[Path]:
    """Images given, and the images inside folders given (sorted by name: a video's frames)."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise UsageError(f"{p}: no images (png, jpg, bmp, webp, tif) in this folder")
            out += files
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    return out


def letterbox(img: np.ndarray, size: int) -> tuple[torch.Tensor, float, tuple[float, float]]:
    """An RGB image [H, W, 3] uint8 -> ([3, size, size] in [0, 1], scale, (pad_x, pad_y)): scaled so its
    longer side is ``size``, centred, padded with black."""
    from PIL import Image

    H, W = img.shape[:2]
    scale = size / max(H, W)
    w, h = max(1, round(W * scale)), max(1, round(H * scale))
    small = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
    canvas = np.zeros((size, size, 3), np.uint8)
    px, py = (size - w) // 2, (size - h) // 2
    canvas[py:py + h, px:px + w] = small
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255, scale, (px, py)


def _read(path: Path) -> np.ndarray:
    from facet3d.core.io.images import read_rgb

    try:
        rgb = read_rgb(path)  # [H, W, 3] float in [0, 1]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder error is an unreadable frame
        raise InputError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _track(people: list[dict], previous: list[dict], next_id: int) -> int:
    """Give each of ``people`` the id of the nearest unclaimed person of the previous frame."""
    free = {p["id"]: p["transl"] for p in previous}
    for person in sorted(people, key=lambda p: -p["score"]):
        best = min(free, key=lambda i: float((free[i] - person["transl"]).norm()), default=None)
        if best is not None and float((free[best] - person["transl"]).norm()) < TRACK_METRES:
            person["id"] = best
            del free[best]
        else:
            person["id"] = next_id
            next_id += 1
    return next_id


def _overlay(path: Path, img: np.ndarray, meshes: list[np.ndarray], faces: np.ndarray, focal: float) -> None:
    """The meshes (camera frame) drawn over the image, each person a colour, shaded by a head light."""
    from PIL import Image

    from facet3d.core.io.api import atomic_output
    from facet3d.core.structures.cameras import intrinsics_matrix
    from facet3d.kernels.trisplat import rasterize_triangles

    from facet3d.core.preview import head_light

    H, W = img.shape[:2]
    out = img.astype(np.float32) / 255
    if meshes:
        K = intrinsics_matrix(focal, focal, (W - 1) / 2, (H - 1) / 2, dtype=torch.float32)
        tri = torch.cat([torch.as_tensor(v, dtype=torch.float32)[torch.as_tensor(faces)] for v in meshes])
        shade = head_light(tri, 0.3)
        hues = torch.tensor([[0.9, 0.6, 0.3], [0.3, 0.7, 0.9], [0.6, 0.9, 0.4], [0.9, 0.4, 0.8]])
        colour = hues[torch.arange(len(meshes)).repeat_interleave(len(faces)) % len(hues)] * shade[:, None]
        r = rasterize_triangles(tri, K, colour, torch.ones(len(tri)), 1e-3, (H, W), torch.zeros(3), hard=True, near=0.1)
        a = 0.8 * r["alpha"].clamp(0, 1).numpy()[..., None]
        out = (1 - a) * out + a * (r["rgb"].clamp(0, 1).numpy() / np.maximum(r["alpha"].numpy()[..., None], 1e-6))
    with atomic_output(path) as tmp:
        Image.fromarray((np.clip(out, 0, 1) * 255).round().astype(np.uint8)).save(tmp, format="PNG")


def detect_people(inputs: list[Path], ckpt: Path, out_dir: Path, model_spec: str = "anny", threshold: float = 0.25,
                  clip: int = 8, overwrite: bool = False, progress: ProgressFn | None = None,
                  log: LogFn | None = None) -> dict:
    """Run a trained detector over images / frame folders (module docstring). Unreadable frames are
    reported and skipped (``failed``); a frame with nobody in it gives an empty list."""
    import trimesh

    from facet3d.core.io.api import atomic_output

    from .detector import load_detector
    from .models import load_body_model
    from .romp import batch_persons

    if not 0 < threshold < 1:
        raise UsageError(f"--threshold must be in (0, 1), got {threshold}")
    paths = frame_paths(inputs)
    if (out_dir / "people.json").exists() and not overwrite:
        raise UsageError(f"{out_dir} already holds people.json; pass --overwrite to replace it")
    from facet3d.core.checkpoints import read_sidecar

    read_sidecar(ckpt, "body detector")  # a missing checkpoint is refused before the model loads
    model = load_body_model(model_spec)
    det, info = load_detector(ckpt, model)
    if not 1 <= clip <= det.net.config.clip_length:
        raise UsageError(f"--clip must be in 1..{det.net.config.clip_length} for this detector, got {clip}")
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = model.faces.cpu().numpy()
    records, failed, previous, next_id = [], [], [], 0
    stems = [p.stem for p in paths]
    names = [p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}_{p.stem}" for p in paths]
    readable = []
    for p, name in zip(paths, names):
        try:
            readable.append((p, name, _read(p)))
        except InputError as exc:
            failed.append({"frame": str(p), "error": str(exc)})
            say(log, str(exc))
    for start in range(0, len(readable), clip):
        chunk = readable[start:start + clip]
        boxes = [letterbox(img, det.image_size) for _, _, img in chunk]
        frames = torch.stack([b[0] for b in boxes])[None]
        people = det.detect(frames, threshold)[0]
        for (path, name, img), (_, scale, pad), found in zip(chunk, boxes, people):
            next_id = _track(found, previous, next_id)
            previous = found
            meshes, persons = [], []
            if found:
                with torch.no_grad():
                    body = model(**{k: v.to(model.dtype) for k, v in batch_persons(found).items()})
                for k, person in enumerate(found):
                    v = body.vertices[k].double().cpu().numpy()
                    mesh_path = out_dir / f"{name}_p{person['id']}.ply"
                    with atomic_output(mesh_path) as tmp:
                        trimesh.Trimesh(v, faces, process=False).export(tmp, file_type="ply")
                    # the square input's camera, in the original image's pixels
                    meshes.append(v)
                    persons.append({"id": person["id"], "score": person["score"], "mesh": mesh_path.name,
                                    "centre_xy": [(person["centre_xy"][0] - pad[0]) / scale,
                                                  (person["centre_xy"][1] - pad[1]) / scale],
                                    **{k: person[k].double().tolist() for k in
                                       ("betas", "global_orient", "body_pose", "transl", "camera")}})
            focal = det.focal / scale
            _overlay_shifted(out_dir / f"{name}_overlay.png", img, meshes, faces, focal, scale, pad, det.image_size)
            records.append({"frame": str(path), "overlay": f"{name}_overlay.png", "people": persons})
        tick(progress, min(start + clip, len(readable)), len(readable), "detect")
    summary = {"checkpoint": str(ckpt), "model": model.name, "threshold": threshold, "clip": clip,
               "frames": len(records), "people": sum(len(r["people"]) for r in records),
               "ids": len({p["id"] for r in records for p in r["people"]}), "failed": failed, "results": records,
               "camera": {"focal_px_at_input": det.focal, "input_size": det.image_size,
                          "note": "transl is in the camera frame of each image (x right, y down, z forward, metres)"}}
    with atomic_output(out_dir / "people.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def _overlay_shifted(path: Path, img: np.ndarray, meshes, faces, focal: float, scale: float, pad, size: int) -> None:
    """`_overlay` in the original image: the square input's principal point ((size - 1) / 2) maps back
    through the letterbox to ((size - 1) / 2 - pad) / scale; shift the meshes so it is the centre."""
    H, W = img.shape[:2]
    cx = ((size - 1) / 2 - pad[0]) / scale
    cy = ((size - 1) / 2 - pad[1]) / scale
    dx, dy = cx - (W - 1) / 2, cy - (H - 1) / 2
    shifted = []
    for v in meshes:  # a pixel offset at depth z is a lateral shift of offset * z / focal
        z = v[:, 2:3]
        shifted.append(np.concatenate([v[:, :1] + dx * z / focal, v[:, 1:2] + dy * z / focal, z], 1))
    _overlay(path, img, shifted, faces, focal)
