"""Running one action over many files: keep going past bad ones, report them, fail at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from facet3d.cli.console import DEBUG, err, fail_line, progress
from facet3d.core.errors import Facet3DError
from facet3d.core.io.inputs import list_input_files


def expand_inputs(paths: Iterable[str], recursive: bool = False) -> list[Path]:
    """`list_input_files`, saying on stderr which text files of each folder were skipped."""
    files, skipped = list_input_files(paths, recursive)
    for folder, documents in skipped.items():
        err.print(f"facet3d: skipping {len(documents)} text file(s) in {folder} that hold no point data "
                  f"(e.g. {documents[0].name})")
    return files


def run_batch(items: list[Path], action: Callable[[Path], Any], label: str) -> tuple[list[Any], list[tuple[Path, str]]]:
    """Apply `action` to each item under a progress bar; returns (results, failures).

    A `Facet3DError` on one item is reported on stderr and the batch goes on.
    """
    results: list[Any] = []
    failures: list[tuple[Path, str]] = []
    with progress() as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            try:
                results.append(action(item))
            except Facet3DError as exc:
                if DEBUG["on"]:
                    err.print_exception()
                msg = str(exc)
                fail_line(msg if str(item) in msg else f"{item}: {msg}")
                failures.append((item, msg))
            bar.advance(task)
    if failures and len(items) > 1:
        err.print(f"facet3d: {len(failures)} of {len(items)} file(s) failed")
    return results, failures
