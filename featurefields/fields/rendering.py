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

RENDER_NEAR, RENDER_FAR, RENDER_EPS2D = 0.01, 1e10, 0.3  # what render() is asked for, and culling agrees with
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
                 features_move_geometry: bool = False, backend: str = "auto", cull: bool = False) -> FieldRender:
    """c2w: [4, 4] OpenCV camera-to-world (differentiable: pose gradients flow into it); K: [3, 3];
    background: [3] colour behind the Gaussians; backend: see :mod:`featurefields.render.backends`.

    ``cull`` (without gradients, native backend): the Gaussians the projection finds off-image are dropped before
    colours, binning and blending, which then cost only what the image shows (a crop around one object sees a
    few percent of a scene). The image is the same: a culled Gaussian touches no tile, and the survivors keep
    their order. ``radii`` / ``means2d`` still cover every Gaussian (culled: 0)."""
    viewmat = torch.linalg.inv(c2w)
    keep = _visible(field, viewmat, K, width, height, backend) if cull and not torch.is_grad_enabled() else None
    pick = (lambda t: t) if keep is None else (lambda t: t[keep])
    means = pick(field.means)
    degree = field.sh_degree if sh_degree is None else min(sh_degree, field.sh_degree)
    dirs = means - c2w[:3, 3]
    rgb = (eval_sh_backend(degree, dirs, pick(field.sh0), pick(field.shN), backend) + 0.5).clamp_min(0)  # [N, 3]
    depth_z = (means @ viewmat[:3, :3].T + viewmat[:3, 3])[:, 2:3]  # [N, 1]
    bg = background if background is not None else torch.zeros(3, device=rgb.device)
    use_features = with_features and field.features.shape[1] > 0
    feature_dirs = dirs if features_move_geometry else dirs.detach()  # view-dependent features must not either
    feats = []
    if use_features:
        feats = [field.features_from(feature_dirs, backend) if keep is None else
                 field.features_from(field.means - c2w[:3, 3], backend)[keep]]
    colors = torch.cat([rgb, depth_z] + feats, dim=-1)
    bg_full = torch.cat([bg, bg.new_zeros(colors.shape[1] - 3)])
    out = render(means, pick(field.quats), pick(field.scales), pick(field.opacities), colors, viewmat, K, width,
                 height, background=bg_full, near=RENDER_NEAR, far=RENDER_FAR, eps2d=RENDER_EPS2D,
                 geometry_channels=None if features_move_geometry else 4, backend=backend)
    means2d, radii = out.means2d, out.radii
    if keep is not None:
        means2d = field.means.new_zeros(len(field.means), 2).index_copy_(0, keep, out.means2d)
        radii = out.radii.new_zeros(len(field.means)).index_copy_(0, keep, out.radii)
    return FieldRender(rgb=out.image[..., :3], features=out.image[..., 4:] if use_features else None,
                       depth=out.image[..., 3], alpha=out.alpha[..., 0], means2d=means2d, radii=radii)


def _visible(field: GaussianField, viewmat: Tensor, K: Tensor, width: int, height: int, backend: str):
    """[M] indices of the Gaussians the native projection keeps in this camera (render's near, far and low-pass),
    or None where culling would not pay (another backend, or a third of them or more may be in view).

    The projection costs as much per Gaussian as the rest of a small crop's render, so a bound picks the
    candidates first: a footprint's radius is 3 sqrt(largest eigenvalue of J Sigma J^T + eps2d), at most
    3 sqrt(|J|_F^2 s_max^2 + eps2d) with J the projection's Jacobian (|J|_F^2 = (fx^2 + fy^2 + (u - cx)^2 +
    (v - cy)^2) / z^2); whoever's bounding square misses the image cannot be drawn. The projection then decides
    among the candidates, so the survivors are exactly the Gaussians it keeps."""
    from ..render import native, resolve_backend

    if resolve_backend(backend, field.means.device) != "native":
        return None
    means = field.means
    cam = means @ viewmat[:3, :3].T + viewmat[:3, 3]  # [N, 3]
    z = cam[:, 2].clamp_min(0.5 * RENDER_NEAR)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    du, dv = fx * cam[:, 0] / z, fy * cam[:, 1] / z  # (u - cx, v - cy)
    jac2 = (fx * fx + fy * fy + du * du + dv * dv) / (z * z)
    r = 3 * torch.sqrt(jac2 * field.scales.max(-1).values ** 2 + RENDER_EPS2D) + 2  # pixels, with a margin
    u, v = du + cx, dv + cy
    cand = ((cam[:, 2] > 0.5 * RENDER_NEAR) & (u + r > 0) & (u - r < width) & (v + r > 0) & (v - r < height))
    cand = cand.nonzero()[:, 0]
    if len(cand) > 0.3 * len(means):
        return None
    proj = native.project(means[cand], field.quats[cand], field.scales[cand], viewmat, K, width, height,
                          near=RENDER_NEAR, far=RENDER_FAR, eps2d=RENDER_EPS2D)
    return cand[proj.radii > 0]
