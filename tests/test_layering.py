"""Library code never imports the CLI: only the command modules of plugins may use facet3d.cli.

core/, kernels/ and the plugins' work modules report through callbacks (facet3d.core.progress);
a plugin's ``cli.py`` (or a ``*_cli.py`` / ``commands.py`` command module) turns them into bars.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND_MODULES = {"cli.py", "commands.py"}


def _is_command_module(path: Path) -> bool:
    return path.name in COMMAND_MODULES or path.name.endswith("_cli.py")


def _cli_imports(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names
                  if n == "facet3d.cli" or n.startswith("facet3d.cli.")]
    return found


def _library_modules() -> list[Path]:
    files = [p for d in ("core", "kernels") for p in (REPO / d).rglob("*.py")]
    files += [p for p in (REPO / "plugins").rglob("*.py") if not _is_command_module(p)]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def test_library_modules_do_not_import_the_cli():
    modules = _library_modules()
    assert len(modules) > 30  # the walk found the package
    bad = [hit for p in modules for hit in _cli_imports(p)]
    assert not bad, "library code imports the CLI (use facet3d.core.progress callbacks):\n" + "\n".join(bad)


def test_the_check_sees_cli_imports(tmp_path):
    sample = tmp_path / "work.py"
    sample.write_text("import facet3d.cli.api\nimport facet3d.cliff\n\ndef f():\n"
                      "    from facet3d.cli.console import err\n    from facet3d.core import progress\n")
    hits = _cli_imports(sample, tmp_path)
    assert hits == ["work.py:1 imports facet3d.cli.api", "work.py:5 imports facet3d.cli.console"]
