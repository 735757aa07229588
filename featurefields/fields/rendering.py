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

RENDER_NEAR, RENDER_FAR, RENDER_EPS2D = 0.01, 1e10, 0.3  # what render() is asked for, and culling agrees with


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
    # (the raw parameters are picked, then transformed: no pass over every Gaussian)
    means, quats = pick(field.means), pick(field.quats)
    scales, opacities = pick(field.log_scales).exp(), torch.sigmoid(pick(field.opacity_logits))
    degree = field.sh_degree if sh_degree is None else min(sh_degree, field.sh_degree)
    dirs = means - c2w[:3, 3]
    rgb = (eval_sh_backend(degree, dirs, pick(field.sh0), pick(field.shN), backend) + 0.5).clamp_min(0)  # [N, 3]
    depth_z = (means @ viewmat[:3, :3].T + viewmat[:3, 3])[:, 2:3]  # [N, 1]
    bg = background if background is not None else torch.zeros(3, device=rgb.device)
    use_features = with_features and field.features.shape[1] > 0
    feature_dirs = dirs if features_move_geometry else dirs.detach()  # view-dependent features must not either
    feats = [field.features_from(feature_dirs, backend, index=keep)] if use_features else []
    colors = torch.cat([rgb, depth_z] + feats, dim=-1)
    bg_full = torch.cat([bg, bg.new_zeros(colors.shape[1] - 3)])
    out = render(means, quats, scales, opacities, colors, viewmat, K, width, height, background=bg_full,
                 near=RENDER_NEAR, far=RENDER_FAR, eps2d=RENDER_EPS2D,
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
    candidates first, in one native pass (``footprint_candidates``: a footprint's radius is at most
    3 sqrt(|J|_F^2 s_max^2 + eps2d) with J the projection's Jacobian; whoever's bounding square misses the image
    cannot be drawn). The projection then decides among the candidates, so the survivors are exactly the
    Gaussians it keeps."""
    from ..render import native, resolve_backend

    if resolve_backend(backend, field.means.device) != "native" or field.means.device.type != "cpu":
        return None
    means = field.means.detach()
    lib = native.native_module()
    if not hasattr(lib, "footprint_candidates"):  # an extension built before it
        return None
    cand = lib.footprint_candidates(means, field.log_scales.detach().to(means), viewmat.detach().to(means),
                                    K.detach().to(means), int(width), int(height), RENDER_EPS2D, RENDER_NEAR)
    if len(cand) > 0.3 * len(means):
        return None
    proj = native.project(means[cand], field.quats[cand], field.log_scales[cand].exp(), viewmat, K, width, height,
                          near=RENDER_NEAR, far=RENDER_FAR, eps2d=RENDER_EPS2D)
    return cand[proj.radii > 0]
