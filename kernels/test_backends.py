"""The built-in backends through the dispatcher: who is picked, who refuses and why."""

from __future__ import annotations

import pytest
import torch

from facet3d.core.errors import BackendError
from facet3d.kernels.backends import builtin_backends
from facet3d.kernels.dispatch import explain, pick


def knn_args(dtype=torch.float32, M=8, N=32, k=4):
    return torch.rand(1, M, 3, dtype=dtype), torch.rand(1, N, 3, dtype=dtype), k, None, None


def test_builtin_backends_cover_ops_and_resolve():
    from facet3d.core.specs import resolve

    bs = builtin_backends()
    assert {(b.op, b.name) for b in bs} >= {("knn", "torch"), ("knn", "triton"), ("knn", "scipy"),
                                            ("fps", "torch"), ("fps", "triton"), ("gather", "torch"), ("gather", "triton")}
    assert len({(b.op, b.name) for b in bs}) == len(bs)
    for b in bs:
        if b.name != "triton" or pytest.importorskip("triton"):
            assert callable(resolve(b.impl))


def test_registered_through_plugin():
    from facet3d.core.plugins import get_plugins

    keys = set(get_plugins().kernel_backends())
    assert {"knn/torch", "knn/scipy", "knn/triton", "fps/torch", "fps/triton", "gather/torch", "gather/triton"} <= keys


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
