"""LAS / LAZ through laspy (LAZ via the lazrs backend).

Read: scaled ``vertices: [N, 3] float64``; ``red green blue`` -> ``colors: [N, 3] float32`` in [0, 1]
(/65535, or /255 when no value exceeds 255: many writers put 8-bit colours in the 16-bit fields;
``meta["las_color_bits"]`` says which); every other dimension (intensity, classification,
return_number, gps_time, ... and extra-bytes dimensions, scaled) -> ``attributes`` in laspy's dtype.
Extra dimensions ``normal_x/y/z`` (as this writer stores normals) -> ``normals``.
Points are read ``chunk_size`` at a time into preallocated arrays (big files never hold the raw
records and the converted arrays at once). ``meta``: version, point format, point count, scales,
offsets, mins, maxs, system / software ids, CRS (WKT when pyproj or a WKT VLR gives it, else EPSG
from the GeoTIFF keys).

Write: LAS 1.4, point format 7 (with RGB) when there are colours, else 6; offsets at the minimum,
scale the finest power of ten that keeps the extent within int32 (at most 1e-9, at least 1e-3
unless ``scale=`` says otherwise); standard dimensions by name, other 1-D numeric attributes and
normals as extra bytes. ``.laz`` paths are compressed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.io.arrays import note_nonfinite
from facet3d.core.io.record import Geometry

CHUNK = 2_000_000
_SKIP = {"X", "Y", "Z", "red", "green", "blue"}
_NORMALS = ("normal_x", "normal_y", "normal_z")


def sniff(head: bytes) -> bool:
    return head.startswith(b"LASF")


def _crs(header: Any) -> str | None:
    try:
        crs = header.parse_crs()  # needs pyproj
        if crs is not None:
            return crs.to_wkt()
    except Exception:  # noqa: BLE001 - pyproj missing or an odd VLR: fall back to the raw records
        pass
    vlrs = list(header.vlrs) + list(getattr(header, "evlrs", None) or [])
    for vlr in vlrs:  # a WKT record says the most
        if getattr(vlr, "string", None):
            return str(vlr.string).rstrip("\x00")
    for vlr in vlrs:
        for k in getattr(vlr, "geo_keys", None) or []:
            # 3072 ProjectedCSTypeGeoKey, 2048 GeographicTypeGeoKey; 32767 means "user-defined"
            if k.id in (3072, 2048) and k.tiff_tag_location == 0 and k.value_offset != 32767:
                return f"EPSG:{k.value_offset}"
    return None


def _header_meta(h: Any) -> dict[str, Any]:
    meta = {
        "las_version": str(h.version),
        "point_format": int(h.point_format.id),
        "point_count": int(h.point_count),
        "scales": [float(s) for s in h.scales],
        "offsets": [float(o) for o in h.offsets],
        "mins": [float(m) for m in h.mins],
        "maxs": [float(m) for m in h.maxs],
        "system_identifier": str(h.system_identifier).rstrip("\x00"),
        "generating_software": str(h.generating_software).rstrip("\x00"),
        "extra_dimensions": list(h.point_format.extra_dimension_names),
    }
    crs = _crs(h)
    if crs:
        meta["crs"] = crs
    return meta


def read(path: str | Path, chunk_size: int = CHUNK, **_: Any) -> Geometry:
    import laspy

    with laspy.open(str(path)) as reader:
        h = reader.header
        n = int(h.point_count)
        names = [d for d in h.point_format.dimension_names if d not in _SKIP]
        has_rgb = all(c in h.point_format.dimension_names for c in ("red", "green", "blue"))
        xyz = np.empty((n, 3), np.float64)
        rgb = np.empty((n, 3), np.uint16) if has_rgb else None
        attrs: dict[str, np.ndarray] = {}
        got = 0
        for chunk in reader.chunk_iterator(chunk_size):
            m = len(chunk)
            if got + m > n:
                raise ValueError(f"more points than the header's {n}")
            xyz[got : got + m] = np.stack([np.asarray(chunk.x), np.asarray(chunk.y), np.asarray(chunk.z)], axis=1)
            if rgb is not None:
                rgb[got : got + m] = np.stack([chunk.red, chunk.green, chunk.blue], axis=1)
            for d in names:
                a = np.asarray(chunk[d])
                if d not in attrs:
                    attrs[d] = np.empty((n,) + a.shape[1:], a.dtype)
                attrs[d][got : got + m] = a
            got += m
        if got != n:
            raise ValueError(f"file truncated: header says {n} points, read {got}")
        meta = _header_meta(h)
    geom = Geometry(vertices=xyz, attributes=attrs, meta=meta)
    if rgb is not None:
        eight_bit = n > 0 and int(rgb.max()) <= 255
        geom.colors = rgb.astype(np.float32) / (255.0 if eight_bit else 65535.0)
        geom.meta["las_color_bits"] = 8 if eight_bit else 16
    if all(k in attrs for k in _NORMALS):
        geom.normals = np.stack([attrs.pop(k) for k in _NORMALS], axis=1)
    return note_nonfinite(geom)


def _scale(extent: float) -> float:
    """Finest power of ten (>= 1e-9) that keeps `extent / scale` inside int32."""
    if not math.isfinite(extent) or extent <= 0:
        return 1e-3
    return max(1e-9, 10.0 ** math.ceil(math.log10(extent / 2.0e9)))


def write(path: str | Path, geom: Geometry, scale: float | None = None, **_: Any) -> None:
    import laspy

    v = np.asarray(geom.vertices, dtype=np.float64)
    if v.size and not np.isfinite(v).all():
        raise ValueError("LAS cannot store NaN or infinite coordinates")
    fmt = 7 if geom.colors is not None else 6
    header = laspy.LasHeader(point_format=fmt, version="1.4")
    pf_names = set(header.point_format.dimension_names)
    mins = v.min(axis=0) if len(v) else np.zeros(3)
    maxs = v.max(axis=0) if len(v) else np.zeros(3)
    header.offsets = np.floor(mins)
    s = scale or _scale(float((maxs - np.floor(mins)).max()))
    header.scales = np.array([s, s, s])
    extra: dict[str, np.ndarray] = {}
    if geom.normals is not None:
        extra.update({k: np.asarray(geom.normals)[:, i] for i, k in enumerate(_NORMALS)})
    standard: dict[str, np.ndarray] = {}
    for k, a in geom.attributes.items():
        a = np.asarray(a)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        if a.ndim != 1 or a.dtype.kind not in "iuf" or len(a) != len(v):
            continue
        (standard if k in pf_names else extra)[k] = a
    if extra:
        header.add_extra_dims([laspy.ExtraBytesParams(name=k, type=a.dtype) for k, a in extra.items()])
    las = laspy.LasData(header)
    las.x, las.y, las.z = v[:, 0], v[:, 1], v[:, 2]
    if geom.colors is not None:
        c = np.clip(np.rint(np.asarray(geom.colors, np.float64)[:, :3] * 65535.0), 0, 65535).astype(np.uint16)
        las.red, las.green, las.blue = c[:, 0], c[:, 1], c[:, 2]
    for k, a in standard.items():
        las[k] = a.astype(las[k].dtype) if hasattr(las[k], "dtype") else a
    for k, a in extra.items():
        las[k] = a
    las.write(str(path), do_compress=str(path).lower().endswith(".laz"))


