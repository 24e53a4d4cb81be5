"""Triangle-splatting rasterizer: `rasterize_triangles` through the backend dispatcher.

Backends (`BACKENDS` below, op ``"trisplat"``): ``triton`` (CUDA, float32; soft mode
in Triton kernels, hard mode through the reference), ``numba`` (CPU, float32; soft and hard mode
compiled for the CPU, `facet3d.kernels.trisplat.numba_impl`) and ``torch``
(`facet3d.kernels.trisplat.reference`, the source of truth, any device and dtype).
"""

from __future__ import annotations

from torch import Tensor

from facet3d.core.specs import Backend
from facet3d.kernels.trisplat.reference import CHUNK_ELEMS

__all__ = ["rasterize_triangles", "BACKENDS"]

_M = "facet3d.kernels.trisplat"

# The dispatcher's records for this op: triton (CUDA) 100 > numba (CPU) 50 > torch reference 0.
BACKENDS = [
    Backend(op="trisplat", name="triton", impl=f"{_M}.triton_impl:rasterize_triangles_triton", priority=100,
            devices=("cuda",), dtypes=("float32",), requires=("triton",), check=f"{_M}.triton_impl:check",
            interpreter_ok=True),
    Backend(op="trisplat", name="numba", impl=f"{_M}.numba_impl:rasterize_triangles_numba", priority=50,
            devices=("cpu",), dtypes=("float32",), requires=("numba",)),
    Backend(op="trisplat", name="torch", impl=f"{_M}.reference:rasterize_triangles", priority=0),
]


def rasterize_triangles(verts_cam: Tensor, K: Tensor, colors: Tensor, opacity: Tensor, sigma,
                        image_size: tuple[int, int], background=None, tile: int = 16, hard: bool = False,
                        near: float = 0.2, min_size: float | None = None, max_size: float = 1600.0,
                        min_inradius: float | None = None, chunk_elems: int = CHUNK_ELEMS,
                        backend: str | None = None) -> dict[str, Tensor]:
    """Render one view of N triangles; see `facet3d.kernels.trisplat.reference.rasterize_triangles`.

    verts_cam: Tensor   # [N, 3, 3] camera-space vertices
    K: Tensor           # [3, 3] intrinsics
    colors: Tensor      # [N, C] or [N, 3, C] per-vertex
    opacity: Tensor     # [N]
    sigma: Tensor|float # [N] or scalar
    backend: str        # force "torch" / "numba" / "triton" (else FACET3D_BACKEND_TRISPLAT or the best one)
    returns dict: rgb, alpha, depth, depth_acc, normal, max_weight, n_touched (as the reference)
    """
    from facet3d.kernels.dispatch import call

    # every tensor is passed positionally so the dispatcher's device/dtype checks see it
    return call("trisplat", verts_cam, K, colors, opacity, sigma, image_size, background, tile, hard, near,
                min_size, max_size, min_inradius, chunk_elems, backend=backend)
