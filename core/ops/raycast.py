"""Ray casting a triangle mesh through `Cameras`: depth, ray distance, triangle id and barycentrics.

One ray per pixel centre (integer pixel coordinates, `Cameras.rays`), cast with open3d's
``RaycastingScene`` (imported when a caster is built; it computes in float32).  Conventions:

* ``distance`` ``[B, H, W]``: length along the unit ray from the camera centre to the hit (inf: miss);
* ``depth`` ``[B, H, W]``: z in the camera frame, ``distance * cos(angle to the optical axis)``
  (what `Cameras.unproject` takes and renderers write), **0 where missed**;
* ``triangle`` ``[B, H, W]`` int64 face index, -1 where missed;
* ``barycentric`` ``[B, H, W, 3]`` weights of the face's vertices 0, 1, 2 (hit =
  ``sum_k w_k V[f_k]``), 0 where missed;
* ``hit`` ``[B, H, W]`` bool.

Lens distortion of the cameras is not applied (pinhole rays, as `Cameras.rays`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import GeometryError

__all__ = ["MeshRaycaster", "raycast_mesh", "pixel_centres"]


def pixel_centres(height: int, width: int, dtype=torch.float64) -> Tensor:
    """``[H * W, 2]`` (u, v) of every pixel centre, row-major (v = row, u = column)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], -1)


class MeshRaycaster:
    """A mesh ready for ray casting (the acceleration structure is built once).

    vertices ``[V, 3]``, faces ``[T, 3]`` (numpy or torch).
    """

    def __init__(self, vertices, faces) -> None:
        from facet3d.core.o3d import import_open3d
        o3d = import_open3d()

        v = np.ascontiguousarray(_numpy(vertices), dtype=np.float32)
        f = np.ascontiguousarray(_numpy(faces), dtype=np.uint32)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or not len(f):
            raise GeometryError(f"ray casting needs vertices [V, 3] and faces [T, 3], got {v.shape} and {f.shape}")
        if f.max() >= len(v):
            raise GeometryError(f"faces refer to vertex {int(f.max())} of {len(v)}")
        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))

    def cast_rays(self, origins, directions) -> dict[str, Tensor]:
        """Rays ``origins [N, 3]``, ``directions [N, 3]`` -> ``t [N]`` (in units of the direction's
        length; inf: miss), ``triangle [N]`` (-1: miss), ``barycentric [N, 3]`` (0: miss)."""
        rays = np.concatenate([_numpy(origins), _numpy(directions)], -1).astype(np.float32)
        hit = self.scene.cast_rays(self._o3d.core.Tensor(np.ascontiguousarray(rays)))
        t = torch.from_numpy(hit["t_hit"].numpy().astype(np.float64))
        ok = torch.isfinite(t)
        tri = torch.from_numpy(hit["primitive_ids"].numpy().astype(np.int64))
        uv = torch.from_numpy(hit["primitive_uvs"].numpy().astype(np.float64))
        # open3d's (u, v) weight vertices 1 and 2
        bary = torch.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1)
        return dict(t=t, triangle=torch.where(ok, tri, torch.full_like(tri, -1)),
                    barycentric=torch.where(ok[:, None], bary, torch.zeros_like(bary)))

    def render(self, cameras) -> dict[str, Tensor]:
        """Cast one ray per pixel centre of every camera (module docstring for the outputs).

        cameras: B `Cameras` with one image size
        """
        if cameras.image_size is None:
            raise GeometryError("ray casting needs cameras with an image size")
        sizes = {tuple(s) for s in cameras.image_size.tolist()}
        if len(sizes) != 1:
            raise GeometryError(f"cameras have different image sizes {sorted(sizes)}; cast them separately")
        H, W = sizes.pop()
        cams = cameras.to("cpu", torch.float64)
        pix = pixel_centres(H, W)
        keys = ("distance", "depth", "triangle", "barycentric", "hit")
        out: dict[str, list[Tensor]] = {k: [] for k in keys}
        for b in range(len(cams)):
            o, d = cams[b].rays(pix)  # [1, N, 3] each, unit directions
            r = self.cast_rays(o[0], d[0])
            hit = torch.isfinite(r["t"])
            cos = d[0] @ cams.R[b, 2]  # the optical axis in world coordinates is R's third row
            out["distance"].append(r["t"])
            out["depth"].append(torch.where(hit, r["t"] * cos, torch.zeros_like(cos)))
            out["triangle"].append(r["triangle"])
            out["barycentric"].append(r["barycentric"])
            out["hit"].append(hit)
        return {k: torch.stack(v).reshape((len(cams), H, W) + ((3,) if k == "barycentric" else ()))
                for k, v in out.items()}


def raycast_mesh(vertices, faces, cameras) -> dict[str, Tensor]:
    """`MeshRaycaster(vertices, faces).render(cameras)`: per-pixel distance, depth, triangle,
    barycentric and hit ``[B, H, W(, 3)]`` (module docstring)."""
    return MeshRaycaster(vertices, faces).render(cameras)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
