"""`facet3d bench mesh-poisson`: the plugin's point -> mesh path vs the same open3d calls made directly."""

from __future__ import annotations

import numpy as np

from facet3d.core.bench import BenchResult, Timing, time_repeats


def _bunny_points(n: int):
    """``n`` area-uniform points with normals on sample_data's Stanford bunny (an open real mesh)."""
    from facet3d.core.errors import Facet3DError
    from facet3d.core.io.api import read
    from facet3d.core.ops.sampling import sample_mesh_surface
    from facet3d.core.paths import default_sample_dir

    sample = default_sample_dir()
    if sample is None or not (sample / "meshes" / "stanford-bunny.obj").is_file():
        raise Facet3DError("benchmark needs sample_data/meshes/stanford-bunny.obj (a source checkout)")
    mesh = read(sample / "meshes" / "stanford-bunny.obj")
    s = sample_mesh_surface(mesh.vertices, mesh.faces, n, seed=0)
    return np.asarray(s.points, dtype=np.float64), np.asarray(s.normals, dtype=np.float64)


def mesh_poisson(repeats: int = 3, device: str = "cpu", n: int = 100_000, depth: int = 8, trim: float = 0.01) -> BenchResult:
    """Same process, same points (with normals), same Poisson parameters (depth, scale 1.1, width 0,
    no linear fit) and the same density-quantile trim.  The plugin also validates the input and
    trims by distance to it (KD-tree), and returns a numpy `Geometry`; open3d direct stops at its
    TriangleMesh."""
    from facet3d.core.o3d import import_open3d
    o3d = import_open3d()

    from facet3d.core.io.record import Geometry
    from facet3d.plugins.mesh_recovery._common import quiet_open3d
    from facet3d.plugins.mesh_recovery.surface_points import PointsToMesh, reconstruct_points

    pts, nrm = _bunny_points(n)

    def direct():
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        pcd.normals = o3d.utility.Vector3dVector(nrm)
        with quiet_open3d():
            mesh, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth, width=0, scale=1.1,
                                                                                    linear_fit=False, n_threads=1)
        dens = np.asarray(dens)
        mesh.remove_vertices_by_mask(dens < np.quantile(dens, trim))
        return mesh

    def ours():
        return reconstruct_points(Geometry(pts, normals=nrm), PointsToMesh(method="poisson", depth=depth, trim=trim))

    # interleave the two so background load hits both alike
    t_direct, t_ours = [], []
    for _ in range(repeats):
        t_direct += time_repeats(direct, 1, warmup=0)
        t_ours += time_repeats(ours, 1, warmup=0)
    res = BenchResult("mesh-poisson", "open3d direct", [Timing("open3d direct", t_direct), Timing("facet3d mesh (reconstruct_points)", t_ours)],
                      params={"n": n, "depth": depth, "trim_quantile": trim, "points": "stanford bunny samples with normals"})
    overhead = Timing("", t_ours).median / Timing("", t_direct).median - 1
    res.notes.append(f"overhead {overhead * 100:+.1f}% (target < 10%): input checks + distance trimming + conversion")
    return res
