"""Built-in plugin `risurconv` (being built)."""
