"""Helpers for the browser tests: ground truth of the generated tabletop (an object with its parts), a headless
chromium on the viewer, and waiting for frames, screenshots and notifications."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch


CHROMIUM = Path(os.environ.get("FF_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--no-sandbox"]
CANVAS = (640, 480)  # the 4:3 canvas every test page gets, so scene frames (4:3) fill it exactly
GIZMO = 80  # pixels at the canvas' bottom-left where viser draws its axes gizmo over the image
HIDE_NOTES = ".mantine-Notifications-root { visibility: hidden !important; }"


# ---- ground truth (ff-eval segmentation's own rules) -------------------------------------------------------------
def gt_mask(scene, scene_root: Path, frame: int, label: str) -> np.ndarray:
    """[H, W] bool: the scene's semantic mask of ``label`` in ``frame``, its named parts included (the mug's
    handle is the mug too), as ff-eval segmentation counts it."""
    from featurefields.query.evaluate import label_classes, load_objects

    names = scene.label_names
    ids = label_classes(load_objects(scene_root), names).get(label, [names.index(label)])
    return np.isin(scene.semantics[frame].numpy(), ids)


def gt_gaussians(field, scene_root: Path, label: str, min_opacity: float = 0.3, dilation: float = 0.01
                 ) -> torch.Tensor:
    """[N] bool: the Gaussians ff-eval segmentation's mesh test gives to ``label`` (inside its posed mesh, which
    holds its parts, or within ``dilation`` of it and nearer to it than to any other mesh), opaque ones only."""
    from featurefields.query.evaluate import GroundTruth3D, load_objects, load_scene_meshes

    gt = GroundTruth3D(field.element_positions().cpu(), load_scene_meshes(scene_root), scene_root)
    inside = gt.inside(label, dilation)
    for o in load_objects(scene_root):  # and its named parts' (where a part mesh is the nearer one)
        if o["label"] == label:
            for part in o.get("parts", []):
                inside |= gt.inside(part["label"], dilation)
    return inside & (field.element_opacities().cpu() >= min_opacity)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def downsample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask averaged over blocks down to ``shape`` (h, w), then > 0.5."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (torch.nn.functional.interpolate(t, size=shape, mode="area")[0, 0] > 0.5).numpy()


def upsample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask enlarged (nearest) to ``shape`` (h, w)."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=shape, mode="nearest")[0, 0].numpy() > 0.5


# ---- the browser ----------------------------------------------------------------------------------------------
def launch_browser():
    """(playwright, browser) on the system chromium, headless with SwiftShader WebGL; skips without them."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; scripts/install.sh does)")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; scripts/install.sh does)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    except Exception:
        pw.stop()
        raise
    return pw, browser


class Page:
    """One browser context on the viewer with its server-side session, a canvas of exactly ``CANVAS`` pixels."""

    def __init__(self, browser, server, canvas: tuple[int, int] = CANVAS, timeout: float = 90.0):
        before = {s.id for s in server.session_list()}
        self.server = server
        self.context = browser.new_context(viewport={"width": canvas[0] + 330, "height": canvas[1]})
        self.page = self.context.new_page()
        # fixedDpr: viser lowers the canvas resolution when the browser's (software) WebGL is slow, which would
        # change the frame size under the tests' feet
        self.page.goto(server.url + "/?fixedDpr=1")
        t0 = time.monotonic()
        while True:
            new = [s for s in server.session_list() if s.id not in before]
            if new:
                self.session = new[0]
                break
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("the page did not connect to the viewer")
            time.sleep(0.05)
        self.page.wait_for_function("() => { const c = document.querySelector('canvas');"
                                    " return c && getComputedStyle(c).opacity === '1'; }", timeout=timeout * 1000)
        box = self.page.locator("canvas").first.bounding_box()
        panel = canvas[0] + 330 - int(round(box["width"]))
        if (round(box["width"]), round(box["height"])) != canvas:  # make the canvas exactly the asked size
            self.page.set_viewport_size({"width": canvas[0] + panel, "height": canvas[1]})
        self.wait(lambda s: s.camera is not None and s.camera.canvas == canvas, timeout)
        self.close_note("Software WebGL")

    # ---- waiting ------------------------------------------------------------------------------------------
    # (generous: on a 2-core machine shared with other test workers a query and its lift can take a minute)
    def wait(self, condition, timeout: float = 150.0, what: str = "condition"):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            value = condition(self.session)
            if value:
                return value
            time.sleep(0.05)
        notes = "; ".join(f"{t}: {b}" for t, b, _ in self.session.notifications[-4:]) or "none"
        raise TimeoutError(f"timed out waiting for {what} (the browser's last notifications: {notes})")

    def still_frame(self, after: float, mode: str | None = None, timeout: float = 60.0):
        """The first full-resolution frame sent after ``after`` (time.monotonic()), in ``mode`` if given, once no
        other frame follows for a moment (the image in the page is then that frame)."""
        def ready(s):
            frames = [f for f in list(s.frames) if f.sent > after and not f.moving and (mode is None or f.mode == mode)]
            if not frames or time.monotonic() - s.frames[-1].sent < 0.6 or s.frames[-1] is not frames[-1]:
                return None
            return frames[-1]

        frame = self.wait(ready, timeout, f"a still {mode or ''} frame")
        time.sleep(0.4)  # the browser decodes the JPEG and draws it
        return frame

    def goto(self, view, mode: str | None = None):
        """Move the browser's camera exactly to ``view`` and return the still frame rendered there."""
        t0 = time.monotonic()
        self.session.goto_view(view)
        target = view.center.numpy()
        self.wait(lambda s: s.camera is not None and np.allclose(s.camera.position, target, atol=1e-3),
                  what="the camera to arrive")
        self.session.loop.poke()  # (a camera already there sends no message)
        return self.still_frame(t0, mode)

    # ---- pointing -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def notes_hidden(self):
        """Notifications hidden meanwhile: they sit over the canvas' top-left, would take a click meant for the
        scene there, and one under a resting mouse pointer never closes (hovering pauses its timer)."""
        style = self.page.add_style_tag(content=HIDE_NOTES)
        try:
            yield
        finally:
            style.evaluate("e => e.remove()")

    def click(self, x: float, y: float) -> None:
        """A click at canvas pixel (x, y)."""
        with self.notes_hidden():
            self.page.mouse.click(*self.canvas_point(x, y))

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 10, shift: bool = False,
             release: bool = True) -> None:
        """A left-button drag between canvas pixels (shift held: viser's box select); ``release=False`` leaves
        the button down."""
        with self.notes_hidden():
            if shift:
                self.page.keyboard.down("Shift")
            self.page.mouse.move(*self.canvas_point(*start))
            self.page.mouse.down()
            self.page.mouse.move(*self.canvas_point(*end), steps=steps)
            if release:
                self.page.mouse.up()
            if shift:
                self.page.keyboard.up("Shift")

    # ---- looking --------------------------------------------------------------------------------------------
    def canvas_image(self) -> np.ndarray:
        """What the canvas shows (notifications hidden): uint8 [H, W, 3] at canvas pixels."""
        from PIL import Image

        with self.notes_hidden():
            png = self.page.locator("canvas").first.screenshot()
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))

    def notes(self) -> str:
        return self.page.evaluate("() => Array.from(document.querySelectorAll('.mantine-Notification-root'))"
                                  ".map(n => n.innerText).join('\\n')")

    def wait_note(self, text: str, timeout: float = 30.0) -> str:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            notes = self.notes()
            if text.lower() in notes.lower():
                return notes
            time.sleep(0.2)
        raise TimeoutError(f"no notification saying {text!r} (page shows: {self.notes()!r})")

    def close_note(self, text: str) -> None:
        note = self.page.locator(".mantine-Notification-root", has_text=text)
        if note.count():
            note.first.locator("button").first.click()

    def canvas_point(self, x: float, y: float) -> tuple[float, float]:
        box = self.page.locator("canvas").first.bounding_box()
        return box["x"] + x, box["y"] + y

    def close(self) -> None:
        self.context.close()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images (0..255), outside the gizmo corner."""
    keep = np.ones(a.shape[:2], bool)
    keep[-GIZMO:, :GIZMO] = False
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32))[keep].mean())


def docs_dir() -> Path | None:
    """Where the tests' screenshots for the docs go: FF_DOCS_SCREENSHOTS=docs refreshes the committed ones."""
    target = os.environ.get("FF_DOCS_SCREENSHOTS")
    return Path(target) if target else None


def save_docs_shot(page: Page, name: str, tmp: Path) -> Path:
    path = tmp / name
    page.screenshot(path)
    target = docs_dir()
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    return path
