"""The segments teacher: graph-based (Felzenszwalb-Huttenlocher) segmentation, an offline stand-in for SAM's masks.

Grouping losses (GARField, GaussianGrasper) only need "these pixels belong together, those do not"; a classical
over-segmentation gives that without network weights. Unlike feature teachers, its output is not a target to
regress but a label map: it carries the class attribute ``kind = "masks"``. Teachers without a ``kind`` attribute are
feature teachers; consumers ask ``getattr(teacher, "kind", "features")``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..validate import integer, number
from .base import Teacher, TeacherInput, TeacherOutput

# Segment ids travel through the float16 feature cache, which holds integers exactly only up to 2048.
MAX_SEGMENTS = 2048


class SegmentsTeacher(Teacher):
    """Felzenszwalb-Huttenlocher segments at full image resolution, as a label map.

    ``features`` is ``[H, W, 1]`` float32 holding each pixel's segment id, contiguous from 0 and numbered in raster
    order of each segment's first pixel (so the output is a pure function of the image); ``valid`` is all True. Read
    the ids with :func:`segment_ids`, and resample them only with nearest-neighbour lookups, never bilinearly.

    Options (the classical ones, on a 0-255 colour scale): ``scale`` (k) is how much a region must differ from its
    neighbour to stay separate, larger giving larger segments; ``sigma`` is the Gaussian pre-smoothing in pixels
    (too little and sensor noise fragments flat regions, too much and blurred edges become thin segments of their
    own);
    ``min_size`` merges any smaller segment into its most similar neighbour. Should an image still have more than
    2048 segments, ``min_size`` is doubled until it does not (ids must stay exact in float16).
    """

    name = "segments"
    text_aligned = False
    kind = "masks"

    def __init__(self, scale: float = 300.0, sigma: float = 0.5, min_size: int = 40):
        scale = number(scale, "segments teacher: scale", lo=0, lo_open=True)
        sigma = number(sigma, "segments teacher: sigma", lo=0, hi=100)
        min_size = integer(min_size, "segments teacher: min_size", lo=1)
        self.dim = 1
        self.scale = float(scale)
        self.sigma = float(sigma)
        self.min_size = int(min_size)

    def config(self) -> dict[str, Any]:
        return {"algorithm": "felzenszwalb-8nbr", "scale": self.scale, "sigma": self.sigma, "min_size": self.min_size,
                "max_segments": MAX_SEGMENTS}

    def extract(self, views: list[TeacherInput]) -> list[TeacherOutput]:
        return [self._extract_one(v) for v in views]

    def _extract_one(self, view: TeacherInput) -> TeacherOutput:
        img = view.image
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != torch.uint8:
            raise DataError(f"{view.name}: the segments teacher needs an [H, W, 3] uint8 image, got "
                            f"{tuple(img.shape)} {img.dtype}")
        ids = felzenszwalb(img.cpu().numpy(), self.scale, self.sigma, self.min_size, max_segments=MAX_SEGMENTS)
        feats = torch.from_numpy(ids.astype(np.float32))[..., None]
        return TeacherOutput(features=feats, valid=torch.ones(ids.shape, dtype=torch.bool))


def segment_ids(out: TeacherOutput) -> Tensor:
    """A segments teacher's output (fresh float32 or cached float16) back as integer ids: [H, W] int64."""
    return torch.as_tensor(out.features)[..., 0].float().round().long()


def felzenszwalb(image: np.ndarray, scale: float = 300.0, sigma: float = 0.5, min_size: int = 40,
                 max_segments: int | None = None) -> np.ndarray:
    """Graph-based segmentation (Felzenszwalb & Huttenlocher 2004) of an [H, W, C] image: [H, W] int64 ids from 0.

    Pixels are nodes, 8-neighbours are joined by edges weighted by colour distance; edges are visited in increasing
    weight and two components merge when the edge is no heavier than either's internal variation plus
    ``scale / size``. Edge construction and sorting are vectorised; the merge sweep is a union-find over Python
    lists (sequential by nature, ~0.1 s per 30k-pixel image).
    """
    import cv2

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    H, W = img.shape[:2]
    if H == 0 or W == 0:
        return np.zeros((H, W), np.int64)
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        if img.ndim == 2:
            img = img[..., None]
    idx = np.arange(H * W).reshape(H, W)
    pairs = [
        (idx[:, :-1], idx[:, 1:], img[:, :-1], img[:, 1:]),  # right
        (idx[:-1, :], idx[1:, :], img[:-1, :], img[1:, :]),  # down
        (idx[:-1, :-1], idx[1:, 1:], img[:-1, :-1], img[1:, 1:]),  # down-right
        (idx[:-1, 1:], idx[1:, :-1], img[:-1, 1:], img[1:, :-1]),  # down-left
    ]
    a = np.concatenate([p[0].ravel() for p in pairs])
    b = np.concatenate([p[1].ravel() for p in pairs])
    w = np.concatenate([np.sqrt(((p[2] - p[3]) ** 2).sum(-1)).ravel() for p in pairs])
    order = np.argsort(w, kind="stable")  # stable: ties break by edge index, so the result is deterministic
    a, b, w = a[order].tolist(), b[order].tolist(), w[order].tolist()

    n = H * W
    parent = list(range(n))
    size = [1] * n
    thresh = [float(scale)] * n  # internal variation + scale / size, kept per root

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v, wt in zip(a, b, w):
        ru, rv = find(u), find(v)
        if ru != rv and wt <= thresh[ru] and wt <= thresh[rv]:
            if size[ru] < size[rv]:
                ru, rv = rv, ru
            parent[rv] = ru
            size[ru] += size[rv]
            thresh[ru] = wt + scale / size[ru]  # edges come sorted, so wt is the new component's largest MST edge

    def absorb_small(limit: int) -> None:
        # Visiting edges lightest first merges each small segment into its most similar neighbour.
        for u, v in zip(a, b):
            ru, rv = find(u), find(v)
            if ru != rv and (size[ru] < limit or size[rv] < limit):
                if size[ru] < size[rv]:
                    ru, rv = rv, ru
                parent[rv] = ru
                size[ru] += size[rv]

    absorb_small(min_size)
    roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    limit = min_size
    while max_segments is not None and len(np.unique(roots)) > max_segments:
        limit *= 2
        absorb_small(limit)
        roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)

    # Number segments by first appearance in raster order: independent of union-find internals.
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)].reshape(H, W)
