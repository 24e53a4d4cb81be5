"""`facet3d plugins`: what is installed, where it came from, which hooks it implements, and whether it loaded."""

from __future__ import annotations

import typer

from facet3d.cli.console import out, print_json


def plugins(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List plugins: name, version, source (built-in / third-party), hooks, status.

    FACET3D_PLUGINS=name,name restricts which plugins load.
    """
    from facet3d.core.plugins import get_plugins

    infos = get_plugins().report()  # calls every list hook, so a bad result shows as failed
    if json_out:
        print_json([i.as_dict() for i in infos])
        return
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
