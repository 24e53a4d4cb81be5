"""The small CLI toolkit for plugin authors: what every facet3d command needs, in one place.

Built-in plugins use exactly these; a third-party plugin's ``cli.py`` should too, so that its
commands parse, report and fail like facet3d's own::

    from facet3d.cli.api import group, resolve_device, parse_floats, err, print_json

Importing this module imports typer only (rich is created on first use; torch inside
`resolve_device`), so registering commands stays cheap for `facet3d --help`.

- `group(app, name, help)`: a sub-command group shared between plugins (``facet3d train ...``).
- `resolve_device("auto" | "cpu" | "cuda[:N]")`: the torch device string, or a UsageError.
- `parse_floats`, `parse_size`, `reader_options`: option values validated where they are parsed.
- `positive`, `non_negative`, `unit_interval`: Typer option callbacks refusing non-finite values and
  values out of range (``typer.Option(None, "--voxel", callback=positive)``); the message names the flag.
- `expand_inputs`, `run_batch`: folders to files, one action over many files that goes on past bad ones.
- `err`, `out`, `print_json`: stderr console, stdout console, JSON on stdout.
- `progress`, `progress_callback`: rich bars; the latter is a library ``progress`` callback.
- `note`, `warn`, `fail_line`: one ``facet3d: ...`` line on stderr (`note` is a library ``log`` callback).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import typer

from facet3d.cli.batch import expand_inputs, run_batch
from facet3d.cli.console import err, fail_line, out, print_json, progress
from facet3d.core.errors import UsageError

__all__ = [
    "group", "resolve_device", "parse_floats", "parse_size", "reader_options", "positive", "non_negative", "unit_interval", "expand_inputs", "run_batch",
    "err", "out", "print_json", "progress", "progress_callback", "fail_line", "note", "warn",
]


def group(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """The sub-app ``name`` of ``app``: an existing one (another plugin's) or a new one."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


def resolve_device(device: str, flag: str = "--device") -> str:
    """``auto`` -> ``cuda`` when a GPU is present else ``cpu``; refuses CUDA without a GPU."""
    import torch

    from facet3d.core.values import DEVICE, auto_device

    text = (device or "").strip().lower()
    if not DEVICE.fullmatch(text):
        raise UsageError(f"{flag} {device!r}: expected cpu, cuda, cuda:N or auto")
    text = auto_device(text)
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"{flag} {device}: no CUDA GPU is available")
        if ":" in text and int(text.split(":")[1]) >= torch.cuda.device_count():
            raise UsageError(f"{flag} {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return text


def parse_floats(text: Optional[str], flag: str, n: Optional[int] = None) -> Optional[list[float]]:
    """``"1,2,3"`` (or space-separated) -> ``[1.0, 2.0, 3.0]``; None passes through.

    n: the exact count expected, if any. Non-finite values are refused.
    """
    if text is None:
        return None
    try:
        vals = [float(x) for x in text.replace(" ", ",").split(",") if x]
    except ValueError:
        raise UsageError(f"{flag} expects comma-separated numbers, got '{text}'") from None
    if not vals or (n is not None and len(vals) != n):
        raise UsageError(f"{flag} expects {n or 'some'} comma-separated numbers, got '{text}'")
    if not all(v == v and abs(v) != float("inf") for v in vals):
        raise UsageError(f"{flag} expects finite numbers, got '{text}'")
    return vals


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    """``"WxH"`` -> ``(H, W)`` (positive integers)."""
    from facet3d.core.values import parse_size as parse

    return parse(text, flag)


def reader_options(fmt: Optional[str], fields: Optional[str]) -> dict[str, Any]:
    """Reader keyword options from ``--format`` / ``--fields`` (``--fields`` only means something
    for the headerless ``bin`` layout)."""
    if fields is None:
        return {}
    if (fmt or "").lower() != "bin":
        raise UsageError("--fields describes a headerless binary layout: use it with --format bin")
    return {"fields": fields}


def _checked(value: Any, ok: Callable[[float], bool], wanted: str) -> Any:
    if value is None:
        return value
    for v in (value if isinstance(value, (list, tuple)) else [value]):
        if v != v or abs(v) == float("inf"):
            raise typer.BadParameter(f"{v} is not a finite number")
        if not ok(v):
            raise typer.BadParameter(f"{v} is not {wanted}")
    return value


def positive(value: Any) -> Any:
    """Option callback: finite and > 0 (None passes: the option was not given)."""
    return _checked(value, lambda v: v > 0, "a positive number")


def non_negative(value: Any) -> Any:
    """Option callback: finite and >= 0."""
    return _checked(value, lambda v: v >= 0, "a number >= 0")


def unit_interval(value: Any) -> Any:
    """Option callback: finite and in [0, 1]."""
    return _checked(value, lambda v: 0 <= v <= 1, "in [0, 1]")


def command_line() -> str:
    """The command being run, as the user could paste it again (arguments shell-quoted)."""
    import shlex
    import sys

    return shlex.join(["facet3d", *sys.argv[1:]])


def write_run_page(run_dir: Any, title: str, summary: Optional[dict] = None, description: str = "") -> Any:
    """``RUN_DIR/index.html`` for a training / fitting run (`facet3d.core.report.run_report`): its pictures,
    the numbers of ``summary`` and metrics.json, and this command; returns the page's path."""
    from facet3d.core.report import run_report

    return run_report(run_dir, title, command=command_line(), metrics=summary, description=description)


def note(message: str) -> None:
    """A progress message on stderr (``facet3d: ...``): pass it as a library function's ``log``."""
    err.print(f"facet3d: {message}", markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning line on stderr (``facet3d: warning: ...``)."""
    err.print(f"facet3d: warning: {message}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def progress_callback(label: str, total: Optional[int] = None, transient: bool = True) -> Iterator[Callable[..., None]]:
    """A rich bar on stderr driven by the library's progress callback convention.

    Library code (core, plugins) never imports the CLI: it takes ``progress: Callable | None`` and
    calls ``progress(done, total, description=None)``; the command passes what this yields.
    """
    with progress(transient=transient) as bar:
        task = bar.add_task(label, total=total)

        def update(done: float, total: Optional[float] = None, description: Optional[str] = None) -> None:
            kw: dict[str, Any] = {"completed": done}
            if total is not None:
                kw["total"] = total
            if description is not None:
                kw["description"] = description
            bar.update(task, **kw)

        yield update
