"""The hooks a facet3d plugin can implement.

A plugin is any module or object with functions decorated by `facet3d.hookimpl` whose names
match these specs; misspelled hook names are rejected at load time (``check_pending``), and so are
``wrapper=True`` / ``hookwrapper=True`` implementations (facet3d collects every plugin's results).
The list hooks must return a list (or None) of their record type from ``facet3d.core.specs``.
Built-in plugins use exactly these hooks. See docs/plugins.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar, cast

import pluggy

if TYPE_CHECKING:
    import typer

    from facet3d.core.specs import Backend, Benchmark, DemoStep, FormatSpec, ModelSpec, PipelineStep, ViewLoader

PROJECT = "facet3d"
F = TypeVar("F", bound=Callable[..., Any])

_spec = pluggy.HookspecMarker(PROJECT)
_impl = pluggy.HookimplMarker(PROJECT)


def hookspec(func: F) -> F:  # keeps the signature visible to type checkers (tox does the same)
    return cast(F, _spec(func))


def hookimpl(func: F | None = None, **kwargs: Any) -> Any:
    """Mark a function as a facet3d hook implementation (``@hookimpl`` or ``@hookimpl(tryfirst=True)``).

    ``tryfirst`` / ``trylast`` order this implementation before / after every plain one (pluggy's order).
    """
    if func is None:
        return _impl(**kwargs)
    return _impl(func)


@hookspec
def facet3d_register_commands(app: "typer.Typer") -> None:
    """Add commands to the CLI. Import heavy modules inside the command, not at module level.

    Example::

        @hookimpl
        def facet3d_register_commands(app):
            @app.command()
            def hello(name: str = "world"):
                "Say hello."
                print(f"hello {name}")
    """


@hookspec
def facet3d_formats() -> "list[FormatSpec]":
    """Return file formats this plugin reads and/or writes.

    Example::

        @hookimpl
        def facet3d_formats():
            return [FormatSpec(name="pts", extensions=(".pts",), description="x y z per line",
                               read="my_plugin.pts:read", write="my_plugin.pts:write")]
    """


@hookspec
def facet3d_models() -> "list[ModelSpec]":
    """Return named model configurations (build function, config, checkpoint loader).

    Example::

        @hookimpl
        def facet3d_models():
            return [ModelSpec(name="tiny-mlp", task="classification", description="2-layer MLP",
                              build="my_plugin.models:TinyMLP", config={"classes": 10})]
    """


@hookspec
def facet3d_kernel_backends() -> "list[Backend]":
    """Return third-party kernel backends for ops (records: facet3d.core.specs.Backend).

    facet3d's own backends are declared in facet3d.kernels and need no plugin; these are added to
    them for dispatch once plugins are loaded. Example::

        @hookimpl
        def facet3d_kernel_backends():
            return [Backend(op="knn", name="my-cuda", priority=50, devices=("cuda",),
                            dtypes=("float32",), impl="my_plugin.knn:knn")]
    """


@hookspec
def facet3d_pipeline_steps() -> "list[PipelineStep]":
    """Return steps usable in batch pipelines (``facet3d pipeline``).

    Example::

        @hookimpl
        def facet3d_pipeline_steps():
            return [PipelineStep(name="flip-z", description="mirror z", run="my_plugin.steps:flip_z")]
    """


@hookspec
def facet3d_demo_steps() -> "list[DemoStep]":
    """Return steps that ``facet3d demo`` runs on ``sample_data/``.

    Example::

        @hookimpl
        def facet3d_demo_steps():
            return [DemoStep(name="my-step", description="...", run="my_plugin.demo:run")]
    """


@hookspec
def facet3d_view_loaders() -> "list[ViewLoader]":
    """Return loaders for content ``facet3d view`` should show (scenes, run folders a plugin writes).

    Example::

        @hookimpl
        def facet3d_view_loaders():
            return [ViewLoader(name="my-scene", description="...", claims="my_plugin.view:claims",
                               load="my_plugin.view:load")]
    """


@hookspec
def facet3d_benchmarks() -> "list[Benchmark]":
    """Return benchmarks for ``facet3d bench``.

    Example::

        @hookimpl
        def facet3d_benchmarks():
            return [Benchmark(name="my-op", description="...", run="my_plugin.bench:run")]
    """
