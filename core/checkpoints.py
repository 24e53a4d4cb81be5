"""Safe checkpoint loading and saving. Nothing here runs code from a file.

Loading: ``.safetensors`` through safetensors; anything else through
``torch.load(weights_only=True)``. Official checkpoints of some methods (e.g. RISurConv's
``best_model.pth``) store numpy float64 accuracy scalars beside the weights, which plain
``weights_only=True`` refuses; ``allow_numpy_scalars=True`` allows exactly the numpy types such a
scalar needs (never arbitrary globals). Saving is safetensors, written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from facet3d.core.errors import CheckpointError


def _numpy_scalar_globals() -> list[Any]:
    import numpy as np

    allowed: list[Any] = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)),
                          type(np.dtype(np.int64)), type(np.dtype(np.int32))]
    # the reconstructor a pickled numpy scalar calls; its module moved in numpy 2
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed.append(scalar)
    return allowed


def load_checkpoint(path: str | os.PathLike[str], allow_numpy_scalars: bool = False) -> Any:
    """Load a checkpoint file (a state dict, or a dict holding one) onto the CPU, safely.

    path: ``*.safetensors`` or a torch.save file
    allow_numpy_scalars: also accept numpy scalar values (official training dumps) — nothing else
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p}: not a valid safetensors file ({exc})") from None
    import pickle

    import torch

    try:
        if allow_numpy_scalars:
            with torch.serialization.safe_globals(_numpy_scalar_globals()):
                return torch.load(str(p), map_location="cpu", weights_only=True)
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling refused"
        raise CheckpointError(f"{p}: refused to load (it holds objects other than tensors: {first[:200]})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None


def state_dict_of(obj: Any, keys: tuple[str, ...] = ("model_state_dict", "state_dict", "model")) -> dict[str, Any]:
    """The state dict inside a loaded checkpoint (a bare state dict, or one under a usual key)."""
    if isinstance(obj, dict):
        for k in keys:
            if k in obj and isinstance(obj[k], dict):
                return obj[k]
        if all(hasattr(v, "shape") for v in obj.values()):
            return obj
    raise CheckpointError(f"checkpoint holds no state dict (looked for a tensor dict or keys {', '.join(keys)})")


def save_safetensors(state_dict: dict[str, Any], path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Path:
    """Save tensors as safetensors (metadata values JSON-encoded), atomically."""
    from safetensors.torch import save_file

    from facet3d.core.io.api import atomic_output

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def check_state_dict(expected: Mapping[str, Any], state_dict: Mapping[str, Any], where: str, what: str) -> None:
    """One-line CheckpointError unless ``state_dict`` has exactly the keys and shapes of ``expected``.

    expected: the model's ``state_dict()`` (or any name -> tensor / shape mapping)
    where: the file, named first in the message; what: the architecture, e.g. "this VGGT architecture"
    The message counts and names the first missing and unexpected keys, or the first shape that differs.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{where}: not a checkpoint of {what}: keys {'; '.join(parts)}")
    shape = lambda v: tuple(getattr(v, "shape", v))  # noqa: E731
    bad = [k for k, v in expected.items() if shape(state_dict[k]) != shape(v)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{where}: not a checkpoint of {what}: {len(bad)} tensor shape(s) differ "
                              f"(first: {k} {shape(state_dict[k])}, the model {shape(expected[k])})")


# -- facet3d's own format: MODEL.safetensors (the tensors) + MODEL.json (the config that builds it)

def sidecar_of(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar beside a ``.safetensors`` checkpoint."""
    return Path(path).with_suffix(".json")


def save_with_sidecar(state_dict: dict[str, Any], path: str | os.PathLike[str], info: Mapping[str, Any],
                      metadata: dict[str, Any] | None = None) -> Path:
    """``path`` (``.safetensors`` appended when missing) and its ``.json`` sidecar ``info``, each atomic.

    The tensors are written before the sidecar, which names their config. Returns the tensors' path.
    """
    from facet3d.core.io.api import atomic_output

    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    save_safetensors(state_dict, p, metadata=metadata)
    with atomic_output(sidecar_of(p)) as tmp:
        tmp.write_text(json.dumps(dict(info), indent=1, sort_keys=True, default=str))
    return p


def read_sidecar(path: str | os.PathLike[str], what: str) -> tuple[Path, dict[str, Any]]:
    """``MODEL.safetensors`` (or its ``.json``) -> (tensors path, sidecar with a ``"config"`` dict).

    what: the model in words for the messages, e.g. ``"RISurConv"``. One-line CheckpointError for a
    missing file or sidecar, or a sidecar without a config.
    """
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file" if not p.exists() else f"{p}: is not a file")
    side = sidecar_of(p)
    if not side.is_file():
        raise CheckpointError(f"{p}: missing its sidecar {side.name} (the {what} config)")
    try:
        info = json.loads(side.read_text())
        info["config"] = dict(info["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{side}: not a {what} sidecar ({type(exc).__name__}: {exc})") from None
    return p, info


def load_run_state(out: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """What a resumable training run in folder ``out`` left: (last weights, ``train_state.pt`` (optimizer,
    epoch, RNG, best so far; loaded with ``weights_only=True``), the ``log.json`` rows before the next
    epoch). One-line UsageError when there is nothing to resume, CheckpointError for a bad state file."""
    import torch

    from facet3d.core.errors import UsageError

    root = Path(out)
    state_path = root / "train_state.pt"
    if not state_path.is_file() or not (root / "last_model.safetensors").is_file():
        raise UsageError(f"--resume: {root} holds no train_state.pt / last_model.safetensors to resume from")
    weights = state_dict_of(load_checkpoint(root / "last_model.safetensors"))
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad state file
        raise CheckpointError(f"{state_path}: cannot load ({type(exc).__name__}: {exc})") from None
    rows: list[dict[str, Any]] = []
    if (root / "log.json").is_file():
        rows = [r for r in json.loads((root / "log.json").read_text()) if r["epoch"] <= int(state["epoch"])]
    return weights, state, rows
