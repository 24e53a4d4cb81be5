"""Benchmarks: merged (FastVGGT) vs unmerged (plain VGGT) time and peak memory, in one process.

* ``facet3d bench fastvggt --set frames=N``: the aggregator of a reduced configuration (``bench-cpu``:
  256 wide, 4 heads of 64, 2 frame + 2 global blocks) on ``frames`` images of ``height x width``;
  ``frames`` may be a list (``--set frames=16,32,64``).  Random weights (timing does not depend on them).
* `full_model_cuda`: the full VGGT-1B (random weights, bf16 autocast) at 100 / 300 / 500 frames on CUDA,
  for ``scripts/gpu_check.py`` (the paper: ~4x at 1,000 frames on an H100).

Peak memory: CUDA's ``max_memory_allocated``; on CPU the process's peak resident set (VmHWM, reset
through /proc/self/clear_refs, with glibc's mmap threshold fixed so freed tensors leave the RSS),
minus the resident set before the run.
"""

from __future__ import annotations

import ctypes
import gc
from typing import Any, Callable

import torch

from facet3d.core.bench import BenchResult, Timing, time_repeats


def _malloc_setup() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD: large blocks mmapped and returned on free
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(fn: Callable[[], Any], device: str) -> float:
    """Peak bytes ``fn()`` adds over what is allocated (CUDA) or resident (CPU) before it."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    _malloc_setup()
    base = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return float("nan")
    fn()
    peak = _rss_kib("VmHWM")
    return float("nan") if base is None or peak is None else float(max(0, peak - base) * 1024)


def _frames_list(frames: Any) -> list[int]:
    if isinstance(frames, (int, float)):
        return [int(frames)]
    return [int(f) for f in str(frames).replace(" ", ",").split(",") if f]


def _sync(device: str):
    return torch.cuda.synchronize if device.startswith("cuda") else None


def aggregator(repeats: int = 3, device: str = "cpu", frames: Any = 16, config: str = "bench-cpu",
               height: int = 126, width: int = 182, merge: float = 0.9, first_block: int = 0,
               seed: int = 0) -> BenchResult:
    """Aggregator forward at ``frames`` (int or "16,32,64"): merged vs unmerged medians and peak memory."""
    from facet3d.plugins.fastvggt.merging import merger
    from facet3d.plugins.fastvggt.model import build_model

    torch.manual_seed(seed)
    model = build_model(config).to(device)
    agg = model.aggregator
    keep = model.kept_layers
    m = merger(merge, first_block)
    timings, notes = [], []
    params: dict[str, Any] = {"config": config, "image": f"{width}x{height}", "device": device, "merge": merge,
                              "first_block": first_block, "threads": torch.get_num_threads(),
                              "aggregator_parameters": sum(p.numel() for p in agg.parameters())}
    baseline = None
    for S in _frames_list(frames):
        x = torch.rand(1, S, 3, height, width, generator=torch.Generator().manual_seed(seed + S)).to(device)
        rows = {}
        with torch.inference_mode():
            for name, mg in (("unmerged", None), ("merged", m)):
                label = f"{name} S={S}"
                secs = time_repeats(lambda: agg(x, keep=keep, merging=mg), repeats, warmup=1, sync=_sync(device))
                mem = peak_memory(lambda: agg(x, keep=keep, merging=mg), device)
                timings.append(Timing(label, secs))
                rows[name] = (Timing(label, secs).median, mem)
                if name == "merged" and agg.last_merge_stats:
                    st = agg.last_merge_stats[-1]
                    rows["kept"] = st["merged_tokens"] / st["tokens"]
        baseline = baseline or f"unmerged S={S}"
        (tu, mu), (tm, mm) = rows["unmerged"], rows["merged"]
        notes.append(f"S={S}: merged/unmerged time {tm / tu:.3f} ({tm:.3f} s vs {tu:.3f} s), peak memory "
                     f"{mm / 2**20:.0f} MiB vs {mu / 2**20:.0f} MiB ({mm / mu if mu else float('nan'):.2f}); "
                     f"tokens kept {100 * rows.get('kept', 1.0):.1f}%")
    return BenchResult("fastvggt", baseline or "unmerged", timings, params, notes)


def full_model_cuda(frames: tuple[int, ...] = (100, 300, 500), height: int = 350, width: int = 518,
                    repeats: int = 1, merge: float = 0.9, dtype: torch.dtype | None = None,
                    log: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Full VGGT-1B (random weights, bf16 autocast, heads fp32) merged vs unmerged on CUDA: one row per size
    and mode with seconds (median) and peak GiB; an OOM is reported in its row, not raised."""
    from facet3d.plugins.fastvggt.merging import merger
    from facet3d.plugins.fastvggt.model import build_model

    if not torch.cuda.is_available():
        raise RuntimeError("full_model_cuda needs a CUDA GPU")
    dev = "cuda"
    dtype = dtype or (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    model = build_model("vggt-1b", device="meta", enable_track=False).to_empty(device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.05)
            elif p.ndim == 1 and name.endswith("weight"):
                p.fill_(1.0)
            elif p.ndim == 1:
                p.zero_()
            else:
                fan_in = max(1, p[0].numel())
                p.normal_(0.0, fan_in ** -0.5, generator=g)
        model.aggregator._mean = torch.tensor((0.485, 0.456, 0.406), device=dev).view(1, 1, 3, 1, 1)
        model.aggregator._std = torch.tensor((0.229, 0.224, 0.225), device=dev).view(1, 1, 3, 1, 1)
    model.eval()
    rows = []
    m = merger(merge)
    for S in frames:
        x = torch.rand(1, S, 3, height, width, device=dev, generator=g)
        for name, mg in (("unmerged", None), ("merged", m)):
            row: dict[str, Any] = {"frames": S, "mode": name}
            try:
                with torch.inference_mode():
                    run = lambda: model(x, merging=mg, autocast_dtype=dtype)  # noqa: E731
                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                    secs = time_repeats(run, repeats, warmup=0, sync=torch.cuda.synchronize)
                    row["seconds"] = sorted(secs)[len(secs) // 2]
                    row["peak_gib"] = (torch.cuda.max_memory_allocated() - base) / 2**30
                    if model.aggregator.last_merge_stats:
                        st = model.aggregator.last_merge_stats[-1]
                        row["kept_fraction"] = st["merged_tokens"] / st["tokens"]
            except torch.cuda.OutOfMemoryError as exc:
                row["error"] = f"OutOfMemoryError: {str(exc)[:160]}"
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            rows.append(row)
            if log:
                log(f"fastvggt full model S={S} {name}: {row}")
        del x
    return rows
