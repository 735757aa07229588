from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from featurefields.data import Cameras, SceneData, load_scene, points_from_depth
from featurefields.errors import DataError

from ..conftest import shared_data
from .helpers import rotation


def plane_scene(n=3, w=8, h=6, seed=0) -> SceneData:
    """Cameras at random poses, each seeing the world plane z = 0 (depth rendered analytically)."""
    rng = np.random.default_rng(seed)
    K = np.array([[6.0, 0, 4.0], [0, 6.0, 3.0], [0, 0, 1]])
    c2ws, depths = [], []
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)  # z = 1
    for _ in range(n):
        R = rotation(rng)
        while (R[:, 2] @ [0, 0, -1]) < 0.6:  # look roughly down at the plane
            R = rotation(rng)
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = R, [*rng.normal(size=2), 3.0]
        dirs = rays_cam @ R.T
        depths.append(-c2w[2, 3] / dirs[..., 2])  # z-depth along the camera axis reaching world z = 0
        c2ws.append(c2w)
    images = torch.from_numpy(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))
    cams = Cameras(torch.tensor(np.stack(c2ws)).float(), torch.tensor(K).float().expand(n, 3, 3).clone(), w, h)
    return SceneData(name="plane", root=None, images=images, cameras=cams, frame_names=[f"{i}" for i in range(n)],
                     train_idx=list(range(1, n)), test_idx=[0],
                     depths=torch.tensor(np.stack(depths)).float())


def test_points_land_on_the_plane_with_pixel_colours():
    s = plane_scene()
    s.depths[1, 0, :] = 0  # unknown depth is skipped
    pts, cols = points_from_depth(s, max_points=10_000)
    assert pts.shape == (2 * 48 - 8, 3) and cols.shape == pts.shape
    assert pts.dtype == torch.float32 and torch.allclose(pts[:, 2], torch.zeros(()), atol=1e-4)
    # Each point's colour is the colour of a training pixel.
    train_cols = {tuple(c) for i in s.train_idx for c in s.images[i].reshape(-1, 3).tolist()}
    assert all(tuple(c) in train_cols for c in (cols * 255).round().int().tolist())
    assert cols.min() >= 0 and cols.max() <= 1


def test_points_subsample_seed_masks_and_test_frames():
    s = plane_scene(n=4)
    a, _ = points_from_depth(s, max_points=20, seed=1)
    b, _ = points_from_depth(s, max_points=20, seed=1)
    c, _ = points_from_depth(s, max_points=20, seed=2)
    assert a.shape == (20, 3) and torch.equal(a, b) and not torch.equal(a, c)
    assert len(torch.unique(a, dim=0)) == 20
    # Masked-out pixels and test frames contribute nothing.
    masks = torch.ones_like(s.depths, dtype=torch.bool)
    masks[1:] = False
    masks[1, 2, 3] = True
    pts, cols = points_from_depth(replace(s, masks=masks))
    assert pts.shape == (1, 3)
    assert torch.allclose(cols[0], s.images[1, 2, 3].float() / 255)


def test_points_need_depth():
    s = plane_scene()
    with pytest.raises(DataError, match="plane.*no depth"):
        points_from_depth(replace(s, depths=None))
    with pytest.raises(DataError, match="no valid depth"):
        points_from_depth(replace(s, depths=torch.zeros_like(s.depths)))


def test_points_from_real_rgbd():
    s = load_scene(shared_data("open3d_rgbd_samples"), max_size=160)
    pts, cols = points_from_depth(s, max_points=5000)
    assert pts.shape == (5000, 3) and torch.isfinite(pts).all()
    # The back-projected cloud is consistent across frames: distances to camera 0 stay within the depth range.
    dist = (pts - s.cameras.centers[0]).norm(dim=1)
    valid = s.depths[s.depths > 0]
    assert dist.median() < valid.max() * 1.5 and dist.median() > valid.min() * 0.5
