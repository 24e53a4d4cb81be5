"""Built-in plugin `viewer`: ``facet3d view``, a browser viewer on viser (optional extra ``facet3d[view]``).

* `server` - `ViewerServer`: layers -> viser scene, the preview / exact switch for triangle-splat scenes;
* `cli`    - the command only (parse, call, print).

What a path shows is decided in `facet3d.core.viewing` (core readers + every plugin's `ViewLoader`),
so another plugin's scenes appear here without this plugin knowing them.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl


@hookimpl
def facet3d_register_commands(app) -> None:
    from facet3d.plugins.viewer.cli import register

    register(app)
