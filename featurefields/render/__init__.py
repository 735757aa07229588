"""Differentiable Gaussian-splat rendering in plain PyTorch (the reference implementation).

``render`` = :func:`project` (EWA splatting of 3D Gaussians into one pinhole camera) followed by :func:`rasterize`
(tile-based front-to-back alpha compositing of any number of channels). The maths follows original 3DGS / gsplat's
classic mode; see the module docstrings for the exact rules.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .brute import rasterize_brute
from .projection import Projection, project, quat_scale_to_covar
from .rasterize import rasterize
from .sh import eval_sh, num_sh_bases


@dataclass
class RenderResult:
    image: Tensor  # [H, W, C]
    alpha: Tensor  # [H, W, 1]
    means2d: Tensor  # [N, 2] projected means that were rasterised; .grad is filled after backward when it requires grad
    radii: Tensor  # [N] int32, 0 = culled
    depths: Tensor  # [N] camera-space z


def render(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmat: Tensor,
           K: Tensor, width: int, height: int, background: Tensor | None = None, near: float = 0.01,
           far: float = 1e10, eps2d: float = 0.3, tile_size: int = 8,
           geometry_channels: int | None = None) -> RenderResult:
    """Render N Gaussians (means [N,3], quats [N,4] wxyz, scales [N,3] linear, opacities [N], colors [N,C]) into
    one camera (viewmat [4,4] world-to-camera, OpenCV axes; K [3,3]); background [C] or None for zeros.

    means2d.grad (screen-space positional gradient) is kept for adaptive density control. ``geometry_channels``:
    see :func:`rasterize` (channels past it do not move the Gaussians).
    """
    proj = project(means, quats, scales, viewmat, K, width, height, near=near, far=far, eps2d=eps2d)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    image, alpha = rasterize(proj, opacities, colors, width, height, background=background, tile_size=tile_size,
                             geometry_channels=geometry_channels)
    return RenderResult(image=image, alpha=alpha, means2d=proj.means2d, radii=proj.radii, depths=proj.depths)


__all__ = ["Projection", "RenderResult", "eval_sh", "num_sh_bases", "project", "quat_scale_to_covar", "rasterize",
           "rasterize_brute", "render"]
