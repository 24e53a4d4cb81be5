"""Planned fits: the schedule as a function of progress, `--iters` alone exactly as before plans,
re-planning math on a simulated clock, time-limited fits that finish their schedule, and resume."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from facet3d.plugins.triangle_splatting.fit import (FitConfig, Pacer, Plan, Schedule, _initial_plan, _resumed_plan,
                                                    fit)
from test_ts_fit import synthetic_dataset  # noqa: E402  (the sibling module: same folder, pytest's rootdir import)


# ------------------------------------------------------------------ the schedule before plans, as the reference
def _old_lr_scale(cfg: FitConfig) -> float:
    if cfg.lr_scale is not None:
        return cfg.lr_scale
    return min(4.0, max(1.0, math.sqrt(30000 / max(1, cfg.iters))))


class OldSchedule:
    """`Schedule` as it was before plans (a copy): every decision a function of ``it / cfg.iters``."""

    def __init__(self, cfg: FitConfig, n_views: int = 1) -> None:
        self.c = cfg
        self.n_views = n_views

    def frac(self, it):
        return it / max(1, self.c.iters)

    def lr_verts(self, it, extent=1.0):
        t = min(1.0, self.frac(it))
        return self.c.lr_verts * extent * math.sqrt(_old_lr_scale(self.c)) * self.c.lr_verts_final_ratio ** t

    def lrs(self, it, extent=1.0):  # _optimizer's rates; only the vertices' changed per step
        s = _old_lr_scale(self.c)
        return dict(verts=self.lr_verts(it, extent), dc=self.c.lr_dc * s, rest=self.c.lr_rest * s,
                    opacity=self.c.lr_opacity * s, sigma=self.c.lr_sigma * s)

    def sh_degree(self, it):
        step = max(1, round(self.c.sh_every * self.c.iters))
        return min(self.c.sh_degree, it // step)

    def densify_now(self, it):
        every = max(1, round(self.c.densify_every * self.c.iters), self.n_views)
        start = max(1, round(self.c.densify_from * self.c.iters), self.n_views)
        return it >= start and it <= self.c.densify_until * self.c.iters and it % every == 0

    def sigma(self, it):
        t = min(1.0, self.frac(it))
        return math.exp((1 - t) * math.log(self.c.sigma_start) + t * math.log(self.c.sigma_end))

    def opacity_floor(self, it):
        if self.c.mode != "ts+":
            return 0.0
        a, b = self.c.floor_from * self.c.iters, self.c.floor_until * self.c.iters
        if it <= a:
            return self.c.floor_start
        t = min(1.0, (it - a) / max(1.0, b - a))
        return self.c.floor_start + t * (self.c.floor_end - self.c.floor_start)

    def supersample(self, it):
        on = self.c.supersample if self.c.supersample is not None else self.c.device.startswith("cuda")
        if self.c.mode != "ts+" or not on:
            return 1
        f = self.frac(it)
        return 4 if f >= 5 / 6 else 2 if f >= 2 / 3 else 1

    def final(self):
        it = self.c.iters
        return dict(sh=self.sh_degree(it), sigma=self.sigma(it) if self.c.mode == "ts+" else None,
                    floor=self.opacity_floor(it))


def _decisions(s, it: int) -> tuple:
    return (s.densify_now(it), s.sh_degree(it), s.lr_verts(it, 3.7), s.lrs(it, 0.5), s.sigma(it),
            s.opacity_floor(it), s.supersample(it))


@pytest.mark.parametrize("iters,n_views", [(1, 1), (2, 1), (7, 3), (45, 14), (300, 1), (300, 40), (1001, 14),
                                           (3000, 100), (30000, 1)])
def test_iterations_alone_keep_the_old_schedule_bit_for_bit(iters, n_views):
    for mode in ("ts", "ts+"):
        cfg = FitConfig(mode=mode, iters=iters, supersample=True)
        old, new = OldSchedule(cfg, n_views), Schedule(cfg, n_views)
        assert new.plan == Plan.by_iterations(iters) and new.plan.uniform
        for it in range(iters + 1):
            assert _decisions(new, it) == _decisions(old, it), (mode, iters, n_views, it)
        assert new.final() == old.final()
    fixed = FitConfig(iters=iters, lr_scale=2.0)
    assert Schedule(fixed).lrs(3) == OldSchedule(fixed).lrs(3)


def test_default_iterations_without_a_time_limit():
    assert Schedule(FitConfig()).plan == Plan.by_iterations(3000)
    assert _initial_plan(FitConfig(iters=500)) == Plan.by_iterations(500)
    warm = _initial_plan(FitConfig(time_limit=60))  # nothing planned until the warm-up measured the speed
    assert not warm.started and warm.progress(0) == warm.progress(50) == 0.0 and not warm.finished(10_000)


# ------------------------------------------------------------------ the plan's progress
def test_plan_progress_is_continuous_monotone_and_ends_at_one():
    p = Plan.by_iterations(300)
    assert [p.progress(i) for i in (0, 150, 300, 301)] == [0.0, 0.5, 1.0, 1.0]
    assert all(p.position(i) == i for i in range(301))
    g = torch.Generator().manual_seed(0)
    plan, seen, bases, it = Plan(400), [], set(), 0
    while not plan.finished(it):  # re-plan at random iterations to a random end, as a drifting rate would
        it += 1
        if it < 400 and torch.rand(1, generator=g) < 0.2:
            before = plan.progress(it)
            plan = plan.replan(it, it + int(torch.randint(1, 300, (1,), generator=g)))
            assert plan.progress(it) == before  # a re-plan keeps the progress reached
            bases.add(plan.base)
        seen.append(plan.progress(it))
    assert len(bases) == 1 and None not in bases  # the grid's length is fixed by the first plan
    assert all(a <= b for a, b in zip(seen, seen[1:])) and seen[-1] == 1.0 and it == plan.planned
    assert plan.progress(plan.planned - 1) < 1.0 == plan.progress(plan.planned)
    assert plan.finished(plan.planned) and not plan.finished(plan.planned - 1)
    assert plan.replan(plan.planned - 3, 5).planned == plan.planned - 3  # never ends before the iteration it is at


# ------------------------------------------------------------------ the pacer on a simulated clock
def _simulate(cfg: FitConfig, n_views: int, cost, triangles: int = 400, first: float = 0.0) -> dict:
    """The fit loop's protocol with simulated step costs ``cost(triangles, t)`` seconds (the first step
    costs ``first`` more: compilation); densify grows the count by cfg.grow."""
    sched, pacer = Schedule(cfg, n_views, _initial_plan(cfg)), Pacer(cfg)
    t, it, fired, trace, replans = 0.0, 0, [], [], []
    while not sched.plan.finished(it):
        if t >= cfg.time_limit:
            break
        ss = sched.supersample(it)
        dt = cost(triangles, t) * ss ** 2 + (first if it == 0 else 0.0)
        t, it = t + dt, it + 1
        pacer.record(dt, triangles, ss)
        dens = sched.densify_now(it) and it < sched.plan.planned
        if dens:
            fired.append((it, sched.frac(it - 1), sched.frac(it)))
            triangles = min(cfg.max_triangles, math.ceil(triangles * cfg.grow))
        new = pacer.replan(it, sched, triangles, t, dens)
        if new is not None:
            sched.plan = new[0]
            replans.append(new[1])
        trace.append((sched.frac(it), sched.sh_degree(it)))
    return dict(sched=sched, t=t, it=it, fired=fired, trace=trace, replans=replans)


def _check_completed(r: dict, cfg: FitConfig) -> None:
    sched, it = r["sched"], r["it"]
    assert sched.plan.finished(it) and it == sched.plan.planned and sched.frac(it) == 1.0
    progress = [f for f, _ in r["trace"]]
    assert all(a <= b for a, b in zip(progress, progress[1:]))
    sh = [d for _, d in r["trace"]]
    assert all(a <= b for a, b in zip(sh, sh[1:])) and sh[-1] == cfg.sh_degree
    points = sched.densify_points()
    assert len(r["fired"]) == len(points) > 0  # each event once, in order, where progress reaches its point
    for (i, before, after), p in zip(r["fired"], points):
        assert before < p <= after


@pytest.mark.parametrize("drift", [False, True])
def test_pacer_completes_the_schedule_at_the_limit(drift):
    cfg = FitConfig(mode="ts", time_limit=600.0, max_triangles=20_000)

    def cost(tris, t):  # seconds per step: a + b x triangles; doubles at mid-run with drift (another job)
        return (0.02 + 2e-5 * tris) * (2.0 if drift and t > 300 else 1.0)

    r = _simulate(cfg, 20, cost, first=30.0)  # a 30 s compile on the first step: not taken for the rate
    _check_completed(r, cfg)
    assert 0.93 * cfg.time_limit <= r["t"] <= cfg.time_limit
    assert r["replans"][0]["reason"] == "warm-up" and len(r["replans"]) > 10
    assert r["replans"][0]["iteration"] >= 11  # warm-up: >= 10 measured steps after the first
    assert {"densify", "periodic"} <= {p["reason"] for p in r["replans"]}
    assert r["sched"].plan.base == r["replans"][0]["planned"] - r["replans"][0]["iteration"]  # grid of the 1st plan


def test_pacer_plans_supersampling_and_respects_the_iterations_cap():
    ts_plus = FitConfig(mode="ts+", time_limit=300.0, supersample=True, max_triangles=5000)
    r = _simulate(ts_plus, 10, lambda tris, t: 0.01 + 1e-5 * tris)  # 4x and 16x pixels from 2/3 and 5/6
    _check_completed(r, ts_plus)
    assert 0.93 * ts_plus.time_limit <= r["t"] <= ts_plus.time_limit
    capped = FitConfig(mode="ts", iters=250, time_limit=600.0)  # 250 iterations fit with time to spare
    r = _simulate(capped, 10, lambda tris, t: 0.01)
    _check_completed(r, capped)
    assert r["it"] == 250 and max(p["planned"] for p in r["replans"]) == 250 and r["t"] < 10


def test_pacer_stops_when_the_rate_collapses():
    cfg = FitConfig(mode="ts", time_limit=100.0)
    r = _simulate(cfg, 10, lambda tris, t: 0.05 if t < 80 else 30.0)  # steps of 30 s near the end
    assert not r["sched"].plan.finished(r["it"]) and r["t"] >= cfg.time_limit


# ------------------------------------------------------------------ resume rules
def test_resumed_plan_rules():
    cfg = lambda **kw: FitConfig(**kw)  # noqa: E731
    uniform, timed = Plan.by_iterations(400), Plan(380, 120, 0.31, 350)
    assert _resumed_plan(None, cfg(iters=500), 100) == Plan.by_iterations(500)  # checkpoints before plans
    assert _resumed_plan(uniform, cfg(iters=600), 400) == Plan.by_iterations(600)  # --iters scales, as before
    assert _resumed_plan(uniform, cfg(), 200) == uniform
    assert _resumed_plan(timed, cfg(), 200) == timed  # no --iters: the saved plan to its end
    longer = _resumed_plan(timed, cfg(iters=500), 200)
    assert longer.planned == 500 and longer.progress(200) == timed.progress(200) and longer.base == timed.base
    assert _resumed_plan(timed, cfg(time_limit=60.0), 200) == timed  # the pacer re-plans after its warm-up
    capped = _resumed_plan(timed, cfg(time_limit=60.0, iters=300), 200)
    assert capped.planned == 300 and capped.progress(200) == timed.progress(200)


# ------------------------------------------------------------------ the real loop
@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(size=24, n=8)  # at 16x16 pixels long runs can prune every triangle


class StepClock:
    """Simulated seconds for `fit`'s ``clock``: every training step costs a + b x triangles, added by
    ``on_step`` (called inside the step's timing), so plans are deterministic whatever the machine."""

    def __init__(self, a: float = 4e-3, b: float = 1e-5) -> None:
        self.t, self.a, self.b = 0.0, a, b

    def __call__(self) -> float:
        return self.t

    def on_step(self, it: int, rec: dict) -> None:
        self.t += self.a + self.b * rec["triangles"]


def _plan_of(run) -> dict:
    return json.loads(torch.load(run / "checkpoint.pt", weights_only=True)["plan"])


def _check_fit(m: dict, run, cfg: FitConfig, n_views: int) -> dict:
    assert m["schedule_completed"] and not m["stopped_early"] and m["iterations"] == m["planned_iterations"]
    assert m["train_seconds"] <= cfg.time_limit
    log = json.loads((run / "log.json").read_text())
    plan = Plan(**_plan_of(run)["plan"])
    points = Schedule(cfg, n_views, plan).densify_points()
    events = log["densify"]
    assert len(events) == m["densify_events"] == len(points) > 0  # every event of the grid happened, once
    assert all(a["iteration"] < b["iteration"] and a["progress"] < b["progress"] for a, b in zip(events, events[1:]))
    assert all(e["progress"] >= p - 1e-6 for e, p in zip(events, points))
    assert log["replans"][0]["reason"] in ("warm-up", "iterations") and log["replans"][-1]["planned"] == m["iterations"]
    assert set(log["replans"][0]) >= {"iteration", "planned", "sec_per_iter", "triangles"}
    return log


def test_time_limited_fit_on_a_simulated_clock(data, tmp_path):
    cfg = FitConfig(mode="ts", time_limit=1.0, init_points=300, max_triangles=1000, checkpoint_every=0)
    clock = StepClock()
    m = fit(data, tmp_path, cfg, on_step=clock.on_step, clock=clock)
    _check_fit(m, tmp_path, cfg, len(data.train.names))
    assert m["requested_iterations"] is None and m["train_seconds"] >= 0.9
    assert 60 < m["iterations"] < 250  # 1 s of 7-14 ms steps


def test_resume_of_a_time_limited_run_keeps_its_plan(data, tmp_path):
    cfg = FitConfig(mode="ts", time_limit=1.0, init_points=300, max_triangles=1000, checkpoint_every=20)
    n = len(data.train.names)

    class Stop(Exception):
        pass

    clock = StepClock()

    def interrupt(it, rec):
        clock.on_step(it, rec)
        if it == 75:  # killed mid-run: the checkpoint of iteration 60 survives, with its plan
            raise Stop

    with pytest.raises(Stop):
        fit(data, tmp_path, cfg, on_step=interrupt, clock=clock)
    saved = _plan_of(tmp_path)
    plan = Plan(**saved["plan"])
    assert plan.started and 60 < plan.planned
    first: list[int] = []
    clock2 = StepClock()

    def watch(it, rec):
        clock2.on_step(it, rec)
        first.append(rec["planned"])

    m = fit(data, tmp_path, cfg, resume=True, on_step=watch, clock=clock2)
    assert first[0] == plan.planned  # the resumed run goes on with the saved plan until it re-plans
    log = _check_fit(m, tmp_path, cfg, n)
    assert log["replans"][:len(saved["replans"])] == saved["replans"]
    assert log["densify"][:len(saved["densify"])] == saved["densify"]
    assert Plan(**_plan_of(tmp_path)["plan"]).base == plan.base  # same grid
    assert log["replans"][len(saved["replans"])]["reason"] == "resume"


@pytest.mark.slow
def test_time_limited_fit_finishes_its_schedule_in_real_time(data, tmp_path):
    fit(data, tmp_path / "warm", FitConfig(mode="ts", iters=2, init_points=300, checkpoint_every=0))  # compile
    cfg = FitConfig(mode="ts", time_limit=5.0, init_points=300, max_triangles=2000, checkpoint_every=0, threads=1)
    t = time.perf_counter()
    m = fit(data, tmp_path / "run", cfg)
    wall = time.perf_counter() - t
    print(f"TS-NUMBER time-limited fit: {m['iterations']} iterations in {m['train_seconds']} s of 5 s, "
          f"{m['densify_events']} densify events, PSNR {m['psnr']:.2f} dB")
    _check_fit(m, tmp_path / "run", cfg, len(data.train.names))
    assert m["train_seconds"] >= 0.8 * cfg.time_limit and wall <= cfg.time_limit + 3.0


def test_fit_logs_the_first_compile(monkeypatch):
    from facet3d.kernels.trisplat import numba_impl
    from facet3d.plugins.triangle_splatting import fit as fit_mod

    said = []
    monkeypatch.setattr(numba_impl, "compile_report", lambda: {"soft_forward": dict(seconds=12.3, from_cache=False)})
    fit_mod._log_compile(said.append)
    assert said == ["compiled the CPU rasterizer in 12 s (first use; cached on disk for the next runs)"]
    monkeypatch.setattr(numba_impl, "compile_report", lambda: {"soft_forward": dict(seconds=0.1, from_cache=True)})
    fit_mod._log_compile(said.append)
    assert len(said) == 1  # loaded from the cache: nothing to say
