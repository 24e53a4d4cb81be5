"""`Geometry`: what every reader returns and every writer takes.

Plain numpy on purpose: `facet3d info` reads files without importing torch or open3d.
The torch structures (`facet3d.core.structures`) are built from it when needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Geometry:
    """A point cloud (``faces is None``) or a triangle mesh, with optional attributes.

    vertices:      float64/float32 [N, 3]   points or mesh vertices
    faces:         int64 [F, 3] or None     triangles (polygons are fan-triangulated on read)
    normals:       float [N, 3] or None     per-point / per-vertex normals
    colors:        float32 [N, 3|4] in [0, 1] or None
    face_colors:   float32 [F, 3|4] in [0, 1] or None
    face_normals:  float [F, 3] or None
    uv:            float [N, 2] or None     texture coordinates per vertex
    texture:       PIL.Image or None        the base-colour texture, when one was found
    attributes:    name -> [N, ...] array   extra per-point properties (intensity, labels, ...)
    face_attributes: name -> [F, ...] array
    meta:          format-specific facts (LAS header, PLY comments, source format, ...)
    source:        format-native data a writer of the same format may reuse (e.g. ``"las_header"``:
                   a copy of the laspy header, so LAS -> LAS keeps point format, scales, VLRs).
                   Never serialised (not JSON); steps that rebuild the geometry may drop it.
    """

    vertices: np.ndarray
    faces: np.ndarray | None = None
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    face_colors: np.ndarray | None = None
    face_normals: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: Any = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    face_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be [N, 3], got {self.vertices.shape}")
        if self.faces is not None:
            self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None and len(self.faces) > 0

    @property
    def kind(self) -> str:
        return "mesh" if self.is_mesh else "point_cloud"

    @property
    def num_points(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return 0 if self.faces is None else int(self.faces.shape[0])

    def attribute_names(self) -> list[str]:
        """Names of every attribute present, standard ones first."""
        names = [n for n in ("normals", "colors", "face_colors", "face_normals", "uv") if getattr(self, n) is not None]
        if self.texture is not None:
            names.append("texture")
        return names + sorted(self.attributes) + [f"face:{k}" for k in sorted(self.face_attributes)]
