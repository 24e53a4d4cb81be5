"""`facet3d models`: the named model configurations plugins provide, with parameter counts."""

from __future__ import annotations

import typer

from facet3d.cli.console import out, print_json


def models(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    count: bool = typer.Option(True, "--count/--no-count", help="Build each model to count its parameters (imports torch)."),
) -> None:
    """List named models: name, task, configuration and parameter count."""
    from facet3d.core.plugins import get_plugins

    rows = []
    for spec in get_plugins().models().values():
        rows.append({"name": spec.name, "task": spec.task, "description": spec.description, "config": spec.config,
                     "parameters": spec.num_parameters() if count else None,
                     "loads_checkpoints": spec.load_checkpoint is not None})
    if json_out:
        print_json(rows)
        return
    if not rows:
        out.print("no models are registered (model plugins add them)")
    for r in rows:
        params = f"{r['parameters']:,} parameters" if r["parameters"] is not None else ""
        out.print(f"[bold]{r['name']}[/]  {r['task']}  {params}  {r['description']}")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
