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

``source["las_header"]`` keeps a copy of the laspy header (not serialised) for the writer.

Write, from a LAS source (``geom.source["las_header"]``): the source's version and point format
(unless ``las_version=`` / ``point_format=`` say otherwise), its scales and offsets (recomputed,
with a warning, when the coordinates no longer fit int32 at them), its VLRs and EVLRs (CRS) less
the COPC ones (a rewritten file is no longer COPC: warned), its extra-bytes dimensions with their
types, array shapes, scales and offsets. ``scan_angle_rank`` (formats 0-5, degrees) and
``scan_angle`` (6-10, 0.006 degree units) are mapped onto each other when the format changes.
Colours go back as stored (8-bit values in 16-bit fields stay 8-bit).

Write, otherwise: LAS 1.4, point format 7 (with RGB) when there are colours, else 6; offsets at the
minimum, scale the finest power of ten that keeps the extent within int32 (at most 1e-9, at least
1e-3 unless ``scale=`` says otherwise). Either way: attributes named like a standard dimension of
the point format go there, converted to its type (a float ``intensity`` in [0, 1] is scaled to 16
bits; out-of-range values are clipped with a warning); other numeric attributes (1-D or [N, k]) and
normals become extra bytes of their own type. ``.laz`` paths are compressed.
"""

from __future__ import annotations

import copy
import math
import warnings
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
    geom = Geometry(vertices=xyz, attributes=attrs, meta=meta, source={"las_header": copy.deepcopy(h)})
    if rgb is not None:
        eight_bit = n > 0 and int(rgb.max()) <= 255
        geom.colors = rgb.astype(np.float32) / (255.0 if eight_bit else 65535.0)
        geom.meta["las_color_bits"] = 8 if eight_bit else 16
        geom.source["las_color_bits"] = 8 if eight_bit else 16
    if all(k in attrs for k in _NORMALS):
        geom.normals = np.stack([attrs.pop(k) for k in _NORMALS], axis=1)
    return note_nonfinite(geom)


def _scale(extent: float) -> float:
    """Finest power of ten (>= 1e-9) that keeps `extent / scale` inside int32."""
    if not math.isfinite(extent) or extent <= 0:
        return 1e-3
    return max(1e-9, 10.0 ** math.ceil(math.log10(extent / 2.0e9)))


def _fits(v: np.ndarray, scales: np.ndarray, offsets: np.ndarray) -> bool:
    if not len(v):
        return True
    lo = np.rint((v.min(axis=0) - offsets) / scales)
    hi = np.rint((v.max(axis=0) - offsets) / scales)
    return bool(np.all(lo >= -(2**31)) and np.all(hi <= 2**31 - 1))


def _extra_params(laspy: Any, src_pf: Any) -> list[Any]:
    return [laspy.ExtraBytesParams(name=d.name, type=d.dtype, description=d.description or "",
                                   offsets=d.offsets, scales=d.scales)
            for d in src_pf.extra_dimensions]


def _is_copc(vlr: Any) -> bool:
    return str(getattr(vlr, "user_id", "")).rstrip("\x00").lower() == "copc"


def _header_from_source(laspy: Any, src: Any, point_format: int | None, las_version: str | None) -> Any:
    """A header for the output: the source's, or a new one in the asked format with its records."""
    fmt = int(point_format) if point_format is not None else int(src.point_format.id)
    ver = str(las_version) if las_version is not None else str(src.version)
    if fmt >= 6 and ver < "1.4":
        ver = "1.4"  # formats 6-10 exist only in LAS 1.4
    if fmt == int(src.point_format.id) and ver == str(src.version):
        header = copy.deepcopy(src)
    else:
        header = laspy.LasHeader(point_format=fmt, version=ver)
        header.add_extra_dims(_extra_params(laspy, src.point_format))
        for attr in ("file_source_id", "system_identifier", "generating_software", "creation_date", "uuid"):
            try:
                setattr(header, attr, getattr(src, attr))
            except Exception:  # noqa: BLE001 - a field this laspy/version does not have
                pass
        header.vlrs.extend(copy.deepcopy(v) for v in src.vlrs if type(v).__name__ != "ExtraBytesVlr")
        if getattr(src, "evlrs", None):
            if header.version.minor >= 4:
                from laspy.vlrs.vlrlist import VLRList

                if header.evlrs is None:
                    header.evlrs = VLRList()
                header.evlrs.extend(copy.deepcopy(v) for v in src.evlrs)
            else:  # LAS < 1.4 has no EVLRs: the (small) CRS records become plain VLRs
                header.vlrs.extend(copy.deepcopy(v) for v in src.evlrs)
        header.scales = np.array(src.scales, dtype=np.float64)
        header.offsets = np.array(src.offsets, dtype=np.float64)
        try:  # the WKT bit of the global encoding says which CRS records the file uses
            if src.global_encoding.wkt and header.version.minor >= 4:
                header.global_encoding.wkt = True
        except Exception:  # noqa: BLE001
            pass
    dropped = [v for v in header.vlrs if _is_copc(v)] + [v for v in (header.evlrs or []) if _is_copc(v)]
    if dropped:
        warnings.warn("LAS writer: dropping the COPC records (user_id 'copc'): the rewritten file is a "
                      "plain LAS/LAZ, no longer a valid COPC file", stacklevel=3)
        keep = [v for v in header.vlrs if not _is_copc(v)]
        header.vlrs.clear()
        header.vlrs.extend(keep)
        if header.evlrs:
            keep = [v for v in header.evlrs if not _is_copc(v)]
            header.evlrs.clear()
            header.evlrs.extend(keep)
    return header


def _range(dim: Any) -> tuple[float, float]:
    if dim.num_bits and dim.dtype is None:  # a bit field
        return 0.0, float(2 ** dim.num_bits - 1)
    base = np.dtype(dim.dtype).base
    if base.kind in "iu":
        info = np.iinfo(base)
        return float(info.min), float(info.max)
    return -np.inf, np.inf


def _to_standard(name: str, a: np.ndarray, dim: Any) -> np.ndarray:
    """`a` in the type and range of the standard dimension `dim` (clipped, with a warning)."""
    lo, hi = _range(dim)
    target = np.dtype(dim.dtype).base if dim.dtype is not None else np.dtype(np.int64)
    if a.dtype.kind == "f" and target.kind in "iu":
        if name == "intensity" and len(a) and np.nanmin(a) >= 0.0 and np.nanmax(a) <= 1.0:
            a = a.astype(np.float64) * 65535.0  # a normalised intensity (KITTI & co.) -> the 16 bits LAS has
        a = np.rint(np.nan_to_num(a, nan=0.0))
    if len(a) and (np.min(a) < lo or np.max(a) > hi):
        warnings.warn(f"LAS writer: '{name}' has values outside [{lo:g}, {hi:g}], its range in this point "
                      "format; clipped", stacklevel=4)
        a = np.clip(a, lo, hi)
    return a.astype(target if dim.dtype is not None else np.uint8)


def write(path: str | Path, geom: Geometry, scale: float | None = None, point_format: int | None = None,
          las_version: str | None = None, **_: Any) -> None:
    import laspy

    v = np.asarray(geom.vertices, dtype=np.float64)
    if v.size and not np.isfinite(v).all():
        raise ValueError("LAS cannot store NaN or infinite coordinates")
    mins = v.min(axis=0) if len(v) else np.zeros(3)
    maxs = v.max(axis=0) if len(v) else np.zeros(3)
    src = (geom.source or {}).get("las_header")
    if src is not None:
        header = _header_from_source(laspy, src, point_format, las_version)
        if scale:
            header.scales = np.array([scale] * 3, dtype=np.float64)
        if not _fits(v, np.asarray(header.scales), np.asarray(header.offsets)):
            warnings.warn("LAS writer: the coordinates no longer fit int32 at the source file's scales and "
                          "offsets; new ones computed", stacklevel=2)
            header.offsets = np.floor(mins)
            s = scale or _scale(float((maxs - np.floor(mins)).max()))
            header.scales = np.array([s, s, s])
    else:
        fmt = point_format if point_format is not None else (7 if geom.colors is not None else 6)
        ver = las_version or ("1.4" if int(fmt) >= 6 else "1.2")
        header = laspy.LasHeader(point_format=int(fmt), version=str(ver))
        header.offsets = np.floor(mins)
        s = scale or _scale(float((maxs - np.floor(mins)).max()))
        header.scales = np.array([s, s, s])
    pf = header.point_format
    std_names = set(pf.standard_dimension_names)
    have_extra = set(pf.extra_dimension_names)
    attrs: dict[str, np.ndarray] = {}
    if geom.normals is not None:
        attrs.update({k: np.asarray(geom.normals)[:, i] for i, k in enumerate(_NORMALS)})
    for k, a in geom.attributes.items():
        a = np.asarray(a)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        if a.ndim not in (1, 2) or a.dtype.kind not in "iuf" or len(a) != len(v):
            continue  # per-point arrays only: a step that changed the point count left this one behind
        attrs[k] = a
    # scan angle: degrees (int8, formats 0-5) <-> 0.006 degree units (int16, formats 6-10)
    if "scan_angle" in std_names and "scan_angle" not in attrs and "scan_angle_rank" in attrs:
        attrs["scan_angle"] = np.rint(attrs.pop("scan_angle_rank").astype(np.float64) / 0.006)
    elif "scan_angle_rank" in std_names and "scan_angle_rank" not in attrs and "scan_angle" in attrs:
        attrs["scan_angle_rank"] = np.rint(attrs.pop("scan_angle").astype(np.float64) * 0.006)
    standard: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    new_extra: list[Any] = []
    for k, a in attrs.items():
        if k in std_names and k not in _SKIP:
            standard[k] = a
        elif k in have_extra:
            extra[k] = a
        elif a.ndim == 1 or a.shape[1] >= 1:
            t = a.dtype if a.ndim == 1 else np.dtype((a.dtype, (a.shape[1],)))
            new_extra.append(laspy.ExtraBytesParams(name=k, type=t))
            extra[k] = a
    if new_extra:
        header.add_extra_dims(new_extra)
    header.point_count = len(v)  # a reused header may count the source's points
    las = laspy.LasData(header)
    las.x, las.y, las.z = v[:, 0], v[:, 1], v[:, 2]
    if geom.colors is not None and "red" in std_names:
        bits = (geom.source or {}).get("las_color_bits") or geom.meta.get("las_color_bits")
        full = 255.0 if bits == 8 and src is not None else 65535.0
        c = np.clip(np.rint(np.asarray(geom.colors, np.float64)[:, :3] * full), 0, 65535).astype(np.uint16)
        las.red, las.green, las.blue = c[:, 0], c[:, 1], c[:, 2]
    elif geom.colors is not None:
        warnings.warn(f"LAS writer: point format {pf.id} has no RGB; colours not written", stacklevel=2)
    for k, a in standard.items():
        las[k] = _to_standard(k, a, pf.dimension_by_name(k))
    for k, a in extra.items():
        las[k] = a
    las.write(str(path), do_compress=str(path).lower().endswith(".laz"))
