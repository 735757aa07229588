"""Cameras to render a field from: scene frames by name, novel poses between them, and cameras from JSON files.

Every pose handed out here is in the world frame of the field (see :class:`.base.FeatureField`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..data.cameras import GL_TO_CV
from ..errors import DataError
from ..io import read_json
from .base import View

if TYPE_CHECKING:
    from .base import FeatureField

MAX_NOVEL_VIEWS = 10_000  # novel:N renders N images; more is a typo, not a request


def parse_views(field: "FeatureField", spec: str | Sequence[int | str] = "test") -> list[View]:
    """'test' (held out), 'train', 'all', 'novel:N', or frame indices / names / stems (a list or comma-separated)."""
    from ..query.relevancy import QueryError

    s = field.scene
    if isinstance(spec, str):
        key = spec.strip()
        if key in ("test", "train", "all"):
            idx = {"test": s.test_idx, "train": s.train_idx, "all": list(range(len(s)))}[key]
            if not idx:
                raise QueryError(f"the scene has no {key} views")
            return [field.frame_view(i) for i in idx]
        if key == "novel" or key.startswith("novel:"):
            n = key.partition(":")[2] or "4"
            if not (n.isascii() and n.isdigit()) or not 1 <= int(n) <= MAX_NOVEL_VIEWS:
                raise QueryError(f"--views {spec!r}: use novel:N with N between 1 and {MAX_NOVEL_VIEWS}")
            return interpolated_views(field, int(n))
        items: list[int | str] = [t.strip() for t in key.split(",") if t.strip()]
    else:
        items = list(spec)
    if not items:
        raise QueryError("no views given")
    if len(items) > MAX_NOVEL_VIEWS:
        raise QueryError(f"{len(items)} views asked for; at most {MAX_NOVEL_VIEWS} at a time")
    out = []
    stems = {Path(n).stem: i for i, n in enumerate(s.frame_names)}
    names = {n: i for i, n in enumerate(s.frame_names)}
    for it in items:
        if isinstance(it, int) or (isinstance(it, str) and it.lstrip("-").isascii() and it.lstrip("-").isdigit()):
            out.append(field.frame_view(int(it)))
        elif it in names or it in stems:
            out.append(field.frame_view(names.get(it, stems.get(it))))
        else:
            raise QueryError(f"unknown view {it!r}: use test, train, all, novel:N, frame indices or frame names "
                             f"(e.g. {Path(s.frame_names[0]).stem})")
    return out


def interpolated_views(field: "FeatureField", n: int) -> list[View]:
    """n novel poses halfway between consecutive frames (position lerp, rotation slerp), spread over the scene."""
    from ..query.relevancy import QueryError

    s = field.scene
    if len(s) < 2:
        raise QueryError("novel views need a scene with at least two frames")
    picks = np.linspace(0, len(s) - 2, n).round().astype(int)
    views = []
    for j, i in enumerate(picks):
        a, b = field.frame_view(int(i)).c2w.double(), field.frame_view(int(i) + 1).c2w.double()
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, :3] = slerp_rotation(a[:3, :3], b[:3, :3], 0.5)
        c2w[:3, 3] = 0.5 * (a[:3, 3] + b[:3, 3])
        views.append(View(f"novel_{j:03d}", c2w.float(), s.cameras.K[i], s.width, s.height))
    return views


def slerp_rotation(ra: Tensor, rb: Tensor, t: float) -> Tensor:
    from scipy.spatial.transform import Rotation, Slerp

    rots = Rotation.from_matrix(np.stack([ra.numpy(), rb.numpy()]))
    return torch.from_numpy(Slerp([0.0, 1.0], rots)([t]).as_matrix()[0])


def views_from_camera_file(path: str | Path, default: View | None = None) -> list[View]:
    """Novel views from a JSON file: one camera or a list (or {"frames": [...]}). Each has either ``c2w``
    (OpenCV camera-to-world, world frame) or ``transform_matrix`` (nerfstudio/OpenGL), and either ``K`` or
    fl_x/fl_y/cx/cy plus ``width``/``height`` (or w/h); missing intrinsics come from ``default`` (a scene frame).

    Every camera is checked like a scene frame (:mod:`featurefields.data.validate`): a rigid pose with bottom
    row [0, 0, 0, 1], positive focal lengths giving a pinhole field of view, a size within the render limits."""
    from ..data.validate import as_float, check_image_size, check_K, check_pose
    from ..validate import text

    path = Path(path)
    data = read_json(path)
    items = data.get("frames", [data]) if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise DataError(f"{path}: expected a camera object, a list of them, or {{\"frames\": [...]}}")
    if len(items) > MAX_NOVEL_VIEWS:
        raise DataError(f"{path}: {len(items)} cameras; at most {MAX_NOVEL_VIEWS} per file")
    views = []
    for j, c in enumerate(items):
        where = f"{path} camera {j}"
        if not isinstance(c, dict):
            raise DataError(f"{where}: not an object")
        if "c2w" in c:
            c2w = check_pose(c["c2w"], f"{where}: c2w")
        elif "transform_matrix" in c:
            c2w = check_pose(c["transform_matrix"], f"{where}: transform_matrix") @ GL_TO_CV.double().numpy()
        else:
            raise DataError(f"{where}: needs 'c2w' (OpenCV) or 'transform_matrix' (nerfstudio)")
        w = c.get("width", c.get("w", default.width if default else None))
        h = c.get("height", c.get("h", default.height if default else None))
        if w is None or h is None:
            raise DataError(f"{where}: needs 'width' and 'height' (no scene frame to take them from)")
        w, h = check_image_size(w, h, where)
        if "K" in c:
            K = check_K(c["K"], where, (w, h))
        elif "fl_x" in c:
            fx = as_float(c["fl_x"], f"{where}: fl_x")
            fy = as_float(c.get("fl_y", fx), f"{where}: fl_y")
            cx, cy = as_float(c.get("cx", w / 2), f"{where}: cx"), as_float(c.get("cy", h / 2), f"{where}: cy")
            K = check_K([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], where, (w, h), ("fl_x", "fl_y"))
        elif default is not None:
            K = check_K(default.K.double().numpy(), where, (w, h))
        else:
            raise DataError(f"{where}: needs intrinsics ('K' or fl_x/fl_y/cx/cy)")
        name = text(c.get("name", f"{path.stem}_{j:03d}"), f"{where}: name", max_chars=120, error=DataError)
        views.append(View(name, torch.from_numpy(c2w).float(), torch.from_numpy(K).float(), w, h))
    return views


def region_view(view: View, lo: Tensor, hi: Tensor, scale: float = 1.0, pad: int = 2) -> View | None:
    """``view`` cropped to where the world box (lo [3], hi [3]) projects, at ``scale`` times its resolution (a
    field renders at any resolution: finer pixels are finer depth samples). None if the box is not in view."""
    corners = torch.stack(torch.meshgrid(*[torch.stack([lo[i], hi[i]]) for i in range(3)], indexing="ij"),
                          -1).reshape(-1, 3).float()
    w2c = torch.linalg.inv(view.c2w.float())
    cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
    K = view.K.float()
    if bool((cam[:, 2] <= 1e-3).any()):  # the box reaches behind the camera: keep the whole image
        x0, y0, x1, y1 = 0.0, 0.0, float(view.width), float(view.height)
    else:
        u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
        v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
        x0, x1 = max(0.0, float(u.min()) - pad), min(float(view.width), float(u.max()) + pad)
        y0, y1 = max(0.0, float(v.min()) - pad), min(float(view.height), float(v.max()) + pad)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    x0, y0 = math.floor(x0), math.floor(y0)
    w, h = max(1, round((math.ceil(x1) - x0) * scale)), max(1, round((math.ceil(y1) - y0) * scale))
    Kc = K.clone()
    Kc[0, 0], Kc[1, 1] = K[0, 0] * scale, K[1, 1] * scale
    Kc[0, 2], Kc[1, 2] = (K[0, 2] - x0) * scale, (K[1, 2] - y0) * scale
    return View(f"{view.name}@crop", view.c2w, Kc, w, h, None, view.index)
