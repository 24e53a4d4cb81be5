"""`ViewerServer`: `facet3d.core.viewing` layers served to the browser by viser.

Meshes go as GLB (per-vertex colours kept), clouds as float32 positions (float16 loses millimetres a few
metres out) after `shift_for_display`, cameras as frustums (OpenCV axes, camera-to-world pose, vertical
fov) with their image thumbnails. A triangle-splat scene shows as its preview mesh; the "Splat view"
control switches to *exact*: for each browser's camera the plugin's renderer draws the scene (softness,
opacity, SH) and the image becomes that browser's background, the preview hidden. Renders run on one
worker thread that always takes the newest camera, so a moving camera never queues stale frames.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from typing import Any

import numpy as np

from facet3d.core.errors import UsageError
from facet3d.core.viewing import CamerasLayer, Layer, MeshLayer, PointsLayer, SplatLayer, shift_for_display

__all__ = ["ViewerServer", "viser_available", "viser_camera", "start_view", "MISSING_VISER"]

MISSING_VISER = "facet3d view needs viser, an optional extra: pip install 'facet3d[view]' (or pip install viser)"
UPS = ("+x", "+y", "+z", "-x", "-y", "-z")


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def viser_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("viser") is not None


def _quat_wxyz(R: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit quaternion (w, x, y, z)."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def _extent(layers: list[Layer], shift: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The box holding most of everything (the 1st-99th percentiles per axis of a sample of every
    layer's points, cameras included): a few far lidar returns should not frame the view."""
    from facet3d.core.viewing import layer_points

    rng = np.random.default_rng(0)
    parts = []
    for p in (layer_points(ly) for ly in layers):
        if p is not None and len(p):
            parts.append(p[rng.choice(len(p), 20_000, replace=False)] if len(p) > 20_000 else p)
    if not parts:
        return None
    allp = np.concatenate(parts) - shift
    return np.percentile(allp, 1, axis=0), np.percentile(allp, 99, axis=0)


def start_view(lo: np.ndarray, hi: np.ndarray, up: str = "+z") -> tuple[np.ndarray, np.ndarray]:
    """Where a browser starts for the box ``lo``-``hi``: (look-at point, camera position), looking at
    the middle from above (along ``up``, "+z" form) and aside, 1.1 box diagonals away."""
    centre = (lo + hi) / 2
    axis, sign = "xyz".index(up[1]), (1.0 if up[0] == "+" else -1.0)
    side = [i for i in range(3) if i != axis]
    offset = np.zeros(3)
    offset[side[0]], offset[side[1]], offset[axis] = 0.8, -1.2, 0.6 * sign
    return centre, centre + offset / np.linalg.norm(offset) * max(float(np.linalg.norm(hi - lo)), 1e-6) * 1.1


def _scene_scale(layers: list[Layer], shift: np.ndarray) -> float:
    box = _extent(layers, shift)
    return 1.0 if box is None else max(float(np.linalg.norm(box[1] - box[0])), 1e-6)


class ViewerServer:
    """Serve ``layers`` on ``host:port`` (the next free port when that one is busy; `port` says which)."""

    def __init__(self, layers: list[Layer], host: str = "127.0.0.1", port: int = 8080, up: str = "+z",
                 exact_height: int = 360, point_size: float | None = None, background=(1.0, 1.0, 1.0),
                 splat_view: str = "preview") -> None:
        if not viser_available():
            raise UsageError(MISSING_VISER)
        if up not in UPS:
            raise UsageError(f"--up must be one of {', '.join(UPS)}, got '{up}'")
        if exact_height < 16:
            raise UsageError(f"--exact-height must be >= 16, got {exact_height}")
        if splat_view not in ("preview", "exact"):
            raise UsageError(f"--splat-view must be preview or exact, got '{splat_view}'")
        import viser

        self.layers, self.exact_height, self.background = layers, exact_height, background
        self.shift = shift_for_display(layers)
        self.scale = _scene_scale(layers, self.shift)
        self.point_size = point_size if point_size is not None else self.scale / 600
        self.handles: dict[str, Any] = {}
        self.splats = [ly for ly in layers if isinstance(ly, SplatLayer)]
        self.mode = "preview"
        self._pending: dict[int, Any] = {}  # client id -> its newest camera to render
        self._wake = threading.Condition()
        self._stopped = False
        with _quiet():  # viser prints its own banner to stdout, where our data goes
            self.server = viser.ViserServer(host=host, port=port, verbose=False)
        try:
            self.server.scene.set_up_direction(up)
            self._frame(up)
            for layer in layers:
                self._add(layer)
            self._add_controls(splat_view)
            if splat_view != "preview":
                self.set_mode(splat_view)
        except BaseException:
            self.stop()  # a layer viser refuses must not leave the port taken
            raise
        if any(s.render is not None for s in self.splats):
            threading.Thread(target=self._render_loop, daemon=True, name="facet3d-exact-view").start()

    # ------------------------------------------------------------------ scene
    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = self.server.get_host()
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def _frame(self, up: str) -> None:
        """Start every browser looking at the middle of everything, from above and aside."""
        box = _extent(self.layers, self.shift)
        if box is None:
            return
        cam = self.server.initial_camera
        cam.look_at, cam.position = start_view(box[0], box[1], up)
        cam.near, cam.far = self.scale * 1e-3, self.scale * 100

    def _add(self, layer: Layer) -> None:
        scene, name = self.server.scene, "/" + layer.name
        if isinstance(layer, PointsLayer):
            self.handles[layer.name] = scene.add_point_cloud(
                name, (layer.points - self.shift).astype(np.float32), layer.colors, point_size=self.point_size,
                precision="float32")
        elif isinstance(layer, MeshLayer):
            self.handles[layer.name] = self._add_mesh(name, layer)
        elif isinstance(layer, CamerasLayer):
            self._add_cameras(name, layer)
        elif isinstance(layer, SplatLayer):
            self.handles[layer.name] = self._add_mesh(name + "/preview", layer.preview)

    def _add_mesh(self, name: str, layer: MeshLayer):
        import trimesh

        v = (layer.vertices - self.shift).astype(np.float32)
        if layer.colors is None:
            return self.server.scene.add_mesh_simple(name, v, layer.faces.astype(np.uint32), color=(180, 180, 180),
                                                     side="double")
        mesh = trimesh.Trimesh(v, layer.faces, vertex_colors=layer.colors, process=False)
        return self.server.scene.add_mesh_trimesh(name, mesh)

    def _add_cameras(self, name: str, layer: CamerasLayer) -> None:
        cams = layer.cameras
        c2w = cams.camera_to_world().detach().cpu().double().numpy()  # [B, 4, 4]
        K = cams.K.detach().cpu().double().numpy()
        sizes = cams.image_size.tolist() if cams.image_size is not None else [None] * len(cams)
        names = list(cams.names) if cams.names is not None else [str(i) for i in range(len(cams))]
        scale = _frustum_size(c2w[:, :3, 3], self.scale)
        for i in range(len(cams)):
            h, w = sizes[i] if sizes[i] is not None else (2 * K[i, 1, 2] + 1, 2 * K[i, 0, 2] + 1)
            fov = 2 * math.atan(0.5 * float(h) / float(K[i, 1, 1]))
            img = layer.images[i] if i < len(layer.images) else None
            self.server.scene.add_camera_frustum(
                f"{name}/{i:04d}", fov=fov, aspect=float(w) / float(h), scale=scale, image=img,
                wxyz=_quat_wxyz(c2w[i, :3, :3]), position=c2w[i, :3, 3] - self.shift, color=(230, 90, 30))
            self.handles[f"{layer.name}/{names[i]}"] = True

    def _add_controls(self, splat_view: str) -> None:
        gui = self.server.gui
        lines = []
        for ly in self.layers:
            s = ly.summary()
            if isinstance(ly, PointsLayer):
                shown = f"{s['points']:,} of {s['total']:,} points shown" if s["points"] < s["total"] \
                    else f"{s['total']:,} points"
                lines.append(f"- **{ly.name}**: {shown} (colour: {s['colored_by']})")
            elif isinstance(ly, MeshLayer):
                lines.append(f"- **{ly.name}**: mesh, {s['faces']:,} faces")
            elif isinstance(ly, CamerasLayer):
                lines.append(f"- **{ly.name}**: {s['cameras']} cameras")
            elif isinstance(ly, SplatLayer):
                shown = "" if s["preview_triangles"] >= ly.count else f" (preview: the {s['preview_triangles']:,} most visible)"
                lines.append(f"- **{ly.name}**: {ly.form} scene, {ly.count:,} triangles{shown}")
        if np.any(self.shift):
            lines.append(f"- shown shifted by -({', '.join(f'{v:g}' for v in self.shift)})")
        gui.add_markdown("\n".join(lines) or "(empty)")
        if self.splats:
            dd = gui.add_dropdown("Splat view", ("preview", "exact"), initial_value=splat_view if splat_view in ("preview", "exact") else "preview")

            @dd.on_update
            def _(_event) -> None:
                self.set_mode(dd.value)

        @self.server.on_client_connect
        def _(client) -> None:
            if self.mode == "exact":
                self._request(client)

            @client.camera.on_update
            def _(_camera) -> None:
                if self.mode == "exact":
                    self._request(client)

    # ------------------------------------------------------------------ exact view
    def set_mode(self, mode: str) -> None:
        """"preview" (the coloured meshes) or "exact" (the renderer's image as each browser's background)."""
        if mode not in ("preview", "exact"):
            raise UsageError(f"splat view must be preview or exact, got '{mode}'")
        self.mode = mode
        for s in self.splats:
            self.handles[s.name].visible = mode == "preview"
        if mode == "exact":
            for client in self.server.get_clients().values():
                self._request(client)
        else:
            for client in self.server.get_clients().values():
                client.scene.set_background_image(None)

    def _request(self, client) -> None:
        with self._wake:
            self._pending[client.client_id] = client
            self._wake.notify()

    def _render_loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                _, client = self._pending.popitem()
            try:
                img, depth = self.render_exact(client.camera)
                # viser depth-tests the other layers against the image (fixed point, up to ~167 units)
                client.scene.set_background_image(img, format="jpeg", jpeg_quality=90,
                                                  depth=np.minimum(depth, 1e6).astype(np.float32))
            except Exception as exc:  # noqa: BLE001 - a gone browser or a failed frame must not kill the viewer
                if not self._stopped:
                    import sys

                    print(f"facet3d view: exact render failed: {exc}", file=sys.stderr)

    def render_exact(self, camera) -> tuple[np.ndarray, np.ndarray]:
        """Every splat scene rendered for a viser camera (wxyz, position, fov, aspect) -> (rgb [H, W, 3]
        uint8, depth [H, W] camera z, inf where empty); several scenes: the nearer surface per pixel."""
        cams = viser_camera(camera.wxyz, camera.position + self.shift, camera.fov, camera.aspect, self.exact_height)
        img = depth = None
        for s in self.splats:
            rgb, d = s.render(cams, background=self.background)
            if img is None:
                img, depth = rgb, d
            else:
                nearer = d < depth
                img = np.where(nearer[..., None], rgb, img)
                depth = np.where(nearer, d, depth)
        return img, depth

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        with _quiet():
            self.server.stop()

    def scene_messages(self) -> list[dict]:
        """The scene messages viser would send to a new browser (type, name, props), read back from its
        recording format (8-byte size + zstd of [8-byte msgpack length, msgpack, binary buffers])."""
        import msgspec
        import zstandard

        blob = self.server.get_scene_serializer().serialize()
        inner = zstandard.ZstdDecompressor().decompress(blob[8:], max_output_size=int.from_bytes(blob[:8], "little"))
        n = int.from_bytes(inner[:8], "little")
        return [m for _, m in msgspec.msgpack.decode(inner[8:8 + n])["messages"]]


def _frustum_size(centres: np.ndarray, scene_scale: float) -> float:
    """Frustums a little smaller than the gaps between cameras (a rig of six cameras a metre apart, an
    orbit of a hundred views), never above 4 % of the whole scene."""
    size = 0.04 * scene_scale
    if len(centres) > 1:
        d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        gap = float(np.median(d.min(1)))
        if gap > 0:
            size = min(size, 0.6 * gap)
    return size


def viser_camera(wxyz, position, fov: float, aspect: float, height: int):
    """A viser browser camera (camera-to-world quaternion and centre, OpenCV axes, vertical fov) -> core
    `Cameras` [1] of ``height`` x ``round(height * aspect)`` pixels."""
    import torch
    from scipy.spatial.transform import Rotation

    from facet3d.core.structures.cameras import Cameras, intrinsics_matrix

    w, x, y, z = (float(v) for v in wxyz)
    R_c2w = Rotation.from_quat([x, y, z, w]).as_matrix()
    H, W = int(height), max(int(round(height * float(aspect))), 1)
    f = 0.5 * H / math.tan(0.5 * float(fov))
    K = intrinsics_matrix(f, f, (W - 1) / 2, (H - 1) / 2)
    return Cameras.from_centre(torch.as_tensor(np.asarray(position, dtype=np.float64))[None],
                               torch.as_tensor(R_c2w)[None], K[None], image_size=[(H, W)])
