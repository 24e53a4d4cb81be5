"""A test plugin for the batch engine: steps that misbehave on purpose, the way native readers do.

`probe` shifts the points by `offset` (numpy only, so workers start fast) unless the file's name
says otherwise: ``crash`` kills the worker with SIGSEGV (a segfault in a native library), ``killed``
with SIGKILL (the kernel's OOM killer), ``hang``
sleeps past any timeout, ``oom`` raises MemoryError, ``slow`` sleeps `delay` seconds first.
Its setup appends the worker's pid to `log` (models are set up once per worker, not per file).
Registered in tests in-process, and for CLI subprocesses through a dist-info entry point.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import PipelineStep

MOD = "batch_test_steps"


def setup_probe(offset: float = 1.0, delay: float = 0.0, log: str | None = None) -> dict:
    if log:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    return {"pid": os.getpid()}


def probe(geom, state: dict, offset: float = 1.0, delay: float = 0.0, log: str | None = None):
    name = Path(str(geom.meta.get("path", ""))).name
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "killed" in name:  # what the kernel's OOM killer does
        os.kill(os.getpid(), signal.SIGKILL)
    if "hang" in name:
        time.sleep(600)
    if "oom" in name:
        raise MemoryError
    if "slow" in name or delay:
        time.sleep(delay)
    return replace(geom, vertices=geom.vertices + offset)


def count(geom) -> dict:
    return {"points": int(geom.num_points), "pid": os.getpid()}


@hookimpl
def facet3d_pipeline_steps():
    return [
        PipelineStep("probe", "shift points; misbehave by file name", f"{MOD}:probe",
                     {"offset": (float, 1.0, "shift"), "delay": (float, 0.0, "seconds to sleep"),
                      "log": (str, None, "file the setup appends its pid to")}, setup=f"{MOD}:setup_probe"),
        PipelineStep("count", "a row: the number of points", f"{MOD}:count", gives="row"),
    ]
