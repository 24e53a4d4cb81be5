"""The plugin-author CLI toolkit (facet3d.cli.api): parsing helpers, shared groups, progress bars."""

from __future__ import annotations

import math

import pytest
import typer
from typer.testing import CliRunner

from facet3d.cli import api
from facet3d.core.errors import UsageError


def test_resolve_device_auto_cpu_and_errors(monkeypatch):
    import torch

    assert api.resolve_device("cpu") == "cpu"
    assert api.resolve_device(" CPU ") == "cpu"
    assert api.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "", "cpu:0"):
        with pytest.raises(UsageError, match="expected cpu, cuda, cuda:N or auto"):
            api.resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA GPU"):
        api.resolve_device("cuda")
    with pytest.raises(UsageError, match="^--gpu cuda:1"):
        api.resolve_device("cuda:1", flag="--gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert api.resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(UsageError, match="only 1 CUDA device"):
        api.resolve_device("cuda:3")


def test_parse_floats_values_and_errors():
    assert api.parse_floats(None, "--x") is None
    assert api.parse_floats("1,2.5, -3", "--x") == [1.0, 2.5, -3.0]
    assert api.parse_floats("0 0 1", "--viewpoint", 3) == [0.0, 0.0, 1.0]
    with pytest.raises(UsageError, match="--radii expects comma-separated numbers, got 'a,b'"):
        api.parse_floats("a,b", "--radii")
    with pytest.raises(UsageError, match="expects 3 comma-separated numbers"):
        api.parse_floats("1,2", "--viewpoint", 3)
    with pytest.raises(UsageError, match="expects some"):
        api.parse_floats(",", "--radii")
    for bad in ("nan", "1,inf", "-inf,2"):
        with pytest.raises(UsageError, match="finite"):
            api.parse_floats(bad, "--radii")
    assert all(math.isfinite(v) for v in api.parse_floats("1e30", "--x"))


def test_parse_size():
    assert api.parse_size("640x480") == (480, 640)
    assert api.parse_size(" 32 X 16 ") == (16, 32)
    for bad in ("640", "0x10", "10x-1", "axb", ""):
        with pytest.raises(UsageError, match="WIDTHxHEIGHT"):
            api.parse_size(bad)


def test_group_is_shared_between_two_registrations():
    app = typer.Typer()

    def plugin_a(root: typer.Typer) -> None:
        api.group(root, "train", "Train models.").command("alpha")(lambda: typer.echo("a"))

    def plugin_b(root: typer.Typer) -> None:
        api.group(root, "train", "Another help.").command("beta")(lambda: typer.echo("b"))

    plugin_a(app)
    plugin_b(app)
    assert [g.name for g in app.registered_groups] == ["train"]
    sub = api.group(app, "train", "")
    assert sorted(c.name for c in sub.registered_commands) == ["alpha", "beta"]
    runner = CliRunner()
    assert runner.invoke(app, ["train", "beta"]).output == "b\n"
    assert runner.invoke(app, ["train", "alpha"]).output == "a\n"


def test_progress_callback_drives_a_bar():
    from facet3d.core.progress import tick, tracked

    with api.progress_callback("work", total=3) as bar:
        bar(1, 3)
        bar(2, None, "half way")
        tick(bar, 3, 3, "done")
        assert list(tracked(range(4), bar, 4, "again")) == [0, 1, 2, 3]


def test_note_and_warn_print_one_line(capsys):
    api.note("hello [b]x[/b]")
    api.warn("careful")
    err = capsys.readouterr().err
    assert "facet3d: hello [b]x[/b]" in err and "facet3d: warning: careful" in err
