"""Kernel backends and the dispatcher that picks one (xformers-style).

Each op (``knn``, ``fps``, ...) has several backends: the torch reference (source of truth,
always available), Triton kernels for CUDA, and fast CPU libraries. Each backend declares the
devices and dtypes it supports, modules it needs and an optional ``check(*args) -> [reasons]``.
`pick` takes the highest-priority backend with no reasons; when a backend is asked for by name
(``backend="triton"`` or ``FACET3D_BACKEND_<OP>=triton``) and refuses, the error says why, and
when none accepts, the error lists every backend and its reasons.

Built-in backends are declared beside each op's code (``BACKENDS`` in ``kernels/<op>/__init__.py``)
and need no plugin. Third-party backends come from the ``facet3d_kernel_backends`` hook and take
part once the plugins are loaded (the CLI always loads them; in Python
``facet3d.core.plugins.get_plugins()``): a plain ``knn()`` call never imports the installed
plugins, unless the op or the backend asked for by name is not among the built-ins.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
from typing import Any, Callable

from facet3d.core.errors import BackendError, PluginError
from facet3d.core.specs import Backend, resolve

__all__ = ["Backend", "backends", "builtin_backends", "builtin_ops", "call", "explain", "pick"]


@functools.lru_cache(maxsize=1)
def builtin_ops() -> tuple[str, ...]:
    """The ops facet3d ships: every sub-package of facet3d.kernels (each declares ``BACKENDS``)."""
    import facet3d.kernels as kernels

    return tuple(sorted(m.name for m in pkgutil.iter_modules(kernels.__path__) if m.ispkg))


def builtin_backends(op: str) -> list[Backend]:
    """The backends facet3d ships for `op`: ``facet3d.kernels.<op>.BACKENDS``, beside the op's code."""
    if op not in builtin_ops():
        return []
    return list(importlib.import_module(f"facet3d.kernels.{op}").BACKENDS)


def _plugin_backends(op: str, load: bool) -> list[tuple[Backend, str]]:
    """(backend, plugin name) of `op` from the ``facet3d_kernel_backends`` hook.

    Only when plugins are already loaded (the CLI loads them) unless `load`: a plain kernel call
    must not import every installed plugin.
    """
    from facet3d.core import plugins

    loaded = plugins.get_plugins() if load else plugins.loaded_plugins()
    if loaded is None:
        return []
    hook = "facet3d_kernel_backends"
    return [(b, loaded.owner(hook, key)) for key, b in loaded.kernel_backends().items() if b.op == op]


def backends(op: str, load_plugins: bool = False) -> list[Backend]:
    """Every backend of `op`, best first: the built-ins plus those of loaded plugins."""
    found = builtin_backends(op)
    builtin_names = {b.name for b in found}
    for b, owner in _plugin_backends(op, load_plugins):
        if b.name in builtin_names:  # names are global, as for formats: say who, do not pick one
            raise PluginError(f"facet3d_kernel_backends: '{op}/{b.name}' is built into facet3d.kernels "
                              f"and registered again by '{owner}'")
        found.append(b)
    return sorted(found, key=lambda b: (-b.priority, b.name))


def pick(op: str, *args: Any, backend: str | None = None, **kwargs: Any) -> tuple[Backend, Callable[..., Any]]:
    """Choose a backend for `op` given its call arguments; returns (backend, function)."""
    backend = backend or os.environ.get(f"FACET3D_BACKEND_{op.upper()}") or None
    found = backends(op)
    if not found or (backend is not None and all(b.name != backend for b in found)):
        found = backends(op, load_plugins=True)  # an op or name facet3d lacks may be a plugin's
    if not found:
        raise BackendError(f"no backend is registered for op '{op}'")
    tensors = [a for a in list(args) + list(kwargs.values()) if hasattr(a, "device")]
    if backend is not None:
        match = [b for b in found if b.name == backend]
        if not match:
            names = ", ".join(b.name for b in found)
            raise BackendError(f"op '{op}' has no backend '{backend}' (have: {names})")
        reasons = match[0].not_supported_reasons(tensors, args, kwargs, forced=True)
        if reasons:
            raise BackendError(f"backend '{backend}' refused op '{op}': {'; '.join(reasons)}")
        return match[0], resolve(match[0].impl)
    refusals = []
    for b in found:
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
    return [(b.name, b.not_supported_reasons(tensors, args, kwargs, forced=by_name)) for b in backends(op)]


def call(op: str, *args: Any, backend: str | None = None, **kwargs: Any) -> Any:
    """Run `op` on the best backend for these inputs."""
    _, fn = pick(op, *args, backend=backend, **kwargs)
    return fn(*args, **kwargs)
