"""facet3d: a plugin-based command-line toolkit for point clouds, geometry and 3D vision."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("facet3d")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):  # `facet3d.hookimpl` without importing pluggy for every `import facet3d`
    if name == "hookimpl":
        from facet3d.core.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'facet3d' has no attribute {name!r}")
