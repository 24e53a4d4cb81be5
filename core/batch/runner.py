"""A batch: plan the outputs, skip what a previous run finished (``resume``), run the rest on an
engine, and keep the record: ``report.json`` (per file: status, seconds, output, error; totals) and,
for pipelines that give table rows, ``results.jsonl``.

Each finished file is appended to a hidden journal in the output folder as it completes, so a
batch killed outright can still be resumed; the report is written at the end, also after Ctrl-C.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from facet3d.core.batch.engines import Job, LocalEngine, RayEngine, usable_cores
from facet3d.core.errors import UsageError
from facet3d.core.pipeline import Pipeline, step_kwargs

REPORT = "report.json"
RESULTS = "results.jsonl"
JOURNAL = ".facet3d-batch.journal.jsonl"
ENGINES = ("local", "ray")


@dataclass
class BatchOptions:
    out_dir: Path
    engine: str = "local"
    workers: int | None = None  # default: the usable cores (local), the cluster's CPUs (ray)
    address: str | None = None  # ray: ray://host:port or auto
    resume: bool = False
    overwrite: bool = False
    timeout: float | None = None  # seconds per file
    recursive: bool = False
    threads: int | None = None  # per worker (torch, OpenMP, BLAS, numba); default: the cores / workers


@dataclass
class BatchPlan:
    pipeline: Pipeline
    jobs: list[Job]  # all inputs, in order
    todo: list[int]  # indices of the jobs to run (resume leaves out the finished ones)
    previous: dict[int, dict] = field(default_factory=dict)  # index -> the finished entry kept
    listing: Any = None  # core.io.inputs.InputListing (what folders held that is not processed)


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    """Paths as given, glob patterns (``*``, ``?``, ``[``, ``**``) expanded in sorted order."""
    out: list[str] = []
    for pat in patterns:
        if glob.has_magic(pat) and not os.path.exists(pat):
            found = sorted(glob.glob(pat, recursive=True))
            if not found:
                raise UsageError(f"--inputs {pat}: matches nothing")
            out.extend(found)
        else:
            out.append(pat)
    return out


def _fingerprint_input(path: Path) -> list[int]:
    """[bytes, newest mtime in ns] of a file, or of every file under a folder (scene inputs)."""
    if path.is_dir():
        size = newest = 0
        for f in path.rglob("*"):
            if f.is_file():
                st = f.stat()
                size, newest = size + st.st_size, max(newest, st.st_mtime_ns)
        return [size, newest]
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _inputs(pipeline: Pipeline, patterns: list[str], out_dir: Path, recursive: bool) -> tuple[list[Path], list[Path], Any]:
    """(inputs, roots, listing): files of the folders given, or, for pipelines whose first step
    reads a path itself (scene folders), each path as given."""
    paths = expand_patterns(patterns)
    out_key = Path(os.path.realpath(out_dir))
    if pipeline.takes == "path":
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise UsageError(f"{missing[0]} does not exist")
        return [Path(p) for p in paths], [], None
    from facet3d.core.io.inputs import list_inputs

    listing = list_inputs(paths, recursive, pipeline.input_format)
    # an output folder inside an input folder must not feed the batch its own outputs
    files = [f for f in listing.files if not Path(os.path.realpath(f)).is_relative_to(out_key)]
    return files, listing.roots, listing


def plan_batch(pipeline: Pipeline, patterns: list[str], opts: BatchOptions) -> BatchPlan:
    """Every input's output, checked before any file is touched; with ``resume``, the inputs whose
    report entry matches (same pipeline, same input file, output present) are left out."""
    from facet3d.core.io.api import output_format
    from facet3d.core.io.outputs import plan_outputs

    if opts.engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got '{opts.engine}'")
    if opts.resume and opts.overwrite:
        raise UsageError("--resume and --overwrite contradict each other")
    pipeline.check()
    out_dir = Path(opts.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    gives = pipeline.gives
    ext = output_format(pipeline.output_format, "output format")[1] if gives == "geometry" else ""
    files, roots, listing = _inputs(pipeline, patterns, out_dir, opts.recursive)
    if not files:
        raise UsageError("no input files")
    if gives == "row":  # rows go to results.jsonl: no output per input
        jobs = [Job(i, str(src), None) for i, src in enumerate(files)]
    else:
        planned = plan_outputs(files, out_dir, ext, roots, name=pipeline.output.name).jobs
        jobs = [Job(i, str(src), str(dst)) for i, (src, dst) in enumerate(planned)]
    previous = _previous_entries(out_dir) if out_dir.exists() else {}
    if previous and not (opts.resume or opts.overwrite):
        raise UsageError(f"{out_dir} holds an earlier batch ({REPORT}): use --resume to finish it, "
                         "--overwrite to redo it, or another --out")
    if not (opts.resume or opts.overwrite):
        existing = next((j.dst for j in jobs if j.dst and os.path.exists(j.dst)), None)
        if existing:
            raise UsageError(f"{existing} exists: use --overwrite to replace outputs, or another --out")
    todo, kept = list(range(len(jobs))), {}
    if opts.resume:
        fp = pipeline.fingerprint()
        todo = []
        for job in jobs:
            entry = previous.get(os.path.realpath(job.src))
            if entry is not None and _still_valid(entry, job, fp):
                kept[job.index] = entry
            else:
                todo.append(job.index)
    return BatchPlan(pipeline, jobs, todo, kept, listing)


def _still_valid(entry: dict, job: Job, fingerprint: str) -> bool:
    if entry.get("status") != "ok" or entry.get("pipeline") != fingerprint or entry.get("output") != job.dst:
        return False
    if job.dst is not None and not os.path.exists(job.dst):
        return False
    try:
        return entry.get("input_fingerprint") == _fingerprint_input(Path(job.src))
    except OSError:
        return False


def _previous_entries(out_dir: Path) -> dict[str, dict]:
    """Realpath of the input -> its latest entry, from report.json then the journal (newer)."""
    entries: dict[str, dict] = {}
    report = out_dir / REPORT
    if report.is_file():
        try:
            for e in json.loads(report.read_text()).get("files", []):
                if "key" in e:
                    entries[e["key"]] = e
        except (OSError, ValueError, AttributeError):
            pass  # an unreadable report: everything is redone
    journal = out_dir / JOURNAL
    if journal.is_file():
        for line in journal.read_text(errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # the last line of a batch killed mid-write
            if isinstance(e, dict) and "key" in e:
                entries[e["key"]] = e
    return entries


def _resources(pipeline: Pipeline) -> dict[str, float]:
    res = {"cpus": 1.0, "gpus": 0.0}
    for spec in pipeline.specs():
        for k in res:
            res[k] = max(res[k], float(spec.resources.get(k, 0.0)))
    return res


def make_engine(opts: BatchOptions, pipeline: Pipeline, jobs: int) -> Any:
    """The engine for ``opts``: workers default to the usable cores (never more than the jobs)."""
    from facet3d.core.resources import available_memory

    cores = usable_cores()
    if opts.workers is not None and opts.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {opts.workers}")
    if opts.threads is not None and opts.threads < 1:
        raise UsageError(f"--threads-per-worker must be at least 1, got {opts.threads}")
    if opts.timeout is not None and opts.timeout <= 0:
        raise UsageError(f"--timeout-per-file must be positive, got {opts.timeout:g}")
    if opts.engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'facet3d[ray]'") from None
        workers = opts.workers
        threads = opts.threads or (max(1, cores // (workers or cores)) if not opts.address else 1)
        memory = available_memory() // (workers or cores) if not opts.address else None
        return RayEngine(workers, threads, opts.timeout, opts.address, _resources(pipeline), memory)
    workers = min(opts.workers or cores, max(jobs, 1))
    return LocalEngine(workers, opts.threads or max(1, cores // workers), opts.timeout, available_memory() // workers)


class Journal:
    """Finished files, one JSON line each, flushed as they finish (a killed batch can resume)."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.fh = open(path, "w" if fresh else "a", encoding="utf-8")

    def add(self, entry: dict) -> None:
        self.fh.write(json.dumps(entry, default=str) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def remove_partials(dst: str | None) -> None:
    """What a killed worker left of ``dst``: the hidden ``.NAME.*.part*`` file or folder beside it."""
    if dst is None:
        return
    import shutil

    target = Path(dst)
    if not target.parent.is_dir():
        return
    for p in target.parent.glob(f".{glob.escape(target.name)}.*part*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@dataclass
class BatchResult:
    report: dict
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return self.report["totals"]["failed"]


def run_batch(plan: BatchPlan, opts: BatchOptions, on_result: Callable[[dict], None] | None = None) -> BatchResult:
    """Run the plan's jobs on the engine, journal each outcome, write the report (and results.jsonl).

    on_result(entry): called in this process as each file finishes (for progress and messages).
    A KeyboardInterrupt stops the workers, keeps finished outputs, writes the report with
    ``interrupted: true`` and returns; nothing half-written is left.
    """
    from facet3d.core.io.outputs import output_folder

    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline = plan.pipeline
    fp = pipeline.fingerprint()
    engine = make_engine(opts, pipeline, len(plan.todo))
    entries: dict[int, dict] = dict(plan.previous)
    journal = Journal(out_dir / JOURNAL, fresh=not opts.resume)
    for entry in plan.previous.values():
        journal.add(entry)  # the report is rebuilt from the journal: keep what resume skipped
    start = time.time()
    running = {i: plan.jobs[i] for i in plan.todo}

    def done(index: int, outcome: dict) -> None:
        job = plan.jobs[index]
        running.pop(index, None)
        if outcome.get("status") != "ok":
            remove_partials(job.dst)
        entry = _entry(job, outcome, fp)
        entries[index] = entry
        journal.add(entry)
        if on_result is not None:
            on_result(entry)

    interrupted = False
    try:
        with output_folder(out_dir) as tree:  # mirrored sub-folders made up front, empty ones removed after
            for i in plan.todo:
                if plan.jobs[i].dst is not None:
                    tree.prepare(Path(plan.jobs[i].dst))
            if plan.todo:
                engine.run([plan.jobs[i] for i in plan.todo], payload(pipeline), done)
    except KeyboardInterrupt:
        interrupted = True
        for job in running.values():
            remove_partials(job.dst)
    finally:
        journal.close()
    report = _report(plan, entries, opts, engine, start, interrupted)
    if pipeline.gives == "row":
        rows = [json.dumps({"input": e["input"], **e["row"]}, default=str)
                for i, e in sorted(entries.items()) if e.get("status") == "ok" and "row" in e]
        _write_atomic(out_dir / RESULTS, "".join(r + "\n" for r in rows))
    _write_atomic(out_dir / REPORT, json.dumps(report, indent=2, default=str) + "\n")
    if not interrupted:
        (out_dir / JOURNAL).unlink(missing_ok=True)
    return BatchResult(report, interrupted)


def _entry(job: Job, outcome: dict, fingerprint: str) -> dict:
    src = Path(job.src)
    entry: dict[str, Any] = {"input": job.src, "output": job.dst, "status": outcome.get("status", "failed"),
                             "seconds": round(float(outcome.get("seconds", 0.0)), 4)}
    for key in ("error", "row", "summary", "points", "faces"):
        if key in outcome:
            entry[key] = outcome[key]
    if outcome.get("warnings"):
        entry["warnings"] = outcome["warnings"]
    entry["key"] = os.path.realpath(src)
    entry["pipeline"] = fingerprint
    try:
        entry["input_fingerprint"] = _fingerprint_input(src)
    except OSError:
        entry["input_fingerprint"] = None
    return entry


def _report(plan: BatchPlan, entries: dict[int, dict], opts: BatchOptions, engine: Any, start: float,
            interrupted: bool) -> dict:
    files = []
    for job in plan.jobs:
        e = entries.get(job.index)
        if e is None:
            e = {"input": job.src, "output": job.dst, "status": "not run"}
        elif job.index in plan.previous:
            e = dict(e, status="ok", resumed=True)
        files.append(e)
    count = lambda s: sum(1 for f in files if f["status"] == s)  # noqa: E731
    totals = {"files": len(files), "ok": count("ok"), "failed": count("failed"), "not_run": count("not run"),
              "resumed": len(plan.previous), "seconds": round(time.time() - start, 3)}
    report: dict[str, Any] = {
        "pipeline": plan.pipeline.as_dict(), "fingerprint": plan.pipeline.fingerprint(),
        "engine": engine.name, "workers": getattr(engine, "workers", None), "interrupted": interrupted,
        "totals": totals, "files": files,
    }
    if plan.pipeline.gives == "row":
        report["results"] = RESULTS
    return report


def payload(pipeline: Pipeline) -> dict[str, Any]:
    """What a worker needs to run ``pipeline``: each step by reference with its parameters, how to
    read inputs and how to write the result. Small and picklable (sent once per task or put once
    in Ray's object store)."""
    from facet3d.core.io.api import output_format

    steps = []
    for step, spec in zip(pipeline.steps, pipeline.specs()):
        steps.append({"name": step.name, "run": spec.run, "setup": spec.setup, "takes": spec.takes,
                      "gives": spec.gives, "params": step_kwargs(spec, step)})
    read_options = {"fields": pipeline.fields} if pipeline.fields else {}
    out_fmt = output_format(pipeline.output_format, "output format")[0].name if pipeline.gives == "geometry" else None
    return {"fingerprint": pipeline.fingerprint(), "steps": steps, "input_format": pipeline.input_format,
            "read_options": read_options, "output_format": out_fmt}
