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


def _smpl_sized(seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays of SMPL's sizes (6890 vertices, 24 joints, 10 betas, 207 pose blend shapes; SMPL's
    tree): the cost of LBS does not depend on the values."""
    from facet3d.plugins.mesh_recovery.body.smpl import SMPL_PARENTS

    rng = np.random.default_rng(seed)
    V, J = 6890, 24
    w = rng.random((V, J)) ** 4
    jreg = rng.random((J, V))
    return {"v_template": rng.normal(size=(V, 3)), "shapedirs": rng.normal(scale=0.01, size=(V, 3, 10)),
            "posedirs": rng.normal(scale=0.01, size=(V, 3, 207)), "J_regressor": jreg / jreg.sum(1, keepdims=True),
            "weights": w / w.sum(1, keepdims=True), "parents": np.array(SMPL_PARENTS)}


def body_lbs(repeats: int = 5, device: str = "cpu", batches: str = "1,64") -> BenchResult:
    """Forward passes (no grad, float32) of our `SMPLBody` LBS and smplx.lbs.lbs on the same SMPL-sized
    arrays and random poses, per batch size, interleaved; and Anny (13,718 vertices, 104 bones) when
    installed. Vertices per second = batch x vertices / median seconds."""
    import torch

    from facet3d.core.values import auto_device
    from facet3d.plugins.mesh_recovery.body.lbs import gemm_layout, joint_blend_shapes, lbs

    dev = torch.device(auto_device(device))
    a = _smpl_sized()
    t = lambda x: torch.as_tensor(x, dtype=torch.float32, device=dev)  # noqa: E731
    vt, sd, pd, jr, w = t(a["v_template"]), t(a["shapedirs"]), t(a["posedirs"]), t(a["J_regressor"]), t(a["weights"])
    parents = torch.as_tensor(a["parents"], dtype=torch.long, device=dev)
    try:
        import smplx.lbs as smplx_lbs
    except ImportError:
        smplx_lbs = None
    pd_smplx = pd.reshape(-1, pd.shape[-1]).T.contiguous()  # smplx's [P, V*3] layout
    sd_ours, pd_ours = gemm_layout(sd), gemm_layout(pd)  # as SMPLBody holds them
    jd = joint_blend_shapes(jr, vt, sd_ours)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)  # noqa: E731
    timings, notes = [], []
    sizes = [int(b) for b in batches.split(",") if b]
    for bsz in sizes:
        g = torch.Generator().manual_seed(bsz)
        betas = torch.randn(bsz, 10, generator=g).to(dev)
        pose = (0.3 * torch.randn(bsz, 24, 3, generator=g)).to(dev)

        def ours():
            with torch.no_grad():
                lbs(betas, pose, vt, sd_ours, pd_ours, jr, parents, w, jd)
            sync()

        def theirs():
            with torch.no_grad():
                smplx_lbs.lbs(betas, pose.reshape(bsz, -1), vt, sd, pd_smplx, jr, parents, w)
            sync()

        t_ours, t_theirs = [], []
        for _ in range(repeats):
            t_ours += time_repeats(ours, 1, warmup=1 if not t_ours else 0)
            if smplx_lbs is not None:
                t_theirs += time_repeats(theirs, 1, warmup=1 if not t_theirs else 0)
        if smplx_lbs is not None:
            timings.append(Timing(f"smplx.lbs batch {bsz}", t_theirs))
        timings.append(Timing(f"facet3d lbs batch {bsz}", t_ours))
        line = f"batch {bsz}: facet3d {bsz * 6890 / Timing('', t_ours).median / 1e6:.2f} M vertices/s"
        if smplx_lbs is not None:
            line += (f", smplx {bsz * 6890 / Timing('', t_theirs).median / 1e6:.2f} M vertices/s "
                     f"(facet3d/smplx speed {Timing('', t_theirs).median / Timing('', t_ours).median:.2f}x)")
        notes.append(line)
    try:
        from facet3d.plugins.mesh_recovery.body.anny_body import AnnyBody

        anny = AnnyBody(torch.float32).to(dev)
        for bsz in sizes:
            pose = 0.2 * torch.randn(bsz, 3 * (anny.num_joints - 1), generator=torch.Generator().manual_seed(bsz))

            def run_anny():
                with torch.no_grad():
                    anny(body_pose=pose.to(dev))
                sync()

            ta = time_repeats(run_anny, repeats, warmup=1)
            timings.append(Timing(f"anny batch {bsz}", ta))
            notes.append(f"anny batch {bsz}: {bsz * 13718 / Timing('', ta).median / 1e6:.2f} M vertices/s")
    except Exception as exc:  # noqa: BLE001  (Anny is optional: say why it is missing)
        notes.append(f"anny not timed: {exc}")
    baseline = timings[0].name
    return BenchResult("body-lbs", baseline, timings, params={"device": str(dev), "dtype": "float32",
                                                             "batches": sizes, "model": "SMPL-sized random arrays"},
                       notes=notes)
