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

``point_format=`` / ``las_version=`` (``--point-format`` / ``--las-version``) convert: the version rises to
what an asked point format needs when no version is asked; an impossible pair (format 6+ in LAS < 1.4,
4/5 in 1.2, or an asked version that cannot hold the source's format) is a UsageError. What the target
point format cannot carry (RGB going to format 1, NIR 8 -> 7, the wave packet fields and their
descriptor records going to a format without waveform, overlap / scanner channel going below 6) is
dropped with one Facet3DWarning naming it (dimensions that are 0 everywhere are dropped silently);
LAS standard dimensions are never turned into extra bytes. GPS-time type and waveform-location bits of
the global encoding are kept where the target allows them.

External waveform data (global encoding bit 2): the reader notes the ``.wdp`` beside the input
(``meta["las_waveform_file"]``, ``meta["las_waveform_missing"]``); the writer copies it beside the
final output (``out.las`` -> ``out.wdp``) when the output still has waveform fields. The writer is
handed api.atomic_output's temporary path and asks `api.destination_of` for the final name
(`final_path`); the copy is made after the LAS is written, through its own temporary file and rename.
A missing source .wdp, or a final name it cannot learn, is warned (the .wdp is then not carried).

Write, without a LAS source: LAS 1.4, point format 7 (8 with a ``nir`` attribute) when there are
colours, else 6; offsets at the minimum, scale the finest power of ten that keeps the extent within
int32 (at most 1e-9, at least 1e-3 unless ``scale=`` says otherwise). Either way: attributes named
like a standard dimension of the point format go there, converted to its type (a float
``intensity`` in [0, 1] is scaled to 16 bits; out-of-range values are clipped with a warning); other
numeric attributes (1-D or [N, k]) and normals become extra bytes of their own type. ``.laz`` paths
are compressed.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import Facet3DWarning, UsageError
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
    _note_waveform_file(geom, h, Path(path))
    if rgb is not None:
        eight_bit = n > 0 and int(rgb.max()) <= 255
        geom.colors = rgb.astype(np.float32) / (255.0 if eight_bit else 65535.0)
        geom.meta["las_color_bits"] = 8 if eight_bit else 16
        geom.source["las_color_bits"] = 8 if eight_bit else 16
    if all(k in attrs for k in _NORMALS):
        geom.normals = np.stack([attrs.pop(k) for k in _NORMALS], axis=1)
    return note_nonfinite(geom)


def _note_waveform_file(geom: Geometry, h: Any, path: Path) -> None:
    """External waveform data (global encoding bit 2): where its .wdp is (``meta["las_waveform_file"]``)."""
    try:
        external = bool(h.global_encoding.waveform_data_packets_external)
    except Exception:  # noqa: BLE001
        return
    if not external:
        return
    wdp = _wdp_beside(path)
    geom.meta["las_waveform_file"] = str(wdp or path.with_suffix(".wdp"))
    if wdp is None:
        geom.meta["las_waveform_missing"] = True
    else:
        geom.source["las_wdp"] = str(wdp)


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


def _is_waveform_record(vlr: Any) -> bool:
    """Wave packet descriptors (LASF_Spec 100-354) and the internal waveform data record (65535)."""
    rid = int(getattr(vlr, "record_id", -1))
    return str(getattr(vlr, "user_id", "")).rstrip("\x00") == "LASF_Spec" and (99 < rid < 355 or rid == 65535)


def _target(src: Any, geom: Geometry, point_format: int | None, las_version: str | None) -> tuple[int, str]:
    """(point format, LAS version) to write: the asked ones, else the source's, else a default.

    A version is raised only when the point format needs it and no version was asked for; an asked
    combination LAS cannot hold (point format 6+ in LAS < 1.4, waveform formats 4/5 in LAS 1.2) is a
    UsageError naming --point-format / --las-version.
    """
    from laspy.point import dims

    versions = sorted(dims.VERSION_TO_POINT_FMT)
    if las_version is not None and str(las_version) not in versions:
        raise UsageError(f"--las-version must be one of {', '.join(versions)}, got '{las_version}'")
    if point_format is not None and not (isinstance(point_format, (int, np.integer)) and 0 <= int(point_format) <= 10):
        raise UsageError(f"--point-format must be 0-10, got '{point_format}'")
    if src is not None and point_format is None and las_version is None:
        return int(src.point_format.id), str(src.version)
    if point_format is not None:
        fmt = int(point_format)
    elif src is not None:
        fmt = int(src.point_format.id)
    else:
        fmt = (8 if "nir" in geom.attributes else 7) if geom.colors is not None else 6
    if las_version is not None:
        ver = str(las_version)
        if fmt not in dims.VERSION_TO_POINT_FMT[ver]:
            held = ", ".join(map(str, dims.VERSION_TO_POINT_FMT[ver]))
            what = f"--point-format {fmt}" if point_format is not None else f"the source's point format {fmt}"
            need = dims.preferred_file_version_for_point_format(fmt)
            raise UsageError(f"LAS {ver} cannot hold {what} (it holds point formats {held}); "
                             f"use --las-version {need} or another --point-format")
        return fmt, ver
    base = str(src.version) if src is not None else "1.2"
    return fmt, max(base, dims.preferred_file_version_for_point_format(fmt))


def _copy_encoding(src: Any, header: Any) -> None:
    """The global-encoding bits the new header can still honour (GPS time type, WKT, waveform location)."""
    try:
        s, h = src.global_encoding, header.global_encoding
        h.gps_time_type = s.gps_time_type
        if header.version.minor >= 3 and has_waveform(header.point_format):
            h.waveform_data_packets_internal = s.waveform_data_packets_internal
            h.waveform_data_packets_external = s.waveform_data_packets_external
        if header.version.minor >= 4:
            h.synthetic_return_numbers = s.synthetic_return_numbers
            h.wkt = s.wkt
    except Exception:  # noqa: BLE001 - a laspy without one of these bits
        pass


def has_waveform(point_format: Any) -> bool:
    return "wavepacket_index" in set(point_format.dimension_names)


def _header_from_source(laspy: Any, src: Any, fmt: int, ver: str) -> Any:
    """A header for the output: the source's, or a new one in point format `fmt` / LAS `ver` with its records."""
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
        keep = [v for v in src.vlrs if type(v).__name__ != "ExtraBytesVlr"]
        if not has_waveform(header.point_format):  # wave packet descriptors describe nothing any more
            keep = [v for v in keep if not _is_waveform_record(v)]
        header.vlrs.extend(copy.deepcopy(v) for v in keep)
        evlrs = [v for v in (getattr(src, "evlrs", None) or [])
                 if has_waveform(header.point_format) or not _is_waveform_record(v)]
        if evlrs:
            if header.version.minor >= 4:
                from laspy.vlrs.vlrlist import VLRList

                if header.evlrs is None:
                    header.evlrs = VLRList()
                header.evlrs.extend(copy.deepcopy(v) for v in evlrs)
            else:  # LAS < 1.4 has no EVLRs: the (small) CRS records become plain VLRs
                header.vlrs.extend(copy.deepcopy(v) for v in evlrs)
        header.scales = np.array(src.scales, dtype=np.float64)
        header.offsets = np.array(src.offsets, dtype=np.float64)
        _copy_encoding(src, header)
    dropped = [v for v in header.vlrs if _is_copc(v)] + [v for v in (header.evlrs or []) if _is_copc(v)]
    if dropped:
        warnings.warn("LAS writer: dropping the COPC records (user_id 'copc'): the rewritten file is a "
                      "plain LAS/LAZ, no longer a valid COPC file", Facet3DWarning, stacklevel=4)
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
                      "format; clipped", Facet3DWarning, stacklevel=4)
        a = np.clip(a, lo, hi)
    return a.astype(target if dim.dtype is not None else np.uint8)


# every standard dimension name of point formats 0-10: only ever written as that dimension
_STANDARD_ANYWHERE = {"intensity", "return_number", "number_of_returns", "scan_direction_flag", "edge_of_flight_line",
                      "classification", "synthetic", "key_point", "withheld", "scan_angle_rank", "user_data",
                      "point_source_id", "gps_time", "wavepacket_index", "wavepacket_offset", "wavepacket_size",
                      "return_point_wave_location", "x_t", "y_t", "z_t", "overlap", "scanner_channel", "scan_angle",
                      "nir"}


def _new_header(laspy: Any, geom: Geometry, v: np.ndarray, src: Any, fmt: int, ver: str, scale: float | None) -> Any:
    """The output header: from the LAS source when there is one, else fresh; scales/offsets that fit `v`."""
    mins = v.min(axis=0) if len(v) else np.zeros(3)
    maxs = v.max(axis=0) if len(v) else np.zeros(3)
    if src is not None:
        header = _header_from_source(laspy, src, fmt, ver)
        if scale:
            header.scales = np.array([scale] * 3, dtype=np.float64)
        if _fits(v, np.asarray(header.scales), np.asarray(header.offsets)):
            return header
        warnings.warn("LAS writer: the coordinates no longer fit int32 at the source file's scales and "
                      "offsets; new ones computed", Facet3DWarning, stacklevel=3)
    else:
        header = laspy.LasHeader(point_format=fmt, version=ver)
    header.offsets = np.floor(mins)
    s = scale or _scale(float((maxs - np.floor(mins)).max()))
    header.scales = np.array([s, s, s])
    return header


def _attributes(geom: Geometry, n: int, std_names: set[str]) -> dict[str, np.ndarray]:
    """Per-point arrays to write (normals as normal_x/y/z), scan angle mapped to the target's unit."""
    attrs: dict[str, np.ndarray] = {}
    if geom.normals is not None:
        attrs.update({k: np.asarray(geom.normals)[:, i] for i, k in enumerate(_NORMALS)})
    for k, a in geom.attributes.items():
        a = np.asarray(a)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        if a.ndim not in (1, 2) or a.dtype.kind not in "iuf" or len(a) != n:
            continue  # per-point arrays only: a step that changed the point count left this one behind
        attrs[k] = a
    # scan angle: degrees (int8, formats 0-5) <-> 0.006 degree units (int16, formats 6-10)
    if "scan_angle" in std_names and "scan_angle" not in attrs and "scan_angle_rank" in attrs:
        attrs["scan_angle"] = np.rint(attrs.pop("scan_angle_rank").astype(np.float64) / 0.006)
    elif "scan_angle_rank" in std_names and "scan_angle_rank" not in attrs and "scan_angle" in attrs:
        attrs["scan_angle_rank"] = np.rint(attrs.pop("scan_angle").astype(np.float64) * 0.006)
    return attrs


def _warn_unheld(pf: Any, geom: Geometry, attrs: dict[str, np.ndarray]) -> None:
    """One warning naming every dimension point format `pf` cannot carry (they are not written).

    Dimensions that are 0 for every point are dropped silently: the target format's absence means 0.
    """
    std = set(pf.standard_dimension_names)
    lost = ["RGB"] if geom.colors is not None and "red" not in std else []
    lost += [k for k, a in attrs.items() if k in _STANDARD_ANYWHERE and k not in std
             and k not in set(pf.extra_dimension_names) and np.any(a != 0)]  # all zero: nothing is lost
    if lost:
        warnings.warn(f"LAS writer: point format {pf.id} has no {', '.join(lost)}; not written", Facet3DWarning,
                      stacklevel=3)


def write(path: str | Path, geom: Geometry, scale: float | None = None, point_format: int | None = None,
          las_version: str | None = None, **_: Any) -> None:
    """LAS/LAZ (see the module docstring); ``point_format`` 0-10 and ``las_version`` "1.2" / "1.4" ... convert."""
    import laspy

    v = np.asarray(geom.vertices, dtype=np.float64)
    if v.size and not np.isfinite(v).all():
        raise ValueError("LAS cannot store NaN or infinite coordinates")
    src = (geom.source or {}).get("las_header")
    fmt, ver = _target(src, geom, _as_int(point_format), las_version)
    header = _new_header(laspy, geom, v, src, fmt, ver, scale)
    pf = header.point_format
    std_names = set(pf.standard_dimension_names)
    have_extra = set(pf.extra_dimension_names)
    attrs = _attributes(geom, len(v), std_names)
    _warn_unheld(pf, geom, attrs)
    standard: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    new_extra: list[Any] = []
    for k, a in attrs.items():
        if k in std_names and k not in _SKIP:
            standard[k] = a
        elif k in have_extra:
            extra[k] = a
        elif k not in _STANDARD_ANYWHERE:
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
    for k, a in standard.items():
        las[k] = _to_standard(k, a, pf.dimension_by_name(k))
    for k, a in extra.items():
        las[k] = a
    las.write(str(path), do_compress=str(path).lower().endswith(".laz"))
    _carry_waveform_file(geom, header, Path(path))


def _as_int(point_format: Any) -> Any:
    if isinstance(point_format, str) and point_format.strip().isdigit():
        return int(point_format)
    return point_format


# -- the external waveform file (.wdp) ---------------------------------------------------------
def final_path(path: Path) -> Path | None:
    """The path a (possibly temporary, see api.atomic_output) output file will end up at; None if unknown."""
    from facet3d.core.io.api import destination_of

    return destination_of(path)


def _wdp_beside(path: Path) -> Path | None:
    for suffix in (".wdp", ".WDP"):
        p = path.with_suffix(suffix)
        if p.exists():
            return p
    return None


def _carry_waveform_file(geom: Geometry, header: Any, path: Path) -> None:
    """Copy the source's .wdp beside the final output when the output still points into an external one.

    Done last (after the LAS is written) and atomically itself (temporary file + rename), so a failure
    leaves neither a half-written .wdp nor a replaced one. Reading and writing the same file skips it.
    """
    try:
        external = bool(header.global_encoding.waveform_data_packets_external)
    except Exception:  # noqa: BLE001
        return
    if not external or not has_waveform(header.point_format):
        return
    wdp = (geom.source or {}).get("las_wdp")
    dest = final_path(path)
    if wdp is None or not Path(wdp).exists():
        warnings.warn(f"LAS writer: the source's waveform data file ({geom.meta.get('las_waveform_file', '.wdp')}) "
                      "was not found; the output's wave packet offsets point into a missing .wdp", Facet3DWarning,
                      stacklevel=3)
        return
    if dest is None:
        warnings.warn(f"LAS writer: cannot tell the final name of {path.name}; the waveform data file {wdp} was "
                      "not copied beside it", Facet3DWarning, stacklevel=3)
        return
    target = dest.with_suffix(".wdp")
    if target.exists() and os.path.samefile(target, wdp):
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(wdp, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
