"""`Cameras`: batched pinhole cameras in the OpenCV convention, and conversions to/from others.

Convention (OpenCV / COLMAP): camera axes x right, y down, z forward (into the scene).

    x_cam = R @ X_world + t                 R: [B, 3, 3] world-to-camera rotation, t: [B, 3]
    [u, v, 1] ~ K @ x_cam,  depth = z_cam   K: [B, 3, 3] intrinsics (fx, fy, cx, cy, skew)
    centre C = -R^T t                       (the camera position in world coordinates)

Pixel coordinates are continuous with the centre of the top-left pixel at (0, 0) as in OpenCV,
so the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5].  ``image_size`` is ``[B, 2]`` as
``(height, width)`` (pytorch3d's order); ``width`` / ``height`` properties give them separately.

Other conventions handled here:

* Blender / NeRF (``transforms.json``): 4x4 camera-to-world matrices with OpenGL axes (x right,
  y up, z backward).  ``c2w_cv = c2w_gl @ diag(1, -1, -1, 1)``; ``fx = W / (2 tan(fov_x / 2))``,
  principal point at the image centre unless K is given: ((W - 1)/2, (H - 1)/2) in this module's
  integer-pixel-centre convention (Blender renders with the optical axis through the centre of the
  image rectangle [-0.5, W - 0.5]; (W/2, H/2) would be half a pixel off).  See `from_blender`, `to_blender`,
  `from_nerf_transforms`.
* COLMAP ``images.txt``: ``qvec`` (w, x, y, z) and ``tvec`` are the world-to-camera R and t of
  this module as they are.  See `from_colmap`, `to_colmap`.
* Camera centre + camera-to-world rotation (e.g. Strecha ``.camera`` files / the fountain-P11
  ``cameras.json``: ``x_cam = R_file^T (X - C)``).  See `from_centre`, `load_strecha`.

Core JSON format (`save_json` / `load_json`)::

    {"format": "facet3d.cameras", "version": 1,
     "cameras": [{"name": "0000.jpg", "K": [[fx, s, cx], [0, fy, cy], [0, 0, 1]],
                  "R": [[...], [...], [...]], "t": [tx, ty, tz], "width": 768, "height": 512}, ...]}

R and t are world-to-camera, OpenCV axes, exactly the attributes of `Cameras`; a bare list of
camera objects is accepted on load too.  Cameras with lens distortion add
``"distortion_model": "OPENCV", "distortion": [k1, k2, p1, p2]`` to each entry (absent: pinhole;
files without them, older ones included, load as pinhole; the version stays 1).

Lens distortion (`distortion` ``[B, k]`` + `distortion_model`, COLMAP's model names and parameter
order, see `DISTORTION_PARAMS`) is carried along (indexing, `.to`, `resized`, JSON, COLMAP) but
*not applied*: `project`, `unproject` and `rays` are pinhole (undistort the images first).
"""

from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import GeometryError, InputError
from ..ops.rotations import matrix_to_quaternion, quaternion_to_matrix

__all__ = ["Cameras", "intrinsics_matrix", "look_at_R", "orbit_cameras", "DISTORTION_PARAMS"]

_GL_TO_CV = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)  # flip y and z camera axes
FORMAT_NAME = "facet3d.cameras"

# COLMAP / OpenCV distortion models -> their coefficients (after the intrinsics), in COLMAP's order;
# they act on normalised camera coordinates, so resizing an image leaves them unchanged
DISTORTION_PARAMS: dict[str, tuple[str, ...]] = {
    "SIMPLE_RADIAL": ("k1",), "RADIAL": ("k1", "k2"), "OPENCV": ("k1", "k2", "p1", "p2"),
    "FULL_OPENCV": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
    "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4"), "FOV": ("omega",),
    "SIMPLE_RADIAL_FISHEYE": ("k",), "RADIAL_FISHEYE": ("k1", "k2"),
    "THIN_PRISM_FISHEYE": ("k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1"),
}
# models that bend rays even with all coefficients 0
_NOT_PINHOLE = {"OPENCV_FISHEYE", "FOV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "THIN_PRISM_FISHEYE"}


def intrinsics_matrix(fx, fy, cx, cy, skew=0.0, dtype=torch.float64) -> Tensor:
    """Build ``K [..., 3, 3]`` from broadcastable fx, fy, cx, cy (and skew)."""
    fx, fy, cx, cy, skew = (torch.as_tensor(a, dtype=dtype) for a in (fx, fy, cx, cy, skew))
    fx, fy, cx, cy, skew = torch.broadcast_tensors(fx, fy, cx, cy, skew)
    z, o = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, skew, cx, z, fy, cy, z, z, o], -1).reshape(fx.shape + (3, 3))


def _batched(x, dims: int, dtype, device) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=dtype, device=device)
    return t[None] if t.ndim == dims else t


class Cameras:
    """A batch of B pinhole cameras (OpenCV convention; see the module docstring).

    K: ``[B, 3, 3]``, R: ``[B, 3, 3]`` world-to-camera, t: ``[B, 3]``, image_size: ``[B, 2]``
    (height, width) or one ``(height, width)`` for all; names: optional B strings.
    Unbatched ``[3, 3]`` / ``[3]`` inputs are taken as B = 1.  Default dtype float64: poses of
    large scenes lose millimetres in float32.
    distortion: optional ``[B, k]`` (or ``[k]`` for all) coefficients of ``distortion_model`` (a key
    of `DISTORTION_PARAMS`; k = its number of coefficients); stored, not applied.
    """

    def __init__(self, K, R, t, image_size=None, names: Sequence[str] | None = None,
                 dtype: torch.dtype = torch.float64, device=None, distortion=None,
                 distortion_model: str | None = None) -> None:
        self.K = _batched(K, 2, dtype, device)
        self.R = _batched(R, 2, dtype, self.K.device)
        self.t = _batched(t, 1, dtype, self.K.device)
        B = max(len(self.K), len(self.R), len(self.t))
        try:
            self.K, self.R, self.t = (self.K.expand(B, 3, 3), self.R.expand(B, 3, 3), self.t.expand(B, 3))
        except RuntimeError as exc:
            raise GeometryError(f"camera shapes do not agree: K {tuple(self.K.shape)}, R {tuple(self.R.shape)}, "
                                f"t {tuple(self.t.shape)}") from exc
        for name, a in (("K", self.K), ("R", self.R), ("t", self.t)):
            if not bool(torch.isfinite(a).all()):
                raise GeometryError(f"camera {name} has non-finite entries")
        if image_size is None:
            self.image_size = None
        else:
            self.image_size = _batched(image_size, 1, torch.int64, self.K.device).expand(B, 2).clone()
        self.names = list(names) if names is not None else [f"{i:04d}" for i in range(B)]
        if len(self.names) != B:
            raise GeometryError(f"{len(self.names)} names for {B} cameras")
        self.device = self.K.device
        self.distortion, self.distortion_model = _check_distortion(distortion, distortion_model, B, self.K)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.K.shape[0]

    def __repr__(self) -> str:
        lens = f", distortion={self.distortion_model}" if self.distortion_model else ""
        return f"Cameras(B={len(self)}, device={self.device}{lens})"

    @property
    def has_distortion(self) -> bool:
        """True when some camera's lens model bends rays (non-zero coefficients, or a fisheye/FOV model)."""
        if self.distortion_model is None:
            return False
        return self.distortion_model in _NOT_PINHOLE or bool((self.distortion != 0).any())

    def _like(self, K, R, t, image_size, names, distortion, dtype=None) -> "Cameras":
        """A new batch with this one's distortion model (every constructor call goes through here)."""
        return Cameras(K, R, t, image_size, names, dtype=dtype or K.dtype, device=K.device,
                       distortion=distortion, distortion_model=self.distortion_model)

    def __getitem__(self, index) -> "Cameras":
        idx = [range(len(self))[index]] if isinstance(index, int) else index
        if isinstance(idx, slice):
            idx = list(range(len(self)))[idx]
        idx_t = torch.as_tensor(idx, device=self.device)
        if idx_t.dtype == torch.bool:
            idx_t = idx_t.nonzero().flatten()
        names = [self.names[int(i)] for i in idx_t.tolist()]
        size = None if self.image_size is None else self.image_size[idx_t]
        dist = None if self.distortion is None else self.distortion[idx_t]
        return self._like(self.K[idx_t], self.R[idx_t], self.t[idx_t], size, names, dist)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Cameras":
        """The cameras on ``device`` and/or in float ``dtype`` (image_size stays int64)."""
        dtype = dtype or self.K.dtype
        size = None if self.image_size is None else self.image_size.to(device)
        dist = None if self.distortion is None else self.distortion.to(device, dtype)
        return self._like(self.K.to(device, dtype), self.R.to(device, dtype), self.t.to(device, dtype), size,
                          self.names, dist, dtype)

    def resized(self, height: int, width: int) -> "Cameras":
        """The same cameras for images resampled to ``height x width`` (every camera; needs image_size).

        K's rows scale with the size ratios; pixel centres sit at integer coordinates, so the
        principal point maps as ``u' = (u + 0.5) * s - 0.5`` (the image edges -0.5 and W - 0.5 map
        to -0.5 and W' - 0.5).
        """
        if self.image_size is None:
            raise GeometryError("resized needs cameras with an image size")
        K = self.K.clone()
        sx = width / self.width.to(K.dtype)
        sy = height / self.height.to(K.dtype)
        K[:, 0, 0] *= sx
        K[:, 0, 1] *= sx
        K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5
        K[:, 1, 1] *= sy
        K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5
        # distortion acts on normalised coordinates: unchanged by resampling
        return self._like(K, self.R, self.t, (int(height), int(width)), self.names, self.distortion)

    def with_image_size(self, height: int, width: int) -> "Cameras":
        """These cameras with image size ``height x width``: K scaled when they had another size, kept
        when they had none."""
        if self.image_size is None:
            return self._like(self.K, self.R, self.t, (int(height), int(width)), self.names, self.distortion)
        return self.resized(height, width)

    @property
    def width(self) -> Tensor | None:
        """``[B]`` int64 image widths (None when unknown)."""
        return None if self.image_size is None else self.image_size[:, 1]

    @property
    def height(self) -> Tensor | None:
        return None if self.image_size is None else self.image_size[:, 0]

    # ------------------------------------------------------------------ geometry
    def centers(self) -> Tensor:
        """``[B, 3]`` camera centres in world coordinates, ``C = -R^T t``."""
        return -(self.R.transpose(1, 2) @ self.t[..., None])[..., 0]

    def world_to_camera(self) -> Tensor:
        """``[B, 4, 4]`` homogeneous world-to-camera matrices ``[[R, t], [0, 1]]``."""
        T = torch.zeros(len(self), 4, 4, dtype=self.K.dtype, device=self.device)
        T[:, :3, :3], T[:, :3, 3], T[:, 3, 3] = self.R, self.t, 1
        return T

    def camera_to_world(self) -> Tensor:
        """``[B, 4, 4]`` camera-to-world (OpenCV axes): ``[[R^T, C], [0, 1]]``."""
        T = torch.zeros(len(self), 4, 4, dtype=self.K.dtype, device=self.device)
        T[:, :3, :3], T[:, :3, 3], T[:, 3, 3] = self.R.transpose(1, 2), self.centers(), 1
        return T

    def _points(self, points) -> Tensor:
        p = torch.as_tensor(points, dtype=self.K.dtype, device=self.device) if not isinstance(points, Tensor) \
            else points.to(self.device, self.K.dtype)
        if p.shape[-1] != 3 or p.ndim not in (2, 3):
            raise GeometryError(f"points must be [N, 3] or [B, N, 3], got {tuple(p.shape)}")
        return p

    def transform_to_camera(self, points) -> Tensor:
        """World ``points [N, 3]`` (shared) or ``[B, N, 3]`` -> camera coordinates ``[B, N, 3]``."""
        p = self._points(points)
        return p @ self.R.transpose(1, 2) + self.t[:, None, :]

    def project(self, points) -> tuple[Tensor, Tensor]:
        """World ``points [N, 3]`` or ``[B, N, 3]`` -> ``(pixels [B, N, 2], depth [B, N])``.

        depth is z in the camera frame; points with depth <= 0 are behind the camera and their
        pixels are meaningless (inf/nan at depth 0) - mask them with ``depth > 0``.
        """
        xc = self.transform_to_camera(points)
        depth = xc[..., 2]
        uvw = xc @ self.K.transpose(1, 2)
        return uvw[..., :2] / uvw[..., 2:3], depth

    def in_image(self, pixels: Tensor, depth: Tensor | None = None) -> Tensor:
        """``[B, N]`` bool: pixels inside the image (and in front of the camera when depth given)."""
        if self.image_size is None:
            raise GeometryError("cameras have no image size")
        w = self.width[:, None].to(pixels.dtype)
        h = self.height[:, None].to(pixels.dtype)
        u, v = pixels[..., 0], pixels[..., 1]
        ok = (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
        return ok if depth is None else ok & (depth > 0)

    def unproject(self, pixels, depth) -> Tensor:
        """``pixels [B, N, 2]`` (or ``[N, 2]`` shared) and ``depth [B, N]`` (z, not ray length) ->
        world points ``[B, N, 3]``: ``X = R^T (depth * K^-1 [u, v, 1] - t)``."""
        px = torch.as_tensor(pixels, dtype=self.K.dtype, device=self.device)
        d = torch.as_tensor(depth, dtype=self.K.dtype, device=self.device)
        if px.ndim == 2:
            px = px.expand(len(self), -1, -1)
        homo = torch.cat([px, torch.ones_like(px[..., :1])], dim=-1)
        rays = torch.linalg.solve(self.K[:, None], homo[..., None])[..., 0]  # K^-1 [u, v, 1], z = 1
        xc = rays * d[..., None]
        return (xc - self.t[:, None, :]) @ self.R

    def rays(self, pixels) -> tuple[Tensor, Tensor]:
        """World-space rays through ``pixels [B, N, 2]`` -> ``(origins [B, N, 3], unit directions [B, N, 3])``."""
        px = torch.as_tensor(pixels, dtype=self.K.dtype, device=self.device)
        if px.ndim == 2:
            px = px.expand(len(self), -1, -1)
        far = self.unproject(px, torch.ones(px.shape[:-1], dtype=self.K.dtype, device=self.device))
        origins = self.centers()[:, None, :].expand_as(far)
        d = far - origins
        return origins, d / d.norm(dim=-1, keepdim=True)

    # ------------------------------------------------------------------ Blender / NeRF
    @classmethod
    def from_blender(cls, c2w, fov_x: float | Sequence[float] | None = None, K=None, width: int | None = None,
                     height: int | None = None, names=None, dtype=torch.float64) -> "Cameras":
        """Blender/NeRF camera-to-world ``[B, 4, 4]`` (or ``[B, 3, 4]``; OpenGL axes) -> `Cameras`.

        Give either ``fov_x`` (horizontal field of view, radians, with ``width`` and ``height``;
        square pixels, principal point at the image centre ((W - 1)/2, (H - 1)/2)) or ``K [B, 3, 3]``
        / ``[3, 3]``.
        """
        M = _batched(c2w, 2, dtype, None)
        if M.shape[-2:] not in ((4, 4), (3, 4)):
            raise GeometryError(f"c2w must be [B, 4, 4] or [B, 3, 4], got {tuple(M.shape)}")
        R_c2w = M[:, :3, :3] * _GL_TO_CV.to(dtype)  # scale columns: flip camera y, z axes
        C = M[:, :3, 3]
        if K is None:
            if fov_x is None or width is None or height is None:
                raise GeometryError("from_blender needs K, or fov_x with width and height")
            f = 0.5 * width / torch.tan(0.5 * torch.as_tensor(fov_x, dtype=dtype))
            # the image spans [-0.5, W - 0.5]: its centre is (W - 1) / 2 with integer pixel centres
            K = intrinsics_matrix(f, f, (width - 1) / 2.0, (height - 1) / 2.0, dtype=dtype)
        R = R_c2w.transpose(1, 2)
        t = -(R @ C[..., None])[..., 0]
        size = None if width is None or height is None else (int(height), int(width))
        return cls(K, R, t, size, names, dtype=dtype)

    def to_blender(self) -> Tensor:
        """``[B, 4, 4]`` camera-to-world with OpenGL/Blender axes (inverse of `from_blender`)."""
        T = self.camera_to_world()
        T[:, :3, :3] = T[:, :3, :3] * _GL_TO_CV.to(device=T.device, dtype=T.dtype)
        return T

    def fov_x(self) -> Tensor:
        """``[B]`` horizontal field of view in radians (needs image_size)."""
        if self.image_size is None:
            raise GeometryError("cameras have no image size")
        return 2.0 * torch.atan(0.5 * self.width.to(self.K.dtype) / self.K[:, 0, 0])

    @classmethod
    def from_nerf_transforms(cls, path, width: int | None = None, height: int | None = None) -> "Cameras":
        """Read a NeRF ``transforms_*.json`` (``camera_angle_x`` + frames' ``transform_matrix``).

        The image size comes from ``w``/``h`` in the file, else from the arguments, else from the
        first frame's image (``file_path`` + ``.png``, read with Pillow).
        """
        with open(path) as fh:
            meta = json.load(fh)
        frames = meta.get("frames") or []
        if not frames or "camera_angle_x" not in meta:
            raise InputError(f"{path}: not a NeRF transforms file (needs camera_angle_x and frames)")
        width = int(meta.get("w", width or 0)) or None
        height = int(meta.get("h", height or 0)) or None
        if width is None or height is None:
            img = os.path.join(os.path.dirname(os.fspath(path)), frames[0]["file_path"])
            img = img if os.path.splitext(img)[1] else img + ".png"
            from PIL import Image
            with Image.open(img) as im:
                width, height = im.size
        c2w = np.array([f["transform_matrix"] for f in frames], dtype=np.float64)
        names = [f.get("file_path", f"{i:04d}") for i, f in enumerate(frames)]
        return cls.from_blender(c2w, fov_x=float(meta["camera_angle_x"]), width=width, height=height, names=names)

    # ------------------------------------------------------------------ COLMAP
    @classmethod
    def from_colmap(cls, qvec, tvec, K, image_size=None, names=None, dtype=torch.float64, distortion=None,
                    distortion_model: str | None = None) -> "Cameras":
        """COLMAP poses: ``qvec [B, 4]`` (w, x, y, z) and ``tvec [B, 3]``, world-to-camera; optional
        ``distortion [B, k]`` of ``distortion_model`` (COLMAP's parameters after the intrinsics)."""
        q = _batched(qvec, 1, dtype, None)
        return cls(K, quaternion_to_matrix(q), tvec, image_size, names, dtype=dtype, distortion=distortion,
                   distortion_model=distortion_model)

    def to_colmap(self) -> tuple[Tensor, Tensor]:
        """-> ``(qvec [B, 4] (w, x, y, z) with w >= 0, tvec [B, 3])`` as in COLMAP's images.txt."""
        return matrix_to_quaternion(self.R), self.t.clone()

    # ------------------------------------------------------------------ centre + rotation
    @classmethod
    def from_centre(cls, C, R_c2w, K, image_size=None, names=None, dtype=torch.float64) -> "Cameras":
        """Camera centres ``C [B, 3]`` and camera-to-world rotations ``R_c2w [B, 3, 3]`` (columns =
        camera axes in world, OpenCV axes): ``x_cam = R_c2w^T (X - C)``, i.e. R = R_c2w^T, t = -R C."""
        Rc = _batched(R_c2w, 2, dtype, None)
        Cc = _batched(C, 1, dtype, None)
        R = Rc.transpose(1, 2)
        return cls(K, R, -(R @ Cc[..., None])[..., 0], image_size, names, dtype=dtype)

    @classmethod
    def load_strecha(cls, path) -> "Cameras":
        """Read the fountain-P11 style ``cameras.json`` ({"cameras": {name: {K, R_file, C, width, height}}})."""
        with open(path) as fh:
            data = json.load(fh)
        cams = data.get("cameras")
        if not isinstance(cams, dict) or not cams:
            raise InputError(f"{path}: no 'cameras' mapping")
        names = sorted(cams)
        get = lambda k: np.array([cams[n][k] for n in names], dtype=np.float64)  # noqa: E731
        size = np.array([[cams[n]["height"], cams[n]["width"]] for n in names])
        return cls.from_centre(get("C"), get("R_file"), get("K"), size, names)

    # ------------------------------------------------------------------ JSON
    def to_dicts(self) -> list[dict]:
        out = []
        for i in range(len(self)):
            d = {"name": self.names[i], "K": self.K[i].tolist(), "R": self.R[i].tolist(), "t": self.t[i].tolist()}
            if self.image_size is not None:
                d["width"], d["height"] = int(self.width[i]), int(self.height[i])
            if self.distortion_model is not None:
                d["distortion_model"] = self.distortion_model
                d["distortion"] = self.distortion[i].tolist()
            out.append(d)
        return out

    def save_json(self, path) -> None:
        """Write the core camera format (see the module docstring)."""
        with open(path, "w") as fh:
            json.dump({"format": FORMAT_NAME, "version": 1, "cameras": self.to_dicts()}, fh, indent=1)

    @classmethod
    def from_dicts(cls, items: list[dict], dtype=torch.float64) -> "Cameras":
        if not items:
            raise InputError("camera list is empty")
        try:
            K = [c["K"] for c in items]
            R = [c["R"] for c in items]
            t = [c["t"] for c in items]
        except (KeyError, TypeError) as exc:
            raise InputError(f"camera entry lacks K, R or t ({exc})") from exc
        sizes = None
        if all("width" in c and "height" in c for c in items):
            sizes = [[int(c["height"]), int(c["width"])] for c in items]
        names = [str(c.get("name", f"{i:04d}")) for i, c in enumerate(items)]
        models = {c.get("distortion_model") for c in items}
        if len(models) > 1:
            raise InputError(f"cameras mix distortion models ({', '.join(sorted(map(str, models)))})")
        model = models.pop()
        dist = None
        if model is not None:
            try:
                dist = np.array([c["distortion"] for c in items], dtype=np.float64)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"camera entry with distortion_model {model} lacks a valid distortion list ({exc})") from exc
        try:
            return cls(np.array(K, dtype=np.float64), np.array(R, dtype=np.float64), np.array(t, dtype=np.float64),
                       sizes, names, dtype=dtype, distortion=dist, distortion_model=model)
        except GeometryError as exc:
            raise InputError(str(exc)) from exc

    @classmethod
    def load_json(cls, path) -> "Cameras":
        """Read the core camera format (or a bare list of camera objects)."""
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read cameras ({exc})") from exc
        items = data.get("cameras") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InputError(f"{path}: expected a 'cameras' list")
        return cls.from_dicts(items)


def _check_distortion(distortion, model: str | None, B: int, K: Tensor) -> tuple[Tensor | None, str | None]:
    """-> (distortion ``[B, k]`` in K's dtype / device, or None; the model name)."""
    if distortion is None and model is None:
        return None, None
    if model not in DISTORTION_PARAMS:
        raise GeometryError(f"unknown distortion model {model!r} (expected one of {', '.join(DISTORTION_PARAMS)})")
    k = len(DISTORTION_PARAMS[model])
    d = torch.zeros(B, k, dtype=K.dtype, device=K.device) if distortion is None else \
        torch.as_tensor(np.asarray(distortion) if not isinstance(distortion, Tensor) else distortion,
                        dtype=K.dtype, device=K.device)
    d = d[None] if d.ndim == 1 else d
    if d.ndim != 2 or d.shape[1] != k or d.shape[0] not in (1, B):
        raise GeometryError(f"{model} distortion needs [B, {k}] coefficients, got {tuple(d.shape)}")
    if d.device.type != "meta" and not bool(torch.isfinite(d).all()):
        raise GeometryError("camera distortion has non-finite entries")
    return d.expand(B, k).clone(), model


def look_at_R(eye, target, up=(0.0, 0.0, 1.0)) -> Tensor:
    """World-to-camera R ``[3, 3]`` (OpenCV axes) for a camera at ``eye`` looking at ``target``."""
    eye, target, up = (torch.as_tensor(a, dtype=torch.float64) for a in (eye, target, up))
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    if x.norm() < 1e-9:
        raise GeometryError("look_at: viewing direction is parallel to up")
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z])


def orbit_cameras(center, radius: float, n: int, image_size, fov: float = 50.0, elevation: float = 20.0,
                  up=(0.0, 0.0, 1.0), start_azimuth: float = 0.0, dtype=torch.float64) -> Cameras:
    """n cameras evenly spaced on a circle around ``center`` looking at it.

    image_size: (H, W) or one int; fov: horizontal field of view in degrees; elevation in degrees
    above the plane orthogonal to ``up``; principal point at the image centre ((W-1)/2, (H-1)/2 in
    the integer-pixel-centre convention).
    """
    H, W = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    c = torch.as_tensor(center, dtype=torch.float64).reshape(3)
    u = torch.as_tensor(up, dtype=torch.float64)
    u = u / u.norm()
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(a @ u)) > 0.9:
        a = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    e1 = a - (a @ u) * u
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(u, e1)
    el = math.radians(elevation)
    f = 0.5 * W / math.tan(0.5 * math.radians(fov))
    K = intrinsics_matrix(f, f, (W - 1) / 2.0, (H - 1) / 2.0)
    Rs, ts = [], []
    for i in range(n):
        az = math.radians(start_azimuth) + 2 * math.pi * i / n
        eye = c + radius * (math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * u)
        R = look_at_R(eye, c, u)
        Rs.append(R)
        ts.append(-(R @ eye))
    return Cameras(K.expand(n, 3, 3), torch.stack(Rs), torch.stack(ts), (H, W), dtype=dtype)
