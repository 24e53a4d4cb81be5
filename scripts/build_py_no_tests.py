"""setuptools `build_py` that leaves test modules out of the wheel (pyproject: [tool.setuptools.cmdclass]).

Kernel tests live beside the kernels (``kernels/<op>/test_*.py``, ``kernels/conftest.py``), inside
packages the wheel ships; setuptools' ``exclude-package-data`` filters data files only, not modules.
"""

from __future__ import annotations

from setuptools.command.build_py import build_py


def is_test_module(name: str) -> bool:
    return name == "conftest" or name.startswith("test_")


class BuildPyNoTests(build_py):
    def find_package_modules(self, package, package_dir):
        return [m for m in super().find_package_modules(package, package_dir) if not is_test_module(m[1])]
