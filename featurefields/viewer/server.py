"""The viewer's web server: a viser 1.x server whose browsers each get a :class:`~.session.ClientSession`.

Shared by all browsers: the field source (one field, swapped whole on an edit), the painter (one PCA basis per
teacher), the render lock and budget, the output folder, and the scene's cameras. Everything else (camera, mode,
query, selection, panel) is per browser. Cameras are in the field's metric world frame, as viser's are in its
own: the scene is shown where it is, with the up direction its cameras agree on.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..allocator import HeapTrim
from ..errors import ConfigError, FFError
from ..fields.base import View
from .camera import look_at_for_view, orbit_focus, scene_up, vertical_fov
from .outputs import Outputs
from .paint import Painter
from .scheduling import FairLock
from .source import FieldSource

log = logging.getLogger("featurefields.viewer")

MAX_FRUSTUMS = 200  # a long capture shows every k-th training camera


@dataclass
class ViewerConfig:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (tests)
    max_side: int = 800  # longest side of a resting frame, pixels (each browser can change it)
    target_fps: float = 15.0  # frames per second while the camera moves
    splats: bool = False  # also send the Gaussians as client-side splats by default
    adaptive: bool = True  # smaller frames while the camera moves (False: always full size, for measurements)
    title: str = "featurefields"


def check_port(host: str, port: int) -> None:
    """ConfigError if ``port`` cannot be listened on (viser would silently move to the next free one)."""
    if port == 0:
        return
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server itself does
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e} (is another viewer running? "
                              "choose another --port)") from None


class ViewerServer:
    """Serve ``source`` to browsers. ``out``: folder for edits and exports."""

    def __init__(self, source: FieldSource, config: ViewerConfig | None = None, out: str | Path = "outputs/view"):
        import viser

        self.config = cfg = config or ViewerConfig()
        self.source = source
        self.out = Path(out)
        self.outputs = Outputs(self.out)
        self.painter = Painter()
        self.render_lock = FairLock()
        self.heap = HeapTrim()
        self.sessions: dict[int, object] = {}
        self._sessions_lock = threading.Lock()
        _, field = source.current()
        self.train_views, self.focus, self.up, self.home = self._scene_cameras(field)
        extent = float(np.median([np.linalg.norm(v.center.numpy() - self.focus) for v in self.train_views])
                       ) if self.train_views else 1.0
        self.frustum_scale = 0.06 * extent
        check_port(cfg.host, cfg.port)
        self.viser = viser.ViserServer(host=cfg.host, port=cfg.port, label=cfg.title, verbose=False)
        if cfg.port and self.viser.get_port() != cfg.port:  # taken between our check and viser's bind
            self.viser.stop()
            raise ConfigError(f"port {cfg.port} on {cfg.host} is in use; choose another --port")
        self.viser.gui.configure_theme(control_width="medium", show_share_button=False)
        self.viser.gui.main_panel.dock_right()  # beside the image, not over it
        self.viser.scene.set_up_direction(tuple(float(x) for x in self.up))
        self._set_initial_camera()
        self.viser.on_client_connect(self._connect)
        self.viser.on_client_disconnect(self._disconnect)

    @property
    def port(self) -> int:
        return self.viser.get_port()

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "localhost"
        return f"http://{host}:{self.port}"

    # ---- the scene's cameras ----------------------------------------------------------------------------------
    def _scene_cameras(self, field) -> tuple[list[View], np.ndarray, np.ndarray, View | None]:
        """(training views to show as frustums, orbit focus, up direction, the view new browsers start at)."""
        try:
            frames = field.views("all")
        except FFError as e:  # a splat file without its scene: orbit the Gaussians' median
            log.info("no scene cameras (%s); orbiting the Gaussians' centre", e)
            pos = field.element_positions()
            return [], pos.median(0).values.double().numpy(), np.array([0.0, 0.0, 1.0]), None
        c2ws = torch.stack([v.c2w for v in frames])
        try:
            train = field.views("train")
        except FFError:
            train = frames
        step = max(1, -(-len(train) // MAX_FRUSTUMS))
        try:
            home = field.views("test")[0]
        except FFError:
            home = frames[0]
        return train[::step], orbit_focus(c2ws), scene_up(c2ws), home

    def _set_initial_camera(self) -> None:
        cam = self.viser.initial_camera
        if self.home is not None:
            pos, look, up = look_at_for_view(self.home, self.focus)
            cam.fov = vertical_fov(self.home)
        else:
            _, field = self.source.current()
            spread = float((field.element_positions() - torch.from_numpy(self.focus).float()).norm(dim=1).median())
            pos = self.focus + max(spread, 0.1) * 2.5 * np.array([1.0, -1.0, 0.8]) / np.sqrt(2.64)
            look, up = self.focus, self.up
        cam.position, cam.look_at, cam.up = tuple(pos), tuple(look), tuple(up)

    # ---- browsers -------------------------------------------------------------------------------------------
    def _connect(self, client) -> None:
        from .session import ClientSession

        session = ClientSession(self, client)
        with self._sessions_lock:
            self.sessions[client.client_id] = session
        log.info("browser %s connected (%d open)", client.client_id, len(self.sessions))

    def _disconnect(self, client) -> None:
        with self._sessions_lock:
            session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.close()
            log.info("browser %s left (%d open)", client.client_id, len(self.sessions))

    def session_list(self) -> list:
        with self._sessions_lock:
            return list(self.sessions.values())

    def wait_for_sessions(self, n: int, timeout: float = 60.0) -> list:
        """Block until ``n`` browsers are connected (tests, benchmarks)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            s = self.session_list()
            if len(s) >= n:
                return s
            time.sleep(0.05)
        raise TimeoutError(f"{n} browser(s) did not connect within {timeout:.0f} s")

    def stop(self) -> None:
        for s in self.session_list():
            s.close()
        self.viser.stop()

    def serve_forever(self) -> None:
        while True:
            time.sleep(3600)
