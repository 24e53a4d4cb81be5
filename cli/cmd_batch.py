"""`facet3d batch`: a pipeline over many files on local worker processes or a Ray cluster.

Parses, calls `facet3d.core.batch`, prints: a progress bar (or plain lines) and one line per failed
file on stderr, the report as JSON on stdout with ``--json``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, List, Optional

import typer

from facet3d.cli.console import err, fail_line, print_json
from facet3d.core.errors import UsageError

HELP = """Run a pipeline over many files: resumable, and a bad file never stops the batch.

\b
The pipeline is a YAML/JSON file (steps, output format and naming) or steps given with -s; it is
checked before any file is touched. Each input gets one output (mirrored folder layout), written
atomically; OUT/report.json records every file (status, seconds, output, error) and pipelines
that give table rows (classify, compare) write OUT/results.jsonl. A file that fails, hangs past
--timeout-per-file, runs out of memory or crashes its worker is reported and the batch goes on;
the exit code is 1 when any file failed. Ctrl-C stops cleanly (finished outputs and the report
kept); --resume then runs only what is missing or whose pipeline changed.

\b
Examples:
  facet3d batch -s voxel-down:voxel=0.01 -s normals -s mesh --inputs scans/ --out meshes/
  facet3d batch prep.yaml --inputs 'scans/**/*.laz' --out prepared/ --workers 8 --resume
  facet3d batch -s classify:ckpt=cls.safetensors --inputs shapes/ --out labels/ --json
  facet3d batch prep.yaml --inputs scans/ --out out/ --engine ray --address auto   # a Ray cluster
"""


def _split_args(items: list[str], steps: list[str], inputs: list[str]) -> tuple[Optional[str], list[str]]:
    """(pipeline file, inputs): without -s the first argument is the pipeline file."""
    items = list(items)
    pipeline_file = None
    if not steps:
        if not items:
            raise UsageError("give a pipeline file or steps with -s (see 'facet3d pipeline steps')")
        pipeline_file = items.pop(0)
    elif items and items[0].lower().endswith((".yaml", ".yml", ".json")) and Path(items[0]).is_file() and not inputs:
        raise UsageError(f"give either a pipeline file ({items[0]}) or -s steps, not both")
    return pipeline_file, inputs + items


class _Display:
    """Progress on stderr: a rich bar on a terminal, else a plain line every ~10% (and at the end)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.start = time.perf_counter()
        self.bar: Any = None
        self.next_line = max(1, total // 10)
        if err.is_terminal and total:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("[red]{task.fields[failed]} failed"), TextColumn("{task.fields[rate]}"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=err, transient=True)
            self.task = self.bar.add_task(label, total=total, failed=0, rate="")
            self.bar.start()

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def __call__(self, entry: dict) -> None:
        self.done += 1
        name = entry["input"]
        if entry["status"] != "ok":
            self.failed += 1
            fail_line(f"{name}: {entry.get('error', 'failed')}")
        for w in entry.get("warnings", []):
            err.print(f"facet3d: warning: {name}: {w}", markup=False, highlight=False, soft_wrap=True)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, failed=self.failed, rate=f"{self.rate():.1f} files/s")
        elif self.done >= self.next_line or self.done == self.total:
            self.next_line = self.done + max(1, self.total // 10)
            left = (self.total - self.done) / max(self.rate(), 1e-9)
            err.print(f"facet3d: batch {self.done}/{self.total} done, {self.failed} failed, {self.rate():.1f} files/s, "
                      f"ETA {left:.0f} s", markup=False, highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a cluster scheduler's SIGTERM stops the batch as Ctrl-C does


def batch(
    items: List[str] = typer.Argument(None, metavar="PIPELINE|INPUT", help="A pipeline file (YAML/JSON) unless -s is given; further arguments are inputs."),
    step: List[str] = typer.Option([], "--step", "-s", metavar="STEP", help="A step, 'name' or 'name:key=value,...'; repeat in order (see 'facet3d pipeline steps')."),
    inputs: List[str] = typer.Option([], "--inputs", "-i", metavar="DIR|GLOB", help="Input files, folders or glob patterns (quote them: 'scans/**/*.ply'); repeatable."),
    out_dir: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder (report.json, results.jsonl, one output per input)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Worker processes (default: the usable cores; ray: the cluster's CPUs)."),
    threads: Optional[int] = typer.Option(None, "--threads-per-worker", min=1, help="Threads each worker may use (torch, OpenMP, BLAS, numba; default: the cores / workers)."),
    engine: str = typer.Option("local", "--engine", help="local (a process pool) or ray."),
    address: Optional[str] = typer.Option(None, "--address", metavar="ADDRESS", help="--engine ray: an existing cluster, ray://host:port or auto (default: start a local Ray)."),
    resume: bool = typer.Option(False, "--resume", help="Skip inputs whose output and pipeline match the report; run the rest."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every input, replacing earlier outputs in --out."),
    timeout: Optional[float] = typer.Option(None, "--timeout-per-file", metavar="SECONDS", help="Stop a file (and its worker) after this long; it is reported as failed."),
    to: Optional[str] = typer.Option(None, "--to", metavar="FORMAT", help="Output format of geometry (default: the pipeline file's, else ply)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", metavar="FORMAT", help="Input format (default: detect)."),
    fields: Optional[str] = typer.Option(None, "--fields", metavar="NAMES", help="--format bin: the columns, e.g. x,y,z,intensity."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders of folder inputs."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    from facet3d.core.batch import BatchOptions, plan_batch, run_batch
    from facet3d.core.pipeline import OutputSpec, Pipeline, load_pipeline, parse_step

    if address is not None and engine != "ray":
        raise UsageError("--address names a Ray cluster: use it with --engine ray")
    if timeout is not None and not (timeout > 0 and timeout != float("inf")):
        raise UsageError(f"--timeout-per-file must be a positive number of seconds, got {timeout:g}")
    pipeline_file, paths = _split_args(items or [], step, inputs)
    if not paths:
        raise UsageError("no inputs: give --inputs DIR|GLOB (or inputs after the pipeline)")
    if pipeline_file is not None:
        pipeline = load_pipeline(pipeline_file)
    else:
        pipeline = Pipeline([parse_step(s) for s in step], OutputSpec())
    if to is not None:
        pipeline.output.format = to
    if fmt is not None:
        pipeline.input_format = fmt
    if fields is not None:
        pipeline.fields = fields
    opts = BatchOptions(out_dir=out_dir, engine=engine, workers=workers, address=address, resume=resume,
                        overwrite=overwrite, timeout=timeout, recursive=recursive, threads=threads)
    from facet3d.cli.console import DEBUG

    if DEBUG["on"]:
        os.environ["FACET3D_DEBUG"] = "1"  # workers keep their stderr (native libraries' messages)
    plan = plan_batch(pipeline, paths, opts)
    _say_skipped(plan)
    if opts.resume and plan.previous:
        err.print(f"facet3d: resuming: {len(plan.previous)} of {len(plan.jobs)} file(s) already done", markup=False)
    display = _Display(len(plan.todo), "batch")
    old = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        result = run_batch(plan, opts, on_result=display)
    finally:
        signal.signal(signal.SIGTERM, old)
        display.close()
    _finish(result, out_dir, json_out)


def _say_skipped(plan: Any) -> None:
    """What the input folders held that the batch leaves alone (documents, unknown formats, sub-folders)."""
    if plan.listing is None:
        return
    from facet3d.cli.batch import report_listing

    report_listing(plan.listing, plan.pipeline.input_format)


def _finish(result: Any, out_dir: Path, json_out: bool) -> None:
    t = result.report["totals"]
    if json_out:
        print_json(result.report)
    rate = (t["ok"] + t["failed"] - t["resumed"]) / max(t["seconds"], 1e-9)
    resumed = f", {t['resumed']} kept from before" if t["resumed"] else ""
    err.print(f"facet3d: batch: {t['ok']} ok, {t['failed']} failed{resumed} of {t['files']} in {t['seconds']:.1f} s "
              f"({rate:.1f} files/s); report: {out_dir / 'report.json'}", markup=False, highlight=False, soft_wrap=True)
    if result.interrupted:
        err.print(f"facet3d: interrupted: {t['not_run']} file(s) not run; finish with --resume", markup=False)
        raise typer.Exit(130)
    if t["failed"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("batch", help=HELP)(batch)
