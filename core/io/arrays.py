"""NPY / NPZ point clouds and meshes, plus small array helpers shared by the other readers.

NPY: one array ``[N, 3]`` (xyz) or ``[N, C>=3]``: columns after xyz are split like XYZ text
(see `split_columns`). The NPY writer stores ``vertices: [N, 3]`` only (point clouds).

NPZ keys (read): ``points|vertices|xyz|pos|means3d`` -> vertices, ``faces|triangles``, ``normals``,
``colors|colours|rgb`` (uint8 -> /255), ``face_colors``, ``face_normals``, ``uv``; any other array
with N rows -> ``attributes``, with F rows (or named ``face_<name>``) -> ``face_attributes``;
anything else (scalars, matrices) -> ``meta["npz"]`` when small. Always ``allow_pickle=False``.

Non-finite coordinates: every reader loads them and records ``meta["non_finite_points"]``
(number of vertices with a NaN/inf coordinate); geometry functions reject them later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.io.record import Geometry

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_VERTEX_KEYS = ("vertices", "points", "xyz", "pos", "positions", "means3d", "means")
_STANDARD = {
    "faces": ("faces", "triangles"),
    "normals": ("normals", "vertex_normals"),
    "colors": ("colors", "colours", "rgb", "vertex_colors"),
    "face_colors": ("face_colors",),
    "face_normals": ("face_normals",),
    "uv": ("uv", "uvs", "texcoords"),
}


# -- shared helpers ----------------------------------------------------------------------------
def note_nonfinite(geom: Geometry) -> Geometry:
    """Record how many vertices have a NaN/inf coordinate (loaded as-is; checked by geometry ops)."""
    v = geom.vertices
    if v.size and np.issubdtype(v.dtype, np.floating):
        bad = int((~np.isfinite(v).all(axis=1)).sum())
        if bad:
            geom.meta["non_finite_points"] = bad
    return geom


IDENTITY_VIEWPOINT = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


def viewpoint_of(meta: dict[str, Any]) -> list[float] | None:
    """``meta["viewpoint"]`` as 7 finite floats (tx ty tz qw qx qy qz), or None when absent / malformed."""
    vp = meta.get("viewpoint")
    try:
        vals = [float(v) for v in vp] if vp is not None else []
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == 7 and all(np.isfinite(vals)) else None


def to_unit_colors(c: np.ndarray) -> np.ndarray:
    """Colours to float32 in [0, 1]: uint8 /255, uint16 /65535, floats kept. [N, 3|4] -> [N, 3|4]."""
    c = np.asarray(c)
    if c.dtype == np.uint8:
        return c.astype(np.float32) / 255.0
    if c.dtype == np.uint16:
        return c.astype(np.float32) / 65535.0
    if np.issubdtype(c.dtype, np.integer):  # ints of another width: assume 8-bit values
        return c.astype(np.float32) / 255.0
    return c.astype(np.float32)


def to_uint8_colors(c: np.ndarray, target: str | None = None, source_bits: int | None = None) -> np.ndarray:
    """float colours in [0, 1] (or uint8) -> uint8, rounded and clipped.

    target, source_bits: the format being written and the colour depth the source file declared
    (e.g. ``meta["las_color_bits"]``); when the source held more than 8 bits and rounding changes
    values, a Facet3DWarning says so. Computed colours (fits, renders) declare nothing: no warning.
    """
    c = np.asarray(c)
    if c.dtype == np.uint8:
        return c
    scaled = c.astype(np.float64) * 255.0
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if target and source_bits and source_bits > 8 and scaled.size:
        # float32 k/255 round trips within ~1e-5 of an integer: anything farther had finer levels
        finer = np.abs(scaled - np.rint(scaled)) > 1e-3
        if finer.any():
            import warnings

            from facet3d.core.errors import Facet3DWarning

            warnings.warn(f"{target} stores 8-bit colour: the source's {source_bits}-bit colours were rounded to "
                          f"8 bits per channel ({int(finer.any(axis=-1).sum())} of {len(c)} changed); write LAS "
                          "or NPZ to keep them", Facet3DWarning, stacklevel=2)
    return out


def colour_bits(geom) -> int | None:
    """The colour depth the source file declared (LAS: 8 or 16), if any."""
    bits = geom.meta.get("las_color_bits") or geom.meta.get("color_bits")
    return int(bits) if bits else None


def _looks_like_normals(a: np.ndarray) -> bool:
    if not len(a):
        return False
    n = np.linalg.norm(a.astype(np.float64), axis=1)
    return bool(np.all(np.abs(n - 1.0) < 2e-2))


def _looks_like_uchar_rgb(a: np.ndarray) -> bool:
    return bool(len(a)) and bool(np.all((a >= 0) & (a <= 255) & (a == np.round(a)))) and bool(a.max() > 1)


def split_columns(data: np.ndarray, names: list[str] | None = None) -> Geometry:
    """A ``[N, C>=3]`` table -> Geometry.

    With column ``names`` (x y z nx ny nz red green blue alpha ...), they decide. Without:
    3 columns = xyz; 4 = xyz + intensity; each further triple (3:6, then 6:9) is
    RGB if it holds integers 0..255 (some > 1, -> /255), normals if every row has unit length
    (+-0.02), RGB in [0, 1] if all values lie there; anything left -> ``attributes["col<i>"]``.
    """
    return split_columns_with_roles(data, names)[0]


def split_columns_with_roles(data: np.ndarray,
                             names: list[str] | None = None) -> tuple[Geometry, list[str], float | None]:
    """`split_columns`, also saying where each column went, so a writer can put it back.

    -> (geometry, roles [C], colour scale). A role is ``"x" "y" "z"``, ``"nx" "ny" "nz"``,
    ``"r" "g" "b" "a"`` or ``"attr:<name>"``; the colour scale is 255.0 (0..255 numbers, /255 on read),
    1.0 (already in [0, 1]) or None (no colour columns).
    """
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] < 3:
        raise ValueError(f"expected a [N, C>=3] table, got shape {data.shape}")
    cols = data.shape[1]
    if names is not None and len(names) == cols:
        return _split_named(data, [n.lower() for n in names])
    geom = Geometry(vertices=data[:, :3])
    roles, scale = ["x", "y", "z"], None
    if cols == 4:
        geom.attributes["intensity"] = data[:, 3]
        return geom, roles + ["attr:intensity"], None
    for start in (3, 6):
        if cols < start + 3:
            break
        block = data[:, start : start + 3]
        if geom.colors is None and _looks_like_uchar_rgb(block):
            geom.colors, scale = (block / 255.0).astype(np.float32), 255.0
            roles += ["r", "g", "b"]
        elif geom.normals is None and _looks_like_normals(block):
            geom.normals = block
            roles += ["nx", "ny", "nz"]
        elif geom.colors is None and len(block) and block.min() >= 0 and block.max() <= 1:
            geom.colors, scale = block.astype(np.float32), 1.0
            roles += ["r", "g", "b"]
        else:
            break
    for i in range(len(roles), cols):
        geom.attributes[f"col{i}"] = data[:, i]
        roles.append(f"attr:col{i}")
    return geom, roles, scale


_NAME_ALIASES = {
    "x": "x", "y": "y", "z": "z",
    "nx": "nx", "ny": "ny", "nz": "nz", "normal_x": "nx", "normal_y": "ny", "normal_z": "nz",
    "r": "r", "g": "g", "b": "b", "a": "a", "red": "r", "green": "g", "blue": "b", "alpha": "a",
}


def _split_named(data: np.ndarray, names: list[str]) -> tuple[Geometry, list[str], float | None]:
    idx = {_NAME_ALIASES.get(n, n): i for i, n in enumerate(names)}
    if not all(k in idx for k in "xyz"):
        raise ValueError(f"columns {names} do not include x, y and z")
    roles: dict[int, str] = {}
    geom = Geometry(vertices=data[:, [idx["x"], idx["y"], idx["z"]]])
    roles.update({idx[k]: k for k in "xyz"})
    if all(k in idx for k in ("nx", "ny", "nz")):
        geom.normals = data[:, [idx["nx"], idx["ny"], idx["nz"]]]
        roles.update({idx[k]: k for k in ("nx", "ny", "nz")})
    scale = None
    if all(k in idx for k in "rgb"):
        keys = ["r", "g", "b"] + (["a"] if "a" in idx else [])
        c = data[:, [idx[k] for k in keys]].astype(np.float64)
        # named colour columns: 0..255 integers when any value exceeds 1, else already in [0, 1]
        scale = 255.0 if c.size and c.max() > 1.0 else 1.0
        geom.colors = (c / scale).astype(np.float32)
        roles.update({idx[k]: k for k in keys})
    for i, n in enumerate(names):
        if i not in roles:
            geom.attributes[n] = data[:, i]
            roles[i] = f"attr:{n}"
    return geom, [roles[i] for i in range(len(names))], scale


# -- NPY / NPZ ---------------------------------------------------------------------------------
def sniff_npy(head: bytes) -> bool:
    return head.startswith(NPY_MAGIC)


def sniff_npz(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC) and b".npy" in head


def read_npy(path: str | Path, **_: Any) -> Geometry:
    """``[N, 3]`` or ``[N, C>=3]`` array -> Geometry (vertices kept in the file's float dtype)."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"expected an [N, 3] or [N, >=3] array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"expected a numeric array, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return note_nonfinite(split_columns(arr))


def write_npy(path: str | Path, geom: Geometry, **_: Any) -> None:
    """Writes ``vertices: [N, 3]`` only (other fields need NPZ)."""
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(geom.vertices), allow_pickle=False)


def read_npz(path: str | Path, **_: Any) -> Geometry:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    vkey = next((k for k in _VERTEX_KEYS if k in arrays), None)
    if vkey is None:
        raise ValueError(f"no vertex array (one of {', '.join(_VERTEX_KEYS)}); keys: {sorted(arrays)}")
    v = arrays.pop(vkey)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"'{vkey}' must be [N, 3], got {v.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    found: dict[str, np.ndarray] = {}
    for field, keys in _STANDARD.items():
        key = next((k for k in keys if k in arrays), None)
        if key is not None:
            found[field] = arrays.pop(key)
    faces = found.get("faces")
    if faces is not None:
        faces = faces.astype(np.int64).reshape(-1, 3)
        if faces.size and (faces.min() < 0 or faces.max() >= len(v)):
            raise ValueError("face indices out of range")
    geom = Geometry(vertices=v, faces=faces, normals=found.get("normals"), face_normals=found.get("face_normals"),
                    uv=found.get("uv"))
    if "colors" in found:
        geom.colors = to_unit_colors(found["colors"])
    if "face_colors" in found:
        geom.face_colors = to_unit_colors(found["face_colors"])
    n, f = len(v), geom.num_faces
    extra: dict[str, Any] = {}
    for k, a in arrays.items():
        if k.startswith("face_") and a.ndim >= 1 and len(a) == f:
            geom.face_attributes[k[5:]] = a
        elif a.ndim >= 1 and len(a) == n:
            geom.attributes[k[5:] if k.startswith("attr_") else k] = a
        elif a.size <= 64:  # small extras (image size, intrinsics) are facts, not per-point data
            extra[k] = a.tolist()
    if extra:
        geom.meta["npz"] = extra
    return note_nonfinite(geom)


def write_npz(path: str | Path, geom: Geometry, compressed: bool = False, **_: Any) -> None:
    """Keys: vertices, faces, normals, colors, face_colors, face_normals, uv, attributes by name
    (``attr_<name>`` if the name clashes), face attributes as ``face_<name>``."""
    out: dict[str, np.ndarray] = {"vertices": geom.vertices}
    for field in ("faces", "normals", "colors", "face_colors", "face_normals", "uv"):
        val = getattr(geom, field)
        if val is not None:
            out[field] = np.asarray(val)
    reserved = set(out) | {k for keys in _STANDARD.values() for k in keys} | set(_VERTEX_KEYS)
    for k, a in geom.attributes.items():
        key = f"attr_{k}" if (k in reserved or k.startswith(("face_", "attr_"))) else k
        out[key] = np.asarray(a)
    for k, a in geom.face_attributes.items():
        out[f"face_{k}"] = np.asarray(a)
    with open(path, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **out)
