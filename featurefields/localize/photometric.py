"""Comparing renders with the query image: rendering at a pose, normalised cross-correlation (how hypotheses are
ranked and a final pose is verified) and the robust, exposure-compensated photometric residual the fine stage
minimises."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..fields.base import FeatureField
    from ..fields.rendering import FieldRender

GREY = (0.299, 0.587, 0.114)


def render_view(field: "FeatureField", c2w: Tensor, K: Tensor, width: int, height: int) -> "FieldRender":
    """Colour, depth and alpha of the field at pose ``c2w`` [4, 4] (world frame; differentiable when it requires
    grad) with intrinsics ``K`` at ``width`` x ``height``."""
    from ..fields.base import View

    pose = c2w.float()
    view = View("query", pose.detach(), K.float(), int(width), int(height))
    return field.render(view, c2w=pose, with_features=False)


def grey(img: Tensor) -> Tensor:
    return img @ img.new_tensor(GREY)


def ncc(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    """Zero-mean normalised cross-correlation of two [H, W, 3] images' grey levels (over ``mask`` if given):
    1 for identical pictures up to gain and offset, ~0 for unrelated ones."""
    x, y = grey(a.detach().float()), grey(b.detach().float())
    if mask is not None:
        x, y = x[mask], y[mask]
    x, y = x.reshape(-1), y.reshape(-1)
    if x.numel() < 16:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    den = float(torch.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / den if den > 1e-12 else 0.0


def fit_gain(render: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel gain and offset (least squares, clamped to [0.5, 2]) mapping render to target over ``mask``:
    auto exposure and white balance differ between cameras; the pose should not have to explain them."""
    x, y = render.detach()[mask], target[mask]  # [P, 3]
    if x.shape[0] < 16:
        return render.new_ones(3), render.new_zeros(3)
    xm, ym = x.mean(0), y.mean(0)
    var = ((x - xm) ** 2).mean(0)
    gain = (((x - xm) * (y - ym)).mean(0) / var.clamp_min(1e-8)).clamp(0.5, 2.0)
    return gain, ym - gain * xm


def cauchy(r: Tensor, scale: float) -> Tensor:
    """Cauchy (Lorentzian) robust loss: quadratic near 0, logarithmic for outliers (occluders, glare, changes)."""
    return torch.log1p((r / scale) ** 2)


def photometric_loss(out, target: Tensor, *, robust_scale: float, min_alpha: float, brightness: bool
                     ) -> tuple[Tensor, Tensor]:
    """(loss, covered): the mean Cauchy loss of colour residuals over the whole image (the render composited on
    the field's background), and the pixels the field covers (alpha > ``min_alpha``), where the gain is fitted.

    Every pixel counts, covered or not: a loss over covered pixels only is zero for a camera that looks at
    nothing, and an optimiser finds that exit."""
    covered = out.alpha.detach() > min_alpha
    rgb = out.rgb
    if brightness:
        gain, offset = fit_gain(rgb, target, covered)
        rgb = rgb * gain + offset
    return cauchy(rgb - target, robust_scale).mean(), covered


def depth_loss(out: "FieldRender", depth: Tensor, mask: Tensor, scale: float = 0.05) -> Tensor:
    """Mean Cauchy loss of the relative difference between rendered depth and the query's depth image."""
    m = mask & (depth > 0)
    if not bool(m.any()):
        return out.depth.sum() * 0
    d = out.depth[m] / out.alpha.detach()[m].clamp_min(1e-3)
    return cauchy((d - depth[m]) / depth[m], scale).mean()
