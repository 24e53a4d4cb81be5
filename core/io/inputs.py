"""Inputs as users give them (files and folders) -> the files to read.

Pure listing: no printing. The CLI wrapper (`facet3d.cli.batch.expand_inputs`) reports what was skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from facet3d.core.errors import InputError

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


def _readable_extensions() -> set[str]:
    from facet3d.core.io.api import registered_formats

    return {e for spec in registered_formats().values() if spec.read and not spec.explicit_only for e in spec.extensions}


def list_input_files(paths: Iterable[str | Path], recursive: bool = False) -> tuple[list[Path], dict[Path, list[Path]]]:
    """Files as given; folders expand to the files inside whose extension a reader knows.

    Returns ``(files, skipped_documents)``: skipped_documents maps each given folder to the
    .txt/.csv files in it that hold no point data (left out of ``files``).
    Raises InputError for a folder with no file of a known format.
    """
    exts = _readable_extensions()
    files: list[Path] = []
    skipped: dict[Path, list[Path]] = {}
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            files.append(p)
            continue
        it = p.rglob("*") if recursive else p.iterdir()
        found = sorted(f for f in it if f.is_file() and any(f.name.lower().endswith(e) for e in exts))
        documents = [f for f in found if f.suffix.lower() in LOOSE_TEXT and not _looks_like_data(f)]
        if documents:
            skipped[p] = documents
            found = [f for f in found if f not in documents]
        if not found:
            raise InputError(f"{p}: folder holds no file of a known format")
        files.extend(found)
    return files, skipped
