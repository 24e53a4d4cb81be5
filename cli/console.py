"""Where output goes: data on stdout, messages and progress on stderr (rich honours NO_COLOR)."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator



class _LazyConsole:
    """A rich Console created on first use: `facet3d --help` should not pay for importing rich."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


err: Any = _LazyConsole(stderr=True, highlight=False)
DEBUG = {"on": False}  # set by `--debug`: batch commands then print tracebacks of the files that fail
out: Any = _LazyConsole(highlight=False, soft_wrap=True)


def _default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (plain json, no colour, one document)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def fail_line(message: str) -> None:
    """The one line a user error prints."""
    err.print(f"[bold red]facet3d: error:[/] {message}", markup=True, soft_wrap=True, emoji=False)


@contextmanager
def progress(transient: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr; silent when stderr is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=transient,
        disable=not err.is_terminal,
    ) as bar:
        yield bar
