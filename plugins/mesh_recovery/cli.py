"""`facet3d mesh` (points / depth maps / triangle soup -> mesh) and `facet3d compare PRED GT`.

Only typer is imported here: open3d, scipy and torch are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facet3d.core.errors import UsageError
from facet3d.cli.api import write_run_page, group, non_negative, note, out, parse_floats, positive, print_json, progress_callback, unit_interval

MESH_HELP = """Recover a surface mesh from a point cloud, from depth maps, or from a triangle soup.

\b
Point clouds (default --method auto: 2.5-D Delaunay for planar clouds and height fields such as
terrain lidar, otherwise screened Poisson trimmed to follow the input so open scans stay open):
  facet3d mesh scan.ply --out mesh.ply
  facet3d mesh terrain.laz -o terrain.ply                     (auto -> delaunay; --max-edge L keeps holes open)
  facet3d mesh scan.pcd --out mesh.ply --viewpoint 0,0,0      (orient normals / faces to the sensor)
  facet3d mesh points.ply --out closed.ply -m poisson --watertight   (keep Poisson's closed surface)
  facet3d mesh points.ply --out bpa.ply --method bpa           (ball radii from the point spacing)
Depth maps (TSDF fusion; cameras: core JSON, transforms.json, COLMAP model):
  facet3d mesh --from-depth depth/ --cameras cameras.json --out fused.ply --voxel 0.005
Triangle soups (weld, drop degenerate/duplicate faces and floaters, orient, report non-manifold parts):
  facet3d mesh --from-soup splats.stl --out clean.ply
"""


def mesh(
    src: Optional[Path] = typer.Argument(None, metavar="[INPUT]", help="Point cloud (or mesh: its vertices are used)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output mesh (format from the extension)."),
    method: str = typer.Option("auto", "--method", "-m", help="auto (by the cloud's shape: delaunay for planar / 2.5-D clouds, else poisson), poisson, delaunay (2.5-D terrain), bpa (ball pivoting) or alpha (alpha shapes)."),
    depth: int = typer.Option(8, "--depth", min=1, max=16, help="Poisson octree depth (grid 2^depth), 1..16."),
    scale: float = typer.Option(1.1, "--scale", callback=positive, help="Poisson: reconstruction cube / bounding cube."),
    linear_fit: bool = typer.Option(False, "--linear-fit", help="Poisson: linear interpolation of iso-vertices."),
    trim: Optional[float] = typer.Option(None, "--trim", callback=unit_interval, help="Poisson: also drop vertices below this density quantile (e.g. 0.01)."),
    trim_distance: Optional[float] = typer.Option(None, "--trim-distance", callback=non_negative, help="Poisson: drop vertices farther than this many point spacings from the input (default 5; 0: off)."),
    watertight: bool = typer.Option(False, "--watertight", help="Poisson: keep the closed surface (no trimming)."),
    viewpoint: Optional[str] = typer.Option(None, "--viewpoint", help="x,y,z: orient estimated normals towards this point (scans)."),
    radii: Optional[str] = typer.Option(None, "--radii", help="BPA ball radii r1,r2,... (default: 1, 2, 4 x point spacing)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", callback=positive, help="Alpha-shape alpha (default: 4 x point spacing)."),
    max_edge: Optional[str] = typer.Option(None, "--max-edge", help="Delaunay: drop triangles with a 3-D edge longer than L (default 10 x point spacing; 0 or none: no limit)."),
    k: int = typer.Option(30, "--k", min=3, help="Neighbours for normal estimation."),
    renormal: bool = typer.Option(False, "--estimate-normals", help="Re-estimate normals even when the input has them."),
    from_depth: Optional[Path] = typer.Option(None, "--from-depth", help="Folder of depth maps (.npy metres, 16-bit .png mm, float .tif)."),
    cameras: Optional[Path] = typer.Option(None, "--cameras", help="Cameras for --from-depth: core JSON, transforms.json, COLMAP model."),
    colors: Optional[Path] = typer.Option(None, "--colors", help="Folder of colour images named like the depth maps."),
    voxel: Optional[float] = typer.Option(None, "--voxel", callback=positive, help="TSDF voxel size (default: scene width / 160)."),
    trunc: Optional[float] = typer.Option(None, "--trunc", callback=positive, help="TSDF truncation distance (default 5 voxels)."),
    depth_scale: Optional[float] = typer.Option(None, "--depth-scale", callback=positive, help="Depth units per scene unit (default 1000 for 16-bit PNG, else 1)."),
    depth_max: Optional[float] = typer.Option(None, "--depth-max", callback=positive, help="Ignore depth beyond this distance."),
    from_soup: Optional[Path] = typer.Option(None, "--from-soup", help="Triangle soup to weld and repair (STL, PLY, OBJ, ...)."),
    weld_tol: Optional[float] = typer.Option(None, "--weld-tol", callback=positive, help="Soup: weld vertices closer than this (default from the model's size and edges)."),
    min_component: Optional[float] = typer.Option(None, "--min-component", callback=unit_interval, help="Drop pieces below this fraction (soup: of all faces, 0.001; TSDF: of the largest piece, 0.05)."),
    json_out: bool = typer.Option(False, "--json", help="Print what was done as JSON on stdout."),
) -> None:
    from facet3d.core.io.api import write
    from facet3d.plugins.mesh_recovery.recover import check_mesh_output, check_sources, recover_mesh

    check_sources(src, from_depth, cameras, from_soup)
    check_mesh_output(out)
    info: dict = {}
    points_opts = None
    if src is not None:
        from facet3d.plugins.mesh_recovery.surface_points import PointsToMesh

        points_opts = PointsToMesh(method=method, depth=depth, scale=scale, linear_fit=linear_fit, trim=trim,
                                   trim_distance=trim_distance, watertight=watertight,
                                   radii=parse_floats(radii, "--radii"), alpha=alpha, max_edge=_parse_max_edge(max_edge),
                                   viewpoint=parse_floats(viewpoint, "--viewpoint", 3), k=k,
                                   estimate_normals=True if renormal else None, info=info)
        points_opts.validate()  # before reading the input, so a bad flag fails at once
    with progress_callback("mesh") as bar:
        result = recover_mesh(src, from_depth, cameras, from_soup, points_opts=points_opts, weld_tol=weld_tol,
                              min_component=min_component, info=info, progress=bar, log=note, colors=colors,
                              voxel=voxel, trunc=trunc, depth_scale=depth_scale, depth_max=depth_max)
    write(out, result)
    info.update(output=str(out), vertices=result.num_points, faces=result.num_faces)
    if json_out:
        print_json(info)
    if "method_reason" in info:
        note(info["method_reason"])
    note(f"wrote {out} ({result.num_faces} faces, {result.num_points} vertices"
         + (f", {info['method']}" if src is not None and "method" in info else "") + ")")


def _parse_max_edge(text: Optional[str]) -> Optional[float]:
    """``--max-edge``: a length >= 0, or none/off (no limit, like 0); None when not given."""
    if text is None:
        return None
    if text.strip().lower() in ("none", "off"):
        return 0.0
    value = parse_floats(text, "--max-edge", 1)[0]
    if value < 0:
        from facet3d.core.errors import UsageError

        raise UsageError(f"--max-edge must be a length >= 0 (0 or none: no limit), got '{text}'")
    return value


def compare(
    pred: Path = typer.Argument(..., help="Prediction (mesh or point cloud)."),
    gt: Path = typer.Argument(..., help="Ground truth (mesh or point cloud)."),
    threshold: List[str] = typer.Option([], "--threshold", "-t", help="F-score threshold: a distance, or N% of the GT bounding-box diagonal (repeatable; default 0.5%, 1%, 2%)."),
    samples: int = typer.Option(100_000, "--samples", "-n", help="Points sampled on each mesh."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    point_to_mesh: bool = typer.Option(True, "--point-to-mesh/--point-to-samples", help="Distances to a mesh: exact point-to-triangle, or to its samples only."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Chamfer-L1/L2, F-score, accuracy/completeness, normal consistency, watertight/manifold checks.

    \b
    Examples:
      facet3d compare recon.ply gt.obj
      facet3d compare recon.ply gt.obj --threshold 1% --threshold 0.002 --json
    """
    from facet3d.core.io.api import read
    from facet3d.plugins.mesh_recovery.surface_metrics import compare as run_compare

    res = run_compare(read(pred), read(gt), threshold or None, n=samples, seed=seed, point_to_mesh=point_to_mesh)
    if json_out:
        print_json(res)
        return
    out.print(f"chamfer-L1    {res['chamfer_l1']:.6g}   (accuracy {res['accuracy']:.6g}, completeness {res['completeness']:.6g})")
    out.print(f"chamfer-L2    {res['chamfer_l2']:.6g}")
    for s in res["fscore"]:
        out.print(f"F-score @{s['label']:<6} {s['fscore']:.4f}   (precision {s['precision']:.4f}, recall {s['recall']:.4f}, tau {s['threshold']:.4g})")
    nc = res["normal_consistency"]
    out.print(f"normal consistency {'n/a' if nc is None else f'{nc:.4f}'}")
    for name in ("pred", "gt"):
        t = res[f"{name}_topology"]
        if t:
            out.print(f"{name:<4} watertight {t['watertight']}, manifold {t['manifold']}, winding consistent "
                      f"{t['winding_consistent']}, boundary edges {t['boundary_edges']}, non-manifold edges {t['nonmanifold_edges']}")


MODEL_HELP = ("Body model: 'anny' (the bundled default; pip install 'facet3d[body]') or an SMPL-format file: "
              "the official .pkl (no chumpy needed) or an .npz with the same keys.")


def body_pose(
    model: str = typer.Option("anny", "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    params: Optional[Path] = typer.Option(None, "--params", "-p", metavar="PARAMS.json", help="betas, global_orient, body_pose (axis-angle), transl, as smplx names them."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Posed mesh (.ply, .obj, .glb); the joints go to OUT.joints.json beside it."),
    rest: bool = typer.Option(False, "--rest", help="The template in its rest pose (no --params)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Pose a body model: a mesh with vertices in the model's order, and its joints as JSON.

    \b
    Examples:
      facet3d body pose --rest --out anny.ply                     (Anny, the default model)
      facet3d body pose --model SMPL_NEUTRAL.pkl --params fit.json --out body.ply
      facet3d body pose --model model.npz --rest --out template.obj
    """
    import json

    from facet3d.core.io.api import atomic_output, write
    from facet3d.core.io.record import Geometry
    from facet3d.core.errors import UsageError
    from facet3d.plugins.mesh_recovery.body.models import load_body_model
    from facet3d.plugins.mesh_recovery.body.pose import pose_body, read_params

    if rest == (params is not None):
        raise UsageError("give exactly one of --params PARAMS.json and --rest")
    joints_path = out_path.with_name(out_path.stem + ".joints.json")
    for target in (out_path, joints_path):
        if target.exists() and not overwrite:
            raise UsageError(f"{target} exists (use --overwrite to replace it)")
    values = {} if rest else read_params(params)
    import torch

    body = load_body_model(model, dtype=torch.float64)  # cheap: pose in full precision
    verts, joints = pose_body(body, values)
    write(out_path, Geometry(vertices=verts, faces=body.faces.numpy()))
    with atomic_output(joints_path) as tmp:
        tmp.write_text(json.dumps({"model": str(model), "joint_names": list(body.joint_names),
                                   "joints": joints.tolist(), "parents": body.parents.tolist()}, indent=1) + "\n")
    summary = {"mesh": str(out_path), "joints": str(joints_path), "vertices": int(len(verts)),
               "faces": int(len(body.faces)), "num_joints": int(len(joints))}
    if json_out:
        print_json(summary)
    else:
        note(f"wrote {out_path} ({len(verts)} vertices) and {joints_path} ({len(joints)} joints)")


def body_fit(
    scan: Path = typer.Argument(..., help="Point cloud, scan mesh or one depth view (any format facet3d reads)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: body.ply, params.json, residuals.ply, fit.png, fit.json."),
    model: str = typer.Option("anny", "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    iters: int = typer.Option(300, "--iters", "-n", callback=positive, help="Optimisation steps (split 20/40/40 over shape, pose, fine)."),
    gender: str = typer.Option("auto", "--gender", help="auto (fitted), female, male or neutral (Anny's gender held)."),
    units: str = typer.Option("auto", "--units", help="The scan's unit: auto (from its size), m, dm, cm, mm, in, ft."),
    partial: bool = typer.Option(False, "--partial", help="One depth view: only the body's side facing the sensor is matched to the scan."),
    sensor: Optional[str] = typer.Option(None, "--sensor", metavar="X,Y,Z", help="--partial: the sensor's centre in the scan's frame and units (default 0,0,0: a depth camera's own frame)."),
    points: int = typer.Option(10_000, "--points", callback=positive, help="Scan points used (a random subset of larger scans; meshes are sampled)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsets."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs already in --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Recover a body mesh from a scan: an SMPLify-style fit in 3D (robust scan/body distances, pose and
    shape priors, hinged knees and elbows, coarse to fine, orientation found from the data).

    \b
    Examples:
      facet3d body fit scan.ply --out fit/                         (Anny; metres, dm, cm, mm guessed)
      facet3d body fit depth_view.ply --partial --out fit/         (one depth camera's view, in its frame)
      facet3d body fit scan.obj --model SMPL_NEUTRAL.pkl --gender auto --iters 500 --out fit/ --json
    """
    from facet3d.core.errors import UsageError

    gender = gender.lower()
    if gender not in ("auto", "female", "male", "neutral"):
        raise UsageError(f"--gender must be auto, female, male or neutral, got '{gender}'")
    from facet3d.plugins.mesh_recovery.body.fit import UNITS

    if units != "auto" and units not in UNITS:
        raise UsageError(f"--units must be auto or one of {', '.join(UNITS)}, got '{units}'")
    sensor_xyz = None
    if sensor is not None:
        if not partial:
            raise UsageError("--sensor only applies with --partial")
        sensor_xyz = parse_floats(sensor, "--sensor", 3)
    from facet3d.plugins.mesh_recovery.body.fit_outputs import check_fit_outputs

    check_fit_outputs(out_dir, overwrite)
    from facet3d.plugins.mesh_recovery.body.api import fit_scan_file

    with progress_callback("body fit") as bar:
        summary = fit_scan_file(scan, out_dir, model=model, iters=iters, gender=gender, units=units, partial=partial,
                                sensor=sensor_xyz, max_points=points, seed=seed, progress=bar, log=note)
    if json_out:
        print_json(summary)
    else:
        s = summary["scan_to_body_mm"]
        note(f"fitted {model} to {scan} in {summary['seconds']:.1f} s: scan -> body median {s['median']:.1f} mm, "
             f"p95 {s['p95']:.1f} mm; wrote {out_dir}/ (body.ply, params.json, residuals.ply, fit.png, fit.json)")


def body_make_data(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Dataset folder: sample_*.npz (frames + ground truth) and dataset.json."),
    count: int = typer.Option(200, "--count", "-n", callback=positive, help="Samples (images or clips) to render."),
    clip: int = typer.Option(1, "--clip", callback=positive, help="Frames per sample (1: still images; 8: the paper's clips)."),
    image_size: int = typer.Option(128, "--image-size", callback=positive, help="Square image side in pixels (the detector config's: tiny 128, small 256, paper 512)."),
    max_people: int = typer.Option(3, "--max-people", callback=positive, help="People per sample (1 to this many)."),
    backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="A folder of images to crop backgrounds from (default: random textures)."),
    model: str = typer.Option("anny", "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed renders the same samples."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already in --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the dataset description as JSON."),
) -> None:
    """Render training data: people of the body model (random plausible shapes and poses, coloured
    clothes) in images or moving in short clips, over random textures or your images, with the
    project's own rasterizer; ground truth (shape, pose, camera-frame translation, visibility) saved beside.

    \b
    Examples:
      facet3d body make-data --out data/train --count 400 --clip 4
      facet3d body make-data --out data/test --count 50 --clip 4 --seed 1 --backgrounds photos/
    """
    from facet3d.plugins.mesh_recovery.body.models import load_body_model
    from facet3d.plugins.mesh_recovery.body.people_data import DataOptions, write_dataset

    opt = DataOptions(image_size=image_size, clip=clip, max_people=max_people,
                      backgrounds=None if backgrounds is None else str(backgrounds))
    opt.check()
    if (out_dir / "dataset.json").exists() and not overwrite:
        raise UsageError(f"{out_dir} already holds a dataset; pass --overwrite to replace it")
    body_model = load_body_model(model)
    with progress_callback("render", total=count) as bar:
        info = write_dataset(out_dir, body_model, count, opt, seed=seed, progress=bar, overwrite=overwrite)
    if json_out:
        print_json(info)
    else:
        note(f"wrote {count} samples of {clip} frame(s) at {image_size} px to {out_dir}/")


def body_detect(
    inputs: List[Path] = typer.Argument(..., help="Images, or folders of frames (a video's frames, in name order)."),
    ckpt: Path = typer.Option(..., "--ckpt", help="A detector trained by 'facet3d train body' (.safetensors + .json)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: NAME_pID.ply per person, NAME_overlay.png per frame, people.json."),
    model: str = typer.Option("anny", "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    threshold: float = typer.Option(0.25, "--threshold", callback=unit_interval, help="Centre confidence a person needs (ROMP: 0.25)."),
    clip: int = typer.Option(8, "--clip", callback=positive, help="Frames looked at together (Body Center Attention across them)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs already in --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Find every person in images or video frames and recover their body meshes (a CoordFormer-style
    single-stage detector): a mesh per person per frame, ids kept across frames, an overlay per frame.

    \b
    Examples:
      facet3d body detect photo.jpg --ckpt runs/body/best_model.safetensors --out people/
      facet3d body detect video_frames/ --ckpt runs/body/best_model.safetensors --clip 8 --out people/ --json
    """
    from facet3d.plugins.mesh_recovery.body.detect import detect_people

    with progress_callback("detect") as bar:
        summary = detect_people(list(inputs), ckpt, out_dir, model, threshold, clip, overwrite, progress=bar, log=note)
    if json_out:
        print_json(summary)
    elif summary["people"] == 0:
        note(f"no person found in {summary['frames']} frame(s) (threshold {threshold}); wrote {out_dir}/people.json")
    else:
        note(f"{summary['people']} body mesh(es) of {summary['ids']} person id(s) in {summary['frames']} frame(s); wrote {out_dir}/")
    if summary["failed"]:
        raise typer.Exit(1)


def train_body(
    data: Path = typer.Argument(..., help="A dataset made by 'facet3d body make-data', or a 3DPW folder (its train split; --model SMPL). Not Human3.6M (evaluation only)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder: best/last_model.safetensors (+ .json), log.json, curves.png, train_state.pt."),
    test: Optional[Path] = typer.Option(None, "--test", help="A held-out dataset evaluated after every epoch (picks the best model)."),
    config: str = typer.Option("tiny", "--config", help="Network size: tiny (CPU, 128 px), small (256 px), paper (512 px)."),
    model: str = typer.Option("anny", "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    epochs: int = typer.Option(10, "--epochs", callback=positive),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop after this many minutes of training (the epoch ends there, checkpoints kept)."),
    batch_size: int = typer.Option(4, "--batch-size", callback=positive),
    lr: float = typer.Option(1e-3, "--lr"),
    frames: str = typer.Option("clip", "--frames", help="clip: learn from whole clips (Body Center Attention across frames); single: each frame alone."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train the body detector (CoordFormer-style) on rendered people.

    \b
    Examples:
      facet3d train body data/train --test data/test --config tiny --minutes 10 --out runs/body
      facet3d train body data/train --out runs/body --resume --epochs 20
    """
    from facet3d.plugins.mesh_recovery.body.models import load_body_model
    from facet3d.plugins.mesh_recovery.body.net_train import TrainOptions, train_detector

    opt = TrainOptions(config=config, epochs=epochs, minutes=minutes, batch_size=batch_size, lr=lr, frames=frames, seed=seed)
    opt.check()
    from facet3d.plugins.mesh_recovery.body.coordformer import resolve_config

    resolve_config(config)
    if (out_dir / "log.json").exists() and not resume:
        raise UsageError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    body_model = load_body_model(model)
    with progress_callback("train") as bar:
        summary = train_detector(data, out_dir, opt, body_model, test=test, resume=resume, progress=bar, log=note)
    write_run_page(out_dir, "Body detector training", summary)
    if json_out:
        print_json(summary)
    else:
        note(f"trained {summary['epochs_run']} epoch(s) in {summary['seconds']:.0f} s; wrote {out_dir}/")


def eval_body(
    ckpt: Path = typer.Argument(..., help="A detector checkpoint (.safetensors)."),
    data: Path = typer.Argument(..., help="A dataset made by 'facet3d body make-data', a 3DPW folder (imageFiles/, sequenceFiles/) or a Human3.6M folder (S9/MyPoseFeatures/, S9/Images/)."),
    model: str = typer.Option("anny", "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    frames: str = typer.Option("clip", "--frames", help="clip: whole clips; single: each frame alone (image mode)."),
    split: str = typer.Option("test", "--split", help="3DPW: train, validation or test. Human3.6M: test (S9, S11), test-p2 (S9, S11, frontal camera 60457274) or train (S1, S5-S8)."),
    joint_regressor: Optional[Path] = typer.Option(None, "--joint-regressor", help="Human3.6M (required): J_regressor_h36m.npy, [17, V] for the body model's V vertices (as SPIN / ROMP ship it)."),
    threshold: float = typer.Option(0.25, "--threshold", callback=unit_interval),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Evaluate a body detector: detection recall (a detection within 1.5 cells of a true centre),
    MPJPE, PA-MPJPE and PVE in mm over the people found (root-aligned). Human3.6M gives joints only:
    its 17 joints through --joint-regressor, MPJPE and PA-MPJPE, no PVE.

    \b
    Examples:
      facet3d eval body runs/body/best_model.safetensors data/test --json
      facet3d eval body runs/smpl/best_model.safetensors 3DPW/ --model SMPL_NEUTRAL.pkl --split test
      facet3d eval body runs/smpl/best_model.safetensors H36M/ --model SMPL_NEUTRAL.pkl --joint-regressor J_regressor_h36m.npy
    """
    from facet3d.plugins.mesh_recovery.body.detector import load_detector
    from facet3d.plugins.mesh_recovery.body.models import load_body_model
    from facet3d.plugins.mesh_recovery.body.net_train import evaluate_detector, open_dataset

    if frames not in ("clip", "single"):
        raise UsageError(f"--frames must be clip or single, got '{frames}'")
    body_model = load_body_model(model)
    det, _ = load_detector(ckpt, body_model)
    ds = open_dataset(data, body_model, det.image_size, det.net.config.clip_length if frames == "clip" else 1, split)
    with progress_callback("eval") as bar:
        m = evaluate_detector(det, body_model, ds, frames=frames, threshold=threshold, progress=bar,
                              joint_regressor=joint_regressor)
    if json_out:
        print_json(m)
    else:
        skipped = m.get("dataset", {}).get("skipped") or []
        if skipped:
            note(f"{len(skipped)} sequence(s) skipped, e.g. {skipped[0]}")
        pve = "PVE n/a (joints only)" if m["pve_mm"] is None else f"PVE {m['pve_mm']:.1f} mm"
        typer.echo(f"recall {m['recall']:.3f} ({m['found']}/{m['people']})  MPJPE {m['mpjpe_mm']:.1f} mm  "
                   f"PA-MPJPE {m['pa_mpjpe_mm']:.1f} mm  {pve}  ({frames})")


def register(app: typer.Typer) -> None:
    app.command("mesh", help=MESH_HELP)(mesh)
    app.command("compare")(compare)
    body = typer.Typer(help="Human body models: pose a model, fit one to a scan, find people in images.",
                       no_args_is_help=True)
    app.add_typer(body, name="body")
    body.command("pose")(body_pose)
    body.command("fit")(body_fit)
    body.command("make-data")(body_make_data)
    body.command("detect")(body_detect)
    group(app, "train", "Train models (RISurConv classifier / part segmenter, ...).").command("body")(train_body)
    group(app, "eval", "Evaluate trained models on a dataset.").command("body")(eval_body)
