"""Fit a triangle-splatting scene to posed photos: the training loop behind ``facet3d fit``.

The published recipe (30k iterations) with every schedule expressed as a *fraction* of the run so
short CPU runs keep its shape:

* loss ``0.8 L1 + 0.2 (1 - SSIM) + 0.0055 mean(opacity)`` on one random training view per step;
* Adam; learning rates: vertices 0.0018 x the camera extent (3DGS's spatial scale, which the
  official code inherits) decaying exponentially to 1/100 of it, SH dc 0.0025 (rest / 20),
  opacity 0.014, sigma 0.0008.  Runs shorter than 30k iterations scale these by
  ``s = clamp(sqrt(30000 / iters), 1, 4)`` (vertices by sqrt(s)): measured on a synthetic scene,
  400 iterations reach 30.6 dB with it and 24.4 dB with the 30k-iteration rates;
* SH degree +1 every 1/30 of the run (1k of 30k) up to 3;
* densify + prune every 1/60 of the run (500 of 30k) from 1/60 to 5/6 (500 -> 25k): prune triangles
  whose max blending weight over the interval stayed below ``prune_weight`` (only those in view of
  some camera in it: occluded ones go, TS+'s interior Delaunay faces above all)
  or whose opacity fell below 0.005, then grow the count by ``grow`` (1.3x) up to ``max_triangles``;
* TS+: one global sigma annealed 1.0 -> 0.0001 (log-linear) over the run, opacity floor raised
  0.1 -> 0.9999 between 1/6 and 4/5 of the run (5k -> 24k), so the result is opaque and hard;
  supersampling 2x from 2/3 and 4x from 5/6 (20k / 25k; on by default only on CUDA: it multiplies
  the CPU cost by 4-16).

Checkpoints (``RUN_DIR/checkpoint.pt``, plain CPU tensors and numbers, loadable with
``weights_only=True`` on any machine) hold the parameters, Adam state, densification statistics,
RNG and the iteration, so ``--resume`` continues exactly where a run stopped.

Device: ``cfg.device`` holds everything that is trained or compared - the dataset's images, masks
and cameras (`dataset_to`), the background, the parameters and Adam's state.  The random generator
stays on the CPU (random draws are made there and moved), so a run is reproducible and resumable
across devices.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from facet3d.core.errors import InputError, UsageError
from facet3d.plugins.triangle_splatting.datasets import dataset_to
from facet3d.plugins.triangle_splatting.model import SplatModel

__all__ = ["FitConfig", "fit", "evaluate", "Schedule", "initial_points", "check_run_dir"]


@dataclass
class FitConfig:
    mode: str = "ts"  # "ts" | "ts+"
    iters: int = 3000
    seed: int = 0
    lr_verts: float = 0.0018  # x the camera extent (3DGS's spatial_lr_scale) x sqrt(lr_scale)
    lr_verts_final_ratio: float = 0.01
    lr_dc: float = 0.0025
    lr_rest: float = 0.0025 / 20
    lr_opacity: float = 0.014
    lr_sigma: float = 0.0008
    lr_scale: float | None = None  # None: clamp(sqrt(30000 / iters), 1, 4) (short runs need larger steps)
    lambda_dssim: float = 0.2
    lambda_opacity: float = 0.0055
    init_opacity: float = 0.28
    init_sigma: float = 1.16
    init_points: int = 20000  # random init (no SfM points): points sampled in the bounds
    grow: float = 1.3
    max_triangles: int = 300_000
    prune_weight: float = 0.01
    prune_opacity: float = 0.005
    densify_every: float = 1 / 60
    densify_from: float = 1 / 60
    densify_until: float = 5 / 6
    sh_every: float = 1 / 30
    sh_degree: int = 3
    sigma_start: float = 1.0  # ts+
    sigma_end: float = 1e-4
    floor_start: float = 0.1
    floor_end: float = 0.9999
    floor_from: float = 1 / 6
    floor_until: float = 0.8
    supersample: bool | None = None  # None: on with CUDA only (ts+)
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int = 500
    preview_every: int = 0  # 0: with evaluations
    time_limit: float | None = None  # seconds; stop early (checkpoint + evaluation still happen)
    device: str = "cpu"
    threads: int | None = None
    extra: dict = field(default_factory=dict)


class Schedule:
    """Every schedule of the recipe as a function of the iteration ``it`` (0-based)."""

    def __init__(self, cfg: FitConfig, n_views: int = 1) -> None:
        self.c = cfg
        self.n_views = n_views  # densification statistics should cover every training view once

    def frac(self, it: int) -> float:
        return it / max(1, self.c.iters)

    def lr_verts(self, it: int, extent: float = 1.0) -> float:
        t = min(1.0, self.frac(it))
        return self.c.lr_verts * extent * math.sqrt(lr_scale(self.c)) * self.c.lr_verts_final_ratio ** t

    def sh_degree(self, it: int) -> int:
        step = max(1, round(self.c.sh_every * self.c.iters))
        return min(self.c.sh_degree, it // step)

    def densify_now(self, it: int) -> bool:
        every = max(1, round(self.c.densify_every * self.c.iters), self.n_views)
        start = max(1, round(self.c.densify_from * self.c.iters), self.n_views)
        return it >= start and it <= self.c.densify_until * self.c.iters and it % every == 0

    def sigma(self, it: int) -> float:
        t = min(1.0, self.frac(it))
        return math.exp((1 - t) * math.log(self.c.sigma_start) + t * math.log(self.c.sigma_end))

    def opacity_floor(self, it: int) -> float:
        if self.c.mode != "ts+":
            return 0.0
        a, b = self.c.floor_from * self.c.iters, self.c.floor_until * self.c.iters
        if it <= a:
            return self.c.floor_start
        t = min(1.0, (it - a) / max(1.0, b - a))
        return self.c.floor_start + t * (self.c.floor_end - self.c.floor_start)

    def supersample(self, it: int) -> int:
        on = self.c.supersample if self.c.supersample is not None else self.c.device.startswith("cuda")
        if self.c.mode != "ts+" or not on:
            return 1
        f = self.frac(it)
        return 4 if f >= 5 / 6 else 2 if f >= 2 / 3 else 1

    def final(self) -> dict:
        it = self.c.iters
        return dict(sh=self.sh_degree(it), sigma=self.sigma(it) if self.c.mode == "ts+" else None,
                    floor=self.opacity_floor(it))


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
def lr_scale(cfg: FitConfig) -> float:
    """Learning-rate multiplier for runs shorter than the published 30k iterations."""
    if cfg.lr_scale is not None:
        return cfg.lr_scale
    return min(4.0, max(1.0, math.sqrt(30000 / max(1, cfg.iters))))


def camera_extent(cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (3DGS's scene extent)."""
    c = cameras.centers().double()
    return 1.1 * float((c - c.mean(0)).norm(dim=-1).max().clamp_min(1e-6))


def _optimizer(model: SplatModel, cfg: FitConfig) -> torch.optim.Adam:
    s = lr_scale(cfg)
    lrs = dict(verts=cfg.lr_verts, dc=cfg.lr_dc * s, rest=cfg.lr_rest * s, opacity=cfg.lr_opacity * s,
               sigma=cfg.lr_sigma * s)
    groups = [dict(params=[t], lr=lrs[k], name=k) for k, t in model.params.items()]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


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
        on_step: Callable[[int, dict], None] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Train, write ``out_dir`` (scene.ply, checkpoint.pt, metrics.json, log.json, previews/), return metrics.

    ``cfg.threads`` applies for this call only: the caller's torch thread count is restored after.
    """
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return _fit(dataset, out_dir, cfg, resume, on_step, log)
    finally:
        torch.set_num_threads(threads)


def _fit(dataset, out_dir, cfg: FitConfig, resume: bool, on_step, log) -> dict:
    from facet3d.core.checkpoints import load_checkpoint
    from facet3d.core.io.api import atomic_output
    from facet3d.core.ops.image_metrics import psnr, ssim

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "previews").mkdir(exist_ok=True)
    log = log or (lambda s: None)
    gen = torch.Generator().manual_seed(cfg.seed)  # CPU: draws are moved (module docstring)
    dev = torch.device(cfg.device)
    dataset = dataset_to(dataset, dev)
    train, test = dataset.train, dataset.test
    sched = Schedule(cfg, len(train.names))
    bg = torch.tensor(dataset.background, dtype=torch.float32, device=dev)
    H, W = train.images.shape[1:3]
    center = (dataset.bounds[0].float() + dataset.bounds[1].float()) / 2
    pix = _pixel_world(train.cameras, center)
    extent = camera_extent(train.cameras)
    ckpt_path = out / "checkpoint.pt"
    history: list[dict] = []
    evals: list[dict] = []
    start_it, elapsed0 = 0, 0.0
    if resume:
        if not ckpt_path.is_file():
            raise InputError(f"{ckpt_path}: nothing to resume (no checkpoint in {out})")
        ck = load_checkpoint(ckpt_path)
        if ck.get("mode") != cfg.mode:
            raise InputError(f"{ckpt_path}: checkpoint is mode {ck.get('mode')!r}, not {cfg.mode!r}")
        model = SplatModel.from_state_dict(cfg.mode, ck["model"]).to(dev)
        opt = _optimizer(model, cfg)
        opt.load_state_dict(ck["optimizer"])  # moves Adam's moments to the parameters' device
        gen.set_state(ck["generator"])
        start_it, elapsed0 = int(ck["iteration"]), float(ck["elapsed"])
        maxw, seen = ck["max_weight"].to(dev), ck["seen"].to(dev)
        order = ck["view_order"].tolist()
        history = json.loads(ck["history"])
        evals = json.loads(ck["evals"])
        log(f"resumed at iteration {start_it} ({len(model)} triangles)")
    else:
        pts, cols = initial_points(dataset, cfg.init_points, gen)
        # initialisation (nearest neighbours, Delaunay) runs on the CPU; training on `dev`
        model = SplatModel.from_points(cfg.mode, pts.cpu(), None if cols is None else cols.cpu(), gen,
                                       cfg.init_opacity, cfg.init_sigma, max_radius=20 * pix).to(dev)
        opt = _optimizer(model, cfg)
        maxw = torch.zeros(len(model), device=dev)
        seen = torch.zeros(len(model), dtype=torch.bool, device=dev)
        order = []  # views left in this epoch (popped from the end)
        log(f"initialised {len(model)} triangles from {len(pts)} points")

    def save_checkpoint(it: int, elapsed: float) -> None:
        state = dict(mode=cfg.mode, model=model.state_dict(), optimizer=opt.state_dict(), generator=gen.get_state(),
                     iteration=it, elapsed=elapsed, max_weight=maxw, seen=seen,
                     view_order=torch.tensor(order, dtype=torch.int64), history=json.dumps(history),
                     evals=json.dumps(evals), config=json.dumps(asdict(cfg)))
        with atomic_output(ckpt_path) as tmp:
            torch.save(_cpu(state), tmp)

    def run_eval(it: int) -> dict:
        views = test if len(test.names) else train
        ev = evaluate(model, views, bg, sched, it)
        if ev["images"]:
            _save_preview(out / "previews" / f"it{it:06d}.png", views.images[0], ev["images"][0])
        rec = dict(iteration=it, psnr=ev["psnr"], ssim=ev["ssim"], triangles=len(model),
                   split="test" if len(test.names) else "train")
        evals.append(rec)
        log(f"eval it {it}: PSNR {ev['psnr']:.2f} dB  SSIM {ev['ssim']:.4f}  ({len(model)} triangles)")
        return ev

    t0 = time.perf_counter()
    it = start_it
    stopped_early = False
    while it < cfg.iters:
        elapsed = elapsed0 + time.perf_counter() - t0
        if cfg.time_limit is not None and elapsed >= cfg.time_limit:
            stopped_early = True
            log(f"time limit reached at iteration {it}")
            break
        if not order:
            order = torch.randperm(len(train.names), generator=gen).tolist()
        b = order.pop()
        for g in opt.param_groups:
            if g["name"] == "verts":
                g["lr"] = sched.lr_verts(it, extent)
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
        rec = dict(iteration=it, loss=float(loss.detach()), psnr=p, triangles=len(model))
        if it % 10 == 0 or it == cfg.iters:
            history.append(dict(rec, elapsed=round(elapsed0 + time.perf_counter() - t0, 2)))
        if on_step:
            on_step(it, rec)
        if sched.densify_now(it) and it < cfg.iters:
            floor = sched.opacity_floor(it)
            remove = (seen & (maxw < cfg.prune_weight)) | (model.triangle_opacity(floor) < cfg.prune_opacity)
            if model.form == "ts+":
                # TS+ keeps its surface: only faces no view used are dropped
                remove = seen & (maxw < cfg.prune_weight)
            n_pruned = model.prune(remove, opt)
            target = min(cfg.max_triangles, int(math.ceil(len(model) * cfg.grow)))
            counts = model.densify(target - len(model), 4.0 * pix, gen, opt, floor)
            maxw = torch.zeros(len(model), device=dev)
            seen = torch.zeros(len(model), dtype=torch.bool, device=dev)
            log(f"it {it}: pruned {n_pruned}, split {counts['split']}, cloned {counts['cloned']} -> {len(model)}")
        if cfg.eval_every and it % cfg.eval_every == 0 and it < cfg.iters:
            run_eval(it)
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0:
            save_checkpoint(it, elapsed0 + time.perf_counter() - t0)
    train_time = elapsed0 + time.perf_counter() - t0
    save_checkpoint(it, train_time)
    ev = run_eval(it)
    # the final scene as activated values (TS+: at its final sigma and opacity floor)
    scene = _scene_at(model, sched, it)
    scene.save_ply(out / "scene.ply")
    views = test if len(test.names) else train
    metrics = dict(mode=cfg.mode, iterations=it, requested_iterations=cfg.iters, stopped_early=stopped_early,
                   train_seconds=round(train_time, 1), triangles=len(model), psnr=ev["psnr"], ssim=ev["ssim"],
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
    for name, obj in (("metrics.json", metrics), ("log.json", dict(history=history, evals=evals, config=asdict(cfg)))):
        with atomic_output(out / name) as tmp:
            Path(tmp).write_text(json.dumps(obj, indent=1))
    return metrics
