"""Render a GaussianField from one camera: colour, rendered feature channels, depth and alpha.

Colour, depth and features are rasterised as channels of one image in one pass. By default features must not move
geometry (a teacher's mistakes should not bend the scene): the rasteriser then sends only the colour and depth
channels' gradients to the Gaussians' geometry (``geometry_channels``), and the feature loss trains the features
and decoders alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..render import eval_sh_backend, render
from .gaussians import GaussianField


@dataclass
class FieldRender:
    rgb: Tensor  # [H, W, 3]
    features: Tensor | None  # [H, W, F] rendered (latent or full-width) features, before decoding
    depth: Tensor  # [H, W] expected depth along the optical axis (0 where nothing was hit)
    alpha: Tensor  # [H, W]
    means2d: Tensor  # [N, 2] projected means; .grad after backward drives density control
    radii: Tensor  # [N]


def render_field(field: GaussianField, c2w: Tensor, K: Tensor, width: int, height: int, *,
                 background: Tensor | None = None, sh_degree: int | None = None, with_features: bool = True,
                 features_move_geometry: bool = False, backend: str = "auto") -> FieldRender:
    """c2w: [4, 4] OpenCV camera-to-world (differentiable: pose gradients flow into it); K: [3, 3];
    background: [3] colour behind the Gaussians; backend: see :mod:`featurefields.render.backends`."""
    viewmat = torch.linalg.inv(c2w)
    degree = field.sh_degree if sh_degree is None else min(sh_degree, field.sh_degree)
    dirs = field.means - c2w[:3, 3]
    rgb = (eval_sh_backend(degree, dirs, field.sh0, field.shN, backend) + 0.5).clamp_min(0)  # [N, 3]
    depth_z = (field.means @ viewmat[:3, :3].T + viewmat[:3, 3])[:, 2:3]  # [N, 1]
    bg = background if background is not None else torch.zeros(3, device=rgb.device)
    use_features = with_features and field.features.shape[1] > 0
    feature_dirs = dirs if features_move_geometry else dirs.detach()  # view-dependent features must not either
    colors = torch.cat([rgb, depth_z] + ([field.features_from(feature_dirs, backend)] if use_features else []), dim=-1)
    bg_full = torch.cat([bg, bg.new_zeros(colors.shape[1] - 3)])
    out = render(field.means, field.quats, field.scales, field.opacities, colors, viewmat, K, width, height,
                 background=bg_full, geometry_channels=None if features_move_geometry else 4, backend=backend)
    return FieldRender(rgb=out.image[..., :3], features=out.image[..., 4:] if use_features else None,
                       depth=out.image[..., 3], alpha=out.alpha[..., 0], means2d=out.means2d, radii=out.radii)
