"""The `facet3d` command: a Typer app whose commands come from the core and from plugins.

Start-up stays light (no torch, no open3d): commands import heavy modules when they run.
Errors: a `Facet3DError` or a usage error prints one line on stderr and exits 1 or 2; anything
else prints one line too, and the traceback only with ``--debug`` (or FACET3D_DEBUG=1).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import typer

from facet3d.cli.console import DEBUG, err, fail_line
from facet3d.core.errors import Facet3DError

HELP = """facet3d: point clouds, meshes and 3D vision from the shell.

\b
Examples:
  facet3d info scan.pcd mesh.obj --json
  facet3d convert bunny.obj bunny.ply --sample 100000 --normals
  facet3d demo --out demo_out
  facet3d plugins
"""


def _version_callback(value: bool) -> None:
    if value:
        from facet3d import __version__

        typer.echo(f"facet3d {__version__}")
        raise typer.Exit()


def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version_callback, is_eager=True,
                                           help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),  # read by `run` from argv
) -> None:
    """facet3d: point clouds, meshes and 3D vision from the shell."""


def build_app() -> typer.Typer:
    """The full CLI: core commands, then every plugin's commands."""
    app = typer.Typer(
        name="facet3d",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,  # pretty tracebacks print locals (whole tensors)
        rich_markup_mode=None,  # plain Click help: the rich formatter costs ~0.1 s of imports
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    app.callback()(_root)
    from facet3d.cli import cmd_batch, cmd_bench, cmd_convert, cmd_demo, cmd_info, cmd_models, cmd_pipeline, cmd_plugins

    for module in (cmd_info, cmd_convert, cmd_pipeline, cmd_batch, cmd_models, cmd_plugins, cmd_bench, cmd_demo):
        module.register(app)

    from facet3d.core.plugins import get_plugins

    get_plugins().register_commands(app)
    return app


_TYPE_METAVARS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "path": "PATH"}


def _tidy_help(command: Any) -> None:
    """One placeholder style in every command's help, whoever wrote it: arguments by their name in
    capitals (``FILE``, ``DIR``), options by their type (``INTEGER``, ``FLOAT``, ``TEXT``, ``PATH``)
    unless the command chose a better word."""
    for param in getattr(command, "params", []):
        if param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        if param.param_type_name == "argument":
            param.metavar = (param.name or "ARG").upper()
        else:
            bare = param.bare_type() if hasattr(param, "bare_type") else getattr(param.type, "name", "")
            label = _TYPE_METAVARS.get(str(bare).lower().removeprefix("list[").removesuffix("]"))
            if label:
                param.metavar = label
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


# Options that name a file format, per command path: their help lists the installed formats.
_FORMAT_OPTIONS = {("info",): ("fmt",), ("convert",): ("fmt", "to", "out_fmt"), ("pipeline", "run"): ("fmt", "to"), ("batch",): ("fmt", "to")}


def _list_formats(command: Any) -> None:
    """Append the installed readers / writers to the help of every ``--format``-like option."""
    from facet3d.core.plugins import get_plugins

    formats = get_plugins().formats()
    readers = ", ".join(sorted(n for n, f in formats.items() if f.read is not None))
    writers = ", ".join(sorted(n for n, f in formats.items() if f.write is not None))
    for path, names in _FORMAT_OPTIONS.items():
        cmd = command
        for part in path:
            cmd = getattr(cmd, "commands", {}).get(part)
        for param in getattr(cmd, "params", []):
            if param.name in names and param.help and "One of:" not in param.help:
                param.help += f" One of: {readers if param.name == 'fmt' else writers}."


def cli_command() -> Any:
    """The Click command of the full app, help placeholders tidied, format options listing formats."""
    command = typer.main.get_command(build_app())
    _tidy_help(command)
    _list_formats(command)
    return command


def _is_usage_error(exc: BaseException) -> bool:
    # Typer vendors Click's exceptions since 0.26; match by shape so any version works.
    return hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2


def _route_warnings(debug: bool) -> None:
    """facet3d's own warnings as one ``facet3d: warning:`` line each; other libraries' Python
    warnings only with --debug (then in Python's usual form)."""
    import warnings

    from facet3d.core.errors import Facet3DWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, Facet3DWarning):
            err.print(f"facet3d: warning: {message}", markup=False, highlight=False, soft_wrap=True)
        elif debug:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("default")  # each distinct warning once per place, not once per point


def run(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FACET3D_DEBUG") == "1"
    DEBUG["on"] = debug
    _route_warnings(debug)
    code = 0
    try:
        command = cli_command()
        if not args:  # bare `facet3d`: the help, and success
            with command.make_context("facet3d", ["--help"], resilient_parsing=True) as ctx:
                typer.echo(command.get_help(ctx))
            raise typer.Exit(0)
        rv = command.main(args=args, prog_name="facet3d", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = getattr(exc, "exit_code", 0) or 0
    except (typer.Abort, KeyboardInterrupt):
        err.print("facet3d: interrupted")
        code = 130
    except Facet3DError as exc:
        if debug:
            err.print_exception()
        fail_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        code = exc.exit_code
    except BrokenPipeError:  # `facet3d ... | head`
        sys.stderr.close()
        code = 0
    except Exception as exc:  # noqa: BLE001
        if _is_usage_error(exc):
            msg = exc.format_message()  # type: ignore[attr-defined]
            ctx = getattr(exc, "ctx", None)
            where = f" (see 'facet3d {ctx.command_path.split(' ', 1)[1]} --help')" if ctx and " " in ctx.command_path else " (see 'facet3d --help')"
            fail_line(msg.splitlines()[0] + where)
            code = 2
        elif hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # other Click exceptions
            fail_line(exc.format_message())  # type: ignore[attr-defined]
            code = int(exc.exit_code)  # type: ignore[attr-defined]
        else:
            if debug:
                err.print_exception()
            fail_line(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                      "(rerun with --debug for the traceback and please report it)")
            code = 1
    sys.stdout.flush()
    sys.exit(code)
