"""Localisation on the tiny scene: the coarse stage alone, the fine stage, the pose gradient, honest failures."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featurefields.errors import ConfigError, DataError
from featurefields.localize import LocalizeConfig, localize
from featurefields.localize.config import FineConfig
from featurefields.localize.evaluate import perturb, pose_errors
from featurefields.localize.fine import refine_pose
from featurefields.localize.inputs import make_query
from featurefields.localize.pipeline import verify


def test_coarse_stage_alone_is_within_a_few_degrees(loc):
    for view in loc.field.views("test")[::2]:
        est = localize(loc.field, view.image, view.K, refine=False)
        assert est.success, est.reason
        rot, cm = pose_errors(est.c2w, view.c2w.double().numpy())
        assert rot < 3.0 and cm < 5.0, (view.name, rot, cm)
        assert est.inliers >= LocalizeConfig().coarse.min_inliers and est.reprojection_error < 3.0
        assert np.allclose(est.c2w, est.coarse_c2w)


def test_full_pipeline_lands_on_the_true_pose(located):
    view, est = located
    assert est.success and est.reason == ""
    rot, cm = pose_errors(est.c2w, view.c2w.double().numpy())
    crot, ccm = pose_errors(est.coarse_c2w, view.c2w.double().numpy())
    assert rot < 0.3 and cm < 0.5, (rot, cm)
    assert rot <= crot + 0.05 and cm <= ccm + 0.1  # refinement does not make the coarse pose worse
    assert est.ncc > 0.99 and 0.5 < est.confidence <= 1.0
    assert {"features", "matching_pnp", "scoring", "fine", "total"} <= set(est.timings)
    c2w = est.c2w[:3, :3]
    assert np.allclose(c2w @ c2w.T, np.eye(3), atol=1e-9)
    d = est.to_dict()
    assert d["success"] and len(d["c2w"]) == 4 and d["timings_seconds"]["total"] > 0


def test_fine_stage_converges_and_decreases_the_photometric_error(loc):
    view = loc.field.views("test")[0]
    q = make_query(view.image, view.K)
    gt = view.c2w.double().numpy()
    start = perturb(gt, 3.0, 0.03, np.random.default_rng(0))
    res = refine_pose(loc.field, q, start, FineConfig(), scene_depth=1.2)
    rot, cm = pose_errors(res.c2w, gt)
    assert rot < 0.2 and cm < 0.4, (rot, cm)
    for level in res.losses:  # every pyramid level ends lower than it started
        assert level[-1] < level[0]
    cfg = LocalizeConfig()
    (ncc0, mae0), (ncc1, mae1) = verify(loc.field, q, start, cfg), verify(loc.field, q, res.c2w, cfg)
    assert mae1 < 0.5 * mae0 and ncc1 > ncc0


def test_pose_gradient_matches_finite_differences(loc):
    """The fine stage rides on the rasteriser's pose gradient: it must be the derivative of the loss."""
    from featurefields.localize.fine import se3_exp
    from featurefields.localize.photometric import photometric_loss, render_view

    view = loc.field.views("test")[0]
    q = make_query(view.image, view.K)
    c2w = view.c2w.double() @ se3_exp(torch.tensor([0.01, -0.005, 0.008, 0.01, -0.008, 0.005], dtype=torch.float64))

    def loss(xi):
        out = render_view(loc.field, c2w @ se3_exp(xi), q.K, q.width, q.height)
        return photometric_loss(out, q.image, robust_scale=0.1, min_alpha=0.5, brightness=False)[0]

    xi = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    loss(xi).backward()
    num = []
    for i in range(6):
        e = torch.zeros(6, dtype=torch.float64)
        e[i] = 1e-4
        with torch.no_grad():
            num.append(float(loss(e) - loss(-e)) / 2e-4)
    num = torch.tensor(num, dtype=torch.float64)
    assert torch.allclose(xi.grad, num, rtol=0.15, atol=0.02 * float(num.abs().max())), (xi.grad, num)


def test_rgbd_localisation_with_icp(loc):
    from featurefields.localize.icp import icp_refine

    view = loc.field.views("test")[2]
    with torch.no_grad():
        depth = loc.field.render(view, with_features=False).depth
    q = make_query(view.image, view.K, depth)
    gt = view.c2w.double().numpy()
    start = perturb(gt, 2.0, 0.04, np.random.default_rng(1))
    pose, fitness = icp_refine(loc.field, q, start, scene_depth=1.2)
    assert pose_errors(pose, gt)[1] < 0.5 * pose_errors(start, gt)[1] and fitness > 0.5
    est = localize(loc.field, view.image, view.K, depth=depth)
    assert est.success and est.used_depth and est.timings["icp"] > 0
    rot, cm = pose_errors(est.c2w, gt)
    assert rot < 0.3 and cm < 0.5, (rot, cm)


def mondrian(h: int, w: int, seed: int = 1) -> np.ndarray:
    """Coloured rectangles: plenty of corners for SIFT, nothing of the scene."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 200, np.uint8)
    for _ in range(40):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        img[y0:y0 + rng.integers(5, h // 3), x0:x0 + rng.integers(5, w // 3)] = rng.integers(0, 256, 3)
    return img


def test_failure_is_honest(loc):
    view = loc.field.views("test")[0]
    h, w = view.height, view.width
    other = localize(loc.field, mondrian(h, w), view.K)
    assert not other.success and other.c2w is None and other.confidence == 0
    assert "not of this scene" in other.reason
    blank = localize(loc.field, np.full((h, w, 3), 90, np.uint8), view.K)
    assert not blank.success and "blank" in blank.reason
    coarse = localize(loc.field, view.image, view.K, refine=False)
    cfg = LocalizeConfig()
    cfg.coarse.min_inliers = coarse.inliers + 1  # more than any hypothesis reaches, fewer than the keypoints
    few = localize(loc.field, view.image, view.K, config=cfg)
    assert not few.success and "too few inliers" in few.reason and few.c2w is None
    cfg = LocalizeConfig(min_ncc=0.9999999)  # a pose whose render disagrees with the image is not returned
    strict = localize(loc.field, view.image, view.K, config=cfg, refine=False)
    assert not strict.success and "does not look like the image" in strict.reason


def test_bad_inputs(loc, tmp_path):
    view = loc.field.views("test")[0]
    img, K = view.image, view.K
    with pytest.raises(ConfigError, match="focal"):
        make_query(img, torch.diag(torch.tensor([-100.0, 100.0, 1.0])) + torch.tensor([[0, 0, 80.0], [0, 0, 60], [0, 0, 0]]))
    big = K.clone()
    big[:2] *= 2  # intrinsics of an image twice the size
    with pytest.raises(DataError, match="principal point"):
        make_query(img, big)
    with pytest.raises(DataError, match="160x120 images but the image is"):
        make_query(img[:100], K, size=(160, 120))
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(DataError, match="junk.png"):
        make_query(junk, K)
    with pytest.raises(DataError, match="depth is"):
        make_query(img, K, np.ones((10, 10), np.float32))
    with pytest.raises(ConfigError, match="3x3"):
        make_query(img, np.eye(4))
    with pytest.raises(DataError, match="RGB image"):
        make_query(np.zeros((4, 4, 3), np.uint8), K)
