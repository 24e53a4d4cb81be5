"""OBJ, OFF, STL (ascii + binary), GLB and glTF through trimesh (``process=False``).

Read -> Geometry: ``vertices: [N, 3] float64`` as trimesh keeps them (OBJ vertices are split where
a position carries several uv/normal indices, so N can exceed the number of ``v`` lines),
``faces: [F, 3] int64`` (trimesh triangulates polygons), ``normals`` only when the file stores
them, ``colors`` / ``face_colors`` ``float32 [.., 4]`` when the file has vertex / face colours,
``uv: [N, 2]`` and ``texture`` (PIL image) for textured OBJ/GLB; a missing MTL or texture file is
not an error (the mesh loads untextured). A scene with several meshes is concatenated with its
transforms applied. Point-only OBJ gives a point cloud; a file holding no geometry at all is an
error unless it is a well-formed empty file: an OBJ whose every line is a comment or an OBJ statement
(``o``/``g``/``mtllib`` ... but no ``v``/``f``), an OFF with counts ``0 0 0``, an STL ``solid``/``endsolid``
pair or a binary STL of 0 triangles. Text that is not the format at all (``hello world`` saved as
.obj/.off/.gltf) is refused before trimesh sees it (``not a valid obj file (...)``), never loaded as 0 points.

Write: obj (point clouds as ``v`` lines), off, stl (binary; ``ascii=True``), glb, gltf (buffers
embedded). Normals, vertex/face colours and uv+texture go wherever the format can hold them.
trimesh is imported inside the functions, so registering the plugin stays light.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.io.arrays import colour_bits, note_nonfinite, to_uint8_colors, to_unit_colors
from facet3d.core.io.record import Geometry

_INLINE_COMMENT = re.compile(rb"(?m)(?<=\S)[ \t]+#[^\r\n]*")
_OBJ_KEYS = {b"v", b"vt", b"vn", b"vp", b"f", b"l", b"p", b"o", b"g", b"s", b"usemtl", b"mtllib"}
# every statement of the OBJ spec (free-form curves, display attributes...): what a valid empty OBJ may hold
_OBJ_ALL_KEYS = _OBJ_KEYS | {b"cstype", b"deg", b"bmat", b"step", b"curv", b"curv2", b"surf", b"parm", b"trim",
                             b"hole", b"scrv", b"sp", b"end", b"con", b"mg", b"bevel", b"c_interp", b"d_interp",
                             b"lod", b"shadow_obj", b"trace_obj", b"ctech", b"stech", b"maplib", b"usemap", b"call",
                             b"csh"}
_OFF_HEADER = re.compile(rb"^(ST)?C?N?4?n?OFF")


# -- sniffers ----------------------------------------------------------------------------------
def sniff_obj(head: bytes) -> bool:
    """Every complete non-comment line starts with an OBJ keyword, and some line is ``v``/``f``."""
    if b"\x00" in head:
        return False
    lines = head.splitlines()
    if len(head) >= 4096 and lines:
        lines = lines[:-1]
    seen = False
    for ln in lines:
        tok = ln.split(None, 1)
        if not tok or tok[0].startswith(b"#"):
            continue
        if tok[0] not in _OBJ_KEYS:
            return False
        seen |= tok[0] in (b"v", b"f")
    return seen


def sniff_off(head: bytes) -> bool:
    """The first word after any ``#`` comment lines is an OFF header keyword (``OFF``, ``COFF``, ``OFF3``...)."""
    text = head.lstrip()
    while text.startswith(b"#"):
        text = text.split(b"\n", 1)[1].lstrip() if b"\n" in text else b""
    first = text.split(None, 1)[0] if text.strip() else b""
    return first.endswith(b"OFF") and len(first) <= 6 or (first.startswith(b"OFF") and first[3:].isdigit())


def sniff_stl(head: bytes) -> bool:
    """ascii ``solid`` + ``facet``; binary only when the whole file is in `head` and sizes agree."""
    if head.lstrip().startswith(b"solid") and (b"facet" in head or b"endsolid" in head):
        return True
    if 84 <= len(head) < 4096:
        return len(head) == 84 + 50 * struct.unpack_from("<I", head, 80)[0]
    return False


def sniff_glb(head: bytes) -> bool:
    return head.startswith(b"glTF")


def sniff_gltf(head: bytes) -> bool:
    text = head.lstrip()
    return text.startswith(b"{") and b'"asset"' in head


# -- reading -----------------------------------------------------------------------------------
def _file_normals(mesh: Any) -> np.ndarray | None:
    # trimesh caches normals it read from the file; reading `vertex_normals` would compute new ones
    cache = getattr(getattr(mesh, "_cache", None), "cache", {})
    n = cache.get("vertex_normals")
    return None if n is None or len(n) != len(mesh.vertices) else np.asarray(n, dtype=np.float64)


def _from_mesh(mesh: Any) -> Geometry:
    import trimesh

    if isinstance(mesh, trimesh.PointCloud):
        geom = Geometry(vertices=np.asarray(mesh.vertices, dtype=np.float64))
        colors = getattr(mesh, "colors", None)
        if colors is not None and len(colors) == len(mesh.vertices) and len(colors):
            geom.colors = to_unit_colors(np.asarray(colors))
        return geom
    geom = Geometry(vertices=np.asarray(mesh.vertices, dtype=np.float64), faces=np.asarray(mesh.faces, dtype=np.int64))
    geom.normals = _file_normals(mesh)
    vis = mesh.visual
    if vis is not None and vis.kind == "texture":
        uv = getattr(vis, "uv", None)
        if uv is not None and len(uv) == len(mesh.vertices):
            geom.uv = np.asarray(uv, dtype=np.float64)
        mat = getattr(vis, "material", None)
        img = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
        # trimesh stands in a uniform 2x2 image when the texture/MTL file is missing: not a texture
        if img is not None and not (img.size == (2, 2) and all(lo == hi for lo, hi in img.convert("RGBA").getextrema())):
            geom.texture = img
    elif vis is not None and vis.kind == "vertex":
        geom.colors = to_unit_colors(np.asarray(vis.vertex_colors))
    elif vis is not None and vis.kind == "face":
        geom.face_colors = to_unit_colors(np.asarray(vis.face_colors))
    return geom


def _concat(parts: list[Any]) -> Any:
    import trimesh

    meshes = [p for p in parts if isinstance(p, trimesh.Trimesh)]
    clouds = [p for p in parts if isinstance(p, trimesh.PointCloud)]
    if meshes:
        if len(meshes) == 1:
            return meshes[0]
        try:
            return trimesh.util.concatenate(meshes)
        except Exception:  # noqa: BLE001 - mixed visuals: keep the geometry, drop the materials
            return trimesh.util.concatenate([trimesh.Trimesh(m.vertices, m.faces, process=False) for m in meshes])
    if clouds:
        return trimesh.PointCloud(np.concatenate([c.vertices for c in clouds]))
    return None


def _statements(raw: bytes) -> list[bytes]:
    """First word of every line that is neither blank nor a ``#`` comment."""
    words = (ln.split(None, 1)[:1] for ln in raw.splitlines())
    return [w[0] for w in words if w and not w[0].startswith(b"#")]


def _first_line(raw: bytes) -> str:
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip() and not ln.lstrip().startswith(b"#")), b"")
    return line[:40].decode("ascii", errors="replace")


def _check_text(raw: bytes, file_type: str) -> None:
    """Refuse text that is not `file_type` at all (raises ValueError naming the first line)."""
    if file_type in ("obj", "off") and b"\x00" in raw:
        raise ValueError("binary data in a text format")
    if file_type == "obj":
        words = _statements(raw)
        if words and not any(w in _OBJ_ALL_KEYS for w in words):
            raise ValueError(f"no OBJ statement (v, f, o, ...) in it; first line '{_first_line(raw)}'")
    elif file_type == "off":
        if not _OFF_HEADER.match(_first_line(raw).encode()):
            raise ValueError(f"does not start with an OFF header; first line '{_first_line(raw)}'")
    elif file_type == "gltf" and not raw.lstrip().startswith(b"{"):
        raise ValueError(f"not a glTF JSON document; first line '{_first_line(raw)}'")


def _empty_ok(raw: bytes, file_type: str) -> bool:
    """True when a file that gave no geometry really is a well-formed empty one."""
    if file_type == "obj":  # only comments and non-geometry statements (o, g, mtllib, ...)
        return all(w in _OBJ_ALL_KEYS and w not in (b"v", b"f") for w in _statements(raw))
    if file_type == "stl":
        if len(raw) == 84 and struct.unpack_from("<I", raw, 80)[0] == 0:
            return True
        text = raw.strip()
        return text.startswith(b"solid") and text.split(b"\n")[-1].strip().startswith(b"endsolid") and b"facet" not in text
    return False


def read(path: str | Path, file_type: str, **_: Any) -> Geometry:
    import trimesh

    path = Path(path)
    raw = path.read_bytes()
    _check_text(raw, file_type)
    if file_type == "stl" and not (sniff_stl(raw[:4096]) or _binary_stl_size_ok(raw)):
        raise ValueError("neither an ascii STL ('solid' ... 'facet') nor a binary STL of consistent size")
    if file_type == "obj" and _INLINE_COMMENT.search(raw):
        # trimesh chokes on `v 1 2 3  # note`; strip trailing comments, keep MTL/texture lookup beside the file
        import io

        resolver = trimesh.resolvers.FilePathResolver(str(path))
        loaded = trimesh.load(io.BytesIO(_INLINE_COMMENT.sub(b"", raw)), file_type="obj", process=False, resolver=resolver)
    else:
        loaded = trimesh.load(str(path), file_type=file_type, process=False)
    if isinstance(loaded, trimesh.Scene):
        obj = _concat(list(loaded.dump())) if loaded.geometry else None
    elif isinstance(loaded, (trimesh.Trimesh, trimesh.PointCloud)):
        obj = loaded
    else:
        raise ValueError(f"holds a {type(loaded).__name__}, not a mesh or point cloud")
    if obj is None:
        if not _empty_ok(raw, file_type):
            raise ValueError("no geometry could be read from it")
        geom = Geometry(vertices=np.zeros((0, 3)))
    else:
        geom = _from_mesh(obj)
    if isinstance(loaded, trimesh.Scene):
        geom.meta["scene_geometries"] = len(loaded.geometry)
    return note_nonfinite(geom)


def _binary_stl_size_ok(raw: bytes) -> bool:
    return len(raw) >= 84 and len(raw) == 84 + 50 * struct.unpack_from("<I", raw, 80)[0]


def read_obj(path: str | Path, **kw: Any) -> Geometry:
    return read(path, "obj", **kw)


def read_off(path: str | Path, **kw: Any) -> Geometry:
    return read(path, "off", **kw)


def read_stl(path: str | Path, **kw: Any) -> Geometry:
    return read(path, "stl", **kw)


def read_glb(path: str | Path, **kw: Any) -> Geometry:
    return read(path, "glb", **kw)


def read_gltf(path: str | Path, **kw: Any) -> Geometry:
    return read(path, "gltf", **kw)


# -- writing -----------------------------------------------------------------------------------
def _to_trimesh(geom: Geometry) -> Any:
    import trimesh

    faces = geom.faces if geom.faces is not None else np.zeros((0, 3), np.int64)
    kw: dict[str, Any] = {}
    if geom.normals is not None:
        kw["vertex_normals"] = np.asarray(geom.normals, dtype=np.float64)
    mesh = trimesh.Trimesh(vertices=np.asarray(geom.vertices, dtype=np.float64), faces=faces, process=False, **kw)
    if geom.uv is not None and geom.texture is not None:
        mesh.visual = trimesh.visual.TextureVisuals(uv=np.asarray(geom.uv), image=geom.texture)
    elif geom.colors is not None:
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=to_uint8_colors(geom.colors, "this mesh format", colour_bits(geom)))
    elif geom.face_colors is not None and len(faces):
        mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=to_uint8_colors(geom.face_colors, "this mesh format", colour_bits(geom)))
    return mesh


def write_obj(path: str | Path, geom: Geometry, **_: Any) -> None:
    if not geom.is_mesh:  # trimesh writes no OBJ for point clouds; `v x y z [r g b]` lines do it
        cols = [np.asarray(geom.vertices, np.float64)]
        if geom.colors is not None:
            cols.append(np.asarray(geom.colors, np.float64)[:, :3])
        fmt = "v" + " %.17g" * 3 + (" %.6g" * 3 if len(cols) > 1 else "")
        with open(path, "w", encoding="ascii") as fh:
            fh.write("# written by facet3d\n")
            np.savetxt(fh, np.hstack(cols), fmt=fmt)
        return
    text = _to_trimesh(geom).export(file_type="obj", include_normals=geom.normals is not None,
                                    include_color=geom.colors is not None, include_texture=False, digits=17)
    Path(path).write_text(text if isinstance(text, str) else text.decode(), encoding="utf-8")


def write_off(path: str | Path, geom: Geometry, **_: Any) -> None:
    Path(path).write_bytes(_as_bytes(_to_trimesh(geom).export(file_type="off", digits=17)))


def write_stl(path: str | Path, geom: Geometry, ascii: bool = False, **_: Any) -> None:
    Path(path).write_bytes(_as_bytes(_to_trimesh(geom).export(file_type="stl_ascii" if ascii else "stl")))


def write_glb(path: str | Path, geom: Geometry, **_: Any) -> None:
    Path(path).write_bytes(_as_bytes(_to_trimesh(geom).export(file_type="glb")))


def write_gltf(path: str | Path, geom: Geometry, **_: Any) -> None:
    from trimesh.exchange.gltf import export_gltf

    files = export_gltf(_to_trimesh(geom).scene(), embed_buffers=True)
    Path(path).write_bytes(_as_bytes(files["model.gltf"]))


def _as_bytes(data: Any) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)
