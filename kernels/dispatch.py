"""Kernel backends and the dispatcher that picks one (xformers-style).

Each op (``knn``, ``fps``, ...) has several backends: the torch reference (source of truth,
always available), Triton kernels for CUDA, and fast CPU libraries. Each backend declares the
devices and dtypes it supports, modules it needs and an optional ``check(*args) -> [reasons]``.
`pick` takes the highest-priority backend with no reasons; when a backend is asked for by name
(``backend="triton"`` or ``FACET3D_BACKEND_<OP>=triton``) and refuses, the error says why, and
when none accepts, the error lists every backend and its reasons.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from facet3d.core.errors import BackendError
from facet3d.core.specs import Ref, resolve


@dataclass(frozen=True)
class Backend:
    """One implementation of an op.

    op:        the op name (``"knn"``)
    name:      backend name (``"torch"``, ``"triton"``, ``"scipy"``)
    impl:      the function, or ``"module:attr"``; same signature for every backend of an op
    priority:  higher wins when several accept
    devices:   device types accepted (``"cpu"``, ``"cuda"``)
    dtypes:    torch dtype names accepted (``"float32"``); empty = any
    requires:  importable modules needed (``"triton"``)
    grad:      whether it supports autograd through its outputs
    check:     optional ``check(*args, **kwargs) -> list[str]`` extra refusal reasons
    advise:    optional, same signature: reasons to pass it over in automatic dispatch only
               (e.g. "brute force is faster for this size"); a backend named explicitly still runs
    """

    op: str
    name: str
    impl: Ref
    priority: int = 0
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    grad: bool = True
    check: Ref | None = None
    advise: Ref | None = None  # like check, but performance reasons: ignored when asked for by name
    interpreter_ok: bool = False  # runs on CPU tensors when TRITON_INTERPRET=1

    def not_supported_reasons(self, tensors: Sequence[Any], args: tuple, kwargs: dict, forced: bool = False) -> list[str]:
        reasons = []
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                reasons.append(f"module '{mod}' is not installed")
        ts = [t for t in tensors if hasattr(t, "device")]
        # The interpreter (tests, debugging) takes CPU tensors only when this backend is asked for by
        # name: automatic dispatch on a CPU must keep picking the real CPU paths.
        interp = forced and self.interpreter_ok and os.environ.get("TRITON_INTERPRET") == "1"
        for t in ts:
            if t.device.type not in self.devices and not (interp and t.device.type == "cpu"):
                reasons.append(f"device {t.device.type} not supported (needs {'/'.join(self.devices)})")
                break
        for t in ts:
            if self.dtypes and t.is_floating_point() and str(t.dtype).removeprefix("torch.") not in self.dtypes:
                reasons.append(f"dtype {str(t.dtype).removeprefix('torch.')} not supported (needs {'/'.join(self.dtypes)})")
                break
        if not self.grad and any(getattr(t, "requires_grad", False) for t in ts):
            reasons.append("does not support autograd (an input requires grad)")
        if not reasons and self.check is not None:
            reasons.extend(resolve(self.check)(*args, **kwargs))
        if not reasons and not forced and self.advise is not None:
            reasons.extend(resolve(self.advise)(*args, **kwargs))
        return reasons


def _all_backends(op: str) -> list[Backend]:
    from facet3d.core.plugins import get_plugins

    found = [b for b in get_plugins().kernel_backends().values() if b.op == op]
    return sorted(found, key=lambda b: (-b.priority, b.name))


def pick(op: str, *args: Any, backend: str | None = None, **kwargs: Any) -> tuple[Backend, Callable[..., Any]]:
    """Choose a backend for `op` given its call arguments; returns (backend, function)."""
    backends = _all_backends(op)
    if not backends:
        raise BackendError(f"no backend is registered for op '{op}'")
    backend = backend or os.environ.get(f"FACET3D_BACKEND_{op.upper()}") or None
    tensors = [a for a in list(args) + list(kwargs.values()) if hasattr(a, "device")]
    if backend is not None:
        match = [b for b in backends if b.name == backend]
        if not match:
            names = ", ".join(b.name for b in backends)
            raise BackendError(f"op '{op}' has no backend '{backend}' (have: {names})")
        reasons = match[0].not_supported_reasons(tensors, args, kwargs, forced=True)
        if reasons:
            raise BackendError(f"backend '{backend}' refused op '{op}': {'; '.join(reasons)}")
        return match[0], resolve(match[0].impl)
    refusals = []
    for b in backends:
        reasons = b.not_supported_reasons(tensors, args, kwargs)
        if not reasons:
            return b, resolve(b.impl)
        refusals.append(f"{b.name}: {'; '.join(reasons)}")
    raise BackendError(f"no backend accepts op '{op}' for these inputs: " + " | ".join(refusals))


def explain(op: str, *args: Any, by_name: bool = False, **kwargs: Any) -> list[tuple[str, list[str]]]:
    """Every backend of `op` with its refusal reasons for these inputs (empty list = accepts).

    by_name: the reasons as if each backend were asked for by name (no `advise`, interpreter allowed).
    """
    tensors = [a for a in list(args) + list(kwargs.values()) if hasattr(a, "device")]
    return [(b.name, b.not_supported_reasons(tensors, args, kwargs, forced=by_name)) for b in _all_backends(op)]


def call(op: str, *args: Any, backend: str | None = None, **kwargs: Any) -> Any:
    """Run `op` on the best backend for these inputs."""
    _, fn = pick(op, *args, backend=backend, **kwargs)
    return fn(*args, **kwargs)
