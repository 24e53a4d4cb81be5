"""`facet3d bench dfa3d` at tiny sizes: it runs, reports its fields, and its naive-memory model
agrees with a real measurement."""

from __future__ import annotations

import sys

import pytest

from facet3d.kernels.dfa3d import bench


def test_naive_model_counts_the_volume():
    lv = [(4, 5), (2, 3)]
    vol = bench.volume_bytes(2, lv, 3, 4, 6)
    assert vol == 2 * (20 + 6) * 3 * 4 * 6 * 4
    # the largest level's volume and the next one are alive together (rebinding `vol` in the loop)
    assert bench.naive_peak_bytes(2, lv, 3, 4, 6, 10, 2) >= 2 * 3 * 4 * 6 * (20 + 6) * 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memory is read from /proc")
def test_bench_runs_small_and_reports_fields():
    r = bench.run(repeats=1, views=1, levels="6x8,3x4", heads=8, channels=32, bins=16, bev=3, heights=2, points=2,
                  check_views=1, check_levels="29x50", check_queries=500)
    d = r.as_dict()
    assert d["benchmark"] == "dfa3d" and d["baseline"] == "torch-reference"
    names = [t["name"] for t in d["timings"]]
    assert names[:3] == ["torch-reference", "torch-2d", "grid_sample-2d"]
    p = d["params"]
    assert p["queries"] == 18 and p["levels"] == "6x8,3x4" and p["device"] == "cpu"
    for key in ("fused_peak_MB", "naive_peak_MB_model", "naive_volume_MB", "naive_over_fused", "time_3d_over_2d",
                "check_naive_peak_MB", "check_fused_peak_MB"):
        assert isinstance(p[key], (int, float)) and p[key] >= 0, key
    # the model of naive.py's allocations matches what the subprocess measured (~21 MB here)
    assert p["check_naive_peak_MB"] > 10 and abs(p["check_naive_model_error"]) < 0.1, p
    assert any("price of depth" in n for n in d["notes"]) and any("triton: skipped" in n for n in d["notes"])


def test_bench_without_memory_is_timings_only():
    r = bench.run(repeats=1, views=1, levels="5x6", heads=1, channels=2, bins=3, bev=2, heights=1, points=1,
                  memory=0, grid_sample=0)
    assert [t.name for t in r.timings] == ["torch-reference", "torch-2d"] and "fused_peak_MB" not in r.params
