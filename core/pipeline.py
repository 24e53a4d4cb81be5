"""Pipelines: a list of named steps (from `facet3d_pipeline_steps`) applied to a `Geometry`.

A step is written ``name`` or ``name:key=value,key=value`` on the command line; values are
converted with the types the step declares.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any

from facet3d.core.errors import UsageError
from facet3d.core.io.record import Geometry
from facet3d.core.specs import PipelineStep, resolve


@dataclass
class Step:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def available_steps() -> dict[str, PipelineStep]:
    from facet3d.core.plugins import get_plugins

    return get_plugins().pipeline_steps()


def _convert(value: str, typ: type, where: str) -> Any:
    if typ is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{where}: expected true/false, got '{value}'")
    try:
        if typ in (list, tuple):
            vals = [float(x) for x in value.replace(";", " ").split()]
        else:
            vals = [typ(value)]
    except ValueError:
        raise UsageError(f"{where}: expected {typ.__name__}, got '{value}'") from None
    if any(isinstance(v, float) and not math.isfinite(v) for v in vals):
        raise UsageError(f"{where}: expected a finite number, got '{value}'")
    return vals if typ in (list, tuple) else vals[0]


def parse_step(text: str) -> Step:
    """Parse ``name:k=v,k=v`` against the registered step's declared parameters."""
    name, _, rest = text.partition(":")
    steps = available_steps()
    spec = steps.get(name.strip())
    if spec is None:
        raise UsageError(f"unknown pipeline step '{name}' (have: {', '.join(sorted(steps))})")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"step '{name}': expected key=value, got '{item}'")
        if key not in spec.params:
            raise UsageError(f"step '{name}' has no parameter '{key}' (has: {', '.join(spec.params) or 'none'})")
        params[key] = _convert(value, spec.params[key][0], f"step '{name}' parameter '{key}'")
    return Step(spec.name, params)


def run_steps(geom: Geometry, steps: list[Step]) -> Geometry:
    """Apply the steps in order."""
    registry = available_steps() if steps else {}
    for step in steps:
        spec = registry.get(step.name)
        if spec is None:
            raise UsageError(f"unknown pipeline step '{step.name}'")
        kwargs = {k: d for k, (_, d, _) in spec.params.items()}
        kwargs.update(step.params)
        geom = resolve(spec.run)(geom, **kwargs)
    return geom
