"""The built-in backends through the dispatcher: who is picked, who refuses and why; plugins add to them."""

from __future__ import annotations

import types

import pytest
import torch

from facet3d.core import plugins as plugins_mod
from facet3d.core.errors import BackendError, PluginError
from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import Backend
from facet3d.kernels.dispatch import backends, builtin_backends, builtin_ops, explain, pick


def knn_args(dtype=torch.float32, M=8, N=32, k=4):
    return torch.rand(1, M, 3, dtype=dtype), torch.rand(1, N, 3, dtype=dtype), k, None, None


def test_builtin_backends_cover_ops_and_resolve():
    from facet3d.core.specs import resolve

    assert {"knn", "fps", "gather", "trisplat"} <= set(builtin_ops())
    bs = [b for op in builtin_ops() for b in builtin_backends(op)]
    assert {(b.op, b.name) for b in bs} >= {("knn", "torch"), ("knn", "triton"), ("knn", "scipy"),
                                            ("fps", "torch"), ("fps", "triton"), ("fps", "open3d"),
                                            ("gather", "torch"), ("gather", "triton"),
                                            ("trisplat", "torch"), ("trisplat", "triton")}
    assert len({(b.op, b.name) for b in bs}) == len(bs)
    for op in builtin_ops():
        assert all(b.op == op for b in builtin_backends(op)), op  # each folder declares only its own op
    for b in bs:
        if b.name != "triton" or pytest.importorskip("triton"):
            assert callable(resolve(b.impl))


@pytest.fixture
def no_plugins_loaded():
    """No plugin set in this process (as in a plain Python program); restored to lazy loading after."""
    plugins_mod.reset_plugins()
    yield
    plugins_mod.reset_plugins()


def test_a_kernel_call_loads_no_plugin(no_plugins_loaded):
    from facet3d.kernels.fps import farthest_point_sample
    from facet3d.kernels.gather import gather_points
    from facet3d.kernels.knn import knn

    q, p = torch.rand(1, 5, 3), torch.rand(1, 40, 3)
    _, idx = knn(q, p, 3)
    assert idx.shape == (1, 5, 3)
    assert farthest_point_sample(p, 4).shape == (1, 4)
    assert gather_points(p, idx).shape == (1, 5, 3, 3)
    assert plugins_mod.loaded_plugins() is None  # no entry point was imported


def test_builtins_work_without_the_geometry_plugin(monkeypatch, no_plugins_loaded):
    from facet3d.kernels.knn import knn

    monkeypatch.setenv("FACET3D_PLUGINS", "formats,risurconv")
    loaded = plugins_mod.get_plugins()
    assert loaded.infos["geometry"].status == "disabled"
    q, p = torch.rand(2, 6, 3), torch.rand(2, 50, 3)
    d = ((q[:, :, None] - p[:, None]) ** 2).sum(-1)
    _, idx = knn(q, p, 4)
    assert torch.equal(idx, d.topk(4, dim=-1, largest=False).indices)


def _plugin(**hooks) -> types.ModuleType:
    mod = types.ModuleType("backend_plugin")
    for k, v in hooks.items():
        setattr(mod, k, v)
    return mod


def _first_point_knn(query, points, k, query_lengths=None, point_lengths=None):
    """A deliberately wrong knn (always points 0..k-1), so it is recognisable when picked."""
    B, M = query.shape[:2]
    idx = torch.arange(k).expand(B, M, k)
    return torch.zeros(B, M, k), idx


def test_plugin_backend_is_added_and_picked():
    @hookimpl
    def facet3d_kernel_backends():
        return [Backend(op="knn", name="test-first", impl=_first_point_knn, priority=1000, devices=("cpu",))]

    loaded = plugins_mod.get_plugins()
    loaded.register(_plugin(facet3d_kernel_backends=facet3d_kernel_backends), name="test-knn-plugin")
    try:
        names = [b.name for b in backends("knn")]
        assert names[0] == "test-first" and {"torch", "scipy", "triton"} <= set(names)
        assert pick("knn", *knn_args())[0].name == "test-first"
        assert pick("knn", *knn_args(), backend="torch")[0].name == "torch"
    finally:
        loaded.unregister("test-knn-plugin")
    assert "test-first" not in [b.name for b in backends("knn")]


def test_plugin_reusing_a_builtin_backend_name_is_named():
    @hookimpl
    def facet3d_kernel_backends():
        return [Backend(op="knn", name="torch", impl=_first_point_knn)]

    loaded = plugins_mod.get_plugins()
    loaded.register(_plugin(facet3d_kernel_backends=facet3d_kernel_backends), name="test-shadow-plugin")
    try:
        with pytest.raises(PluginError, match="'knn/torch' is built into facet3d.kernels and registered again by 'test-shadow-plugin'"):
            pick("knn", *knn_args())
    finally:
        loaded.unregister("test-shadow-plugin")


def test_cpu_without_interpreter_picks_cpu_backend(no_interpreter):
    assert pick("knn", *knn_args(M=1024, N=8192))[0].name == "scipy"
    assert pick("knn", *knn_args())[0].name == "torch"  # small: brute force is faster (scipy's advice)
    assert pick("knn", *knn_args(), backend="scipy")[0].name == "scipy"  # advice is ignored when asked by name
    assert pick("knn", *knn_args(torch.float16, M=1024, N=8192))[0].name == "torch"  # scipy: float32/float64 only
    p = torch.rand(2, 20, 3)
    assert pick("fps", p, 4, torch.tensor([20, 20]), torch.zeros(2, dtype=torch.int64))[0].name == "torch"
    assert pick("gather", p, torch.zeros(2, 3, 2, dtype=torch.int64))[0].name == "torch"


def test_forcing_triton_on_cpu_says_device(no_interpreter):
    with pytest.raises(BackendError, match=r"backend 'triton' refused op 'knn': device cpu not supported \(needs cuda\)"):
        pick("knn", *knn_args(), backend="triton")


def test_float64_refused_by_float32_only_backend(no_interpreter):
    with pytest.raises(BackendError, match="dtype float64 not supported \\(needs float32\\)"):
        pick("knn", *knn_args(torch.float64), backend="triton")


def test_explain_lists_reasons(no_interpreter):
    reasons = dict(explain("knn", *knn_args(torch.float64, M=1024, N=8192)))
    assert reasons["torch"] == [] and reasons["scipy"] == []
    assert any("brute force is faster" in r for r in dict(explain("knn", *knn_args(torch.float64)))["scipy"])
    assert any("device cpu" in r for r in reasons["triton"]) and any("float64" in r for r in reasons["triton"])


def test_env_override(no_interpreter, monkeypatch):
    monkeypatch.setenv("FACET3D_BACKEND_KNN", "torch")
    assert pick("knn", *knn_args())[0].name == "torch"
    monkeypatch.setenv("FACET3D_BACKEND_KNN", "nope")
    with pytest.raises(BackendError, match="no backend 'nope'"):
        pick("knn", *knn_args())


def test_interpreter_only_when_asked_and_only_small(triton_cpu):
    assert pick("knn", *knn_args())[0].name != "triton"  # automatic dispatch keeps the CPU paths
    assert pick("knn", *knn_args(), backend="triton")[0].name == "triton"
    big = knn_args(M=1024, N=8192)
    with pytest.raises(BackendError, match="interpreter"):
        pick("knn", *big, backend="triton")


def test_benchmarks_run_and_name_baseline(no_interpreter):
    from facet3d.kernels.fps.bench import run as fps_run
    from facet3d.kernels.knn.bench import run as knn_run

    r = knn_run(repeats=1, B=1, N=2000, M=100, k=4)
    assert r.baseline == "torch-reference" and {t.name for t in r.timings} == {"torch-reference", "scipy"}
    assert "scipy: output equals the reference: True" in r.notes
    r = fps_run(repeats=1, B=1, N=500, n=10)
    assert [t.name for t in r.timings] == ["torch-reference", "open3d"]
    assert r.as_dict()["timings"][0]["speedup_vs_baseline"] == 1.0
    assert "open3d: output equals the reference: True" in r.notes


@pytest.mark.parametrize("name, sizes", [("gather", dict(B=1, N=50, M=10, K=4, C=3)), ("trisplat", dict(n=20, size=16))])
def test_registered_kernel_benchmarks_run_at_tiny_sizes(no_interpreter, name, sizes):
    from facet3d.core.plugins import get_plugins
    from facet3d.core.specs import resolve

    r = resolve(get_plugins().benchmarks()[name].run)(repeats=2, **sizes)
    assert r.benchmark == name and r.baseline == "torch-reference"
    t = r.timings[0]  # on CPU the reference (trisplat: and numba) run; triton says why it is skipped
    assert t.name == "torch-reference" and len(t.seconds) == 2 and r.ratio(t.name) == 1.0
    assert [x.name for x in r.timings[1:]] == (["numba"] if name == "trisplat" else [])
    if name == "trisplat":
        assert "numba: output equals the reference: True" in r.notes
    assert any(n.startswith("triton: skipped (device cpu not supported") for n in r.notes)
    assert r.params["device"] == "cpu" and all(r.params[k] == v for k, v in sizes.items())


def test_trisplat_benchmark_scene_is_visible():
    from facet3d.kernels.trisplat.bench import scene
    from facet3d.kernels.trisplat.reference import rasterize_triangles

    out = rasterize_triangles(*scene(20, 16))
    assert 0.2 < float(out["alpha"].mean()) < 1.0  # neither empty nor one opaque sheet: a real workload
