"""Initial points for Gaussian splatting from the depth maps a scene already has."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .scene import SceneData


def points_from_depth(scene: SceneData, max_points: int = 100_000, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Back-project valid depth pixels of the training frames into the world: (points [P, 3], colors [P, 3] in
    [0, 1]), a uniform random subset of at most ``max_points`` over all valid pixels (masked-out pixels skipped).
    """
    if scene.depths is None:
        raise DataError(f"scene {scene.name}: has no depth maps to take initial points from")
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    idx = list(scene.train_idx)
    valid = scene.depths[idx] > 0  # [F, H, W]
    if scene.masks is not None:
        valid &= scene.masks[idx]
    counts = valid.flatten(1).sum(1).numpy()  # [F]
    total = int(counts.sum())
    if total == 0:
        raise DataError(f"scene {scene.name}: no valid depth pixels in the training frames")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(total, size=min(max_points, total), replace=False))
    frame_of = np.searchsorted(np.cumsum(counts), pick, side="right")  # which training frame each pick is in
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    W = scene.width
    pts, cols = [], []
    for f in np.unique(frame_of):
        sel = pick[frame_of == f] - starts[f]  # ranks among this frame's valid pixels
        flat = np.flatnonzero(valid[f].numpy().ravel())[sel]  # [k] pixel indices
        v, u = flat // W, flat % W
        i = idx[f]
        z = scene.depths[i].numpy().ravel()[flat].astype(np.float64)
        K = scene.cameras.K[i].double().numpy()
        x = (u + 0.5 - K[0, 2]) / K[0, 0] * z
        y = (v + 0.5 - K[1, 2]) / K[1, 1] * z
        c2w = scene.cameras.c2w[i].double().numpy()
        pts.append(np.stack([x, y, z], 1) @ c2w[:3, :3].T + c2w[:3, 3])
        cols.append(scene.images[i].reshape(-1, 3).numpy()[flat] / 255.0)
    return torch.from_numpy(np.concatenate(pts)).float(), torch.from_numpy(np.concatenate(cols)).float()
