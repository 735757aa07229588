"""Browser cameras as field views, and field views as browser cameras.

viser reports each browser's camera in the scene's own world frame with OpenCV axes (x right, y down, z forward),
a vertical field of view and the canvas size in device pixels; a :class:`~featurefields.fields.base.View` is the
same thing with intrinsics, so the conversion is exact in both directions and nothing is rescaled or recentred.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..fields.base import View

MIN_SIDE = 128  # pixels, longest side: moving frames never get smaller (below it the per-Gaussian work, not the
# pixels, dominates a frame's time, so shrinking further buys no speed, only blur)


@dataclass(frozen=True)
class BrowserCamera:
    """One camera message of a browser: pose (world frame, OpenCV axes), vertical fov, canvas size, arrival time."""

    wxyz: tuple[float, float, float, float]
    position: tuple[float, float, float]
    fov: float  # vertical, radians
    canvas: tuple[int, int]  # (width, height) device pixels
    stamp: float  # time.monotonic() when the server received it

    @classmethod
    def from_handle(cls, cam, stamp: float) -> "BrowserCamera":
        return cls(tuple(float(x) for x in cam.wxyz), tuple(float(x) for x in cam.position), float(cam.fov),
                   (int(cam.image_width), int(cam.image_height)), stamp)

    def c2w(self) -> torch.Tensor:  # [4, 4]
        from scipy.spatial.transform import Rotation

        w, x, y, z = self.wxyz
        m = torch.eye(4)
        m[:3, :3] = torch.from_numpy(Rotation.from_quat([x, y, z, w]).as_matrix()).float()
        m[:3, 3] = torch.tensor(self.position)
        return m

    def same_pose(self, other: "BrowserCamera | None") -> bool:
        return other is not None and (self.wxyz, self.position, self.fov, self.canvas) == (
            other.wxyz, other.position, other.fov, other.canvas)

    def view(self, width: int, height: int, name: str = "browser") -> View:
        """This camera rendered at ``width`` x ``height`` (any size: the canvas' aspect is kept by the caller)."""
        fy = 0.5 * height / math.tan(0.5 * self.fov)
        fx = fy * (width / height) / (self.canvas[0] / self.canvas[1])  # square canvas pixels
        K = torch.tensor([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]])
        return View(name, self.c2w(), K, width, height)

    def pixel(self, screen_pos: tuple[float, float], view: View) -> tuple[float, float]:
        """viser's screen position (0..1 over the canvas, OpenCV image axes) -> pixel coordinates in ``view``."""
        return float(screen_pos[0]) * view.width, float(screen_pos[1]) * view.height


def fit_size(canvas: tuple[int, int], max_side: int, scale: float = 1.0) -> tuple[int, int]:
    """The render size for a canvas: its aspect kept, the longest side at most ``max_side``, times ``scale``."""
    w, h = max(1, canvas[0]), max(1, canvas[1])
    full = min(1.0, max_side / max(w, h))
    s = max(full * scale, min(full, MIN_SIDE / max(w, h)))
    return max(1, round(w * s)), max(1, round(h * s))


def vertical_fov(view: View) -> float:
    return 2.0 * math.atan(0.5 * view.height / float(view.K[1, 1]))


def scene_up(c2ws: torch.Tensor) -> np.ndarray:
    """The up direction the cameras agree on: the mean of their -y axes (OpenCV), unit. c2ws [V, 4, 4]."""
    up = -c2ws[:, :3, 1].double().mean(0).numpy()
    n = np.linalg.norm(up)
    return up / n if n > 1e-6 else np.array([0.0, 0.0, 1.0])


def orbit_focus(c2ws: torch.Tensor) -> np.ndarray:
    """The point nearest to every camera's optical axis (least squares): what an orbiting capture looks at, and
    so where the browser's orbit controls should turn around. Falls back to the cameras' centroid when the axes
    are (nearly) parallel. c2ws [V, 4, 4]."""
    c = c2ws[:, :3, 3].double().numpy()
    d = c2ws[:, :3, 2].double().numpy()
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # [V, 3, 3]: removes the along-axis part
    a, b = proj.sum(0), np.einsum("vij,vj->i", proj, c)
    if len(c) < 2 or np.linalg.cond(a) > 1e6:
        return c.mean(0)
    return np.linalg.solve(a, b)


def look_at_for_view(view: View, focus: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, look_at, up) putting a browser camera exactly at ``view``: it looks along the view's axis, at
    the depth where that axis passes the focus, with the view's own up (so no roll is lost)."""
    c2w = view.c2w.double().numpy()
    pos, fwd, up = c2w[:3, 3], c2w[:3, 2], -c2w[:3, 1]
    depth = float(np.dot(focus - pos, fwd))
    if not depth > 1e-3:
        depth = max(float(np.linalg.norm(focus - pos)), 1.0)
    return pos, pos + depth * fwd, up
