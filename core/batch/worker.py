"""What runs inside a batch worker process (local pool or Ray): one pipeline over one input.

Kept light at import (no torch, no open3d): workers import what their steps need on first use.
Models and other step state are set up once per worker (`PipelineStep.setup`) and cached here
for the life of the process. Every outcome comes back as a small JSON-able dict; nothing raises
out of `run_job` except the process dying (which the engine records).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

_STATES: dict[tuple[str, int], Any] = {}  # (pipeline fingerprint, step index) -> what setup returned

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def init_worker(threads: int, quiet_stdout: bool = True, memory_limit: int | None = None) -> None:
    """Per worker process: its share of the cores and memory, Ctrl-C left to the parent, stdout kept for data.

    Threads are set through the environment before torch / open3d / numba are imported, so every
    library's pool agrees; the parent's terminal Ctrl-C reaches the whole process group, and the
    parent stops the workers itself. What native libraries print goes nowhere (stderr stays with
    FACET3D_DEBUG=1, which `--debug` sets): each file's outcome is in the report.
    memory_limit: this worker's share (``FACET3D_MEMORY_LIMIT``), so that up-front memory checks
    refuse a file that only fits when it has the machine to itself.
    """
    if memory_limit:
        os.environ["FACET3D_MEMORY_LIMIT"] = str(int(memory_limit))
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:  # a worker forked from a process that had torch already
        sys.modules["torch"].set_num_threads(threads)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (some Ray setups): the engine stops it instead
        pass
    if quiet_stdout:  # native libraries print on fd 1 / 2 (PoissonRecon's warnings): not on the user's terminal
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        if os.environ.get("FACET3D_DEBUG") != "1":
            os.dup2(devnull, 2)
        else:  # --debug: a worker that crashes in native code prints where (Python frames) first
            import faulthandler

            faulthandler.enable()
        os.close(devnull)


_CONFIGURED = {"done": False}


def run_job_in_ray(payload: dict[str, Any], src: str, dst: str | None, threads: int,
                   memory_limit: int | None = None) -> dict[str, Any]:
    """`run_job` as a Ray task: the worker is configured on its first task (Ray workers are reused)."""
    if not _CONFIGURED["done"]:
        init_worker(threads, quiet_stdout=False, memory_limit=memory_limit)  # Ray keeps workers' stdout in its logs
        _CONFIGURED["done"] = True
    return run_job(payload, src, dst)


def _state(payload: dict[str, Any], index: int) -> Any:
    key = (payload["fingerprint"], index)
    if key not in _STATES:
        from facet3d.core.specs import resolve

        step = payload["steps"][index]
        _STATES[key] = resolve(step["setup"])(**step["params"])
    return _STATES[key]


def _files_folder(target: Path) -> Path:
    """A fresh hidden folder beside ``target`` that becomes ``target`` when the step succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))


def _place_folder(tmp: Path, target: Path) -> None:
    """Rename the finished folder onto ``target`` (an older output folder is replaced whole)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old.part")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _describe(value: Any) -> dict[str, Any]:
    from facet3d.core.io.record import Geometry

    if isinstance(value, Geometry):
        return {"points": value.num_points, "faces": value.num_faces}
    return {}


def _run_steps(payload: dict[str, Any], src: str, dst: str | None) -> dict[str, Any]:
    from facet3d.core.specs import resolve

    value: Any = Path(src)
    steps = payload["steps"]
    result: dict[str, Any] = {}
    if not steps or steps[0]["takes"] == "geometry":
        from facet3d.core.io.api import read

        value = read(src, format=payload["input_format"], **payload["read_options"])
    for i, step in enumerate(steps):
        kwargs = dict(step["params"])
        if step["setup"] is not None:
            kwargs["state"] = _state(payload, i)
        fn = resolve(step["run"])
        if step["gives"] == "files":
            assert dst is not None
            tmp = _files_folder(Path(dst))
            try:
                summary = fn(value, out_dir=tmp, **kwargs)
                _place_folder(tmp, Path(dst))
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            result["output"] = dst
            if isinstance(summary, dict):
                result["summary"] = summary
            return result
        value = fn(value, **kwargs)
        if step["gives"] == "row":
            if not isinstance(value, dict):
                raise TypeError(f"step '{step['name']}' gives a row but returned {type(value).__name__}")
            result["row"] = value
            return result
    from facet3d.core.io.api import write

    assert dst is not None
    write(dst, value, format=payload["output_format"])
    result["output"] = dst
    result.update(_describe(value))
    return result


def run_job(payload: dict[str, Any], src: str, dst: str | None) -> dict[str, Any]:
    """Run the pipeline on one input -> ``{"status": "ok"|"failed", "seconds", "output"?, "row"?,
    "error"?, "warnings": [...]}``. The output is written atomically or not at all."""
    from facet3d.core.errors import Facet3DError, Facet3DWarning

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _run_steps(payload, src, dst)
            result["status"] = "ok"
        except Facet3DError as exc:
            result = {"status": "failed", "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        except MemoryError:
            result = {"status": "failed", "error": "out of memory"}
        except Exception as exc:  # noqa: BLE001 -- a bug or a library's own error: this file fails, the batch goes on
            first = str(exc).splitlines()[0] if str(exc) else ""
            result = {"status": "failed", "error": f"{type(exc).__name__}: {first}".rstrip(": "),
                      "traceback": traceback.format_exc(limit=20)}
    seen: list[str] = []
    for w in caught:
        if issubclass(w.category, Facet3DWarning) and str(w.message) not in seen:
            seen.append(str(w.message))
    result["warnings"] = seen
    result["seconds"] = time.perf_counter() - start
    result["pid"] = os.getpid()
    return result
