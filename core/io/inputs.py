"""Inputs as users give them (files and folders) -> the files to read.

Pure listing: no printing. The CLI wrapper (`facet3d.cli.batch.expand_inputs`) reports what was
skipped: documents beside the scans, files of no known format, sub-folders not descended into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from facet3d.core.errors import InputError

# Extensions that plain documents share with point data: inside a folder, such a file is only taken
# when its content reads as numbers (so LICENSE.txt or README.txt beside the scans are not "bad files").
LOOSE_TEXT = (".txt", ".csv")


@dataclass
class InputListing:
    """What a list of files and folders expands to.

    files:       the files to process, in order (folders sorted, files as given)
    roots:       the folders given (outputs mirror the tree below each)
    documents:   folder -> .txt/.csv files in it that hold no point data (left out)
    unknown:     folder -> files in it of no known format (or not of ``--format``'s extensions)
    subfolders:  folder -> sub-folders not descended into (no ``-r``)
    """

    files: list[Path] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    documents: dict[Path, list[Path]] = field(default_factory=dict)
    unknown: dict[Path, list[Path]] = field(default_factory=dict)
    subfolders: dict[Path, list[Path]] = field(default_factory=dict)


def _looks_like_data(path: Path) -> bool:
    from facet3d.core.io.api import SNIFF_BYTES, registered_formats
    from facet3d.core.specs import resolve

    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    return any(s.sniff is not None and s.read is not None and not s.explicit_only and resolve(s.sniff)(head)
               for s in registered_formats().values())


def is_document(path: Path) -> bool:
    """A .txt / .csv file whose content is no point data (README.txt, LICENSE.txt beside the scans)."""
    return path.suffix.lower() in LOOSE_TEXT and not _looks_like_data(path)


def _readable_extensions(format: str | None) -> tuple[str, ...]:
    """Extensions a folder listing takes: those of ``format`` (even an explicit-only one such as
    kitti-bin's ``.bin``), else of every auto-detectable reader."""
    from facet3d.core.io.api import get_format, registered_formats

    if format:
        return tuple(get_format(format, "read").extensions)
    return tuple({e for spec in registered_formats().values() if spec.read and not spec.explicit_only
                  for e in spec.extensions})


def _walk(folder: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """(files, sub-folders not entered) of ``folder``; hidden entries (``.x``) are ignored."""
    files, dirs = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                sub_files, _ = _walk(entry, True)
                files.extend(sub_files)
            else:
                dirs.append(entry)
        elif entry.is_file():
            files.append(entry)
    return files, dirs


def list_inputs(paths: Iterable[str | Path], recursive: bool = False, format: str | None = None) -> InputListing:
    """Files as given; folders expand to the files inside whose extension a reader knows.

    format: an input format name; folders then yield the files with that format's extensions.
    Raises InputError for a folder with no file to process (hinting ``-r`` when it has sub-folders).
    """
    exts = _readable_extensions(format)
    listing = InputListing()
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            listing.files.append(p)
            continue
        listing.roots.append(p)
        every, dirs = _walk(p, recursive)
        found = [f for f in every if f.name.lower().endswith(exts)]
        unknown = [f for f in every if not f.name.lower().endswith(exts)]
        documents = [] if format else [f for f in found if is_document(f)]
        if documents:
            listing.documents[p] = documents
            found = [f for f in found if f not in documents]
        if unknown:
            listing.unknown[p] = unknown
        if dirs:
            listing.subfolders[p] = dirs
        if not found:
            what = f"no {format} file" if format else "no file of a known format"
            hint = f" (it has {len(dirs)} sub-folder(s): use -r/--recursive)" if dirs else ""
            raise InputError(f"{p}: folder holds {what}{hint}")
        listing.files.extend(found)
    return listing


def list_input_files(paths: Iterable[str | Path], recursive: bool = False) -> tuple[list[Path], dict[Path, list[Path]]]:
    """`list_inputs` as ``(files, skipped_documents)``: for callers that need only the files."""
    listing = list_inputs(paths, recursive)
    return listing.files, listing.documents
