"""The configuration and the schedule of ``facet3d fit``: `FitConfig`, the progress `Plan`, the
recipe's `Schedule` as a function of progress, and the `Pacer` that plans a time limit.

See `facet3d.plugins.triangle_splatting.fit` (module docstring) for the recipe and how a time limit
is planned; the loop there asks these objects what to do at each iteration.
"""

from __future__ import annotations

import json
import math
import statistics
from bisect import bisect_right
from dataclasses import dataclass, field

__all__ = ["FitConfig", "Plan", "Schedule", "Pacer", "densify_iterations", "sh_iterations", "lr_scale",
           "DEFAULT_ITERS"]

DEFAULT_ITERS = 3000  # ``iters=None`` without a time limit


@dataclass
class FitConfig:
    mode: str = "ts"  # "ts" | "ts+"
    iters: int | None = None  # None: DEFAULT_ITERS, or with a time limit as many as fit; with one: a cap
    seed: int = 0
    lr_verts: float = 0.0018  # x the camera extent (3DGS's spatial_lr_scale) x sqrt(lr_scale)
    lr_verts_final_ratio: float = 0.01
    lr_dc: float = 0.0025
    lr_rest: float = 0.0025 / 20
    lr_opacity: float = 0.014
    lr_sigma: float = 0.0008
    lr_scale: float | None = None  # None: clamp(sqrt(30000 / planned), 1, 4) (short runs need larger steps)
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
    time_limit: float | None = None  # seconds of training loop: the schedule is planned to fit (module docstring)
    device: str = "cpu"
    threads: int | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- the plan and the schedule
@dataclass
class Plan:
    """The schedule's clock: iteration -> progress f in [0, 1].

    f(it) = f0 + (it - it0) (1 - f0) / (planned - it0) from the last re-plan point (it0, f0), and 1
    from ``planned`` (the planned total iteration count) on: piecewise linear, continuous and
    monotone across re-plans.  ``base``: the length in iterations of the whole schedule at the first
    plan's pace, which fixes the event grids once; ``None`` while nothing is planned yet (a
    time-limited run's warm-up), when progress stays at f0.  ``Plan.by_iterations(n)``: f = it / n.
    """

    planned: int
    it0: int = 0
    f0: float = 0.0
    base: int | None = None

    @classmethod
    def by_iterations(cls, n: int) -> "Plan":
        return cls(int(n), 0, 0.0, int(n))

    @property
    def started(self) -> bool:
        return self.base is not None

    @property
    def uniform(self) -> bool:
        """Never re-planned: f = it / planned."""
        return self.it0 == 0 and self.f0 == 0.0 and self.base == self.planned

    def finished(self, it: int) -> bool:
        return self.started and it >= self.planned

    def progress(self, it: int) -> float:
        if self.base is None or it <= self.it0:
            return self.f0
        if it >= self.planned:
            return 1.0
        return self.f0 + (it - self.it0) * (1 - self.f0) / (self.planned - self.it0)

    def position(self, it: int) -> float:
        """Progress x ``planned``, the schedule's iteration in the current plan (``it`` itself when uniform:
        this order of operations is exact there)."""
        if self.base is None or it <= self.it0:
            return self.f0 * self.planned
        if it >= self.planned:
            return float(self.planned)
        return self.f0 * self.planned + (it - self.it0) * (1 - self.f0) * self.planned / (self.planned - self.it0)

    def replan(self, it: int, planned: int) -> "Plan":
        """The plan that keeps the progress reached at ``it`` and ends at ``planned`` (at least ``it``)."""
        planned = max(int(planned), it)
        f = self.progress(it)
        base = self.base if self.base is not None else max(1, planned - it)
        return Plan(planned, it, f, base)


def densify_iterations(cfg: FitConfig, n_views: int, n: int) -> list[int]:
    """The densify/prune iterations of an ``n``-iteration schedule: every ``densify_every`` x n (and at
    least ``n_views``: the statistics should cover every training view once), from ``densify_from`` x n
    to ``densify_until`` x n."""
    every = max(1, round(cfg.densify_every * n), n_views)
    start = max(1, round(cfg.densify_from * n), n_views)
    first = -(-start // every) * every
    return list(range(first, math.floor(cfg.densify_until * n) + 1, every))


def sh_iterations(cfg: FitConfig, n: int) -> list[int]:
    """The iterations of an ``n``-iteration schedule where the SH degree steps up (every ``sh_every`` x n)."""
    step = max(1, round(cfg.sh_every * n))
    return [j * step for j in range(1, cfg.sh_degree + 1)]


class Schedule:
    """Every schedule of the recipe at iteration ``it`` (iterations done), through the progress of ``plan``
    (default ``Plan.by_iterations(cfg.iters)``; the loop replaces ``self.plan`` when it re-plans)."""

    def __init__(self, cfg: FitConfig, n_views: int = 1, plan: Plan | None = None) -> None:
        self.c = cfg
        self.n_views = n_views  # densification statistics should cover every training view once
        self.plan = plan if plan is not None else Plan.by_iterations(cfg.iters or DEFAULT_ITERS)
        self._grids: tuple = (None, [], [])

    def frac(self, it: int) -> float:
        return self.plan.progress(it)

    def _grid(self) -> tuple[list[float], list[float]]:
        base = self.plan.base
        if self._grids[0] != base:
            n = max(1, base or 1)
            dens = [] if base is None else [e / n for e in densify_iterations(self.c, self.n_views, n)]
            sh = [] if base is None else [e / n for e in sh_iterations(self.c, n)]
            self._grids = (base, dens, sh)
        return self._grids[1], self._grids[2]

    def densify_points(self) -> list[float]:
        """Progress of each densify/prune event (empty before the first plan)."""
        return self._grid()[0]

    def sh_points(self) -> list[float]:
        """Progress of each SH degree step."""
        return self._grid()[1]

    def lr_scale(self) -> float:
        return lr_scale(self.c, self.plan.planned)

    def lr_verts(self, it: int, extent: float = 1.0) -> float:
        t = min(1.0, self.frac(it))
        return self.c.lr_verts * extent * math.sqrt(self.lr_scale()) * self.c.lr_verts_final_ratio ** t

    def lrs(self, it: int, extent: float = 1.0) -> dict[str, float]:
        """The learning rate of every parameter group (by name) at ``it``."""
        s = self.lr_scale()
        return dict(verts=self.lr_verts(it, extent), dc=self.c.lr_dc * s, rest=self.c.lr_rest * s,
                    opacity=self.c.lr_opacity * s, sigma=self.c.lr_sigma * s)

    def sh_degree(self, it: int) -> int:
        return min(self.c.sh_degree, bisect_right(self.sh_points(), self.frac(it)))

    def densify_now(self, it: int) -> bool:
        """Whether iteration ``it`` reaches a densify point (events a re-plan squeezed into one iteration merge)."""
        pts = self.densify_points()
        return bisect_right(pts, self.frac(it)) > bisect_right(pts, self.frac(it - 1))

    def sigma(self, it: int) -> float:
        t = min(1.0, self.frac(it))
        return math.exp((1 - t) * math.log(self.c.sigma_start) + t * math.log(self.c.sigma_end))

    def opacity_floor(self, it: int) -> float:
        if self.c.mode != "ts+":
            return 0.0
        n, u = self.plan.planned, self.plan.position(it)
        a, b = self.c.floor_from * n, self.c.floor_until * n
        if u <= a:
            return self.c.floor_start
        t = min(1.0, (u - a) / max(1.0, b - a))
        return self.c.floor_start + t * (self.c.floor_end - self.c.floor_start)

    def supersample(self, it: int) -> int:
        return self.supersample_at(self.frac(it))

    def supersample_at(self, f: float) -> int:
        on = self.c.supersample if self.c.supersample is not None else self.c.device.startswith("cuda")
        if self.c.mode != "ts+" or not on:
            return 1
        return 4 if f >= 5 / 6 else 2 if f >= 2 / 3 else 1

    def completed(self, it: int) -> "Schedule":
        """This schedule at its end from iteration ``it`` on (the final scene; a run that stopped early too)."""
        return Schedule(self.c, self.n_views, self.plan.replan(it, it))

    def final(self) -> dict:
        it = self.plan.planned
        end = self.completed(it)
        return dict(sh=end.sh_degree(it), sigma=end.sigma(it) if self.c.mode == "ts+" else None,
                    floor=end.opacity_floor(it))


# ---------------------------------------------------------------------- pacing a time limit
class Pacer:
    """Plans the iteration count that fits the time budget ``cfg.time_limit`` and re-plans as the rate drifts.

    Timing (`record`): the seconds of each training step per triangle count, divided by the
    supersampling factor squared; the session's first step (one-off compile and allocation costs)
    is not counted.  Densify, evaluation and checkpoint times are kept apart (`overhead`).

    Cost of a step at T triangles: c(T) = c_ref + b (T - T_ref), c_ref the median of the latest
    measured count's recent steps, b the least-squares slope over the counts measured, clipped to
    [0, c_ref / T_ref] (until two counts have been measured: c_ref / T_ref, cost proportional to
    triangles, the conservative guess).
    A plan gives the rest of the schedule the iterations R whose predicted time - each remaining
    densify event growing the count by ``grow`` up to ``max_triangles`` and costing one more densify,
    evaluations and checkpoints amortised per iteration, supersampling steps included - fills
    ``target`` of the budget.  Warm-up: no plan before ``warmup_steps`` measured steps and
    ``warmup_share`` of the budget or ``warmup_max_steps`` steps, whichever comes first (and no later
    than ``warmup_max_share`` of the budget, or a tenth of the ``cfg.iters`` cap).
    Re-plans: after every densify event, when a new triangle count has ``level_steps`` measured
    steps, and every ``replan_share`` of the budget (more often as the end nears).
    """

    target = 0.97
    warmup_steps = 10
    warmup_max_steps = 50
    warmup_share = 0.02
    warmup_max_share = 0.05
    replan_share = 0.05
    level_steps = 8
    window = 30

    def __init__(self, cfg: FitConfig) -> None:
        self.c = cfg
        self.budget = float(cfg.time_limit)
        self.cap = cfg.iters
        self.samples: dict[int, list[float]] = {}  # triangle count -> recent step seconds (most recent count last)
        self.overheads: dict[str, float] = {}  # densify | eval | checkpoint -> seconds, last measured
        self.measured, self.measured_time = 0, 0.0
        self.first = True
        self.warm = False
        self.last_replan = 0.0

    # ------------------------------------------------------------------ measurements
    def record(self, seconds: float, triangles: int, supersample: int = 1) -> None:
        """One training step took ``seconds`` at ``triangles`` triangles and ``supersample``."""
        if self.first:
            self.first = False
            return
        self.measured += 1
        self.measured_time += seconds
        s = self.samples.pop(triangles, [])
        s.append(seconds / supersample ** 2)
        self.samples[triangles] = s[-self.window:]

    def overhead(self, kind: str, seconds: float) -> None:
        self.overheads[kind] = seconds

    # ------------------------------------------------------------------ the cost model
    def step_cost(self, triangles: int, supersample: int = 1) -> float:
        """Predicted seconds of one training step at ``triangles`` (1 s per step before any measurement)."""
        if not self.samples:
            return 1.0
        level = {t: statistics.median(s) for t, s in self.samples.items()}
        steady = [t for t, s in self.samples.items() if len(s) >= 3]
        t_ref = steady[-1] if steady else next(reversed(self.samples))
        c_ref = level[t_ref]
        if len(steady) >= 2:
            mt = sum(steady) / len(steady)
            mc = sum(level[t] for t in steady) / len(steady)
            var = sum((t - mt) ** 2 for t in steady)
            slope = sum((t - mt) * (level[t] - mc) for t in steady) / var
        else:
            slope = math.inf
        slope = min(max(0.0, slope), c_ref / max(1, t_ref))  # between constant and proportional to triangles
        return max(1e-9, c_ref + slope * (triangles - t_ref)) * supersample ** 2

    def _periodic_cost(self) -> float:
        """Evaluations and checkpoints in the loop, per iteration."""
        cost = 0.0
        for kind, every in (("eval", self.c.eval_every), ("checkpoint", self.c.checkpoint_every)):
            if every and kind in self.overheads:
                cost += self.overheads[kind] / every
        return cost

    def iterations_left(self, sched: Schedule, f: float, points: list[float], triangles: int, seconds: float) -> int:
        """Iterations that take the schedule from progress ``f`` to 1 in ``seconds``, densify events at ``points``."""
        ahead = [p for p in points if f < p < 1]
        cuts = sorted({f, 1.0, *ahead, *(p for p in (2 / 3, 5 / 6) if f < p < 1)})
        cap = max(self.c.max_triangles, triangles)
        cost, grown, done = 0.0, triangles, 0
        for lo, hi in zip(cuts, cuts[1:]):
            while done < len(ahead) and ahead[done] <= lo:
                grown, done = min(cap, math.ceil(grown * self.c.grow)), done + 1
            cost += (hi - lo) / (1 - f) * self.step_cost(grown, sched.supersample_at(lo))
        cost += self._periodic_cost()
        seconds -= len(ahead) * self.overheads.get("densify", self.step_cost(triangles))
        return max(0, int(seconds / cost))

    def plan_iterations(self, it: int, sched: Schedule, triangles: int, elapsed: float) -> int:
        """The total iteration count to plan at ``it`` (at least ``it`` + 1, at most the ``cfg.iters`` cap)."""
        plan = sched.plan
        f = plan.progress(it)
        if f >= 1.0:  # nothing left to schedule (a finished schedule resumed with a larger --iters)
            return plan.planned
        left = self.target * self.budget - elapsed
        if plan.started:
            n = self.iterations_left(sched, f, sched.densify_points(), triangles, left)
        else:
            n = self._first_iterations(sched, f, triangles, left)
        planned = it + max(1, n)
        return max(it, planned if self.cap is None else min(planned, self.cap))

    def _first_iterations(self, sched: Schedule, f: float, triangles: int, seconds: float) -> int:
        """`iterations_left` for the first plan, which fixes the grid: the largest n whose own grid
        (``densify_iterations`` of n: more events the more iterations) still fits n iterations in ``seconds``."""
        def fits(n: int) -> bool:
            points = [e / n for e in densify_iterations(self.c, sched.n_views, n)]
            return self.iterations_left(sched, f, points, triangles, seconds) >= n

        lo, hi = 0, self.iterations_left(sched, f, [], triangles, seconds)  # no densify events: an upper bound
        if hi >= 1 and fits(hi):
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    # ------------------------------------------------------------------ when to re-plan
    def _warmed_up(self) -> bool:
        n, t, b = self.measured, self.measured_time, self.budget
        enough = n >= self.warmup_steps and (t >= self.warmup_share * b or n >= self.warmup_max_steps)
        return n >= 1 and (enough or t >= self.warmup_max_share * b
                           or (self.cap is not None and n >= max(1, self.cap // 10)))

    def _reason(self, sched: Schedule, triangles: int, elapsed: float, densified: bool) -> str | None:
        if not self.warm:
            if not self._warmed_up():
                return None
            self.warm = True
            return "resume" if sched.plan.started else "warm-up"
        if densified:
            return "densify"
        if len(self.samples.get(triangles, ())) == self.level_steps:
            return "rate"
        left = self.target * self.budget - elapsed
        if elapsed - self.last_replan >= min(self.replan_share * self.budget, max(0.0, 0.25 * left)):
            return "periodic"
        return None

    def replan(self, it: int, sched: Schedule, triangles: int, elapsed: float,
               densified: bool = False) -> tuple[Plan, dict] | None:
        """After iteration ``it``: a new plan and its record (iteration, planned, sec_per_iter, triangles,
        reason), or None when it is not time to re-plan."""
        if sched.plan.finished(it):
            return None
        reason = self._reason(sched, triangles, elapsed, densified)
        if reason is None:
            return None
        self.last_replan = elapsed
        planned = self.plan_iterations(it, sched, triangles, elapsed)
        rec = dict(iteration=it, planned=planned, triangles=triangles, reason=reason,
                   sec_per_iter=round(self.step_cost(triangles, sched.supersample(it)), 6))
        return sched.plan.replan(it, planned), rec


def _initial_plan(cfg: FitConfig) -> Plan:
    """``--iters`` alone: by iterations.  A time limit: nothing planned until the warm-up has measured
    the speed (``planned``, the cap or DEFAULT_ITERS, only sets the warm-up's learning rates)."""
    if cfg.time_limit is None:
        return Plan.by_iterations(cfg.iters or DEFAULT_ITERS)
    return Plan(cfg.iters or DEFAULT_ITERS)


def _restore_plan(ck: dict, cfg: FitConfig, it: int, triangles: int) -> tuple[Plan, list[dict], list[dict]]:
    """A checkpoint's plan state -> (the plan to continue, the plans made, the densify events)."""
    state = json.loads(ck["plan"]) if "plan" in ck else None
    saved = None if state is None else Plan(**state["plan"])
    replans, densified = ([], []) if state is None else (state["replans"], state["densify"])
    plan = _resumed_plan(saved, cfg, it)
    if plan != saved:
        replans.append(dict(iteration=it, planned=plan.planned, sec_per_iter=None, triangles=triangles,
                            reason="iterations"))
    return plan, replans, densified


def _resumed_plan(saved: Plan | None, cfg: FitConfig, it: int) -> Plan:
    """The plan a resumed run continues from iteration ``it``.

    * a checkpoint without a plan (older runs): by iterations, as such runs were;
    * ``--iters N`` without a time limit: a plan that was never re-planned scales to N from the start,
      as the schedule always did; a time-planned one keeps its progress and ends at N;
    * no ``--iters`` without a time limit: the saved plan, to its end;
    * a time limit: the saved plan (capped at ``--iters``), re-planned once the warm-up has measured
      this session's speed against the budget left.
    """
    if saved is None:
        return Plan.by_iterations(cfg.iters or DEFAULT_ITERS)
    if cfg.time_limit is None:
        if cfg.iters is None:
            return saved if saved.started else saved.replan(it, saved.planned)
        if saved.uniform:
            return Plan.by_iterations(cfg.iters)
        return saved if saved.planned == cfg.iters else saved.replan(it, cfg.iters)
    if cfg.iters is not None and saved.planned > cfg.iters:
        return saved.replan(it, cfg.iters) if saved.started else Plan(cfg.iters, saved.it0, saved.f0)
    return saved


# ---------------------------------------------------------------------- learning rates
def lr_scale(cfg: FitConfig, planned: int | None = None) -> float:
    """Learning-rate multiplier for runs shorter than the published 30k iterations (``planned``: the plan's
    count; default ``cfg.iters``)."""
    if cfg.lr_scale is not None:
        return cfg.lr_scale
    n = planned if planned is not None else (cfg.iters or DEFAULT_ITERS)
    return min(4.0, max(1.0, math.sqrt(30000 / max(1, n))))
