"""One browser's view of the field: its own camera, mode, query and selection, its control panel, its render
thread, and the actions its buttons start (queries, prompts, edits, exports).

Every question goes to the field's :class:`~featurefields.query.QueryEngine` (``relevancy_2d``, ``select``,
``select_by_views``, ``prompt``) and every change to :mod:`featurefields.query.edit` / ``export``: the viewer only
turns clicks into those calls and their answers into pictures. Actions of one browser run one at a time on its
own worker thread, so a slow one (the views lift: one render and one backward pass per training view) never
blocks the web server or the other browsers' frames.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import ConfigError, FFError, one_line
from ..fields.base import View
from ..query.edit import recolour
from ..query.engine import NEGATIVE_MODES
from ..query.relevancy import split_phrases, split_positives
from ..query.selection import Selection
from .camera import BrowserCamera, fit_size, look_at_for_view, vertical_fov
from .gui import ControlPanel
from .paint import DEPTH, RELEVANCY, RGB, SELECTION, QuerySpec
from .scheduling import CameraClock, MotionScale, RenderLoop

if TYPE_CHECKING:
    from .server import ViewerServer

log = logging.getLogger("featurefields.viewer")

COMBINE = ("replace", "add", "subtract")
LIFTS = {"own features": "features", "views (slower, better at contacts)": "views"}
FRUSTUM_CLICK_WINDOW = 0.5  # s: a scene click this soon after a frustum click is the same click
PROMPT_SIDE = 320  # pixels: the longest side of the view a click or box is answered in
SPLAT_REFRESH = 10.0  # s: a training run's splats are re-sent at most this often (100k splats are ~3 MB)


@dataclass
class FrameInfo:
    """What one frame sent to the browser showed (kept for the status line, tests and benchmarks)."""

    index: int
    sent: float  # time.monotonic() after the image was queued for the browser
    camera_stamp: float  # arrival of the camera message it was rendered for
    view: View
    mode: str
    field_version: int
    moving: bool
    seconds: float  # render + picture + JPEG encode
    info: dict


class ClientSession:
    """The server side of one connected browser (see the module docstring)."""

    def __init__(self, server: "ViewerServer", client):
        self.server, self.client, self.id = server, client, client.client_id
        self.source = server.source
        self.mode = RGB
        self.query: QuerySpec | None = None
        self.selection: Selection | None = None
        self.selection_version = -1
        self.selection_how = ""
        self._highlight: tuple[int, int, object] | None = None  # (field version, id(selection), recoloured field)
        self.depth_range: tuple[float, float] | None = None
        self.max_side = server.config.max_side
        self.splats = False
        self.camera: BrowserCamera | None = None
        self.camera_messages = 0
        self.frames: collections.deque[FrameInfo] = collections.deque(maxlen=512)
        self.frame_count = 0
        self.notifications: list[tuple[str, str, str]] = []  # (title, body, colour) of every notice shown
        self.closed = threading.Event()
        self._frustum_clicked = 0.0
        self._status_at = 0.0
        self._actions = ThreadPoolExecutor(1, thread_name_prefix=f"ff-view-client{self.id}")
        self.motion = MotionScale(server.config.target_fps)
        self.clock = CameraClock()
        self.loop = RenderLoop(f"ff-view-render-{self.id}", self._frame, self.clock, server.render_lock,
                               self.source.budget, self.motion, tidy=server.heap.maybe)
        self.panel = ControlPanel(self)
        self._frustums = self._add_frustums()
        self._splat_handle = None
        self._splats_sent = 0.0
        client.camera.on_update(self._on_camera)
        client.scene.on_click()(self._on_click)
        client.scene.on_rect_select(modifier="shift")(self._on_rect)
        self.source.listen(self._on_field_changed)
        try:
            self.camera = BrowserCamera.from_handle(client.camera, time.monotonic())
        except AssertionError:  # no camera message yet
            pass
        self.loop.start()
        self.loop.poke()

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """The browser went away: stop its render thread (after the frame in flight) and drop queued actions."""
        self.closed.set()
        self.loop.stop()
        self.source.unlisten(self._on_field_changed)
        self._actions.shutdown(wait=False, cancel_futures=True)

    # ---- browser events (async: they run in order on the web server's event loop and return at once) --------
    async def _on_camera(self, cam) -> None:
        self.camera = BrowserCamera.from_handle(cam, self.clock.tick())
        self.camera_messages += 1
        if self._splat_handle is not None and not self._splat_handle.visible:
            self._splat_handle.visible = True  # the browser draws the moving scene; the last frame would ghost
            self.client.scene.set_background_image(None)
        self.loop.poke(camera_moved=True)

    async def _on_click(self, event) -> None:
        if time.monotonic() - self._frustum_clicked < FRUSTUM_CLICK_WINDOW:
            return
        self.run("Point prompt", lambda: self.prompt(point=event.screen_pos))

    async def _on_rect(self, event) -> None:
        self.run("Box prompt", lambda: self.prompt(box=(*event.screen_min, *event.screen_max)))

    def _on_field_changed(self, version: int, why: str) -> None:
        if self.selection is not None and self.selection_version != version:
            self.selection, self.selection_how = None, ""
            self.panel.show_selection(None, "")
        self._highlight = None
        if why:
            self.notify("Field changed", why, "blue", 6)
        if not self.source.live or time.monotonic() - self._splats_sent > SPLAT_REFRESH:
            self._refresh_splats()
        self.panel.show_field()
        self.loop.poke()

    # ---- frames ---------------------------------------------------------------------------------------------
    def still_view(self) -> View:
        """The current camera at full (resting) resolution: where prompts are answered and screenshots taken."""
        cam = self.camera
        if cam is None:
            raise ConfigError("the browser has not reported its camera yet")
        return cam.view(*fit_size(cam.canvas, self.max_side))

    def _frame(self, moving: bool):
        cam = self.camera
        if cam is None or self.closed.is_set():
            return None
        if moving and self._splat_handle is not None:  # the browser draws the splats itself while moving
            return None
        version, field = self.source.current()
        mode = self.mode
        scale = self.motion.scale(mode) if moving and self.server.config.adaptive else 1.0
        size = fit_size(cam.canvas, self.max_side, scale)
        scale = max(size) / max(fit_size(cam.canvas, self.max_side))  # what was used (the floor may win)
        view = cam.view(*size)
        t0 = time.perf_counter()
        try:
            img, info = self.picture(field, version, view, mode)
        except FFError as e:  # a query that stopped making sense (e.g. after an edit): say so, show colour
            self.notify("Cannot draw this mode", one_line(e), "red")
            self.mode = RGB
            self.panel.show_mode(RGB)
            return None
        if self.closed.is_set():
            return None
        self.client.scene.set_background_image(img, format="jpeg", jpeg_quality=75 if moving else 92)
        if not moving and self._splat_handle is not None:
            self._splat_handle.visible = False
        seconds = time.perf_counter() - t0
        self.frame_count += 1
        self.frames.append(FrameInfo(self.frame_count, time.monotonic(), cam.stamp, view, mode, version, moving,
                                     seconds, info))
        now = time.monotonic()
        if not moving or now - self._status_at > 0.5:
            self._status_at = now
            self.panel.show_frame(view, seconds, moving, self.fps())
        return mode, seconds, scale

    def picture(self, field, version: int, view: View, mode: str) -> tuple[np.ndarray, dict]:
        highlight = self._highlight_field(field, version) if mode == SELECTION else None
        img, info = self.server.painter.paint(field, view, mode, query=self.query, highlight=highlight,
                                              depth_range=self.depth_range if mode == DEPTH else None)
        if mode == DEPTH and self.depth_range is None:
            self.depth_range = info["depth_range"]
        return img, info

    def fps(self, window: float = 2.0) -> float:
        now = time.monotonic()
        recent = [f for f in list(self.frames) if now - f.sent <= window]
        return len(recent) / window

    def _highlight_field(self, field, version: int):
        sel = self.selection
        if sel is None or self.selection_version != version or sel.count == 0:
            return None
        h = self._highlight
        if h is None or h[0] != version or h[1] != id(sel):
            h = self._highlight = (version, id(sel), recolour(field, sel, (1.0, 0.42, 0.0)))
        return h[2]

    # ---- state changes from the panel -------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            self.panel.show_mode(mode)
            self.loop.poke()

    def set_max_side(self, side: int) -> None:
        self.max_side = int(side)
        self.loop.poke()

    def submit_query(self, text: str, negatives: str = "auto", threshold: float = 0.5,
                     teacher: str | None = None) -> QuerySpec:
        """Check a query against the field (text-aligned teacher, phrases, negatives) and show its relevancy.
        Bad queries raise FFError (the caller turns it into a notification) and leave the old one in place."""
        _, field = self.source.current()
        positives = split_positives(text)
        name = field.text_teacher(teacher)
        if negatives not in NEGATIVE_MODES:
            split_phrases(negatives, "negatives")
        field.engine.resolve_query(positives, negatives, name)  # loads the text encoder now, not mid-frame
        self.query = QuerySpec(text, negatives, float(threshold), teacher)
        self.mode = RELEVANCY
        self.panel.show_mode(RELEVANCY)
        self.loop.poke()
        return self.query

    def set_threshold(self, threshold: float) -> None:
        if self.query is not None:
            self.query = QuerySpec(self.query.text, self.query.negatives, float(threshold), self.query.teacher)
            self.loop.poke()

    # ---- selections ---------------------------------------------------------------------------------------------
    def _combine(self, new: Selection, how: str, version: int, op: str | None = None) -> Selection:
        op = op or self.panel.combine()
        if op not in COMBINE:
            raise ConfigError(f"combine must be one of {', '.join(COMBINE)}, not {op!r}")
        old = self.selection if self.selection_version == version else None
        if old is not None and op == "add":
            new, how = old | new, f"{self.selection_how} + {how}"
        elif old is not None and op == "subtract":
            new, how = old - new, f"{self.selection_how} - {how}"
        elif op == "subtract":
            raise ConfigError("nothing is selected to subtract from")
        self.selection, self.selection_version, self.selection_how = new, version, how
        self.panel.show_selection(new, how)
        self.mode = SELECTION
        self.panel.show_mode(SELECTION)
        self.loop.poke()
        return new

    def select_3d(self, lift: str = "features", op: str | None = None) -> Selection:
        """The current text query as a 3D selection: each Gaussian's own feature, or what it renders as over the
        training views (the views lift)."""
        if self.query is None:
            raise ConfigError("type a query (and press Enter) before selecting it in 3D")
        q = self.query
        version, field = self.source.current()
        opts = dict(threshold=q.threshold, negatives=q.negatives, teacher=q.teacher)
        sel = field.engine.select_by_views(q.text, **opts) if lift == "views" else field.engine.select(q.text, **opts)
        return self._combine(sel, f"'{q.text}' ({'views lift' if lift == 'views' else 'own features'})", version, op)

    def prompt(self, *, point=None, box=None, op: str | None = None, similarity: float | None = None) -> Selection:
        """A click (``point``) or a rectangle (``box``: x0, y0, x1, y1) in viser's screen coordinates (0..1 over
        the canvas) -> the engine's prompt at those pixels of the current view -> combined with the selection."""
        version, field = self.source.current()
        cam = self.camera
        if cam is None:
            raise ConfigError("the browser has not reported its camera yet")
        # The answer is a 3D selection; the 2D side needs no more pixels than this (a decoded 800x600 map of a
        # 384-D teacher alone is 0.7 GB).
        view = cam.view(*fit_size(cam.canvas, min(self.max_side, PROMPT_SIDE)))
        thr = self.panel.similarity() if similarity is None else similarity
        if point is not None:
            px = (point[0] * view.width, point[1] * view.height)
            res = field.engine.prompt(view, point=px, threshold=thr)
            how = f"click at ({px[0]:.0f}, {px[1]:.0f})"
        else:
            x0, y0, x1, y1 = box
            px = (min(x0, x1) * view.width, min(y0, y1) * view.height, max(x0, x1) * view.width,
                  max(y0, y1) * view.height)
            res = field.engine.prompt(view, box=px, threshold=thr)
            how = f"box ({px[0]:.0f}, {px[1]:.0f})-({px[2]:.0f}, {px[3]:.0f})"
        return self._combine(res.selection, how, version, op)

    def clear_selection(self) -> None:
        self.selection, self.selection_how = None, ""
        self.panel.show_selection(None, "")
        self.loop.poke()

    def current_selection(self) -> Selection:
        version, _ = self.source.current()
        if self.selection is None or self.selection.count == 0:
            raise ConfigError("nothing is selected: click the scene, shift-drag a box, or select a query in 3D")
        if self.selection_version != version:
            raise ConfigError("the field changed since this selection was made; select again")
        return self.selection

    # ---- edits and exports (files under the server's --out) ---------------------------------------------------
    def edit(self, kind: str, rgb=None) -> str:
        """Extract, delete or recolour the selection; every browser then sees the edited field."""
        sel = self.current_selection()
        folder, info = self.server.outputs.edit(self.source, sel, self.selection_version, kind, rgb,
                                                self.selection_how, f"browser {self.id}")
        self.panel.show_written(f"last edit: `{folder}`")
        return (f"{info['num_gaussians_before']:,} -> {info['num_gaussians_after']:,} Gaussians; checkpoint and "
                f"PLY in {folder}/")

    def export_points(self) -> str:
        sel = self.current_selection()
        path = self.server.outputs.points(self.source.current()[1], sel)
        self.panel.show_written(f"last export: `{path}`")
        return f"{sel.count:,} points written to {path}"

    def export_relevancy(self) -> str:
        if self.query is None:
            raise ConfigError("type a query (and press Enter) first: relevancy.ply holds every Gaussian's "
                              "relevancy to it")
        path = self.server.outputs.relevancy(self.source.current()[1], self.query)
        self.panel.show_written(f"last export: `{path}`")
        return f"relevancy to '{self.query.text}' written to {path}"

    def screenshot(self) -> str:
        version, field = self.source.current()
        img, _ = self.picture(field, version, self.still_view(), self.mode)
        path, png = self.server.outputs.screenshot(img)
        self.panel.show_written(f"last screenshot: `{path}`")
        if not self.closed.is_set():
            self.client.send_file_download(path.name, png)
        return f"{img.shape[1]}x{img.shape[0]} PNG written to {path}"

    # ---- cameras ----------------------------------------------------------------------------------------------
    def goto_view(self, view: View) -> None:
        """Put this browser's camera exactly where ``view`` is (pose and vertical field of view)."""
        pos, look, up = look_at_for_view(view, self.server.focus)
        cam = self.client.camera
        with self.client.atomic():
            cam.fov = vertical_fov(view)
            cam.position = pos
            cam.look_at = look
            cam.up_direction = up

    def _add_frustums(self) -> list:
        handles = []
        scale = self.server.frustum_scale
        for v in self.server.train_views:
            fr = self.client.scene.add_camera_frustum(
                f"/training_cameras/{v.stem}", fov=vertical_fov(v), aspect=v.width / v.height, scale=scale,
                thickness=scale * 0.03, color=(70, 110, 200), wxyz=_wxyz(v), position=v.center.numpy())

            async def clicked(_event, view=v) -> None:
                self._frustum_clicked = time.monotonic()
                self.run("Move to camera", lambda: self.goto_view(view), quiet=True)

            fr.on_click(clicked)
            handles.append(fr)
        return handles

    def show_frustums(self, visible: bool) -> None:
        for fr in self._frustums:
            fr.visible = visible

    # ---- client-side splats ---------------------------------------------------------------------------------
    def set_splats(self, on: bool) -> None:
        self.splats = on
        self._refresh_splats()

    def _refresh_splats(self) -> None:
        if self._splat_handle is not None:
            self._splat_handle.remove()
            self._splat_handle = None
        if self.splats and not self.closed.is_set():
            from .splats import splat_arrays

            self._splats_sent = time.monotonic()
            _, field = self.source.current()
            self._splat_handle = self.client.scene.add_gaussian_splats("/splats", **splat_arrays(field),
                                                                       visible=False)

    # ---- running actions ------------------------------------------------------------------------------------
    def run(self, title: str, action: Callable[[], object], quiet: bool = False) -> None:
        """Run ``action`` on this browser's worker thread; its outcome becomes a notification in the page."""
        if self.closed.is_set():
            return

        def job():
            note = None if quiet else self.notify(title, "working...", "blue", loading=True)
            try:
                result = action()
            except FFError as e:
                self._finish(note, title, one_line(e), "red")
                return
            except Exception as e:  # noqa: BLE001 - the server keeps running whatever one action does
                log.exception("%s failed (browser %s)", title, self.id)
                self._finish(note, title, f"internal error: {one_line(e)} (details in the server log)", "red")
                return
            if not quiet:
                self._finish(note, title, _describe(result), "green")

        try:
            self._actions.submit(job)
        except RuntimeError:  # shut down: the browser left
            pass

    def _finish(self, note, title: str, body: str, color: str) -> None:
        self.notifications.append((title, body, color))
        if self.closed.is_set():
            return
        if note is None:
            self.notify(title, body, color, record=False)
            return
        note.title, note.body, note.color, note.loading = title, body, color, False
        note.with_close_button = True
        note.auto_close_seconds = 8.0 if color != "red" else 15.0

    def notify(self, title: str, body: str, color: str = "blue", auto_close: float | None = 10.0,
               loading: bool = False, record: bool = True):
        """A notification in this browser's page (kept in ``notifications`` too, for tests and logs)."""
        if record and not loading:
            self.notifications.append((title, body, color))
        if self.closed.is_set():
            return None
        return self.client.add_notification(title, body, color=color, loading=loading,
                                            with_close_button=not loading,
                                            auto_close_seconds=None if loading else auto_close)


def _describe(result) -> str:
    if isinstance(result, Selection):
        return f"{result.count:,} Gaussians selected"
    if isinstance(result, QuerySpec):
        return f"showing relevancy of '{result.text}'"
    if isinstance(result, str):
        return result
    return "done"


def _wxyz(view: View) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(view.c2w[:3, :3].double().numpy()).as_quat()
    return np.array([w, x, y, z])
