"""``facet3d render``: render a triangle-splatting scene or any mesh through cameras to images.

Registered by the plugin's ``facet3d_register_commands`` hook; torch and the renderer are imported
inside the command body so ``facet3d --help`` stays light.

Outputs per view (``<view>`` = the camera's name made file-safe, ``view_000``... for --orbit):

* ``<view>_rgb.png``   8-bit RGB;
* ``<view>_depth.npy`` (``--save-depth``) HxW float32 z-depth along the camera axis (not the ray
  length); hard renders: the nearest surface's z; soft renders: the expected z (weighted by the
  blending weights, normalised by alpha); **0 where nothing was hit** (alpha == 0);
* ``<view>_alpha.npy`` (``--save-alpha``) HxW float32 accumulated opacity.

Every file is written to a temporary file in the output folder and renamed into place.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Optional

import typer

from facet3d.core.errors import InputError, UsageError

_NERF_CANDIDATES = ("transforms_test.json", "transforms_val.json", "transforms_train.json", "transforms.json")


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(H, W)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT with positive integers, e.g. 256x256")
    return int(m.group(2)), int(m.group(1))


def parse_background(text: str) -> tuple[float, float, float]:
    parts = [p.strip() for p in (text or "").split(",")]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(0.0 <= v <= 1.0 for v in vals):
        raise UsageError(f"--background {text!r}: expected r,g,b with values in [0, 1], e.g. 1,1,1")
    return vals  # type: ignore[return-value]


def _camera_file(path: Path) -> Path:
    """A camera JSON file, or the one camera file inside a folder; a COLMAP model (folder, ``sparse/0``
    under a dataset root, or one of its cameras/images/points3D files) -> its model folder."""
    from facet3d.core.io.colmap import find_colmap_model

    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    model = find_colmap_model(path)
    if model is not None:
        return model
    if path.is_file():
        return path
    for name in ("cameras.json", *_NERF_CANDIDATES):
        if (path / name).is_file():
            return path / name
    found = sorted(path.glob("*.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"{path}: folder has no camera JSON (cameras.json or transforms_*.json) "
                         "nor COLMAP model (cameras + images .txt/.bin, sparse/0)")
    raise UsageError(f"{path}: several JSON files ({', '.join(p.name for p in found[:4])}); pass one with --cameras")


def load_cameras(path: Path, size: Optional[tuple[int, int]]):
    """Core camera JSON, Blender/NeRF ``transforms_*.json`` or COLMAP model -> `Cameras` (float64).

    NeRF files given another ``size`` get the NeRF intrinsics of that size (f from camera_angle_x,
    principal point at the image centre); core JSON and COLMAP cameras are rescaled later by
    `resize_cameras`.  COLMAP lens distortion is ignored with a warning on stderr.
    """
    from facet3d.core.structures.cameras import Cameras

    f = _camera_file(path)
    if f.is_dir():  # a COLMAP model folder
        from facet3d.cli.console import err
        from facet3d.core.io.colmap import read_colmap_cameras

        cams = read_colmap_cameras(f)
        if getattr(cams, "meta_distortion", False):
            err.print(f"facet3d: warning: {f}: the COLMAP cameras have lens distortion; it is ignored "
                      "(undistort the images first)", soft_wrap=True, markup=False)
        return cams
    try:
        data = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{f}: cannot read cameras ({exc})") from exc
    if isinstance(data, dict) and "camera_angle_x" in data and "frames" in data:
        h, w = size if size is not None else (None, None)
        try:
            cams = Cameras.from_nerf_transforms(f, width=w, height=h)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{f}: cannot read NeRF transforms ({type(exc).__name__}: {exc}; "
                             "give --size when the images are absent)") from exc
        if size is not None and tuple(cams.image_size[0].tolist()) != tuple(size):
            # NeRF convention: K follows from camera_angle_x and the image size (principal point
            # at the image centre), so rebuild it for the requested size rather than rescaling K
            cams = Cameras.from_blender(cams.to_blender(), fov_x=cams.fov_x(), width=size[1], height=size[0],
                                        names=cams.names)
        return cams
    return Cameras.load_json(f)


def resize_cameras(cams, size: Optional[tuple[int, int]]):
    """Set every camera's image size to ``size`` (H, W), scaling K when it differs from the camera's own.

    Pixel centres sit at integer coordinates, so ``u' = (u + 0.5) s - 0.5`` (`Cameras.resized`).
    """
    import torch

    from facet3d.core.structures.cameras import Cameras

    if size is None:
        if cams.image_size is None:
            raise UsageError("the cameras have no image size; give --size WxH")
        return cams
    H, W = size
    if cams.image_size is None:
        return Cameras(cams.K, cams.R, cams.t, torch.tensor([H, W]), cams.names, dtype=cams.K.dtype)
    return cams.resized(H, W)


def view_names(names: list[str]) -> list[str]:
    """File-safe, unique stems from camera names (``view_000``... when they are not)."""
    out = []
    for n in names:
        stem = Path(str(n)).name
        stem = re.sub(r"\.(png|jpe?g|exr|tiff?)$", "", stem, flags=re.I)
        out.append(re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._"))
    if any(not s for s in out) or len(set(out)) != len(out):
        return [f"view_{i:03d}" for i in range(len(names))]
    return out


def load_scene(path: Path):
    """-> ``(TriangleScene, is_mesh)``: a triangle-splat PLY, else any mesh facet3d reads."""
    from facet3d.core.io.api import check_input_path, read
    from facet3d.plugins.triangle_splatting.scene import PLY_TAG, TriangleScene

    p = check_input_path(path)
    with open(p, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"ply") and PLY_TAG.encode() in head:
        return TriangleScene.load_ply(p), False
    geom = read(p)
    if not geom.is_mesh:
        raise UsageError(f"{p}: a point cloud without faces: nothing to render (give a mesh or a triangle-splat PLY)")
    return TriangleScene.from_geometry(geom), True


def _auto_hard(scene, is_mesh: bool) -> bool:
    """Meshes, and TS+ scenes that are opaque (all opacity 1) with sigma <= 1e-3, render hard."""
    if is_mesh:
        return True
    return scene.form == "ts+" and bool((scene.opacity >= 1.0).all()) and float(scene.sigma) <= 1e-3


def _write(path: Path, writer) -> None:
    from facet3d.core.io.api import atomic_output

    with atomic_output(path) as tmp:
        writer(tmp)


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render_cmd(
        src: str = typer.Argument(..., metavar="SCENE_OR_MESH", help="Triangle-splat scene PLY, or any mesh facet3d reads."),
        cameras: Optional[str] = typer.Option(None, "--cameras", help="Core camera JSON, Blender transforms_*.json, or a folder holding one."),
        orbit: Optional[int] = typer.Option(None, "--orbit", min=1, help="N cameras on a circle around the bounding-box centre at 2.2x its radius."),
        size: Optional[str] = typer.Option(None, "--size", help="Image size WxH (default with --cameras: the cameras' own; K is scaled to fit)."),
        out: str = typer.Option(..., "--out", help="Output folder (created)."),
        save_depth: bool = typer.Option(False, "--save-depth", help="Also write <view>_depth.npy (HxW float32 z-depth, 0 where empty)."),
        save_alpha: bool = typer.Option(False, "--save-alpha", help="Also write <view>_alpha.npy (HxW float32)."),
        background: str = typer.Option("0,0,0", "--background", help="Background colour r,g,b in [0, 1]."),
        hard: Optional[bool] = typer.Option(None, "--hard/--soft", help="Z-buffer (hard) or soft splatting; default: hard for meshes and opaque TS+ scenes, soft for others."),
        fov: float = typer.Option(60.0, "--fov", min=1.0, max=179.0, help="--orbit: field of view of the shorter image side, degrees (60 keeps the bounding sphere in view)."),
        up: str = typer.Option("z", "--up", help="--orbit: up axis x|y|z (optionally -x, -y, -z)."),
        json_out: bool = typer.Option(False, "--json", help="Print the list of written files as JSON on stdout."),
    ) -> None:
        """Render a triangle-splatting scene or a mesh to PNG images (and depth / alpha arrays).

        Meshes render as opaque hard triangles with their vertex or face colours (grey when none).
        Depth is z along the camera axis (expected z for soft renders), 0 where nothing was hit.

        \b
        Examples:
          facet3d render bunny.obj --orbit 8 --size 256x256 --out views
          facet3d render scene.ply --cameras transforms_test.json --out renders --save-depth
        """
        if (cameras is None) == (orbit is None):
            raise UsageError("give exactly one of --cameras FILE|DIR and --orbit N")
        hw = parse_size(size) if size is not None else None
        bg = parse_background(background)
        if orbit is not None and hw is None:
            raise UsageError("--orbit needs --size WxH")
        m = re.fullmatch(r"([+-]?)([xyz])", up.strip().lower())
        if not m:
            raise UsageError(f"--up {up!r}: expected x, y or z (optionally with a sign)")

        import numpy as np
        import torch
        from PIL import Image

        from facet3d.cli.console import err, print_json, progress
        from facet3d.plugins.triangle_splatting.render import orbit_cameras, render

        if cameras is not None:  # read the cameras first: a bad camera file should fail before the scene loads
            cams = resize_cameras(load_cameras(Path(cameras), hw), hw)
        scene, is_mesh = load_scene(Path(src))
        if len(scene) == 0:
            raise UsageError(f"{src}: no triangles: nothing to render")
        if orbit is not None:
            tri = scene.triangle_vertices().detach().to(torch.float64).reshape(-1, 3)
            lo, hi = tri.min(0).values, tri.max(0).values
            radius = max(float((hi - lo).norm()) / 2.0, 1e-9)
            axis = [0.0, 0.0, 0.0]
            axis["xyz".index(m.group(2))] = -1.0 if m.group(1) == "-" else 1.0
            H, W = hw
            fov_x = fov if W <= H else math.degrees(2 * math.atan(W / H * math.tan(math.radians(fov) / 2)))
            cams = orbit_cameras((lo + hi) / 2, 2.2 * radius, orbit, hw, fov=fov_x, up=axis)
            cams.names = [f"view_{i:03d}" for i in range(len(cams))]
            names = cams.names
        else:
            names = view_names(cams.names)
        use_hard = _auto_hard(scene, is_mesh) if hard is None else hard
        out_dir = Path(out)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out}: exists and is not a folder")
        out_dir.mkdir(parents=True, exist_ok=True)

        written: list[str] = []
        with torch.no_grad(), progress() as bar:
            task = bar.add_task("render", total=len(cams))
            for i in range(len(cams)):
                o = render(scene, cams[i], background=bg, hard=use_hard)
                rgb = (o["rgb"][0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
                targets = [(out_dir / f"{names[i]}_rgb.png",
                            lambda p, a=rgb: Image.fromarray(a, "RGB").save(p, format="PNG"))]
                for flag, key in ((save_depth, "depth"), (save_alpha, "alpha")):
                    if flag:
                        arr = np.ascontiguousarray(o[key][0].cpu().numpy().astype(np.float32))

                        def save_npy(p, a=arr):
                            with open(p, "wb") as fh:
                                np.save(fh, a)

                        targets.append((out_dir / f"{names[i]}_{key}.npy", save_npy))
                for path, writer in targets:
                    _write(path, writer)
                    written.append(str(path))
                bar.advance(task)
        H, W = (int(v) for v in cams.image_size[0].tolist())
        err.print(f"facet3d: rendered {len(cams)} view(s) of {src} ({W}x{H}, {'hard' if use_hard else 'soft'}) "
                  f"to {out_dir} ({len(written)} files)", soft_wrap=True)
        if json_out:
            print_json(written)

    _EXPORT_EXTS = (".ply", ".glb", ".obj")

    @app.command("export")
    def export_cmd(
        src: str = typer.Argument(..., metavar="SCENE", help="Triangle-splat scene PLY (as written by the triangle-splatting plugin)."),
        out: str = typer.Option(..., "--out", help="Output mesh: .ply, .glb or .obj (vertex colours in all three)."),
        opaque: bool = typer.Option(False, "--opaque", help="Drop triangles whose opacity is below --min-opacity (TS+: min of the corners')."),
        min_opacity: float = typer.Option(0.5, "--min-opacity", min=0.0, max=1.0, help="--opaque: opacity threshold in [0, 1]."),
    ) -> None:
        """Export a triangle-splatting scene as a plain coloured mesh (PLY, GLB or OBJ).

        TS+ scenes keep their shared vertices and faces; TS scenes become a triangle soup
        (3 vertices per triangle). Colours come from the SH DC term; view-dependent SH, sigma
        and opacity are dropped.

        \b
        Examples:
          facet3d export scene.ply --out mesh.glb
          facet3d export scene.ply --out mesh.ply --opaque --min-opacity 0.3
        """
        dest = Path(out)
        ext = dest.suffix.lower()
        if ext not in _EXPORT_EXTS:
            raise UsageError(f"--out {out}: unsupported extension {ext or '(none)'!r} (use .ply, .glb or .obj)")

        from facet3d.cli.console import err
        from facet3d.core.io.api import check_input_path, write
        from facet3d.plugins.triangle_splatting.export import scene_to_geometry
        from facet3d.plugins.triangle_splatting.scene import PLY_TAG, TriangleScene

        p = check_input_path(src)
        with open(p, "rb") as fh:
            head = fh.read(4096)
        if not (head.startswith(b"ply") and PLY_TAG.encode() in head):
            raise UsageError(f"{p}: not a triangle-splat scene (use facet3d convert for meshes)")
        scene = TriangleScene.load_ply(p)
        geom = scene_to_geometry(scene, opaque=opaque, min_opacity=min_opacity)
        write(dest, geom)
        dropped = len(scene) - geom.num_faces
        extra = f", dropped {dropped} with opacity < {min_opacity:g}" if opaque else ""
        err.print(f"facet3d: exported {scene.form} scene {src} ({len(scene)} triangles{extra}) to {dest} "
                  f"({geom.num_points} vertices, {geom.num_faces} faces)", soft_wrap=True, markup=False)
