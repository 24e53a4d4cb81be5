"""Where outputs go, decided before any work starts: never onto an input, never two onto one path.

`plan_outputs` maps each input file to its output path (mirroring sub-folders of a folder input),
then refuses, up front and naming both files, an output that is an input or that two inputs share.
`check_single_output` is the same rule for one input and one output file. `output_folder` creates
an output folder and removes it again if the job wrote nothing into it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from facet3d.core.errors import UsageError

__all__ = ["OutputPlan", "plan_outputs", "check_single_output", "same_file", "output_folder"]


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one file (symlinks, hard links, ``./x`` vs ``x``)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))


@dataclass
class OutputPlan:
    """``jobs``: (input, output) pairs to run; ``skipped``: inputs whose output exists (``--no-clobber``)."""

    jobs: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)


def _relative_output(path: Path, roots: list[Path], out_dir: Path, ext: str, name: str = "{stem}") -> Path:
    """Output of input `path`: its place under the folder it came from, mirrored under `out_dir`,
    named by the template ``name`` over the input's stem (a folder input's whole name)."""
    file_name = name.format(stem=path.name if path.is_dir() else path.stem) + ext
    for root in roots:
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        return out_dir / rel.parent / file_name
    return out_dir / file_name


def _key(p: Path) -> Path:
    return Path(os.path.realpath(p))


def plan_outputs(files: Iterable[Path], out_dir: Path, ext: str, roots: Iterable[Path] = (),
                 overwrite: bool = False, no_clobber: bool = False, name: str = "{stem}") -> OutputPlan:
    """Output path per input file, in ``out_dir`` with extension ``ext`` (e.g. ``".ply"``).

    name: the output's name without extension, a template over the input's ``{stem}``.

    roots: the folders the user named; files found inside keep their sub-folder under ``out_dir``.
    Refuses (UsageError) an output that is one of the inputs unless ``overwrite``, and two inputs
    with one output (``a.obj`` and ``a.ply`` -> ``a.ply``) always. ``no_clobber`` skips inputs whose
    output already exists instead of replacing it.
    """
    files = list(files)
    roots = sorted((Path(r) for r in roots), key=lambda r: -len(r.parts))
    plan = OutputPlan()
    claimed: dict[Path, Path] = {}
    inputs = {_key(f) for f in files}
    for f in files:
        target = _relative_output(f, roots, out_dir, ext, name)
        key = _key(target)
        if key in claimed:
            raise UsageError(f"{claimed[key]} and {f} would both be written to {target}: convert them "
                             "separately or to different output folders")
        claimed[key] = f
        if key in inputs and not overwrite:
            raise UsageError(f"{target} is an input: writing {f} there would replace it "
                             "(use another output folder, or --overwrite to replace it)")
        if no_clobber and target.exists():
            plan.skipped.append((f, target))
            continue
        plan.jobs.append((f, target))
    return plan


def check_single_output(src: Path, dst: Path, overwrite: bool = False, no_clobber: bool = False) -> bool:
    """Whether to write ``dst`` from ``src``: False to skip (exists and ``no_clobber``).

    Refuses an output that is the input itself unless ``overwrite``.
    """
    if dst.exists() and same_file(src, dst):
        if not overwrite:
            raise UsageError(f"{dst} is the input file: writing there would replace it "
                             "(choose another output, or --overwrite to replace it)")
        return True
    return not (no_clobber and dst.exists())


class OutputTree:
    """An output folder being filled: `prepare` makes each output's (mirrored) parent folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[Path] = []

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for m in reversed(missing):
            m.mkdir()
            self.created.append(m)

    def prepare(self, target: Path) -> Path:
        """Create the folder ``target`` goes into; returns ``target``."""
        self._mkdirs(Path(target).parent)
        return target

    def remove_empty(self) -> None:
        """Remove the folders this tree created that are still empty (deepest first)."""
        for folder in sorted(self.created, key=lambda p: -len(p.parts)):
            try:
                folder.rmdir()  # only succeeds when empty
            except OSError:
                pass


@contextmanager
def output_folder(path: Path) -> Iterator[OutputTree]:
    """Create ``path`` (and parents) for a job's outputs; on exit, remove the folders the job
    created that are still empty, so a failed job leaves no empty output folder behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a folder")
    tree = OutputTree(path)
    tree._mkdirs(path)
    try:
        yield tree
    finally:
        tree.remove_empty()
