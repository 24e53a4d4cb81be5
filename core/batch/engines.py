"""Where batch jobs run: a local process pool (pebble) or a Ray cluster. Both take the same jobs and
report each outcome as the dict `worker.run_job` returns, failures included:

- a step that raises: its message (the worker goes on with the next file);
- a file that runs past ``timeout`` seconds: the worker is killed and replaced;
- a worker that dies (a segfault in a native library, the kernel's OOM killer): the signal, and a
  new worker takes the next file.

Only paths and small dicts travel between processes: each worker reads and writes its own files.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, TimeoutError as FutureTimeout, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from facet3d.core.batch.worker import init_worker, run_job

OnDone = Callable[[int, dict], None]  # (job index, outcome)


@dataclass
class Job:
    index: int
    src: str
    dst: str | None  # None when the pipeline gives table rows only


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def signal_reason(exitcode: int | None) -> str:
    """Why a worker process ended, in words (``-11`` -> a segfault in native code)."""
    if exitcode is None:
        return "the worker process died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {"SIGSEGV": " (a crash in native code)", "SIGKILL": " (killed: out of memory?)",
                "SIGABRT": " (aborted by a native library)", "SIGBUS": " (a crash in native code)"}.get(name, "")
        return f"the worker process died of {name}{hint}"
    return f"the worker process exited with code {exitcode}"


def failed(error: str, seconds: float = 0.0) -> dict:
    return {"status": "failed", "error": error, "seconds": seconds, "warnings": []}


class LocalEngine:
    """A pool of worker processes on this machine (pebble: per-task timeouts, dead workers replaced)."""

    name = "local"

    def __init__(self, workers: int, threads: int, timeout: float | None = None, memory_limit: int | None = None) -> None:
        self.workers, self.threads, self.timeout, self.memory_limit = workers, threads, timeout, memory_limit

    def run(self, jobs: Sequence[Job], payload: dict, on_done: OnDone) -> None:
        import multiprocessing

        from pebble import ProcessExpired, ProcessPool

        # forkserver: workers start from a small clean process, not a fork of this one (whose
        # threads and locks a fork would copy half-held)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["facet3d.core.batch.worker"])
        pool = ProcessPool(max_workers=self.workers, initializer=init_worker,
                           initargs=(self.threads, True, self.memory_limit), context=ctx)
        try:
            futures = {pool.schedule(run_job, args=(payload, j.src, j.dst), timeout=self.timeout): j for j in jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures.pop(fut)
                    try:
                        outcome = fut.result()
                    except FutureTimeout:
                        outcome = timed_out(self.timeout or 0.0)
                    except ProcessExpired as exc:
                        outcome = failed(signal_reason(exc.exitcode))
                    except Exception as exc:  # noqa: BLE001 -- e.g. a result that would not pickle
                        outcome = failed(f"{type(exc).__name__}: {exc}")
                    on_done(job.index, outcome)
            pool.close()
        except BaseException:
            pool.stop()  # Ctrl-C or a bug here: kill the workers now, keep what finished
            raise
        finally:
            pool.join()


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """``ray.init`` quietly: to the cluster at ``address``, or a local instance of ``num_cpus`` that
    imports what this process imports (plugins on sys.path included), as the local engine's workers
    do; cluster nodes need facet3d and the plugins installed."""
    import logging
    import sys

    import ray

    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                                  configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        path = os.pathsep.join(p for p in sys.path if p)
        ray.init(num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}}, **kwargs)


def timed_out(timeout: float) -> dict:
    return failed(f"timed out after {timeout:g} s (the worker was stopped)", timeout)


class RayEngine:
    """The same jobs as Ray tasks, on a local Ray instance or an existing cluster (``address``).

    At most ``workers`` tasks are in flight (default: the cluster's CPUs over the CPUs a file
    needs), so a file's timeout counts from when it started; a task past its timeout is cancelled
    with ``force=True`` (its worker is killed, Ray starts another).
    """

    name = "ray"

    def __init__(self, workers: int | None, threads: int, timeout: float | None = None, address: str | None = None,
                 resources: dict[str, float] | None = None, memory_limit: int | None = None) -> None:
        self.workers, self.threads, self.timeout, self.address = workers, threads, timeout, address
        self.resources = resources or {}
        self.memory_limit = memory_limit

    def _init(self) -> bool:
        """Connect (or start a local instance); True when this call started it."""
        import ray

        if ray.is_initialized():
            return False
        connect_ray(self.address, self.workers or usable_cores())
        return True

    def run(self, jobs: Sequence[Job], payload: dict, on_done: OnDone) -> None:
        import ray

        started_here = self._init()
        try:
            self._run(ray, jobs, payload, on_done)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, jobs: Sequence[Job], payload: dict, on_done: OnDone) -> None:
        from facet3d.core.batch.worker import run_job_in_ray

        cpus = float(self.resources.get("cpus", 1.0))
        gpus = float(self.resources.get("gpus", 0.0)) if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        slots = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1e-9)))
        task = ray.remote(run_job_in_ray).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        payload_ref = ray.put(payload)
        queue = deque(jobs)
        running: dict[Any, tuple[Job, float]] = {}
        try:
            while queue or running:
                while queue and len(running) < slots:
                    job = queue.popleft()
                    ref = task.remote(payload_ref, job.src, job.dst, self.threads, self.memory_limit)
                    running[ref] = (job, time.monotonic())
                wait_s = 1.0
                if self.timeout:
                    first_deadline = min(t for _, t in running.values()) + self.timeout
                    wait_s = max(0.01, min(wait_s, first_deadline - time.monotonic()))
                ready, _ = ray.wait(list(running), num_returns=1, timeout=wait_s)
                for ref in ready:
                    job, _ = running.pop(ref)
                    on_done(job.index, self._outcome(ray, ref))
                if self.timeout:
                    now = time.monotonic()
                    for ref, (job, t0) in list(running.items()):
                        if now - t0 > self.timeout:
                            ray.cancel(ref, force=True)
                            running.pop(ref)
                            on_done(job.index, timed_out(self.timeout))
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise

    @staticmethod
    def _outcome(ray: Any, ref: Any) -> dict:
        from ray import exceptions as rx

        try:
            return ray.get(ref)
        except rx.OutOfMemoryError:
            return failed("out of memory (Ray's memory monitor stopped the worker)")
        except (rx.WorkerCrashedError, rx.LocalRayletDiedError) as exc:
            return failed(f"the worker process died ({type(exc).__name__}: a crash in native code?)")
        except rx.TaskCancelledError:
            return failed("cancelled")
        except rx.RayError as exc:
            first = str(exc).strip().splitlines()
            return failed(f"{type(exc).__name__}: {first[0] if first else ''}")
