"""Loading plugins and collecting what they register.

Plugins come from the entry-point group ``facet3d`` (built-ins included, through facet3d's own
pyproject). A plugin that fails to import or register is recorded with its reason and skipped,
so every other command keeps working. ``FACET3D_PLUGINS=a,b`` restricts which plugins load.
``FACET3D_TRACE_PLUGINS=1`` prints every hook call on stderr.
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

ENV_SELECT = "FACET3D_PLUGINS"
ENV_TRACE = "FACET3D_TRACE_PLUGINS"


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
        self.tracing = bool(os.environ.get(ENV_TRACE))

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        wanted = _selected()
        seen: set[str] = set()
        for ep in entry_points(group=hookspecs.PROJECT):
            if ep.name in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(ep.name)
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None) or ""
            builtin = dist_name.lower() == "facet3d" and ep.value.startswith("facet3d.plugins.")
            info = PluginInfo(
                name=ep.name,
                version=getattr(dist, "version", None) or "?",
                source="built-in" if builtin else "third-party",
                module=ep.value,
            )
            self.infos[ep.name] = info
            if wanted is not None and ep.name not in wanted:
                info.status = "disabled"
                info.error = f"not in {ENV_SELECT}"
                continue
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
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
        self._trace(f"registered plugin {info.name} ({info.source}) hooks: {', '.join(info.hooks) or 'none'}")
        self._cache.clear()

    # -- collectors ---------------------------------------------------------------------------
    def _collect(self, hook_name: str, key: Callable[[Any], str] = lambda s: s.name) -> dict[str, Any]:
        """Call a list-returning hook, keyed by `key`; the same key from two plugins is an error."""
        if hook_name in self._cache:
            return self._cache[hook_name]
        out: dict[str, Any] = {}
        owner: dict[str, str] = {}
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            ok, items = self._call_isolated(impl, hook_name)
            for item in (items or []) if ok else []:
                k = key(item)
                if k in out:
                    raise PluginError(f"{hook_name}: '{k}' is registered by both '{owner[k]}' and '{impl.plugin_name}'")
                out[k], owner[k] = item, impl.plugin_name
        self._cache[hook_name] = out
        return out

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

    def kernel_backends(self) -> dict[str, Any]:
        return self._collect("facet3d_kernel_backends", key=lambda b: f"{b.op}/{b.name}")

    def register_commands(self, app: Any) -> None:
        for impl in self.pm.hook.facet3d_register_commands.get_hookimpls():
            self._call_isolated(impl, "facet3d_register_commands", app=app)

    def _call_isolated(self, impl: Any, hook_name: str, **kwargs: Any) -> tuple[bool, Any]:
        """Call one plugin's hook; if it raises, mark that plugin failed and carry on."""
        try:
            result = impl.function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - one plugin's bug must not take the CLI down
            self._trace(f"{impl.plugin_name}.{hook_name} raised {type(exc).__name__}: {exc}")
            info = self.infos.get(impl.plugin_name)
            if info is not None:
                info.status, info.error = "failed", f"{hook_name} raised {type(exc).__name__}: {exc}"
            return False, None
        self._trace(f"{impl.plugin_name}.{hook_name}" + (f" -> {len(result)} item(s)" if isinstance(result, list) else ""))
        return True, result


_PLUGINS: Facet3DPlugins | None = None


def get_plugins() -> Facet3DPlugins:
    """The process-wide plugin set, loaded from entry points on first use."""
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = Facet3DPlugins()
        _PLUGINS.load_entry_points()
    return _PLUGINS


def reset_plugins() -> None:
    """Forget loaded plugins (tests)."""
    global _PLUGINS
    _PLUGINS = None
