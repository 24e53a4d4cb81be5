"""`facet3d bench batch`: the batch engine's throughput and per-file overhead.

Throughput: a CPU-bound pipeline (normals + Poisson mesh) over `files` small clouds, on the local
engine with 1 and 2 workers (and 1 worker held to 1 thread, to separate process scaling from the
threads a lone worker gets) and on a running local Ray instance with 2 workers; the baseline is the
local engine with 1 worker. Overhead: a trivial pipeline (read + write a tiny cloud) on the local
engine with 1 worker against the same reads and writes in a plain loop in this process.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from facet3d.core.bench import BenchResult, Timing, time_repeats


def _clouds(folder: Path, files: int, points: int) -> None:
    """`files` clouds of `points` noisy samples of a sphere-like blob (each its own seed), as PLY."""
    from facet3d.core.io.api import write
    from facet3d.core.io.record import Geometry

    for i in range(files):
        rng = np.random.default_rng(i)
        d = rng.standard_normal((points, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        r = 1.0 + 0.15 * np.sin(3 * d[:, 0] + i) * np.cos(2 * d[:, 1])
        write(folder / f"cloud_{i:04d}.ply", Geometry(vertices=d * r[:, None] + rng.normal(0, 0.002, (points, 3))))


FAILURES: list[str] = []  # files that failed in a timed run (the engine goes on; the bench says so)


def _run(pipeline, inputs: Path, out: Path, engine: str, workers: int, threads: int | None = None) -> float:
    from facet3d.core.batch import BatchOptions, plan_batch, run_batch

    shutil.rmtree(out, ignore_errors=True)
    opts = BatchOptions(out_dir=out, engine=engine, workers=workers, threads=threads)
    t0 = time.perf_counter()
    result = run_batch(plan_batch(pipeline, [str(inputs)], opts), opts)
    elapsed = time.perf_counter() - t0
    FAILURES.extend(f"{engine} x{workers}: {Path(f['input']).name}: {f.get('error')}"
                    for f in result.report["files"] if f["status"] != "ok")
    return elapsed


def run(repeats: int = 3, device: str = "cpu", files: int = 200, points: int = 2000, depth: int = 6,
        ray: int = 1, threads1: int = 1, ceiling: int = 1) -> BenchResult:
    from facet3d.core.pipeline import Pipeline, parse_step

    heavy = Pipeline([parse_step("normals:k=20"), parse_step(f"mesh:method=poisson,depth={depth}")])
    trivial = Pipeline([])  # read + write
    timings: list[Timing] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        inputs.mkdir()
        _clouds(inputs, files, points)
        for workers in (1, 2):
            timings.append(Timing(f"local x{workers}", time_repeats(lambda: _run(heavy, inputs, out, "local", workers),
                                                                    repeats, warmup=0)))
        if threads1:  # process scaling alone: one worker held to one thread, as each of two workers is
            timings.append(Timing("local x1 (1 thread)", time_repeats(lambda: _run(heavy, inputs, out, "local", 1, 1),
                                                                       repeats, warmup=0)))
        if ray:
            timings.append(_ray_timing(heavy, inputs, out, repeats, notes))
        notes.append(_overhead(trivial, inputs, out, repeats))
        if ceiling:
            notes.append(_machine_ceiling(inputs, depth, min(files, 30)))
    for t in timings:
        notes.append(f"{t.name}: {files / t.median:.1f} files/s")
    notes.extend(f"failed (reported by the engine, batch went on): {f}" for f in FAILURES)
    FAILURES.clear()
    res = BenchResult("batch", "local x1", timings, params={"files": files, "points": points, "pipeline": "normals + mesh:poisson",
                                                             "depth": depth}, notes=notes)
    notes.append(f"2 workers / 1 worker (local, default threads: the one worker uses both cores): "
                 f"{res.ratio('local x2'):.2f}x (goal >= 1.7x)")
    if threads1:
        one = next(t for t in timings if t.name == "local x1 (1 thread)").median
        notes.append(f"2 workers / 1 worker, one thread per worker in both: {one / res.timings[1].median:.2f}x")
    if ray:
        ray_x2 = next(t for t in timings if t.name == "ray x2").median
        local_x2 = next(t for t in timings if t.name == "local x2").median
        notes.append(f"ray x2 time / local x2 time: {ray_x2 / local_x2:.2f} (goal <= 1.15)")
    return res


def _ray_timing(pipeline, inputs: Path, out: Path, repeats: int, notes: list[str]) -> Timing:
    """Ray with 2 workers on an instance started once (as a cluster is); its start-up is noted."""
    try:
        import ray
    except ImportError:
        notes.append("ray is not installed: pip install 'facet3d[ray]'")
        return Timing("ray x2", [float("nan")])
    from facet3d.core.batch.engines import connect_ray

    t0 = time.perf_counter()
    connect_ray(num_cpus=2)
    started = time.perf_counter() - t0
    try:
        seconds = time_repeats(lambda: _run(pipeline, inputs, out, "ray", 2), repeats, warmup=1)
    finally:
        t0 = time.perf_counter()
        ray.shutdown()
        stopped = time.perf_counter() - t0
    notes.append(f"a fresh local Ray instance costs {started:.1f} s to start and {stopped:.1f} s to stop "
                 "(paid once per `facet3d batch --engine ray` without --address)")
    return Timing("ray x2", seconds)


def _overhead(pipeline, inputs: Path, out: Path, repeats: int) -> str:
    """Per-file cost of the engine (1 worker, pool start-up included) over a plain in-process loop."""
    from facet3d.core.io.api import read, write

    files = sorted(inputs.glob("*.ply"))
    plain_out = out.with_name("plain")

    def plain() -> None:
        shutil.rmtree(plain_out, ignore_errors=True)
        plain_out.mkdir()
        for f in files:
            write(plain_out / f.name, read(f))

    inline = np.median(time_repeats(plain, repeats, warmup=1))
    engine = np.median(time_repeats(lambda: _run(pipeline, inputs, out, "local", 1), repeats, warmup=0))
    per_file = (engine - inline) / len(files) * 1e3
    return (f"engine overhead on a trivial step (read + write, local x1, pool start-up included): "
            f"{per_file:.1f} ms per file ({engine:.2f} s vs {inline:.2f} s in-process for {len(files)} files; goal < 20 ms)")


_LOOP = """
import sys, time
from facet3d.core.io.api import read
from facet3d.core.pipeline import parse_step, run_steps
steps = [parse_step("normals:k=20"), parse_step("mesh:method=poisson,depth=%d")]
files = sys.argv[1:]
run_steps(read(files[0]), steps)  # imports and first-call compiles out of the timing
t = time.perf_counter()
for f in files:
    run_steps(read(f), steps)
print(time.perf_counter() - t)
"""


def _machine_ceiling(inputs: Path, depth: int, n: int) -> str:
    """How much faster two plain processes (no engine, one thread each) get through the same work
    than one: the most any engine can scale this pipeline on this machine."""
    import os
    import subprocess
    import sys

    files = [str(f) for f in sorted(inputs.glob("*.ply"))[: 2 * (n // 2)]]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    code = _LOOP % depth

    def start(chunk: list[str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, *chunk], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    one = float(start(files).communicate()[0])
    pair = [start(files[: len(files) // 2]), start(files[len(files) // 2:])]
    two = max(float(p.communicate()[0]) for p in pair)
    return (f"this machine's ceiling for the pipeline: two plain processes (no engine) finish {len(files)} files "
            f"{one / two:.2f}x faster than one ({two:.1f} s vs {one:.1f} s)")
