"""The sift teacher: dense SIFT descriptors on a regular grid, a classical, offline stand-in for DINO.

Distilling a colour-blind, locally distinctive descriptor gives a field features that tell apart points with the same
colour, which is what matching and pose inversion need, without any network weights. Descriptors are computed
upright (no orientation assignment): frames come from a camera moving through a scene, rarely rolled by much, and
rotation invariance would only throw distinctiveness away.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..validate import integer, number
from .base import Teacher, TeacherInput, TeacherOutput

DIM = 128


class SiftTeacher(Teacher):
    """128-D dense (root-)SIFT on an ``ceil(H/step) x ceil(W/step)`` grid, unit-length float32.

    Grid cell ``(i, j)`` is described at the centre of cell ``(i, j)`` of an ``h x w`` grid spanning the image
    (rounded to the nearest pixel, as OpenCV samples at integer pixels), so the map lines up with a bilinear
    (``align_corners=False``) resize of a full-resolution render to ``(h, w)``, which is how the trainer compares.

    Options: ``step`` grid spacing in pixels; ``size`` keypoint diameter in pixels (OpenCV's convention: the
    descriptor's 4x4 spatial bins are each ``1.5 * size`` wide, Gaussian-weighted, so the default 6 px sees a
    ~36 px window, distinctive yet local at the demo's 200x150); ``root_sift`` Hellinger normalisation (L1, then
    sqrt: Arandjelovic & Zisserman 2012), which makes Euclidean/cosine comparison behave like the Hellinger kernel
    and matches better; ``center`` removes the component along the all-ones direction, which every (non-negative)
    SIFT vector shares: without it unrelated points have cosine ~0.5-0.9, so a field predicting one constant vector
    already scores well under a cosine loss; it is the same fixed projection for every view, so multi-view
    consistency is untouched; ``min_gradient`` mean gradient magnitude (grey levels per pixel, 0-255 scale) in the
    descriptor's core below which a patch counts as textureless and is marked invalid. Cells whose centre is closer
    than ``1.5 * size`` (one spatial bin) to the border, where half the descriptor would fall off the image, are
    invalid too.
    """

    name = "sift"
    text_aligned = False
    view_dependent = True  # upright descriptors of one surface point change as the camera moves around it

    def __init__(self, step: int = 4, size: float = 6.0, root_sift: bool = True, center: bool = True,
                 min_gradient: float = 1.0):
        step = integer(step, "sift teacher: step", lo=1, hi=1024)
        size = number(size, "sift teacher: size", lo=0, hi=1024, lo_open=True)
        min_gradient = number(min_gradient, "sift teacher: min_gradient", lo=0)
        import cv2  # checked here so that a missing OpenCV is reported when the teacher is made

        self.dim = DIM
        self.step = int(step)
        self.size = float(size)
        self.root_sift = bool(root_sift)
        self.center = bool(center)
        self.min_gradient = float(min_gradient)
        self._sift = cv2.SIFT_create()

    def config(self) -> dict[str, Any]:
        return {"step": self.step, "size": self.size, "root_sift": self.root_sift, "center": self.center,
                "min_gradient": self.min_gradient, "upright": True, "grid": "cell-centres"}

    def extract(self, views: list[TeacherInput]) -> list[TeacherOutput]:
        return [self._extract_one(v) for v in views]

    def grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer pixel rows [h] and columns [w] at which the grid's descriptors are computed."""
        h, w = math.ceil(height / self.step), math.ceil(width / self.step)
        # Cell i of an h-cell grid over [0, H) is centred at c = (i + 0.5) H / h in continuous coords, i.e. at pixel
        # index c - 0.5 (pixel centres at u + 0.5); rounding that to the nearest pixel is floor(c).
        rows = np.floor((np.arange(h) + 0.5) * height / h).astype(np.int64).clip(0, height - 1)
        cols = np.floor((np.arange(w) + 0.5) * width / w).astype(np.int64).clip(0, width - 1)
        return rows, cols

    def _extract_one(self, view: TeacherInput) -> TeacherOutput:
        import cv2

        img = view.image
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != torch.uint8:
            raise DataError(f"{view.name}: the sift teacher needs an [H, W, 3] uint8 image, got "
                            f"{tuple(img.shape)} {img.dtype}")
        H, W = view.height, view.width
        gray = cv2.cvtColor(np.ascontiguousarray(img.cpu().numpy()), cv2.COLOR_RGB2GRAY)  # [H, W] uint8
        rows, cols = self.grid(H, W)
        h, w = len(rows), len(cols)
        yy, xx = np.meshgrid(rows, cols, indexing="ij")  # [h, w]
        kps = [cv2.KeyPoint(float(x), float(y), self.size, 0.0) for y, x in zip(yy.ravel(), xx.ravel())]
        got, desc = self._sift.compute(gray, kps)
        if desc is None or len(got) != len(kps):
            raise RuntimeError(f"{view.name}: OpenCV SIFT returned {0 if desc is None else len(got)} descriptors for "
                               f"{len(kps)} grid points")
        desc = desc.astype(np.float32).reshape(h, w, DIM)
        raw_norm = np.linalg.norm(desc, axis=-1)  # [h, w]; 0 where OpenCV saw no gradient at all
        if self.root_sift:
            desc = np.sqrt(desc / np.maximum(desc.sum(-1, keepdims=True), 1e-12))
        if self.center:
            desc = desc - desc.mean(-1, keepdims=True)  # minus the projection on the unit all-ones vector
        norm = np.linalg.norm(desc, axis=-1, keepdims=True)
        desc = desc / np.maximum(norm, 1e-12)

        valid = (raw_norm > 1e-6) & (norm[..., 0] > 1e-6) & (self._texture(gray, yy, xx) >= self.min_gradient)
        margin = 1.5 * self.size
        valid &= (yy >= margin) & (yy <= H - 1 - margin) & (xx >= margin) & (xx <= W - 1 - margin)
        desc[~valid] = 0.0  # an invalid cell is no opinion; zeros keep the map free of noise descriptors
        return TeacherOutput(features=torch.from_numpy(np.ascontiguousarray(desc)), valid=torch.from_numpy(valid))

    def _texture(self, gray: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Gaussian-weighted mean gradient magnitude around each grid point, over the descriptor's inner bins: [h, w].

        OpenCV normalises every descriptor to unit length, so a flat patch with a grey level of sensor noise gives a
        confident-looking random descriptor; this is the "is there anything to describe" test it lacks."""
        import cv2

        g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        mag = cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy), (0, 0), 1.5 * self.size, borderType=cv2.BORDER_REFLECT)
        return mag[yy, xx]
