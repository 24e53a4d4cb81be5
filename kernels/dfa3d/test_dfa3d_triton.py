"""DFA3D: the Triton kernels against the fused torch reference (output and all four gradients).

On CPU the kernels run through the Triton interpreter (the `triton_cpu` fixture, set up by
kernels/conftest.py before triton is imported), so sizes are tiny: a few queries over three levels
(one of them 2 x 1), 5 channels and 5 depth bins (not powers of two: masked tiles), and
locations reaching past every border in x, y and z. CUDA-only tests repeat the comparison at a
moderate size and cover float16 / bfloat16.
"""

from __future__ import annotations

import pytest
import torch

from facet3d.kernels.dfa3d import deformable_attention_2d, deformable_attention_3d
from facet3d.kernels.dfa3d.reference import dfa3d_torch
from facet3d.kernels.dfa3d.test_dfa3d_reference import _inputs

NAMES = ("value", "depth_dist", "sampling_locations", "attention_weights")


def triton_fn():
    from facet3d.kernels.dfa3d.triton_impl import dfa3d_triton

    return dfa3d_triton


def small(device="cpu", dtype=torch.float32, **kw):
    kw = {"B": 2, "M": 2, "C": 5, "D": 5, "Nq": 6, "P": 2, "spread": 0.3, **kw}
    return [t.to(device, dtype) if t.is_floating_point() else t.to(device) for t in _inputs(dtype=torch.float64, **kw)]


def run(fn, args, seed=1, **options):
    """Output and the gradients of the four float inputs under a random linear loss."""
    value, dist, shapes, starts, loc, attn = args
    leaves = [t.detach().clone().requires_grad_() for t in (value, dist, loc, attn)]
    out = fn(leaves[0], leaves[1], shapes, starts, leaves[2], leaves[3], **options)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).to(out)
    return out, torch.autograd.grad((out * w).sum(), leaves)


def assert_close(ref, got, rtol=1e-5):
    (o0, g0), (o1, g1) = ref, got
    torch.testing.assert_close(o1, o0, rtol=rtol, atol=rtol * o0.abs().max().item())
    for name, a, b in zip(NAMES, g0, g1):
        assert b.dtype == a.dtype and b.shape == a.shape, name
        assert torch.isfinite(b).all(), name
        err = ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
        assert err < rtol, f"{name}: max error {err:.2e} relative to the largest gradient"


@pytest.mark.parametrize("case", ["three-levels", "one-level-one-point"])
def test_forward_and_every_gradient_match_reference(triton_cpu, case):
    args = small() if case == "three-levels" else small(levels=((5, 7),), P=1, M=3, C=4, D=3, seed=4)
    ref = run(dfa3d_torch, args)
    assert ref[0].abs().max() > 0.05 and (ref[1][2][..., 2] != 0).any()  # not trivial; z has a gradient
    assert_close(ref, run(triton_fn(), args))


def test_locations_far_outside_and_depth_outside(triton_cpu):
    args = small(levels=((4, 6), (2, 3)), Nq=5)
    loc = args[4].clone()
    loc[:, 0] = torch.tensor([5.0, 0.5, 0.5])  # x far right of every level: the query is zero
    loc[:, 1] = torch.tensor([-1e6, 1e6, 0.5])  # huge coordinates must not overflow the int conversion
    loc[:, 2, ..., 2] = -0.2  # depth before the first bin: every corner contributes zero
    loc[:, 3, ..., 2] = 1.02  # past the last bin centre: only the last bin (weight 0.4), the next is outside
    loc[:, 4, ..., 2] = 0.05  # between -0.5 and 0 in bin units: only bin 0
    args[4] = loc
    ref = run(dfa3d_torch, args)
    assert torch.count_nonzero(ref[0][:, :3]) == 0 and ref[0][:, 3:].abs().max() > 0
    got = run(triton_fn(), args)
    assert torch.count_nonzero(got[0][:, :3]) == 0
    assert_close(ref, got)


def test_noncontiguous_inputs_and_dispatch_options(triton_cpu):
    value, dist, shapes, starts, loc, attn = small(Nq=4, levels=((3, 4), (2, 2)))
    # views with permuted strides (the kernel copies them contiguous)
    value_nc = value.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
    loc_nc = loc.permute(5, 0, 1, 2, 3, 4).contiguous().permute(1, 2, 3, 4, 5, 0)
    assert not value_nc.is_contiguous() and not loc_nc.is_contiguous()
    args = [value_nc, dist, shapes.to(torch.int32), starts, loc_nc, attn]
    ref = run(dfa3d_torch, [value, dist, shapes, starts, loc, attn])
    # the same options reach either backend: chunk (torch only) and deterministic (Triton only)
    got = run(lambda *a, **k: deformable_attention_3d(*a, backend="triton", **k), args, chunk=2)
    assert_close(ref, got)
    torch_opts = run(lambda *a, **k: deformable_attention_3d(*a, backend="torch", **k), args, deterministic=True)
    assert_close(ref, torch_opts, rtol=1e-6)


def test_2d_function_is_the_d1_case(triton_cpu):
    value, _, shapes3, starts, loc3, attn = small(Nq=5, D=1)
    shapes, loc = shapes3[:, :2], loc3[..., :2].clone()

    def grads(backend):
        v, lo, a = (t.clone().requires_grad_() for t in (value, loc, attn))
        out = deformable_attention_2d(v, shapes, starts, lo, a, backend=backend)
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
        return out, torch.autograd.grad((out * w).sum(), (v, lo, a))

    (o0, g0), (o1, g1) = grads("torch"), grads("triton")
    torch.testing.assert_close(o1, o0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * a.abs().max().item())


def test_deterministic_backward_is_bit_identical_and_matches(triton_cpu):
    args = small(levels=((4, 5), (2, 2)), Nq=5)
    ref = run(dfa3d_torch, args)
    first = run(triton_fn(), args, deterministic=True)
    second = run(triton_fn(), args, deterministic=True)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))
    assert_close(ref, first)


def test_deterministic_follows_torch_flag(triton_cpu, monkeypatch):
    from facet3d.kernels.dfa3d import triton_impl

    seen = []
    real = triton_impl._deterministic_scatter
    monkeypatch.setattr(triton_impl, "_deterministic_scatter", lambda *a: seen.append(1) or real(*a))
    args = small(levels=((3, 3),), Nq=2, P=1, B=1, M=1)
    run(triton_fn(), args)
    assert not seen  # atomics by default
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    run(triton_fn(), args)
    assert seen


def test_half_precision_interpreter(triton_cpu):
    args32 = small(levels=((4, 5), (2, 2)), Nq=3)
    args16 = [t.half() if t.is_floating_point() else t for t in args32]
    out, grads = run(triton_fn(), args16)
    assert out.dtype == torch.float16 and all(g.dtype == torch.float16 for g in grads)
    ref = dfa3d_torch(*args32)
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=2e-3)


def test_empty_query_set(triton_cpu):
    value, dist, shapes, starts, loc, attn = small()
    out = triton_fn()(value, dist, shapes, starts, loc[:, :0], attn[:, :0])
    assert out.shape == (2, 0, 2 * 5)


def test_check_refusals():
    pytest.importorskip("triton")
    from facet3d.kernels.dfa3d.triton_impl import check

    value, dist, shapes, starts, loc, attn = small()
    bad_d = shapes.clone()
    bad_d[1, 2] = 4
    assert any("spatial_shapes[1] has D=4 but depth_dist has D=5" in r
               for r in check(value, dist, bad_d, starts, loc, attn))
    big = shapes.clone()
    big[0, 0] = 100
    assert any("does not lie inside S=" in r for r in check(value, dist, big, starts, loc, attn))
    assert any("float64" in r for r in check(value.double(), dist, shapes, starts, loc, attn))
    many_loc, many_attn = loc[:, :1].expand(2, 50000, *loc.shape[2:]), attn[:, :1].expand(2, 50000, *attn.shape[2:])
    assert any("small test problems" in r or "compiled for GPU" in r
               for r in check(value, dist, shapes, starts, many_loc, many_attn))


# ---- CUDA ------------------------------------------------------------------------------------

def cuda_args(dtype=torch.float32, seed=0):
    return small("cuda", dtype, B=2, M=4, C=32, D=24, Nq=300, P=4, levels=((40, 50), (20, 25), (10, 13), (5, 7)),
                 seed=seed)


@pytest.mark.cuda
def test_cuda_forward_and_gradients_fp32():
    args = cuda_args()
    assert_close(run(dfa3d_torch, args), run(triton_fn(), args), rtol=1e-4)
    assert_close(run(dfa3d_torch, args), run(triton_fn(), args, deterministic=True), rtol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_forward_and_gradients(dtype):
    args32 = cuda_args()
    args = [t.to(dtype) if t.is_floating_point() else t for t in args32]
    out, grads = run(triton_fn(), args)
    ref_out, ref_grads = run(dfa3d_torch, args32)
    tol = 2e-2 if dtype == torch.float16 else 6e-2
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    err = ((out.float() - ref_out).abs().max() / ref_out.abs().max()).item()
    assert err < tol, err
    for name, a, b in zip(NAMES, ref_grads, grads):
        e = ((a - b.float()).abs().max() / a.abs().max()).item()
        assert e < 5 * tol, f"{name}: {e:.2e}"


@pytest.mark.cuda
def test_cuda_deterministic_is_bit_identical():
    args = cuda_args(seed=2)
    first, second = run(triton_fn(), args, deterministic=True), run(triton_fn(), args, deterministic=True)
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))


# ---- compiled mode without a GPU ---------------------------------------------------------------

_COMPILE = r'''
import json, os, sys
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from facet3d.kernels.dfa3d import triton_impl as ti

def build(fn, types, cx):
    sig = {n: types.get(n, "i32") for n in fn.arg_names}
    sig.update({k: "constexpr" for k in cx})
    src = ASTSource(fn, sig, constexprs={(fn.arg_names.index(k),): v for k, v in cx.items()})
    triton.compile(src, target=GPUTarget("cuda", 90, 32), options=ti._LAUNCH)

done = []
for t in sys.argv[1:]:
    p = dict(v_ptr="*" + t, d_ptr="*" + t, shapes_ptr="*i64", starts_ptr="*i64", loc_ptr="*" + t, attn_ptr="*" + t,
             out_ptr="*" + t, go_ptr="*" + t, gv_ptr="*fp32", gd_ptr="*fp32", gloc_ptr="*fp32", gattn_ptr="*fp32",
             key_ptr="*i32", perm_ptr="*i64", off_ptr="*i64")
    build(ti._dfa3d_fwd, p, dict(BLOCK_Q=8, BLOCK_C=32))
    build(ti._dfa3d_fwd, p, dict(BLOCK_Q=64, BLOCK_C=4, D=1))  # the 2D case: D specialised to 1
    for scatter in (True, False):
        build(ti._dfa3d_bwd, p, dict(BLOCK_Q=4, BLOCK_C=32, SCATTER=scatter, NEED_V=True, NEED_D=scatter))
    build(ti._dfa3d_keys, p, dict(BLOCK=256))
    build(ti._dfa3d_bwd_rows, p, dict(BLOCK_J=16, BLOCK_C=32, BLOCK_D=128, NEED_V=True, NEED_D=True))
    done.append(t)
print(json.dumps(done))
'''


def test_kernels_compile_for_a_gpu_without_one():
    """The interpreter accepts code the compiler rejects (e.g. a reassigned constexpr): build every
    kernel variant for sm_90 (Triton's bundled ptxas) in a process with TRITON_INTERPRET unset."""
    import json
    import os
    import subprocess
    import sys

    triton = pytest.importorskip("triton")
    if not os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")):
        pytest.skip("this triton build has no bundled ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE, "fp32", "bf16"], capture_output=True, text=True, env=env,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["fp32", "bf16"]
