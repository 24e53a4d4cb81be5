"""Fit a triangle-splatting scene to posed photos: the training loop behind ``facet3d fit``.

The published recipe (30k iterations) with every schedule a function of the run's *progress*
f in [0, 1], so short CPU runs keep its shape (`FitConfig`, `Plan`, `Schedule` and `Pacer` live in
`facet3d.plugins.triangle_splatting.schedule`).  A `Plan` maps the iteration to f: with
``--iters N`` alone f = it / N (exactly the fractions of N the recipe states); with a time limit the
plan is measured and re-planned (below).  At f:

* loss ``0.8 L1 + 0.2 (1 - SSIM) + 0.0055 mean(opacity)`` on one random training view per step;
* Adam; learning rates: vertices 0.0018 x the camera extent (3DGS's spatial scale, which the
  official code inherits) decaying exponentially to 1/100 of it, SH dc 0.0025 (rest / 20),
  opacity 0.014, sigma 0.0008.  Runs shorter than 30k iterations scale these by
  ``s = clamp(sqrt(30000 / planned), 1, 4)`` (vertices by sqrt(s)), ``planned`` the plan's
  iteration count: measured on a synthetic scene, 400 iterations reach 30.6 dB with it and 24.4 dB
  with the 30k-iteration rates.  Every group's rate is set from the schedule at every step;
* SH degree +1 every 1/30 of the run (1k of 30k) up to 3;
* densify + prune every 1/60 of the run (500 of 30k) from 1/60 to 5/6 (500 -> 25k), at least one
  pass over the training views apart: prune triangles
  whose max blending weight over the interval stayed below ``prune_weight`` (only those in view of
  some camera in it: occluded ones go, TS+'s interior Delaunay faces above all)
  or whose opacity fell below 0.005, then grow the count by ``grow`` (1.3x) up to ``max_triangles``;
* TS+: one global sigma annealed 1.0 -> 0.0001 (log-linear) over the run, opacity floor raised
  0.1 -> 0.9999 between 1/6 and 4/5 of the run (5k -> 24k), so the result is opaque and hard;
  supersampling 2x from 2/3 and 4x from 5/6 (20k / 25k; on by default only on CUDA: it multiplies
  the CPU cost by 4-16).

The densify and SH events sit on grids of progress points fixed by the first plan (in iterations
of that plan: ``densify_iterations``, ``sh_iterations``); an event fires at the first iteration
whose progress reaches its point, so re-planning never repeats or undoes one.

Time limit (``cfg.time_limit`` seconds, `Pacer`): the loop first measures its speed over a short
warm-up (progress held at 0; the session's first iteration, which pays one-off compile and
allocation costs, is not counted), then plans the iteration count whose predicted cost - a + b x
triangles per step, the triangle count growing at each remaining densify event - fills 97% of the
budget, and re-plans from the recent rate after every densify event and every 5% of the budget.
The first plan, made before two triangle counts are measured, takes the cost as proportional to
triangles (conservative: it may plan low, and its count fixes the grids' one-pass-over-the-views
spacing); later plans correct the pace.  A re-plan keeps the progress reached and spreads the rest
of the schedule over the new count, so the run ends with a completed schedule; ``cfg.iters`` (when
given) caps the plan (``iters=None`` without a time limit: ``DEFAULT_ITERS``, 3000).  Should the time
run out anyway the loop stops (``stopped_early``).  The final checkpoint, evaluation and export come
after the loop and are not counted.  The final scene is always the schedule's end state (final SH
degree, TS+ sigma and opacity floor).  ``metrics.json`` records ``planned_iterations``,
``iterations`` (done), ``requested_iterations``, ``stopped_early`` and ``schedule_completed``;
``log.json`` every plan (``replans``: iteration, planned, sec_per_iter, triangles and the reason:
``iterations`` - set by ``--iters`` -, ``warm-up``, ``resume``, ``densify``, ``rate`` - a new triangle
count measured -, ``periodic``) and every densify event (``densify``).

Checkpoints (``RUN_DIR/checkpoint.pt``, plain CPU tensors, numbers and JSON strings, loadable with
``weights_only=True`` on any machine) hold the parameters, Adam state, densification statistics,
RNG, the iteration and the plan, so ``--resume`` continues exactly where a run stopped (`_resumed_plan`
says which plan it continues; with a time limit the budget left is ``time_limit - elapsed``).

Device: ``cfg.device`` holds everything that is trained or compared - the dataset's images, masks
and cameras (`dataset_to`), the background, the parameters and Adam's state.  The random generator
stays on the CPU (random draws are made there and moved), so a run is reproducible and resumable
across devices.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from facet3d.core.errors import InputError, UsageError
from facet3d.plugins.triangle_splatting.datasets import dataset_to
from facet3d.plugins.triangle_splatting.model import SplatModel
from facet3d.plugins.triangle_splatting.schedule import (DEFAULT_ITERS, FitConfig, Pacer, Plan, Schedule,  # noqa: F401
                                                         _initial_plan, _restore_plan, _resumed_plan,
                                                         densify_iterations, lr_scale, sh_iterations)

__all__ = ["FitConfig", "fit", "evaluate", "Schedule", "Plan", "Pacer", "initial_points", "check_run_dir",
           "densify_iterations", "sh_iterations", "DEFAULT_ITERS"]

# ---------------------------------------------------------------------- initialisation
def initial_points(dataset, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """SfM points when the dataset has them; else ``n`` random points in its bounds, carved by the
    training masks when the images had alpha (a point projecting onto background in any view that
    sees it cannot be on the object), coloured by the mean of the pixels they project to."""
    if dataset.points is not None and len(dataset.points) >= 4:
        return dataset.points.float(), None if dataset.point_colors is None else dataset.point_colors.float()
    lo, hi = (b.float() for b in dataset.bounds)
    views = dataset.train
    cams = views.cameras.to(dtype=torch.float32)
    keep_pts, keep_col = [], []
    for _ in range(20):  # carving may reject most samples: draw in rounds
        pts = lo + (hi - lo) * torch.rand(max(n, 1000) * 4, 3, generator=generator).to(lo.device)
        inside = torch.ones(len(pts), dtype=torch.bool, device=lo.device)
        col = torch.zeros(len(pts), 3, device=lo.device)
        cnt = torch.zeros(len(pts), device=lo.device)
        for b in range(len(cams)):
            uv, z = cams[b].project(pts)
            uv, z = uv[0], z[0]
            H, W = views.images.shape[1:3]
            j, i = uv[:, 0].round().long(), uv[:, 1].round().long()
            vis = (z > 0) & (j >= 0) & (j < W) & (i >= 0) & (i < H)
            jj, ii = j.clamp(0, W - 1), i.clamp(0, H - 1)
            if views.masks is not None:
                inside &= ~vis | (views.masks[b, ii, jj] > 0.5)
            col += torch.where(vis[:, None], views.images[b, ii, jj], torch.zeros(3, device=lo.device))
            cnt += vis.float()
        sel = inside.nonzero().flatten()
        keep_pts.append(pts[sel])
        keep_col.append(col[sel] / cnt[sel].clamp_min(1)[:, None])
        if sum(len(p) for p in keep_pts) >= n:
            break
    pts, col = torch.cat(keep_pts)[:n], torch.cat(keep_col)[:n]
    if len(pts) < 4:
        raise InputError("no initial points survive the masks: are the cameras and images consistent?")
    return pts, col


def _pixel_world(cameras, center: Tensor) -> float:
    """World size of one pixel at the scene centre (median over cameras): sets split/clone sizes."""
    d = (cameras.centers().float() - center).norm(dim=-1)
    f = cameras.K[:, 0, 0].float()
    return float((d / f).median())


def _scene_at(model: SplatModel, sched: Schedule, it: int):
    """The activated scene at iteration ``it`` (SH degree, TS+ sigma and opacity floor of the schedule)."""
    return model.scene(sched.sh_degree(it), sched.sigma(it) if model.form == "ts+" else None,
                       sched.opacity_floor(it))


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: SplatModel, views, background: Tensor, sched: Schedule, it: int,
             max_views: int | None = None) -> dict:
    """Mean PSNR / SSIM (3DGS definition, Gaussian window, same padding) over ``views``."""
    from facet3d.core.ops.image_metrics import psnr, ssim
    from facet3d.plugins.triangle_splatting.render import render

    scene = _scene_at(model, sched, it)
    n = len(views.names) if max_views is None else min(max_views, len(views.names))
    ps, ss, imgs = [], [], []
    for b in range(n):
        out = render(scene, views.cameras[b:b + 1], background=background)
        img = out["rgb"][0].clamp(0, 1)
        ps.append(float(psnr(img, views.images[b])))
        ss.append(float(ssim(img, views.images[b])))
        imgs.append(img)
    return dict(psnr=sum(ps) / max(1, n), ssim=sum(ss) / max(1, n), psnr_views=ps, ssim_views=ss,
                images=imgs, iteration=it)


def _save_preview(path: Path, gt: Tensor, pred: Tensor) -> None:
    import numpy as np
    from PIL import Image

    from facet3d.core.io.api import atomic_output

    row = torch.cat([gt, pred.clamp(0, 1)], 1).detach().cpu()
    arr = (row.numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


# ---------------------------------------------------------------------- the loop
def camera_extent(cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (3DGS's scene extent)."""
    c = cameras.centers().double()
    return 1.1 * float((c - c.mean(0)).norm(dim=-1).max().clamp_min(1e-6))


def _optimizer(model: SplatModel, lrs: dict[str, float]) -> torch.optim.Adam:
    groups = [dict(params=[t], lr=lrs[k], name=k) for k, t in model.params.items()]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def _set_lrs(opt: torch.optim.Adam, lrs: dict[str, float]) -> None:
    for g in opt.param_groups:
        g["lr"] = lrs[g["name"]]


def _render_train(model, sched, it, cam, background, image_size):
    from facet3d.plugins.triangle_splatting.render import render

    s = sched.supersample(it)
    scene = _scene_at(model, sched, it)
    if s == 1:
        return render(scene, cam, background=background)
    H, W = image_size
    K = cam.K.clone()
    K[:, :2, :2] *= s
    K[:, :2, 2] = (K[:, :2, 2] + 0.5) * s - 0.5
    from facet3d.core.structures.cameras import Cameras

    big = Cameras(K, cam.R, cam.t, (H * s, W * s), dtype=cam.K.dtype)
    out = render(scene, big, background=background)
    rgb = torch.nn.functional.avg_pool2d(out["rgb"].permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)
    return dict(out, rgb=rgb)


def _densify_and_prune(model: SplatModel, opt, maxw: Tensor, seen: Tensor, cfg: FitConfig, floor: float,
                       pix: float, gen: torch.Generator) -> dict:
    """One densify/prune event (module docstring) -> its counts: pruned, split, cloned, triangles."""
    if model.form == "ts+":  # TS+ keeps its surface: only faces no view used are dropped
        remove = seen & (maxw < cfg.prune_weight)
    else:
        remove = (seen & (maxw < cfg.prune_weight)) | (model.triangle_opacity(floor) < cfg.prune_opacity)
    n_pruned = model.prune(remove, opt)
    target = min(cfg.max_triangles, int(math.ceil(len(model) * cfg.grow)))
    counts = model.densify(target - len(model), 4.0 * pix, gen, opt, floor)
    return dict(pruned=n_pruned, split=counts["split"], cloned=counts["cloned"], triangles=len(model))


def check_run_dir(run: Path, resume: bool) -> None:
    """A run folder must be a folder, and hold no checkpoint unless resuming (UsageError)."""
    if run.exists() and not run.is_dir():
        raise UsageError(f"--out {run}: exists and is not a folder")
    if not resume and (run / "checkpoint.pt").exists():
        raise UsageError(f"--out {run}: holds a run already (checkpoint.pt); use --resume or another folder")


def _cpu(obj):
    """``obj`` (nested dicts / lists of tensors) with every tensor on the CPU: checkpoints load anywhere."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def fit(dataset, out_dir, cfg: FitConfig, resume: bool = False,
        on_step: Callable[[int, dict], None] | None = None, log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter, init=None) -> dict:
    """Train, write ``out_dir`` (scene.ply, checkpoint.pt, metrics.json, log.json, previews/), return metrics.

    ``init``: a `TriangleScene` to start from instead of points (``fit --init``; `SplatModel.from_scene`:
    its activated values become the raw parameters at the schedule's first step; a new run, so not
    with ``resume``).  The schedule itself starts afresh (SH degree, learning rates; TS+: sigma
    annealing and opacity floor).

    ``on_step(it, rec)`` after every iteration: rec holds loss, psnr, triangles and ``planned`` (the
    plan's iteration count; None during a time limit's warm-up).  ``clock``: seconds, for the time
    limit and the recorded times.  ``cfg.threads`` applies for this call only: the caller's torch
    thread count is restored after.
    """
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return _fit(dataset, out_dir, cfg, resume, on_step, log, clock, init)
    finally:
        torch.set_num_threads(threads)


def _requested_iterations(cfg: FitConfig) -> int | None:
    """What the run was asked for: ``cfg.iters``, else DEFAULT_ITERS, or None (as many as fit) with a time limit."""
    if cfg.iters is not None:
        return cfg.iters
    return None if cfg.time_limit is not None else DEFAULT_ITERS


def _log_compile(log) -> None:
    """After the first step: say what compiling the CPU rasterizer cost, when it was compiled here."""
    from facet3d.kernels.trisplat.numba_impl import compile_report

    rep = compile_report()
    if rep and not all(r["from_cache"] for r in rep.values()):
        secs = sum(r["seconds"] for r in rep.values())
        log(f"compiled the CPU rasterizer in {secs:.0f} s (first use; cached on disk for the next runs)")


def _fit(dataset, out_dir, cfg: FitConfig, resume: bool, on_step, log, clock, init=None) -> dict:
    from facet3d.core.checkpoints import load_checkpoint
    from facet3d.core.io.api import atomic_output
    from facet3d.core.ops.image_metrics import psnr, ssim

    if init is not None and resume:
        raise UsageError("a run starts from an initial scene or resumes its checkpoint, not both")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "previews").mkdir(exist_ok=True)
    log = log or (lambda s: None)
    gen = torch.Generator().manual_seed(cfg.seed)  # CPU: draws are moved (module docstring)
    dev = torch.device(cfg.device)
    dataset = dataset_to(dataset, dev)
    train, test = dataset.train, dataset.test
    bg = torch.tensor(dataset.background, dtype=torch.float32, device=dev)
    H, W = train.images.shape[1:3]
    center = (dataset.bounds[0].float() + dataset.bounds[1].float()) / 2
    pix = _pixel_world(train.cameras, center)
    extent = camera_extent(train.cameras)
    ckpt_path = out / "checkpoint.pt"
    history: list[dict] = []
    evals: list[dict] = []
    replans: list[dict] = []  # every plan made: iteration, planned, sec_per_iter, triangles, reason
    densified: list[dict] = []  # every densify event: iteration, progress, pruned, split, cloned, triangles
    start_it, elapsed0 = 0, 0.0
    if resume:
        if not ckpt_path.is_file():
            raise InputError(f"{ckpt_path}: nothing to resume (no checkpoint in {out})")
        ck = load_checkpoint(ckpt_path)
        if ck.get("mode") != cfg.mode:
            raise InputError(f"{ckpt_path}: checkpoint is mode {ck.get('mode')!r}, not {cfg.mode!r}")
        model = SplatModel.from_state_dict(cfg.mode, ck["model"]).to(dev)
        gen.set_state(ck["generator"])
        start_it, elapsed0 = int(ck["iteration"]), float(ck["elapsed"])
        maxw, seen = ck["max_weight"].to(dev), ck["seen"].to(dev)
        order = ck["view_order"].tolist()
        history = json.loads(ck["history"])
        evals = json.loads(ck["evals"])
        plan, replans, densified = _restore_plan(ck, cfg, start_it, len(model))
        log(f"resumed at iteration {start_it} ({len(model)} triangles)")
    else:
        if init is not None:  # the raw parameters under the schedule's first opacity floor (TS+)
            model = SplatModel.from_scene(init, cfg.mode, cfg.floor_start if cfg.mode == "ts+" else 0.0).to(dev)
            where = init.meta.get("source", "the given scene")
            log(f"initialised {len(model)} triangles from {where}"
                + (" (TS+ scene unshared into TS triangles)" if init.form != cfg.mode else ""))
        else:
            pts, cols = initial_points(dataset, cfg.init_points, gen)
            # initialisation (nearest neighbours, Delaunay) runs on the CPU; training on `dev`
            model = SplatModel.from_points(cfg.mode, pts.cpu(), None if cols is None else cols.cpu(), gen,
                                           cfg.init_opacity, cfg.init_sigma, max_radius=20 * pix).to(dev)
            log(f"initialised {len(model)} triangles from {len(pts)} points")
        maxw = torch.zeros(len(model), device=dev)
        seen = torch.zeros(len(model), dtype=torch.bool, device=dev)
        order = []  # views left in this epoch (popped from the end)
        plan = _initial_plan(cfg)
        if plan.started:
            replans.append(dict(iteration=0, planned=plan.planned, sec_per_iter=None, triangles=len(model),
                                reason="iterations"))
    sched = Schedule(cfg, len(train.names), plan)
    opt = _optimizer(model, sched.lrs(start_it, extent))
    if resume:
        opt.load_state_dict(ck["optimizer"])  # moves Adam's moments to the parameters' device
    pacer = Pacer(cfg) if cfg.time_limit is not None else None

    def save_checkpoint(it: int, elapsed: float) -> None:
        state = dict(mode=cfg.mode, model=model.state_dict(), optimizer=opt.state_dict(), generator=gen.get_state(),
                     iteration=it, elapsed=elapsed, max_weight=maxw, seen=seen,
                     view_order=torch.tensor(order, dtype=torch.int64), history=json.dumps(history),
                     evals=json.dumps(evals), config=json.dumps(asdict(cfg)),
                     plan=json.dumps(dict(plan=asdict(sched.plan), replans=replans, densify=densified)))
        with atomic_output(ckpt_path) as tmp:
            torch.save(_cpu(state), tmp)

    def run_eval(it: int, at: Schedule | None = None) -> dict:
        views = test if len(test.names) else train
        ev = evaluate(model, views, bg, at or sched, it)
        if ev["images"]:
            _save_preview(out / "previews" / f"it{it:06d}.png", views.images[0], ev["images"][0])
        rec = dict(iteration=it, psnr=ev["psnr"], ssim=ev["ssim"], triangles=len(model),
                   split="test" if len(test.names) else "train")
        evals.append(rec)
        log(f"eval it {it}: PSNR {ev['psnr']:.2f} dB  SSIM {ev['ssim']:.4f}  ({len(model)} triangles)")
        return ev

    def timed(kind: str, fn, *args):
        t = clock()
        r = fn(*args)
        if pacer is not None:
            pacer.overhead(kind, clock() - t)
        return r

    t0 = clock()
    elapsed = lambda: elapsed0 + clock() - t0  # noqa: E731
    it = start_it
    stopped_early = False
    while not sched.plan.finished(it):
        if cfg.time_limit is not None and elapsed() >= cfg.time_limit:
            stopped_early = True
            log(f"time limit reached at iteration {it} ({sched.frac(it):.0%} of the schedule)")
            break
        tick = clock()
        if not order:
            order = torch.randperm(len(train.names), generator=gen).tolist()
        b = order.pop()
        _set_lrs(opt, sched.lrs(it, extent))
        ss = sched.supersample(it)
        o = _render_train(model, sched, it, train.cameras[b:b + 1], bg, (H, W))
        img, gt = o["rgb"][0], train.images[b]
        l1 = (img - gt).abs().mean()
        d = 1.0 - ssim(img, gt)
        op_mean = torch.sigmoid(model.params["opacity"]).mean()
        loss = (1 - cfg.lambda_dssim) * l1 + cfg.lambda_dssim * d + cfg.lambda_opacity * op_mean
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            mw = o["max_weight"][0]
            maxw = torch.maximum(maxw, mw)
            seen |= o["n_touched"][0] > 0  # in view (occluded counts: occluded triangles are pruned)
            p = float(psnr(img.detach().clamp(0, 1), gt))
        it += 1
        if it == start_it + 1:
            _log_compile(log)
        tris = len(model)
        rec = dict(iteration=it, loss=float(loss.detach()), psnr=p, triangles=tris,
                   planned=sched.plan.planned if sched.plan.started else None)
        if it % 10 == 0 or it == sched.plan.planned:
            history.append(dict(rec, elapsed=round(elapsed(), 2)))
        if on_step:
            on_step(it, rec)
        if pacer is not None:
            pacer.record(clock() - tick, tris, ss)
        dens = sched.densify_now(it) and it < sched.plan.planned
        if dens:
            ev = timed("densify", _densify_and_prune, model, opt, maxw, seen, cfg, sched.opacity_floor(it), pix, gen)
            maxw = torch.zeros(len(model), device=dev)
            seen = torch.zeros(len(model), dtype=torch.bool, device=dev)
            densified.append(dict(iteration=it, progress=round(sched.frac(it), 6), **ev))
            log(f"it {it}: pruned {ev['pruned']}, split {ev['split']}, cloned {ev['cloned']} -> {ev['triangles']}")
        if cfg.eval_every and it % cfg.eval_every == 0 and it < sched.plan.planned:
            timed("eval", run_eval, it)
        if pacer is not None:
            new = pacer.replan(it, sched, len(model), elapsed(), dens)
            if new is not None:
                if new[1]["reason"] in ("warm-up", "resume"):
                    log(f"planned {new[1]['planned']} iterations for the time limit "
                        f"({1000 * new[1]['sec_per_iter']:.1f} ms per iteration at {new[1]['triangles']} triangles)")
                sched.plan = new[0]
                replans.append(new[1])
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0:
            timed("checkpoint", save_checkpoint, it, elapsed())
    train_time = elapsed()
    planned, completed, progress = sched.plan.planned, sched.plan.finished(it), sched.frac(it)
    save_checkpoint(it, train_time)
    if pacer is not None:
        log(f"schedule {'completed' if completed else f'at {progress:.0%}'}: {it} of {planned} planned iterations "
            f"in {train_time:.1f} s of {cfg.time_limit:.1f} s ({len(replans)} plans)")
    end = sched.completed(it)  # the final scene is the schedule's end state, even when the time ran out
    ev = run_eval(it, end)
    # the final scene as activated values (TS+: at its final sigma and opacity floor)
    scene = _scene_at(model, end, it)
    scene.save_ply(out / "scene.ply")
    views = test if len(test.names) else train
    metrics = dict(mode=cfg.mode, iterations=it, planned_iterations=planned if sched.plan.started else None,
                   requested_iterations=_requested_iterations(cfg), stopped_early=stopped_early,
                   schedule_completed=completed, schedule_progress=round(progress, 4), time_limit=cfg.time_limit,
                   train_seconds=round(train_time, 1), densify_events=len(densified),
                   triangles=len(model), psnr=ev["psnr"], ssim=ev["ssim"],
                   eval_split="test" if len(test.names) else "train", eval_views=len(views.names),
                   psnr_views=ev["psnr_views"], ssim_views=ev["ssim_views"], image_size=[H, W],
                   train_views=len(train.names), source=getattr(dataset, "source", None),
                   device=str(model.device))
    if cfg.mode == "ts+" and len(views.names):
        # the exported mesh as a standard engine shows it: opaque triangles with vertex colours
        from facet3d.plugins.triangle_splatting.export import scene_to_geometry
        from facet3d.plugins.triangle_splatting.mesh_eval import mesh_metrics

        mm = mesh_metrics(scene_to_geometry(scene), views, dataset.background)
        metrics.update(mesh_psnr=mm["mesh_psnr"], mesh_ssim=mm["mesh_ssim"], mesh_renderer="open3d RaycastingScene")
        _save_preview(out / "previews" / "mesh_raycast.png", views.images[0], mm["images"][0])
        log(f"exported mesh (open3d ray casting): PSNR {mm['mesh_psnr']:.2f} dB  SSIM {mm['mesh_ssim']:.4f}")
    logs = dict(history=history, evals=evals, replans=replans, densify=densified, config=asdict(cfg))
    for name, obj in (("metrics.json", metrics), ("log.json", logs)):
        with atomic_output(out / name) as tmp:
            Path(tmp).write_text(json.dumps(obj, indent=1))
    return metrics
