"""`TriangleScene`: the triangle-splatting scene in its two forms, SH colour, mesh conversion, PLY I/O.

Forms
-----
* ``"ts"`` (Triangle Splatting): free triangles ``triangles [N, 3, 3]``; per triangle SH colour
  ``sh_dc [N, 3]`` + ``sh_rest [N, M, 3]`` (``M = (deg + 1)^2 - 1``, deg <= 3), evaluated at the
  triangle centroid; ``opacity [N]`` in [0, 1]; ``sigma [N]`` > 0.
* ``"ts+"`` (Triangle Splatting+): shared ``vertices [V, 3]`` + ``faces [T, 3]``; per-vertex SH
  (``sh_dc [V, 3]``, ``sh_rest [V, M, 3]``, evaluated at each vertex, interpolated across the
  triangle) and per-vertex ``opacity [V]`` (triangle opacity = min of its vertices'); one global
  ``sigma`` (a 0-d tensor).

All values are *activated* (opacity in [0, 1], sigma > 0); a trainer keeps raw parameters and
builds a scene from them.  Colour = ``max(0, 0.5 + SH(dir))`` with dir the unit vector from the
camera centre to the evaluation point (3DGS convention; dc alone gives ``0.5 + C0 * dc``).

PLY layout: see docs/triangle_splat_ply.md (`save_ply` / `load_ply`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facet3d.core.errors import FormatError, GeometryError, InputError

__all__ = ["TriangleScene", "eval_sh", "rgb_to_sh", "sh_to_rgb", "SH_C0", "HARD_SIGMA", "is_scene_ply"]

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
HARD_SIGMA = 1e-4  # "sigma -> 0" used for meshes (TS+ anneals to this value)
PLY_TAG = "facet3d_triangle_splatting"


def is_scene_ply(path) -> bool:
    """True when ``path`` is a PLY whose header carries the triangle-splatting tag (`save_ply`)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return head.startswith(b"ply") and PLY_TAG.encode() in head


def rgb_to_sh(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(dc: Tensor) -> Tensor:
    return dc * SH_C0 + 0.5


def eval_sh(deg: int, dc: Tensor, rest: Tensor | None, dirs: Tensor) -> Tensor:
    """Real SH of degree ``deg`` (0-3), 3DGS constants and sign convention.

    dc [..., C], rest [..., M >= (deg+1)^2 - 1, C] or None, dirs [..., 3] unit -> [..., C] (no +0.5).
    """
    if not 0 <= deg <= 3:
        raise GeometryError(f"SH degree must be 0..3, got {deg}")
    res = SH_C0 * dc
    if deg == 0:
        return res
    sh = rest
    x, y, z = (dirs[..., i:i + 1] for i in range(3))
    res = res - SH_C1 * y * sh[..., 0, :] + SH_C1 * z * sh[..., 1, :] - SH_C1 * x * sh[..., 2, :]
    if deg > 1:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        res = (res + SH_C2[0] * xy * sh[..., 3, :] + SH_C2[1] * yz * sh[..., 4, :]
               + SH_C2[2] * (2 * zz - xx - yy) * sh[..., 5, :] + SH_C2[3] * xz * sh[..., 6, :]
               + SH_C2[4] * (xx - yy) * sh[..., 7, :])
        if deg > 2:
            res = (res + SH_C3[0] * y * (3 * xx - yy) * sh[..., 8, :] + SH_C3[1] * xy * z * sh[..., 9, :]
                   + SH_C3[2] * y * (4 * zz - xx - yy) * sh[..., 10, :]
                   + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[..., 11, :]
                   + SH_C3[4] * x * (4 * zz - xx - yy) * sh[..., 12, :] + SH_C3[5] * z * (xx - yy) * sh[..., 13, :]
                   + SH_C3[6] * x * (xx - 3 * yy) * sh[..., 14, :])
    return res


def _sh_degree(rest: Tensor) -> int:
    m = rest.shape[-2]
    for d in range(4):
        if (d + 1) ** 2 - 1 == m:
            return d
    raise GeometryError(f"sh_rest has {m} coefficients; expected 0, 3, 8 or 15")


@dataclass
class TriangleScene:
    """A triangle-splatting scene (see the module docstring for the two forms)."""

    form: str  # "ts" or "ts+"
    sh_dc: Tensor
    sh_rest: Tensor
    opacity: Tensor
    sigma: Tensor
    triangles: Tensor | None = None  # ts: [N, 3, 3]
    vertices: Tensor | None = None  # ts+: [V, 3]
    faces: Tensor | None = None  # ts+: [T, 3] int64
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.form not in ("ts", "ts+"):
            raise GeometryError(f"form must be 'ts' or 'ts+', got {self.form!r}")
        if self.form == "ts":
            if self.triangles is None or self.triangles.ndim != 3 or self.triangles.shape[1:] != (3, 3):
                raise GeometryError("ts form needs triangles [N, 3, 3]")
            n = self.triangles.shape[0]
            if self.sigma.shape != (n,):
                raise GeometryError(f"ts sigma must be [N]={n}, got {tuple(self.sigma.shape)}")
        else:
            if self.vertices is None or self.faces is None or self.vertices.ndim != 2 or self.faces.ndim != 2:
                raise GeometryError("ts+ form needs vertices [V, 3] and faces [T, 3]")
            n = self.vertices.shape[0]
            if self.sigma.ndim != 0:
                raise GeometryError("ts+ sigma is one global value (0-d tensor)")
            if self.faces.numel() and (int(self.faces.min()) < 0 or int(self.faces.max()) >= n):
                raise GeometryError("face index out of range")
        if self.sh_dc.shape != (n, 3) or self.opacity.shape != (n,) or self.sh_rest.shape[0] != n:
            raise GeometryError(f"sh_dc [n, 3], sh_rest [n, M, 3], opacity [n] needed with n={n}")
        _sh_degree(self.sh_rest)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_triangles(cls, triangles, colors=None, opacity=1.0, sigma=HARD_SIGMA, sh_degree: int = 0,
                       dtype=torch.float32) -> "TriangleScene":
        """TS form from ``triangles [N, 3, 3]`` and RGB ``colors [N, 3]`` in [0, 1] (grey if None)."""
        tri = torch.as_tensor(np.asarray(triangles) if not isinstance(triangles, Tensor) else triangles, dtype=dtype)
        n = tri.shape[0]
        rgb = torch.full((n, 3), 0.7, dtype=dtype) if colors is None else torch.as_tensor(colors, dtype=dtype).reshape(n, 3)
        op = torch.as_tensor(opacity, dtype=dtype).expand(n).clone()
        sg = torch.as_tensor(sigma, dtype=dtype).expand(n).clone()
        rest = torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3, dtype=dtype)
        return cls("ts", rgb_to_sh(rgb), rest, op, sg, triangles=tri)

    @classmethod
    def from_mesh(cls, vertices, faces, vertex_colors=None, opacity=1.0, sigma=HARD_SIGMA, sh_degree: int = 0,
                  dtype=torch.float32) -> "TriangleScene":
        """TS+ form: shared vertices, per-vertex colour (grey if None) and opacity, global sigma."""
        v = torch.as_tensor(np.asarray(vertices), dtype=dtype)
        f = torch.as_tensor(np.asarray(faces), dtype=torch.int64).reshape(-1, 3)
        n = v.shape[0]
        rgb = torch.full((n, 3), 0.7, dtype=dtype) if vertex_colors is None else \
            torch.as_tensor(np.asarray(vertex_colors), dtype=dtype)[:, :3]
        op = torch.as_tensor(opacity, dtype=dtype).expand(n).clone()
        rest = torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3, dtype=dtype)
        return cls("ts+", rgb_to_sh(rgb), rest, op, torch.as_tensor(float(sigma), dtype=dtype), vertices=v, faces=f)

    @classmethod
    def from_geometry(cls, geom, sigma: float = HARD_SIGMA, opacity: float = 1.0, dtype=torch.float32) -> "TriangleScene":
        """Any mesh `Geometry` -> scene with sigma -> 0 and opacity 1 (a hard, opaque mesh).

        Vertex colours (or none: grey 0.7) -> TS+ form; face colours (and no vertex colours) -> TS form.
        """
        if not getattr(geom, "is_mesh", False):
            raise GeometryError("triangle splatting needs a mesh (the geometry has no faces)")
        v, f = np.asarray(geom.vertices, dtype=np.float64), np.asarray(geom.faces, dtype=np.int64)
        if geom.colors is None and geom.face_colors is not None:
            fc = np.asarray(geom.face_colors, dtype=np.float64)[:, :3]
            return cls.from_triangles(v[f], fc, opacity, sigma, dtype=dtype)
        vc = None if geom.colors is None else np.asarray(geom.colors, dtype=np.float64)[:, :3]
        return cls.from_mesh(v, f, vc, opacity, sigma, dtype=dtype)

    # ------------------------------------------------------------ properties
    @property
    def sh_degree(self) -> int:
        return _sh_degree(self.sh_rest)

    def __len__(self) -> int:
        """Number of triangles."""
        return self.triangles.shape[0] if self.form == "ts" else self.faces.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.sh_dc.dtype

    @property
    def device(self) -> torch.device:
        return self.sh_dc.device

    def to(self, device=None, dtype=None) -> "TriangleScene":
        def cv(t):
            if t is None:
                return None
            return t.to(device) if not t.is_floating_point() else t.to(device, dtype or t.dtype)
        return TriangleScene(self.form, cv(self.sh_dc), cv(self.sh_rest), cv(self.opacity), cv(self.sigma),
                             cv(self.triangles), cv(self.vertices), cv(self.faces), dict(self.meta))

    def triangle_vertices(self) -> Tensor:
        """``[N, 3, 3]`` world-space corners of every triangle."""
        return self.triangles if self.form == "ts" else self.vertices[self.faces]

    def triangle_opacity(self) -> Tensor:
        return self.opacity if self.form == "ts" else self.opacity[self.faces].amin(-1)

    def triangle_sigma(self) -> Tensor:
        return self.sigma if self.form == "ts" else self.sigma.expand(len(self))

    def triangle_colors(self, cam_center: Tensor) -> Tensor:
        """Colours seen from ``cam_center [3]``: ts -> ``[N, 3]`` (SH at the centroid);
        ts+ -> ``[N, 3, 3]`` per corner (SH at each vertex)."""
        pts = self.triangles.mean(1) if self.form == "ts" else self.vertices
        d = pts - cam_center.to(pts.dtype)
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rgb = (eval_sh(self.sh_degree, self.sh_dc, self.sh_rest, d) + 0.5).clamp_min(0.0)
        return rgb if self.form == "ts" else rgb[self.faces]

    def to_ts(self) -> "TriangleScene":
        """TS+ -> TS (triangles unshared; colour = mean of the corners' SH, opacity = min)."""
        if self.form == "ts":
            return self
        f = self.faces
        return TriangleScene("ts", self.sh_dc[f].mean(1), self.sh_rest[f].mean(1), self.triangle_opacity(),
                             self.triangle_sigma().clone(), triangles=self.vertices[f])

    # ------------------------------------------------------------ PLY
    def save_ply(self, path, ascii: bool = False) -> Path:
        """Write the documented PLY layout (docs/triangle_splat_ply.md) atomically."""
        from facet3d.core.io.api import atomic_output
        from facet3d.core.io.ply import write
        from facet3d.core.io.record import Geometry

        f32 = lambda t: t.detach().cpu().to(torch.float32).numpy()  # noqa: E731
        deg = self.sh_degree
        rest = lambda t: f32(t.transpose(1, 2).reshape(t.shape[0], -1))  # noqa: E731 - channel-major
        rgb = np.clip(f32(sh_to_rgb(self.sh_dc)), 0, 1)
        comments = [PLY_TAG + " 1", f"form {self.form}", f"sh_degree {deg}"]
        if self.form == "ts":
            n = len(self)
            verts = f32(self.triangles).reshape(-1, 3)
            faces = np.arange(3 * n, dtype=np.int64).reshape(n, 3)
            fattr = {"opacity": f32(self.opacity), "sigma": f32(self.sigma), "f_dc": f32(self.sh_dc)}
            if deg:
                fattr["f_rest"] = rest(self.sh_rest)
            geom = Geometry(verts, faces, face_colors=rgb, face_attributes=fattr, meta={"comments": comments})
        else:
            comments.append(f"sigma {float(self.sigma):.9g}")
            vattr = {"opacity": f32(self.opacity), "f_dc": f32(self.sh_dc)}
            if deg:
                vattr["f_rest"] = rest(self.sh_rest)
            geom = Geometry(f32(self.vertices), self.faces.cpu().numpy(), colors=rgb, attributes=vattr,
                            meta={"comments": comments})
        with atomic_output(path) as tmp:
            write(tmp, geom, ascii=ascii)
        return Path(path)

    @classmethod
    def load_ply(cls, path, dtype=torch.float32) -> "TriangleScene":
        """Read a file written by `save_ply`."""
        from facet3d.core.io.ply import read

        try:
            geom = read(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read PLY ({exc})") from exc
        info = {}
        for c in geom.meta.get("comments", []):
            k, _, v = str(c).partition(" ")
            info[k] = v.strip()
        if PLY_TAG not in info:
            raise FormatError(f"{path}: not a triangle-splatting PLY (no '{PLY_TAG}' comment)")
        form, deg = info.get("form", "ts"), int(info.get("sh_degree", 0))
        m = (deg + 1) ** 2 - 1
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731

        def cols(attrs: dict, name: str, k: int, n: int) -> np.ndarray:
            if k == 0:
                return np.zeros((n, 0))
            try:
                return np.stack([attrs[f"{name}_{j}"] for j in range(k)], -1)
            except KeyError as exc:
                raise FormatError(f"{path}: missing property {exc}") from exc

        if form == "ts":
            fa, n = geom.face_attributes, len(geom.faces)
            tri = np.asarray(geom.vertices)[geom.faces]
            dc, rest_ = cols(fa, "f_dc", 3, n), cols(fa, "f_rest", 3 * m, n)
            op, sg = fa.get("opacity"), fa.get("sigma")
            if op is None or sg is None:
                raise FormatError(f"{path}: face opacity/sigma missing")
            return cls("ts", t(dc), t(rest_).reshape(n, 3, m).transpose(1, 2).contiguous(), t(op), t(sg),
                       triangles=t(tri))
        if form != "ts+":
            raise FormatError(f"{path}: unknown form {form!r}")
        va, n = geom.attributes, len(geom.vertices)
        dc, rest_ = cols(va, "f_dc", 3, n), cols(va, "f_rest", 3 * m, n)
        if "opacity" not in va or "sigma" not in info:
            raise FormatError(f"{path}: vertex opacity or sigma comment missing")
        faces = torch.as_tensor(np.asarray(geom.faces if geom.faces is not None else np.zeros((0, 3))), dtype=torch.int64)
        return cls("ts+", t(dc), t(rest_).reshape(n, 3, m).transpose(1, 2).contiguous(), t(va["opacity"]),
                   torch.as_tensor(float(info["sigma"]), dtype=dtype), vertices=t(geom.vertices), faces=faces)
