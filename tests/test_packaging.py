"""Packaging: every package is listed in pyproject, and a built wheel installs, runs and ships no tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]  # not `from conftest import`: sub-folders have their own conftest


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"facet3d"}
    for init in REPO.rglob("__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts and (rel.parts[0] in {"tests", "docs", ".venv", "build", "sample_data"} or rel.parts[0].startswith(".")):
            continue
        if rel.parts:
            found.add("facet3d." + ".".join(rel.parts))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"


def _source_copy(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) copied to `dest`: a build without stale build/."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the sources")
    r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True)
    for rel in filter(None, r.stdout.decode().split("\0")):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the working tree is not part of this build
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path):
    dist = tmp_path / "dist"
    src = _source_copy(tmp_path / "src")
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(dist.glob("facet3d-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped_tests = [n for n in names if Path(n).name == "conftest.py" or Path(n).name.startswith("test_")]
    assert not shipped_tests, f"the wheel ships test modules: {shipped_tests}"
    assert "facet3d/kernels/knn/reference.py" in names and "facet3d/kernels/trisplat/bench.py" in names
    assert not any(n.startswith("scripts/") or "build_py_no_tests" in n for n in names)
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet", "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # The wheel must carry the mapped packages (cli/ -> facet3d/cli, ...) and not the repo's tests.
    assert (target / "facet3d" / "cli" / "main.py").is_file()
    assert (target / "facet3d" / "core" / "io" / "api.py").is_file()
    assert not (target / "facet3d" / "tests").exists()
    env = dict(os.environ, PYTHONPATH=str(target), NO_COLOR="1")
    env.pop("FACET3D_PLUGINS", None)
    probe = "import facet3d, sys; print(facet3d.__file__)"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert Path(r.stdout.strip()).is_relative_to(target), r.stdout  # the wheel's copy, not the checkout
    script = target / "bin" / "facet3d"
    for cmd in ([sys.executable, "-m", "facet3d", "--version"], [sys.executable, str(script), "--version"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "facet3d 0.1.0"
    r = subprocess.run([sys.executable, "-m", "facet3d", "plugins", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '"formats"' in r.stdout and '"status": "ok"' in r.stdout
