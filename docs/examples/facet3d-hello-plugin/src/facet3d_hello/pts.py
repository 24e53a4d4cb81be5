"""The PTS point format (Leica-style text), as an example of a facet3d format plugin.

A file is one or more blocks; each block is a line with its point count, then that many lines::

    3
    0.5 1.0 2.0
    0.6 1.1 2.1
    0.7 1.2 2.2

Each point line has 3 columns (x y z), 4 (x y z intensity) or 7 (x y z intensity r g b, colours
0-255); 6 columns (x y z r g b) are read too. Every line of a file has the same columns.

The three functions are what `FormatSpec` points at:
  read(path, **options) -> Geometry
  write(path, geometry, **options) -> None   (the caller makes it atomic: write to `path` as given)
  sniff(head: bytes) -> bool                  (the first 4 KiB; True if this looks like a PTS file)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import FormatError
from facet3d.core.io.record import Geometry

COLUMNS = (3, 4, 6, 7)


def _count(line: str) -> int | None:
    token = line.strip()
    return int(token) if token.isdigit() else None


def _floats(line: str) -> list[float] | None:
    try:
        return [float(t) for t in line.split()]
    except ValueError:
        return None


def sniff(head: bytes) -> bool:
    """A count line, then point lines of 3/4/6/7 numbers. Strict, so it never claims other formats."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    lines = text.splitlines()
    if len(head) >= 4096 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line was cut off by the 4 KiB window
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return False
    n = _count(lines[0])
    if n is None:
        return False
    if n == 0:
        return len(lines) == 1 or _count(lines[1]) is not None
    if len(lines) < 2:
        return False
    first = _floats(lines[1])
    if first is None or len(first) not in COLUMNS:
        return False
    # every complete point line in the window must have the same number of columns
    for ln in lines[2 : 1 + n]:
        vals = _floats(ln)
        if vals is None or len(vals) != len(first):
            return False
    return True


def read(path: str | Path, **options: Any) -> Geometry:
    """Read every block of a PTS file into one point cloud."""
    p = Path(path)
    lines = [ln for ln in p.read_text(encoding="ascii", errors="strict").splitlines() if ln.strip()]
    blocks: list[np.ndarray] = []
    ncols: int | None = None
    i = 0
    while i < len(lines):
        n = _count(lines[i])
        if n is None:
            raise FormatError(f"{p}: line {i + 1}: expected a point count, got '{lines[i].strip()[:40]}'")
        rows = lines[i + 1 : i + 1 + n]
        if len(rows) < n:
            raise FormatError(f"{p}: the header says {n} points but only {len(rows)} follow")
        if n:
            cols = len(rows[0].split())
            if cols not in COLUMNS:
                raise FormatError(f"{p}: line {i + 2}: {cols} columns (expected 3, 4, 6 or 7)")
            if ncols is not None and cols != ncols:
                raise FormatError(f"{p}: blocks have {ncols} and {cols} columns")
            ncols = cols
            try:
                data = np.array(" ".join(rows).split(), dtype=np.float64)
            except ValueError as exc:
                raise FormatError(f"{p}: a point line in lines {i + 2}-{i + 1 + n} is not numeric ({exc})") from None
            if data.size != n * cols:
                raise FormatError(f"{p}: point lines in lines {i + 2}-{i + 1 + n} do not all have {cols} columns")
            blocks.append(data.reshape(n, cols))
        i += 1 + n
    data = np.concatenate(blocks) if blocks else np.zeros((0, ncols or 3))
    geom = Geometry(vertices=data[:, :3].copy(), meta={"pts_blocks": max(len(blocks), 1)})
    cols = data.shape[1]
    if cols in (4, 7):
        geom.attributes["intensity"] = data[:, 3].astype(np.float32)
    if cols in (6, 7):
        geom.colors = (data[:, cols - 3 :] / 255.0).clip(0, 1).astype(np.float32)
    return geom


def write(path: str | Path, geometry: Geometry, **options: Any) -> None:
    """Write one block: x y z, then intensity (if present, or 0 when colours are written), then r g b.

    Options other formats take (``ascii=True`` from `facet3d convert --ascii`, ...) are accepted and
    ignored: PTS is always text. Coordinates are written with enough digits to read back exactly.
    """
    v = np.asarray(geometry.vertices)
    digits = 9 if v.dtype == np.float32 else 17
    columns = [v.astype(np.float64)]
    fmt = [f"%.{digits}g"] * 3
    intensity = geometry.attributes.get("intensity")
    if intensity is not None and np.asarray(intensity).ndim == 1:
        intensity = np.asarray(intensity)
    else:
        intensity = None
    colors = geometry.colors
    if intensity is not None or colors is not None:
        if intensity is None:
            intensity = np.zeros(len(v))
        columns.append(intensity.astype(np.float64).reshape(-1, 1))
        fmt.append("%d" if np.issubdtype(intensity.dtype, np.integer) else "%.9g")
    if colors is not None:
        rgb = np.rint(np.clip(np.asarray(colors, dtype=np.float64)[:, :3], 0, 1) * 255)
        columns.append(rgb)
        fmt += ["%d"] * 3
    data = np.hstack(columns) if len(columns) > 1 else columns[0]
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write(f"{len(v)}\n")
        np.savetxt(fh, data, fmt=fmt)
