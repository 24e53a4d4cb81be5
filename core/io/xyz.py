"""XYZ / TXT / CSV point clouds: one point per line, numbers separated by whitespace, ``,`` or ``;``.

Lines starting with ``#`` or ``//`` are comments. Column names come from, in order: a header line
that is not numeric (``x,y,z,red,green,blue``), or the last comment line before the data when it
names as many columns as there are (``//X Y Z R G B`` as CloudCompare/Agisoft write it). Named
columns: x y z, nx ny nz (or normal_x..), red green blue alpha (or r g b a; /255 when any value
exceeds 1), anything else -> ``attributes``. Unnamed columns are split by `arrays.split_columns`:
3 = xyz, 4 = xyz + intensity, 6 = xyz + RGB when columns 4-6 hold integers 0..255, normals when
every row has unit length, RGB in [0, 1] when all values lie there.

Reading is chunked (``chunk_lines`` lines at a time), so only the result has to fit in memory.
``vertices: [N, 3] float64`` (geo-referenced coordinates need the precision). ``meta["xyz"]`` records
the file's layout (comment lines, header line and style, column names and roles, delimiter, colour
range) so that XYZ -> XYZ writes the same header, delimiter and colour range back.

The writer writes numbers in their shortest exact form (no ``0.10000000000000001``). Without an XYZ
source it puts a ``# x y z ...`` column header first, so its files read back unambiguously.
"""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from facet3d.core.io.arrays import note_nonfinite, split_columns_with_roles
from facet3d.core.io.record import Geometry

_SEP = re.compile(r"[,;\s]+")
_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)
CHUNK_LINES = 1 << 18
MAX_PREAMBLE = 100  # comment lines kept for the writer
DECIMALS_SAMPLE = 1000  # rows looked at for fixed-decimal columns


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


def _delimiter(line: str) -> str:
    """The separator between the first two fields of `line`: ``,`` ``;`` ``, `` tab or space."""
    m = _SEP.search(line.strip())
    if m is None:
        return " "
    sep = m.group()
    core = sep.strip()
    if not core:
        return "\t" if "\t" in sep else " "
    return sep if sep == core + " " else core


def _header(lines: Iterator[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Skip comments/blank lines -> (layout, first data lines, comments).

    layout: ``names`` (header tokens as written, or None), ``header`` (the raw header line or None),
    ``header_kind`` ("row": a line of names, "comment": the last comment line names the columns),
    ``header_prefix`` (``//``, ``# `` ...), ``header_delimiter``, ``preamble`` (raw comment lines before it).
    """
    raw: list[str] = []
    for line in lines:
        s = line.strip()
        if not s:
            continue
        if _is_comment(s):
            raw.append(line.rstrip("\r\n"))
            continue
        tok = _fields(s)
        if not _numeric(tok):  # a header row of names
            return _layout(raw, line.rstrip("\r\n"), "row", tok), [], _comments(raw)
        named = _fields(raw[-1].strip().lstrip("#/")) if raw else []
        if len(named) == len(tok) and not _numeric(named):
            return _layout(raw[:-1], raw[-1], "comment", named), [line], _comments(raw)
        return _layout(raw, None, None, None), [line], _comments(raw)
    return _layout(raw, None, None, None), [], _comments(raw)


def _comments(raw: list[str]) -> list[str]:
    return [c.strip().lstrip("#/").strip() for c in raw]


def _layout(preamble: list[str], header: str | None, kind: str | None, names: list[str] | None) -> dict[str, Any]:
    prefix = ""
    if kind == "comment" and header is not None:
        m = re.match(r"\s*(#+|//+)\s*", header)
        prefix = m.group() if m else "# "
    body = header[len(prefix):] if header is not None else ""
    return {"names": names, "header": header, "header_kind": kind, "header_prefix": prefix,
            "header_delimiter": _delimiter(body) if header is not None else None, "preamble": preamble[:MAX_PREAMBLE]}


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
        layout, first, comments = _header(fh)
        parts, ncols, delim, decimals = [], None, None, []
        for block in _chunks(first, fh, chunk_lines):
            rows = [_SEP.sub(" ", ln.strip()) for ln in block if ln.strip() and not _is_comment(ln.lstrip())]
            if not rows:
                continue
            if delim is None:
                delim = _delimiter(next(ln for ln in block if ln.strip() and not _is_comment(ln.lstrip())))
            arr = np.loadtxt(rows, dtype=np.float64, ndmin=2)
            if ncols is None:
                ncols = arr.shape[1]
                decimals = _fixed_decimals(rows, ncols)
            elif arr.shape[1] != ncols:
                raise ValueError(f"rows have {ncols} and {arr.shape[1]} columns")
            parts.append(arr)
    names = layout["names"]
    if not parts:
        if names:
            raise ValueError("a column header but no data rows")
        ncols = 3
    data = np.concatenate(parts) if parts else np.zeros((0, 3))
    if data.shape[1] < 3:
        raise ValueError(f"rows have {data.shape[1]} numbers, need at least x y z")
    if names is not None and len(names) != data.shape[1]:
        names = layout["names"] = None  # a header that does not name every column: heuristics decide
    geom, roles, scale = split_columns_with_roles(data, [n.lower() for n in names] if names else None)
    geom.meta["columns"] = [n.lower() for n in names] if names else data.shape[1]
    if comments:
        geom.meta["comments"] = comments
    geom.meta["xyz"] = dict(layout, delimiter=delim or " ", roles=roles, color_scale=scale, decimals=decimals)
    return note_nonfinite(geom)


# -- writer ------------------------------------------------------------------------------------
_DEFAULT_NAMES = {"x": "x", "y": "y", "z": "z", "nx": "nx", "ny": "ny", "nz": "nz",
                  "r": "red", "g": "green", "b": "blue", "a": "alpha"}
WRITE_CHUNK = 1 << 16


def _available(geom: Geometry) -> dict[str, np.ndarray]:
    """Role -> [N] column for everything this geometry can put in a text column, in default order."""
    out = {k: geom.vertices[:, i] for i, k in enumerate("xyz")}
    if geom.normals is not None:
        out.update({k: np.asarray(geom.normals)[:, i] for i, k in enumerate(("nx", "ny", "nz"))})
    if geom.colors is not None:
        c = np.asarray(geom.colors)
        out.update({k: c[:, i] for i, k in enumerate("rgba"[: c.shape[1]])})
    for k, a in geom.attributes.items():
        a = np.asarray(a)
        if a.ndim == 1 and len(a) == geom.num_points and a.dtype.kind in "iufb" and not _SEP.search(k) \
                and not _NUM.match(k):
            out[f"attr:{k}"] = a
    return out


def _fixed_decimals(rows: list[str], ncols: int) -> list[int | None]:
    """Per column: d when every sampled value is written with exactly d >= 1 decimals, no exponent."""
    out: list[int | None] = []
    table = [r.split(" ") for r in rows[:DECIMALS_SAMPLE]]
    for j in range(ncols):
        counts = {len(t) - t.index(".") - 1 if "." in t and "e" not in t.lower() else None
                  for t in (row[j] for row in table if len(row) == ncols)}
        d = counts.pop() if len(counts) == 1 else None
        out.append(d if d else None)
    return out


def _plan(geom: Geometry, layout: dict[str, Any] | None) -> tuple[list[str], list[str], bool]:
    """-> (roles in output order, column names, same columns as the source file)."""
    avail = _available(geom)
    roles: list[str] = []
    names: list[str] = []
    src_roles = list(layout.get("roles") or []) if layout else []
    src_names = (layout.get("names") or [None] * len(src_roles)) if layout else []
    for role, name in zip(src_roles, src_names):
        if role in avail and role not in roles:
            roles.append(role)
            names.append(name if name is not None else _DEFAULT_NAMES.get(role, role.removeprefix("attr:")))
    for role in avail:
        if role not in roles:
            roles.append(role)
            names.append(_DEFAULT_NAMES.get(role, role.removeprefix("attr:")))
    return roles, names, bool(src_roles) and roles == src_roles


def format_column(a: np.ndarray, decimals: int | None = None) -> list[str]:
    """[N] numbers -> their shortest text that reads back to the same value.

    Integers as integers; float64 as Python's repr (shortest round trip) less a trailing ``.0``;
    float32 with the fewest significant digits (6..9) that give the same float32 back, so a float32
    0.1 is written ``0.1``, not ``0.100000001``. ``decimals=d``: fixed ``%.{d}f`` (a source column
    written that way, e.g. Agisoft's ``665187.696800``) wherever that still reads back exactly.
    """
    a = np.asarray(a)
    if decimals and a.dtype.kind == "f":
        out = [f"%.{decimals}f" % v for v in a.astype(np.float64).tolist()]
        back = np.asarray(out, dtype=np.float64).astype(a.dtype)
        bad = np.flatnonzero(~((back == a) | np.isnan(a)))
        for i, text in zip(bad.tolist(), format_column(a[bad])):
            out[i] = text
        return out
    if a.dtype.kind in "iub":
        return [str(v) for v in a.astype(np.int64).tolist()]
    if a.dtype != np.float32:
        return [r[:-2] if r.endswith(".0") else r for r in map(repr, a.astype(np.float64).tolist())]
    vals = a.astype(np.float64).tolist()
    out = ["%.6g" % v for v in vals]
    for p in (7, 8, 9):
        back = np.asarray(out, dtype=np.float64).astype(np.float32)
        bad = np.flatnonzero(~((back == a) | np.isnan(a)))
        if not len(bad):
            break
        fmt = f"%.{p}g"
        for i in bad.tolist():
            out[i] = fmt % vals[i]
    return out


def _column(geom_col: np.ndarray, role: str, color_scale: float | None) -> np.ndarray:
    if role in ("r", "g", "b", "a") and color_scale == 255.0:
        return np.clip(np.rint(np.asarray(geom_col, np.float64) * 255.0), 0, 255).astype(np.int64)
    return geom_col


def write(path: str | Path, geom: Geometry, delimiter: str | None = None, **_: Any) -> None:
    """Text columns, one point per line, numbers in their shortest exact form (see `format_column`).

    From an XYZ/TXT/CSV source (``meta["xyz"]``): its comment lines, header line (verbatim when the
    columns are unchanged, else the same style: a row of names or ``//X Y Z ...``), column order and
    names, delimiter and colour range (0..255 integers or 0..1 floats); new fields (normals or
    attributes a step added) go after its columns. Otherwise: a ``# x y z [nx ny nz] [red green blue
    [alpha] as floats in 0..1] [attributes (1-D)]`` header and spaces. ``delimiter=`` overrides.
    """
    layout = geom.meta.get("xyz") if isinstance(geom.meta.get("xyz"), dict) else None
    roles, names, same = _plan(geom, layout)
    delim = delimiter or (layout or {}).get("delimiter") or " "
    scale = (layout or {}).get("color_scale")
    fixed = dict(zip((layout or {}).get("roles") or [], (layout or {}).get("decimals") or []))
    avail = _available(geom)
    head = list((layout or {}).get("preamble") or [])
    if same and layout is not None:
        if layout.get("header") is not None:
            head.append(layout["header"])
    elif layout is not None and layout.get("header_kind") in ("row", "comment") and layout.get("names"):
        head.append(layout["header_prefix"] + (layout.get("header_delimiter") or delim).join(names))
    else:
        head.append("# " + " ".join(names))
    n = geom.num_points
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for line in head:
            fh.write(line + "\n")
        for lo in range(0, n, WRITE_CHUNK):
            cols = [format_column(_column(avail[r][lo : lo + WRITE_CHUNK], r, scale), fixed.get(r)) for r in roles]
            fh.write("\n".join(map(delim.join, zip(*cols))) + "\n")
