"""Built-in plugin `mesh_recovery` (being built)."""
