"""Pictures of an estimate: the query | the field rendered at the estimated pose | their difference (turbo, 0 to
0.25 in colour), so a glance says whether the pose is right."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..viz import colormap, labelled_row, stack_rows, to_uint8
from .photometric import render_view

if TYPE_CHECKING:
    from ..fields.base import FeatureField, View
    from .pipeline import PoseEstimate

MAX_DIFF = 0.25


def estimate_row(field: "FeatureField", image: torch.Tensor, K: torch.Tensor, est: "PoseEstimate",
                 title: str = "query") -> np.ndarray:
    """One labelled row for ``image`` [H, W, 3] float in [0, 1] (or uint8)."""
    img = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    h, w = img.shape[:2]
    if est.c2w is None:
        blank = np.zeros((h, w, 3), np.uint8)
        return labelled_row([to_uint8(img), blank, blank], [title, "no pose", est.reason[:40]])
    with torch.no_grad():
        out = render_view(field, torch.from_numpy(np.asarray(est.c2w)), K.double(), w, h)
    diff = (out.rgb.clamp(0, 1) - img).abs().mean(-1)
    return labelled_row([to_uint8(img), to_uint8(out.rgb), colormap(diff, 0.0, MAX_DIFF)],
                        [title, f"render (NCC {est.ncc:.2f})", "|difference|"])


def estimate_grid(field: "FeatureField", items: list[tuple["View", "PoseEstimate"]]) -> np.ndarray:
    return stack_rows([estimate_row(field, v.image, v.K, est, v.stem) for v, est in items])
