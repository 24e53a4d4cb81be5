"""`facet3d demo`: run every plugin's demo step on sample_data/ and say where the results are."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer

from facet3d.cli.console import err, out, print_json
from facet3d.core.errors import Facet3DError, UsageError
from facet3d.core.paths import default_sample_dir


def _select(steps: list, only: list[str]) -> list:
    """The steps named by --only (all when none is named), refusing unknown names."""
    if not only:
        return steps
    unknown = set(only) - {s.name for s in steps}
    if unknown:
        raise UsageError(f"unknown demo step(s): {', '.join(sorted(unknown))} (have: {', '.join(s.name for s in steps)})")
    return [s for s in steps if s.name in only]


def _run_step(step, sample_dir: Path, out_dir: Path, quick: bool) -> dict:
    """Run one demo step in its own folder; a `Facet3DError` is reported and recorded, not raised."""
    from facet3d.core.specs import DemoContext, resolve

    step_dir = out_dir / step.name
    step_dir.mkdir(exist_ok=True)
    err.print(f"facet3d demo: [bold]{step.name}[/] - {step.description}")
    t0 = time.perf_counter()
    try:
        summary = resolve(step.run)(DemoContext(sample_dir=Path(sample_dir), out_dir=step_dir, quick=quick))
        status, error = "ok", None
    except Facet3DError as exc:
        summary, status, error = None, "failed", str(exc)
        err.print(f"[red]facet3d demo: {step.name} failed:[/] {exc}")
    return {"step": step.name, "status": status, "error": error, "seconds": round(time.perf_counter() - t0, 3),
            "out_dir": str(step_dir), "summary": summary}


def demo_page(out_dir: Path, steps: list, report: list[dict], sample_dir: Path) -> Path:
    """``index.html``: each step's pictures, numbers and commands (`facet3d.core.report`)."""
    from facet3d.core.report import Section, pictures_in, scalar_metrics, write_report

    sections = []
    for step, r in zip(steps, report):
        summary = r["summary"] if isinstance(r["summary"], dict) else {}
        cmds = summary.get("commands") or ([summary["command"]] if summary.get("command") else [])
        metrics = {k: v for k, v in scalar_metrics(summary).items() if k not in ("command",)}
        sections.append(Section(step.name, step.description, pictures_in(r["out_dir"]), metrics,
                                [str(c) for c in cmds], r["status"], r["error"]))
    line = f"facet3d demo --data {sample_dir} --out {out_dir}"
    return write_report(out_dir / "index.html", "facet3d demo", sections,
                        subtitle=f"{line}   ({sum(r['status'] == 'ok' for r in report)} of {len(report)} steps ok)")


def demo(
    out_dir: Path = typer.Option(Path("facet3d_demo_out"), "--out", "-o", help="Folder for the results."),
    data: Optional[Path] = typer.Option(None, "--data", help="Sample data folder (default: the checkout's sample_data/)."),
    only: List[str] = typer.Option([], "--only", help="Run only these steps (repeatable)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller sizes, for tests."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run every plugin's demo step on the sample data and write the results to a folder."""
    from facet3d.core.plugins import get_plugins

    sample_dir = data or default_sample_dir()
    if sample_dir is None or not Path(sample_dir).is_dir():
        raise UsageError("no sample data folder: pass --data DIR (a source checkout has sample_data/)")
    steps = _select(sorted(get_plugins().demo_steps().values(), key=lambda s: (s.order, s.name)), only)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = [_run_step(step, Path(sample_dir), out_dir, quick) for step in steps]
    (out_dir / "demo_report.json").write_text(json.dumps(report, indent=2, default=str))
    page = demo_page(out_dir, steps, report, sample_dir)
    if json_out:
        print_json(report)
    else:
        for r in report:
            out.print(f"{r['step']:<20} {r['status']:<7} {r['seconds']:>7.2f} s  {r['out_dir']}")
        out.print(f"results: {out_dir.resolve()}  (open {page})")
    if any(r["status"] == "failed" for r in report):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
