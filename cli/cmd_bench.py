"""`facet3d bench [NAME]`: medians of repeated runs and ratios against a named baseline."""

from __future__ import annotations

import inspect
from typing import List, Optional

import typer

from facet3d.cli.console import err, out, print_json
from facet3d.core.errors import UsageError


def _parse_sets(items: list[str]) -> dict[str, object]:
    sizes: dict[str, object] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--set expects key=value, got '{item}'")
        try:
            sizes[key] = int(value)
        except ValueError:
            try:
                sizes[key] = float(value)
            except ValueError:
                sizes[key] = value
    return sizes


def _params(fn: object) -> str:
    return ", ".join(p for p in inspect.signature(fn).parameters if p not in ("repeats", "device", "kwargs"))  # type: ignore[arg-type]


def _list(registry: dict, json_out: bool) -> None:
    if json_out:
        print_json([{"name": b.name, "description": b.description} for b in registry.values()])
        return
    for b in registry.values():
        out.print(f"[bold]{b.name}[/]  {b.description}")


def _run_one(name: str, run: str, repeats: int, device: str, sizes: dict[str, object]):
    """One benchmark's result, after checking that it takes the --set parameters."""
    from facet3d.core.specs import resolve

    err.print(f"facet3d: running benchmark {name} ...")
    fn = resolve(run)
    try:
        inspect.signature(fn).bind(repeats=repeats, device=device, **sizes)
    except TypeError as exc:
        raise UsageError(f"benchmark {name}: {exc} (its parameters: {_params(fn)})") from None
    return fn(repeats=repeats, device=device, **sizes)


def _print_tables(results: list) -> None:
    from rich.table import Table

    for r in results:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        table = Table(title=f"{r.benchmark} ({params}); baseline: {r.baseline}", box=None, title_justify="left")
        table.add_column("backend")
        table.add_column("median", justify="right")
        table.add_column("speed-up vs baseline", justify="right")
        for t in r.timings:
            table.add_row(t.name, f"{t.median * 1e3:.3f} ms", f"{r.ratio(t.name):.2f}x")
        out.print(table)
        for note in r.notes:
            out.print(f"  note: {note}")


def bench(
    names: Optional[List[str]] = typer.Argument(None, help="Benchmarks to run (none: list them; 'all': every one)."),
    repeats: int = typer.Option(5, "--repeats", "-n", min=1, help="Timed runs per backend (median reported)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    sets: List[str] = typer.Option([], "--set", help="Size parameter key=value (repeatable), e.g. --set n=100000."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Benchmarks from every plugin; each prints medians and the speed-up over its baseline.

    \b
    Examples:
      facet3d bench
      facet3d bench knn --set n=20000 --repeats 7
      facet3d bench all --json
    """
    from facet3d.core.plugins import get_plugins

    registry = get_plugins().benchmarks()
    if not names:
        _list(registry, json_out)
        return
    wanted = list(registry) if names == ["all"] else names
    unknown = [n for n in wanted if n not in registry]
    if unknown:
        raise UsageError(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(registry)})")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA GPU is available")
    sizes = _parse_sets(sets)
    results = [_run_one(name, registry[name].run, repeats, device, sizes) for name in wanted]
    if json_out:
        print_json([r.as_dict() for r in results])
    else:
        _print_tables(results)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
