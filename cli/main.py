"""The `facet3d` command: a Typer app whose commands come from the core and from plugins.

Start-up stays light (no torch, no open3d): commands import heavy modules when they run.
Errors: a `Facet3DError` or a usage error prints one line on stderr and exits 1 or 2; anything
else prints one line too, and the traceback only with ``--debug`` (or FACET3D_DEBUG=1).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

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
    from facet3d.cli import cmd_bench, cmd_convert, cmd_demo, cmd_info, cmd_models, cmd_pipeline, cmd_plugins

    for module in (cmd_info, cmd_convert, cmd_pipeline, cmd_models, cmd_plugins, cmd_bench, cmd_demo):
        module.register(app)

    from facet3d.core.plugins import get_plugins

    get_plugins().register_commands(app)
    return app


def _is_usage_error(exc: BaseException) -> bool:
    # Typer vendors Click's exceptions since 0.26; match by shape so any version works.
    return hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2


def run(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FACET3D_DEBUG") == "1"
    DEBUG["on"] = debug
    code = 0
    try:
        app = build_app()
        command = typer.main.get_command(app)
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
