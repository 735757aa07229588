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


def _fixed_field_and_views(size: float = 0.02):
    """A fixed random field (Gaussians ``size`` wide), its image and depth at a true pose, and that pose turned
    1 degree / moved 1.9 cm."""
    from featurefields.fields.gaussians import FeatureLayout, GaussianField
    from tests.conftest import look_at_gl

    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3000, 3, generator=g) * torch.tensor([1.0, 1.0, 0.3]) - torch.tensor([0.5, 0.5, 0.0])
    cols = torch.rand(3000, 3, generator=g)
    field = GaussianField(pts, cols, torch.full((3000, 3), math.log(size)), FeatureLayout([], 0), 0, 0.9, 0)
    K = torch.tensor([[60.0, 0, 40], [0, 60.0, 30], [0, 0, 1]])
    true = torch.from_numpy(look_at_gl(np.array([0.3, -1.2, 1.0])) @ np.diag([1.0, -1, -1, 1])).float()
    with torch.no_grad():
        out = render_field(field, true, K, 80, 60)
    wrong = true.clone().double().numpy()
    wrong[:3, :3] = rotation_about(np.array([0.3, 1.0, -0.2]), math.radians(1.0)) @ wrong[:3, :3]
    wrong[:3, 3] += np.array([0.012, -0.01, 0.012])
    return field, K, true, torch.from_numpy(wrong).float(), out


def test_pose_gradients_recover_a_perturbed_camera():
    """A fixed field rendered at the true pose: a correction learned from the photometric loss alone (native
    rasteriser's view-matrix gradient) brings a camera 1 degree / 2 cm off back."""
    field, K, true, wrong, target = _fixed_field_and_views()
    cams = CameraCorrections(1, [0])
    opt = torch.optim.Adam([*cams.rotvecs, *cams.translations], lr=2e-3)
    for _ in range(150):
        loss = (render_field(field, cams.pose(0, wrong), K, 80, 60).rgb - target.rgb).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    before = pose_errors(wrong[None].double().numpy(), true[None].double().numpy())
    after = pose_errors(cams.pose(0, wrong).detach()[None].double().numpy(), true[None].double().numpy())
    assert before[0][0] > 0.99 and before[1][0] > 0.019
    assert after[0][0] < 0.2 and after[1][0] < 0.005, (after, before)


@pytest.mark.parametrize("with_depth", [False, True])
def test_gauss_newton_steps_recover_a_perturbed_camera(with_depth):
    """What training does: damped Gauss-Newton steps (exact pose gradient, curvature from six forward renders)
    against a fixed field bring the camera back in ten steps (Adam needs over a hundred)."""
    field, K, true, wrong, target = _fixed_field_and_views(size=0.04)
    gt_depth = (target.depth / target.alpha.clamp_min(1e-6)) * (target.alpha > 0.5) if with_depth else None

    def render(c2w):
        out = render_field(field, c2w, K, 80, 60)
        return out.rgb, out.depth, out.alpha

    cams = CameraCorrections(1, [0]).requires_grad_(False)
    errors = []
    for _ in range(10):
        cams.gauss_newton(0, wrong, render, target.rgb, gt_depth, 2.0, extent=1.0, regularizer=1e-6)
        errors.append(pose_errors(cams.pose(0, wrong)[None].double().numpy(), true[None].double().numpy()))
    assert errors[-1][0][0] < 0.3 and errors[-1][1][0] < 0.007, errors[-1]
    assert errors[-1][0][0] < errors[2][0][0] < errors[0][0][0]  # keeps converging
    assert not cams.rotvecs[0].requires_grad and cams.rotvecs[0].grad is None


def test_common_motion_of_all_corrections_is_removed():
    """The gauge: a similarity shared by every correction is taken out exactly, and what the corrections do to the
    cameras relative to one another is kept."""
    import roma

    g = torch.Generator().manual_seed(1)
    n = 12
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, :3, :3] = roma.rotvec_to_rotmat(torch.randn(n, 3, generator=g))
    c2w[:, :3, 3] = torch.randn(n, 3, generator=g)
    own_w, own_r = 0.01 * torch.randn(n, 3, generator=g), 0.01 * torch.randn(n, 3, generator=g)
    G_R, G_t, G_s = roma.rotvec_to_rotmat(torch.tensor([0.1, -0.15, 0.05])), torch.tensor([0.2, 0.0, -0.1]), 1.05
    cams = CameraCorrections(n, list(range(n))).requires_grad_(False)
    for k in range(n):  # corrected pose = G applied to (given pose with its own correction)
        R_own = roma.rotvec_to_rotmat(own_w[k])
        cams.rotvecs[k].copy_(roma.rotmat_to_rotvec(G_R @ R_own))
        cams.translations[k].copy_(G_s * (G_R @ (c2w[k, :3, 3] + own_r[k])) + G_t - c2w[k, :3, 3])
    before = cams.corrected(c2w)
    removed = cams.remove_common_motion(c2w, extent=1.0)
    for _ in range(3):  # linearised fit, exact update: repeated, it settles
        cams.remove_common_motion(c2w, extent=1.0)
    after = cams.corrected(c2w)
    assert abs(removed["rotation_deg"] - 10.7) < 1.0 and abs(removed["scale"] - 0.05) < 0.02
    # back to the size of the frames' own corrections (up to their own common part)
    assert torch.stack(list(cams.rotvecs)).norm(dim=1).max() < 0.05
    assert torch.stack(list(cams.translations)).norm(dim=1).max() < 0.06
    rel = lambda P: P[:, :3, :3].transpose(1, 2) @ P[0, :3, :3]  # noqa: E731  rotations relative to camera 0
    assert torch.allclose(rel(after), rel(before), atol=1e-5)
    again = cams.remove_common_motion(c2w, extent=1.0)
    assert again["rotation_deg"] < 1e-3 and abs(again["scale"]) < 1e-5 and again["translation"] < 1e-5


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


def test_configs_with_the_former_camera_step_sizes_still_load():
    """Checkpoints from before the Gauss-Newton steps record lr.camera_rotation / camera_translation."""
    from featurefields.train.config import TrainConfig

    d = TrainConfig(optimize_cameras=True).to_dict()
    d["lr"].update(camera_rotation=5e-3, camera_translation=5e-3)
    cfg = TrainConfig.from_dict(d)
    assert cfg.optimize_cameras and cfg.lr.means == TrainConfig().lr.means


def test_evaluation_alignment_undoes_one_common_similarity():
    """benchmarks/camera_refine.py's BARF-style evaluation: the Procrustes similarity fitted to the camera centres
    takes a set of poses moved by one similarity (turned, shifted, scaled) back onto the true ones exactly, rotations
    included; the rigid fit cannot undo the scale."""
    from benchmarks.camera_refine import align, carry

    rng = np.random.default_rng(0)
    n = 10
    true = np.tile(np.eye(4), (n, 1, 1))
    for k in range(n):
        true[k, :3, :3] = rotation_about(rng.normal(size=3), rng.uniform(0, math.pi))
    true[:, :3, 3] = rng.normal(size=(n, 3))
    G = np.eye(4)
    G[:3, :3] = 1.03 * rotation_about(np.array([1.0, 2.0, 0.5]), 0.2)
    G[:3, 3] = [0.1, -0.2, 0.3]
    learned = carry(G, true)
    r, t = pose_errors(learned, true)
    assert r.min() > 10 and t.min() > 1e-2  # really moved
    T = align(learned[:, :3, 3], true[:, :3, 3], scale=True)
    assert np.allclose(T, np.linalg.inv(G), atol=1e-9)
    r, t = pose_errors(carry(T, learned), true)
    assert r.max() < 1e-4 and t.max() < 1e-9
    rigid = align(learned[:, :3, 3], true[:, :3, 3], scale=False)
    assert abs(np.linalg.det(rigid[:3, :3]) - 1) < 1e-9
    assert pose_errors(carry(rigid, learned), true)[1].max() > 1e-3
