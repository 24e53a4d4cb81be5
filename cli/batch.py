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
    return listing


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
