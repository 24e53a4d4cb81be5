"""What ``facet3d view`` shows, as plain data: layers built from paths by content (no viewer imported here).

A path becomes layers through the first plugin `ViewLoader` that claims it (triangle-splat scenes, ...),
else through core's readers: any geometry file facet3d reads (a mesh -> `MeshLayer`, points ->
`PointsLayer`), any camera layout `read_cameras` knows (-> `CamerasLayer`, with each view's image when it
can be found), or a folder, whose files are each tried in turn (so the output folders of ``reconstruct``,
``lift``, ``mesh --from-depth``, ``fit`` and the body commands show their points, meshes and cameras
together). Clouds above ``max_points`` are down-sampled for display (one point per voxel, or at random),
and the layer keeps the true count. Scalar attributes (intensity, classification, a part label) are
coloured through a colour map; integer labels get distinct colours.

Layers live in the files' own coordinates; `shift_for_display` gives the offset a viewer subtracts so
that survey coordinates (LAS eastings of 10^5 m) keep their precision in float32 / float16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facet3d.core.errors import Facet3DError, InputError, UsageError

__all__ = ["ViewOptions", "Layer", "PointsLayer", "MeshLayer", "CamerasLayer", "SplatLayer", "collect_layers",
           "geometry_layer", "camera_layer", "camera_images", "thumbnail", "rgb8", "layer_points", "point_colours", "display_subset", "shift_for_display", "LABEL_NAMES"]

# attributes coloured by category (distinct colours), in the order a cloud without colours picks them
LABEL_NAMES = ("classification", "label", "labels", "part", "segment", "instance")
SCALAR_NAMES = ("intensity", "scalar", "value", "distance", "z")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
THUMB = 192  # frustum images are shrunk to this many pixels on the long side


@dataclass
class ViewOptions:
    max_points: int = 2_000_000
    max_triangles: int = 1_000_000  # triangle-splat previews keep the most visible ones above this
    downsample: str = "voxel"  # "voxel" or "random"
    color_by: str | None = None  # an attribute name; None: the file's colours, else a label / scalar
    images: bool = True  # camera frustums show their images
    opacity_floor: float = 0.9999  # for official TS+ scenes (their floor is not saved)
    seed: int = 0

    def check(self) -> None:
        if self.max_points < 1:
            raise UsageError(f"--max-points must be >= 1, got {self.max_points}")
        if self.max_triangles < 1:
            raise UsageError(f"--max-triangles must be >= 1, got {self.max_triangles}")
        if self.downsample not in ("voxel", "random"):
            raise UsageError(f"--downsample must be voxel or random, got '{self.downsample}'")


@dataclass
class Layer:
    name: str  # unique, '/'-separated (the viewer's scene-tree path)
    source: str  # the file it came from

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Layer").lower()

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source": self.source}


@dataclass
class PointsLayer(Layer):
    points: np.ndarray = None  # [n, 3] float64, shown (after down-sampling)
    colors: np.ndarray = None  # [n, 3] uint8
    total: int = 0  # points in the file
    colored_by: str = "colors"  # "colors", an attribute name, or "height"

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "points": int(len(self.points)), "total": self.total,
                "colored_by": self.colored_by}


@dataclass
class MeshLayer(Layer):
    vertices: np.ndarray = None  # [V, 3] float64
    faces: np.ndarray = None  # [F, 3] int64
    colors: np.ndarray | None = None  # [V, 3] uint8 per vertex, or None (one grey)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "vertices": int(len(self.vertices)), "faces": int(len(self.faces)),
                "vertex_colors": self.colors is not None}


@dataclass
class CamerasLayer(Layer):
    cameras: Any = None  # core `Cameras` (OpenCV axes)
    images: list = field(default_factory=list)  # per camera: [h, w, 3] uint8 thumbnail or None
    warnings: list = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "cameras": len(self.cameras),
                "images": sum(im is not None for im in self.images)}


@dataclass
class SplatLayer(Layer):
    """A scene a viewer shows as ``preview`` (an opaque coloured mesh) or renders exactly itself.

    render: ``render(cameras: Cameras [1], background (r, g, b) in [0, 1]) -> (rgb [H, W, 3] uint8,
            depth [H, W] float32 camera z, inf where nothing is drawn)`` with the plugin's own renderer
            (softness, opacity, view-dependent colour included); the depth lets a viewer composite
            several scenes and depth-test its other layers against the image.
    """

    preview: MeshLayer = None
    render: Callable[..., tuple] | None = None
    count: int = 0  # triangles
    form: str = ""

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "triangles": self.count, "preview_triangles": int(len(self.preview.faces)),
                "form": self.form, "exact": self.render is not None}


# --------------------------------------------------------------------------- colours and sizes
def rgb8(c: np.ndarray) -> np.ndarray:
    """Colours [N, 3|4] -> display RGB [N, 3] uint8 (odd files with 0-255 or 16-bit values as floats too)."""
    c = np.asarray(c, dtype=np.float64)[:, :3]
    if c.size and c.max() > 1.0:  # 8- or 16-bit colours stored as integers
        c = c / (65535.0 if c.max() > 255 else 255.0)
    return (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8)


def _label_colours(values: np.ndarray) -> np.ndarray:
    """Distinct colours per integer label (tab20, cycling), stable for the same label across files."""
    from matplotlib import colormaps

    table = (np.asarray(colormaps["tab20"].colors) * 255 + 0.5).astype(np.uint8)  # [20, 3]
    return table[np.asarray(values).astype(np.int64) % len(table)]


def _scalar_colours(values: np.ndarray) -> np.ndarray:
    """Viridis over the 1st-99th percentile (a few outliers do not flatten the map)."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.nanpercentile(v, [1, 99]) if v.size else (0.0, 1.0)
    t = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return (colormaps["viridis"](np.nan_to_num(t))[:, :3] * 255 + 0.5).astype(np.uint8)


def _is_label(name: str, values: np.ndarray) -> bool:
    v = np.asarray(values)
    return name.lower() in LABEL_NAMES or (v.dtype.kind in "iub" and name.lower() not in SCALAR_NAMES
                                          and len(np.unique(v[:10000])) <= 64)


def point_colours(geom, color_by: str | None = None) -> tuple[np.ndarray, str]:
    """Display colours [N, 3] uint8 of a `Geometry` and what they show.

    color_by: an attribute name (``"z"`` or ``"height"`` for the height); None: the file's colours, else
    the first label attribute, else intensity, else the height.
    """
    attrs = {k: v for k, v in geom.attributes.items() if np.asarray(v).ndim == 1 and len(v) == geom.num_points}
    if color_by is None:
        if geom.colors is not None:
            return rgb8(geom.colors), "colors"
        color_by = next((k for k in attrs if k.lower() in LABEL_NAMES), None) \
            or next((k for k in attrs if k.lower() in SCALAR_NAMES), None) or "height"
    if color_by in ("height", "z"):
        return _scalar_colours(np.asarray(geom.vertices)[:, 2]), "height"
    if color_by in ("colors", "rgb"):
        if geom.colors is None:
            raise UsageError("--color-by colors: the file has no colours")
        return rgb8(geom.colors), "colors"
    if color_by not in attrs:
        have = ", ".join(sorted(attrs)) or "none"
        raise UsageError(f"--color-by {color_by}: no such per-point attribute (have: {have}; or height, colors)")
    v = np.asarray(attrs[color_by])
    return (_label_colours(v) if _is_label(color_by, v) else _scalar_colours(v)), color_by


def display_subset(points: np.ndarray, max_points: int, how: str = "voxel", seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_points`` points to draw: one per voxel (the voxel size grows until the
    count fits; keeps thin structures and sparse regions) or a uniform random subset."""
    n = len(points)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if how == "voxel":
        p = np.asarray(points, dtype=np.float64)
        lo, ext = p.min(0), np.ptp(p, 0)
        size = max(float(np.sqrt(max(ext[0] * ext[1], ext[0] * ext[2], ext[1] * ext[2], 1e-18) / max_points)),
                   1e-9)  # a surface's points fill about area / size^2 voxels
        for _ in range(12):
            keys = np.floor((p - lo) / size).astype(np.int64)
            _, first = np.unique(keys, axis=0, return_index=True)
            if len(first) <= max_points:
                return np.sort(first)
            size *= 1.3 * np.sqrt(len(first) / max_points)
    return np.sort(rng.choice(n, max_points, replace=False))


def shift_for_display(layers: list[Layer]) -> np.ndarray:
    """An offset [3] to subtract from every layer so coordinates far from the origin (survey data) stay
    exact in the viewer's float32; zero when everything is within 10 km of the origin."""
    mins, maxs = [], []
    for layer in layers:
        pts = layer_points(layer)
        if pts is not None and len(pts):
            mins.append(pts.min(0))
            maxs.append(pts.max(0))
    if not mins:
        return np.zeros(3)
    centre = (np.min(mins, 0) + np.max(maxs, 0)) / 2
    return np.round(centre) if np.abs(centre).max() > 1e4 else np.zeros(3)


def layer_points(layer: Layer) -> np.ndarray | None:
    if isinstance(layer, (PointsLayer,)):
        return layer.points
    if isinstance(layer, MeshLayer):
        return layer.vertices
    if isinstance(layer, SplatLayer):
        return layer.preview.vertices
    if isinstance(layer, CamerasLayer):
        return layer.cameras.centers().detach().cpu().numpy()
    return None


# --------------------------------------------------------------------------- building layers
def geometry_layer(geom, name: str, source: str, options: ViewOptions) -> Layer:
    """A mesh (faces) or a cloud `Geometry` -> its layer (module docstring)."""
    if geom.faces is not None and len(geom.faces):
        colors = rgb8(geom.colors) if geom.colors is not None else None
        if colors is None and geom.face_colors is not None:  # face colours -> unshared vertices
            f = np.asarray(geom.faces)
            return MeshLayer(name, source, np.asarray(geom.vertices, dtype=np.float64)[f].reshape(-1, 3),
                             np.arange(3 * len(f)).reshape(-1, 3), np.repeat(rgb8(geom.face_colors), 3, axis=0))
        return MeshLayer(name, source, np.asarray(geom.vertices, dtype=np.float64), np.asarray(geom.faces), colors)
    colors, what = point_colours(geom, options.color_by)
    keep = display_subset(np.asarray(geom.vertices), options.max_points, options.downsample, options.seed)
    return PointsLayer(name, source, np.asarray(geom.vertices, dtype=np.float64)[keep], colors[keep],
                       total=geom.num_points, colored_by=what)


def _find_image(name: str, roots: list[Path]) -> Path | None:
    stem = Path(name)
    for root in roots:
        for cand in (root / stem, root / "images" / stem, root / "images" / stem.name):
            if cand.is_file():
                return cand
            for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS):  # cameras' DSC_0001.JPG
                if cand.with_suffix(ext).is_file():
                    return cand.with_suffix(ext)
    return None


def thumbnail(path: Path) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            return np.asarray(im)
    except (OSError, UnidentifiedImageError):
        return None  # a broken picture leaves the frustum empty, not the viewer down


def camera_layer(path: Path, name: str, options: ViewOptions) -> CamerasLayer:
    """Any camera layout (`core.io.cameras.read_cameras`) -> frustums, with their images when found
    beside the camera file (or in ``images/`` there or one folder up)."""
    from facet3d.core.io.cameras import find_camera_file, read_cameras

    cams, warnings = read_cameras(path)
    f = find_camera_file(path)
    base = f if f.is_dir() else f.parent
    roots = [base, base.parent, base.parent.parent]
    images = camera_images(cams, roots) if options.images else [None] * len(cams)
    return CamerasLayer(name, str(f), cams, images, list(warnings))


def camera_images(cams, roots: list[Path]) -> list:
    """Per camera of ``cams``, a thumbnail [h, w, 3] uint8 of the image named like it in one of
    ``roots`` (or their ``images/``), any picture extension; None where there is none."""
    names = list(cams.names) if cams.names is not None else [str(i) for i in range(len(cams))]
    found = [_find_image(n, roots) for n in names]
    return [thumbnail(p) if p is not None else None for p in found]


def _kind(path: Path, loaders: list, in_folder: bool) -> tuple[str, Any]:
    """What ``path`` is, decided once: ("loader", the claiming `ViewLoader`), ("cameras", None),
    ("folder", None), ("geometry", None), or ("skip", None) for what a folder walk leaves alone (a
    document, a file of no known format). A path the user named is tried as geometry whatever it is,
    so its reader says what is wrong."""
    import json

    from facet3d.core.io.api import detect_format
    from facet3d.core.io.cameras import camera_layout
    from facet3d.core.io.colmap import find_colmap_model
    from facet3d.core.io.inputs import is_document
    from facet3d.core.specs import resolve

    for ld in loaders:
        if resolve(ld.claims)(path):
            return "loader", ld
    if path.is_dir():
        return ("cameras", None) if find_colmap_model(path) == path else ("folder", None)
    if path.suffix.lower() == ".json" and path.stat().st_size <= 200_000_000:
        try:
            camera_layout(json.loads(path.read_text()))
            return "cameras", None
        except (OSError, UnicodeDecodeError, ValueError, Facet3DError):
            pass
    if in_folder:
        if is_document(path):
            return "skip", None  # README.txt / LICENSE.txt beside the data, as batch folders treat it
        try:
            detect_format(path)
        except Facet3DError:
            return "skip", None
    return "geometry", None


def _path_layers(path: Path, kind: tuple[str, Any], name: str, options: ViewOptions) -> list[Layer]:
    from facet3d.core.io.api import read
    from facet3d.core.specs import resolve

    what, loader = kind
    if what == "loader":
        return resolve(loader.load)(path, name, options)
    if what == "cameras":
        return [camera_layer(path, name, options)]
    return [geometry_layer(read(path), name, str(path), options)]


def _folder_layers(folder: Path, prefix: str, options: ViewOptions, loaders: list, skipped: list,
                   depth: int = 0) -> list[Layer]:
    out: list[Layer] = []
    stems = [q.stem for q in folder.iterdir() if q.is_file()]
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        # simple.las beside simple.laz: both shown, named by their whole file names
        name = f"{prefix}/{p.stem if p.is_file() and stems.count(p.stem) == 1 else p.name}"
        try:
            kind = _kind(p, loaders, in_folder=True)
            if kind[0] == "folder":
                if depth < 2 and p.name not in ("images", "previews", "depth", "renders", "logs"):
                    out += _folder_layers(p, name, options, loaders, skipped, depth + 1)
            elif kind[0] != "skip":
                out += _path_layers(p, kind, name, options)
        except Facet3DError as exc:
            skipped.append(str(exc) if str(exc).startswith(str(p)) else f"{p}: {exc}")
    return out


def collect_layers(paths: list[str | Path], options: ViewOptions | None = None,
                   loaders: list | None = None) -> tuple[list[Layer], list[str]]:
    """Every path -> its layers (module docstring); returns (layers, notes on folder entries skipped).

    A file that cannot be shown raises (the user named it); inside a folder, unreadable entries are
    skipped and reported. loaders: plugin `ViewLoader` records (default: every installed plugin's).
    """
    options = options or ViewOptions()
    options.check()
    if loaders is None:
        from facet3d.core.plugins import get_plugins

        loaders = sorted(get_plugins().view_loaders().values(), key=lambda ld: (ld.order, ld.name))
    layers: list[Layer] = []
    skipped: list[str] = []
    used: set[str] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        base = p.stem if p.is_file() else (p.name or "root")
        name = base
        k = 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        kind = _kind(p, loaders, in_folder=False)
        if kind[0] == "folder":
            found = _folder_layers(p, name, options, loaders, skipped)
            if not found:
                raise InputError(f"{p}: nothing facet3d can show in this folder"
                                 + (f" ({len(skipped)} unreadable entries)" if skipped else ""))
            layers += found
        else:
            layers += _path_layers(p, kind, name, options)
    return layers, skipped
