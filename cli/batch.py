"""Running one action over many files: keep going past bad ones, report them, fail at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from facet3d.cli.console import DEBUG, err, fail_line, progress
from facet3d.core.errors import Facet3DError, InputError


# Extensions that plain documents share with point data: inside a folder, such a file is only taken
# when its content reads as numbers (so LICENSE.txt or README.txt beside the scans are not "bad files").
LOOSE_TEXT = (".txt", ".csv")


def _looks_like_data(path: Path) -> bool:
    from facet3d.core.io.api import SNIFF_BYTES, registered_formats
    from facet3d.core.specs import resolve

    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    return any(s.sniff is not None and s.read is not None and not s.explicit_only and resolve(s.sniff)(head)
               for s in registered_formats().values())


def expand_inputs(paths: Iterable[str], recursive: bool = False) -> list[Path]:
    """Files as given; folders expand to the files inside whose extension a reader knows."""
    from facet3d.core.io.api import registered_formats

    exts = {e for spec in registered_formats().values() if spec.read and not spec.explicit_only for e in spec.extensions}
    result: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(f for f in it if f.is_file() and any(f.name.lower().endswith(e) for e in exts))
            documents = [f for f in found if f.suffix.lower() in LOOSE_TEXT and not _looks_like_data(f)]
            if documents:
                err.print(f"facet3d: skipping {len(documents)} text file(s) in {p} that hold no point data "
                          f"(e.g. {documents[0].name})")
                found = [f for f in found if f not in documents]
            if not found:
                raise InputError(f"{p}: folder holds no file of a known format")
            result.extend(found)
        else:
            result.append(p)
    return result


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
