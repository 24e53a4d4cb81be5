"""open3d, imported on demand and quiet: its C++ warnings would otherwise print raw on the console.

``o3d = import_open3d()`` instead of ``import open3d``: verbosity drops to errors only (Debug with
FACET3D_DEBUG=1), once; facet3d reports what matters itself, as one line.
"""

from __future__ import annotations

import os
from typing import Any

_QUIETED = {"done": False}


def import_open3d() -> Any:
    """The open3d module, with its console verbosity set for facet3d (errors only)."""
    import open3d as o3d

    if not _QUIETED["done"]:
        level = o3d.utility.VerbosityLevel
        o3d.utility.set_verbosity_level(level.Debug if os.environ.get("FACET3D_DEBUG") == "1" else level.Error)
        _QUIETED["done"] = True
    return o3d
