"""Real spherical harmonics up to degree 3, with the constants and sign convention of 3DGS / gsplat.

Colours are stored as SH coefficients so that appearance can depend on the viewing direction. The value returned is
the raw SH sum; the caller adds 0.5 and clamps at 0, exactly as 3DGS and gsplat do, so that checkpoints and
coefficients are interchangeable with those tools.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    return (degree + 1) ** 2


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """Basis functions at unit directions: dirs [..., 3] -> [..., (degree+1)**2]."""
    n = num_sh_bases(degree)
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    assert len(out) == n
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """SH value for any number of channels: dirs [..., 3] (any length), coeffs [..., K, C] -> [..., C].

    Only the first (degree+1)**2 coefficients are used, so a field can keep degree-3 storage while training
    ramps the active degree up (as 3DGS does).
    """
    n = num_sh_bases(degree)
    if dirs.shape[-1] != 3:
        raise ValueError(f"dirs must be [..., 3], got {tuple(dirs.shape)}")
    if coeffs.ndim < 2 or coeffs.shape[-2] < n:
        raise ValueError(f"coeffs must be [..., K>={n}, C] for degree {degree}, got {tuple(coeffs.shape)}")
    dirs = F.normalize(dirs, dim=-1)
    bases = sh_bases(degree, dirs).to(coeffs.dtype)  # [..., n]
    return (bases.unsqueeze(-1) * coeffs[..., :n, :]).sum(dim=-2)
