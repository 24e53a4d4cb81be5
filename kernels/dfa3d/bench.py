"""`facet3d bench dfa3d`: memory of the fused form vs the materialised volume, the price of depth,
and (CUDA) the Triton kernels vs the torch reference.

Defaults are the BEVFormer-base + DFA3D reference sizes: 6 views, 4 levels (116x200, 58x100, 29x50,
15x25), 8 heads x 32 channels, 112 depth bins, 50x50 BEV queries x 4 heights = 10000 queries,
8 points; ``--set`` changes any of them (``levels=29x50,15x25``, ``bev=20``, ...).

(a) Peak memory, forward (no grad), fused reference vs `naive.dfa3d_naive`. Measured in a fresh
    Python subprocess (tracemalloc does not see torch's CPU allocator): glibc is told to serve
    every allocation >= 64 KiB by mmap (``MALLOC_MMAP_THRESHOLD_``) so freed tensors leave the
    resident set; the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) after the inputs
    are built, and the op's peak is VmHWM minus the resident size before the call: the extra
    memory the op needs beyond its inputs, output included. At the reference sizes the naive volume
    cannot be allocated (~21 GB), so its peak is modelled from naive.py's allocations, tensor by
    tensor, and the model is checked against a real measurement at a reduced size
    (``check_views`` / ``check_levels`` / ``check_queries``).
(b) Time of the fused reference (forward) beside `deformable_attention_2d` (the same code at
    D = 1) and Deformable DETR's grid_sample formula on the same sizes: the price of depth.
(c) CUDA: Triton vs the torch reference, forward and forward + backward (all four gradients),
    atomic and deterministic backward; peak CUDA memory of both forwards.
MB in the results is 2^20 bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import torch

from facet3d.core.bench import BenchResult, Timing, time_repeats

BASELINE = "torch-reference"
MB = 1 << 20


def parse_levels(levels: Any) -> list[tuple[int, int]]:
    """'116x200,58x100' (or a list of pairs) -> [(116, 200), (58, 100)]."""
    if isinstance(levels, str):
        pairs = [item.lower().split("x") for item in levels.split(",") if item.strip()]
        return [(int(h), int(w)) for h, w in pairs]
    return [(int(h), int(w)) for h, w in levels]


def make_inputs(views: int, levels: list[tuple[int, int]], heads: int, channels: int, bins: int, queries: int,
                points: int, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple:
    """The six DFA3D arguments: random features, softmaxed depth and attention, locations in
    [-0.05, 1.05] (a few samples fall off the maps, as projected BEV points do)."""
    g = torch.Generator(device=device).manual_seed(seed)
    sizes = [h * w for h, w in levels]
    S, L = sum(sizes), len(levels)
    shapes = torch.tensor([[h, w, bins] for h, w in levels], dtype=torch.int64, device=device)
    starts = torch.tensor([0] + sizes[:-1], dtype=torch.int64, device=device).cumsum(0)
    value = torch.randn(views, S, heads, channels, generator=g, device=device, dtype=dtype)
    dist = torch.randn(views, S, heads, bins, generator=g, device=device, dtype=dtype).softmax(-1)
    loc = torch.rand(views, queries, heads, L, points, 3, generator=g, device=device, dtype=dtype) * 1.1 - 0.05
    attn = torch.rand(views, queries, heads, L * points, generator=g, device=device, dtype=dtype)
    attn = attn.softmax(-1).reshape(views, queries, heads, L, points)
    return value, dist, shapes, starts, loc, attn


def volume_bytes(views: int, levels: list[tuple[int, int]], heads: int, channels: int, bins: int,
                 itemsize: int = 4) -> int:
    """The whole materialised volume F = V x Dist, every level (what autograd keeps for backward)."""
    return views * sum(h * w for h, w in levels) * heads * channels * bins * itemsize


def naive_peak_bytes(views: int, levels: list[tuple[int, int]], heads: int, channels: int, bins: int,
                     queries: int, points: int, itemsize: int = 4) -> int:
    """Peak extra memory of `naive.dfa3d_naive`'s forward, from its allocations in program order.

    Per level: the volume (allocated before the previous level's is released), the grid (a strided
    copy, 2x, -1), grid_sample's output, the attention copy, then ``out + sampled * a`` (a
    temporary and the new sum while the old sum lives); the final sum over points and its copy.
    """
    BM = views * heads
    O = BM * channels * queries * points * itemsize  # out / sampled / a product
    G = BM * queries * points * 3 * itemsize  # grid
    A = BM * queries * points * itemsize  # attention slice copy
    peak, prev_vol, prev_sampled, prev_grid, prev_a = O, 0, 0, 0, 0
    for h, w in levels:
        vol = BM * channels * bins * h * w * itemsize
        peak = max(peak, O + prev_vol + vol + prev_sampled + prev_grid + prev_a)
        peak = max(peak, O + vol + prev_sampled + prev_grid + prev_a + 2 * G)
        peak = max(peak, O + vol + prev_sampled + prev_a + G + O)
        peak = max(peak, O + vol + O + G + prev_a + A)
        peak = max(peak, O + vol + O + G + A + 2 * O)
        prev_vol, prev_sampled, prev_grid, prev_a = vol, O, G, A
    out_c = O // max(points, 1)
    return max(peak, O + prev_vol + prev_sampled + prev_grid + prev_a + 2 * out_c)


# ---- peak memory in a subprocess ------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure_child(specs: list[dict]) -> list[dict]:
    """In the subprocess: build each spec's inputs, reset the peak mark, run the op, read the peak."""
    import gc
    import resource

    from facet3d.kernels.dfa3d.naive import dfa3d_naive
    from facet3d.kernels.dfa3d.reference import dfa3d_torch

    results = []
    for spec in specs:
        args = make_inputs(spec["views"], parse_levels(spec["levels"]), spec["heads"], spec["channels"], spec["bins"],
                           spec["queries"], spec["points"], seed=spec.get("seed", 0))
        fn = dfa3d_naive if spec["op"] == "naive" else dfa3d_torch
        gc.collect()
        before = _rss()
        reset = _reset_hwm()
        with torch.no_grad():
            out = fn(*args)
        peak = _hwm() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        results.append({**spec, "peak_bytes": max(0, peak - before), "output_bytes": out.numel() * out.element_size(),
                        "method": "VmHWM after clear_refs" if reset else "ru_maxrss (includes setup peaks)"})
        del out, args
        gc.collect()
    return results


def measure_peaks(specs: list[dict], timeout: float = 3600) -> list[dict]:
    """Peak extra memory of each spec's forward, measured in one fresh subprocess (one per spec
    when the peak mark cannot be reset)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    env.pop("TRITON_INTERPRET", None)
    groups = [specs] if _reset_hwm() else [[s] for s in specs]
    results = []
    for group in groups:
        proc = subprocess.run([sys.executable, "-m", "facet3d.kernels.dfa3d.bench", "--measure", json.dumps(group)],
                              capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"memory measurement failed: {proc.stderr.strip()[-2000:]}")
        results += json.loads(proc.stdout.strip().splitlines()[-1])
    return results


# ---- timings ----------------------------------------------------------------------------------

def _msda_grid_sample(value, shapes, loc, attn):
    """Deformable DETR's ms_deform_attn_core_pytorch (bilinear, zeros, align_corners=False)."""
    import torch.nn.functional as F

    B, S, M, C = value.shape
    Nq, L, P = loc.shape[1], loc.shape[3], loc.shape[4]
    per_level = value.split([h * w for h, w in shapes], dim=1)
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(B * M, C, h, w)
        grid = (2 * loc[:, :, :, lvl] - 1).transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attn.transpose(1, 2).reshape(B * M, 1, Nq, L * P)
    return (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(B, M * C, Nq).transpose(1, 2)


def _grads_fn(fn, args, **options):
    """A forward + backward closure (all four float inputs) for `fn` on these inputs."""
    value, dist, shapes, starts, loc, attn = args
    leaves = [t.detach().clone().requires_grad_() for t in (value, dist, loc, attn)]
    w = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3], device=value.device,
                    generator=torch.Generator(device=value.device).manual_seed(1), dtype=value.dtype)

    def step():
        out = fn(leaves[0], leaves[1], shapes, starts, leaves[2], leaves[3], **options)
        return torch.autograd.grad((out * w).sum(), leaves)
    return step


def run(repeats: int = 5, device: str = "cpu", views: int = 6, levels: Any = "116x200,58x100,29x50,15x25",
        heads: int = 8, channels: int = 32, bins: int = 112, bev: int = 50, heights: int = 4, points: int = 8,
        memory: Any = 1, check_views: int = 1, check_levels: Any = "29x50,15x25", check_queries: int = 2000,
        grid_sample: Any = 1, seed: int = 0) -> BenchResult:
    """DFA3D at the reference sizes (see the module docstring); queries = bev * bev * heights.

    memory=0 skips the subprocess memory measurement; grid_sample=0 skips the Deformable DETR row.
    """
    from facet3d.kernels.dfa3d import deformable_attention_2d, deformable_attention_3d
    from facet3d.kernels.dfa3d.reference import dfa3d_torch

    on = lambda flag: str(flag).lower() not in ("0", "false", "no", "off", "")  # noqa: E731
    lv, check_lv = parse_levels(levels), parse_levels(check_levels)
    queries = bev * bev * heights
    gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if gpu else None
    params: dict[str, Any] = {"views": views, "levels": ",".join(f"{h}x{w}" for h, w in lv), "heads": heads,
                              "channels": channels, "bins": bins, "queries": queries, "points": points}
    notes: list[str] = []
    timings: list[Timing] = []

    # (a) memory: fused vs naive (CPU, subprocess)
    if on(memory):
        full = dict(views=views, levels=params["levels"], heads=heads, channels=channels, bins=bins, queries=queries,
                    points=points, seed=seed)
        small = dict(full, views=check_views, levels=",".join(f"{h}x{w}" for h, w in check_lv), queries=check_queries)
        fused, fused_small, naive_small = measure_peaks([dict(full, op="fused"), dict(small, op="fused"),
                                                         dict(small, op="naive")])
        naive_model = naive_peak_bytes(views, lv, heads, channels, bins, queries, points)
        small_model = naive_peak_bytes(check_views, check_lv, heads, channels, bins, check_queries, points)
        vol = volume_bytes(views, lv, heads, channels, bins)
        times = naive_model / max(fused["peak_bytes"], 1)
        params.update(fused_peak_MB=round(fused["peak_bytes"] / MB, 1), naive_peak_MB_model=round(naive_model / MB, 1),
                      naive_volume_MB=round(vol / MB, 1), naive_over_fused=round(times, 1),
                      check_naive_peak_MB=round(naive_small["peak_bytes"] / MB, 1),
                      check_naive_peak_MB_model=round(small_model / MB, 1),
                      check_naive_model_error=round(small_model / max(naive_small["peak_bytes"], 1) - 1, 3),
                      check_fused_peak_MB=round(fused_small["peak_bytes"] / MB, 1), memory_method=fused["method"])
        notes.append(f"peak memory (forward, beyond the inputs, output included; {fused['method']} in a subprocess): "
                     f"fused reference {fused['peak_bytes'] / MB:.0f} MB vs naive {naive_model / MB:.0f} MB "
                     f"(modelled; the whole volume F is {vol / MB:.0f} MB): fused = 1/{times:.1f} of naive "
                     f"(goal <= 1/50)")
        notes.append(f"naive model check at views={check_views}, levels={small['levels']}, queries={check_queries}: "
                     f"measured {naive_small['peak_bytes'] / MB:.1f} MB, modelled {small_model / MB:.1f} MB "
                     f"({100 * (small_model / max(naive_small['peak_bytes'], 1) - 1):+.1f}%); fused there "
                     f"{fused_small['peak_bytes'] / MB:.1f} MB")

    # (b) the price of depth: fused 3D vs the same code at D = 1 (and grid_sample MSDA), forward
    args = make_inputs(views, lv, heads, channels, bins, queries, points, device=device, seed=seed)
    value, dist, shapes, starts, loc, attn = args
    shapes2, loc2 = shapes[:, :2].contiguous(), loc[..., :2].contiguous()
    with torch.no_grad():
        t3 = time_repeats(lambda: deformable_attention_3d(*args, backend="torch"), repeats, 1, sync)
        t2 = time_repeats(lambda: deformable_attention_2d(value, shapes2, starts, loc2, attn, backend="torch"),
                          repeats, 1, sync)
        timings += [Timing(BASELINE, t3), Timing("torch-2d", t2)]
        if on(grid_sample):
            timings.append(Timing("grid_sample-2d", time_repeats(lambda: _msda_grid_sample(value, lv, loc2, attn),
                                                                 repeats, 1, sync)))
    ratio = (sorted(t3)[len(t3) // 2]) / max(sorted(t2)[len(t2) // 2], 1e-12)
    params["time_3d_over_2d"] = round(ratio, 3)
    notes.append(f"price of depth: fused 3D forward / 2D (D=1, same code) forward = {ratio:.2f}x "
                 f"(torch reference, {device}, medians of {repeats})")

    # (c) CUDA: Triton vs the torch reference
    if gpu:
        from facet3d.kernels.dfa3d.triton_impl import dfa3d_triton

        params["gpu"] = torch.cuda.get_device_name(torch.device(device))
        with torch.no_grad():
            out_t = dfa3d_triton(*args)
            out_r = dfa3d_torch(*args)
            err = ((out_t - out_r).abs().max() / out_r.abs().max()).item()
            notes.append(f"triton forward vs reference: max rel err {err:.1e}")
            tt = time_repeats(lambda: dfa3d_triton(*args), repeats, 1, sync)
            tt2 = time_repeats(lambda: deformable_attention_2d(value, shapes2, starts, loc2, attn, backend="triton"),
                               repeats, 1, sync)
            for name, fn in (("torch", dfa3d_torch), ("triton", dfa3d_triton)):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                fn(*args)
                torch.cuda.synchronize()
                params[f"cuda_fwd_peak_MB_{name}"] = round((torch.cuda.max_memory_allocated() - base) / MB, 1)
        timings += [Timing("triton", tt), Timing("triton-2d", tt2)]
        for name, fn, opts in (("torch-reference fwd+bwd", dfa3d_torch, {}), ("triton fwd+bwd", dfa3d_triton, {}),
                               ("triton fwd+bwd deterministic", dfa3d_triton, {"deterministic": True})):
            try:
                timings.append(Timing(name, time_repeats(_grads_fn(fn, args, **opts), repeats, 1, sync)))
            except torch.cuda.OutOfMemoryError as exc:
                notes.append(f"{name}: out of memory ({str(exc)[:120]})")
                torch.cuda.empty_cache()
        med = {t.name: t.median for t in timings}
        notes.append(f"triton speed-up over the reference: forward {med[BASELINE] / med['triton']:.2f}x"
                     + (f", forward+backward {med['torch-reference fwd+bwd'] / med['triton fwd+bwd']:.2f}x"
                        if "triton fwd+bwd" in med and "torch-reference fwd+bwd" in med else ""))
    else:
        notes.append("triton: skipped (needs CUDA; interpreter timings are meaningless)")
    params["device"] = device
    return BenchResult(benchmark="dfa3d", baseline=BASELINE, timings=timings, params=params, notes=notes)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--measure":
    print(json.dumps(_measure_child(json.loads(sys.argv[2]))))
