"""The small records that plugin hooks return (conda-style: hooks yield dataclasses).

Everything callable may be given as a ``"module:attribute"`` string so that registering
a plugin never imports torch or open3d; `resolve` imports it on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Union

Ref = Union[str, Callable[..., Any]]


def resolve(ref: Ref) -> Callable[..., Any]:
    """Turn a ``"package.module:attr"`` reference into the object (callables pass through)."""
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class FormatSpec:
    """A file format: how to recognise, read and write it.

    name:        short id used by ``--format`` (``"ply"``, ``"kitti-bin"``)
    extensions:  lower-case suffixes with the dot (``(".ply",)``)
    read:        ``read(path, **options) -> Geometry``; None if write-only
    write:       ``write(path, geometry, **options) -> None``; None if read-only.
                 Writers write to the path they are given: atomic rename is done by the caller.
    sniff:       ``sniff(head: bytes) -> bool`` on the first 4 KiB; lets content win over a lying
                 or missing extension. None: extension (or explicit ``--format``) only.
    kinds:       what the writer can store: {"point_cloud", "mesh"}
    explicit_only: only chosen with ``--format`` (e.g. headerless ``.bin`` lidar sweeps)
    imports:     heavy modules the reader needs (for docs and `facet3d plugins`)
    """

    name: str
    extensions: tuple[str, ...]
    description: str
    read: Ref | None = None
    write: Ref | None = None
    sniff: Ref | None = None
    kinds: frozenset[str] = frozenset({"point_cloud", "mesh"})
    explicit_only: bool = False
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A named model configuration.

    name:        unique id, e.g. ``"risurconv-cls-modelnet40"``
    task:        ``"classification"``, ``"segmentation"``, ``"attention"``, ...
    build:       ``build(**config) -> torch.nn.Module``
    config:      keyword arguments for ``build``
    load_checkpoint: ``load_checkpoint(path) -> torch.nn.Module`` (safe loading only)
    """

    name: str
    task: str
    description: str
    build: Ref
    config: dict[str, Any] = field(default_factory=dict)
    load_checkpoint: Ref | None = None

    def create(self) -> Any:
        return resolve(self.build)(**self.config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.create().parameters())


@dataclass(frozen=True)
class PipelineStep:
    """A step for batch pipelines: ``run(geometry, **params) -> Geometry``.

    params:  name -> (type, default, help); used to parse ``name=value`` options.
    """

    name: str
    description: str
    run: Ref
    params: dict[str, tuple[type, Any, str]] = field(default_factory=dict)


@dataclass
class DemoContext:
    """What a demo step gets: the sample data folder and its own output folder."""

    sample_dir: Any  # pathlib.Path
    out_dir: Any  # pathlib.Path
    progress: Any = None  # rich Progress or None
    quick: bool = False


@dataclass(frozen=True)
class DemoStep:
    """One step of ``facet3d demo``: ``run(ctx: DemoContext) -> dict`` (a summary; JSON-able).

    order: steps run by ascending order, then name (core steps use 0-99).
    """

    name: str
    description: str
    run: Ref
    order: int = 100


@dataclass(frozen=True)
class Benchmark:
    """A benchmark for ``facet3d bench NAME``.

    run: ``run(repeats: int, device: str, **sizes) -> BenchResult`` (see facet3d.core.bench)
    """

    name: str
    description: str
    run: Ref
