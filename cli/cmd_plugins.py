"""`facet3d plugins`: what is installed, where it came from, which hooks it implements, and whether it loaded."""

from __future__ import annotations

import typer

from facet3d.cli.console import fail_line, out, print_json


def plugins(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List plugins: name, version, source (built-in / third-party), hooks, status.

    FACET3D_PLUGINS=name,name restricts which plugins load. Exits 1 when a plugin failed (or
    FACET3D_PLUGINS names one that is not installed), after listing them all.
    """
    from facet3d.core.plugins import get_plugins

    infos = get_plugins().report()  # calls every list hook, so a bad result shows as failed
    failed = [i for i in infos if i.status == "failed"]
    if json_out:
        print_json([i.as_dict() for i in infos])
    else:
        _table(infos)
    if failed:
        fail_line(f"{len(failed)} plugin(s) failed: " + "; ".join(f"{i.name}: {i.error}" for i in failed))
        raise typer.Exit(1)


def _table(infos: list) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "version", "source", "status", "hooks"):
        table.add_column(col)
    for i in infos:
        hooks = ", ".join(h.removeprefix("facet3d_") for h in i.hooks)
        status = i.status if not i.error else f"{i.status}: {i.error}"
        style = "red" if i.status == "failed" else ("dim" if i.status == "disabled" else None)
        table.add_row(i.name, i.version, i.source, status, hooks, style=style)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
