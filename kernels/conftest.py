"""Kernel tests: run Triton kernels through the Triton interpreter when there is no GPU.

Triton fixes interpreter vs compiled mode when ``@triton.jit`` runs (at import), so
TRITON_INTERPRET must be set before anything imports triton. pytest loads this file before it
imports any test module, but another conftest or plugin may already have imported triton; the
`triton_cpu` fixture checks the mode of the actual kernels and skips with the reason if needed.

With TRITON_INTERPRET=1 a Triton backend takes CPU tensors only when asked for by name
(``backend="triton"``): automatic dispatch elsewhere in the session keeps the real CPU paths.
"""

from __future__ import annotations

import os
import sys

import pytest

_TRITON_PRELOADED = "triton" in sys.modules


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


if not _cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def triton_cpu():
    """Skip unless Triton kernels can run on CPU tensors here (interpreter active); returns 'cpu'."""
    pytest.importorskip("triton")
    from facet3d.kernels._util import is_interpreted
    from facet3d.kernels.knn import triton_impl

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("TRITON_INTERPRET is not 1 (a CUDA GPU is present or it was set to 0)")
    if not is_interpreted(triton_impl._knn_kernel):
        why = "triton was imported before kernels/conftest.py set TRITON_INTERPRET=1" if _TRITON_PRELOADED else \
            "Triton kernels were built in compiled mode"
        pytest.skip(f"Triton interpreter not active: {why}; run with TRITON_INTERPRET=1 in the environment")
    return "cpu"


@pytest.fixture
def no_interpreter(monkeypatch):
    """Dispatch as on a plain CPU machine: Triton backends must refuse CPU tensors."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def pytest_collection_modifyitems(config, items):
    if _cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
