"""Headerless binary point records: KITTI ``.bin``, nuScenes ``.pcd.bin`` and any layout (``bin``).

kitti-bin:    float32 records (x, y, z, intensity)        -> 16 bytes per point
nuscenes-bin: float32 records (x, y, z, intensity, ring)  -> 20 bytes per point
bin:          the records ``fields`` names, e.g. ``fields="x,y,z,r,g,b"`` (SUN RGB-D / ScanNet sweeps) or
              ``"x,y,z,intensity,elongation:f4,t:f8"``: comma-separated names, each with an optional
              little-endian type suffix (``f4`` ``f8`` ``f2`` ``u1`` ``u2`` ``u4`` ``u8`` ``i1`` .. ``i8``;
              the default is ``dtype``, float32 or float64); a name starting with ``_`` is padding.

Read: ``vertices: [N, 3]`` (float32, or float64 when a coordinate is f8 / an integer),
``attributes[name]: [N]`` in the field's type. For ``bin``: ``r g b [a]`` / ``red green blue [alpha]``
-> ``colors: [N, 3|4] float32`` (u1 /255, u2 /65535, floats /255 when a value exceeds 1, else as is),
``nx ny nz`` / ``normal_x ..`` -> ``normals``. ``meta["bin_fields"]`` (the layout, typed) lets a
``bin`` -> ``bin`` write reuse it. The file size must be a multiple of the record size (a wrong
``--format`` or ``--fields`` is caught this way). A kitti-bin read whose size or content fits another
column count better (a 6-float ScanNet sweep, a 5-float nuScenes one) warns and names it.
Write: kitti/nuscenes write missing intensity / ring as 0; ``bin`` writes the ``fields`` columns
(the source's when it was read as ``bin``), warning about what it invents (a missing field -> 0)
and what the layout leaves out.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facet3d.core.errors import Facet3DWarning, FormatError, UsageError
from facet3d.core.io.arrays import note_nonfinite
from facet3d.core.io.record import Geometry

_LAYOUTS = {"kitti-bin": "x,y,z,intensity", "nuscenes-bin": "x,y,z,intensity,ring"}
_TYPES = {"f2", "f4", "f8", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8"}
_DTYPES = {"float32": "f4", "float64": "f8", "f4": "f4", "f8": "f8"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_COLOR_SETS = (("r", "g", "b", "a"), ("red", "green", "blue", "alpha"))
_NORMAL_SETS = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
NEEDS_FIELDS = "--format bin needs --fields x,y,z,... (e.g. --fields x,y,z,intensity or x,y,z,r,g,b)"


# -- the layout --------------------------------------------------------------------------------
def parse_fields(fields: str | Sequence[str] | None, dtype: str = "float32") -> list[tuple[str, str]]:
    """``"x,y,z,intensity:f8"`` -> [(name, type code)], every type little-endian ("f4", "u2", ...).

    Raises UsageError for a missing or malformed layout (no x/y/z, a repeated name, an unknown type).
    """
    if fields is None or (isinstance(fields, str) and not fields.strip()):
        raise UsageError(NEEDS_FIELDS)
    default = _DTYPES.get(str(dtype).lower())
    if default is None:
        raise UsageError(f"--dtype must be float32 or float64, got '{dtype}'")
    items = [t.strip() for t in fields.split(",")] if isinstance(fields, str) else [str(t).strip() for t in fields]
    out: list[tuple[str, str]] = []
    for item in items:
        name, _, code = item.partition(":")
        name, code = name.strip(), (code.strip().lower() or default)
        code = _DTYPES.get(code, code)
        if not _NAME.match(name):
            raise UsageError(f"--fields: '{item}' is not a field name (letters, digits, _ . -)")
        if code not in _TYPES:
            raise UsageError(f"--fields: unknown type '{code}' for '{name}' (one of {', '.join(sorted(_TYPES))})")
        if not name.startswith("_") and any(name == n for n, _ in out):
            raise UsageError(f"--fields: '{name}' is given twice")
        out.append((name, code))
    missing = [k for k in "xyz" if k not in {n for n, _ in out}]
    if missing:
        raise UsageError(f"--fields must name x, y and z (missing: {', '.join(missing)})")
    return out


def fields_text(layout: list[tuple[str, str]]) -> str:
    """The layout back as a ``--fields`` string with every type spelled out."""
    return ",".join(f"{n}:{c}" for n, c in layout)


def _record(layout: list[tuple[str, str]]) -> np.dtype:
    return np.dtype([(n if not n.startswith("_") else f"_pad{i}", "<" + c) for i, (n, c) in enumerate(layout)])


# -- reading -----------------------------------------------------------------------------------
def _load(path: str | Path, layout: list[tuple[str, str]], label: str) -> np.ndarray:
    rec = _record(layout)
    size = os.path.getsize(path)
    if size % rec.itemsize:
        hint = _size_hint(path, size) if label == "kitti-bin" else ""
        raise FormatError(f"{path}: size {size} bytes is not a multiple of the {rec.itemsize}-byte {label} "
                          f"record ({fields_text(layout)}){hint}")
    return np.fromfile(path, dtype=rec)


def _group(names: set[str], sets: tuple[tuple[str, ...], ...], need: int) -> list[str] | None:
    for group in sets:
        present = [n for n in group if n in names]
        if len(present) >= need and present == list(group[: len(present)]):
            return present
    return None


def _unit_colors(cols: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Colour channels -> (float32 [N, k] in [0, 1], the scale they were divided by)."""
    c = np.stack(cols, axis=1)
    if c.dtype == np.uint16:
        scale = 65535.0
    elif c.dtype.kind in "iu":
        scale = 255.0
    else:
        scale = 255.0 if c.size and np.nanmax(c) > 1.0 else 1.0
    return (c.astype(np.float64) / scale).astype(np.float32), scale


def _geometry(arr: np.ndarray, layout: list[tuple[str, str]]) -> Geometry:
    cols = {n: np.array(arr[n]) for n in arr.dtype.names if not n.startswith("_pad")}
    xyz = [cols.pop(k) for k in "xyz"]
    vdt = np.result_type(*xyz)
    single = vdt.kind == "f" and vdt.itemsize <= 4
    geom = Geometry(vertices=np.stack(xyz, axis=1).astype(np.float32 if single else np.float64))
    names = set(cols)
    cnames = _group(names, _COLOR_SETS, 3)
    if cnames:
        geom.colors, scale = _unit_colors([cols.pop(n) for n in cnames])
        geom.meta["bin_color_scale"] = scale
    nnames = _group(names, _NORMAL_SETS, 3)
    if nnames:
        geom.normals = np.stack([cols.pop(n) for n in nnames], axis=1)
    geom.attributes = cols
    geom.meta.update(bin_fields=fields_text(layout), record_bytes=int(arr.dtype.itemsize))
    return geom


def read_bin(path: str | Path, fields: str | Sequence[str] | None = None, dtype: str = "float32", **_: Any) -> Geometry:
    """Records laid out as ``fields`` -> Geometry (see the module docstring)."""
    layout = parse_fields(fields, dtype)
    return note_nonfinite(_geometry(_load(path, layout, "bin"), layout))


def _read(path: str | Path, name: str) -> Geometry:
    layout = parse_fields(_LAYOUTS[name])
    geom = _geometry(_load(path, layout, name), layout)  # meta["bin_fields"]: a later -F bin reuses the layout
    if name == "kitti-bin":
        _warn_other_layout(path)
    return note_nonfinite(geom)


def read_kitti(path: str | Path, **_: Any) -> Geometry:
    return _read(path, "kitti-bin")


def read_nuscenes(path: str | Path, **_: Any) -> Geometry:
    return _read(path, "nuscenes-bin")


# -- is it really 4 floats a point? ------------------------------------------------------------
_OTHER_COUNTS = (3, 5, 6, 7)  # 8, 12 ... are multiples of 4: a 4-column reading of them is still coherent
SAMPLE_FLOATS = 1 << 19
_SUGGEST = {3: "x,y,z", 5: "x,y,z,intensity,ring (nuScenes: --format nuscenes-bin)",
            6: "x,y,z,r,g,b (ScanNet / SUN RGB-D) or x,y,z,intensity,c4,c5", 7: "x,y,z,c3,c4,c5,c6"}


def _size_hint(path: str | Path, size: int) -> str:
    """For a size kitti-bin cannot take: the column count the size and content fit best ('' if none)."""
    fits = [k for k in _OTHER_COUNTS if size % (4 * k) == 0]
    if not fits:
        return ""
    floats = np.fromfile(path, dtype="<f4", count=min(size // 4, SAMPLE_FLOATS))
    with np.errstate(all="ignore"):
        scores = {k: _incoherence(floats, k) for k in fits}
    best = min(fits, key=scores.get)
    if scores[best] >= 0.1 and len(fits) > 1:
        return f"; it would fit {' or '.join(map(str, fits))} float32 columns: try --format bin --fields ..."
    return f"; it fits {best} float32 columns? try --format bin --fields {_SUGGEST[best]}"


def _incoherence(floats: np.ndarray, k: int) -> float:
    """How much x, y, z jump between consecutive records when read `k` floats a point.

    median |step| / interquartile range, median over x, y, z: ~0.01 for a sweep in scan order,
    ~1 when the columns are read at the wrong stride (each "column" then cycles through quantities).
    A reading with non-finite or absurd coordinates (> 1e5, denormals) counts as incoherent.
    """
    n = len(floats) // k
    if n < 16:
        return np.inf
    t = floats[: n * k].reshape(n, k)[:, :3].astype(np.float64)
    a = np.abs(t)
    if not np.isfinite(t).all() or (a > 1e5).mean() > 0.01 or ((a > 0) & (a < 1e-30)).mean() > 0.01:
        return np.inf
    q1, q3 = np.percentile(t, [25, 75], axis=0)
    spread = np.maximum(q3 - q1, 1e-12)
    return float(np.median(np.median(np.abs(np.diff(t, axis=0)), axis=0) / spread))


def likely_columns(path: str | Path) -> int | None:
    """Another float32 column count that reads this file far more plausibly than kitti-bin's 4, or None."""
    size = os.path.getsize(path)
    candidates = [k for k in _OTHER_COUNTS if size % (4 * k) == 0]
    if not candidates:
        return None
    floats = np.fromfile(path, dtype="<f4", count=min(size // 4, SAMPLE_FLOATS))
    with np.errstate(all="ignore"):
        four = _incoherence(floats, 4)
        if four < 0.3:
            return None  # a sweep in scan order read at the right stride
        scores = {k: _incoherence(floats, k) for k in candidates}
    best = min(scores, key=scores.get)
    return best if scores[best] < 0.1 and scores[best] * 5 < four else None


def _warn_other_layout(path: str | Path) -> None:
    k = likely_columns(path)
    if k is not None:
        warnings.warn(f"{path}: read as kitti-bin (4 float32 x y z intensity), but it reads far more plausibly "
                      f"as {k} float32 columns per point; try --format bin --fields {_SUGGEST[k]}",
                      Facet3DWarning, stacklevel=3)


# -- writing -----------------------------------------------------------------------------------
def _write(path: str | Path, geom: Geometry, name: str) -> None:
    n = geom.num_points
    cols = [np.asarray(geom.vertices, dtype=np.float32)]
    for k in _LAYOUTS[name].split(",")[3:]:
        a = geom.attributes.get(k)
        cols.append(np.zeros((n, 1), np.float32) if a is None else np.asarray(a, np.float32).reshape(n, 1))
    np.hstack(cols).astype("<f4").tofile(path)


def write_kitti(path: str | Path, geom: Geometry, **_: Any) -> None:
    _write(path, geom, "kitti-bin")


def write_nuscenes(path: str | Path, geom: Geometry, **_: Any) -> None:
    _write(path, geom, "nuscenes-bin")


def _channel(geom: Geometry, name: str) -> tuple[np.ndarray | None, str]:
    """(the [N] data for field `name`, what it is) or (None, '') when the geometry lacks it."""
    if name in ("x", "y", "z"):
        return geom.vertices[:, "xyz".index(name)], "vertices"
    for group in _NORMAL_SETS:
        if name in group and geom.normals is not None:
            return np.asarray(geom.normals)[:, group.index(name)], "normals"
    for group in _COLOR_SETS:
        if name in group and geom.colors is not None:
            c = np.asarray(geom.colors)
            i = group.index(name)
            return (c[:, i] if i < c.shape[1] else np.ones(len(c), np.float32)), "colors"
    a = geom.attributes.get(name)
    if a is not None and np.asarray(a).ndim == 1 and len(a) == geom.num_points:
        return np.asarray(a), f"attribute '{name}'"
    return None, ""


def _cast(a: np.ndarray, code: str, what: str, name: str, color_scale: float) -> np.ndarray:
    dt = np.dtype("<" + code)
    if what == "colors":
        full = 65535.0 if dt == np.uint16 else 255.0 if dt.kind in "iu" else color_scale
        a = np.asarray(a, np.float64) * full
        a = np.clip(np.rint(a), 0, full) if dt.kind in "iu" else a
    elif dt.kind in "iu" and np.asarray(a).size:
        info = np.iinfo(dt)
        a = np.asarray(a)
        if a.min() < info.min or a.max() > info.max:
            warnings.warn(f"bin writer: '{name}' has values outside {code} [{info.min}, {info.max}]; clipped",
                          Facet3DWarning, stacklevel=4)
            a = np.clip(a, info.min, info.max)
        if a.dtype.kind == "f":
            a = np.rint(np.nan_to_num(a))
    return np.asarray(a).astype(dt)


def write_bin(path: str | Path, geom: Geometry, fields: str | Sequence[str] | None = None, dtype: str = "float32",
              **_: Any) -> None:
    """Records laid out as ``fields`` (default: the ``bin`` source's layout, ``meta["bin_fields"]``).

    Colours go to integer fields as 0..255 (u2: 0..65535), to float fields in the source's range
    (0..255 when a ``bin`` source had them so, else 0..1). Fields the geometry lacks are written as 0
    and the geometry's data the layout leaves out is dropped, each with one warning naming them.
    """
    if fields is None:
        fields = geom.meta.get("bin_fields")
    layout = parse_fields(fields, dtype)
    rec = np.zeros(geom.num_points, dtype=_record(layout))
    scale = float(geom.meta.get("bin_color_scale") or 1.0)
    used, invented = set(), []
    for (name, code), key in zip(layout, rec.dtype.names):
        if name.startswith("_"):
            continue
        data, what = _channel(geom, name)
        if data is None:
            invented.append(name)
            continue
        used.add(what)
        rec[key] = _cast(data, code, what, name, scale)
    if invented:
        warnings.warn(f"bin writer: the geometry has no {', '.join(invented)}; written as 0", Facet3DWarning,
                      stacklevel=2)
    left = [w for w in ("normals", "colors") if getattr(geom, w) is not None and w not in used]
    left += [f"attribute '{k}'" for k in geom.attributes if f"attribute '{k}'" not in used]
    if left:
        warnings.warn(f"bin writer: --fields {fields_text(layout)} leaves out {', '.join(left)}; not written",
                      Facet3DWarning, stacklevel=2)
    rec.tofile(path)
