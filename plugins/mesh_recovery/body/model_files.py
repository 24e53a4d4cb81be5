"""SMPL-format body model files -> `BodyModelData`, without running any code from the file.

Official SMPL ``.pkl`` files are latin-1 pickles whose arrays are partly chumpy ``Ch`` objects and
whose joint regressor is a scipy sparse matrix. `read_body_model` unpickles them with an unpickler
that knows only numpy arrays, scipy's sparse matrices and a stand-in for chumpy's classes (their
saved state holds the array as ``x``), and refuses every other global, so a model file cannot run
code. ``.npz`` files with the same keys are read with ``allow_pickle=False``.

Keys: v_template [V, 3], shapedirs [V, 3, B], posedirs [V, 3, 9(J-1)], J_regressor [J, V],
weights [V, J], kintree_table [2, J] (row 0: parents; the root's is forced to -1), f [F, 3].
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import CheckpointError, InputError

__all__ = ["BodyModelData", "read_body_model", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@dataclass
class BodyModelData:
    """The arrays of a linear-blend-skinned body model (float64 numpy, faces int64)."""

    v_template: np.ndarray  # [V, 3]
    shapedirs: np.ndarray  # [V, 3, B]
    posedirs: np.ndarray  # [V, 3, P], P = 9 * (J - 1)
    J_regressor: np.ndarray  # [J, V]
    weights: np.ndarray  # [V, J]
    parents: np.ndarray  # [J] int64, parents[0] == -1
    faces: np.ndarray  # [F, 3] int64
    source: str = ""

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])


class _ChumpyStandIn:
    """What a chumpy object unpickles to here: its saved state, whose ``x`` is the array."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def array(self) -> np.ndarray:
        state = self.state if isinstance(self.state, dict) else {}
        if "x" not in state:
            raise CheckpointError("a chumpy object in the model file holds no array ('x')")
        return np.asarray(state["x"])


class _Refused(pickle.UnpicklingError):
    """A global this reader will not load (it could run code)."""


def _reconstruct(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor for the classes allowed here (chumpy stand-ins)."""
    if cls is _ChumpyStandIn:
        return _ChumpyStandIn()
    raise _Refused(f"refusing to build {cls!r} from a body model file")


_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
          ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
          ("numpy._core.multiarray", "scalar"), ("numpy", "float64"), ("numpy", "int64")}
_SPARSE = ("csc_matrix", "csr_matrix", "coo_matrix")
_SAFE_BUILTINS = {"object": object, "set": set, "frozenset": frozenset}  # chumpy's state holds sets


def _numpy_global(name: str) -> Any:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    if name in ("_reconstruct", "scalar"):
        return getattr(multiarray, name)
    return getattr(np, name)


class _BodyModelUnpickler(pickle.Unpickler):
    """Allows numpy arrays, scipy sparse matrices and chumpy stand-ins; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY:
            return _numpy_global(name)
        if module.startswith("scipy.sparse") and name in _SPARSE:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if module.startswith("chumpy"):
            return _ChumpyStandIn
        if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")):
            return _reconstruct
        if module in ("__builtin__", "builtins") and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles from Python 3 store bytes
            import codecs

            return codecs.encode
        raise _Refused(f"refusing global '{module}.{name}' in a body model file (only numpy, "
                                     "scipy.sparse and chumpy arrays are allowed)")


def _plain(value: Any) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        return value.array()
    if hasattr(value, "toarray"):  # scipy sparse (the official J_regressor)
        return np.asarray(value.toarray())
    return np.asarray(value)


def load_restricted_pickle(path: Path, what: str = "body model") -> dict[str, Any]:
    """A (Python 2 era, latin1) pickle of arrays holding a dict, read through the restricted unpickler:
    numpy arrays, scipy sparse matrices, chumpy arrays and plain builtins only, so no code can run from
    the file (SMPL model files, 3DPW's sequence files). One-line errors."""
    raw = path.read_bytes()
    try:
        data = _BodyModelUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _Refused as exc:
        raise CheckpointError(f"{path}: {str(exc).replace('a body model file', f'a {what} file')}") from None
    except Exception as exc:  # noqa: BLE001 -- truncated or not a pickle at all
        raise InputError(f"{path}: not a readable {what} pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a {what} (the pickle holds a {type(data).__name__}, not a dict)")
    return data


def _load_pickle(path: Path) -> dict[str, Any]:
    return load_restricted_pickle(path, "body model")


def read_body_model(path: str | Path) -> BodyModelData:
    """An SMPL-format model from ``.pkl`` (official files included) or ``.npz``; a one-line error
    naming what is missing or wrong otherwise."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such body model file")
    if p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                data: dict[str, Any] = {k: z[k] for k in z.files}
        except ValueError as exc:
            raise CheckpointError(f"{p}: holds pickled objects, refused ({exc})") from None
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{p}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    else:
        data = _load_pickle(p)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise InputError(f"{p}: not an SMPL-format body model: missing {', '.join(missing)}")
    arr = {k: _plain(data[k]) for k in REQUIRED_KEYS}
    return _validated(arr, str(p))


def _validated(a: dict[str, np.ndarray], where: str) -> BodyModelData:
    v = a["v_template"].astype(np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"{where}: v_template must be [V, 3], got {list(v.shape)}")
    n = v.shape[0]
    kin = np.asarray(a["kintree_table"]).astype(np.int64)
    if kin.ndim != 2 or kin.shape[0] != 2:
        raise InputError(f"{where}: kintree_table must be [2, J], got {list(kin.shape)}")
    parents = kin[0].copy()
    parents[0] = -1  # the official files store 2**32-1 for the root
    j = parents.shape[0]
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, j)):
        raise InputError(f"{where}: kintree_table is not a tree whose parents come before their children")
    shapedirs = a["shapedirs"].astype(np.float64)
    posedirs = a["posedirs"].astype(np.float64)
    jreg = a["J_regressor"].astype(np.float64)
    weights = a["weights"].astype(np.float64)
    faces = np.asarray(a["f"]).astype(np.int64)
    checks = [("shapedirs", shapedirs.ndim == 3 and shapedirs.shape[:2] == (n, 3), f"[{n}, 3, B]"),
              ("posedirs", posedirs.shape == (n, 3, 9 * (j - 1)), f"[{n}, 3, {9 * (j - 1)}]"),
              ("J_regressor", jreg.shape == (j, n), f"[{j}, {n}]"),
              ("weights", weights.shape == (n, j), f"[{n}, {j}]"),
              ("f", faces.ndim == 2 and faces.shape[1] == 3 and faces.size and faces.min() >= 0 and faces.max() < n,
               f"[F, 3] indices below {n}")]
    for name, ok, want in checks:
        if not ok:
            raise InputError(f"{where}: {name} must be {want}, got {list(a[name].shape)}")
    return BodyModelData(v, shapedirs, posedirs, jreg, weights, parents, faces, where)
