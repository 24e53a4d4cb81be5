"""facet3d: a plugin-based command-line toolkit for point clouds, geometry and 3D vision."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("facet3d")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
