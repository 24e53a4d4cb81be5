"""Triangle-splatting rasterizer: `rasterize_triangles` (torch reference now; Triton kernel to come).

The reference (`facet3d.kernels.trisplat.reference`) is the source of truth and the CPU path; a
future ``triton_impl.py`` mirrors its signature and is registered as a `Backend` of op
``"trisplat"`` (kernels/backends.py), then this function dispatches through
`facet3d.kernels.dispatch.call` like knn/fps.
"""

from __future__ import annotations

__all__ = ["rasterize_triangles"]


def rasterize_triangles(*args, **kwargs):
    """See `facet3d.kernels.trisplat.reference.rasterize_triangles` (same signature)."""
    from facet3d.kernels.trisplat.reference import rasterize_triangles as ref

    return ref(*args, **kwargs)
