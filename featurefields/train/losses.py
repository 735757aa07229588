"""Image and feature losses; SSIM doubles as the evaluation metric."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _gaussian_taps(size: int, sigma: float, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of two images [H, W, C] in [0, 1] (Gaussian window, as in 3DGS; zero padding).

    The 2D Gaussian window is separable, so the five local means (x, y, x^2, y^2, xy) are blurred together as one
    5C-channel image by a horizontal and a vertical 1D pass: 2 x 11 taps per pixel instead of 121.
    """
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    c = x.shape[1]
    taps = _gaussian_taps(window, sigma, x.device, x.dtype)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [1, 5C, H, W]
    pad = window // 2
    blurred = F.conv2d(stack, taps.view(1, 1, 1, window).expand(5 * c, 1, 1, window), padding=(0, pad), groups=5 * c)
    blurred = F.conv2d(blurred, taps.view(1, 1, window, 1).expand(5 * c, 1, window, 1), padding=(pad, 0),
                       groups=5 * c)
    mu_x, mu_y, exx, eyy, exy = blurred.split(c, dim=1)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


def psnr(a: Tensor, b: Tensor) -> Tensor:
    mse = F.mse_loss(a.clamp(0, 1), b.clamp(0, 1))
    return -10 * torch.log10(mse.clamp_min(1e-12))


def rgb_loss(pred: Tensor, gt: Tensor, lambda_dssim: float) -> Tensor:
    l1 = (pred - gt).abs().mean()
    if lambda_dssim == 0:
        return l1
    return (1 - lambda_dssim) * l1 + lambda_dssim * (1 - ssim(pred, gt))


def depth_loss(depth: Tensor, alpha: Tensor, gt: Tensor) -> Tensor:
    """Relative L1 between the rendered surface depth and a metric depth map, where both exist.

    depth: [H, W] alpha-weighted z (the rasteriser's depth channel), alpha: [H, W], gt: [H, W] metres, 0 = unknown.
    The rendered depth is normalised by alpha (the depth of what was hit) on pixels the field covers (alpha > 0.5);
    dividing the error by the true depth weighs near and far surfaces alike. Floaters in front of a surface, which
    colour alone cannot see from few views, pay for their distance.
    """
    valid = (gt > 0) & (alpha.detach() > 0.5)
    if not bool(valid.any()):
        return depth.sum() * 0
    z = depth[valid] / alpha[valid]
    return ((z - gt[valid]).abs() / gt[valid]).mean()


def cosine_map(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel cosine similarity of two feature maps [..., D] -> [...]."""
    return F.cosine_similarity(pred, target, dim=-1, eps=1e-8)


def linear_cosine_loss(z: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor) -> Tensor:
    """mean(1 - cos(z W^T + b, target)) without forming the decoded features.

    z: [n, F] latents, weight: [D, F], bias: [D], target: [n, D]. With D (a teacher's width, 384-768) much larger
    than F (16-64), the decoded [n, D] block and the elementwise passes over it dominate a training step; here the
    dot product is (target W) . z + target . b and the squared norm z (W^T W) z + 2 z . (W^T b) + |b|^2, so the only
    D-wide work is one [n, D] x [D, F] product. Same value and gradients as decoding first (up to rounding).
    """
    t_norm = torch.linalg.vector_norm(target, dim=-1).clamp_min(1e-8)  # [n] (targets normalised after the product)
    dot = ((target @ weight) * z).sum(-1)  # [n]
    gram = weight.T @ weight  # [F, F]
    sq = ((z @ gram) * z).sum(-1)
    if bias is not None:
        dot = dot + target @ bias
        sq = sq + 2 * (z @ (weight.T @ bias)) + bias @ bias
    return (1 - dot / (t_norm * sq.clamp_min(1e-16).sqrt().clamp_min(1e-8))).mean()


def feature_loss(pred: Tensor, target: Tensor, valid: Tensor, kind: str) -> Tensor:
    """pred, target: [h, w, D]; valid: [h, w] bool."""
    if not bool(valid.any()):
        return pred.sum() * 0
    p, t = pred[valid], target[valid]
    if kind == "cosine":
        return (1 - cosine_map(p, t)).mean()
    if kind == "l1":
        return (p - t).abs().mean()
    raise ValueError(f"unknown feature loss {kind!r}")
