"""PLY reader/writer in numpy: ascii, binary_little_endian, binary_big_endian.

Read: vertex ``x y z`` -> ``vertices: [N, 3]`` (file float type kept; ints -> float64),
``nx ny nz`` -> ``normals``, ``red green blue [alpha]`` -> ``colors: [N, 3|4] float32`` (uchar /255,
ushort /65535, floats kept), ``s t`` / ``u v`` / ``texture_u texture_v`` -> ``uv``, any other vertex
property -> ``attributes``. Face ``vertex_indices`` / ``vertex_index`` lists -> ``faces: [F, 3] int64``
(polygons fan-triangulated, faces with < 3 corners dropped), face colours -> ``face_colors`` and
other face properties -> ``face_attributes`` (repeated per triangle). Comments -> ``meta["comments"]``,
except ``comment viewpoint tx ty tz qw qx qy qz`` -> ``meta["viewpoint"]`` (a PCD sensor pose; the writer
puts it back when it is not the identity, so PCD -> PLY -> PCD keeps VIEWPOINT).

Speed: elements without lists, and face lists with one constant length (all triangles), are read
with one structured ``np.frombuffer``; only variable-length lists fall back to a row loop.
Every element size is checked against the bytes present before anything is allocated.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.io.arrays import (IDENTITY_VIEWPOINT, colour_bits, note_nonfinite, to_uint8_colors, to_unit_colors,
                                    viewpoint_of)
from facet3d.core.io.record import Geometry

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}
_FACE_LISTS = ("vertex_indices", "vertex_index")
_COLOR_NAMES = (("red", "green", "blue", "alpha"), ("r", "g", "b", "a"), ("diffuse_red", "diffuse_green", "diffuse_blue", "diffuse_alpha"))
_UV_NAMES = (("s", "t"), ("u", "v"), ("texture_u", "texture_v"), ("texture_s", "texture_t"))
MAX_HEADER = 1 << 20


def sniff(head: bytes) -> bool:
    return head.startswith((b"ply\n", b"ply\r\n"))


# -- header ------------------------------------------------------------------------------------
class _Element:
    def __init__(self, name: str, count: int) -> None:
        self.name, self.count = name, count
        self.props: list[tuple[str, str, str | None]] = []  # (name, type, list-count type or None)

    @property
    def has_lists(self) -> bool:
        return any(p[2] is not None for p in self.props)


def _parse_header(raw: bytes) -> tuple[str, list[_Element], list[str], int]:
    """-> (format, elements, comments, offset of the body)."""
    if not sniff(raw):
        raise ValueError("does not start with 'ply'")
    m = re.search(rb"end_header[ \t]*\r?\n", raw)
    if m is None:
        raise ValueError("no 'end_header' line in the first MiB")
    text = raw[: m.start()].decode("ascii", errors="replace")
    fmt, elements, comments = None, [], []
    for line in text.splitlines()[1:]:
        tok = line.split()
        if not tok:
            continue
        key = tok[0]
        if key in ("comment", "obj_info"):
            comments.append(line.split(None, 1)[1] if len(tok) > 1 else "")
        elif key == "format":
            if len(tok) < 2 or tok[1] not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise ValueError(f"unknown format line '{line.strip()}'")
            fmt = tok[1]
        elif key == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise ValueError(f"bad element line '{line.strip()}'")
            elements.append(_Element(tok[1], int(tok[2])))
        elif key == "property":
            if not elements:
                raise ValueError("property before any element")
            if tok[1:2] == ["list"]:
                if len(tok) != 5 or tok[2] not in _TYPES or tok[3] not in _TYPES:
                    raise ValueError(f"bad property line '{line.strip()}'")
                elements[-1].props.append((tok[4], _TYPES[tok[3]], _TYPES[tok[2]]))
            else:
                if len(tok) != 3 or tok[1] not in _TYPES:
                    raise ValueError(f"bad property line '{line.strip()}'")
                elements[-1].props.append((tok[2], _TYPES[tok[1]], None))
        else:
            raise ValueError(f"unexpected header line '{line.strip()}'")
    if fmt is None:
        raise ValueError("no 'format' line")
    return fmt, elements, comments, m.end()


# -- body: binary ------------------------------------------------------------------------------
def _fixed_dtype(props: list[tuple[str, str, str | None]], bo: str, list_len: int = 0) -> np.dtype:
    fields = []
    for name, typ, ctype in props:
        if ctype is None:
            fields.append((name, bo + typ))
        else:
            fields += [(f"{name}#n", bo + ctype), (name, bo + typ, (list_len,))]
    return np.dtype(fields)


def _read_binary(buf: memoryview, off: int, el: _Element, bo: str) -> tuple[dict[str, Any], int]:
    """One element -> ({prop: array (lists: list of arrays or [count, k] array)}, new offset)."""
    left = len(buf) - off
    if not el.has_lists:
        dt = _fixed_dtype(el.props, bo)
        if el.count * dt.itemsize > left:
            raise ValueError(f"file truncated: {el.count} {el.name} records need {el.count * dt.itemsize} bytes, {left} left")
        arr = np.frombuffer(buf, dtype=dt, count=el.count, offset=off)
        return {n: arr[n] for n, _, _ in el.props}, off + el.count * dt.itemsize
    if el.count == 0:
        return {n: (np.zeros((0, 3), np.int64) if c else np.zeros(0, t)) for n, t, c in el.props}, off
    # Fast path: assume every list has the length of the first row's lists, then verify.
    lens, pos = [], off
    for name, typ, ctype in el.props:
        if ctype is None:
            pos += np.dtype(typ).itemsize
            continue
        if pos + np.dtype(ctype).itemsize > len(buf):
            raise ValueError(f"file truncated in {el.name} data")
        k = int(np.frombuffer(buf, bo + ctype, 1, pos)[0])
        lens.append(k)
        pos += np.dtype(ctype).itemsize + k * np.dtype(typ).itemsize
    if len(lens) == 1:
        dt = _fixed_dtype(el.props, bo, lens[0])
        if el.count * dt.itemsize <= left:
            arr = np.frombuffer(buf, dtype=dt, count=el.count, offset=off)
            lp = next(n for n, _, c in el.props if c is not None)
            if np.all(arr[f"{lp}#n"] == lens[0]):
                return {n: arr[n] for n, _, _ in el.props}, off + el.count * dt.itemsize
    return _read_binary_rows(buf, off, el, bo)


def _read_binary_rows(buf: memoryview, off: int, el: _Element, bo: str) -> tuple[dict[str, Any], int]:
    """General path for variable-length lists: one row at a time."""
    fmt_char = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}
    sbo = "<" if bo == "<" else ">"
    out: dict[str, list] = {n: [] for n, _, _ in el.props}
    data, pos, end = bytes(buf), off, len(buf)
    for _ in range(el.count):
        for name, typ, ctype in el.props:
            if ctype is None:
                size = np.dtype(typ).itemsize
                if pos + size > end:
                    raise ValueError(f"file truncated in {el.name} data")
                out[name].append(struct.unpack_from(sbo + fmt_char[typ], data, pos)[0])
                pos += size
            else:
                csize, isize = np.dtype(ctype).itemsize, np.dtype(typ).itemsize
                if pos + csize > end:
                    raise ValueError(f"file truncated in {el.name} data")
                k = struct.unpack_from(sbo + fmt_char[ctype], data, pos)[0]
                pos += csize
                if pos + k * isize > end:
                    raise ValueError(f"file truncated in {el.name} data")
                out[name].append(np.frombuffer(data, bo + typ, k, pos))
                pos += k * isize
    return {n: (v if c is not None else np.asarray(v, dtype=t)) for (n, t, c), v in zip(el.props, out.values())}, pos


# -- body: ascii -------------------------------------------------------------------------------
def _read_ascii(tokens: np.ndarray, off: int, el: _Element) -> tuple[dict[str, Any], int]:
    if not el.has_lists:
        n = len(el.props)
        if off + el.count * n > len(tokens):
            raise ValueError(f"file truncated: {el.count} {el.name} rows expected")
        block = tokens[off : off + el.count * n].reshape(el.count, n)
        return {name: block[:, i].astype(typ) for i, (name, typ, _) in enumerate(el.props)}, off + el.count * n
    if el.count == 0:
        return {n: (np.zeros((0, 3), np.int64) if c else np.zeros(0, t)) for n, t, c in el.props}, off
    # Fast path when the row layout is constant (all triangles): stride known from the first row.
    layout, pos = [], off
    for _, _, ctype in el.props:
        if ctype is None:
            layout.append(1)
            pos += 1
        else:
            if pos >= len(tokens):
                raise ValueError(f"file truncated in {el.name} data")
            k = int(tokens[pos])
            layout.append(1 + k)
            pos += 1 + k
    stride = sum(layout)
    if el.count and off + el.count * stride <= len(tokens):
        block = tokens[off : off + el.count * stride].reshape(el.count, stride)
        out, col, ok = {}, 0, True
        for (name, typ, ctype), w in zip(el.props, layout):
            if ctype is None:
                out[name] = block[:, col].astype(typ)
            else:
                ok &= bool(np.all(block[:, col] == w - 1))
                out[name] = block[:, col + 1 : col + w].astype(typ)
            col += w
        if ok:
            return out, off + el.count * stride
    out_rows: dict[str, list] = {n: [] for n, _, _ in el.props}
    pos = off
    for _ in range(el.count):
        for name, typ, ctype in el.props:
            if pos >= len(tokens):
                raise ValueError(f"file truncated in {el.name} data")
            if ctype is None:
                out_rows[name].append(tokens[pos])
                pos += 1
            else:
                k = int(tokens[pos])
                if pos + 1 + k > len(tokens):
                    raise ValueError(f"file truncated in {el.name} data")
                out_rows[name].append(tokens[pos + 1 : pos + 1 + k].astype(typ))
                pos += 1 + k
    return {n: (v if c is not None else np.asarray(v, dtype=t)) for (n, t, c), v in zip(el.props, out_rows.values())}, pos


# -- assembling --------------------------------------------------------------------------------
def _triangulate(lists: Any) -> tuple[np.ndarray, np.ndarray]:
    """Face index lists -> (triangles [T, 3] int64, source face of each triangle [T])."""
    if isinstance(lists, np.ndarray) and lists.ndim == 2:  # constant length k
        k = lists.shape[1]
        if k < 3:
            return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
        lists = lists.astype(np.int64)
        tris = [np.stack([lists[:, 0], lists[:, j], lists[:, j + 1]], axis=1) for j in range(1, k - 1)]
        tri = np.stack(tris, axis=1).reshape(-1, 3)
        return tri, np.repeat(np.arange(len(lists)), k - 2)
    tris, src = [], []
    for i, poly in enumerate(lists):
        for j in range(1, len(poly) - 1):
            tris.append((poly[0], poly[j], poly[j + 1]))
            src.append(i)
    return np.asarray(tris, np.int64).reshape(-1, 3), np.asarray(src, np.int64)


def _pick(cols: dict[str, np.ndarray], groups: tuple[tuple[str, ...], ...], need: int) -> list[str] | None:
    for names in groups:
        present = [n for n in names if n in cols]
        if len(present) >= need and present == list(names[: len(present)]):
            return present
    return None


def _native(a: np.ndarray) -> np.ndarray:
    return np.array(a, dtype=a.dtype.newbyteorder("="))


def _colors(cols: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return to_unit_colors(np.stack([cols.pop(n) for n in names], axis=1))


def read(path: str | Path, **_: Any) -> Geometry:
    with open(path, "rb") as fh:
        raw = fh.read()
    fmt, elements, comments, body = _parse_header(raw[:MAX_HEADER] if len(raw) > MAX_HEADER else raw)
    data: dict[str, dict[str, Any]] = {}
    wanted = {"vertex", "face"}
    if fmt == "ascii":
        text = raw[body:].decode("ascii", errors="strict")
        # each token becomes one float64: refuse absurd headers before splitting the whole body
        need = sum(e.count * len(e.props) for e in elements if e.name in wanted)
        if need > len(text) // 2 + 1:
            raise ValueError(f"header promises {need} values but the body has {len(text)} bytes")
        tokens = np.asarray(text.split(), dtype=np.float64)
        pos = 0
        for el in elements:
            if not wanted - set(data):
                break
            data[el.name], pos = _read_ascii(tokens, pos, el)
    else:
        bo = "<" if fmt == "binary_little_endian" else ">"
        buf, pos = memoryview(raw), body
        for el in elements:
            if not wanted - set(data):
                break  # trailing elements (edges, materials) are not needed
            data[el.name], pos = _read_binary(buf, pos, el, bo)
    if "vertex" not in data:
        raise ValueError("no 'vertex' element")
    vcols = dict(data["vertex"])
    if not all(k in vcols for k in "xyz"):
        raise ValueError("vertex element lacks x, y or z")
    xyz = [vcols.pop(k) for k in "xyz"]
    vdt = np.result_type(*xyz).newbyteorder("=")
    vertices = np.stack(xyz, axis=1).astype(vdt if np.issubdtype(vdt, np.floating) else np.float64)
    geom = Geometry(vertices=vertices)
    if all(k in vcols for k in ("nx", "ny", "nz")):
        geom.normals = np.stack([vcols.pop(k) for k in ("nx", "ny", "nz")], axis=1).astype(np.result_type(np.float32, vdt))
    cnames = _pick(vcols, _COLOR_NAMES, 3)
    if cnames:
        geom.colors = _colors(vcols, cnames)
    uvn = _pick(vcols, _UV_NAMES, 2)
    if uvn:
        geom.uv = np.stack([vcols.pop(n) for n in uvn], axis=1).astype(np.float32)
    # copies in native byte order: no views into the file buffer survive the read
    geom.attributes = {k: _native(v) for k, v in vcols.items() if isinstance(v, np.ndarray)}
    if "face" in data:
        fcols = dict(data["face"])
        lp = next((n for n in _FACE_LISTS if n in fcols), None)
        if lp is not None:
            faces, src = _triangulate(fcols.pop(lp))
            if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
                raise ValueError(f"face index out of range (0..{len(vertices) - 1})")
            geom.faces = faces
            cnames = _pick(fcols, _COLOR_NAMES, 3)
            if cnames:
                geom.face_colors = _colors(fcols, cnames)[src]
            for k, v in fcols.items():
                if isinstance(v, np.ndarray) and v.ndim == 1:
                    geom.face_attributes[k] = _native(v)[src]
    geom.meta.update(ply_format=fmt, elements={e.name: e.count for e in elements})
    viewpoint = [_viewpoint(c) for c in comments]
    if any(vp is not None for vp in viewpoint):
        geom.meta["viewpoint"] = next(vp for vp in viewpoint if vp is not None)
        comments = [c for c, vp in zip(comments, viewpoint) if vp is None]
    if comments:
        geom.meta["comments"] = comments
    return note_nonfinite(geom)


def _viewpoint(comment: str) -> list[float] | None:
    """``viewpoint tx ty tz qw qx qy qz`` (the PCD sensor pose, as this writer stores it) -> 7 floats."""
    tok = comment.split()
    if len(tok) != 8 or tok[0] != "viewpoint":
        return None
    try:
        return [float(t) for t in tok[1:]]
    except ValueError:
        return None


# -- writer ------------------------------------------------------------------------------------
def _ply_type(a: np.ndarray) -> np.ndarray:
    """Cast to a type PLY can hold (no 64-bit ints, no bools)."""
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if a.dtype.kind in "iu" and a.dtype.itemsize == 8:
        if a.size == 0 or (a.min() >= np.iinfo(np.int32).min and a.max() <= np.iinfo(np.int32).max):
            return a.astype(np.int32)
        return a.astype(np.float64)
    if a.dtype.kind == "f" and a.dtype.itemsize == 2:
        return a.astype(np.float32)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"cannot store a {a.dtype} property in PLY")
    return a


def _columns(items: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Expand [N, k] arrays into name_0..name_{k-1} scalar columns."""
    out = []
    for name, a in items:
        a = _ply_type(np.asarray(a))
        if a.ndim == 1:
            out.append((name, a))
        else:
            a2 = a.reshape(len(a), -1)
            out += [(f"{name}_{j}", a2[:, j]) for j in range(a2.shape[1])]
    return out


def write(path: str | Path, geom: Geometry, ascii: bool = False, **_: Any) -> None:
    """Binary little-endian by default; ``ascii=True`` for text. Colours are written as uchar."""
    v = geom.vertices
    vcols = [(k, v[:, i]) for i, k in enumerate("xyz")]
    if v.dtype != np.float32:
        vcols = [(k, c.astype(np.float64)) for k, c in vcols]
    if geom.normals is not None:
        vcols += [(k, np.asarray(geom.normals)[:, i].astype(np.float32)) for i, k in enumerate(("nx", "ny", "nz"))]
    if geom.colors is not None:
        c = to_uint8_colors(geom.colors, "PLY", colour_bits(geom))
        vcols += [(k, c[:, i]) for i, k in enumerate(("red", "green", "blue", "alpha")[: c.shape[1]])]
    if geom.uv is not None:
        vcols += [("s", np.asarray(geom.uv)[:, 0].astype(np.float32)), ("t", np.asarray(geom.uv)[:, 1].astype(np.float32))]
    vcols += _columns(list(geom.attributes.items()))
    fcols: list[tuple[str, np.ndarray]] = []
    faces = geom.faces if geom.faces is not None and len(geom.faces) else None
    if faces is not None:
        if geom.face_colors is not None:
            c = to_uint8_colors(geom.face_colors, "PLY", colour_bits(geom))
            fcols += [(k, c[:, i]) for i, k in enumerate(("red", "green", "blue", "alpha")[: c.shape[1]])]
        fcols += _columns(list(geom.face_attributes.items()))
    lines = ["ply", f"format {'ascii' if ascii else 'binary_little_endian'} 1.0", "comment written by facet3d"]
    lines += [f"comment {c}" for c in geom.meta.get("comments", [])
              if c != "written by facet3d" and "\n" not in str(c) and _viewpoint(str(c)) is None]
    vp = viewpoint_of(geom.meta)
    if vp is not None and tuple(vp) != IDENTITY_VIEWPOINT:
        lines.append("comment viewpoint " + " ".join(repr(x) for x in vp))
    lines.append(f"element vertex {len(v)}")
    lines += [f"property {_NAMES[a.dtype.str[1:]]} {n}" for n, a in vcols]
    if faces is not None:
        lines.append(f"element face {len(faces)}")
        lines.append("property list uchar int vertex_indices")
        lines += [f"property {_NAMES[a.dtype.str[1:]]} {n}" for n, a in fcols]
    lines.append("end_header")
    with open(path, "wb") as fh:
        fh.write(("\n".join(lines) + "\n").encode("ascii"))
        if ascii:
            _write_ascii(fh, vcols, faces, fcols)
            return
        rec = np.empty(len(v), dtype=[(n, "<" + a.dtype.str[1:]) for n, a in vcols])
        for n, a in vcols:
            rec[n] = a
        fh.write(rec.tobytes())
        if faces is not None:
            fdt = [("n", "u1"), ("i", "<i4", (3,))] + [(n, "<" + a.dtype.str[1:]) for n, a in fcols]
            frec = np.empty(len(faces), dtype=fdt)
            frec["n"], frec["i"] = 3, faces
            for n, a in fcols:
                frec[n] = a
            fh.write(frec.tobytes())


def _fmt(a: np.ndarray) -> str:
    return "%d" if a.dtype.kind in "iu" else ("%.9g" if a.dtype == np.float32 else "%.17g")


def _write_ascii(fh: Any, vcols: list, faces: np.ndarray | None, fcols: list) -> None:
    if vcols and len(vcols[0][1]):
        np.savetxt(fh, np.column_stack([a.astype(np.float64) for _, a in vcols]), fmt=[_fmt(a) for _, a in vcols])
    if faces is not None:
        table = np.column_stack([np.full(len(faces), 3.0), faces] + [a.astype(np.float64) for _, a in fcols])
        np.savetxt(fh, table, fmt=["%d"] * 4 + [_fmt(a) for _, a in fcols])
