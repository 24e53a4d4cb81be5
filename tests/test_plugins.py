"""The plugin manager: entry-point discovery, isolation of broken plugins, typo'd hooks, bad results,
wrapper hooks, call order (tryfirst / trylast), format and command clashes."""

from __future__ import annotations

import types

import pytest

from facet3d.core import plugins as plugins_mod
from facet3d.core.errors import PluginError
from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import Benchmark, FormatSpec


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
    # pluggy calls the plugin registered last first: plug-b's item is the one already there
    with pytest.raises(PluginError, match="'dup' is registered by both 'plug-b' and 'plug-a'"):
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


# -- results are validated where the hook is called -----------------------------------------------

def _fmt(name: str, ext: str = ".tst") -> FormatSpec:
    return FormatSpec(name=name, extensions=(ext,), description="test", read="x:y")


def test_a_single_record_instead_of_a_list_fails_only_that_plugin(fresh):
    @hookimpl
    def facet3d_formats():
        return _fmt("lonely")  # forgot the brackets

    fresh.register(_module("one", facet3d_formats=facet3d_formats), name="one")
    formats = fresh.formats()
    assert "ply" in formats and "lonely" not in formats
    info = fresh.infos["one"]
    assert info.status == "failed"
    assert info.error == "facet3d_formats returned FormatSpec, expected a list of FormatSpec"


def test_a_list_of_the_wrong_records_fails_with_the_index(fresh):
    @hookimpl
    def facet3d_benchmarks():
        return [Benchmark("ok-bench", "fine", "x:y"), _fmt("not-a-bench")]

    fresh.register(_module("mixed", facet3d_benchmarks=facet3d_benchmarks), name="mixed")
    benches = fresh.benchmarks()
    assert "knn" in benches and "ok-bench" not in benches  # the whole bad result is skipped
    assert fresh.infos["mixed"].error == ("facet3d_benchmarks returned a list holding FormatSpec at index 1, "
                                         "expected a list of Benchmark")


def test_none_is_an_empty_result(fresh):
    @hookimpl
    def facet3d_pipeline_steps():
        return None

    info = fresh.register(_module("quiet", facet3d_pipeline_steps=facet3d_pipeline_steps), name="quiet")
    assert "normalize" in fresh.pipeline_steps()
    assert info.status == "ok" and info.error is None


def test_report_runs_every_hook_so_bad_results_show_without_use(fresh):
    @hookimpl
    def facet3d_models():
        return "tiny"

    fresh.register(_module("lazy", facet3d_models=facet3d_models), name="lazy")
    assert fresh.infos["lazy"].status == "ok"  # nothing has asked for models yet
    rows = {i.name: i for i in fresh.report()}
    assert rows["lazy"].status == "failed" and "facet3d_models returned str, expected a list of ModelSpec" == rows["lazy"].error
    assert rows["formats"].status == "ok"


def test_plugins_command_shows_a_bad_result(monkeypatch):
    import json

    from typer.testing import CliRunner

    from facet3d.cli.main import build_app

    @hookimpl
    def facet3d_formats():
        return _fmt("lonely")

    monkeypatch.delenv("FACET3D_PLUGINS", raising=False)
    plugins_mod.reset_plugins()
    try:
        plugins_mod.get_plugins().register(_module("one", facet3d_formats=facet3d_formats), name="one")
        result = CliRunner().invoke(build_app(), ["plugins", "--json"])
        assert result.exit_code == 1, result.output  # listed, and the failure makes the exit code
        (row,) = [r for r in json.loads(result.stdout) if r["name"] == "one"]
        assert row["status"] == "failed" and "expected a list of FormatSpec" in row["error"]
    finally:
        plugins_mod.reset_plugins()


# -- wrappers are refused at registration ---------------------------------------------------------

@pytest.mark.parametrize("flag", ["wrapper", "hookwrapper"])
def test_wrapper_hooks_are_refused_with_the_reason(fresh, flag):
    @hookimpl(**{flag: True})
    def facet3d_formats():
        result = yield
        return result

    info = fresh.register(_module("wrap", facet3d_formats=facet3d_formats), name="wrap")
    assert info.status == "failed"
    assert info.error == ("register failed: hook facet3d_formats is a wrapper; "
                          "facet3d hooks collect results, wrappers are not supported")
    assert fresh.pm.get_plugin("wrap") is None
    assert "ply" in fresh.formats()  # and collecting still works


# -- order: pluggy's call order -------------------------------------------------------------------

def _claims(name: str, **marks):
    @hookimpl(**marks)
    def facet3d_formats():
        return [_fmt(name)]
    return _module(name, facet3d_formats=facet3d_formats)


def _order(p, names: set[str]) -> list[str]:
    return [n for n in p.formats() if n in names]


def test_builtins_come_first_in_entry_point_order(fresh):
    from importlib.metadata import entry_points

    builtin_eps = [ep.name for ep in entry_points(group="facet3d") if ep.value.startswith("facet3d.plugins.")]
    called = [i.plugin_name for i in fresh.call_order("facet3d_demo_steps")]
    assert called == [n for n in builtin_eps if n in called] and len(called) >= 2


def test_tryfirst_and_trylast_are_honoured(fresh):
    fresh.register(_claims("first", tryfirst=True), name="first")
    fresh.register(_claims("plain-old"), name="plain-old")
    fresh.register(_claims("last", trylast=True), name="last")
    fresh.register(_claims("plain-new"), name="plain-new")
    names = list(fresh.formats())
    assert names[0] == "first" and names[-1] == "last"
    # plain hooks: the latest registered first (pluggy), then the built-ins
    assert _order(fresh, {"plain-old", "plain-new", "ply"}) == ["plain-new", "plain-old", "ply"]


# -- command names are global ---------------------------------------------------------------------

def _commands(*names: str, group: str | None = None):
    @hookimpl
    def facet3d_register_commands(app):
        target = app
        if group is not None:
            from facet3d.cli.api import group as shared_group

            target = shared_group(app, group, "shared")
        for n in names:
            target.command(n)(lambda n=n: print(f"{n} from here"))
    return facet3d_register_commands


def _invoke(app, *args):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


@pytest.fixture
def app_plugins(monkeypatch):
    """A fresh process-wide plugin set (the CLI builds from it); yields a function registering in-process plugins."""
    monkeypatch.delenv("FACET3D_PLUGINS", raising=False)
    plugins_mod.reset_plugins()
    p = plugins_mod.get_plugins()
    yield lambda name, hook: p.register(_module(name, facet3d_register_commands=hook), name=name)
    plugins_mod.reset_plugins()


def test_same_command_from_two_plugins_keeps_the_first_and_names_both(app_plugins):
    from facet3d.cli.main import build_app

    # registered later = called first (pluggy): "later" keeps the name, "earlier" clashes
    app_plugins("earlier", _commands("clash-cmd", "own-cmd"))
    app_plugins("later", _commands("clash-cmd"))
    app = build_app()
    infos = plugins_mod.get_plugins().infos
    assert infos["later"].status == "ok"
    assert infos["earlier"].status == "failed"
    assert infos["earlier"].error == "command 'clash-cmd' is registered by both 'later' and 'earlier'"
    assert _invoke(app, "clash-cmd").output.strip() == "clash-cmd from here"
    assert [c.name for c in app.registered_commands].count("clash-cmd") == 1
    assert _invoke(app, "own-cmd").exit_code == 0  # its other commands stay


def test_a_plugin_command_cannot_replace_a_core_command(app_plugins):
    from facet3d.cli.main import build_app

    app_plugins("impostor", _commands("plugins"))
    app = build_app()
    info = plugins_mod.get_plugins().infos["impostor"]
    assert info.error == "command 'plugins' is registered by both 'facet3d' and 'impostor'"
    result = _invoke(app, "plugins", "--json")
    # the core command still answers (and exits 1: a plugin failed)
    assert result.exit_code == 1 and '"impostor"' in result.stdout


def test_callback_names_and_groups_clash_too(app_plugins):
    from facet3d.cli.main import build_app

    @hookimpl
    def by_callback(app):
        @app.command()
        def same_name():
            print("first")

    @hookimpl
    def new_group(app):
        import typer

        app.add_typer(typer.Typer(), name="same-name")  # a new group under an existing command name

    app_plugins("g2", new_group)
    app_plugins("g1", by_callback)  # called first
    build_app()
    infos = plugins_mod.get_plugins().infos
    assert infos["g1"].status == "ok"
    assert infos["g2"].error == "command 'same-name' is registered by both 'g1' and 'g2'"


def test_shared_groups_are_not_clashes_but_their_commands_are(app_plugins):
    from facet3d.cli.main import build_app

    app_plugins("s2", _commands("b", "a", group="shared-grp"))
    app_plugins("s1", _commands("a", group="shared-grp"))
    app = build_app()
    infos = plugins_mod.get_plugins().infos
    assert infos["s1"].status == "ok"
    assert infos["s2"].error == "command 'shared-grp a' is registered by both 's1' and 's2'"
    assert _invoke(app, "shared-grp", "b").output.strip() == "b from here"
    assert _invoke(app, "shared-grp", "a").output.strip() == "a from here"


# -- kernels do not depend on the geometry plugin -------------------------------------------------

@pytest.mark.slow
def test_classify_without_the_geometry_plugin(cli, sample_data):
    """RISurConv needs knn / fps / gather: their built-in backends come with facet3d.kernels."""
    import json

    res = cli("classify", str(sample_data / "meshes" / "fuze.obj"), "--ckpt",
              str(sample_data / "risurconv" / "classifier_synthetic_tiny.safetensors"), "--num-points", "256", "--json",
              env={"FACET3D_PLUGINS": "formats,risurconv"})
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["label"] and 0 < row["prob"] <= 1
