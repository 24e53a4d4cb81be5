"""Training data the project makes itself: people rendered into images and short clips, ground truth beside.

Each sample is a clip of ``T`` frames (``T = 1``: an image) from a still pinhole camera (ROMP's: a 60 degree
field of view, principal point in the middle; camera frame x right, y down, z forward). One to
``max_people`` bodies of the default model, random plausible shapes and poses (`scans.random_body`),
stand 2.5-8 m away, upright and turned at random, their roots inside the image; over the clip each walks
(a constant velocity up to 0.6 m/s at 10 frames/s), turns and moves its limbs (the pose is blended from one
random pose to another). Each person's skin, top, trousers and shoes get random colours, shaded by a head
light; the background is a random smooth texture or a random crop of the user's images. People hide each
other and leave the image as the rasterizer's depth test and the frame say; the ground truth keeps every
person, with the number of pixels that show them (``visible``; 0: hidden or out of the image).

A dataset folder holds ``sample_000000.npz`` ... (``frames`` uint8 [T, H, W, 3]; ``betas`` [P, B],
``global_orient`` [T, P, 3], ``body_pose`` [T, P, 3 J'], ``transl`` [T, P, 3], ``visible`` [T, P]) and
``dataset.json`` (model, image size, focal, clip, count, seed).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import InputError, UsageError
from facet3d.core.progress import ProgressFn

__all__ = ["DataOptions", "camera_from_model", "make_clip", "render_people", "write_dataset", "BodyDataset",
           "focal_for"]

FPS = 10.0  # frames per second of the rendered clips
PART_GROUPS = {"shoes": ("foot", "toe"), "trousers": ("pelvis", "upperleg", "lowerleg"),
               "skin": ("head", "neck", "eye", "wrist", "finger", "metacarpal", "lowerarm02")}


@dataclass
class DataOptions:
    image_size: int = 128
    clip: int = 1  # frames per sample
    max_people: int = 3
    min_depth: float = 2.5  # metres
    max_depth: float = 8.0
    backgrounds: str | None = None  # a folder of images; None: random textures

    def check(self) -> None:
        if self.image_size < 32 or self.image_size % 32:
            raise UsageError(f"--image-size must be a multiple of 32 (>= 32), got {self.image_size}")
        if not 1 <= self.clip <= 64:
            raise UsageError(f"--clip must be in 1..64, got {self.clip}")
        if self.max_people < 1:
            raise UsageError(f"--max-people must be at least 1, got {self.max_people}")


def focal_for(image_size: int) -> float:
    """ROMP's focal length (443.4 px at 512 px, a 60 degree field of view) at ``image_size`` pixels."""
    from .romp import ROMP_FOCAL, ROMP_IMAGE_SIZE

    return ROMP_FOCAL * image_size / ROMP_IMAGE_SIZE


def camera_from_model(model) -> Tensor:
    """[3, 3] rotation taking the model's frame to the camera's: up -> -y, front -> -z (facing the camera)."""
    up = torch.tensor(model.up, dtype=torch.float64)
    front = torch.tensor(model.front, dtype=torch.float64)
    src = torch.stack([up, front, torch.linalg.cross(up, front)])
    dst = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    dst[2] = torch.linalg.cross(dst[0], dst[1])
    return dst.T @ src  # rows of src -> rows of dst


def _lerp_pose(a: Tensor, b: Tensor, w: float) -> Tensor:
    """Blend axis-angle poses through their quaternions (the shorter way round)."""
    from facet3d.core.ops.rotations import axis_angle_to_quaternion, quaternion_to_axis_angle

    qa, qb = axis_angle_to_quaternion(a), axis_angle_to_quaternion(b)
    qb = torch.where((qa * qb).sum(-1, keepdim=True) < 0, -qb, qb)
    q = (1 - w) * qa + w * qb
    return quaternion_to_axis_angle(q / q.norm(dim=-1, keepdim=True))


def make_clip(model, skeleton, g: torch.Generator, opt: DataOptions) -> dict[str, Tensor]:
    """Random people moving over a clip (module docstring): betas [P, B], global_orient [T, P, 3],
    body_pose [T, P, 3 (J - 1)], transl [T, P, 3] (camera frame, metres; the model's transl point)."""
    from facet3d.core.ops.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    from .scans import random_body

    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    n = 1 + int(r(()) * opt.max_people) if opt.max_people > 1 else 1
    T, A = opt.clip, camera_from_model(model)
    tan = math.tan(math.radians(30)) * 0.8  # roots stay inside 80 % of the field of view
    betas, orient, pose, transl = [], [], [], []
    for _ in range(n):
        a, b = random_body(model, skeleton, g), random_body(model, skeleton, g)
        z = opt.min_depth + (opt.max_depth - opt.min_depth) * float(r(()))
        start = torch.tensor([(2 * float(r(())) - 1) * tan * z, (2 * float(r(())) - 1) * tan * z * 0.5, z],
                             dtype=torch.float64)
        heading = 2 * math.pi * float(r(()))
        speed = 0.6 * float(r(()))
        v = speed * torch.tensor([math.cos(heading), 0.0, math.sin(heading)], dtype=torch.float64)
        turn = math.radians(40) * (2 * float(r(())) - 1)  # over the clip
        R0 = A @ axis_angle_to_matrix(a["global_orient"][0])
        up = A @ torch.tensor(model.up, dtype=torch.float64)
        betas.append(a["betas"][0])
        o, p, t = [], [], []
        for f in range(T):
            w = f / max(1, T - 1)
            o.append(matrix_to_axis_angle(axis_angle_to_matrix(up * turn * w) @ R0))
            p.append(_lerp_pose(a["body_pose"][0].reshape(-1, 3), b["body_pose"][0].reshape(-1, 3), w).reshape(-1))
            t.append(start + v * f / FPS)
        orient.append(torch.stack(o))
        pose.append(torch.stack(p))
        transl.append(torch.stack(t))
    return {"betas": torch.stack(betas), "global_orient": torch.stack(orient, 1), "body_pose": torch.stack(pose, 1),
            "transl": torch.stack(transl, 1)}


def _face_palette(model) -> Tensor:
    """[F] 0 top, 1 trousers, 2 skin, 3 shoes: each face's clothing group, from its first vertex's bone."""
    names = model.joint_names
    group = torch.zeros(len(names), dtype=torch.long)
    for k, key in enumerate(("trousers", "skin", "shoes"), start=1):
        for j, name in enumerate(names):
            if name.startswith(PART_GROUPS[key]):
                group[j] = k
    return group[model.vertex_joint()[model.faces[:, 0]].cpu()]


def _colours(g: torch.Generator) -> Tensor:
    """[4, 3] random top, trousers, skin and shoe colours."""
    c = torch.rand(4, 3, generator=g)
    tone = 0.35 + 0.6 * float(torch.rand((), generator=g))  # skin: a brown of random lightness
    c[2] = torch.tensor([tone, tone * 0.75, tone * 0.6])
    return c


def _background(g: torch.Generator, size: int, images: list[Path]) -> Tensor:
    """[3, size, size] in [0, 1]: a random crop of one of ``images``, or a smooth random texture."""
    import torch.nn.functional as F

    if images:
        from PIL import Image

        path = images[int(torch.randint(len(images), (), generator=g))]
        with Image.open(path) as im:
            im = im.convert("RGB")
            s = min(im.size)
            side = max(16, int(s * (0.4 + 0.6 * float(torch.rand((), generator=g)))))
            x0 = int(torch.randint(im.size[0] - side + 1, (), generator=g))
            y0 = int(torch.randint(im.size[1] - side + 1, (), generator=g))
            im = im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size))
            return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
    coarse = torch.rand(1, 3, 4, 4, generator=g)
    fine = torch.rand(1, 3, 16, 16, generator=g)
    img = 0.75 * F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False) \
        + 0.25 * F.interpolate(fine, size=(size, size), mode="bilinear", align_corners=False)
    return img[0].clamp(0, 1)


def render_people(vertices: Tensor, faces: Tensor, face_colour: Tensor, background: Tensor,
                  focal: float) -> tuple[Tensor, Tensor]:
    """Draw bodies over a background with the project's rasterizer (kernels.trisplat, hard triangles).

    vertices: [P, V, 3] camera frame; faces: [F, 3]; face_colour: [P, F, 3]; background: [3, H, W].
    -> (image [3, H, W] in [0, 1], pixels [P]: how many pixels show each body)
    """
    from facet3d.core.structures.cameras import intrinsics_matrix
    from facet3d.kernels.trisplat import rasterize_triangles

    from facet3d.core.preview import head_light

    H, W = background.shape[1:]
    P = vertices.shape[0]
    if P == 0:
        return background.clone(), torch.zeros(0, dtype=torch.long)
    K = intrinsics_matrix(focal, focal, (W - 1) / 2, (H - 1) / 2, dtype=torch.float32)
    tri = vertices.float()[:, faces].reshape(-1, 3, 3)  # [P F, 3, 3]
    colour = face_colour.reshape(-1, 3).float() * head_light(tri, 0.35)[:, None]
    # each face's index (+1) in the colour's last channel reads back which face won each pixel
    ident = torch.arange(1, len(tri) + 1, dtype=torch.float32)[:, None]
    out = rasterize_triangles(tri, K, torch.cat([colour, ident], 1), torch.ones(len(tri)), 1e-3, (H, W),
                              torch.zeros(4), hard=True, near=0.1)
    alpha = out["alpha"][..., None].clamp(0, 1)
    img = out["rgb"][..., :3].clamp(0, 1) + (1 - alpha) * background.permute(1, 2, 0)
    won = out["rgb"][..., 3][out["alpha"] > 0.5].round().long() - 1  # [pixels] winning face indices
    pixels = torch.bincount(won.clamp(0, len(tri) - 1) // faces.shape[0], minlength=P)[:P]
    return img.permute(2, 0, 1).contiguous(), pixels


def _image_files(folder: str | None) -> list[Path]:
    if folder is None:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"--backgrounds {root}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    if not files:
        raise UsageError(f"--backgrounds {root}: no images (png, jpg, bmp, webp) in it")
    return files


def make_sample(model, skeleton, palette: Tensor, g: torch.Generator, opt: DataOptions,
                images: list[Path]) -> dict[str, np.ndarray]:
    """One rendered clip and its ground truth (the arrays of a sample file, module docstring)."""
    clip = make_clip(model, skeleton, g, opt)
    T, P = clip["transl"].shape[:2]
    colours = torch.stack([_colours(g)[palette] for _ in range(P)])  # [P, F, 3]
    background = _background(g, opt.image_size, images)
    frames, visible = [], []
    like = dict(dtype=model.dtype, device=model.device)
    for f in range(T):
        with torch.no_grad():
            out = model(betas=clip["betas"].to(**like), global_orient=clip["global_orient"][f].to(**like),
                        body_pose=clip["body_pose"][f].to(**like), transl=clip["transl"][f].to(**like))
        img, vis = render_people(out.vertices.cpu(), model.faces.cpu(), colours, background,
                                 focal_for(opt.image_size))
        frames.append((img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
        visible.append(vis.numpy())
    return {"frames": np.stack(frames), "betas": clip["betas"].numpy(), "global_orient": clip["global_orient"].numpy(),
            "body_pose": clip["body_pose"].numpy(), "transl": clip["transl"].numpy(), "visible": np.stack(visible)}


def write_dataset(out: str | Path, model, count: int, opt: DataOptions, seed: int = 0,
                  progress: ProgressFn | None = None, overwrite: bool = False) -> dict:
    """Render ``count`` samples into folder ``out`` (module docstring); each file written atomically."""
    from facet3d.core.io.api import atomic_output

    from .skeleton import skeleton_of

    opt.check()
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    root = Path(out)
    if (root / "dataset.json").exists() and not overwrite:
        raise UsageError(f"{root} already holds a dataset; pass --overwrite to replace it")
    root.mkdir(parents=True, exist_ok=True)
    images = _image_files(opt.backgrounds)
    skeleton = skeleton_of(model)
    palette = _face_palette(model)
    for i in range(count):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        arrays = make_sample(model, skeleton, palette, g, opt, images)
        with atomic_output(root / f"sample_{i:06d}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        if progress is not None:
            progress(i + 1, count, "render")
    info = {"model": model.name, "focal": focal_for(opt.image_size), "count": count, "seed": seed,
            **asdict(opt)}
    with atomic_output(root / "dataset.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1))
    return info


class BodyDataset:
    """A folder `write_dataset` made: ``len``, ``[i]`` -> dict of tensors (frames float [T, 3, H, W])."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta = self.root / "dataset.json"
        if not meta.is_file():
            raise InputError(f"{self.root}: not a body dataset (no dataset.json; make one with "
                             f"'facet3d body make-data')")
        self.info = json.loads(meta.read_text())
        self.files = sorted(self.root.glob("sample_*.npz"))
        if not self.files:
            raise InputError(f"{self.root}: the dataset holds no samples")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        try:
            with np.load(self.files[i]) as z:
                s = {k: torch.from_numpy(z[k].copy()) for k in z.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.files[i]}: unreadable sample ({exc})") from None
        s["frames"] = s["frames"].permute(0, 3, 1, 2).float() / 255
        return s
