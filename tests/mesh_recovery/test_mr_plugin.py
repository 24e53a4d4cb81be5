"""The plugin's registration stays light; its demo step, benchmark and pipeline step run."""

from __future__ import annotations

import pytest

import subprocess
import sys

import numpy as np

from facet3d.core.bench import BenchResult
from facet3d.core.specs import DemoContext


def test_registering_imports_nothing_heavy():
    code = ("import sys; from facet3d.cli.main import build_app; build_app(); "
            "print(sorted(m for m in ('open3d', 'torch', 'scipy', 'trimesh') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_hooks_are_registered():
    from facet3d.core.plugins import get_plugins

    pm = get_plugins()
    assert "mesh-recovery" in pm.demo_steps()
    assert "mesh-poisson" in pm.benchmarks()
    assert "mesh" in pm.pipeline_steps()


@pytest.mark.slow
def test_demo_step_quick(sample_data, tmp_path):
    from facet3d.plugins.mesh_recovery.demo import run

    s = run(DemoContext(sample_dir=sample_data, out_dir=tmp_path, quick=True))
    assert s["trimmed"]["fscore_1pct"] > 0.95 and s["watertight"]["watertight"]
    assert (tmp_path / "bunny_poisson_trimmed.ply").is_file()


def test_benchmark_small():
    from facet3d.plugins.mesh_recovery.bench import mesh_poisson

    res = mesh_poisson(repeats=1, n=3000, depth=6)
    assert isinstance(res, BenchResult) and res.baseline == "open3d direct"
    assert {t.name for t in res.timings} == {"open3d direct", "facet3d mesh (reconstruct_points)"}
    assert "overhead" in res.notes[0]


def test_pipeline_step(sample_data):
    from facet3d.core.io.api import read
    from facet3d.core.io.record import Geometry
    from facet3d.core.ops.sampling import sample_mesh_surface
    from facet3d.core.pipeline import Step, run_steps

    g = read(sample_data / "meshes" / "fuze.obj")
    s = sample_mesh_surface(g.vertices, g.faces, 5000, seed=0)
    out = run_steps(Geometry(np.asarray(s.points), normals=np.asarray(s.normals)), [Step("mesh", {"depth": 6})])
    assert out.is_mesh and out.num_faces > 100
