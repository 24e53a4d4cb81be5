"""Loading plugins and collecting what they register.

Plugins come from the entry-point group ``facet3d`` (built-ins included, through facet3d's own
pyproject). A plugin that fails to import or register is recorded with its reason and skipped,
so every other command keeps working: the same holds for a hook that raises, returns something
other than a list of its record type, or adds a command name another plugin already has.
``FACET3D_PLUGINS=a,b`` restricts which plugins load. ``FACET3D_TRACE_PLUGINS=1`` prints every
hook call on stderr.

Order: hooks are collected in pluggy's call order. facet3d registers the entry points so that this
is the built-ins (in entry-point order), then third-party plugins (in discovery order); a plugin
registered in-process later (`register`) comes before them (pluggy calls the latest first), and
``@hookimpl(tryfirst=True)`` / ``trylast=True`` move an implementation ahead of / behind all others.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

from facet3d.core import hookspecs
from facet3d.core.errors import PluginError
from facet3d.core.specs import Backend, Benchmark, DemoStep, FormatSpec, ModelSpec, PipelineStep, ViewLoader

ENV_SELECT = "FACET3D_PLUGINS"
ENV_TRACE = "FACET3D_TRACE_PLUGINS"
CORE = "facet3d"  # owner of the commands the CLI registers before any plugin

# The record type each list hook must return (a list of it, or None).
RECORD_TYPES: dict[str, type] = {
    "facet3d_formats": FormatSpec,
    "facet3d_models": ModelSpec,
    "facet3d_kernel_backends": Backend,
    "facet3d_pipeline_steps": PipelineStep,
    "facet3d_demo_steps": DemoStep,
    "facet3d_benchmarks": Benchmark,
    "facet3d_view_loaders": ViewLoader,
}


@dataclass
class PluginInfo:
    """What `facet3d plugins` reports about one plugin."""

    name: str
    version: str
    source: str  # "built-in" | "third-party" | "registered"
    module: str
    status: str = "ok"  # "ok" | "failed" | "disabled"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "version", "source", "module", "status", "error", "hooks")}


def _selected() -> set[str] | None:
    raw = os.environ.get(ENV_SELECT)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


class Facet3DPlugins:
    """A pluggy PluginManager plus the load report and typed collectors over the hooks."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._cache: dict[str, Any] = {}
        self._owners: dict[str, dict[str, str]] = {}
        self.tracing = bool(os.environ.get(ENV_TRACE))

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        wanted = _selected()
        to_load = []
        for ep in _unique_entry_points():
            info = _info_for(ep)
            self.infos[ep.name] = info
            if wanted is not None and ep.name not in wanted:
                info.status = "disabled"
                info.error = f"not in {ENV_SELECT}"
                continue
            to_load.append((ep, info))
        # pluggy calls the plugin registered last first: register in reverse of the order hooks
        # should run in, which is built-ins (entry-point order), then third-party (discovery order).
        to_load.sort(key=lambda ep_info: ep_info[1].source != "built-in")
        for ep, info in reversed(to_load):
            try:
                obj = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a broken plugin (even sys.exit) must not break the CLI
                info.status, info.error = "failed", f"import failed: {type(exc).__name__}: {exc}"
                continue
            self._register(obj, info)
        if wanted:
            for missing in sorted(wanted - set(self.infos)):
                self.infos[missing] = PluginInfo(missing, "?", "?", "?", "failed", f"{ENV_SELECT} names it but it is not installed")

    def register(self, obj: Any, name: str, version: str = "?", source: str = "registered") -> PluginInfo:
        """Register a plugin object directly (tests, embedding applications)."""
        info = PluginInfo(name=name, version=version, source=source, module=getattr(obj, "__name__", repr(obj)))
        self.infos[name] = info
        self._register(obj, info)
        return info

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.infos.pop(name, None)
        self._cache.clear()

    def _fail(self, plugin_name: str, error: str) -> None:
        """Mark a plugin failed (keeping earlier reasons: each one is worth seeing)."""
        info = self.infos.get(plugin_name)
        if info is not None and error not in (info.error or ""):  # collected again after a cache reset
            info.error = f"{info.error}; {error}" if info.status == "failed" and info.error else error
            info.status = "failed"

    def _trace(self, message: str) -> None:
        if self.tracing:
            sys.stderr.write(f"facet3d trace: {message}\n")

    def _register(self, obj: Any, info: PluginInfo) -> None:
        try:
            self.pm.register(obj, name=info.name)
        except Exception as exc:  # noqa: BLE001
            info.status, info.error = "failed", f"register failed: {type(exc).__name__}: {exc}"
            return
        try:
            # A hook implementation whose name matches no spec is a typo: reject the plugin, name the hook.
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(obj, name=info.name)
            info.status, info.error = "failed", f"unknown hook: {exc}"
            return
        wrappers = _wrapper_hooks(self.pm, obj)
        if wrappers:
            # A wrapper's result is a generator, not records: refuse it whole, like a typo'd hook.
            self.pm.unregister(obj, name=info.name)
            info.status, info.error = "failed", (f"register failed: hook {', '.join(wrappers)} is a wrapper; "
                                                 "facet3d hooks collect results, wrappers are not supported")
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
        self._trace(f"registered plugin {info.name} ({info.source}) hooks: {', '.join(info.hooks) or 'none'}")
        self._cache.clear()

    # -- collectors ---------------------------------------------------------------------------
    def call_order(self, hook_name: str) -> list[Any]:
        """The hook's implementations in pluggy's call order (tryfirst first, trylast last)."""
        return list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))

    def _collect(self, hook_name: str) -> dict[str, Any]:
        """Call a list-returning hook, keyed by name ("op/name" for backends); the same key from two plugins is an error."""
        if hook_name in self._cache:
            return self._cache[hook_name]
        key = _RECORD_KEYS.get(hook_name, _record_name)
        out: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for impl in self.call_order(hook_name):
            ok, items = self._call_isolated(impl, hook_name)
            for item in items if ok else []:
                k = key(item)
                if k in out:
                    raise PluginError(f"{hook_name}: '{k}' is registered by both '{owner[k]}' and '{impl.plugin_name}'")
                out[k], owner[k] = item, impl.plugin_name
        self._cache[hook_name] = out
        self._owners[hook_name] = owner
        return out

    def owner(self, hook_name: str, key: str) -> str:
        """The plugin that registered `key` through `hook_name` (after that hook was collected)."""
        return self._owners.get(hook_name, {}).get(key, "?")

    def formats(self) -> dict[str, Any]:
        return self._collect("facet3d_formats")

    def models(self) -> dict[str, Any]:
        return self._collect("facet3d_models")

    def pipeline_steps(self) -> dict[str, Any]:
        return self._collect("facet3d_pipeline_steps")

    def demo_steps(self) -> dict[str, Any]:
        return self._collect("facet3d_demo_steps")

    def benchmarks(self) -> dict[str, Any]:
        return self._collect("facet3d_benchmarks")

    def view_loaders(self) -> dict[str, Any]:
        return self._collect("facet3d_view_loaders")

    def kernel_backends(self) -> dict[str, Any]:
        """Third-party backends keyed "op/name"; the built-ins live in facet3d.kernels (dispatch merges)."""
        return self._collect("facet3d_kernel_backends")

    def report(self) -> list[PluginInfo]:
        """Every plugin's info after calling each list hook, so bad results show as failures."""
        for hook_name in RECORD_TYPES:
            try:
                self._collect(hook_name)
            except PluginError:
                pass  # a clash between two plugins is raised where that registry is used
        return list(self.infos.values())

    def register_commands(self, app: Any) -> None:
        """Let every plugin add commands; a name already on the app stays with its first owner."""
        owners: dict[tuple[int, str], str] = {}  # (id of a Typer, name) -> plugin; absent = the core
        for impl in self.call_order("facet3d_register_commands"):
            before = _command_snapshot(app)
            self._call_isolated(impl, "facet3d_register_commands", app=app)
            for path, name, first in _drop_clashes(app, before, owners):
                self._fail(impl.plugin_name, f"command '{path}{name}' is registered by both '{first}' and '{impl.plugin_name}'")
            _record_owners(app, before, owners, impl.plugin_name)

    def _call_isolated(self, impl: Any, hook_name: str, **kwargs: Any) -> tuple[bool, Any]:
        """Call one plugin's hook; if it raises or returns the wrong thing, mark that plugin failed and carry on."""
        try:
            result = impl.function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - one plugin's bug must not take the CLI down
            self._trace(f"{impl.plugin_name}.{hook_name} raised {type(exc).__name__}: {exc}")
            self._fail(impl.plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}")
            return False, None
        record = RECORD_TYPES.get(hook_name)
        if record is not None:
            problem = _bad_records(hook_name, result, record)
            if problem:
                self._trace(f"{impl.plugin_name}.{problem}")
                self._fail(impl.plugin_name, problem)
                return False, None
            result = result or []
        self._trace(f"{impl.plugin_name}.{hook_name}" + (f" -> {len(result)} item(s)" if isinstance(result, list) else ""))
        return True, result


def _record_name(record: Any) -> str:
    return record.name


_RECORD_KEYS: dict[str, Callable[[Any], str]] = {"facet3d_kernel_backends": lambda b: f"{b.op}/{b.name}"}


def _unique_entry_points() -> list[Any]:
    """The ``facet3d`` entry points, each name once (a distribution found twice on sys.path)."""
    seen: set[str] = set()
    out = []
    for ep in entry_points(group=hookspecs.PROJECT):
        if ep.name not in seen:
            seen.add(ep.name)
            out.append(ep)
    return out


def _info_for(ep: Any) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    dist_name = getattr(dist, "name", None) or ""
    builtin = dist_name.lower() == "facet3d" and ep.value.startswith("facet3d.plugins.")
    return PluginInfo(name=ep.name, version=getattr(dist, "version", None) or "?",
                      source="built-in" if builtin else "third-party", module=ep.value)


def _wrapper_hooks(pm: pluggy.PluginManager, obj: Any) -> list[str]:
    """Names of the hooks `obj` implements as ``wrapper=True`` / ``hookwrapper=True``."""
    names = []
    for caller in pm.get_hookcallers(obj) or []:
        if any(i.plugin is obj and (i.wrapper or i.hookwrapper) for i in caller.get_hookimpls()):
            names.append(caller.name)
    return sorted(names)


def _bad_records(hook_name: str, result: Any, record: type) -> str | None:
    """Why `result` is not a list of `record` (None: it is, or it is None)."""
    expected = f"expected a list of {record.__name__}"
    if result is None:
        return None
    if not isinstance(result, list):
        return f"{hook_name} returned {type(result).__name__}, {expected}"
    for i, item in enumerate(result):
        if not isinstance(item, record):
            return f"{hook_name} returned a list holding {type(item).__name__} at index {i}, {expected}"
    return None


# -- command clashes ----------------------------------------------------------------------------
# Typer keeps commands and sub-groups in lists (`registered_commands`, `registered_groups`); when two
# share a name, Click silently keeps the last. Shared groups (`facet3d.cli.api.group`) are reused
# objects, not new entries, so only a new entry whose name already exists is a clash.

def _command_name(info: Any) -> str:
    """The name Typer gives a command: its explicit name, else the callback's with _ -> -."""
    if isinstance(info.name, str) and info.name:
        return info.name
    return info.callback.__name__.lower().replace("_", "-")


def _group_name(info: Any) -> str | None:
    for name in (info.name, getattr(getattr(info.typer_instance, "info", None), "name", None)):
        if isinstance(name, str) and name:  # Typer uses `Default(None)` placeholders
            return name
    return None


def _typers(app: Any, path: str = "") -> list[tuple[Any, str]]:
    """The app and every sub-group reachable from it, with their command-line prefix."""
    out = [(app, path)]
    for g in app.registered_groups:
        name = _group_name(g)
        if g.typer_instance is not None and name:
            out.extend(_typers(g.typer_instance, f"{path}{name} "))
    return out


def _command_snapshot(app: Any) -> dict[int, tuple[int, int, set[str]]]:
    """Per Typer object: number of commands, number of groups, every name it has."""
    snap = {}
    for t, _ in _typers(app):
        names = {_command_name(c) for c in t.registered_commands} | {n for g in t.registered_groups if (n := _group_name(g))}
        snap[id(t)] = (len(t.registered_commands), len(t.registered_groups), names)
    return snap


def _added_commands(app: Any, before: dict[int, tuple[int, int, set[str]]]) -> list[tuple[Any, list, str]]:
    """(typer, [(kind, entry, name)], path) for the entries added since `before`, in existing typers."""
    out = []
    for t, path in _typers(app):
        if id(t) not in before:
            continue  # a group the plugin just created: all its commands are its own
        n_cmd, n_grp, _ = before[id(t)]
        added = [("command", c, _command_name(c)) for c in t.registered_commands[n_cmd:]]
        added += [("group", g, n) for g in t.registered_groups[n_grp:] if (n := _group_name(g))]
        out.append((t, added, path))
    return out


def _remove_entry(typer_app: Any, kind: str, entry: Any) -> None:
    attr = "registered_commands" if kind == "command" else "registered_groups"
    setattr(typer_app, attr, [e for e in getattr(typer_app, attr) if e is not entry])


def _drop_clashes(app: Any, before: dict, owners: dict[tuple[int, str], str]) -> list[tuple[str, str, str]]:
    """Remove entries added since `before` under a name that existed then; (path, name, first owner) each."""
    dropped = []
    for typer_app, entries, path in _added_commands(app, before):
        for kind, entry, name in entries:
            if name in before[id(typer_app)][2]:
                _remove_entry(typer_app, kind, entry)
                dropped.append((path, name, owners.get((id(typer_app), name), CORE)))
    return dropped


def _record_owners(app: Any, before: dict, owners: dict[tuple[int, str], str], plugin: str) -> None:
    """Every name that appeared since `before` (new groups' commands included) belongs to `plugin`."""
    for tid, (_, _, names) in _command_snapshot(app).items():
        for name in names - (before[tid][2] if tid in before else set()):
            owners[(tid, name)] = plugin


_PLUGINS: Facet3DPlugins | None = None


def get_plugins() -> Facet3DPlugins:
    """The process-wide plugin set, loaded from entry points on first use."""
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = Facet3DPlugins()
        _PLUGINS.load_entry_points()
    return _PLUGINS


def loaded_plugins() -> Facet3DPlugins | None:
    """The process-wide plugin set if something has loaded it, else None (loads nothing)."""
    return _PLUGINS


def reset_plugins() -> None:
    """Forget loaded plugins (tests)."""
    global _PLUGINS
    _PLUGINS = None
