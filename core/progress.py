"""The progress and message convention of library code (core, kernels, plugins' work modules).

Library code never imports the CLI console. A long job takes two optional callbacks:

    progress: Callable[[int, int | None, str | None], None] | None
        called as ``progress(done, total, description)``; the CLI passes a rich bar
        (`facet3d.cli.api.progress_callback`), tests pass a list's append or nothing
    log: Callable[[str], None] | None
        one human message (no trailing newline); the CLI prints it on stderr

`tick` and `say` call them when given, so work code stays free of ``if progress:`` noise.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, TypeVar

ProgressFn = Callable[[int, Optional[int], Optional[str]], None]
LogFn = Callable[[str], None]
T = TypeVar("T")


def tick(progress: ProgressFn | None, done: int, total: int | None = None, description: str | None = None) -> None:
    """Report `done` of `total` units through `progress`, if there is one."""
    if progress is not None:
        progress(done, total, description)


def say(log: LogFn | None, message: str) -> None:
    """Send one message through `log`, if there is one."""
    if log is not None:
        log(message)


def tracked(items: Iterable[T], progress: ProgressFn | None, total: int | None = None,
            description: str | None = None) -> Iterator[T]:
    """Iterate `items`, reporting one unit per item (the first report is 0 of `total`)."""
    tick(progress, 0, total, description)
    for i, item in enumerate(items, 1):
        yield item
        tick(progress, i, total)
