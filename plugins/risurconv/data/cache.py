"""Preprocessed datasets cached as one ``.npz`` keyed by the source files and the parameters.

Preprocessing (surface sampling, normal estimation, FPS) of a whole dataset takes minutes; the
result is a handful of arrays, so it is stored once and reused. The key hashes each source file's
path, size and mtime (cheap to stat 12k files, changes whenever a file is rewritten) together with
every preprocessing parameter and a format version, so changing either rebuilds the cache.

Cache folder: ``cache_dir`` if given, else ``$FACET3D_CACHE_DIR``, else ``<data_dir>/.facet3d_cache``
when writable, else ``~/.cache/facet3d/risurconv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from facet3d.core.progress import ProgressFn, tracked

CACHE_VERSION = 1
LAST = {"hit": None, "path": None}  # what the last `cached` call did (tests and log messages read it)


def cache_folder(data_dir: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where cache files go (see the module docstring for the order)."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("FACET3D_CACHE_DIR")
    if env:
        return Path(env)
    if data_dir is not None:
        d = Path(data_dir)
        cand = d / ".facet3d_cache"
        if cand.is_dir() and os.access(cand, os.W_OK) or d.is_dir() and os.access(d, os.W_OK):
            return cand
    return Path.home() / ".cache" / "facet3d" / "risurconv"


def cache_key(kind: str, sources: Iterable[Path], params: dict[str, Any]) -> str:
    """sha1 over (kind, version, params, each source's path/size/mtime)."""
    h = hashlib.sha1()
    h.update(json.dumps({"kind": kind, "v": CACHE_VERSION, "params": params}, sort_keys=True, default=str).encode())
    for s in sources:
        st = Path(s).stat()
        h.update(f"\n{Path(s).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cached(kind: str, sources: Sequence[Path], params: dict[str, Any], build: Callable[[], dict[str, np.ndarray]],
           data_dir: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None,
           use_cache: bool = True) -> dict[str, np.ndarray]:
    """Arrays from the cache if the key matches, else ``build()`` them and store them atomically.

    A cache that cannot be written (read-only disk) is not an error: the arrays are just rebuilt
    next time. Strings (class names) are stored as numpy unicode arrays.
    """
    if not use_cache:
        LAST.update(hit=False, path=None)
        return build()
    folder = cache_folder(data_dir, cache_dir)
    path = folder / f"{kind}-{cache_key(kind, sources, params)[:20]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            LAST.update(hit=True, path=str(path))
            return arrays
        except (OSError, ValueError):  # truncated or foreign file: rebuild it
            pass
    arrays = build()
    LAST.update(hit=False, path=str(path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=folder)
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        LAST.update(path=None)
    return arrays


def map_items(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 0, label: str = "preprocessing",
              progress: ProgressFn | None = None) -> list[Any]:
    """``[fn(x) for x in items]``, in a process pool when ``workers > 1``, one `progress` report per item.

    `fn` must be a module-level function (pickled for the pool). Exceptions are returned, not
    raised, so one bad file does not stop a dataset: callers report and drop them.
    """
    def safe(x: Any) -> Any:
        try:
            return fn(x)
        except Exception as exc:  # noqa: BLE001 - reported by the caller with the file name
            return exc

    def result_of(future: Any) -> Any:
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001
            return exc

    if workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(fn, x) for x in items]
            return [result_of(f) for f in tracked(futures, progress, len(items), label)]
    return [safe(x) for x in tracked(items, progress, len(items), label)]
