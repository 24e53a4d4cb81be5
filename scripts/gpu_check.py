"""One-shot GPU check of every Triton kernel against its torch reference, with timings, and of
`facet3d fit` training on the device (timed; the model, images, cameras and background must live there).

Run once on a CUDA machine (budget: < 3 minutes):  python scripts/gpu_check.py
``--dry-run`` runs the same script on CPU through the Triton interpreter at tiny sizes (to test it).
Prints a compact table; writes gpu_check.json into $OUT when that is set. Each check is guarded
so one failure does not hide the others; the exit code is 1 if any check failed or mismatched.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

DRY = "--dry-run" in sys.argv
if DRY:
    os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
DEV = "cpu" if DRY else "cuda"


def _import_facet3d() -> None:
    """Make the repository root importable as `facet3d` when the package is not installed."""
    try:
        import facet3d  # noqa: F401
    except ImportError:
        import importlib.util

        root = Path(__file__).resolve().parents[1]
        spec = importlib.util.spec_from_file_location("facet3d", root / "__init__.py", submodule_search_locations=[str(root)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["facet3d"] = mod
        spec.loader.exec_module(mod)


_import_facet3d()
import torch  # noqa: E402

ROWS: list[dict] = []
T0 = time.perf_counter()


def timed(fn, repeats=5):
    from facet3d.core.bench import time_repeats

    if DRY:
        repeats = 1
    sync = None if DRY else torch.cuda.synchronize
    return sorted(time_repeats(fn, repeats=repeats, warmup=0 if DRY else 1, sync=sync))[repeats // 2]


def check(name, fn):
    t = time.perf_counter()
    try:
        row = fn()
    except Exception as exc:  # noqa: BLE001 - report and go on
        row = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=4)}
    row = {"check": name, **row, "wall_s": round(time.perf_counter() - t, 2)}
    ROWS.append(row)
    ok = "ok " if row.get("ok") else "BAD"
    speed = f"{row['ref_ms']:9.2f} {row['triton_ms']:9.2f} {row['ref_ms'] / row['triton_ms']:7.1f}x" if "triton_ms" in row else " " * 28
    print(f"{ok} {name:34s} {speed}  {row.get('detail', row.get('error', ''))}", flush=True)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator(device=DEV).manual_seed(seed), device=DEV)


def knn_case(B, N, M, k):
    def run():
        from facet3d.kernels.knn.reference import knn_torch
        from facet3d.kernels.knn.triton_impl import knn_triton

        q = rand(B, M, 3, seed=1).requires_grad_()
        p = rand(B, N, 3, seed=2).requires_grad_()
        d1, i1 = knn_triton(q, p, k)  # compiles
        d0, i0 = knn_torch(q, p, k)
        match = (i0 == i1).float().mean().item()
        dist_err = (d0 - d1).abs().max().item()
        w = torch.randn_like(d0)
        g0 = torch.autograd.grad((d0 * w).sum(), (q, p))
        g1 = torch.autograd.grad((d1 * w).sum(), (q, p))
        grad_err = max((a - b).abs().max().item() for a, b in zip(g0, g1))
        qd, pd = q.detach(), p.detach()
        # kernel alone (no torch re-sort / distance gather) for the raw speed
        from facet3d.kernels.knn import triton_impl as ti
        t_tri = timed(lambda: ti.knn_triton(qd, pd, k))
        t_ref = timed(lambda: knn_torch(qd, pd, k), repeats=3)
        ok = match == 1.0 and dist_err == 0.0 and grad_err < 1e-4
        return {"ok": ok, "ref_ms": t_ref * 1e3, "triton_ms": t_tri * 1e3, "idx_match": match,
                "max_dist_err": dist_err, "max_grad_err": grad_err,
                "detail": f"idx match {match:.6f}, |dd| {dist_err:.1e}, |dg| {grad_err:.1e}"}
    return run


def knn_lengths_case():
    from facet3d.kernels.knn.reference import knn_torch
    from facet3d.kernels.knn.triton_impl import knn_triton

    M, N = (40, 120) if DRY else (1000, 3000)
    q, p = (rand(4, M, 3, seed=3) * 4).round(), (rand(4, N, 3, seed=4) * 4).round()  # many ties
    ql, pl = torch.tensor([M, 17, M // 2, 1], device=DEV), torch.tensor([N, 40, N - 1, 8], device=DEV)
    i0, i1 = knn_torch(q, p, 8, ql, pl)[1], knn_triton(q, p, 8, ql, pl)[1]
    return {"ok": bool(torch.equal(i0, i1)), "detail": f"ties+lengths idx equal: {bool(torch.equal(i0, i1))}"}


def fps_case(B, N, n):
    def run():
        from facet3d.kernels.fps.reference import fps_torch, start_indices
        from facet3d.kernels.fps.triton_impl import fps_triton

        p = rand(B, N, 3, seed=5)
        lens = torch.full((B,), N, device=DEV, dtype=torch.int64)
        lens[-1] = N // 3
        s = start_indices(p, lens, "farthest_from_centroid")
        i1 = fps_triton(p, n, lens, s)
        i0 = fps_torch(p, n, lens, s)
        rows_equal = (i0 == i1).all(1).float().mean().item()
        first_bad = int((i0 != i1).any(0).nonzero()[0]) if rows_equal < 1 else -1
        t_tri = timed(lambda: fps_triton(p, n, lens, s))
        t_ref = timed(lambda: fps_torch(p, n, lens, s), repeats=3)
        return {"ok": rows_equal == 1.0, "ref_ms": t_ref * 1e3, "triton_ms": t_tri * 1e3,
                "rows_equal": rows_equal, "first_mismatch_step": first_bad,
                "detail": f"rows equal {rows_equal:.3f}" + (f", first mismatch at step {first_bad}" if first_bad >= 0 else "")}
    return run


def gather_case(B, N, M, K, C, dtype=torch.float32):
    def run():
        from facet3d.kernels.gather.reference import gather_torch
        from facet3d.kernels.gather.triton_impl import gather_triton

        f = torch.randn(B, N, C, device=DEV, dtype=dtype, requires_grad=True)
        idx = torch.randint(0, N, (B, M, K), device=DEV)
        o1, o0 = gather_triton(f, idx), gather_torch(f, idx)
        g = torch.randn_like(o0)
        gf1, gf0 = torch.autograd.grad(o1, f, g)[0], torch.autograd.grad(o0, f, g)[0]
        fwd_eq = bool(torch.equal(o0, o1))
        bwd_err = ((gf1.float() - gf0.float()).abs().max() / gf0.float().abs().max().clamp_min(1e-12)).item()
        t_tri = timed(lambda: torch.autograd.grad(gather_triton(f, idx), f, g))
        t_ref = timed(lambda: torch.autograd.grad(gather_torch(f, idx), f, g))
        tol = 1e-5 if dtype == torch.float32 else 1e-2
        return {"ok": fwd_eq and bwd_err < tol, "ref_ms": t_ref * 1e3, "triton_ms": t_tri * 1e3,
                "fwd_equal": fwd_eq, "bwd_rel_err": bwd_err, "detail": f"fwd equal {fwd_eq}, bwd rel err {bwd_err:.1e} (fwd+bwd timed)"}
    return run


def timed_budget(fn, repeats=5, slow_s=1.0, very_slow_s=5.0):
    """Like `timed`, but a slow call is timed once (or not repeated at all when very slow after its
    warmup), so the 1M-triangle reference keeps the script within budget."""
    from facet3d.core.bench import time_repeats

    if DRY:
        return time_repeats(fn, repeats=1, warmup=0)[0]
    sync = torch.cuda.synchronize
    t0 = time.perf_counter()
    fn()  # warmup (compiles)
    sync()
    first = time.perf_counter() - t0
    if first > very_slow_s:
        return first
    if first > slow_s:
        return time_repeats(fn, repeats=1, warmup=0, sync=sync)[0]
    return timed(fn, repeats)


def trisplat_scene(N, H, W, per_vertex=False, seed=7):
    """N small random triangles in the view frustum of an H x W camera (focal W): a few pixels each."""
    g = torch.Generator().manual_seed(seed)
    f = float(W)
    z = 2.0 + 8.0 * torch.rand(N, generator=g)
    sx, sy = torch.rand(N, generator=g) - 0.5, torch.rand(N, generator=g) - 0.5
    c = torch.stack([sx * W / f * z, sy * H / f * z, z], -1)
    size = (3.0 + 6.0 * torch.rand(N, 1, 1, generator=g)) * z[:, None, None] / f  # ~3-9 px
    v = c[:, None] + size * torch.randn(N, 3, 3, generator=g)
    col = torch.rand(N, 3, 3, generator=g) if per_vertex else torch.rand(N, 3, generator=g)
    op = 0.2 + 0.8 * torch.rand(N, generator=g)
    sg = 0.5 + 1.5 * torch.rand(N, generator=g)
    K = torch.tensor([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]])
    return [x.to(DEV) for x in (v, K, col, op, sg)]


_TS_KEYS = ("rgb", "alpha", "depth", "depth_acc", "normal")


def _ts_loss(out, w):
    return sum((out[k] * w[k]).sum() for k in _TS_KEYS)


def trisplat_case(N, H, W, per_vertex=False, compare=True, time_ref=True):
    """Triton rasterizer vs the torch reference: outputs + gradients (when `compare`), forward and
    forward+backward timings (reference timed once when slow; skipped when `time_ref` is False)."""
    def run():
        from facet3d.kernels.trisplat.reference import rasterize_triangles as ref
        from facet3d.kernels.trisplat.triton_impl import rasterize_triangles_triton as tri

        v, K, col, op, sg = trisplat_scene(N, H, W, per_vertex)
        bg = torch.tensor([0.1, 0.2, 0.3], device=DEV)
        leaves = [x.requires_grad_() for x in (v, col, op, sg)]
        row = {"N": N, "H": H, "W": W, "per_vertex": per_vertex}
        ok = True
        o1 = tri(v, K, col, op, sg, (H, W), bg)  # compiles
        gen = torch.Generator().manual_seed(3)
        w = {k: torch.randn(o1[k].shape, generator=gen).to(DEV) for k in _TS_KEYS}
        if compare:
            o0 = ref(v, K, col, op, sg, (H, W), bg)
            out_err = max(((o0[k] - o1[k]).abs().max() / o0[k].abs().max().clamp_min(1.0)).item() for k in _TS_KEYS)
            mw_err = (o0["max_weight"] - o1["max_weight"]).abs().max().item()
            # pixels whose contributors differ (alpha or T within rounding of a threshold) are rare
            bad_px = ((o0["rgb"] - o1["rgb"]).abs().amax(-1) > 1e-3).float().mean().item()
            g0 = torch.autograd.grad(_ts_loss(o0, w), leaves)
            g1 = torch.autograd.grad(_ts_loss(o1, w), leaves)
            grad_err = {n: ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
                        for n, a, b in zip(("verts", "colors", "opacity", "sigma"), g0, g1)}
            ok = out_err < 1e-3 and bad_px < 1e-3 and max(grad_err.values()) < 1e-2 and \
                all(torch.isfinite(x).all() for x in g1)
            row.update(max_out_err=out_err, max_weight_err=mw_err, bad_pixel_frac=bad_px, grad_rel_err=grad_err)
        with torch.no_grad():
            t_tri = timed_budget(lambda: tri(v, K, col, op, sg, (H, W), bg))
        t_tri_b = timed_budget(lambda: torch.autograd.grad(_ts_loss(tri(v, K, col, op, sg, (H, W), bg), w), leaves))
        row.update(triton_fwd_ms=t_tri * 1e3, triton_fwdbwd_ms=t_tri_b * 1e3, triton_ms=t_tri_b * 1e3)
        if time_ref:
            with torch.no_grad():
                t_ref = timed_budget(lambda: ref(v, K, col, op, sg, (H, W), bg), repeats=3)
            row.update(ref_fwd_ms=t_ref * 1e3)
            try:  # the reference keeps every covered (pixel, triangle) pair for autograd: may not fit
                t_ref_b = timed_budget(lambda: torch.autograd.grad(_ts_loss(ref(v, K, col, op, sg, (H, W), bg), w),
                                                                   leaves), repeats=3)
                row.update(ref_fwdbwd_ms=t_ref_b * 1e3, ref_ms=t_ref_b * 1e3)
            except torch.cuda.OutOfMemoryError as exc:
                row.update(ref_fwdbwd_error=f"OutOfMemoryError: {str(exc)[:200]}", ref_ms=t_ref * 1e3,
                           triton_ms=t_tri * 1e3)  # speedup column: forward only
                torch.cuda.empty_cache()
        detail = f"fwd {t_tri * 1e3:.1f} ms, fwd+bwd {t_tri_b * 1e3:.1f} ms"
        if time_ref:
            detail += f" (ref {row['ref_fwd_ms']:.0f} / {row.get('ref_fwdbwd_ms', float('nan')):.0f} ms)"
        if compare:
            detail += f"; |dout| {out_err:.1e}, bad px {bad_px:.1e}, |dg|rel {max(grad_err.values()):.1e}"
        if not time_ref:
            row.pop("triton_ms")  # no reference: no speedup column
        return {"ok": ok, **row, "detail": detail}
    return run


# DFA3D reference sizes (BEVFormer-base + DFA3D): 6 views, 4 levels, 8 heads x 32, 112 bins, 10k queries, 8 points
DFA3D_REF = dict(views=6, levels=[(116, 200), (58, 100), (29, 50), (15, 25)], heads=8, channels=32, bins=112,
                 queries=10_000, points=8)
DFA3D_DRY = dict(views=1, levels=[(6, 8), (3, 4)], heads=2, channels=5, bins=5, queries=6, points=2)


def _dfa3d_inputs(sizes, dtype=torch.float32, seed=0):
    from facet3d.kernels.dfa3d.bench import make_inputs

    return make_inputs(sizes["views"], sizes["levels"], sizes["heads"], sizes["channels"], sizes["bins"],
                       sizes["queries"], sizes["points"], device=DEV, dtype=dtype, seed=seed)


def _dfa3d_grads(fn, args, **options):
    """(output, the four input gradients) under a fixed random linear loss, and a closure timing that."""
    value, dist, shapes, starts, loc, attn = args
    leaves = [t.detach().clone().requires_grad_() for t in (value, dist, loc, attn)]
    w = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3], device=DEV,
                    generator=torch.Generator(device=DEV).manual_seed(1)).to(value.dtype)

    def step():
        out = fn(leaves[0], leaves[1], shapes, starts, leaves[2], leaves[3], **options)
        return out, torch.autograd.grad((out * w).sum(), leaves)
    out, grads = step()
    return out, grads, step


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / a.float().abs().max().clamp_min(1e-12)).item()


_DFA3D_NAMES = ("value", "dist", "loc", "attn")


def dfa3d_case(sizes, tag=""):
    """Triton DFA3D vs the torch reference in float32: output, all four gradients (atomic and
    deterministic backward), bitwise repeatability of the deterministic one; fwd and fwd+bwd timed."""
    def run():
        from facet3d.kernels.dfa3d.reference import dfa3d_torch
        from facet3d.kernels.dfa3d.triton_impl import dfa3d_triton

        args = _dfa3d_inputs(sizes)
        o1, g1, step1 = _dfa3d_grads(dfa3d_triton, args)  # compiles
        o0, g0, step0 = _dfa3d_grads(dfa3d_torch, args)
        od, gd, stepd = _dfa3d_grads(dfa3d_triton, args, deterministic=True)
        _, gd2, _ = _dfa3d_grads(dfa3d_triton, args, deterministic=True)
        out_err = _rel(o0, o1)
        grad_err = {n: _rel(a, b) for n, a, b in zip(_DFA3D_NAMES, g0, g1)}
        det_err = {n: _rel(a, b) for n, a, b in zip(_DFA3D_NAMES, g0, gd)}
        bitwise = all(torch.equal(a, b) for a, b in zip(gd, gd2)) and torch.equal(od, o1)
        finite = all(torch.isfinite(g).all().item() for g in g1 + gd)
        ok = out_err < 1e-5 and max(grad_err.values()) < 1e-4 and max(det_err.values()) < 1e-4 and bitwise and finite
        with torch.no_grad():
            t_tri = timed(lambda: dfa3d_triton(*args))
            t_ref = timed(lambda: dfa3d_torch(*args), repeats=3)
        t_tri_b = timed(step1)
        t_det_b = timed(stepd)
        t_ref_b = timed(step0, repeats=3)
        return {"ok": ok, "ref_ms": t_ref_b * 1e3, "triton_ms": t_tri_b * 1e3, "ref_fwd_ms": t_ref * 1e3,
                "triton_fwd_ms": t_tri * 1e3, "ref_fwdbwd_ms": t_ref_b * 1e3, "triton_fwdbwd_ms": t_tri_b * 1e3,
                "triton_fwdbwd_det_ms": t_det_b * 1e3, "max_out_rel_err": out_err, "grad_rel_err": grad_err,
                "det_grad_rel_err": det_err, "det_bitwise_repeatable": bitwise,
                "detail": f"fwd {t_tri * 1e3:.2f} ms (ref {t_ref * 1e3:.1f}, {t_ref / t_tri:.1f}x); fwd+bwd "
                          f"{t_tri_b * 1e3:.1f} ms, det {t_det_b * 1e3:.1f} ms; |dout| {out_err:.1e}, "
                          f"|dg|rel {max(grad_err.values()):.1e}, det {max(det_err.values()):.1e}, bitwise {bitwise}"}
    return run


def dfa3d_half_case(sizes, dtype):
    """float16 / bfloat16 inputs: the forward (and the gradients) against the float32 reference on
    the same, rounded, inputs; outputs and gradients keep the input dtype."""
    def run():
        from facet3d.kernels.dfa3d.reference import dfa3d_torch
        from facet3d.kernels.dfa3d.triton_impl import dfa3d_triton

        args = _dfa3d_inputs(sizes, dtype)
        args32 = [t.float() if t.is_floating_point() else t for t in args]
        o1, g1, _ = _dfa3d_grads(dfa3d_triton, args)
        o0, g0, _ = _dfa3d_grads(dfa3d_torch, args32)
        out_err = _rel(o0, o1)
        grad_err = {n: _rel(a, b) for n, a, b in zip(_DFA3D_NAMES, g0, g1)}
        tol = 5e-3 if dtype == torch.float16 else 3e-2  # the output's own rounding dominates
        dtypes_ok = o1.dtype == dtype and all(g.dtype == dtype for g in g1)
        finite = all(torch.isfinite(g).all().item() for g in g1)
        ok = out_err < tol and max(grad_err.values()) < 10 * tol and dtypes_ok and finite
        with torch.no_grad():
            t_tri = timed(lambda: dfa3d_triton(*args))
        return {"ok": ok, "max_out_rel_err": out_err, "grad_rel_err": grad_err, "dtypes_ok": dtypes_ok,
                "triton_fwd_ms": t_tri * 1e3,
                "detail": f"|dout| {out_err:.1e} (tol {tol:.0e}), |dg|rel {max(grad_err.values()):.1e}, "
                          f"dtypes {dtypes_ok}; fwd {t_tri * 1e3:.2f} ms"}
    return run


def dispatch_case():
    from facet3d.kernels.dispatch import pick

    q = rand(1, 10, 3)
    idx = torch.zeros(1, 2, 2, dtype=torch.int64, device=DEV)
    tris = rand(4, 3, 3) + torch.tensor([0.0, 0.0, 2.0], device=DEV)
    K = torch.eye(3, device=DEV)
    names = [pick("knn", q, q, 2, None, None)[0].name, pick("gather", q, idx)[0].name,
             pick("trisplat", tris, K, rand(4, 3), rand(4), 1.0, (8, 8))[0].name,
             pick("dfa3d", *_dfa3d_inputs(DFA3D_DRY))[0].name]
    # On CUDA automatic dispatch must pick Triton; on the CPU dry run it must keep the CPU paths
    # (the interpreter is only used when asked for by name).
    expected_auto = ["triton"] * 4 if not DRY else [n for n in names if n != "triton"]
    forced = pick("knn", q, q, 2, None, None, backend="triton")[0].name
    return {"ok": names == expected_auto and forced == "triton", "detail": f"auto on {DEV}: {names}; forced: {forced}"}


def fit_case(size, views, iters):
    """Fit TS to a small rendered sphere on DEV: time it, and check where every training tensor lives."""
    def run():
        import tempfile
        from types import SimpleNamespace as NS

        import trimesh

        from facet3d.core.structures.cameras import Cameras
        from facet3d.plugins.triangle_splatting import fit as fit_mod
        from facet3d.plugins.triangle_splatting.render import orbit_cameras, render
        from facet3d.plugins.triangle_splatting.scene import TriangleScene

        m = trimesh.creation.icosphere(2, radius=0.6)
        scene = TriangleScene.from_mesh(m.vertices, m.faces, 0.5 + 0.4 * np.sin(3 * np.asarray(m.vertices)))
        a = orbit_cameras((0, 0, 0), 2.5, views, size, fov=45, elevation=25, dtype=torch.float32)
        cams = Cameras(a.K, a.R, a.t, (size, size), [f"r_{i}" for i in range(views)], dtype=torch.float32)
        with torch.no_grad():
            o = render(scene, cams, background=(1, 1, 1), hard=True)
        v = NS(images=o["rgb"].float(), cameras=cams, names=cams.names, masks=o["alpha"].float())
        ds = NS(train=v, test=v, points=None, point_colors=None, bounds=(torch.full((3,), -1.0), torch.full((3,), 1.0)),
                background=(1.0, 1.0, 1.0), source="sphere", format="synthetic")
        seen = set()
        inner = fit_mod._render_train

        def spy(model, sched, it, cam, background, image_size):
            seen.update({str(t.device) for t in model.params.values()} | {str(cam.K.device), str(background.device)})
            return inner(model, sched, it, cam, background, image_size)

        fit_mod._render_train = spy
        try:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = fit_mod.FitConfig(iters=iters, init_points=300, checkpoint_every=0, device=DEV)
                t0 = time.perf_counter()
                met = fit_mod.fit(ds, tmp, cfg)
                if not DRY:
                    torch.cuda.synchronize()
                secs = time.perf_counter() - t0
                ck = torch.load(Path(tmp) / "checkpoint.pt", weights_only=True)  # no map_location: saved on CPU
                ck_devs = {str(t.device) for t in ck["model"].values()}
        finally:
            fit_mod._render_train = inner
        want = "cpu" if DRY else "cuda:0"
        ok = seen == {want} and met["device"] == want and ck_devs == {"cpu"}
        return {"ok": ok, "fit_s": secs, "ms_per_iter": 1e3 * secs / iters, "psnr": met["psnr"],
                "devices": sorted(seen), "model_device": met["device"], "checkpoint_devices": sorted(ck_devs),
                "detail": f"{iters} iters {size}x{size}: {secs:.1f} s ({1e3 * secs / iters:.0f} ms/it), PSNR "
                          f"{met['psnr']:.1f}; training tensors on {sorted(seen)}, checkpoint on {sorted(ck_devs)}"}
    return run


def fastvggt_case(frames):
    """Full VGGT-1B (random weights, bf16, heads fp32) merged vs unmerged at `frames` on DEV; the dry run uses
    the tiny config's aggregator on CPU. ok = every size ran (or ran out of memory unmerged only) and merging
    is not slower at the largest size."""
    def run():
        from facet3d.plugins.fastvggt import bench as fvb

        if DRY:
            r = fvb.aggregator(repeats=1, device="cpu", frames=frames[-1], config="tiny", height=28, width=42)
            return {"ok": len(r.timings) == 2, "detail": "; ".join(r.notes)}
        rows = fvb.full_model_cuda(frames=tuple(frames), repeats=1, log=None)
        by = {(r["frames"], r["mode"]): r for r in rows}
        parts, ok = [], True
        for S in frames:
            u, m = by[(S, "unmerged")], by[(S, "merged")]
            if "error" in m:
                ok = False
            if "seconds" in u and "seconds" in m:
                parts.append(f"S={S}: {u['seconds']:.1f} s / {u['peak_gib']:.1f} GiB -> {m['seconds']:.1f} s / "
                             f"{m['peak_gib']:.1f} GiB ({u['seconds'] / m['seconds']:.2f}x)")
            else:
                parts.append(f"S={S}: unmerged {u.get('error', 'ok')[:40]}, merged {m.get('seconds', m.get('error'))}")
        last = by[(frames[-1], "unmerged")], by[(frames[-1], "merged")]
        if all("seconds" in r for r in last):
            ok = ok and last[1]["seconds"] <= last[0]["seconds"]
        return {"ok": ok, "rows": rows, "detail": "; ".join(parts)}
    return run


def main() -> int:
    if not DRY and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (--dry-run tests this script on CPU)")
        return 2
    import triton

    device_name = "cpu (Triton interpreter, dry run)" if DRY else torch.cuda.get_device_name()
    print(f"{device_name} | torch {torch.__version__} | triton {triton.__version__}")
    print(f"{'':4s}{'check':34s} {'ref ms':>9s} {'triton ms':>9s} {'speedup':>8s}  detail")
    check("dispatch", dispatch_case)
    if DRY:  # tiny sizes: the interpreter is ~10^4x slower
        check("knn dry k5", knn_case(2, 100, 40, 5))
        check("knn ties + lengths k8", knn_lengths_case)
        check("fps dry", fps_case(2, 100, 10))
        check("gather dry", gather_case(2, 50, 8, 4, 5))
        check("gather fp16 dry", gather_case(2, 50, 8, 4, 3, torch.float16))
        check("trisplat dry 24x40 N30", trisplat_case(30, 24, 40))
        check("trisplat dry per-vertex", trisplat_case(20, 24, 40, per_vertex=True))
        check("dfa3d dry fp32 fwd+grads", dfa3d_case(DFA3D_DRY))
        check("dfa3d dry fp16", dfa3d_half_case(DFA3D_DRY, torch.float16))
        check("fit dry 24px 4 views", fit_case(24, 4, 6))
        check("fastvggt dry tiny aggregator", fastvggt_case([3]))
    else:
        check("fit ts 128px 16 views 300 it", fit_case(128, 16, 300))
        check("knn B8 N16384 M4096 k16", knn_case(8, 16384, 4096, 16))
        check("knn B8 N16384 M4096 k32", knn_case(8, 16384, 4096, 32))
        check("knn B2 N5000 M1000 k1", knn_case(2, 5000, 1000, 1))
        check("knn ties + lengths k8", knn_lengths_case)
        check("fps B8 N16384 -> 1024", fps_case(8, 16384, 1024))
        check("fps B32 N2048 -> 512", fps_case(32, 2048, 512))
        check("gather B8 N16384 M4096 K32 C64", gather_case(8, 16384, 4096, 32, 64))
        check("gather fp16 B8 N4096 M1024 K16 C3", gather_case(8, 4096, 1024, 16, 3, torch.float16))
        # dfa3d at the BEVFormer-base + DFA3D sizes (6 views, 4 levels, 112 bins, 10k queries)
        check("dfa3d ref sizes fp32 fwd+grads", dfa3d_case(DFA3D_REF))
        check("dfa3d ref sizes fp16", dfa3d_half_case(DFA3D_REF, torch.float16))
        check("dfa3d ref sizes bf16", dfa3d_half_case(DFA3D_REF, torch.bfloat16))
        # trisplat: correctness at a moderate size, then timings (reference timed once when slow)
        check("trisplat 360x640 N50k", trisplat_case(50_000, 360, 640))
        check("trisplat 360x640 N50k per-vertex", trisplat_case(50_000, 360, 640, per_vertex=True))
        check("trisplat 720x1280 N200k", trisplat_case(200_000, 720, 1280, compare=False))
        if time.perf_counter() - T0 < 120:  # the reference at 1M triangles can take many seconds
            check("trisplat 720x1280 N1M", trisplat_case(1_000_000, 720, 1280, compare=False))
        else:
            check("trisplat 720x1280 N1M (triton only)", trisplat_case(1_000_000, 720, 1280, compare=False,
                                                                       time_ref=False))
    if not DRY:  # last: FastVGGT's full VGGT-1B merged vs unmerged (a few minutes on an H100-class GPU)
        check("fastvggt vggt-1b 100/300/500 frames", fastvggt_case([100, 300, 500]))
    total = time.perf_counter() - T0
    print(f"total {total:.1f} s; {sum(r.get('ok', False) for r in ROWS)}/{len(ROWS)} ok")
    out = os.environ.get("OUT")
    if out:
        info = {"device": device_name, "torch": torch.__version__, "triton": triton.__version__,
                "total_s": total, "checks": ROWS}
        Path(out, "gpu_check.json").write_text(json.dumps(info, indent=1, default=str))
    return 0 if all(r.get("ok") for r in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
