"""Where facet3d's own files are: the sample data of a source checkout."""

from __future__ import annotations

from pathlib import Path


def default_sample_dir() -> Path | None:
    """sample_data/ of a source checkout (the repository root is the facet3d package), else None."""
    import facet3d

    candidate = Path(facet3d.__file__).resolve().parent / "sample_data"
    return candidate if candidate.is_dir() else None
