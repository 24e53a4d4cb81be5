"""The triangle-splatting commands: ``facet3d render``, ``facet3d export``, ``facet3d fit``.

Commands only parse options, call the plugin's modules (`render`, `export`, `datasets`, `fit`) and
print.  Only typer is imported here: torch and the renderer are imported inside the command bodies
so ``facet3d --help`` stays light.  The output files of each command are described in its module
(`facet3d.plugins.triangle_splatting.render` for ``render``, `.fit` for ``fit``).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from facet3d.cli.api import (write_run_page, err, non_negative, parse_floats, parse_size, positive, print_json,
                             progress_callback, resolve_device, unit_interval, warn)
from facet3d.core.errors import UsageError

__all__ = ["register", "parse_up"]


class Shading(str, Enum):
    """``--shading`` (see `facet3d.plugins.triangle_splatting.render`)."""

    lambert = "lambert"
    normal = "normal"
    flat = "flat"


def _rgb(text: str, flag: str) -> tuple[float, float, float]:
    """``"r,g,b"`` (`parse_floats`, 3 finite values) with every value in [0, 1]."""
    vals = parse_floats(text, flag, 3)
    if not all(0.0 <= v <= 1.0 for v in vals):
        raise UsageError(f"{flag} {text!r}: expected r,g,b with values in [0, 1], e.g. 1,1,1")
    return tuple(vals)  # type: ignore[return-value]


def _fov(value: Any) -> Any:
    """Option callback: a finite field of view in (0, 180) degrees."""
    positive(value)
    if value is not None and not value < 180.0:
        raise typer.BadParameter(f"{value} is not below 180 degrees")
    return value


def parse_up(text: str) -> tuple[float, float, float]:
    """``x|y|z`` with an optional sign -> the unit axis."""
    from facet3d.core.values import parse_axis

    return parse_axis(text, "--up")


OPACITY_FLOOR = typer.Option(0.9999, "--opacity-floor", min=0.0, max=1.0, help="Official TS+ scenes: the vertex-opacity floor, which their code does not save (0.9999 = the end of training).")


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
    app.command("export")(export_cmd)
    app.command("fit")(fit_cmd)


def render_cmd(
    src: str = typer.Argument(..., metavar="SCENE_OR_MESH", help="Triangle-splat scene PLY, an official Triangle Splatting / TS+ model folder or point_cloud_state_dict.pt, or any mesh facet3d reads."),
    cameras: Optional[str] = typer.Option(None, "--cameras", metavar="FILE|DIR", help="Core camera JSON, Blender transforms_*.json, Strecha or official Triangle Splatting / 3DGS cameras.json, COLMAP model, or a folder holding one (default for an official model folder: its cameras.json)."),
    orbit: Optional[int] = typer.Option(None, "--orbit", min=1, help="N cameras on a circle around the bounding-box centre at 2.2x its radius (written to OUT/cameras.json)."),
    size: Optional[str] = typer.Option(None, "--size", metavar="WxH", help="Image size WxH (default with --cameras: the cameras' own; K is scaled to fit)."),
    out: str = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder (created)."),
    save_depth: bool = typer.Option(False, "--save-depth", help="Also write <view>_depth.npy (HxW float32 z-depth, 0 where empty)."),
    save_alpha: bool = typer.Option(False, "--save-alpha", help="Also write <view>_alpha.npy (HxW float32)."),
    background: str = typer.Option("0,0,0", "--background", metavar="R,G,B", help="Background colour r,g,b in [0, 1]."),
    shading: Optional[Shading] = typer.Option(None, "--shading", case_sensitive=False, help="Meshes: lambert (default: head light at the camera, ambient 0.2), normal (RGB = (n+1)/2, world-frame normals) or flat (unlit colours). Not for triangle-splat scenes (they keep their own colours)."),
    hard: Optional[bool] = typer.Option(None, "--hard/--soft", help="Z-buffer (hard) or soft splatting; default: hard for meshes and opaque TS+ scenes, soft for others."),
    fov: float = typer.Option(60.0, "--fov", callback=_fov, help="--orbit: field of view of the shorter image side, degrees in (0, 180) (60 keeps the bounding sphere in view)."),
    up: str = typer.Option("z", "--up", help="--orbit: up axis x|y|z (optionally -x, -y, -z)."),
    opacity_floor: float = OPACITY_FLOOR,
    json_out: bool = typer.Option(False, "--json", help="Print the list of written files as JSON on stdout."),
) -> None:
    """Render a triangle-splatting scene or a mesh to PNG images (and depth / alpha arrays).

    Meshes render as opaque hard triangles, shaded by their normals (--shading lambert: a head
    light, |n.l| with an ambient term; interpolated vertex normals when the mesh has them, else
    face normals) over their vertex or face colours (grey when none).  Triangle-splat scenes keep
    their own view-dependent colours.  Official Triangle Splatting / TS+ outputs open as they are
    (the model folder: its latest iteration; TS+ at the final opacity floor 0.9999) and render
    from the folder's cameras.json unless --cameras or --orbit is given.
    Depth is z along the camera axis (expected z for soft renders), 0 where nothing was hit.
    --orbit also writes OUT/cameras.json, so the depth maps can be fused with
    `facet3d mesh --from-depth OUT --cameras OUT/cameras.json`.

    \b
    Examples:
      facet3d render bunny.obj --orbit 8 --size 256x256 -o views --save-depth
      facet3d render bunny.obj --orbit 4 --size 512x512 --shading normal -o normals
      facet3d render scene.ply --cameras transforms_test.json --out renders --save-depth
      facet3d render output/garden --size 648x420 --out renders
    """
    if cameras is None and orbit is None:
        from facet3d.plugins.triangle_splatting.official import official_cameras_file

        cameras = official_cameras_file(src)
    if (cameras is None) == (orbit is None):
        raise UsageError("give exactly one of --cameras FILE|DIR and --orbit N")
    hw = parse_size(size, "--size") if size is not None else None
    bg = _rgb(background, "--background")
    if orbit is not None and hw is None:
        raise UsageError("--orbit needs --size WxH")
    axis = parse_up(up)

    from facet3d.plugins.triangle_splatting.render import (auto_hard, check_render_memory, frame_orbit, load_scene,
                                                           render_cameras, view_names, write_views)

    if hw is not None:  # refuse an image that cannot fit before reading anything
        check_render_memory(hw, shading="flat" if shading is Shading.flat else "lambert")  # lambert: the larger
    if cameras is not None:  # read the cameras first: a bad camera file should fail before the scene loads
        cams, warnings = render_cameras(Path(cameras), hw)
        for w in warnings:
            warn(w)
    scene, is_mesh = load_scene(Path(src), opacity_floor=opacity_floor)
    if shading is not None and not is_mesh:
        raise UsageError(f"--shading applies to meshes; {src} is a triangle-splat scene, which renders with its "
                         "own colours (drop --shading)")
    mode = (shading.value if shading is not None else "lambert") if is_mesh else "flat"
    if orbit is not None:
        cams = frame_orbit(scene, orbit, hw, fov=fov, up=axis)
    names = cams.names if orbit is not None else view_names(cams.names)
    use_hard = auto_hard(scene, is_mesh) if hard is None else hard
    with progress_callback("render", len(cams)) as bar:
        written = write_views(scene, cams, names, Path(out), background=bg, hard=use_hard, save_depth=save_depth,
                              save_alpha=save_alpha, save_cameras=orbit is not None, progress=bar, shading=mode)
    H, W = (int(v) for v in cams.image_size[0].tolist())
    look = f", {mode} shading" if is_mesh else ""
    err.print(f"facet3d: rendered {len(cams)} view(s) of {src} ({W}x{H}, {'hard' if use_hard else 'soft'}{look}) "
              f"to {out} ({len(written)} files)", soft_wrap=True, markup=False)
    if json_out:
        print_json(written)


def export_cmd(
    src: str = typer.Argument(..., metavar="SCENE", help="Triangle-splat scene PLY (as written by the triangle-splatting plugin), or an official Triangle Splatting / TS+ model folder or point_cloud_state_dict.pt."),
    out: str = typer.Option(..., "--out", "-o", metavar="FILE", help="Output mesh: .ply, .glb or .obj (vertex colours in all three); with --to-scene a scene .ply."),
    opaque: bool = typer.Option(False, "--opaque", help="Drop triangles whose opacity is below --min-opacity (TS+: min of the corners')."),
    min_opacity: float = typer.Option(0.5, "--min-opacity", callback=unit_interval, help="--opaque: opacity threshold in [0, 1]."),
    to_scene: bool = typer.Option(False, "--to-scene", help="Write the triangle-splat scene PLY (SH, opacity and sigma kept; docs/triangle_splat_ply.md) instead of a mesh: converts official Triangle Splatting / TS+ outputs."),
    opacity_floor: float = OPACITY_FLOOR,
) -> None:
    """Export a triangle-splatting scene as a plain coloured mesh (PLY, GLB or OBJ).

    TS+ scenes keep their shared vertices and faces; TS scenes become a triangle soup
    (3 vertices per triangle). Colours come from the SH DC term; view-dependent SH, sigma
    and opacity are dropped.  The scene may be an official Triangle Splatting / TS+ output (model
    folder: its latest iteration).  --to-scene writes the scene PLY instead, keeping everything:
    the way to convert an official output to facet3d's scene layout.

    \b
    Examples:
      facet3d export scene.ply -o mesh.glb
      facet3d export scene.ply --out mesh.ply --opaque --min-opacity 0.3
      facet3d export output/garden --to-scene -o garden_scene.ply
    """
    from facet3d.plugins.triangle_splatting.export import EXPORT_EXTS, export_scene

    ext = Path(out).suffix.lower()
    if to_scene and ext != ".ply":
        raise UsageError(f"--out {out}: --to-scene writes a scene .ply")
    if ext not in EXPORT_EXTS:
        raise UsageError(f"--out {out}: unsupported extension {ext or '(none)'!r} (use .ply, .glb or .obj)")
    if to_scene and opaque:
        raise UsageError("--opaque applies to mesh exports, not to --to-scene (which keeps every triangle)")
    r = export_scene(src, Path(out), opaque=opaque, min_opacity=min_opacity, to_scene=to_scene,
                     opacity_floor=opacity_floor)
    extra = f", dropped {r['dropped']} with opacity < {min_opacity:g}" if opaque else ""
    what = "scene PLY" if to_scene else "mesh"
    err.print(f"facet3d: exported {r['form']} scene {src} ({r['triangles']} triangles{extra}) to {out} as a {what} "
              f"({r['vertices']} vertices, {r['faces']} faces)", soft_wrap=True, markup=False)


def fit_cmd(
    dataset: str = typer.Argument(..., metavar="DATASET", help="Blender folder (transforms_train.json) or COLMAP folder (images/ + sparse/0)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="blender | colmap (default: detected)."),
    out: str = typer.Option(..., "--out", "-o", metavar="DIR", help="Run folder: scene.ply, checkpoint.pt, metrics.json, log.json, previews/."),
    iters: Optional[int] = typer.Option(None, "--iters", min=1, help="Training iterations (all schedules scale with it; the paper uses 30000). Default: 3000; with --time-limit as many as fit (N: at most N). --resume without --iters finishes the saved plan."),
    mode: str = typer.Option("ts", "--mode", help="ts (free soft triangles) | ts+ (shared vertices, ends opaque and hard: a mesh)."),
    holdout: int = typer.Option(8, "--holdout", min=0, help="Every N-th view is held out for evaluation (0: none, evaluate on training views)."),
    max_size: Optional[int] = typer.Option(None, "--max-size", min=8, help="Downscale images so the longer side is at most this."),
    background: str = typer.Option("1,1,1", "--background", metavar="R,G,B", help="Background colour r,g,b in [0, 1] for RGBA images and rendering."),
    init_points: int = typer.Option(20000, "--init-points", min=4, help="Random initial points in the scene bounds when the dataset has no SfM points."),
    max_triangles: int = typer.Option(300_000, "--max-triangles", min=16, help="Cap on the triangle count during densification."),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate held-out views (PSNR/SSIM, preview PNG) every N iterations (0: only at the end)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=0, help="Write RUN_DIR/checkpoint.pt every N iterations."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", callback=non_negative, metavar="MINUTES", help="Minutes for the training loop: a short warm-up measures the speed, then the whole schedule (densify/prune, SH, learning rates, TS+ annealing) is planned to the iterations that fit and re-planned as the triangles grow, ending complete at about 97% of the limit (stopped, marked stopped_early, if the time runs out first). The final checkpoint, evaluation and export come after and are not counted. On --resume the limit covers the whole run (time already trained counts)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN_DIR/checkpoint.pt."),
    init: Optional[str] = typer.Option(None, "--init", metavar="SCENE", help="Start from this scene instead of points: a triangle-splat scene PLY or an official Triangle Splatting / TS+ output (model folder or .pt). Its form must suit --mode (a TS+ scene can start --mode ts: triangles unshared). The schedule starts afresh (SH degree, learning rates; TS+: sigma annealing and opacity floor)."),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
    device: str = typer.Option("auto", "--device", help="cpu | cuda | cuda:N | auto (everything trains there)."),
    opacity_floor: float = OPACITY_FLOOR,
    json_out: bool = typer.Option(False, "--json", help="Print the final metrics as JSON on stdout."),
) -> None:
    """Fit triangles to posed photos (Triangle Splatting / Triangle Splatting+).

    Trains with the published recipe (L1 + D-SSIM + opacity regulariser, densify/prune, SH schedule;
    TS+: annealed sigma and opacity floor) scaled to --iters, or to the iterations that fit in
    --time-limit; shows a progress bar against the plan with loss and PSNR, evaluates the held-out
    views and writes RUN_DIR/scene.ply (render it with `facet3d render`, export it with
    `facet3d export`). metrics.json records the planned and the done iterations.

    \b
    Examples:
      facet3d fit nerf_synthetic/lego --format blender --out runs/lego --iters 3000
      facet3d fit garden --format colmap --out runs/garden --mode ts+ --max-size 400
      facet3d fit nerf_synthetic/lego --out runs/lego --resume --iters 6000
      facet3d fit nerf_synthetic/lego --out runs/lego-20min --time-limit 20
      facet3d fit garden --format colmap --out runs/garden-more --init output/garden --iters 2000
    """
    if mode not in ("ts", "ts+"):
        raise UsageError(f"--mode {mode!r}: expected ts or ts+")
    if fmt is not None and fmt not in ("blender", "colmap"):
        raise UsageError(f"--format {fmt!r}: expected blender or colmap")
    if init is not None and resume:
        raise UsageError("--init starts a new run and --resume continues a checkpoint: give one of them")
    bg = _rgb(background, "--background")
    run = Path(out)

    from facet3d.plugins.triangle_splatting.datasets import load_dataset
    from facet3d.plugins.triangle_splatting.fit import DEFAULT_ITERS, FitConfig, check_run_dir, fit

    check_run_dir(run, resume)
    start = _init_scene(init, opacity_floor) if init is not None else None
    if start is not None and mode == "ts+" and start.form == "ts":
        raise UsageError(f"--init {init}: a TS scene (free triangles) cannot start a --mode ts+ fit (shared "
                         "vertices); use --mode ts")
    dev = resolve_device(device)
    ds = load_dataset(Path(dataset), fmt, holdout=holdout, background=bg, max_size=max_size)
    for w in ds.warnings:
        warn(w)
    H, W = ds.train.images.shape[1:3]
    err.print(f"facet3d: {ds.format} dataset {dataset}: {len(ds.train.names)} training, {len(ds.test.names)} "
              f"held-out views, {W}x{H}, on {dev}", soft_wrap=True, markup=False)
    cfg = FitConfig(mode=mode, iters=iters, seed=seed, init_points=init_points, max_triangles=max_triangles,
                    eval_every=eval_every, checkpoint_every=checkpoint_every,
                    time_limit=None if time_limit is None else 60.0 * time_limit, device=dev, threads=threads,
                    extra={} if init is None else {"init": str(init)})
    # the bar counts against the plan: every step brings its planned count (None while a time limit warms up)
    total = (iters or DEFAULT_ITERS) if time_limit is None and not resume else None
    with progress_callback(f"fit {mode}", total, transient=False) as bar:
        def on_step(it: int, rec: dict) -> None:
            bar(it, rec["planned"], f"fit {mode} loss {rec['loss']:.4f} PSNR {rec['psnr']:.2f} tris {rec['triangles']}")

        metrics = fit(ds, run, cfg, resume=resume, on_step=on_step, init=start,
                      log=lambda msg: err.print(f"facet3d: {msg}", soft_wrap=True, markup=False))
    write_run_page(run, f"Triangle splatting fit ({mode})", metrics)
    done = f"{metrics['iterations']} iterations"
    if time_limit is not None:
        state = "schedule completed" if metrics["schedule_completed"] else \
            f"stopped at {metrics['schedule_progress']:.0%} of the schedule"
        planned = metrics["planned_iterations"]  # None: the time ran out before the warm-up planned
        done += f" of {planned} planned ({state})" if planned is not None else f" ({state})"
    err.print(f"facet3d: fit {mode}: {done} in {metrics['train_seconds']:.0f} s, "
              f"{metrics['triangles']} triangles; {metrics['eval_split']} PSNR {metrics['psnr']:.2f} dB, "
              f"SSIM {metrics['ssim']:.4f} -> {run / 'scene.ply'}", soft_wrap=True, markup=False)
    if json_out:
        print_json(metrics)


def _init_scene(path: str, opacity_floor: float = 0.9999):
    """``fit --init``: a triangle-splat scene PLY or an official output (meshes refused)."""
    from facet3d.plugins.triangle_splatting.render import load_scene

    scene, is_mesh = load_scene(Path(path), opacity_floor=opacity_floor)
    if is_mesh:
        raise UsageError(f"--init {path}: a mesh, not a triangle-splat scene (give a scene PLY or an official "
                         "Triangle Splatting / TS+ output)")
    scene.meta.setdefault("source", str(path))  # named in the fit's log
    return scene
