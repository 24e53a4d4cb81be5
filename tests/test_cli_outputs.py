"""No command overwrites an input or lets outputs collide; folders mirror, skip and report honestly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from facet3d.core.io.outputs import check_single_output, output_folder, plan_outputs


def _ply(path: Path, n: int = 50, seed: int = 0) -> Path:
    pts = np.random.default_rng(seed).random((n, 3), dtype=np.float32)
    with open(path, "w") as fh:
        fh.write(f"ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n")
        np.savetxt(fh, pts, fmt="%.6f")
    return path


# ---------------------------------------------------------------------------- the planner itself

def test_plan_refuses_an_output_that_is_an_input(tmp_path):
    a = _ply(tmp_path / "a.ply")
    with pytest.raises(Exception, match="is an input"):
        plan_outputs([a], tmp_path, ".ply", [tmp_path])
    plan = plan_outputs([a], tmp_path, ".ply", [tmp_path], overwrite=True)
    assert plan.jobs == [(a, tmp_path / "a.ply")]


def test_plan_refuses_two_inputs_onto_one_output_and_mirrors_sub_folders(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s2").mkdir()
    a, b = tmp_path / "a.obj", tmp_path / "a.ply"
    with pytest.raises(Exception, match="would both be written to"):
        plan_outputs([a, b], tmp_path / "out", ".ply", [tmp_path])
    x1, x2 = tmp_path / "s1" / "x.off", tmp_path / "s2" / "x.off"
    plan = plan_outputs([x1, x2], tmp_path / "out", ".ply", [tmp_path])
    assert [t for _, t in plan.jobs] == [tmp_path / "out" / "s1" / "x.ply", tmp_path / "out" / "s2" / "x.ply"]


def test_single_output_through_a_symlink_is_the_input(tmp_path):
    a = _ply(tmp_path / "a.ply")
    (tmp_path / "link.ply").symlink_to(a)
    with pytest.raises(Exception, match="is the input file"):
        check_single_output(tmp_path / "link.ply", tmp_path / "." / "a.ply")
    assert check_single_output(a, tmp_path / "b.ply") is True
    _ply(tmp_path / "b.ply")
    assert check_single_output(a, tmp_path / "b.ply", no_clobber=True) is False


def test_output_folder_removes_only_what_it_created_and_left_empty(tmp_path):
    target = tmp_path / "new" / "deeper"
    with output_folder(target) as tree:
        tree.prepare(target / "sub" / "x.ply")
    assert not (tmp_path / "new").exists()
    with output_folder(target) as tree:
        (tree.prepare(target / "sub" / "x.ply")).write_text("x")
    assert (target / "sub" / "x.ply").exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    with output_folder(existing):
        pass
    assert existing.is_dir()  # it was there before: never removed


# ---------------------------------------------------------------------------- through the CLI

def test_convert_refuses_to_overwrite_its_input_unless_asked(cli, tmp_path):
    a = _ply(tmp_path / "a.ply")
    before = a.read_bytes()
    r = cli("convert", str(a), str(tmp_path / "." / "a.ply"))
    assert r.returncode == 2 and "is the input file" in r.stderr and "--overwrite" in r.stderr
    assert a.read_bytes() == before
    r = cli("convert", str(a), "-o", str(a), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert a.read_bytes() != before and a.read_bytes().startswith(b"ply")  # rewritten as binary PLY


def test_folder_conversion_into_itself_and_collisions_are_refused_up_front(cli, tmp_path):
    src = tmp_path / "scans"
    src.mkdir()
    _ply(src / "a.ply")
    _ply(src / "b.ply", seed=1)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    r = cli("convert", str(src), str(src), "--to", "ply")
    assert r.returncode == 2 and "is an input" in r.stderr
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    shutil.copy(src / "a.ply", src / "a.xyz")  # a.ply and a.xyz -> out/a.ply
    out = tmp_path / "out"
    r = cli("convert", str(src), str(out), "--to", "ply")
    assert r.returncode == 2 and "would both be written to" in r.stderr
    assert not out.exists()  # refused before any folder was made


def test_recursive_folder_conversion_mirrors_and_counts(cli, tmp_path):
    src = tmp_path / "in"
    for sub in ("s1", "s2"):
        (src / sub).mkdir(parents=True)
        _ply(src / sub / "x.ply")
    (src / "notes.md").write_text("# not data")
    r = cli("convert", str(src), str(tmp_path / "out"), "--to", "xyz")
    assert r.returncode == 1 and "use -r/--recursive" in r.stderr  # a folder of sub-folders
    r = cli("convert", str(src), str(tmp_path / "out"), "--to", "xyz", "-r", "--json")
    assert r.returncode == 0, r.stderr
    written = sorted(Path(w["output"]).relative_to(tmp_path / "out").as_posix()
                     for w in __import__("json").loads(r.stdout)["written"])
    assert written == ["s1/x.xyz", "s2/x.xyz"]
    assert "skipping 1 file(s)" in r.stderr and "notes.md" in r.stderr
    assert "wrote 2 file(s)" in r.stderr
    stamp = (tmp_path / "out" / "s1" / "x.xyz").stat().st_mtime_ns
    r = cli("convert", str(src), str(tmp_path / "out"), "--to", "xyz", "-r", "-n")
    assert r.returncode == 0 and "wrote 0 file(s)" in r.stderr and "skipped 2 existing" in r.stderr
    assert (tmp_path / "out" / "s1" / "x.xyz").stat().st_mtime_ns == stamp


def test_format_applies_to_the_files_of_a_folder(cli, tmp_path):
    src = tmp_path / "velodyne"
    src.mkdir()
    pts = np.random.default_rng(0).random((100, 4), dtype=np.float32)
    pts.tofile(src / "000000.bin")
    pts[::-1].tofile(src / "000001.bin")
    r = cli("convert", str(src), str(tmp_path / "out"), "--to", "ply", "--format", "kitti-bin")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.ply", "000001.ply"]
    r = cli("info", str(src), "--format", "kitti-bin", "--json")
    assert r.returncode == 0 and len(__import__("json").loads(r.stdout)) == 2


def test_a_failed_folder_job_leaves_no_empty_output_folder(cli, tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.ply").write_text("ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1\n")
    r = cli("convert", str(src), str(tmp_path / "out" / "deep"), "--to", "xyz")
    assert r.returncode == 1 and "wrote 0 file(s)" in r.stderr
    assert not (tmp_path / "out").exists()


def test_pipeline_mirrors_and_refuses_collisions(cli, tmp_path):
    src = tmp_path / "in"
    (src / "s1").mkdir(parents=True)
    (src / "s2").mkdir()
    _ply(src / "s1" / "x.ply")
    _ply(src / "s2" / "x.ply", seed=3)
    r = cli("pipeline", "run", str(src), "-r", "-s", "normalize", "-o", str(tmp_path / "out"), "--to", "xyz")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "s1" / "x.xyz").exists() and (tmp_path / "out" / "s2" / "x.xyz").exists()
    r = cli("pipeline", "run", str(src / "s1" / "x.ply"), str(src / "s2" / "x.ply"), "-o", str(tmp_path / "o2"))
    assert r.returncode == 2 and "would both be written to" in r.stderr and not (tmp_path / "o2").exists()


# ---------------------------------------------------------------------------- refusals with one line

def test_numeric_options_are_refused_where_parsed(cli, tmp_path):
    a = _ply(tmp_path / "a.ply")
    for value, why in (("0", "not a positive number"), ("-1", "not a positive number"), ("nan", "not a finite number")):
        r = cli("convert", str(a), str(tmp_path / "b.ply"), "--voxel", value)
        assert r.returncode == 2 and "'--voxel'" in r.stderr and why in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    r = cli("pipeline", "run", str(a), "-s", "voxel-down:voxel=inf", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "finite" in r.stderr and not (tmp_path / "o").exists()
    assert not (tmp_path / "b.ply").exists()


def test_sampling_that_cannot_fit_is_refused_with_the_estimate(cli, sample_data, tmp_path):
    r = cli("convert", str(sample_data / "meshes" / "fuze.obj"), str(tmp_path / "s.ply"), "--sample", "1000000000",
            env={"FACET3D_MEMORY_LIMIT": "4G"})
    assert r.returncode == 1 and "sampling 1000000000 points needs about" in r.stderr and "GiB" in r.stderr
    assert not (tmp_path / "s.ply").exists() and list(tmp_path.iterdir()) == []


def test_messages_name_the_real_flags(cli, tmp_path):
    a = _ply(tmp_path / "a.ply")
    r = cli("convert", str(a), str(tmp_path / "a.weird"))
    assert r.returncode == 2 and "-F/--out-format" in r.stderr
    r = cli("convert", str(a), str(tmp_path / "a.xyz"), "--las-version", "1.4")
    assert r.returncode == 2 and "--las-version applies to LAS/LAZ outputs" in r.stderr
    r = cli("convert", str(a), str(tmp_path / "a.xyz"), "--fields", "x,y,z")
    assert r.returncode == 2 and "--format bin" in r.stderr


def test_bare_facet3d_prints_help_and_succeeds(cli):
    r = cli()
    assert r.returncode == 0 and "Usage: facet3d" in r.stdout and "convert" in r.stdout and r.stderr == ""


def test_plugins_exits_1_when_a_named_plugin_is_not_installed(cli):
    r = cli("plugins", "--json", env={"FACET3D_PLUGINS": "geometry,no-such-plugin"})
    assert r.returncode == 1 and "no-such-plugin" in r.stderr and "not installed" in r.stderr
    rows = {row["name"]: row for row in __import__("json").loads(r.stdout)}
    assert rows["no-such-plugin"]["status"] == "failed" and rows["geometry"]["status"] == "ok"


def test_a_missing_checkpoint_says_no_such_file(cli, sample_data, tmp_path):
    r = cli("classify", str(sample_data / "meshes" / "fuze.obj"), "--ckpt", str(tmp_path / "nope.safetensors"))
    assert r.returncode == 1 and "no such checkpoint file" in r.stderr and "sidecar" not in r.stderr


def test_info_text_shows_bounds_at_full_precision(cli, tmp_path):
    p = tmp_path / "survey.xyz"
    p.write_text("636001.76 848935.20 406.26\n637179.22 849497.90 520.51\n")
    r = cli("info", str(p))
    assert r.returncode == 0 and "[636001.76, 848935.2, 406.26] .. [637179.22, 849497.9, 520.51]" in r.stdout


def test_help_placeholders_are_one_style(cli):
    """Arguments by name in capitals, options by a capitalised word: never Typer's '<str>'."""
    import re

    from facet3d.cli.main import cli_command

    command = cli_command()

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, path + [name])
        else:
            yield path, cmd

    seen = 0
    for path, cmd in walk(command, []):
        for param in cmd.params:
            if getattr(param, "is_flag", False) or param.name == "help":
                continue
            if getattr(getattr(param, "type_descriptor", None), "is_choice", False):
                continue  # shown as its choices, [a|b|c]
            assert param.metavar and re.fullmatch(r"\[?[A-Z][A-Za-z0-9_.,|\[\]-]*\]?", param.metavar), (path, param.name, param.metavar)
            seen += 1
    assert seen > 50


def test_facet3d_warnings_print_as_one_line_and_others_stay_quiet(tmp_path):
    import subprocess
    import sys

    code = ("import warnings, sys; from facet3d.cli import main; from facet3d.core.errors import Facet3DWarning; "
            "main._route_warnings(False); warnings.warn('colour scaled to 8 bits', Facet3DWarning); "
            "warnings.warn('some library noise', DeprecationWarning); warnings.warn('more noise', RuntimeWarning)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))
    assert r.stderr.strip() == "facet3d: warning: colour scaled to 8 bits"


def test_format_options_list_their_values(cli):
    r = cli("convert", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "One of: bin, glb," in text and "kitti-bin" in text and "las" in text
