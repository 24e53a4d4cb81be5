"""The plugin manager: entry-point discovery, isolation of broken plugins, typo'd hooks, clashes."""

from __future__ import annotations

import types

import pytest

from facet3d.core import plugins as plugins_mod
from facet3d.core.errors import PluginError
from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import FormatSpec


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.delenv("FACET3D_PLUGINS", raising=False)
    p = plugins_mod.Facet3DPlugins()
    p.load_entry_points()
    return p


def _module(name: str, **funcs) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in funcs.items():
        setattr(mod, k, v)
    return mod


def test_builtins_load_through_entry_points(fresh):
    for name in ("formats", "geometry"):
        info = fresh.infos[name]
        assert info.source == "built-in" and info.status == "ok", info
    assert "facet3d_formats" in fresh.infos["formats"].hooks


def test_misspelled_hook_is_rejected_with_its_name(fresh):
    @hookimpl
    def facet3d_formatz():
        return []

    info = fresh.register(_module("typo", facet3d_formatz=facet3d_formatz), name="typo")
    assert info.status == "failed"
    assert "facet3d_formatz" in info.error
    assert fresh.pm.get_plugin("typo") is None  # and it is not half-registered


def test_same_format_from_two_plugins_names_both(fresh):
    def make():
        @hookimpl
        def facet3d_formats():
            return [FormatSpec(name="dup", extensions=(".dup",), description="x", read="x:y")]
        return facet3d_formats

    fresh.register(_module("a", facet3d_formats=make()), name="plug-a")
    fresh.register(_module("b", facet3d_formats=make()), name="plug-b")
    with pytest.raises(PluginError, match="plug-a.*plug-b"):
        fresh.formats()


def test_a_raising_hook_marks_only_that_plugin_failed(fresh):
    @hookimpl
    def facet3d_formats():
        raise RuntimeError("kaput")

    fresh.register(_module("bad", facet3d_formats=facet3d_formats), name="bad")
    formats = fresh.formats()
    assert "ply" in formats  # the built-ins still answer
    assert fresh.infos["bad"].status == "failed" and "kaput" in fresh.infos["bad"].error


def test_env_var_restricts_loading(monkeypatch):
    monkeypatch.setenv("FACET3D_PLUGINS", "formats,nosuchplugin")
    p = plugins_mod.Facet3DPlugins()
    p.load_entry_points()
    assert p.infos["formats"].status == "ok"
    assert p.infos["geometry"].status == "disabled"
    assert p.infos["nosuchplugin"].status == "failed"
    assert p.pm.get_plugin("geometry") is None


def test_command_hook_adds_a_command(monkeypatch):
    from typer.testing import CliRunner

    from facet3d.cli.main import build_app

    @hookimpl
    def facet3d_register_commands(app):
        @app.command("hello-test")
        def hello(name: str = "world"):
            print(f"hello {name}")

    plugins_mod.reset_plugins()
    p = plugins_mod.get_plugins()
    p.register(_module("hello", facet3d_register_commands=facet3d_register_commands), name="hello")
    try:
        result = CliRunner().invoke(build_app(), ["hello-test", "--name", "you"])
        assert result.exit_code == 0 and result.output.strip() == "hello you"
    finally:
        p.unregister("hello")
        plugins_mod.reset_plugins()


def test_models_hook_lists_config_and_parameter_count():
    import json

    import torch
    from typer.testing import CliRunner

    from facet3d.cli.main import build_app
    from facet3d.core.specs import ModelSpec

    @hookimpl
    def facet3d_models():
        return [ModelSpec(name="tiny-test", task="classification", description="2-layer MLP",
                          build=lambda hidden: torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Linear(hidden, 5)),
                          config={"hidden": 7})]

    plugins_mod.reset_plugins()
    p = plugins_mod.get_plugins()
    p.register(_module("tiny", facet3d_models=facet3d_models), name="tiny")
    try:
        result = CliRunner().invoke(build_app(), ["models", "--json"])
        assert result.exit_code == 0, result.output
        (row,) = [r for r in json.loads(result.output) if r["name"] == "tiny-test"]
        assert row["parameters"] == 3 * 7 + 7 + 7 * 5 + 5 and row["config"] == {"hidden": 7}
    finally:
        p.unregister("tiny")
        plugins_mod.reset_plugins()
