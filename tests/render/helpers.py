"""Random scenes for the renderer tests."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import torch

from featurefields.render import Projection


def random_projection(n: int, width: int, height: int, *, dtype=torch.float64, seed: int = 0,
                      sigma_px=(0.6, 4.0), opacity=(0.05, 0.95), margin: float = 4.0):
    """n screen-space Gaussians (random means, anisotropic covariances, radii from the largest eigenvalue) spread
    over the image and a margin around it. Returns (Projection, opacities [n])."""
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor([-margin, -margin], dtype=dtype)
    span = torch.tensor([width + 2 * margin, height + 2 * margin], dtype=dtype)
    means2d = lo + torch.rand(n, 2, generator=g, dtype=dtype) * span
    s = sigma_px[0] + (sigma_px[1] - sigma_px[0]) * torch.rand(n, 2, generator=g, dtype=dtype)
    th = torch.rand(n, generator=g, dtype=dtype) * math.pi
    c, si = torch.cos(th), torch.sin(th)
    R = torch.stack([c, -si, si, c], -1).view(n, 2, 2)
    cov = R @ torch.diag_embed(s * s) @ R.transpose(1, 2)
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] ** 2
    conics = torch.stack([cov[:, 1, 1] / det, -cov[:, 0, 1] / det, cov[:, 0, 0] / det], -1)
    radii = torch.ceil(3 * torch.linalg.eigvalsh(cov)[:, -1].sqrt()).to(torch.int32)
    depths = 1 + torch.rand(n, generator=g, dtype=dtype) * 5
    opac = opacity[0] + (opacity[1] - opacity[0]) * torch.rand(n, generator=g, dtype=dtype)
    return Projection(means2d, conics, depths, radii), opac


def random_colors(n: int, c: int, *, dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, generator=g, dtype=dtype) * 2 - 0.5


def random_gaussians_3d(n: int, *, dtype=torch.float64, seed: int = 0, behind: float = 0.1):
    """World-space Gaussians in front of an identity camera (a fraction ``behind`` of them behind it)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([4.0, 3.0, 6.0], dtype=dtype)
    means[:, 2] += 4.0
    nb = int(n * behind)
    means[:nb, 2] = -means[:nb, 2].abs()
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 - 2.5)
    return means, quats, scales


def camera(width: int, height: int, *, dtype=torch.float64, seed: int = 0):
    """A world-to-camera matrix (a small random rotation and translation) and pinhole intrinsics."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, generator=g, dtype=dtype) * 0.1
    Wx = torch.tensor([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]], dtype=dtype)
    viewmat = torch.eye(4, dtype=dtype)
    viewmat[:3, :3] = torch.linalg.matrix_exp(Wx)
    viewmat[:3, 3] = torch.randn(3, generator=g, dtype=dtype) * 0.1
    f = 0.8 * width
    K = torch.tensor([[f, 0, width / 2 + 1.3], [0, 1.05 * f, height / 2 - 0.7], [0, 0, 1]], dtype=dtype)
    return viewmat, K


_GSPLAT = None


def gsplat_torch_impl():
    """gsplat's pure-PyTorch reference module, or None if it cannot be imported without building CUDA code.

    gsplat JIT-compiles its CUDA extension (tens of minutes) the first time anything touches ``gsplat.cuda._backend``,
    so the import is first tried in a subprocess with a timeout and with CUDA hidden.
    """
    global _GSPLAT
    if _GSPLAT is None:
        probe = ("import sys, gsplat.cuda._torch_impl as m; "
                 "sys.exit(3 if 'gsplat.cuda._backend' in sys.modules else 0)")
        try:
            ok = subprocess.run([sys.executable, "-c", probe], timeout=120, capture_output=True,
                                env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if ok:
            import gsplat.cuda._torch_impl as impl

            _GSPLAT = impl
        else:
            _GSPLAT = False
    return _GSPLAT or None
