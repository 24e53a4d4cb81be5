"""The built-in kernel backends, returned by the geometry plugin's ``facet3d_kernel_backends``.

Ops: ``knn`` (triton, scipy, torch), ``fps`` (triton, open3d, torch), ``gather`` (triton, torch)
and ``trisplat`` (the triangle-splatting rasterizer: triton, torch).

Implementations are ``"module:attr"`` strings so that listing backends imports neither triton
nor scipy. Priorities: triton (GPU) > scipy (CPU, large clouds) > torch reference (anywhere).
Triton backends set ``interpreter_ok`` so tests can run them on CPU under TRITON_INTERPRET=1;
their ``check`` refuses when the imported kernels do not match the tensors' device.
"""

from __future__ import annotations

from facet3d.kernels.dispatch import Backend

_K = "facet3d.kernels"


def builtin_backends() -> list[Backend]:
    """Every built-in backend of the ops knn, fps, gather and trisplat."""
    triton = dict(devices=("cuda",), requires=("triton",), interpreter_ok=True)
    return [
        # knn(query [B,M,3], points [B,N,3], k, query_lengths, point_lengths) -> (dists, idx)
        Backend(op="knn", name="triton", impl=f"{_K}.knn.triton_impl:knn_triton", priority=100,
                dtypes=("float32",), check=f"{_K}.knn.triton_impl:check", **triton),
        Backend(op="knn", name="scipy", impl=f"{_K}.knn.scipy_impl:knn_scipy", priority=50,
                devices=("cpu",), dtypes=("float32", "float64"), requires=("scipy",),
                advise=f"{_K}.knn.scipy_impl:advise"),
        Backend(op="knn", name="torch", impl=f"{_K}.knn.reference:knn_torch", priority=0),
        # fps(points [B,N,3], n, lengths [B], start_idx [B]) -> idx [B, n]
        Backend(op="fps", name="triton", impl=f"{_K}.fps.triton_impl:fps_triton", priority=100,
                dtypes=("float32",), check=f"{_K}.fps.triton_impl:check", **triton),
        Backend(op="fps", name="open3d", impl=f"{_K}.fps.open3d_impl:fps_open3d", priority=50,
                devices=("cpu",), requires=("open3d",), check=f"{_K}.fps.open3d_impl:check"),
        Backend(op="fps", name="torch", impl=f"{_K}.fps.reference:fps_torch", priority=0),
        # gather(features [B,N,C], idx [B,M,K]) -> [B,M,K,C]
        Backend(op="gather", name="triton", impl=f"{_K}.gather.triton_impl:gather_triton", priority=100,
                dtypes=("float32", "float16", "bfloat16"), check=f"{_K}.gather.triton_impl:check", **triton),
        Backend(op="gather", name="torch", impl=f"{_K}.gather.reference:gather_torch", priority=0),
        # trisplat(verts_cam [N,3,3], K [3,3], colors [N,C]|[N,3,C], opacity [N], sigma, image_size, ...) -> dict
        Backend(op="trisplat", name="triton", impl=f"{_K}.trisplat.triton_impl:rasterize_triangles_triton",
                priority=100, dtypes=("float32",), check=f"{_K}.trisplat.triton_impl:check", **triton),
        Backend(op="trisplat", name="torch", impl=f"{_K}.trisplat.reference:rasterize_triangles", priority=0),
    ]
