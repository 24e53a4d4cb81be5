"""Pipelines: named steps (from `facet3d_pipeline_steps`) with parameters, checked before any file is read.

A step is written ``name`` or ``name:key=value,key=value`` on the command line, or given in a YAML /
JSON pipeline file (`load_pipeline`)::

    steps:
      - voxel-down: {voxel: 0.01}
      - normals
      - mesh: {method: poisson, depth: 8}
    output: {format: ply, name: "{stem}_mesh"}
    input: {format: null}

Values are converted to the types the step declares. `Pipeline.check` walks what each step takes and
gives (a path, geometry, a table row, files) so that a pipeline whose step cannot take what the one
before gives is refused with one line before any work starts. `run_steps` applies geometry steps in
process (``convert --step``); `facet3d.core.batch` runs whole pipelines over many files.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facet3d.core.errors import UsageError
from facet3d.core.io.record import Geometry
from facet3d.core.specs import REQUIRED, PipelineStep, resolve

__all__ = ["Step", "Pipeline", "OutputSpec", "available_steps", "parse_step", "make_step", "load_pipeline",
           "run_steps"]


@dataclass
class Step:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputSpec:
    """How outputs are named: ``name`` is a template over the input's ``{stem}`` (extension added)."""

    format: str = "ply"
    name: str = "{stem}"


@dataclass
class Pipeline:
    """Steps in order, how their outputs are named, and how inputs are read."""

    steps: list[Step]
    output: OutputSpec = field(default_factory=OutputSpec)
    input_format: str | None = None
    fields: str | None = None  # --format bin: the columns

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [{s.name: s.params} for s in self.steps],
                "output": {"format": self.output.format, "name": self.output.name},
                "input": {"format": self.input_format, "fields": self.fields}}

    def fingerprint(self) -> str:
        """A digest of everything that decides the outputs (steps, parameters, naming, reading)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def specs(self) -> list[PipelineStep]:
        steps = available_steps()
        return [steps[s.name] for s in self.steps]

    @property
    def output_format(self) -> str:
        """The format outputs are written in: a final ``convert`` step's ``to``, else ``output.format``."""
        if self.steps and self.steps[-1].name == "convert" and "to" in self.steps[-1].params:
            return str(self.steps[-1].params["to"])
        return self.output.format

    @property
    def takes(self) -> str:
        """What one input is: ``"path"`` when the first step reads it itself (scene folders), else ``"geometry"``."""
        specs = self.specs()
        return "path" if specs and specs[0].takes == "path" else "geometry"

    @property
    def gives(self) -> str:
        """What the pipeline leaves per input: ``"geometry"`` (a file), ``"row"`` or ``"files"`` (a folder)."""
        specs = self.specs()
        return specs[-1].gives if specs else "geometry"

    def check(self) -> None:
        """Refuse (UsageError) a step that cannot take what the one before gives, and bad parameters."""
        previous: PipelineStep | None = None
        for i, (step, spec) in enumerate(zip(self.steps, self.specs())):
            if step.name == "convert" and i != len(self.steps) - 1:
                raise UsageError("step 'convert' sets the output format: make it the last step")
            if spec.takes == "path" and i > 0:
                raise UsageError(f"step '{step.name}' reads its input itself (a file or folder path): "
                                 "it must be the first step")
            if previous is not None and previous.gives != "geometry":
                what = {"row": "a table row", "files": "files"}[previous.gives]
                raise UsageError(f"step '{step.name}' takes geometry but step '{previous.name}' before it "
                                 f"gives {what}: '{previous.name}' must be the last step")
            missing = [k for k, (_, d, _) in spec.params.items() if d is REQUIRED and k not in step.params]
            if missing:
                raise UsageError(f"step '{step.name}' needs parameter {', '.join(repr(m) for m in missing)} "
                                 f"(e.g. -s {step.name}:{missing[0]}=...)")
            if spec.check is not None:
                resolve(spec.check)(**step_kwargs(spec, step))
            previous = spec
        self._check_formats()
        fields = {f for _, f, _, _ in string.Formatter().parse(self.output.name) if f is not None}
        if fields - {"stem"} or not self.output.name.strip() or "/" in self.output.name:
            raise UsageError(f"output name '{self.output.name}': a file name using only {{stem}} "
                             "(e.g. '{stem}_clean')")


    def _check_formats(self) -> None:
        from facet3d.core.io.api import get_format, output_format

        if self.fields is not None and (self.input_format or "").lower() != "bin":
            raise UsageError("fields describe a headerless binary layout: use them with input format bin")
        if self.input_format is not None:
            get_format(self.input_format, "read")
        if self.gives == "geometry":
            output_format(self.output_format, "output format")


def step_kwargs(spec: PipelineStep, step: Step) -> dict[str, Any]:
    """The step's declared defaults overridden by the parameters given."""
    kwargs = {k: d for k, (_, d, _) in spec.params.items()}
    kwargs.update(step.params)
    return kwargs


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


def _coerce(value: Any, typ: type, where: str) -> Any:
    """A value from a YAML / JSON pipeline file, checked against the declared type."""
    if isinstance(value, str):
        return _convert(value, typ, where)
    if value is None:
        return None
    if typ in (list, tuple) and isinstance(value, (list, tuple)):
        return [_coerce(v, float, where) for v in value]
    if typ is bool and isinstance(value, bool):
        return value
    if typ in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if typ is int and float(value) != int(value):
            raise UsageError(f"{where}: expected int, got {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"{where}: expected a finite number, got {value!r}")
        return typ(value)
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise UsageError(f"{where}: expected {typ.__name__}, got {value!r}")


def make_step(name: str, params: dict[str, Any], from_text: bool = True) -> Step:
    """A `Step` with its parameters checked and converted against the registered step."""
    steps = available_steps()
    spec = steps.get(str(name).strip())
    if spec is None:
        raise UsageError(f"unknown pipeline step '{name}' (have: {', '.join(sorted(steps))})")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in spec.params:
            raise UsageError(f"step '{name}' has no parameter '{key}' (has: {', '.join(spec.params) or 'none'})")
        where = f"step '{name}' parameter '{key}'"
        out[key] = _convert(value, spec.params[key][0], where) if from_text else _coerce(value, spec.params[key][0], where)
    return Step(spec.name, out)


def parse_step(text: str) -> Step:
    """Parse ``name:k=v,k=v`` against the registered step's declared parameters."""
    name, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"step '{name}': expected key=value, got '{item}'")
        params[key.strip()] = value
    return make_step(name, params)


def _step_from_entry(entry: Any, where: str) -> Step:
    if isinstance(entry, str):
        return parse_step(entry)
    if isinstance(entry, dict) and len(entry) == 1:
        (name, params), = entry.items()
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise UsageError(f"{where}: parameters of step '{name}' must be a mapping, got {params!r}")
        return make_step(name, params, from_text=False)
    raise UsageError(f"{where}: a step is 'name', 'name:k=v,...' or {{name: {{k: v}}}}, got {entry!r}")


def load_pipeline(path: str | Path) -> Pipeline:
    """Read a pipeline file (YAML or JSON: ``steps``, optional ``output`` and ``input``)."""
    import yaml  # JSON is YAML

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"pipeline file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"pipeline file {p}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"pipeline file {p}: not valid YAML/JSON{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UsageError(f"pipeline file {p}: expected a mapping with a 'steps' list")
    unknown = set(data) - {"steps", "output", "input"}
    if unknown:
        raise UsageError(f"pipeline file {p}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                         "(has: steps, output, input)")
    steps = [_step_from_entry(e, f"pipeline file {p}, step {i + 1}") for i, e in enumerate(data["steps"])]
    output, inp = data.get("output") or {}, data.get("input") or {}
    if not isinstance(output, dict) or set(output) - {"format", "name"}:
        raise UsageError(f"pipeline file {p}: 'output' takes format and name")
    if not isinstance(inp, dict) or set(inp) - {"format", "fields"}:
        raise UsageError(f"pipeline file {p}: 'input' takes format and fields")
    return Pipeline(steps, OutputSpec(str(output.get("format", "ply")), str(output.get("name", "{stem}"))),
                    inp.get("format"), inp.get("fields"))


def run_steps(geom: Geometry, steps: list[Step]) -> Geometry:
    """Apply geometry -> geometry steps in order (in this process); a step's ``setup`` runs once per
    process for the same parameters (as in batch workers)."""
    registry = available_steps() if steps else {}
    for step in steps:
        spec = registry.get(step.name)
        if spec is None:
            raise UsageError(f"unknown pipeline step '{step.name}'")
        if spec.takes != "geometry" or spec.gives != "geometry":
            raise UsageError(f"step '{step.name}' does not turn geometry into geometry: run it with 'facet3d batch'")
        kwargs = step_kwargs(spec, step)
        if spec.setup is not None:  # a model or the like, set up once per process for these params
            key = (step.name, repr(sorted(kwargs.items())))
            if key not in _SETUP_STATES:
                _SETUP_STATES[key] = resolve(spec.setup)(**kwargs)
            kwargs["state"] = _SETUP_STATES[key]
        geom = resolve(spec.run)(geom, **kwargs)
    return geom


_SETUP_STATES: dict[tuple[str, str], object] = {}  # (step, its params) -> what its setup returned
