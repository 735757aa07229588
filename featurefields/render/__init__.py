"""Differentiable Gaussian-splat rendering of any number of channels, with interchangeable backends.

``render`` = projection (EWA splatting of 3D Gaussians into one pinhole camera) followed by rasterisation
(tile-based front-to-back alpha compositing of any number of channels). The maths follows original 3DGS / gsplat's
classic mode. The plain PyTorch modules here (:func:`project`, :func:`eval_sh`, :func:`rasterize`) are the reference;
:mod:`.native` runs the same rules in the compiled kernels of ``cuda_ext/`` (CPU and CUDA); :mod:`.backends` picks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import native
from .backends import BACKENDS, DEFAULT_TILE_SIZE, available_backends, resolve_backend
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
           far: float = 1e10, eps2d: float = 0.3, tile_size: int | None = None,
           geometry_channels: int | None = None, backend: str = "auto") -> RenderResult:
    """Render N Gaussians (means [N,3], quats [N,4] wxyz, scales [N,3] linear, opacities [N], colors [N,C]) into
    one camera (viewmat [4,4] world-to-camera, OpenCV axes; K [3,3]); background [C] or None for zeros.

    Differentiable w.r.t. the Gaussians, colours, background and the view matrix (camera pose). means2d.grad
    (screen-space positional gradient) is kept for adaptive density control. ``geometry_channels``: see
    :func:`rasterize` (channels past it do not move the Gaussians). ``backend``: see :mod:`.backends`;
    ``tile_size`` only changes speed (default per backend).
    """
    name = resolve_backend(backend, means.device)
    tile_size = DEFAULT_TILE_SIZE[name] if tile_size is None else tile_size
    if name == "gsplat":
        from .gsplat_backend import render_gsplat

        C = colors.shape[1]
        bg = background if background is not None else colors.new_zeros(C)
        image, alpha, means2d, radii, depths = render_gsplat(
            means, quats, scales, opacities, colors, viewmat, K, width, height, bg.to(colors), near, far, eps2d,
            tile_size, C if geometry_channels is None else geometry_channels)
        return RenderResult(image=image, alpha=alpha, means2d=means2d, radii=radii, depths=depths)
    impl = native if name == "native" else None
    proj = (impl.project if impl else project)(means, quats, scales, viewmat, K, width, height, near=near, far=far,
                                               eps2d=eps2d)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    image, alpha = (impl.rasterize if impl else rasterize)(proj, opacities, colors, width, height,
                                                          background=background, tile_size=tile_size,
                                                          geometry_channels=geometry_channels)
    return RenderResult(image=image, alpha=alpha, means2d=proj.means2d, radii=proj.radii, depths=proj.depths)


def eval_sh_backend(degree: int, dirs: Tensor, coeffs: Tensor, rest: Tensor | None = None,
                    backend: str = "auto") -> Tensor:
    """:func:`eval_sh` (dirs [N, 3], coeffs [N, K, C] -> [N, C]) on the chosen backend (gsplat: the reference);
    ``rest`` [N, K', C] continues ``coeffs`` along dim 1 (the DC term kept apart, as 3DGS does)."""
    if resolve_backend(backend, coeffs.device) == "native":
        return native.eval_sh(degree, dirs, coeffs, rest)
    return eval_sh(degree, dirs, coeffs if rest is None else torch.cat([coeffs, rest], dim=1))


__all__ = ["BACKENDS", "Projection", "RenderResult", "available_backends", "eval_sh", "eval_sh_backend", "native",
           "num_sh_bases", "project", "quat_scale_to_covar", "rasterize", "rasterize_brute", "render",
           "resolve_backend"]
