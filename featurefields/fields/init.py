"""Where the first Gaussians come from: scene points (from depth or a point file) or random in the scene bounds."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..data.cameras import Cameras
from ..errors import ConfigError


def knn_log_scales(points: Tensor, k: int = 3) -> Tensor:
    """Isotropic log-scale per point from the mean distance to its k nearest neighbours (3DGS's initial size)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    if len(pts) <= k:
        d = np.full(len(pts), 0.01)
    else:
        dist, _ = cKDTree(pts).query(pts, k=k + 1)
        d = dist[:, 1:].mean(axis=1)
    d = np.clip(d, 1e-4, None)
    return torch.from_numpy(np.log(d)).float()[:, None].repeat(1, 3)


def scene_extent(cameras: Cameras) -> float:
    """Radius of the camera rig (1.1x the farthest camera from their mean); sets position learning rates."""
    c = cameras.centers
    return float(1.1 * (c - c.mean(0)).norm(dim=-1).max().clamp_min(1e-3))


def focus_point(cameras: Cameras) -> Tensor:
    """The point closest (least squares) to all optical axes: what an orbiting rig looks at. [3]"""
    o, d = cameras.centers.double(), cameras.c2w[:, :3, 2].double()  # OpenCV: +z looks forward
    proj = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]  # [N, 3, 3] off-axis projectors
    A, b = proj.sum(0), (proj @ o[..., None]).sum(0)[:, 0]
    if torch.linalg.matrix_rank(A) < 3:  # all axes parallel: fall back to a point in front of the mean camera
        return (o.mean(0) + d.mean(0)).float()
    return torch.linalg.solve(A, b).float()


def random_points_near_focus(cameras: Cameras, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Points uniform in a cube around the cameras' focus, 0.7x the median camera distance wide, grey."""
    g = torch.Generator().manual_seed(seed)
    c = focus_point(cameras)
    half = 0.35 * float((cameras.centers - c).norm(dim=-1).median())
    p = c + (2 * torch.rand(n, 3, generator=g) - 1) * half
    return p, torch.full((n, 3), 0.5)


def subsample(points: Tensor, colors: Tensor, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    if len(points) <= n:
        return points, colors
    idx = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:n]
    return points[idx], colors[idx]


def check_points(points: Tensor, colors: Tensor) -> None:
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ConfigError(f"initial points must be a non-empty [P, 3] array, got shape {tuple(points.shape)}")
    if not torch.isfinite(points).all():
        raise ConfigError("initial points contain NaN or inf")
    if colors.shape != points.shape:
        raise ConfigError(f"initial colours {tuple(colors.shape)} do not match points {tuple(points.shape)}")
