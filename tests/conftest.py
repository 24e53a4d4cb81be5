"""Shared fixtures: the real data in ../shared (tests skip without it) and a CLI runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test when this checkout has no ../shared beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_data() -> Path:
    return SAMPLE_DATA


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m facet3d ARGS` in a subprocess; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.pop("FACET3D_PLUGINS", None)
    full_env["NO_COLOR"] = "1"
    full_env["COLUMNS"] = "200"
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "facet3d", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


# Global state a test may not leave changed: the next test (and the user's process, for library
# calls) would silently run differently. Restored either way so one leak does not cascade.
_GUARDED_ENV_PREFIXES = ("FACET3D_", "TRITON_", "OMP_", "MKL_", "CUDA_VISIBLE_DEVICES")


def _guarded_state() -> dict[str, object]:
    state: dict[str, object] = {k: v for k, v in os.environ.items() if k.startswith(_GUARDED_ENV_PREFIXES)}
    # an ignored SIGINT here is inherited by every CLI subprocess a later test starts (Ctrl-C tests)
    state["signal.SIGINT"] = signal.getsignal(signal.SIGINT)
    torch = sys.modules.get("torch")
    if torch is not None:  # only when some test imported it: the startup tests must not pay for it
        state["torch.num_threads"] = torch.get_num_threads()
        state["torch.default_dtype"] = torch.get_default_dtype()
        state["torch.grad_enabled"] = torch.is_grad_enabled()
    return state


@pytest.fixture(autouse=True)
def _no_leaked_global_state(request):
    before = _guarded_state()
    yield
    after = _guarded_state()
    changed = sorted(k for k in set(before) | set(after) if k in before and before.get(k) != after.get(k)
                     or k not in before and not k.startswith("torch."))
    if not changed:
        return
    torch = sys.modules.get("torch")
    for k in changed:  # restore, then fail the test that leaked
        if k == "torch.num_threads":
            torch.set_num_threads(before[k])
        elif k == "torch.default_dtype":
            torch.set_default_dtype(before[k])
        elif k == "torch.grad_enabled":
            torch.set_grad_enabled(before[k])
        elif k == "signal.SIGINT":
            signal.signal(signal.SIGINT, before[k])
        elif k in before:
            os.environ[k] = before[k]
        else:
            os.environ.pop(k, None)
    pytest.fail(f"{request.node.nodeid} leaked global state: {', '.join(changed)} "
                "(use monkeypatch, or restore what the code changed)", pytrace=False)
