"""Up-front resource checks: refuse a job that cannot fit before it starts, saying the estimate.

Library code calls `require_memory(nbytes, what)` once it knows the sizes (points to sample, image
pixels, TSDF voxels); the CLI turns the `ResourceError` into one line.
"""

from __future__ import annotations

import os

from facet3d.core.errors import ResourceError

__all__ = ["available_memory", "require_memory", "human_bytes"]


def available_memory() -> int:
    """Bytes of memory the machine can give now (MemAvailable on Linux; free pages elsewhere).

    ``FACET3D_MEMORY_LIMIT`` (bytes, or with a K/M/G suffix) caps it: for cluster jobs with a
    memory limit the kernel does not report, and for tests.
    """
    limit = os.environ.get("FACET3D_MEMORY_LIMIT")
    found = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = 1 << 62  # unknown: do not refuse
    if limit:
        found = min(found, _parse_bytes(limit))
    return int(found)


def _parse_bytes(text: str) -> int:
    text = text.strip().upper().rstrip("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def require_memory(nbytes: float, what: str) -> None:
    """Raise `ResourceError` when ``nbytes`` (an estimate of the job's peak) exceeds what is available.

    what: the job in words, e.g. ``"sampling 1000000000 points"``; the message names it and both sizes.
    """
    have = available_memory()
    if nbytes > have:
        raise ResourceError(f"{what} needs about {human_bytes(nbytes)} of memory, "
                            f"but only {human_bytes(have)} is available")
