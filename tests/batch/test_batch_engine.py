"""`facet3d batch` and `facet3d.core.batch`: failure isolation, resume, reports, local vs Ray.

Real files from ../shared/data beside broken ones (garbage, truncated, an invalid STL) and files
whose names make the test step (`batch_test_steps.probe`) segfault its worker, hang past the
timeout or run out of memory, the way native readers do. Outputs are checked against the input
read independently (trimesh / open3d / laspy) plus the step's known shift.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facet3d.core.batch import JOURNAL, BatchOptions, plan_batch, run_batch
from facet3d.core.errors import UsageError
from facet3d.core.pipeline import OutputSpec, Pipeline, make_step, parse_step

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture
def test_steps():
    """The misbehaving test steps registered in this process (workers import them by name)."""
    import batch_test_steps

    from facet3d.core.plugins import get_plugins

    plugins = get_plugins()
    plugins.register(batch_test_steps, name="batch-test-steps")
    yield
    plugins.unregister("batch-test-steps")


def _entry_point_site(tmp_path: Path) -> Path:
    """A folder that, on PYTHONPATH, makes the test steps an installed facet3d plugin (for CLI runs)."""
    site = tmp_path / "site"
    dist = site / "batch_test_steps-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: batch-test-steps\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[facet3d]\nbatch_test_steps = batch_test_steps\n")
    shutil.copy(HERE / "batch_test_steps.py", site / "batch_test_steps.py")
    return site


def _cli(*args: str, site: Path | None = None, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    env.pop("FACET3D_PLUGINS", None)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "facet3d", *args]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


GOOD = {"bunny.pcd": "scans/bunny.pcd", "milk.pcd": "scans/milk.pcd", "fuze.obj": "meshes/fuze.obj",
        "chair_0001.off": "modelnet/chair/chair_0001.off", "simple.las": "las/simple.las"}


@pytest.fixture
def inputs(tmp_path, shared_data) -> Path:
    """Real files, broken files and misbehaving files in one folder."""
    d = tmp_path / "in"
    d.mkdir()
    for name, rel in GOOD.items():
        shutil.copy(shared_data / rel, d / name)
    (d / "garbage.ply").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    whole = (shared_data / "meshes/points_bin.ply").read_bytes()
    (d / "truncated.ply").write_bytes(whole[: len(whole) // 2])
    shutil.copy(shared_data / "meshes/bad/busted.STL", d / "busted.stl")
    pts = "0 0 0\n1 0 0\n0 1 0\n"
    for name in ("crash_me.xyz", "hang_me.xyz", "oom_me.xyz", "killed_me.xyz"):
        (d / name).write_text(pts)
    return d


def _independent_points(path: Path) -> np.ndarray:
    """Vertices of a real input read without facet3d."""
    if path.suffix == ".las":
        import laspy

        las = laspy.read(path)
        return np.stack([las.x, las.y, las.z], 1)
    if path.suffix == ".pcd":
        import open3d as o3d

        return np.asarray(o3d.io.read_point_cloud(str(path)).points)
    import trimesh

    return np.asarray(trimesh.load(path, process=False, force="mesh").vertices)


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name != JOURNAL]


EXPECTED_ERRORS = {"garbage.ply": "not a valid", "truncated.ply": "truncated.ply",
                   "crash_me.xyz": "SIGSEGV", "hang_me.xyz": "timed out after 4 s", "oom_me.xyz": "out of memory",
                   "killed_me.xyz": "SIGKILL (killed: out of memory?)"}


def test_bad_files_are_reported_and_the_batch_goes_on(tmp_path, inputs):
    """CLI end to end: every good file written (checked against trimesh / open3d / laspy), every bad
    one in the report with its reason and one stderr line, exit 1, nothing half-written, and the
    crashed / timed-out workers replaced (later files still ran)."""
    site = _entry_point_site(tmp_path)
    out = tmp_path / "out"
    r = _cli("batch", "-s", "probe:offset=0.5", "--inputs", str(inputs), "--out", str(out), "--workers", "2",
             "--timeout-per-file", "4", "--json", site=site)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    report = json.loads(r.stdout)
    assert report == json.loads((out / "report.json").read_text())
    by_name = {Path(f["input"]).name: f for f in report["files"]}
    assert set(by_name) == set(GOOD) | set(EXPECTED_ERRORS) | {"busted.stl"}
    assert by_name["busted.stl"]["status"] == "ok"  # valid-but-odd files load
    for name, needle in EXPECTED_ERRORS.items():
        entry = by_name[name]
        assert entry["status"] == "failed" and needle in entry["error"], entry
        assert sum(needle in line and name in line for line in r.stderr.splitlines()) >= 1, (name, r.stderr)
        assert not (out / (Path(name).stem + ".ply")).exists()
    from facet3d.core.io.api import read

    for name in GOOD:
        entry = by_name[name]
        assert entry["status"] == "ok", entry
        written = read(out / (Path(name).stem + ".ply"))
        np.testing.assert_allclose(written.vertices, _independent_points(inputs / name) + 0.5, rtol=0, atol=1e-6)
    assert report["totals"] == {**report["totals"], "files": 12, "ok": 6, "failed": 6, "not_run": 0}
    assert _partials(out) == [] and not (out / JOURNAL).exists()


def test_pipeline_is_checked_before_any_file_is_touched(tmp_path, inputs, test_steps):
    opts = BatchOptions(out_dir=tmp_path / "never")
    cases = [
        (lambda: parse_step("no-such-step"), "unknown pipeline step 'no-such-step'"),
        (lambda: parse_step("voxel-down:voxel=abc"), "expected float, got 'abc'"),
        (lambda: parse_step("voxel-down:size=1"), "has no parameter 'size'"),
        (lambda: plan_batch(Pipeline([make_step("count", {}), make_step("normals", {})]), [str(inputs)], opts),
         "step 'normals' takes geometry but step 'count' before it gives a table row"),
        (lambda: plan_batch(Pipeline([make_step("normals", {}), make_step("read", {})]), [str(inputs)], opts),
         "it must be the first step"),
        (lambda: plan_batch(Pipeline([make_step("classify", {})]), [str(inputs)], opts), "needs parameter 'ckpt'"),
        (lambda: plan_batch(Pipeline([make_step("classify", {"ckpt": "nope.safetensors"})]), [str(inputs)], opts),
         "checkpoint nope.safetensors does not exist"),
        (lambda: plan_batch(Pipeline([make_step("convert", {"to": "docx"})]), [str(inputs)], opts), "no writer"),
        (lambda: plan_batch(Pipeline([]), [str(tmp_path / "*.nothing")], opts), "matches nothing"),
        (lambda: plan_batch(Pipeline([], OutputSpec(name="{name}")), [str(inputs)], opts), "only {stem}"),
    ]
    for call, needle in cases:
        with pytest.raises(UsageError, match=None) as info:
            call()
        assert needle in str(info.value), (needle, str(info.value))
    assert not opts.out_dir.exists()
    r = _cli("batch", "-s", f"compare:reference={inputs / 'milk.pcd'}", "-s", "normals", "--inputs", str(inputs), "--out", str(opts.out_dir))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "gives a table row" in r.stderr, r.stderr
    assert not opts.out_dir.exists()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "report.json"}


def _stable(report: dict) -> list[dict]:
    drop = {"seconds", "output", "key"}
    return [{k: v for k, v in f.items() if k not in drop} for f in report["files"]]


def test_resume_after_interrupt_runs_only_what_is_missing(tmp_path, inputs, test_steps):
    """Ctrl-C (KeyboardInterrupt in the parent) after two files: those outputs and the report are
    kept, nothing half-written; --resume runs exactly the rest; a changed parameter re-runs all."""
    for bad in ("garbage.ply", "truncated.ply", "crash_me.xyz", "hang_me.xyz", "oom_me.xyz", "killed_me.xyz"):
        (inputs / bad).unlink()
    for i in range(3):
        shutil.copy(inputs / "milk.pcd", inputs / f"slow_{i}.pcd")
    out = tmp_path / "out"
    pipe = Pipeline([make_step("probe", {"offset": "0.25", "delay": "0.3"})])
    seen: list[str] = []

    def stop_after_two(entry: dict) -> None:
        seen.append(Path(entry["input"]).name)
        if len(seen) == 2:
            raise KeyboardInterrupt

    opts = BatchOptions(out_dir=out, workers=1)
    result = run_batch(plan_batch(pipe, [str(inputs)], opts), opts, on_result=stop_after_two)
    assert result.interrupted and result.report["interrupted"]
    assert result.report["totals"]["ok"] == 2 and result.report["totals"]["not_run"] == 7
    assert _partials(out) == []
    assert sorted(p.name for p in out.glob("*.ply")) == sorted(Path(n).stem + ".ply" for n in seen)
    with pytest.raises(UsageError, match="holds an earlier batch"):
        plan_batch(pipe, [str(inputs)], BatchOptions(out_dir=out))

    resumed = BatchOptions(out_dir=out, workers=2, resume=True)
    plan = plan_batch(pipe, [str(inputs)], resumed)
    assert sorted(Path(plan.jobs[i].src).name for i in plan.previous) == sorted(seen)
    again: list[str] = []
    result = run_batch(plan, resumed, on_result=lambda e: again.append(Path(e["input"]).name))
    assert sorted(again + seen) == sorted(p.name for p in inputs.iterdir())
    assert result.report["totals"] == {**result.report["totals"], "ok": 9, "failed": 0, "resumed": 2}
    assert not (out / JOURNAL).exists()

    # nothing left to do: resume runs nothing; a changed input or parameter re-runs
    assert plan_batch(pipe, [str(inputs)], resumed).todo == []
    os.utime(inputs / "bunny.pcd", ns=(time.time_ns(), time.time_ns()))
    assert [Path(plan_batch(pipe, [str(inputs)], resumed).jobs[i].src).name
            for i in plan_batch(pipe, [str(inputs)], resumed).todo] == ["bunny.pcd"]
    changed = Pipeline([make_step("probe", {"offset": "0.5", "delay": "0.3"})])
    assert len(plan_batch(changed, [str(inputs)], resumed).todo) == 9


def _signal_masks(pid: int) -> str:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "(no /proc)"
    return " ".join(ln.replace("\t", "") for ln in lines if ln.startswith(("SigIgn", "SigCgt", "SigBlk")))


def test_ctrl_c_on_the_cli_keeps_finished_outputs_and_resume_finishes(tmp_path, inputs):
    """A real SIGINT to `facet3d batch`: exit 130, report written (interrupted), no partial files;
    `--resume` completes the batch with outputs identical to an uninterrupted run."""
    site = _entry_point_site(tmp_path)
    for f in list(inputs.iterdir()):
        f.unlink()
    for i in range(8):
        (inputs / f"slow_{i}.xyz").write_text(f"{i} 0 0\n1 {i} 0\n0 1 {i}\n")
    out, ref = tmp_path / "out", tmp_path / "ref"
    args = ["batch", "-s", "probe:delay=0.5", "--inputs", str(inputs), "--workers", "1"]
    # a child inherits an ignored SIGINT (a test or library that set SIG_IGN in this process): start it
    # with the default, as a terminal would
    proc = _cli(*args, "--out", str(out), site=site, stdin=subprocess.DEVNULL,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    journal = out / JOURNAL  # a file counts as done once the parent has recorded it, not when its output lands
    while time.time() < deadline and (not journal.exists() or journal.read_text().count("\n") < 2):
        time.sleep(0.05)
    masks = _signal_masks(proc.pid)  # said when it fails: who ignores or catches SIGINT
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"{masks}\n{stderr}"
    assert "Traceback" not in stderr and "--resume" in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] and 2 <= report["totals"]["ok"] < 8
    assert _partials(out) == []
    r = _cli(*args, "--out", str(out), "--resume", site=site)
    assert r.returncode == 0, r.stderr
    assert f"{report['totals']['ok']} of 8 file(s) already done" in r.stderr
    r = _cli(*args, "--out", str(ref), site=site)
    assert r.returncode == 0, r.stderr
    assert _files(out) == _files(ref)


def test_models_are_set_up_once_per_worker(tmp_path, inputs, test_steps):
    for bad in ("garbage.ply", "truncated.ply", "crash_me.xyz", "hang_me.xyz", "oom_me.xyz", "killed_me.xyz"):
        (inputs / bad).unlink()
    for i in range(5):
        shutil.copy(inputs / "milk.pcd", inputs / f"copy_{i}.pcd")
    log = tmp_path / "setups.log"
    pipe = Pipeline([make_step("probe", {"log": str(log)})])
    opts = BatchOptions(out_dir=tmp_path / "out", workers=2)
    result = run_batch(plan_batch(pipe, [str(inputs)], opts), opts)
    assert result.report["totals"]["ok"] == 11
    pids = log.read_text().split()
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids), pids  # once per worker, not per file


def test_rows_go_to_results_jsonl_and_match_the_classify_command(tmp_path, sample_data, shared_data):
    """The `classify` step (RISurConv, model set up once per worker) gives the rows `classify_file` gives."""
    from facet3d.plugins.risurconv.checkpoint import load_for_task
    from facet3d.plugins.risurconv.predict import classify_file

    ckpt = sample_data / "risurconv" / "classifier_synthetic_tiny.safetensors"
    files = [shared_data / "modelnet/chair/chair_0001.off", shared_data / "modelnet/toilet/toilet_0001.off"]
    out = tmp_path / "out"
    opts = BatchOptions(out_dir=out, workers=1)
    pipe = Pipeline([parse_step(f"classify:ckpt={ckpt},top_k=2")])
    result = run_batch(plan_batch(pipe, [str(f) for f in files], opts), opts)
    assert result.report["results"] == "results.jsonl" and result.failed == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    model, meta = load_for_task(ckpt, "classification")
    for row, f in zip(rows, files):
        direct = classify_file(model, f, meta["num_points"], list(meta["class_names"]), 2)
        assert row["input"] == str(f) and row["label"] == direct["label"]
        assert [t["index"] for t in row["top_k"]] == [t["index"] for t in direct["top_k"]]
        np.testing.assert_allclose([t["prob"] for t in row["top_k"]], [t["prob"] for t in direct["top_k"]], rtol=1e-5)
    assert list(out.iterdir()) and not list(out.glob("*.ply"))  # rows only: no per-file outputs


def test_pipeline_file_names_formats_and_refuses_collisions(tmp_path, inputs, test_steps):
    from facet3d.core.pipeline import load_pipeline

    for other in ("garbage.ply", "truncated.ply", "crash_me.xyz", "hang_me.xyz", "oom_me.xyz", "killed_me.xyz",
                  "fuze.obj", "chair_0001.off", "busted.stl"):  # PCD stores no faces: clouds only
        (inputs / other).unlink()
    sub = inputs / "sub"
    sub.mkdir()
    shutil.copy(inputs / "milk.pcd", sub / "milk.pcd")
    yaml_file = tmp_path / "pipe.yaml"
    yaml_file.write_text("steps:\n  - probe: {offset: 2}\n  - convert: {to: pcd}\noutput: {name: '{stem}_moved'}\n")
    pipe = load_pipeline(yaml_file)
    json_file = tmp_path / "pipe.json"
    json_file.write_text(json.dumps({"steps": ["probe:offset=2", {"convert": {"to": "pcd"}}],
                                     "output": {"name": "{stem}_moved"}}))
    assert load_pipeline(json_file).fingerprint() == pipe.fingerprint()
    out = tmp_path / "out"
    opts = BatchOptions(out_dir=out, workers=2, recursive=True)
    result = run_batch(plan_batch(pipe, [str(inputs)], opts), opts)
    assert result.failed == 0, [f.get("error") for f in result.report["files"]]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.pcd")) == sorted(
        ["bunny_moved.pcd", "milk_moved.pcd", "simple_moved.pcd",
         "sub/milk_moved.pcd"])
    import open3d as o3d

    moved = np.asarray(o3d.io.read_point_cloud(str(out / "sub" / "milk_moved.pcd")).points)
    np.testing.assert_allclose(moved, _independent_points(inputs / "milk.pcd") + 2, atol=1e-5)
    with pytest.raises(UsageError, match="would both be written"):
        plan_batch(pipe, [str(inputs), str(sub)], BatchOptions(out_dir=tmp_path / "o2"))
    (tmp_path / "o3").mkdir()
    (tmp_path / "o3" / "milk_moved.pcd").write_text("someone else's file")
    with pytest.raises(UsageError, match="exists: use --overwrite"):
        plan_batch(pipe, [str(inputs / "milk.pcd")], BatchOptions(out_dir=tmp_path / "o3"))
    # an output folder inside the input folder never feeds the batch its own outputs
    inner = BatchOptions(out_dir=inputs / "out", recursive=True, workers=1)
    run_batch(plan_batch(pipe, [str(inputs)], inner), inner)
    assert len(plan_batch(pipe, [str(inputs)], BatchOptions(out_dir=inputs / "out", recursive=True, resume=True)).jobs) == 4


@pytest.mark.slow
def test_local_and_ray_engines_give_identical_outputs_and_reports(tmp_path, inputs):
    pytest.importorskip("ray")
    from facet3d.core.plugins import get_plugins

    import batch_test_steps

    for name in ("hang_me.xyz", "oom_me.xyz", "killed_me.xyz"):
        (inputs / name).unlink()
    plugins = get_plugins()
    plugins.register(batch_test_steps, name="batch-test-steps")
    try:
        pipe = Pipeline([make_step("voxel-down", {"voxel": "0.01"}), make_step("normals", {"k": "12"}),
                         make_step("probe", {"offset": "1"})])
        reports, trees = {}, {}
        for engine in ("local", "ray"):
            opts = BatchOptions(out_dir=tmp_path / engine, engine=engine, workers=2, timeout=60)
            reports[engine] = run_batch(plan_batch(pipe, [str(inputs)], opts), opts).report
            trees[engine] = _files(tmp_path / engine)
    finally:
        plugins.unregister("batch-test-steps")
    crash = {e: next(f for f in reports[e]["files"] if "crash" in f["input"]) for e in reports}
    for e, entry in crash.items():
        assert entry["status"] == "failed" and "died" in entry["error"], (e, entry)
    same = lambda r: [f if "crash" not in f["input"] else {**f, "error": "died"} for f in _stable(r)]  # noqa: E731
    assert same(reports["local"]) == same(reports["ray"])
    assert trees["local"] == trees["ray"] and len(trees["local"]) == len(GOOD) + 1
    assert reports["ray"]["engine"] == "ray" and reports["local"]["totals"]["failed"] == 3


def test_bench_batch_runs_small():
    """`facet3d bench batch` on a few files: timings for 1 and 2 local workers, overhead noted."""
    from facet3d.plugins.geometry.bench_batch import run

    res = run(repeats=1, files=4, points=500, depth=5, ray=0, threads1=0, ceiling=0)
    assert [t.name for t in res.timings] == ["local x1", "local x2"] and res.baseline == "local x1"
    assert all(t.median > 0 for t in res.timings)
    assert any("ms per file" in n for n in res.notes) and any("2 workers / 1 worker" in n for n in res.notes)
