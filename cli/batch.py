"""Running one action over many files: keep going past bad ones, report them, fail at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from facet3d.cli.console import DEBUG, err, fail_line, progress
from facet3d.core.errors import Facet3DError
from facet3d.core.io.inputs import InputListing, list_inputs


def _names(files: list[Path], most: int = 4) -> str:
    shown = ", ".join(f.name for f in files[:most])
    return shown + (f", ... ({len(files) - most} more)" if len(files) > most else "")


def gather_inputs(paths: Iterable[str], recursive: bool = False, format: Optional[str] = None) -> InputListing:
    """`list_inputs`, saying on stderr what each folder held that will not be processed."""
    listing = list_inputs(paths, recursive, format)
    report_listing(listing, format)
    return listing


def report_listing(listing: InputListing, format: Optional[str] = None) -> None:
    """Say on stderr what each input folder held that will not be processed."""
    for folder, documents in listing.documents.items():
        err.print(f"facet3d: skipping {len(documents)} text file(s) in {folder} that hold no point data: "
                  f"{_names(documents)}", markup=False, highlight=False, soft_wrap=True)
    for folder, unknown in listing.unknown.items():
        what = f"not {format} files" if format else "of no known format"
        err.print(f"facet3d: skipping {len(unknown)} file(s) in {folder} {what}: {_names(unknown)}",
                  markup=False, highlight=False, soft_wrap=True)
    for folder, dirs in listing.subfolders.items():
        err.print(f"facet3d: not descending into {len(dirs)} sub-folder(s) of {folder} (use -r/--recursive): "
                  f"{_names(dirs)}", markup=False, highlight=False, soft_wrap=True)


def expand_inputs(paths: Iterable[str], recursive: bool = False, format: Optional[str] = None) -> list[Path]:
    """The files `gather_inputs` lists (folders expanded), having reported what was skipped."""
    return gather_inputs(paths, recursive, format).files


def run_batch(items: list[Any], action: Callable[[Any], Any], label: str) -> tuple[list[Any], list[tuple[Any, str]]]:
    """Apply `action` to each item under a progress bar; returns (results, failures).

    A `Facet3DError` on one item is reported on stderr and the batch goes on.
    Items are paths, or tuples whose first element is the input path (named in messages).
    """
    results: list[Any] = []
    failures: list[tuple[Any, str]] = []
    with progress() as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            name = str(item[0] if isinstance(item, tuple) else item)
            try:
                results.append(action(item))
            except Facet3DError as exc:
                if DEBUG["on"]:
                    err.print_exception()
                msg = str(exc)
                fail_line(msg if name in msg else f"{name}: {msg}")
                failures.append((item[0] if isinstance(item, tuple) else item, msg))
            bar.advance(task)
    if failures and len(items) > 1:
        err.print(f"facet3d: {len(failures)} of {len(items)} file(s) failed")
    return results, failures


def run_plan(plan: Any, out_dir: Path, action: Callable[[tuple[Path, Path]], dict], label: str,
             json_out: bool) -> None:
    """Run a planned folder job (`core.io.outputs.plan_outputs`) into ``out_dir`` and report it.

    action(job) -> a JSON row for the written file (job = (input, output)). Says what --no-clobber
    skipped, creates the output folders as they are needed (none is left empty), prints the summary
    (and with ``json_out`` {"written", "skipped", "failed"}), and exits 1 when any input failed.
    """
    import typer

    from facet3d.cli.console import print_json
    from facet3d.core.io.outputs import output_folder

    for path, target in plan.skipped:
        err.print(f"facet3d: {target} exists, skipped {path} (--no-clobber)", markup=False, highlight=False,
                  soft_wrap=True)
    with output_folder(out_dir) as tree:
        results, failures = run_batch([(p, tree.prepare(t)) for p, t in plan.jobs], action, label)
    if json_out:
        print_json({"written": results, "skipped": [{"input": str(p), "output": str(t)} for p, t in plan.skipped],
                    "failed": [{"input": str(p), "error": m} for p, m in failures]})
    skipped = f", skipped {len(plan.skipped)} existing" if plan.skipped else ""
    failed = f", {len(failures)} failed" if failures else ""
    err.print(f"facet3d: wrote {len(results)} file(s) to {out_dir}{skipped}{failed}")
    if failures:
        raise typer.Exit(1)
