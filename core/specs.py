"""The small records that plugin hooks return (conda-style: hooks yield dataclasses).

Everything callable may be given as a ``"module:attribute"`` string so that registering
a plugin never imports torch or open3d; `resolve` imports it on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

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


REQUIRED: Any = ...  # a PipelineStep parameter default that means "the user must give it"

STEP_TAKES = ("geometry", "path")
STEP_GIVES = ("geometry", "row", "files")


@dataclass(frozen=True)
class PipelineStep:
    """A step for batch pipelines (``facet3d batch``, ``facet3d pipeline run``).

    takes:   ``"geometry"`` (the file read by core, or the previous step's geometry) or ``"path"``
             (the input path itself, a file or a scene folder: the step reads it; first step only)
    gives:   ``"geometry"`` (written as the file's output, or passed to the next step), ``"row"``
             (a JSON-able dict: one line of ``results.jsonl``) or ``"files"`` (written into a folder)
    run:     ``run(value, **params)``; ``gives="files"``: ``run(value, out_dir=Path, **params)`` writes
             into ``out_dir`` (a fresh folder renamed into place when the step succeeds) and may
             return a dict summary; with ``setup``: also ``state=`` what setup returned
    params:  name -> (type, default, help); used to parse ``name=value`` options.
             default `REQUIRED`: the user must give it
    setup:   ``setup(**params) -> state``, run once per worker process for these params (load a
             model once, not once per file)
    check:   ``check(**params) -> None``: raise `UsageError` for parameter values that can never
             work; called before any file is touched
    resources: what one run needs: ``{"cpus": 1, "gpus": 0}``; a ``gpus`` step uses a GPU where the
             engine has one (Ray requests it only on clusters that have GPUs)
    """

    name: str
    description: str
    run: Ref
    params: dict[str, tuple[type, Any, str]] = field(default_factory=dict)
    takes: str = "geometry"
    gives: str = "geometry"
    setup: Ref | None = None
    check: Ref | None = None
    resources: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.takes not in STEP_TAKES:
            raise ValueError(f"pipeline step {self.name!r}: takes={self.takes!r}, expected one of {STEP_TAKES}")
        if self.gives not in STEP_GIVES:
            raise ValueError(f"pipeline step {self.name!r}: gives={self.gives!r}, expected one of {STEP_GIVES}")


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
class ViewLoader:
    """Content a plugin can show in ``facet3d view`` (`facet3d.core.viewing`).

    claims: ``claims(path: Path) -> bool``: cheap test (name, header) whether ``load`` handles ``path``;
            a claimed folder is not searched further.
    load:   ``load(path: Path, name: str, options: ViewOptions) -> list[Layer]``; ``name`` is the layer name
            to use (layers of one path are ``name`` or ``name/...``).
    order:  loaders are asked by ascending order; the generic geometry / camera readers come last.
    """

    name: str
    description: str
    claims: Ref
    load: Ref
    order: int = 100


@dataclass(frozen=True)
class Benchmark:
    """A benchmark for ``facet3d bench NAME``.

    run: ``run(repeats: int, device: str, **sizes) -> BenchResult`` (see facet3d.core.bench)
    """

    name: str
    description: str
    run: Ref


@dataclass(frozen=True)
class Backend:
    """One implementation of a kernel op (see facet3d.kernels.dispatch, which picks among them).

    op:        the op name (``"knn"``)
    name:      backend name (``"torch"``, ``"triton"``, ``"scipy"``)
    impl:      the function, or ``"module:attr"``; same signature for every backend of an op
    priority:  higher wins when several accept
    devices:   device types accepted (``"cpu"``, ``"cuda"``)
    dtypes:    torch dtype names accepted (``"float32"``); empty = any
    requires:  importable modules needed (``"triton"``)
    grad:      whether it supports autograd through its outputs
    check:     optional ``check(*args, **kwargs) -> list[str]`` extra refusal reasons
    advise:    optional, same signature: reasons to pass it over in automatic dispatch only
               (e.g. "brute force is faster for this size"); a backend named explicitly still runs
    """

    op: str
    name: str
    impl: Ref
    priority: int = 0
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    grad: bool = True
    check: Ref | None = None
    advise: Ref | None = None  # like check, but performance reasons: ignored when asked for by name
    interpreter_ok: bool = False  # runs on CPU tensors when TRITON_INTERPRET=1

    def not_supported_reasons(self, tensors: Sequence[Any], args: tuple, kwargs: dict, forced: bool = False) -> list[str]:
        """Why this backend refuses these inputs ([] = it accepts); forced: asked for by name."""
        reasons = []
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                reasons.append(f"module '{mod}' is not installed")
        ts = [t for t in tensors if hasattr(t, "device")]
        # The interpreter (tests, debugging) takes CPU tensors only when this backend is asked for by
        # name: automatic dispatch on a CPU must keep picking the real CPU paths.
        interp = forced and self.interpreter_ok and os.environ.get("TRITON_INTERPRET") == "1"
        for t in ts:
            if t.device.type not in self.devices and not (interp and t.device.type == "cpu"):
                reasons.append(f"device {t.device.type} not supported (needs {'/'.join(self.devices)})")
                break
        for t in ts:
            if self.dtypes and t.is_floating_point() and str(t.dtype).removeprefix("torch.") not in self.dtypes:
                reasons.append(f"dtype {str(t.dtype).removeprefix('torch.')} not supported (needs {'/'.join(self.dtypes)})")
                break
        if not self.grad and any(getattr(t, "requires_grad", False) for t in ts):
            reasons.append("does not support autograd (an input requires grad)")
        if not reasons and self.check is not None:
            reasons.extend(resolve(self.check)(*args, **kwargs))
        if not reasons and not forced and self.advise is not None:
            reasons.extend(resolve(self.advise)(*args, **kwargs))
        return reasons
