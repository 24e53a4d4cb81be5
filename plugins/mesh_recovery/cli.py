"""`facet3d mesh` (points / depth maps / triangle soup -> mesh) and `facet3d compare PRED GT`.

Only typer is imported here: open3d, scipy and torch are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

MESH_HELP = """Recover a surface mesh from a point cloud, from depth maps, or from a triangle soup.

\b
Point clouds (default: screened Poisson, trimmed to follow the input so open scans stay open):
  facet3d mesh scan.ply --out mesh.ply
  facet3d mesh scan.pcd --out mesh.ply --viewpoint 0,0,0      (orient estimated normals to the sensor)
  facet3d mesh points.ply --out closed.ply --watertight        (keep Poisson's closed surface)
  facet3d mesh points.ply --out bpa.ply --method bpa           (ball radii from the point spacing)
Depth maps (TSDF fusion; cameras: core JSON, transforms.json, COLMAP model):
  facet3d mesh --from-depth depth/ --cameras cameras.json --out fused.ply --voxel 0.005
Triangle soups (weld, drop degenerate/duplicate faces and floaters, orient, report non-manifold parts):
  facet3d mesh --from-soup splats.stl --out clean.ply
"""


def _floats(text: Optional[str], what: str, n: Optional[int] = None) -> Optional[list[float]]:
    from facet3d.core.errors import UsageError

    if text is None:
        return None
    try:
        vals = [float(x) for x in text.replace(" ", ",").split(",") if x]
    except ValueError:
        raise UsageError(f"{what} expects comma-separated numbers, got '{text}'") from None
    if not vals or (n is not None and len(vals) != n):
        raise UsageError(f"{what} expects {n or 'some'} comma-separated numbers, got '{text}'")
    return vals


def _check_output(out: Path) -> None:
    """Fail before a long reconstruction, not after it, when the output cannot be written."""
    from facet3d.core.errors import UsageError
    from facet3d.core.io.api import registered_formats

    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise UsageError(f"{out}: folder {out.parent} does not exist")
    name = out.name.lower()
    if not any(spec.write is not None and "mesh" in spec.kinds and not spec.explicit_only
               and any(name.endswith(e) for e in spec.extensions) for spec in registered_formats().values()):
        raise UsageError(f"{out}: no mesh writer for this extension (try .ply, .obj, .off, .stl, .glb)")


def register(app: typer.Typer) -> None:
    @app.command("mesh", help=MESH_HELP)
    def mesh(
        src: Optional[Path] = typer.Argument(None, metavar="[INPUT]", help="Point cloud (or mesh: its vertices are used)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output mesh (format from the extension)."),
        method: str = typer.Option("poisson", "--method", "-m", help="poisson, bpa (ball pivoting) or alpha (alpha shapes)."),
        depth: int = typer.Option(8, "--depth", help="Poisson octree depth (grid 2^depth)."),
        scale: float = typer.Option(1.1, "--scale", help="Poisson: reconstruction cube / bounding cube."),
        linear_fit: bool = typer.Option(False, "--linear-fit", help="Poisson: linear interpolation of iso-vertices."),
        trim: Optional[float] = typer.Option(None, "--trim", help="Poisson: also drop vertices below this density quantile (e.g. 0.01)."),
        trim_distance: Optional[float] = typer.Option(None, "--trim-distance", help="Poisson: drop vertices farther than this many point spacings from the input (default 5; 0: off)."),
        watertight: bool = typer.Option(False, "--watertight", help="Poisson: keep the closed surface (no trimming)."),
        viewpoint: Optional[str] = typer.Option(None, "--viewpoint", help="x,y,z: orient estimated normals towards this point (scans)."),
        radii: Optional[str] = typer.Option(None, "--radii", help="BPA ball radii r1,r2,... (default: 1, 2, 4 x point spacing)."),
        alpha: Optional[float] = typer.Option(None, "--alpha", help="Alpha-shape alpha (default: 4 x point spacing)."),
        k: int = typer.Option(30, "--k", min=3, help="Neighbours for normal estimation."),
        renormal: bool = typer.Option(False, "--estimate-normals", help="Re-estimate normals even when the input has them."),
        from_depth: Optional[Path] = typer.Option(None, "--from-depth", help="Folder of depth maps (.npy metres, 16-bit .png mm, float .tif)."),
        cameras: Optional[Path] = typer.Option(None, "--cameras", help="Cameras for --from-depth: core JSON, transforms.json, COLMAP model."),
        colors: Optional[Path] = typer.Option(None, "--colors", help="Folder of colour images named like the depth maps."),
        voxel: Optional[float] = typer.Option(None, "--voxel", help="TSDF voxel size (default: scene width / 160)."),
        trunc: Optional[float] = typer.Option(None, "--trunc", help="TSDF truncation distance (default 5 voxels)."),
        depth_scale: Optional[float] = typer.Option(None, "--depth-scale", help="Depth units per scene unit (default 1000 for 16-bit PNG, else 1)."),
        depth_max: Optional[float] = typer.Option(None, "--depth-max", help="Ignore depth beyond this distance."),
        from_soup: Optional[Path] = typer.Option(None, "--from-soup", help="Triangle soup to weld and repair (STL, PLY, OBJ, ...)."),
        weld_tol: Optional[float] = typer.Option(None, "--weld-tol", help="Soup: weld vertices closer than this (default from the model's size and edges)."),
        min_component: Optional[float] = typer.Option(None, "--min-component", help="Drop pieces below this fraction (soup: of all faces, 0.001; TSDF: of the largest piece, 0.05)."),
        json_out: bool = typer.Option(False, "--json", help="Print what was done as JSON on stdout."),
    ) -> None:
        from facet3d.cli.console import err, print_json, progress
        from facet3d.core.errors import UsageError
        from facet3d.core.io.api import read, write

        modes = [m for m, on in (("INPUT", src is not None), ("--from-depth", from_depth is not None),
                                 ("--from-soup", from_soup is not None)) if on]
        if len(modes) != 1:
            raise UsageError("give exactly one of INPUT, --from-depth DIR or --from-soup FILE"
                             + (f" (got {', '.join(modes)})" if modes else ""))
        if (from_depth is None) != (cameras is None):
            raise UsageError("--from-depth and --cameras go together")
        _check_output(out)
        info: dict = {}
        if src is not None:
            from facet3d.plugins.mesh_recovery.surface_points import PointsToMesh, reconstruct_points

            opts = PointsToMesh(method=method, depth=depth, scale=scale, linear_fit=linear_fit, trim=trim,
                                trim_distance=trim_distance, watertight=watertight, radii=_floats(radii, "--radii"),
                                alpha=alpha, viewpoint=_floats(viewpoint, "--viewpoint", 3), k=k,
                                estimate_normals=True if renormal else None, info=info)
            opts.validate()
            geom = read(src)
            stages = ["normals", method] if method != "alpha" else [method]
            with progress() as bar:
                task = bar.add_task(f"mesh: {method}", total=len(stages) + 1)

                def report(stage: str) -> None:
                    bar.update(task, description=f"mesh: {stage}", advance=1)

                result = reconstruct_points(geom, opts, report)
                bar.update(task, completed=len(stages) + 1)
        elif from_depth is not None:
            from facet3d.plugins.mesh_recovery.surface_tsdf import fuse_depth, load_cameras

            cams = load_cameras(cameras)
            if getattr(cams, "meta_distortion", False):
                err.print("facet3d: warning: the COLMAP cameras have lens distortion; it is ignored (undistort first)")
            with progress() as bar:
                task = bar.add_task("TSDF fusion", total=None)
                result = fuse_depth(from_depth, cams, color_dir=colors, voxel=voxel, trunc=trunc, depth_scale=depth_scale,
                                    depth_max=depth_max, min_component=0.05 if min_component is None else min_component,
                                    info=info, progress=lambda i, n: bar.update(task, completed=i, total=n))
        else:
            from facet3d.plugins.mesh_recovery.surface_soup import describe, repair_soup

            result, rep = repair_soup(read(from_soup), tol=weld_tol, min_component=0.001 if min_component is None else min_component)
            info.update(rep)
            err.print(f"facet3d: {describe(rep)}")
        write(out, result)
        info.update(output=str(out), vertices=result.num_points, faces=result.num_faces)
        if json_out:
            print_json(info)
        err.print(f"facet3d: wrote {out} ({result.num_faces} faces, {result.num_points} vertices)")

    @app.command("compare")
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
        from facet3d.cli.console import out, print_json
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
