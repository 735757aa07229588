"""What a browser sees in each mode: the field's colour, depth, feature PCA, a query's relevancy heatmap, or the
current selection, each drawn from one render of the field at the browser's camera.

Everything is asked of the field and its query engine (render, decode, relevancy_2d); the pictures reuse the
query exports' turbo map and heatmap overlay, so the viewer shows a query exactly as ``ff-query`` writes it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FFError
from ..fields.base import FeatureField, View
from ..query.engine import DEFAULT_THRESHOLD
from ..query.export import heatmap_overlay, turbo
from ..viz import FeaturePCA, to_uint8

RGB, DEPTH, RELEVANCY, SELECTION = "RGB", "Depth", "Relevancy", "Selection"
FEATURES = "Features: "  # + teacher name
HIGHLIGHT = (1.0, 0.42, 0.0)  # selected Gaussians are drawn half-way towards this orange
HIGHLIGHT_MIX = 0.6
NO_SURFACE = np.array([40, 40, 48], np.uint8)  # depth mode: pixels the field does not cover


def modes_for(field: FeatureField) -> list[str]:
    """The modes a field can show: features only for teachers it has, relevancy only if one is text-aligned."""
    out = [RGB, DEPTH] + [FEATURES + t for t in field.teacher_names]
    try:
        field.text_teacher()
        out.append(RELEVANCY)
    except FFError:
        pass
    return out + [SELECTION]


@dataclass(frozen=True)
class QuerySpec:
    """A text query as the query form states it (positives 'a; b'; negatives: a mode of
    QueryEngine.resolve_query or 'x; y')."""

    text: str
    negatives: str = "auto"
    threshold: float = DEFAULT_THRESHOLD
    teacher: str | None = None


class Painter:
    """Turns renders into pictures; shared by all browsers of a server, so they share one PCA basis per teacher
    (fitted once per session: colours then mean the same thing in every view and never flicker)."""

    def __init__(self):
        self._pca: dict[str, FeaturePCA] = {}
        self._lock = threading.Lock()

    def pca(self, field: FeatureField, teacher: str, fallback: View) -> FeaturePCA:
        with self._lock:
            if teacher not in self._pca:
                try:
                    view = field.views("train")[0]
                except FFError:  # a field without its scene: fit on the first view asked for
                    view = fallback
                out = field.render(view)
                feats = F.normalize(field.decode(out.features, teacher).float(), dim=-1)
                # 4096 samples fix three components as well as the whole image, at a fraction of the SVD's time
                self._pca[teacher] = FeaturePCA(feats, out.alpha > 0.5, max_samples=4096)
            return self._pca[teacher]

    @torch.no_grad()
    def paint(self, field: FeatureField, view: View, mode: str, *, query: QuerySpec | None = None,
              highlight: FeatureField | None = None, depth_range: tuple[float, float] | None = None
              ) -> tuple[np.ndarray, dict]:
        """-> (uint8 [H, W, 3] picture, info). ``highlight``: the field with the selection recoloured (see
        :func:`~featurefields.query.edit.recolour`); ``depth_range``: metres mapped to the ends of turbo (fixed
        per browser; None: taken from this frame and returned in info['depth_range'])."""
        info: dict = {"mode": mode}
        needs_features = mode == RELEVANCY and query is not None or mode.startswith(FEATURES)
        out = field.render(view, with_features=needs_features)
        if mode == DEPTH:
            alpha = out.alpha
            depth = out.depth / alpha.clamp_min(1e-6)
            valid = alpha > 0.5
            if depth_range is None:
                d = depth[valid]
                depth_range = ((float(d.quantile(0.02)), float(d.quantile(0.98))) if d.numel() > 16
                               else (0.0, 1.0))
            lo, hi = depth_range
            img = (turbo(((depth - lo) / max(hi - lo, 1e-6)).cpu()) * 255 + 0.5).astype(np.uint8)
            img[~valid.cpu().numpy()] = NO_SURFACE
            info["depth_range"] = depth_range
            return img, info
        if mode.startswith(FEATURES):
            teacher = mode[len(FEATURES):]
            pca = self.pca(field, teacher, view)
            # unit features . components through the field's scores: a linear head is folded into the three
            # components, so no [H, W, D] map is ever decoded (800x600, D = 384: 5.4 s -> 0.27 s on a busy 2-core CPU)
            lat = out.features.reshape(-1, out.features.shape[-1])
            proj = field.scores(lat, pca.basis.T.contiguous(), teacher).cpu() - pca.mean @ pca.basis
            img = pca.colour(proj.reshape(*out.features.shape[:-1], -1))
            bg = to_uint8(out.rgb)
            a = out.alpha.clamp(0, 1).cpu().numpy()[..., None]
            return (img * a + bg * (1 - a) + 0.5).astype(np.uint8), info
        if mode == RELEVANCY and query is not None:
            rel = field.engine.relevancy_2d(query.text, view, negatives=query.negatives, teacher=query.teacher,
                                            out=out)
            info["hot_pixels"] = int(rel.mask(query.threshold).sum())
            return heatmap_overlay(out.rgb, rel.combined, query.threshold), info
        if mode == SELECTION and highlight is not None:
            marked = highlight.render(view, with_features=False).rgb
            mixed = out.rgb + HIGHLIGHT_MIX * (marked - out.rgb)  # unselected pixels: marked == rgb
            return to_uint8(mixed), info
        return to_uint8(out.rgb), info
