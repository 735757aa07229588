"""Brute-force rasteriser: every pixel against every Gaussian, plain autograd. Small sizes only.

It is the independent check for :mod:`featurefields.render.rasterize` (tiles, blocks, hand-written backward): same
compositing rule, written as directly as possible, and with T_final tracked as a product rather than derived from
the weights.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .projection import Projection
from .rasterize import ALPHA_MAX, ALPHA_MIN, T_MIN, check_inputs, depth_order, pixel_bounds


def rasterize_brute(proj: Projection, opacities: Tensor, colors: Tensor, width: int, height: int,
                    background: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`featurefields.render.rasterize.rasterize`, memory O(H * W * N)."""
    opacities, colors, background = check_inputs(proj, opacities, colors, width, height, background)
    bounds = pixel_bounds(proj.means2d, proj.radii, width, height)
    ids = depth_order(proj.depths, bounds)  # [n] front to back
    m, con, o, col, bnd = proj.means2d[ids], proj.conics[ids], opacities[ids], colors[ids], bounds[ids]
    dev = m.device

    v, u = torch.meshgrid(torch.arange(height, device=dev), torch.arange(width, device=dev), indexing="ij")
    u, v = u.reshape(-1, 1), v.reshape(-1, 1)  # [HW, 1] pixel indices
    dx = (u.to(m.dtype) + 0.5) - m[:, 0]  # [HW, n]
    dy = (v.to(m.dtype) + 0.5) - m[:, 1]
    inside = (u >= bnd[:, 0]) & (u <= bnd[:, 1]) & (v >= bnd[:, 2]) & (v <= bnd[:, 3])
    sigma = 0.5 * con[:, 2] * dy * dy + 0.5 * con[:, 0] * dx * dx + con[:, 1] * dx * dy
    alpha_raw = o * torch.exp(-sigma.clamp(min=0))
    keep = inside & (sigma >= 0) & (alpha_raw >= ALPHA_MIN)
    alpha = torch.where(keep, alpha_raw.clamp(max=ALPHA_MAX), torch.zeros_like(alpha_raw))

    with torch.no_grad():  # which Gaussians each pixel reaches before its transmittance runs out
        used = torch.cumprod(1.0 - alpha, dim=1) >= T_MIN
    alpha = alpha * used
    T_incl = torch.cumprod(1.0 - alpha, dim=1)  # [HW, n]
    T_before = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], dim=1)
    weights = alpha * T_before
    T_final = T_incl[:, -1:] if T_incl.shape[1] else torch.ones_like(dx[:, :1])
    image = weights @ col + T_final * background  # [HW, C]
    C = colors.shape[1]
    return image.reshape(height, width, C), (1.0 - T_final).reshape(height, width, 1)
