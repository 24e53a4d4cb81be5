"""trisplat: the Triton rasterizer against the torch reference (outputs and gradients).

On CPU the kernels run through the Triton interpreter (the `triton_cpu` fixture), so the scenes are
tiny: 24 x 40 images (two tile rows, three tile columns, both borders partial) and a few dozen
triangles. A CUDA-only test repeats the comparison at a moderate size.
"""

from __future__ import annotations

import pytest
import torch

from facet3d.kernels.trisplat import rasterize_triangles
from facet3d.kernels.trisplat.reference import rasterize_triangles as reference

from facet3d.kernels.trisplat._cases import (H, OUT_KEYS, W, assert_match, crowded_scene,  # noqa: F401
                                            culled_scene, intrinsics,
                                            run, scene)


def triton_fn():
    from facet3d.kernels.trisplat.triton_impl import rasterize_triangles_triton

    return rasterize_triangles_triton


@pytest.mark.parametrize("per_vertex", [False, True])
def test_soft_matches_reference(triton_cpu, per_vertex):
    v, col, op, sg = scene(30, seed=0 if not per_vertex else 3, per_vertex=per_vertex)
    bg = torch.tensor([0.2, 0.5, 0.9])
    ref = run(reference, v, col, op, sg, bg)
    assert ref[0]["alpha"].max() > 0.5 and (ref[0]["alpha"] == 0).any()  # overlaps and empty pixels
    assert_match(ref, run(triton_fn(), v, col, op, sg, bg))


def test_culled_and_behind_camera(triton_cpu):
    v, col, op, sg = culled_scene()  # the first 6 are culled
    ref = run(reference, v, col, op, sg)
    assert (ref[0]["n_touched"][:6] == 0).all()
    out = run(triton_fn(), v, col, op, sg)
    assert_match(ref, out)
    assert (out[1][0][:6] == 0).all()  # culled triangles get exactly zero gradients


def test_crowded_tile_early_stop(triton_cpu):
    v, col, op, sg, bg = crowded_scene()
    ref = run(reference, v, col, op, sg, bg)
    touched = ref[0]["n_touched"] > 0
    assert touched.all() and (ref[0]["max_weight"] == 0).any()  # one is fully hidden behind the early stop
    assert_match(ref, run(triton_fn(), v, col, op, sg, bg))


def test_tile_size_and_channels(triton_cpu):
    # 12 x 12 tiles (not a power of two: padded pixel blocks), 5 channels, sigma as a float
    v, col, op, _ = scene(20, seed=11, C=5)
    bg = torch.linspace(0, 1, 5)
    ref = run(reference, v, col, op, torch.tensor(1.3), bg, tile=12)
    assert_match(ref, run(triton_fn(), v, col, op, torch.tensor(1.3), bg, tile=12))


def test_hard_mode_falls_back_to_reference(triton_cpu):
    v, col, op, sg = scene(12, seed=2, per_vertex=True)
    ref = run(reference, v, col, op, sg, hard=True)
    out = run(triton_fn(), v, col, op, sg, hard=True)
    for k in OUT_KEYS:
        assert torch.equal(ref[0][k], out[0][k])


def test_empty_scene(triton_cpu):
    K = intrinsics()
    out = triton_fn()(torch.zeros(0, 3, 3), K, torch.zeros(0, 3), torch.zeros(0), 1.0, (H, W), [0.1, 0.2, 0.3])
    assert torch.allclose(out["rgb"], torch.tensor([0.1, 0.2, 0.3]).expand(H, W, 3))
    assert (out["alpha"] == 0).all() and out["max_weight"].shape == (0,)


def test_public_api_dispatch(triton_cpu):
    from facet3d.kernels.dispatch import pick

    v, col, op, sg = scene(10, seed=4)
    args = (v, intrinsics(), col, op, sg, (H, W))
    assert pick("trisplat", *args)[0].name != "triton"  # automatic dispatch on CPU: no interpreter
    assert pick("trisplat", *args, backend="triton")[0].name == "triton"
    a = rasterize_triangles(*args, backend="triton")
    b = rasterize_triangles(*args, backend="torch")
    torch.testing.assert_close(a["rgb"], b["rgb"], atol=2e-5, rtol=1e-4)


def test_public_api_cpu_picks_torch(no_interpreter):
    v, col, op, sg = scene(6, seed=4)
    out = rasterize_triangles(v.double(), intrinsics().double(), col.double(), op.double(), 1.0, (8, 8))
    assert out["rgb"].dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("per_vertex", [False, True])
def test_triton_cuda_matches_reference(per_vertex):
    h, w = 180, 320
    v, col, op, sg = scene(3000, seed=9, per_vertex=per_vertex, size=0.15, spread=(1.5, 1.0, 0.5), device="cuda")
    kw = dict(size=(h, w), k=dict(H=h, W=w, f=200.0))
    bg = torch.tensor([0.1, 0.2, 0.3], device="cuda")
    ref = run(reference, v, col, op, sg, bg, **kw)
    assert (ref[0]["alpha"] > 0.5).float().mean() > 0.3
    # the GPU's exp2/log2/division differ from torch's powf in the last bits
    assert_match(ref, run(triton_fn(), v, col, op, sg, bg, **kw), rtol=1e-3, atol=1e-4)
