"""EWA projection of 3D Gaussians to screen-space 2D Gaussians (pinhole camera, OpenCV axes).

Follows original 3DGS / gsplat's "classic" mode so that scenes trained here and there look the same: the 2D
covariance is ``J W Sigma W^T J^T + eps2d * I`` (a 0.3 px low-pass filter, no opacity compensation), and the
Jacobian is evaluated at the mean with x/z, y/z clamped to 1.3x the field of view so that Gaussians far outside the
image do not blow up into huge screen-space ellipses.

Everything here is plain autograd; the rasteriser's custom backward stops at ``means2d`` and ``conics``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Projection:
    means2d: Tensor  # [N, 2] pixel coords (pixel centres at +0.5)
    conics: Tensor  # [N, 3] (a, b, c) of the inverse 2D covariance: sigma = 0.5*(a dx^2 + c dy^2) + b dx dy
    depths: Tensor  # [N] camera-space z
    radii: Tensor  # [N] int32 pixel radius (3 sigma); 0 = culled

    def __len__(self) -> int:
        return self.means2d.shape[0]


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """quats [..., 4] wxyz (normalised here) -> rotation matrices [..., 3, 3]."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariance R S S^T R^T: quats [N, 4] wxyz, scales [N, 3] linear (not log) -> [N, 3, 3]."""
    M = quat_to_rotmat(quats) * scales[..., None, :]  # R @ diag(s)
    return M @ M.transpose(-1, -2)


def check_project_inputs(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor) -> int:
    """Shapes every projection (reference or native) expects; returns N."""
    N = means.shape[0]
    if means.shape != (N, 3) or quats.shape != (N, 4) or scales.shape != (N, 3):
        raise ValueError(f"project: means [N,3], quats [N,4], scales [N,3] expected, got "
                         f"{tuple(means.shape)}, {tuple(quats.shape)}, {tuple(scales.shape)}")
    if viewmat.shape != (4, 4) or K.shape != (3, 3):
        raise ValueError(f"project: viewmat [4,4] and K [3,3] expected, got {tuple(viewmat.shape)}, {tuple(K.shape)}")
    return N


def project(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
            near: float = 0.01, far: float = 1e10, eps2d: float = 0.3) -> Projection:
    """Project N world-space Gaussians into one camera.

    means [N, 3] world, quats [N, 4] wxyz, scales [N, 3], viewmat [4, 4] world-to-camera (OpenCV axes), K [3, 3].
    Culled Gaussians (depth outside (near, far), singular 2D covariance, footprint entirely off-screen, non-finite)
    get radius 0; their other outputs are finite but meaningless, so gradients through them stay finite (zero).
    """
    N = check_project_inputs(means, quats, scales, viewmat, K)
    viewmat = viewmat.to(means)
    K = K.to(means)

    R, t = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ R.T + t  # [N, 3]
    x, y, z = means_c.unbind(-1)
    depth_ok = (z > near) & (z < far)
    # A safe depth for culled Gaussians keeps the division (and its gradient) finite; their outputs are unused.
    zs = torch.where(depth_ok, z, torch.ones_like(z))

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    means2d = torch.stack([(K[0, 0] * x + K[0, 1] * y) / zs + K[0, 2], (K[1, 1] * y) / zs + K[1, 2]], dim=-1)

    # Jacobian of the perspective map at the mean, with x/z and y/z clamped to 1.3x the field of view.
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    u = torch.minimum(torch.maximum(x / zs, -(cx / fx + 0.3 * tan_fovx)), (width - cx) / fx + 0.3 * tan_fovx)
    v = torch.minimum(torch.maximum(y / zs, -(cy / fy + 0.3 * tan_fovy)), (height - cy) / fy + 0.3 * tan_fovy)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * u / zs, zero, fy / zs, -fy * v / zs], dim=-1).reshape(N, 2, 3)
    # cov2d = J R Sigma R^T J^T with Sigma = (Rq S)(Rq S)^T, i.e. A A^T for A = J R Rq S (cheaper than 3x3 products).
    A = (J @ R) @ quat_to_rotmat(quats) * scales[:, None, :]  # [N, 2, 3]
    a0, a1 = A.unbind(1)
    cov2d = torch.stack([(a0 * a0).sum(-1), (a0 * a1).sum(-1), (a1 * a1).sum(-1)], dim=-1)  # [N, 3] xx, xy, yy
    ca, cb, cc = cov2d[:, 0] + eps2d, cov2d[:, 1], cov2d[:, 2] + eps2d
    det = ca * cc - cb * cb
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([cc / det_safe, -cb / det_safe, ca / det_safe], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (ca + cc)
        lam_max = mid + torch.sqrt((mid * mid - det).clamp(min=0))
        radius = torch.ceil(3.0 * torch.sqrt(lam_max.clamp(min=0))).clamp(max=2**30)  # int32-safe
        mx, my = means2d.unbind(-1)
        on_screen = (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
        finite = torch.isfinite(means2d).all(-1) & torch.isfinite(conics).all(-1) & torch.isfinite(radius)
        keep = depth_ok & det_ok & on_screen & finite & (radius > 0)
        radii = torch.where(keep, radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=z, radii=radii)
