"""Open scenes trained by the official Triangle Splatting (TS) and Triangle Splatting+ (TS+) code.

Layout of an official model folder (github.com/trianglesplatting/triangle-splatting,
github.com/trianglesplatting2/triangle-splatting2)::

    MODEL/cameras.json                                          # 3DGS camera list (optional here)
    MODEL/point_cloud/iteration_<it>/point_cloud_state_dict.pt  # torch pickle of raw tensors

`load_official` accepts the model folder (latest iteration by number, or ``iteration=``), its
``point_cloud`` folder, one ``iteration_<it>`` folder or the ``.pt`` file itself, and returns an
activated `TriangleScene` (``scene.meta``: ``source_format`` ``"official"``, ``variant`` ts / ts+,
``iteration``, ``source`` (the .pt), ``opacity_floor`` (TS+; None for TS), ``active_sh_degree``).
The file is read with ``torch.load(weights_only=True)``: a pickle that would run code is refused
with one `FormatError` line, never executed.

State dicts and their activations (as the official ``scene/triangle_model.py`` defines them)
-------------------------------------------------------------------------------------------
* TS (free triangles): ``triangles_points [N, 3, 3]``; ``sigma [N, 1]`` -> ``0.01 + exp(raw)``;
  ``opacity [N, 1]`` -> ``sigmoid(raw)``; ``features_dc [N, 1, 3]``, ``features_rest [N, 15, 3]``;
  ``active_sh_degree``.  -> form ``"ts"``.
* TS+ (shared vertices): ``triangles_points [V, 3]``, ``_triangle_indices [T, 3]`` (int32);
  ``vertex_weight [V, 1]`` -> ``floor + (1 - floor) sigmoid(raw)``; ``sigma`` (a Python float or
  0-d tensor, one for the scene) -> ``exp(raw)``; ``features_dc [V, 1, 3]``, ``features_rest
  [V, 15, 3]``; ``active_sh_degree``; ``importance_score``, ``image_size`` (training statistics,
  ignored).  -> form ``"ts+"``.  The opacity floor is raised 0.1 -> 0.9999 during training and is
  *not saved*; the official loader (``load_parameters``) sets 0.9999, so ``opacity_floor=0.9999``
  is the default here too.

Same meaning, no conversion (checked against the official CUDA rasterizers
diff-triangle-rasterization / diff-triangle2-rasterization, ``forward.cu``): their window is
``Cx = max(0, (phi(p) / phi(incenter)))^sigma`` with ``phi`` the max of the three edge
distances and ``sigma`` the *activated* value above, ``alpha = min(0.99, opacity * Cx)``, skipped
below 1/255 -- exactly `facet3d.kernels.trisplat`'s window (docs/triangle_splat_ply.md: sigma is
stored activated).  TS+ triangle opacity = min of its vertices' weights, colour = barycentric mix
of the vertices' SH colours, as our ``"ts+"`` form.  Colour = SH + 0.5 clamped at 0 with the 3DGS
constants (SH_C0 = 0.28209479177387814), as ours.  Pixel centres: the official projection maps
NDC with ``((v + 1) S - 1) / 2``, i.e. integer pixel centres with the principal point at
``((W - 1) / 2, (H - 1) / 2)``: `official_cameras` builds K that way.

SH degree: the official renderer is called with ``sh_degree = active_sh_degree`` and ignores the
coefficients above it, so they are dropped here (``sh_rest`` keeps ``(d + 1)^2 - 1`` of them).

Known differences from the official renders (not converted; they change pixels slightly):

* TS: the official kernel evaluates the SH at ``(glm::vec3)(cx, cy, cz)`` -- a C comma expression
  that yields ``(cz, cz, cz)``, not the centroid; we evaluate at the centroid (our convention).
  Only view-dependent colour (degree >= 1) is affected.
* TS: the training-time ``_mask`` (a straight-through visibility mask) is not saved; every
  triangle counts as visible.
* TS+: the official kernel interpolates vertex colours with screen-space barycentrics, ours are
  perspective-correct; the official ``render.py`` also renders TS+ 4x supersampled.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from pathlib import Path

import torch

from facet3d.core.errors import FormatError, InputError

__all__ = ["is_official_scene", "is_official_input", "official_cameras_file", "load_official", "official_cameras", "find_state_file",
           "official_model_dir", "STATE_FILE", "DEFAULT_OPACITY_FLOOR"]

STATE_FILE = "point_cloud_state_dict.pt"
DEFAULT_OPACITY_FLOOR = 0.9999
_ITER = re.compile(r"^iteration_(\d+)$")
_TS_KEYS = ("triangles_points", "sigma", "opacity", "features_dc", "features_rest")
_TSPLUS_KEYS = ("triangles_points", "_triangle_indices", "vertex_weight", "sigma", "features_dc", "features_rest")


# ---------------------------------------------------------------------------------------- finding the file
def _iterations(point_cloud: Path) -> dict[int, Path]:
    out = {}
    try:
        for d in point_cloud.iterdir() if point_cloud.is_dir() else ():
            m = _ITER.match(d.name)
            if m and (d / STATE_FILE).is_file():
                out[int(m.group(1))] = d / STATE_FILE
    except OSError:  # unreadable folder: not one we can open
        return {}
    return out


def _iteration_of(state_file: Path) -> int | None:
    m = _ITER.match(state_file.parent.name)
    return int(m.group(1)) if m else None


def _pickle_mentions(path: Path, key: bytes) -> bool:
    """True when ``path`` is a torch zip archive whose pickle holds ``key`` (nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            return bool(names) and key in zf.read(names[0])
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def is_official_scene(path) -> bool:
    """A ``point_cloud_state_dict.pt``, any ``.pt`` whose pickle holds ``triangles_points``, or a
    folder holding ``point_cloud/iteration_*/point_cloud_state_dict.pt`` (or being the ``point_cloud``
    or an ``iteration_*`` folder of one).  Cheap: nothing is unpickled."""
    p = Path(path)
    if p.is_dir():
        return bool(_iterations(p / "point_cloud") or _iterations(p) or (p / STATE_FILE).is_file())
    if not p.is_file() or p.suffix.lower() != ".pt":
        return False
    return p.name == STATE_FILE or _pickle_mentions(p, b"triangles_points")


def is_official_input(path) -> bool:
    """Whether ``load_official`` should read ``path``: an official scene (`is_official_scene`), or any
    folder or ``.pt`` file (no other scene is one: a damaged or foreign one then gets the official
    reader's precise error rather than "unknown format")."""
    p = Path(path)
    return p.is_dir() or (p.is_file() and p.suffix.lower() == ".pt") or is_official_scene(p)


def official_cameras_file(path) -> Path | None:
    """The ``cameras.json`` of the official model ``path`` belongs to, when it is one and has it."""
    if not is_official_input(path):
        return None
    d = official_model_dir(path)
    return d / "cameras.json" if d is not None and (d / "cameras.json").is_file() else None


def find_state_file(path, iteration: int | None = None) -> tuple[Path, int | None]:
    """The state dict ``path`` names -> ``(file, iteration)`` (iteration None when the file's folder
    is not ``iteration_<it>``).  Folders: the latest iteration by number, or ``iteration``."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_file():
        it = _iteration_of(p)
        if iteration is not None and it is not None and it != iteration:
            raise InputError(f"{p}: is iteration {it}, not the requested {iteration}")
        return p, it
    if (p / STATE_FILE).is_file():  # an iteration_<it> folder
        return find_state_file(p / STATE_FILE, iteration)
    its = _iterations(p / "point_cloud") or _iterations(p)
    if not its:
        raise InputError(f"{p}: a folder without point_cloud/iteration_*/{STATE_FILE} "
                         "(not an official Triangle Splatting model folder)")
    if iteration is None:
        iteration = max(its)
    elif iteration not in its:
        raise InputError(f"{p}: no iteration {iteration} (saved: {', '.join(map(str, sorted(its)))})")
    return its[iteration], iteration


def official_model_dir(path) -> Path | None:
    """The model folder (the one holding ``point_cloud/``) of an official scene path, or None."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    for d in (p, *p.parents[:2]):
        if (d / "point_cloud").is_dir():
            return d
    return None


# ---------------------------------------------------------------------------------------- reading
def _load_state(f: Path) -> dict:
    try:
        with open(f, "rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        raise InputError(f"{f}: cannot read ({exc})") from None
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch zip archive / legacy pickle
        raise FormatError(f"{f}: not a torch file (neither a torch zip archive nor a pickle)")
    try:
        sd = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it references {m.group(1)})" if m else ""
        raise FormatError(f"{f}: refused: unpickling it would need code execution{what}; only plain tensor "
                          "state dicts are read (torch.load weights_only=True)") from None
    except OSError as exc:
        raise InputError(f"{f}: cannot read ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/ValueError for damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise FormatError(f"{f}: not a readable torch state dict ({type(exc).__name__}: {first})") from None
    if not isinstance(sd, dict):
        raise FormatError(f"{f}: holds a {type(sd).__name__}, expected the dict of tensors official "
                          "Triangle Splatting saves")
    return sd


def _tensor(sd: dict, key: str, f: Path, shape: tuple, dims: int) -> torch.Tensor:
    """``sd[key]`` as a finite float tensor of rank ``dims`` matching ``shape`` (None = any size)."""
    t = sd[key]
    if not isinstance(t, torch.Tensor):
        raise FormatError(f"{f}: '{key}' is a {type(t).__name__}, expected a tensor")
    if t.ndim != dims or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise FormatError(f"{f}: '{key}' has shape {list(t.shape)}, expected {want}")
    if not t.is_floating_point():
        raise FormatError(f"{f}: '{key}' is {t.dtype}, expected floating point")
    if not bool(torch.isfinite(t).all()):
        raise FormatError(f"{f}: '{key}' holds NaN or infinite values")
    return t.detach().to(torch.float32)


def _per_row(sd: dict, key: str, f: Path, n: int) -> torch.Tensor:
    """[n, 1] or [n] -> [n]."""
    t = sd[key]
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return _tensor(sd, key, f, (n,), 1)
    return _tensor(sd, key, f, (n, 1), 2)[:, 0]


def _sh(sd: dict, f: Path, n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    dc = sd["features_dc"]
    dc = _tensor(sd, "features_dc", f, (n, 3), 2) if isinstance(dc, torch.Tensor) and dc.ndim == 2 \
        else _tensor(sd, "features_dc", f, (n, 1, 3), 3)[:, 0]
    rest = _tensor(sd, "features_rest", f, (n, None, 3), 3)
    saved = {0: 0, 3: 1, 8: 2, 15: 3}.get(rest.shape[1])
    if saved is None:
        raise FormatError(f"{f}: 'features_rest' has {rest.shape[1]} coefficients per channel, expected 0, 3, 8 or 15")
    raw = sd.get("active_sh_degree", saved)
    try:
        deg = int(raw.item() if isinstance(raw, torch.Tensor) else raw)
    except (TypeError, ValueError, RuntimeError):
        raise FormatError(f"{f}: 'active_sh_degree' is {raw!r}, expected an integer") from None
    if not 0 <= deg <= saved:
        raise FormatError(f"{f}: 'active_sh_degree' is {deg}, but features_rest holds degree {saved} at most")
    return dc, rest[:, :(deg + 1) ** 2 - 1].contiguous(), deg


def _missing(sd: dict, keys, f: Path, variant: str) -> None:
    miss = [k for k in keys if k not in sd]
    if miss:
        raise FormatError(f"{f}: not an official {variant} state dict: missing {', '.join(miss)} "
                          f"(has {', '.join(sorted(map(str, sd))[:8]) or 'nothing'})")


def load_official(path, opacity_floor: float = DEFAULT_OPACITY_FLOOR, iteration: int | None = None):
    """An official TS / TS+ output (module docstring) -> activated `TriangleScene` (float32, CPU).

    path: model folder, its point_cloud or iteration_<it> folder, or the .pt; iteration: which
    ``iteration_<it>`` of a folder (default: the latest); opacity_floor: TS+'s vertex opacity
    floor in [0, 1) (not saved by the official code; 0.9999 = the end of training).
    """
    from facet3d.plugins.triangle_splatting.scene import TriangleScene

    if not (isinstance(opacity_floor, (int, float)) and 0.0 <= opacity_floor < 1.0):
        raise InputError(f"opacity_floor {opacity_floor!r}: expected a value in [0, 1)")
    f, it = find_state_file(path, iteration)
    sd = _load_state(f)
    if "_triangle_indices" in sd or "vertex_weight" in sd:
        variant = "ts+"
        _missing(sd, _TSPLUS_KEYS, f, "Triangle Splatting+")
        v = _tensor(sd, "triangles_points", f, (None, 3), 2)
        n = v.shape[0]
        idx = sd["_triangle_indices"]
        if not isinstance(idx, torch.Tensor) or idx.ndim != 2 or idx.shape[1] != 3:
            raise FormatError(f"{f}: '_triangle_indices' has shape {list(getattr(idx, 'shape', []))}, expected [*, 3]")
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise FormatError(f"{f}: '_triangle_indices' is {idx.dtype}, expected integers")
        faces = idx.detach().to(torch.int64)
        if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= n):
            raise FormatError(f"{f}: '_triangle_indices' refers to vertex {int(faces.max())} (or below 0); "
                              f"there are {n} vertices")
        w = _per_row(sd, "vertex_weight", f, n)
        raw_sigma = sd["sigma"]
        if isinstance(raw_sigma, torch.Tensor):
            if raw_sigma.numel() != 1:
                raise FormatError(f"{f}: TS+ 'sigma' has shape {list(raw_sigma.shape)}, expected one value")
            raw_sigma = raw_sigma.reshape(()).item()
        if not isinstance(raw_sigma, (int, float)) or not math.isfinite(raw_sigma):
            raise FormatError(f"{f}: TS+ 'sigma' is {raw_sigma!r}, expected a finite number")
        dc, rest, deg = _sh(sd, f, n)
        op = opacity_floor + (1.0 - opacity_floor) * torch.sigmoid(w)
        sigma = torch.tensor(math.exp(raw_sigma), dtype=torch.float32)
        scene = TriangleScene("ts+", dc, rest, op, sigma, vertices=v, faces=faces)
    elif "opacity" in sd or "triangles_points" in sd:
        variant = "ts"
        _missing(sd, _TS_KEYS, f, "Triangle Splatting")
        tri = _tensor(sd, "triangles_points", f, (None, 3, 3), 3)
        n = tri.shape[0]
        op = torch.sigmoid(_per_row(sd, "opacity", f, n))
        sigma = 0.01 + torch.exp(_per_row(sd, "sigma", f, n))
        dc, rest, deg = _sh(sd, f, n)
        scene = TriangleScene("ts", dc, rest, op, sigma, triangles=tri)
        opacity_floor = None
    else:
        raise FormatError(f"{f}: not an official Triangle Splatting state dict: no 'triangles_points' "
                          f"(has {', '.join(sorted(map(str, sd))[:8]) or 'nothing'})")
    scene.meta.update(source_format="official", variant=variant, iteration=it, source=str(f),
                      opacity_floor=opacity_floor, active_sh_degree=deg)
    return scene


# ---------------------------------------------------------------------------------------- cameras
def official_cameras(model_dir):
    """The cameras of an official model's ``cameras.json`` as a core `Cameras` batch (indexable,
    ``len``; names = ``img_name``), None when there is none.

    model_dir: the ``cameras.json`` itself, the model folder, or any official scene path inside it
    (``point_cloud/``, ``iteration_<it>/``, the ``.pt``: `official_model_dir`).

    ``position`` is the camera centre, ``rotation`` camera-to-world (OpenCV axes): R = rotation^T,
    t = -R position; K = (fx, fy, (W - 1) / 2, (H - 1) / 2), the official centred principal point.
    """
    from facet3d.core.io.cameras import read_cameras

    p = Path(model_dir)
    if p.is_file() and p.suffix.lower() == ".json":
        f = p
    else:
        d = official_model_dir(p) or p
        f = d / "cameras.json"
    if not f.is_file():
        return None
    return read_cameras(f)[0]
