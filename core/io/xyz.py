"""XYZ / TXT / CSV point clouds: one point per line, numbers separated by whitespace, ``,`` or ``;``.

Lines starting with ``#`` or ``//`` are comments. Column names come from, in order: a header line
that is not numeric (``x,y,z,red,green,blue``), or the last comment line before the data when it
names as many columns as there are (``//X Y Z R G B`` as CloudCompare/Agisoft write it). Named
columns: x y z, nx ny nz (or normal_x..), red green blue alpha (or r g b a; /255 when any value
exceeds 1), anything else -> ``attributes``. Unnamed columns are split by `arrays.split_columns`:
3 = xyz, 4 = xyz + intensity, 6 = xyz + RGB when columns 4-6 hold integers 0..255, normals when
every row has unit length, RGB in [0, 1] when all values lie there.

Reading is chunked (``chunk_lines`` lines at a time), so only the result has to fit in memory.
``vertices: [N, 3] float64`` (geo-referenced coordinates need the precision).
The writer puts a ``# x y z ...`` column header first, so its files read back unambiguously.
"""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from facet3d.core.io.arrays import note_nonfinite, split_columns
from facet3d.core.io.record import Geometry

_SEP = re.compile(r"[,;\s]+")
_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)
CHUNK_LINES = 1 << 18


def _is_comment(line: str) -> bool:
    return line.startswith(("#", "//"))


def _fields(line: str) -> list[str]:
    return [t for t in _SEP.split(line.strip()) if t]


def _numeric(tokens: list[str]) -> bool:
    return bool(tokens) and all(_NUM.match(t) for t in tokens)


def sniff(head: bytes) -> bool:
    """Every complete non-comment line in the head: the same count (>= 3) of numbers."""
    if b"\x00" in head:
        return False
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    lines = text.splitlines()
    if len(head) >= 4096 and lines:
        lines = lines[:-1]  # the last line may be cut off
    rows = [_fields(ln) for ln in lines if ln.strip() and not _is_comment(ln.lstrip())]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a CSV header row of names
    if not rows or not all(_numeric(r) for r in rows):
        return False
    counts = {len(r) for r in rows}
    return len(counts) == 1 and min(counts) >= 3


def _header(lines: Iterator[str]) -> tuple[list[str] | None, list[str], list[str]]:
    """Skip comments/blank lines -> (column names or None, first data lines, comments)."""
    comments: list[str] = []
    for line in lines:
        s = line.strip()
        if not s:
            continue
        if _is_comment(s):
            comments.append(s.lstrip("#/").strip())
            continue
        tok = _fields(s)
        if not _numeric(tok):
            return [t.lower() for t in tok], [], comments  # a header row of names
        named = _fields(comments[-1]) if comments else []
        names = [t.lower() for t in named] if len(named) == len(tok) and not _numeric(named) else None
        return names, [line], comments
    return None, [], comments


def _chunks(first: list[str], rest: Iterable[str], chunk_lines: int) -> Iterator[list[str]]:
    block = list(first)
    it = iter(rest)
    while True:
        block += list(islice(it, chunk_lines - len(block)))
        if not block:
            return
        yield block
        block = []


def read(path: str | Path, chunk_lines: int = CHUNK_LINES, **_: Any) -> Geometry:
    with open(path, "r", encoding="utf-8", errors="strict", newline=None) as fh:
        names, first, comments = _header(fh)
        parts, ncols = [], None
        for block in _chunks(first, fh, chunk_lines):
            rows = [_SEP.sub(" ", ln.strip()) for ln in block if ln.strip() and not _is_comment(ln.lstrip())]
            if not rows:
                continue
            arr = np.loadtxt(rows, dtype=np.float64, ndmin=2)
            if ncols is None:
                ncols = arr.shape[1]
            elif arr.shape[1] != ncols:
                raise ValueError(f"rows have {ncols} and {arr.shape[1]} columns")
            parts.append(arr)
    if not parts:
        if names:
            raise ValueError("a column header but no data rows")
        ncols = 3
    data = np.concatenate(parts) if parts else np.zeros((0, 3))
    if data.shape[1] < 3:
        raise ValueError(f"rows have {data.shape[1]} numbers, need at least x y z")
    geom = split_columns(data, names)
    geom.meta["columns"] = names or data.shape[1]
    if comments:
        geom.meta["comments"] = comments
    return note_nonfinite(geom)


def write(path: str | Path, geom: Geometry, delimiter: str = " ", **_: Any) -> None:
    """Columns: x y z [nx ny nz] [red green blue [alpha] as floats in 0..1] [attributes (1-D)]."""
    names, cols, fmts = ["x", "y", "z"], [geom.vertices], ["%.17g"] * 3
    if geom.vertices.dtype == np.float32:
        fmts = ["%.9g"] * 3
    if geom.normals is not None:
        names += ["nx", "ny", "nz"]
        cols.append(geom.normals)
        fmts += ["%.9g"] * 3
    if geom.colors is not None:
        c = np.asarray(geom.colors, dtype=np.float32)
        names += ["red", "green", "blue", "alpha"][: c.shape[1]]
        cols.append(c)
        fmts += ["%.9g"] * c.shape[1]
    for k, a in geom.attributes.items():
        a = np.asarray(a)
        if a.ndim == 1 and a.dtype.kind in "iufb" and not _SEP.search(k) and not _NUM.match(k):
            names.append(k)
            cols.append(a.reshape(-1, 1))
            fmts.append("%d" if a.dtype.kind in "iub" else "%.17g")
    table = np.column_stack([np.asarray(c, dtype=np.float64).reshape(len(geom.vertices), -1) for c in cols])
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write("# " + " ".join(names) + "\n")
        np.savetxt(fh, table, fmt=fmts, delimiter=delimiter)
