"""gsplat's CUDA rasteriser behind the same contract as :func:`featurefields.render.render` (GPU only).

Kept for comparison and for users who already trust gsplat; ``auto`` never picks it. gsplat has no notion of
geometry-only channels, so when some channels must not move the geometry it renders twice: the geometry channels
normally, the others with detached geometry (the native and reference backends do this in one pass).
"""
from __future__ import annotations

import torch
from torch import Tensor


def render_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmat: Tensor,
                  K: Tensor, width: int, height: int, background: Tensor, near: float, far: float, eps2d: float,
                  tile_size: int, geometry_channels: int):
    """-> (image [H, W, C], alpha [H, W, 1], means2d [N, 2] (grad retained), radii [N] int32, depths [N])."""
    from gsplat import rasterization

    def call(cols: Tensor, bg: Tensor, detach: bool):
        geo = [t.detach() if detach else t for t in (means, quats, scales, opacities)]
        img, alpha, meta = rasterization(*geo, cols, viewmat[None], K[None], width, height, near_plane=near,
                                         far_plane=far, eps2d=eps2d, packed=False, tile_size=tile_size,
                                         backgrounds=bg[None], render_mode="RGB", rasterize_mode="classic")
        return img[0], alpha[0], meta

    k = geometry_channels
    image, alpha, meta = call(colors[:, :k] if k > 0 else colors[:, :1], background[:k] if k > 0 else background[:1],
                              detach=False)
    if k == 0:
        image = image[..., :0]
    if k < colors.shape[1]:
        rest, _, _ = call(colors[:, k:], background[k:], detach=True)
        image = torch.cat([image, rest], dim=-1)
    means2d = meta["means2d"][0]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = meta["radii"][0]
    if radii.ndim == 2:  # gsplat >= 1.5: per-axis radii
        radii = radii.max(dim=-1).values
    depths = meta["depths"][0]
    return image, alpha, means2d, radii.to(torch.int32), depths
