"""--optimize-cameras: per-frame SE(3) corrections learned from the rasteriser's pose gradients, saved with the
checkpoint and used by every later tool."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featurefields.data import load_scene
from featurefields.fields.rendering import render_field
from featurefields.train.cameras import CameraCorrections
from featurefields.train.checkpoint import load_checkpoint
from featurefields.train.trainer import Trainer, train

from .helpers import perturbed_scene_copy, pose_errors, rotation_about
from .test_train_e2e import small_config, tiny_tabletop  # noqa: F401  (fixture)


def test_correction_is_a_rigid_motion_about_the_camera_centre():
    cams = CameraCorrections(3, [1, 2])
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    with torch.no_grad():
        cams.rotvecs[0].copy_(torch.tensor([0.0, 0.0, math.radians(1.0)]))
        cams.translations[0].copy_(torch.tensor([0.02, 0.0, 0.0]))
    out = cams.pose(1, c2w).detach()
    r, t = pose_errors(out[None].double().numpy(), c2w[None].double().numpy())
    assert abs(r[0] - 1.0) < 1e-4 and abs(t[0] - 0.02) < 1e-6
    assert torch.equal(cams.pose(0, c2w), c2w)  # frames without a correction stay as given
    assert torch.allclose(out[:3, :3].T @ out[:3, :3], torch.eye(3), atol=1e-6)
    again = CameraCorrections.from_state(cams.state())
    assert torch.allclose(again.pose(1, c2w), out)


def test_pose_gradients_recover_a_perturbed_camera():
    """A fixed field rendered at the true pose: a correction learned from the photometric loss alone (native
    rasteriser's view-matrix gradient) brings a camera 1 degree / 2 cm off back."""
    from featurefields.fields.gaussians import FeatureLayout, GaussianField

    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3000, 3, generator=g) * torch.tensor([1.0, 1.0, 0.3]) - torch.tensor([0.5, 0.5, 0.0])
    cols = torch.rand(3000, 3, generator=g)
    field = GaussianField(pts, cols, torch.full((3000, 3), math.log(0.02)), FeatureLayout([], 0), 0, 0.9, 0)
    K = torch.tensor([[60.0, 0, 40], [0, 60.0, 30], [0, 0, 1]])
    from tests.conftest import look_at_gl

    true = torch.from_numpy(look_at_gl(np.array([0.3, -1.2, 1.0])) @ np.diag([1.0, -1, -1, 1])).float()
    with torch.no_grad():
        target = render_field(field, true, K, 80, 60).rgb
    wrong = true.clone().double().numpy()
    wrong[:3, :3] = rotation_about(np.array([0.3, 1.0, -0.2]), math.radians(1.0)) @ wrong[:3, :3]
    wrong[:3, 3] += np.array([0.012, -0.01, 0.012])
    wrong = torch.from_numpy(wrong).float()
    cams = CameraCorrections(1, [0])
    opt = torch.optim.Adam([*cams.rotvecs, *cams.translations], lr=2e-3)
    for _ in range(150):
        loss = (render_field(field, cams.pose(0, wrong), K, 80, 60).rgb - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    before = pose_errors(wrong[None].double().numpy(), true[None].double().numpy())
    after = pose_errors(cams.pose(0, wrong).detach()[None].double().numpy(), true[None].double().numpy())
    assert before[0][0] > 0.99 and before[1][0] > 0.019
    assert after[0][0] < 0.2 and after[1][0] < 0.005, (after, before)


@pytest.mark.slow
def test_optimized_cameras_are_saved_and_used_later(tiny_tabletop, tmp_path):  # noqa: F811
    from featurefields import QueryEngine

    scene = perturbed_scene_copy(tiny_tabletop, tmp_path / "perturbed", degrees=1.0, metres=0.02)
    out = tmp_path / "run"
    cfg = small_config(scene, out, iterations=40, optimize_cameras=True)
    metrics = train(cfg)
    stats = metrics["camera_corrections"]
    loaded = load_scene(scene)
    assert len(loaded.train_idx) == 7  # 9 views, frames 0 and 8 held out (every 8th)
    assert stats["frames"] == len(loaded.train_idx) and stats["rotation_deg_max"] > 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    rec = ckpt["cameras"]
    assert rec["optimized"] and len(rec["c2w"]) == 9
    saved = torch.tensor(rec["c2w"])
    moved = (saved - loaded.cameras.c2w).abs().amax((1, 2))
    assert moved[loaded.test_idx].max() == 0 and moved[loaded.train_idx].min() > 0  # only training poses move
    # every later tool sees the corrected poses
    eng = QueryEngine.from_checkpoint(out / "checkpoint.pt")
    for v in eng.views("train"):
        assert torch.allclose(v.c2w, saved[v.index], atol=1e-6)
    # resume continues the corrections; resuming without the flag would silently drop them
    train(small_config(scene, out, iterations=50, optimize_cameras=True), resume=True)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 50
    from featurefields.errors import ConfigError

    with pytest.raises(ConfigError, match="--optimize-cameras"):
        Trainer(small_config(scene, out, iterations=60), resume=True)
