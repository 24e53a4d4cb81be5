"""Helpers shared by the kernel ops: input checks, lengths, and whether Triton can run here.

Triton decides at *import* time whether ``@triton.jit`` builds GPU kernels or interpreter
functions (``TRITON_INTERPRET=1``), so "can this Triton kernel run on CPU tensors?" is a property
of the imported kernel object, not of the environment at call time. `triton_refusals` turns a
mismatch into a readable refusal reason for the dispatcher instead of a crash inside Triton.
"""

from __future__ import annotations

from typing import Any

import torch

from facet3d.core.errors import GeometryError, UsageError

# The Triton interpreter runs kernels in numpy, about 10^4x slower than a GPU; it exists to test
# kernels, so the dispatcher only sends it small problems (explicit direct calls are not limited).
INTERPRETER_MAX_WORK = 1 << 22


def is_interpreted(kernel: Any) -> bool:
    """True if `kernel` (a ``@triton.jit`` object) was built by the Triton interpreter."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except Exception:  # noqa: BLE001 - no triton or a build without the interpreter
        return False
    return isinstance(kernel, InterpretedFunction)


def triton_refusals(kernel: Any, tensors: list[torch.Tensor], work: int) -> list[str]:
    """Reasons a Triton `kernel` cannot take these tensors (empty list = it can).

    work: a rough operation count, used to keep the (slow) interpreter to small problems.
    """
    on_cpu = any(t.device.type == "cpu" for t in tensors)
    interp = is_interpreted(kernel)
    if on_cpu and not interp:
        return ["Triton kernels were compiled for GPU (TRITON_INTERPRET=1 was not set before "
                "triton was imported), so they cannot run on CPU tensors"]
    if not on_cpu and interp:
        return ["Triton was imported in interpreter mode (TRITON_INTERPRET=1); it cannot launch on CUDA tensors"]
    if on_cpu and work > INTERPRETER_MAX_WORK:
        return [f"the Triton interpreter is for small test problems (work {work} > {INTERPRETER_MAX_WORK}); "
                "use the torch backend"]
    return []


def check_points(name: str, t: Any, dims: int = 3) -> None:
    """Raise UsageError unless `t` is a floating tensor [B, N, dims]."""
    if not isinstance(t, torch.Tensor):
        raise UsageError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 3 or (dims and t.shape[-1] != dims):
        want = f"[B, N, {dims}]" if dims else "[B, N, C]"
        raise UsageError(f"{name} must have shape {want}, got {list(t.shape)}")
    if not t.is_floating_point():
        raise UsageError(f"{name} must be a floating-point tensor, got {t.dtype}")


def lengths_or_full(lengths: Any, batch: int, size: int, device: torch.device, name: str) -> torch.Tensor:
    """`lengths` as an int64 tensor [B] on `device` (None -> all `size`); checks 0 <= len <= size."""
    if lengths is None:
        return torch.full((batch,), size, dtype=torch.int64, device=device)
    lengths = torch.as_tensor(lengths, device=device).to(torch.int64)
    if lengths.shape != (batch,):
        raise UsageError(f"{name} must have shape [{batch}], got {list(lengths.shape)}")
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > size):
        raise UsageError(f"{name} must lie in [0, {size}], got {lengths.tolist()}")
    return lengths


def need_at_least(lengths: torch.Tensor, count: int, what: str) -> None:
    """GeometryError if some batch element has fewer than `count` points."""
    if lengths.numel() and int(lengths.min()) < count:
        b = int(torch.argmin(lengths))
        raise GeometryError(f"{what}: batch element {b} has only {int(lengths[b])} points, {count} needed")
