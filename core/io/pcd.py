"""PCD (Point Cloud Library) reader and writer, in numpy.

Read: DATA ascii, binary and binary_compressed (LZF, decoded here: the shared scans car6, milk and
table_scene_mug use it, bunny and sac_plane_test are ascii). Fields: ``x y z`` ->
``vertices: [N, 3]`` (file float type), ``normal_x normal_y normal_z`` -> ``normals``, packed
``rgb`` / ``rgba`` (float or uint, 0xAARRGGBB) -> ``colors: [N, 3|4] float32``, everything else
(``intensity``, ``curvature``, ``label`` ...) -> ``attributes`` (``COUNT k`` -> ``[N, k]``).
Organized clouds (HEIGHT > 1) are flattened row-major; NaN points are kept (see arrays.note_nonfinite).
``meta``: ``pcd_version``, ``width``, ``height``, ``viewpoint`` (7 floats tx ty tz qw qx qy qz, when the
header has a VIEWPOINT line), ``pcd_data`` (mode), ``pcd_fields`` and ``pcd_types`` (``"F4"``, ``"U1"`` ...).

Write: DATA binary with x y z, normals, packed ``rgb`` (or ``rgba`` when colours have alpha)
and 1-D / 2-D numeric attributes in their own type. PCD -> PCD keeps the field order and types
(F 8 coordinates, U 4 rgb, U 1 labels, ...), WIDTH x HEIGHT when the point count still equals it
(else an unorganised cloud, warned), and VIEWPOINT (``meta["viewpoint"]``, which the PLY reader and
writer also carry as a ``comment viewpoint ...`` line).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import Facet3DWarning
from facet3d.core.io.arrays import IDENTITY_VIEWPOINT, colour_bits, note_nonfinite, to_uint8_colors, viewpoint_of
from facet3d.core.io.record import Geometry

_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
_KIND = {"F": "f", "I": "i", "U": "u"}
_NORMALS = ("normal_x", "normal_y", "normal_z")


def sniff(head: bytes) -> bool:
    text = head[:1024].lstrip()
    if text.startswith(b"#"):
        text = text.split(b"\n", 1)[-1].lstrip()
    return text.startswith((b"VERSION", b"FIELDS"))


def lzf_decompress(src: bytes, out_len: int) -> bytes:
    """Decode an LZF block (liblzf format, as PCL writes it) of known decoded length."""
    out = bytearray(out_len)
    ip, op, n = 0, 0, len(src)
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            length = ctrl + 1
            if ip + length > n or op + length > out_len:
                raise ValueError("corrupt LZF data (literal overruns)")
            out[op : op + length] = src[ip : ip + length]
            ip += length
            op += length
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n:
                raise ValueError("corrupt LZF data")
            length += src[ip]
            ip += 1
        if ip >= n:
            raise ValueError("corrupt LZF data")
        ref = op - ((ctrl & 0x1F) << 8) - src[ip] - 1
        ip += 1
        length += 2
        if ref < 0 or op + length > out_len:
            raise ValueError("corrupt LZF data (back reference out of range)")
        dist = op - ref
        if dist >= length:
            out[op : op + length] = out[ref : ref + length]
        else:  # overlapping copy repeats the last `dist` bytes
            pattern = bytes(out[ref:op])
            out[op : op + length] = (pattern * (length // dist + 1))[:length]
        op += length
    if op != out_len:
        raise ValueError(f"LZF data decodes to {op} bytes, header says {out_len}")
    return bytes(out)


def _parse_header(raw: bytes) -> tuple[dict[str, list[str]], int]:
    header: dict[str, list[str]] = {}
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        line = raw[pos:end].decode("ascii", errors="strict").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        if key not in _KEYS:
            raise ValueError(f"unexpected header line '{line[:60]}'")
        header[key] = vals
        if key == "DATA":
            return header, pos
    raise ValueError("no DATA line in the header")


def _dtype(header: dict[str, list[str]]) -> tuple[np.dtype, list[str]]:
    fields = header.get("FIELDS")
    if not fields:
        raise ValueError("no FIELDS line")
    nf = len(fields)
    sizes = [int(s) for s in header.get("SIZE", ["4"] * nf)]
    types = header.get("TYPE", ["F"] * nf)
    counts = [int(c) for c in header.get("COUNT", ["1"] * nf)]
    if not (len(sizes) == len(types) == len(counts) == nf):
        raise ValueError("FIELDS, SIZE, TYPE and COUNT disagree in length")
    parts, names = [], []
    for i, (f, s, t, c) in enumerate(zip(fields, sizes, types, counts)):
        if t not in _KIND or s not in (1, 2, 4, 8) or (t == "F" and s < 4) or c < 1:
            raise ValueError(f"unsupported field {f}: TYPE {t} SIZE {s} COUNT {c}")
        name = f if f != "_" and f not in names else f"_pad{i}"  # '_' marks padding in PCL files
        names.append(name)
        parts.append((name, f"<{_KIND[t]}{s}", (c,)) if c > 1 else (name, f"<{_KIND[t]}{s}"))
    return np.dtype(parts), names


def read(path: str | Path, **_: Any) -> Geometry:
    with open(path, "rb") as fh:
        raw = fh.read()
    header, body = _parse_header(raw)
    dt, names = _dtype(header)
    width = int(header.get("WIDTH", ["0"])[0])
    height = int(header.get("HEIGHT", ["1"])[0])
    n = int(header["POINTS"][0]) if "POINTS" in header else width * height
    mode = header["DATA"][0].lower() if header["DATA"] else ""
    left = len(raw) - body
    if mode == "ascii":
        if n * len(dt.names) > left:
            raise ValueError(f"header promises {n} points but the data is only {left} bytes")
        flat = np.asarray(raw[body:].decode("ascii").split(), dtype=np.float64)
        per = sum(int(np.prod(dt[k].shape or (1,))) for k in dt.names)
        if flat.size < n * per:
            raise ValueError(f"file truncated: {n} points of {per} values expected, found {flat.size} values")
        table = flat[: n * per].reshape(n, per)
        arr = np.empty(n, dtype=dt)
        col = 0
        for k in dt.names:
            w = int(np.prod(dt[k].shape or (1,)))
            vals = table[:, col : col + w].reshape((n,) + dt[k].shape)
            if k in ("rgb", "rgba") and dt[k].kind == "f":  # ascii rgb: packed float printed as a number
                vals = vals.astype(np.float32)
            arr[k] = vals if dt[k].kind == "f" else np.round(vals)
            col += w
    elif mode == "binary":
        if n * dt.itemsize > left:
            raise ValueError(f"file truncated: {n} points need {n * dt.itemsize} bytes, {left} left")
        arr = np.frombuffer(raw, dtype=dt, count=n, offset=body)
    elif mode == "binary_compressed":
        if left < 8:
            raise ValueError("file truncated in compressed data header")
        csize, usize = (int(v) for v in np.frombuffer(raw, "<u4", 2, body))
        if usize != n * dt.itemsize or csize > left - 8:
            raise ValueError(f"compressed sizes ({csize} -> {usize} bytes) do not fit {n} points / the file")
        plain = lzf_decompress(raw[body + 8 : body + 8 + csize], usize)
        # binary_compressed stores each field contiguously (structure of arrays)
        arr = np.empty(n, dtype=dt)
        pos = 0
        for k in dt.names:
            sub = dt[k]
            arr[k] = np.frombuffer(plain, sub.base, n * max(1, int(np.prod(sub.shape))), pos).reshape((n,) + sub.shape)
            pos += n * sub.itemsize
    else:
        raise ValueError(f"unknown DATA mode '{mode}'")
    return note_nonfinite(_to_geometry(arr, names, header, mode, width, height))


def _to_geometry(arr: np.ndarray, names: list[str], header: dict, mode: str, width: int, height: int) -> Geometry:
    cols = {k: np.array(arr[k]) for k in names if not k.startswith("_pad")}
    if not all(k in cols for k in "xyz"):
        raise ValueError(f"fields {names} lack x, y or z")
    xyz = [cols.pop(k) for k in "xyz"]
    vdt = np.result_type(*xyz)
    geom = Geometry(vertices=np.stack(xyz, axis=1).astype(vdt if vdt.kind == "f" else np.float64))
    if all(k in cols for k in _NORMALS):
        geom.normals = np.stack([cols.pop(k) for k in _NORMALS], axis=1)
    for key in ("rgba", "rgb"):
        if key in cols and cols[key].ndim == 1 and cols[key].dtype.itemsize == 4:
            packed = np.ascontiguousarray(cols.pop(key)).view(np.uint32)
            chans = [(packed >> s) & 0xFF for s in (16, 8, 0)]
            if key == "rgba":
                chans.append((packed >> 24) & 0xFF)
            geom.colors = (np.stack(chans, axis=1).astype(np.float32) / 255.0)
            break
    geom.attributes = cols
    types = [f"{t}{s}" for t, s in zip(header.get("TYPE", ["F"] * len(names)), header.get("SIZE", ["4"] * len(names)))]
    geom.meta.update(pcd_data=mode, pcd_fields=names, pcd_types=types, width=width, height=height,
                     pcd_version=" ".join(header.get("VERSION", [])))
    if "VIEWPOINT" in header:
        geom.meta["viewpoint"] = [float(v) for v in header["VIEWPOINT"]]
    return geom


# -- writer ------------------------------------------------------------------------------------
def _source_types(meta: dict[str, Any]) -> dict[str, str]:
    """Field name -> PCD type ("F8", "U4", ...) of the PCD this geometry was read from ({} otherwise)."""
    names, types = meta.get("pcd_fields") or [], meta.get("pcd_types") or []
    return dict(zip(names, types)) if len(names) == len(types) else {}


def _float_type(src: dict[str, str], name: str, a: np.ndarray, default: type) -> type:
    """float64 when the source PCD stored `name` as F 8 and the data is still float64, else `default`."""
    return np.float64 if src.get(name) == "F8" and np.asarray(a).dtype == np.float64 else default


def _columns(geom: Geometry, double: bool) -> list[tuple[str, np.ndarray]]:
    """(field name, [N] or [N, k] array) for every field to write, in the source PCD's order when known."""
    n, v, src = geom.num_points, geom.vertices, _source_types(geom.meta)
    vt = np.float64 if double else _float_type(src, "x", v, np.float32)
    cols = [(k, v[:, i].astype(vt)) for i, k in enumerate("xyz")]
    if geom.normals is not None:
        nrm = np.asarray(geom.normals)
        cols += [(k, nrm[:, i].astype(_float_type(src, k, nrm, np.float32))) for i, k in enumerate(_NORMALS)]
    if geom.colors is not None:
        c = to_uint8_colors(geom.colors, "PCD", colour_bits(geom)).astype(np.uint32)
        packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        if c.shape[1] == 4:
            cols.append(("rgba", packed | (c[:, 3] << 24)))
        elif src.get("rgb") == "U4":
            cols.append(("rgb", packed))
        else:
            cols.append(("rgb", packed.view(np.float32)))  # PCL convention: rgb bits stored in a float
    for k, a in geom.attributes.items():
        a = np.asarray(a)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        if a.dtype.kind not in "iuf" or a.ndim > 2 or len(a) != n or " " in k or k in dict(cols):
            continue  # PCD cannot hold it
        cols.append((k, a))
    order = {k: i for i, k in enumerate(geom.meta.get("pcd_fields") or [])}
    return sorted(cols, key=lambda kc: order.get(kc[0], len(order)))  # stable: new fields keep their place


def _layout(geom: Geometry, path: str | Path) -> tuple[int, int]:
    """(WIDTH, HEIGHT): the source's organisation when it still fits the point count, else (N, 1)."""
    n = geom.num_points
    w, h = geom.meta.get("width"), geom.meta.get("height")
    if isinstance(w, int) and isinstance(h, int) and h > 1:
        if w * h == n:
            return w, h
        warnings.warn(f"PCD writer: the cloud was organised {w}x{h} and now has {n} points; {Path(path).name} "
                      "is written unorganised (HEIGHT 1)", Facet3DWarning, stacklevel=3)
    return n, 1


def _num(x: float) -> str:
    r = repr(float(x))
    return r[:-2] if r.endswith(".0") else r


def write(path: str | Path, geom: Geometry, double: bool = False, **_: Any) -> None:
    """DATA binary. xyz as float32 (what PCL and open3d's legacy reader expect: open3d 0.20 reads F 8 xyz
    as zeros) unless ``double=True`` or the source PCD stored them as F 8; colours packed into ``rgb``
    (F 4, or U 4 as the source had it) or ``rgba`` (U 4); attributes in their own type.
    WIDTH/HEIGHT and VIEWPOINT come from ``meta`` (organisation kept when WIDTH*HEIGHT is still N)."""
    cols = _columns(geom, double)
    fields, sizes, types, counts, parts = [], [], [], [], []
    for k, a in cols:
        fields.append(k)
        sizes.append(str(a.dtype.itemsize))
        types.append({"f": "F", "i": "I", "u": "U"}[a.dtype.kind])
        counts.append(str(a.shape[1] if a.ndim == 2 else 1))
        parts.append((k, "<" + a.dtype.str[1:], (a.shape[1],)) if a.ndim == 2 else (k, "<" + a.dtype.str[1:]))
    rec = np.empty(geom.num_points, dtype=parts)
    for k, a in cols:
        rec[k] = a
    width, height = _layout(geom, path)
    vp = viewpoint_of(geom.meta) or IDENTITY_VIEWPOINT
    head = [
        "# .PCD v0.7 - Point Cloud Data file format (written by facet3d)", "VERSION 0.7",
        "FIELDS " + " ".join(fields), "SIZE " + " ".join(sizes), "TYPE " + " ".join(types),
        "COUNT " + " ".join(counts), f"WIDTH {width}", f"HEIGHT {height}",
        "VIEWPOINT " + " ".join(_num(x) for x in vp), f"POINTS {geom.num_points}", "DATA binary",
    ]
    with open(path, "wb") as fh:
        fh.write(("\n".join(head) + "\n").encode("ascii"))
        fh.write(rec.tobytes())
