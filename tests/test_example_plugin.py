"""The example third-party plugin in docs/examples/facet3d-hello-plugin, installed the way a user would.

The example is pip-installed (offline: --no-index --no-build-isolation, the venv's setuptools) into a
temporary folder that goes on PYTHONPATH, and the CLI runs as a subprocess, so entry-point discovery,
`facet3d plugins`, the command, the format, the pipeline step, the knn backend and the model are
exercised end to end. Two more tiny packages check failure isolation: one raises on import, one
misspells a hook name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "facet3d-hello-plugin"
BUILTIN_ONLY = "formats,geometry"
HELLO_HOOKS = ["facet3d_formats", "facet3d_kernel_backends", "facet3d_models", "facet3d_pipeline_steps",
               "facet3d_register_commands"]


def _pip_install_target(sources: list[Path], target: Path) -> None:
    """`pip install --target` without network: no index, no build isolation (uses this venv's setuptools)."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--no-input", "-q", "--target", str(target), *map(str, sources)]
    env = dict(os.environ, PIP_NO_INPUT="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert res.returncode == 0, f"pip install failed:\n{res.stdout}\n{res.stderr}"


@pytest.fixture(scope="module")
def hello_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed into a fresh folder (built from a copy: pip builds in-tree)."""
    base = tmp_path_factory.mktemp("hello")
    src = base / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    target = base / "site"
    _pip_install_target([src], target)
    assert (target / "facet3d_hello" / "__init__.py").is_file()
    assert list(target.glob("facet3d_hello_plugin-*.dist-info/entry_points.txt"))
    return target


def _tiny_package(root: Path, dist: str, module: str, body: str) -> Path:
    pkg = root / dist
    pkg.mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.0.1"

        [project.entry-points.facet3d]
        {module.removeprefix("facet3d_")} = "{module}"

        [tool.setuptools]
        py-modules = ["{module}"]
        """))
    (pkg / f"{module}.py").write_text(textwrap.dedent(body))
    return pkg


@pytest.fixture(scope="module")
def broken_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two broken plugins: `boom` raises on import, `typo` implements the misspelled hook facet3d_formatz."""
    base = tmp_path_factory.mktemp("broken")
    boom = _tiny_package(base / "src", "facet3d-boom-plugin", "facet3d_boom", """\
        raise RuntimeError("boom")
        """)
    typo = _tiny_package(base / "src", "facet3d-typo-plugin", "facet3d_typo", """\
        from facet3d.core.hookspecs import hookimpl

        @hookimpl
        def facet3d_register_commands(app):
            @app.command("typo-cmd")
            def typo_cmd():
                print("must not be reachable: the plugin is rejected as a whole")

        @hookimpl
        def facet3d_formatz():
            return []
        """)
    target = base / "site"
    _pip_install_target([boom, typo], target)
    return target


def _env(*targets: Path, select: str | None = None) -> dict[str, str]:
    paths = [str(t) for t in targets] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(paths)}
    if select is not None:
        env["FACET3D_PLUGINS"] = select
    return env


def _plugins_json(cli, env: dict[str, str]) -> dict[str, dict]:
    res = cli("plugins", "--json", env=env)
    rows = {p["name"]: p for p in json.loads(res.stdout)}
    failed = [name for name, row in rows.items() if row["status"] == "failed"]
    # every plugin is listed either way; a failed one also makes the exit code 1, named on stderr
    assert res.returncode == (1 if failed else 0), res.stderr
    assert all(name in res.stderr for name in failed)
    return rows


# -- test data, written and parsed here without facet3d ---------------------------------------------

def _cloud(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [10.0, -3.0, 7.0]).astype(np.float32)


def _write_ascii_ply(path: Path, pts: np.ndarray) -> None:
    with open(path, "w") as fh:
        fh.write(f"ply\nformat ascii 1.0\nelement vertex {len(pts)}\n"
                 "property float x\nproperty float y\nproperty float z\nend_header\n")
        np.savetxt(fh, pts, fmt="%.9g")


def _write_pts(path: Path, pts: np.ndarray, extra: np.ndarray | None = None) -> None:
    data = pts if extra is None else np.hstack([pts.astype(np.float64), extra])
    fmt = ["%.9g"] * 3 + ["%d"] * (0 if extra is None else extra.shape[1])
    with open(path, "w") as fh:
        fh.write(f"{len(pts)}\n")
        np.savetxt(fh, data, fmt=fmt)


def _parse_pts(path: Path) -> np.ndarray:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    assert lines and lines[0].strip().isdigit(), (
        f"{path} does not start with a point count, so it was not written by the hello plugin's pts writer "
        f"(does another format claim '.pts' for writing?); first line: {lines[0] if lines else '(empty)'!r}")
    n = int(lines[0])
    rows = [[float(x) for x in ln.split()] for ln in lines[1:]]
    assert len(rows) == n, f"header says {n}, file has {len(rows)} point lines"
    return np.array(rows, dtype=np.float64).reshape(n, -1)


def _expected_stats(pts: np.ndarray) -> dict:
    v = pts.astype(np.float64)
    c = v.mean(axis=0)
    return {"points": len(v), "centroid": c, "radius": np.linalg.norm(v - c, axis=1).max(),
            "bbox_min": v.min(axis=0), "bbox_max": v.max(axis=0)}


def _check_stats(got: dict, pts: np.ndarray) -> None:
    exp = _expected_stats(pts)
    assert got["points"] == exp["points"]
    for key in ("centroid", "radius", "bbox_min", "bbox_max"):
        np.testing.assert_allclose(got[key], exp[key], rtol=1e-6, atol=1e-6, err_msg=key)


# -- the example plugin ------------------------------------------------------------------------------

def test_listed_as_third_party_ok(cli, hello_target):
    infos = _plugins_json(cli, _env(hello_target))
    hello = infos["hello"]
    assert hello["source"] == "third-party"
    assert hello["status"] == "ok" and hello["error"] is None
    assert hello["version"] == "0.1.0"
    assert hello["module"] == "facet3d_hello"
    assert hello["hooks"] == HELLO_HOOKS
    assert all(infos[b]["source"] == "built-in" and infos[b]["status"] == "ok" for b in ("formats", "geometry"))


def test_help_lists_command_and_stays_light(cli, hello_target):
    res = cli("--help", env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    assert "hello-stats" in res.stdout
    # loading the plugin imports only its tiny __init__: readers, writers and steps load on first use
    probe = ("import sys; from facet3d.core.plugins import get_plugins; p = get_plugins(); "
             "assert p.infos['hello'].status == 'ok', p.infos['hello']; p.formats(); p.pipeline_steps(); "
             "p.kernel_backends(); p.models(); "
             "print(sorted(m for m in sys.modules if m.startswith('facet3d_hello.')))")
    env = dict(os.environ, **_env(hello_target))
    env.pop("FACET3D_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_hello_stats_on_pts(cli, hello_target, tmp_path):
    pts = _cloud()
    f = tmp_path / "cloud.pts"
    _write_pts(f, pts)
    res = cli("hello-stats", str(f), "--json", env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["format"] == "pts"
    _check_stats(got, pts)
    human = cli("hello-stats", str(f), env=_env(hello_target))
    assert human.returncode == 0, human.stderr
    assert "centroid" in human.stdout and "radius" in human.stdout


def test_hello_stats_on_ply(cli, hello_target, tmp_path):
    """Any format facet3d reads: here PLY from the built-in formats plugin."""
    pts = _cloud(seed=1)
    f = tmp_path / "cloud.ply"
    _write_ascii_ply(f, pts)
    res = cli("hello-stats", str(f), "--json", env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["format"] == "ply"
    _check_stats(got, pts)


def test_hello_stats_errors_are_one_line(cli, hello_target, tmp_path):
    missing = cli("hello-stats", str(tmp_path / "nope.pts"), env=_env(hello_target))
    assert missing.returncode == 1
    assert "no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.pts"
    bad.write_text("5\n1 2 3\n4 5 6\n")
    res = cli("hello-stats", str(bad), env=_env(hello_target))
    assert res.returncode == 1
    assert "header says 5 points" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_convert_ply_to_pts_and_info(cli, hello_target, tmp_path):
    pts = _cloud(n=321, seed=2)
    src, dst = tmp_path / "some.ply", tmp_path / "out.pts"
    _write_ascii_ply(src, pts)
    res = cli("convert", str(src), str(dst), env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    parsed = _parse_pts(dst)
    assert parsed.shape == (321, 3)
    np.testing.assert_array_equal(parsed.astype(np.float32), pts)  # written with enough digits to be exact
    info = cli("info", str(dst), "--json", env=_env(hello_target))
    assert info.returncode == 0, info.stderr
    (summary,) = json.loads(info.stdout)
    assert summary["format"] == "pts"
    assert summary["points"] == 321


def test_pts_roundtrip_keeps_intensity_and_colors(cli, hello_target, tmp_path):
    pts = _cloud(n=50, seed=3)
    extra = np.random.default_rng(3).integers(0, 256, size=(50, 4))  # intensity r g b
    src, dst = tmp_path / "in.pts", tmp_path / "copy.pts"
    _write_pts(src, pts, extra)
    res = cli("convert", str(src), str(dst), env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    parsed = _parse_pts(dst)
    assert parsed.shape == (50, 7)
    np.testing.assert_array_equal(parsed[:, :3].astype(np.float32), pts)
    np.testing.assert_array_equal(parsed[:, 3:], extra)
    info = cli("info", str(dst), "--json", env=_env(hello_target))
    assert json.loads(info.stdout)[0]["attributes"] == ["colors", "intensity"]


def test_sniffing_without_extension(cli, hello_target, tmp_path):
    pts = _cloud(n=40, seed=4)
    f = tmp_path / "cloud"  # no extension: only the sniffer can recognise it
    _write_pts(f, pts)
    res = cli("info", str(f), "--json", env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    (summary,) = json.loads(res.stdout)
    assert summary["format"] == "pts" and summary["points"] == 40
    # and without the plugin, nothing claims it
    res = cli("info", str(f), env=_env(hello_target, select=BUILTIN_ONLY))
    assert res.returncode == 1
    assert "unrecognised file format" in res.stderr


def test_pipeline_center_step(cli, hello_target, tmp_path):
    steps = cli("pipeline", "steps", "--json", env=_env(hello_target))
    assert steps.returncode == 0, steps.stderr
    assert "center" in {s["name"] for s in json.loads(steps.stdout)}
    pts = _cloud(n=200, seed=5)
    extra = np.random.default_rng(5).integers(0, 256, size=(200, 4))
    src, out_dir = tmp_path / "scan.pts", tmp_path / "centered"
    _write_pts(src, pts, extra)
    res = cli("pipeline", "run", str(src), "-s", "center", "--to", "pts", "--out", str(out_dir), env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    parsed = _parse_pts(out_dir / "scan.pts")
    np.testing.assert_allclose(parsed[:, :3].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(parsed[:, :3] + pts.astype(np.float64).mean(axis=0), pts, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(parsed[:, 3:], extra)  # attributes travel through the step
    res = cli("pipeline", "run", str(src), "-s", "center:mode=bbox", "--to", "pts", "--out", str(out_dir), env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    c = _parse_pts(out_dir / "scan.pts")[:, :3]
    np.testing.assert_allclose(c.min(axis=0) + c.max(axis=0), 0.0, atol=1e-5)


def test_disabled_by_facet3d_plugins(cli, hello_target, broken_target, tmp_path):
    env = _env(hello_target, broken_target, select=BUILTIN_ONLY)
    infos = _plugins_json(cli, env)
    for name in ("hello", "boom", "typo"):  # not even imported: disabled, not failed
        assert infos[name]["status"] == "disabled", infos[name]
        assert "FACET3D_PLUGINS" in infos[name]["error"]
    assert infos["formats"]["status"] == "ok"
    res = cli("hello-stats", str(tmp_path / "x.pts"), env=env)
    assert res.returncode == 2
    assert "hello-stats" in res.stderr


def _run_python(code: str, hello_target: Path) -> str:
    env = dict(os.environ, **_env(hello_target))
    env.pop("FACET3D_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_knn_backend_matches_the_torch_reference(hello_target):
    out = _run_python("""
        import torch
        from facet3d.core import plugins
        from facet3d.core.errors import BackendError
        from facet3d.kernels.dispatch import backends, pick
        from facet3d.kernels.knn import knn
        from facet3d.kernels.knn.reference import knn_torch

        g = torch.Generator().manual_seed(0)
        q, p = torch.rand(2, 40, 3, generator=g), torch.rand(2, 300, 3, generator=g)
        p[:, 7] = p[:, 3]  # a tie: the lower index must come first
        q[:, 0] = p[:, 3]
        knn(q, p, 5)
        assert plugins.loaded_plugins() is None, "a plain knn call loaded the plugins"
        d, i = knn(q, p, 5, backend="hello-numpy")  # a name facet3d lacks: plugins are loaded for it
        d0, i0 = knn_torch(q, p, 5)
        assert torch.equal(i, i0) and torch.equal(d, d0), "differs from the torch reference"
        assert i[0, 0, 0] == 3 and i[0, 0, 1] == 7
        assert "hello-numpy" in [b.name for b in backends("knn")]
        assert pick("knn", q, p, 5, None, None)[0].name != "hello-numpy"  # priority -10: by name only
        try:
            knn(q, p, 5, point_lengths=torch.tensor([300, 200]), backend="hello-numpy")
        except BackendError as e:
            print("refused:", e)
        """, hello_target)
    assert "refused: backend 'hello-numpy' refused op 'knn': padded batches" in out


@pytest.mark.slow
def test_model_builds_and_runs(hello_target, cli):
    out = _run_python("""
        import torch
        from facet3d.core.plugins import get_plugins

        spec = get_plugins().models()["hello-tiny-cls"]
        model = spec.create()
        pts = torch.rand(3, 64, 3, generator=torch.Generator().manual_seed(0))
        logits = model(pts)
        assert logits.shape == (3, 4), logits.shape
        assert torch.allclose(model(pts[:, torch.randperm(64)]), logits, atol=1e-6)  # max pooling: order-free
        assert spec.num_parameters() == 3 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4
        print("ok")
        """, hello_target)
    assert out.strip() == "ok"
    res = cli("models", "--json", env=_env(hello_target))
    assert res.returncode == 0, res.stderr
    (row,) = [r for r in json.loads(res.stdout) if r["name"] == "hello-tiny-cls"]
    assert row["task"] == "classification" and row["config"] == {"classes": 4, "width": 16}


# -- failure isolation -------------------------------------------------------------------------------

def test_plugin_raising_on_import_is_isolated(cli, hello_target, broken_target, tmp_path):
    env = _env(hello_target, broken_target)
    res = cli("--help", env=env)
    assert res.returncode == 0, res.stderr
    assert "hello-stats" in res.stdout and "Traceback" not in res.stderr
    f = tmp_path / "c.pts"
    _write_pts(f, _cloud(n=30, seed=6))
    info = cli("info", str(f), "--json", env=env)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)[0]["points"] == 30
    infos = _plugins_json(cli, env)
    boom = infos["boom"]
    assert boom["status"] == "failed" and boom["source"] == "third-party"
    assert "boom" in boom["error"] and "RuntimeError" in boom["error"]
    assert infos["hello"]["status"] == "ok"
    table = cli("plugins", env=env)
    assert table.returncode == 1 and "boom" in table.stderr  # listed, and the failure sets the exit code
    assert "boom" in table.stdout and "failed" in table.stdout


def test_misspelled_hook_is_rejected_by_name(cli, hello_target, broken_target):
    env = _env(hello_target, broken_target)
    typo = _plugins_json(cli, env)["typo"]
    assert typo["status"] == "failed"
    assert "facet3d_formatz" in typo["error"]
    assert typo["hooks"] == []
    # rejected as a whole: its correctly spelled hooks do not run either
    res = cli("typo-cmd", env=env)
    assert res.returncode == 2
    assert "typo-cmd" not in cli("--help", env=env).stdout


# -- the in-process recipe from docs/plugins.md ("Testing a plugin") ---------------------------------

def test_register_object_in_process():
    from facet3d.core.hookspecs import hookimpl
    from facet3d.core.io.record import Geometry
    from facet3d.core.pipeline import Step, run_steps
    from facet3d.core.plugins import get_plugins
    from facet3d.core.specs import PipelineStep

    def double(geom: Geometry, factor: float = 2.0) -> Geometry:
        return Geometry(vertices=geom.vertices * factor)

    class MyPlugin:
        @hookimpl
        def facet3d_pipeline_steps(self):
            return [PipelineStep(name="test-double", description="scale", run=double,
                                 params={"factor": (float, 2.0, "scale factor")})]

    class Typo:
        @hookimpl
        def facet3d_formatz(self):
            return []

    plugins = get_plugins()
    info = plugins.register(MyPlugin(), name="test-double-plugin")
    try:
        assert info.status == "ok" and info.hooks == ["facet3d_pipeline_steps"]
        out = run_steps(Geometry(vertices=np.ones((4, 3))), [Step("test-double", {"factor": 3.0})])
        np.testing.assert_array_equal(out.vertices, 3.0)
        bad = plugins.register(Typo(), name="test-typo-plugin")
        assert bad.status == "failed" and "facet3d_formatz" in bad.error
    finally:
        plugins.unregister("test-double-plugin")
        plugins.unregister("test-typo-plugin")
    assert "test-double" not in plugins.pipeline_steps()
