"""Built-in plugin `triangle_splatting` (being built: see its issue)."""
