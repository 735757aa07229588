from __future__ import annotations

import numpy as np
import pytest
import torch

from featurefields.data import load_scene
from featurefields.data.rgbd import read_trajectory_log
from featurefields.errors import ConfigError, DataError

from ..conftest import shared_data
from .helpers import make_rgbd, png, random_image, write_json, write_log


def test_synthetic_rgbd(tmp_path):
    root, poses, depths, K = make_rgbd(tmp_path / "seq", n=6)
    s = load_scene(root)
    assert len(s) == 6 and s.images.shape == (6, 6, 8, 3)
    assert np.allclose(s.cameras.c2w.numpy(), poses, atol=1e-6)  # OpenCV axes already: no flip
    # Open3D intrinsics put pixel centres on integers; ours are at +0.5.
    assert torch.allclose(s.cameras.K[0], torch.tensor([[9.0, 0, 4.0], [0, 9.5, 3.0], [0, 0, 1]]))
    assert np.allclose(s.depths.numpy(), depths / 1000.0) and s.depths[0, 1, 1] == 0
    assert s.test_idx == [0] and s.train_idx == [1, 2, 3, 4, 5]
    assert s.notes == [] and s.frame_names[2] == "color/00002.png"
    s = load_scene(root, stride=2, depth_scale=5000.0, eval_every=2)
    assert s.frame_names == ["color/00000.png", "color/00002.png", "color/00004.png"]
    assert np.allclose(s.depths.numpy(), depths[::2] / 5000.0)
    assert np.allclose(s.cameras.c2w.numpy(), poses[::2], atol=1e-6)
    assert s.train_idx == [1] and s.test_idx == [0, 2]
    with pytest.raises(ConfigError, match="stride"):
        load_scene(root, stride=0)


def test_rgbd_defaults_subfolder_log_and_natural_sort(tmp_path):
    root, poses, depths, K = make_rgbd(tmp_path / "seq", n=3, w=640, h=480, intrinsics=False, log_in_subfolder=True,
                                       color_dir="image", ext=".jpg")
    for i in range(3):  # unpadded names: 2 must sort before 10
        (root / "image" / f"{i:05d}.jpg").rename(root / "image" / f"{[1, 2, 10][i]}.jpg")
        (root / "depth" / f"{i:05d}.png").rename(root / "depth" / f"{[1, 2, 10][i]}.png")
    s = load_scene(root, max_size=64)
    assert s.frame_names == ["image/1.jpg", "image/2.jpg", "image/10.jpg"]
    assert np.allclose(s.cameras.c2w.numpy(), poses, atol=1e-6)
    assert any("PrimeSense" in n for n in s.notes)
    assert torch.allclose(s.cameras.K[0], torch.tensor([[52.5, 0, 32.0], [0, 52.5, 24.0], [0, 0, 1]]))
    assert s.images.shape == (3, 48, 64, 3)


def test_rgbd_path_to_trajectory_log(tmp_path):
    root, *_ = make_rgbd(tmp_path / "seq", n=2, log_in_subfolder=True)
    assert len(load_scene(root / "scene" / "trajectory.log")) == 2


def test_rgbd_count_mismatch(tmp_path):
    root, poses, *_ = make_rgbd(tmp_path / "seq", n=4)
    write_log(root / "trajectory.log", poses[:3])
    with pytest.raises(DataError, match=r"4 color images, 4 depth images, 3 poses"):
        load_scene(root)
    write_log(root / "trajectory.log", poses)
    (root / "depth" / "00003.png").unlink()
    with pytest.raises(DataError, match=r"4 color images, 3 depth images, 4 poses"):
        load_scene(root)


def test_rgbd_bad_inputs(tmp_path):
    root, poses, *_ = make_rgbd(tmp_path / "seq", n=3)
    log = root / "trajectory.log"
    text = log.read_text().splitlines()
    log.write_text("\n".join(text[:7] + ["1 2 x 4"] + text[8:]) + "\n")
    with pytest.raises(DataError, match=r"trajectory\.log line 8"):
        load_scene(root)
    log.write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(DataError, match=r"trajectory\.log.*multiple of 5"):
        load_scene(root)
    bad = poses.copy()
    bad[2, :3, :3] *= 1.01
    write_log(log, bad)
    with pytest.raises(DataError, match=r"trajectory\.log frame 2.*not orthonormal"):
        load_scene(root)
    write_log(log, poses)
    write_json(root / "camera_test.json", {"width": 8, "height": 6, "intrinsic_matrix": [0, 0, 0, 0, 5, 0, 4, 3, 1]})
    with pytest.raises(DataError, match=r"camera_test\.json.*focal length fx=0"):
        load_scene(root)
    write_json(root / "camera_test.json", {"width": 10, "height": 6, "intrinsic_matrix": [5, 0, 0, 0, 5, 0, 4, 3, 1]})
    with pytest.raises(DataError, match=r"00000\.png.*8x6.*10x6.*camera_test\.json"):
        load_scene(root)
    write_json(root / "camera_test.json", {"width": 8, "height": 6})
    with pytest.raises(DataError, match=r"camera_test\.json.*'intrinsic_matrix'"):
        load_scene(root)
    write_json(root / "camera_test.json", {"width": 8, "height": 6, "intrinsic_matrix": [5, 0, 0, 0, 5, 0, 4, 3, 1]})
    png(root / "color" / "00001.png", random_image(np.random.default_rng(0), 8, 7))
    with pytest.raises(DataError, match=r"color/00001\.png.*8x7.*8x6"):
        load_scene(root)


def test_read_trajectory_log(tmp_path):
    poses = np.stack([np.eye(4)] * 2)
    poses[1, :3, 3] = [1, 2, 3]
    got = read_trajectory_log(write_log(tmp_path / "t.log", poses))
    assert np.allclose(np.stack(got), poses)


# ------------------------------------------------------------------------------------------------------------
# Real RGB-D data: the poses must agree with the depth maps.


def reprojection_error(scene, a: int, b: int, c2w: np.ndarray | None = None) -> float:
    """Median |depth_B(project(x)) - z_B(x)| over frame A's back-projected pixels that land on valid B depth."""
    c2w = scene.cameras.c2w.double().numpy() if c2w is None else c2w
    K = scene.cameras.K.double().numpy()
    d = scene.depths[a].double().numpy()
    v, u = np.nonzero(d > 0)
    z = d[v, u]
    cam = np.stack([(u + 0.5 - K[a, 0, 2]) / K[a, 0, 0] * z, (v + 0.5 - K[a, 1, 2]) / K[a, 1, 1] * z, z], 1)
    world = cam @ c2w[a, :3, :3].T + c2w[a, :3, 3]
    w2c = np.linalg.inv(c2w[b])
    pb = world @ w2c[:3, :3].T + w2c[:3, 3]
    pb = pb[pb[:, 2] > 0.05]
    ub = np.floor(K[b, 0, 0] * pb[:, 0] / pb[:, 2] + K[b, 0, 2]).astype(int)
    vb = np.floor(K[b, 1, 1] * pb[:, 1] / pb[:, 2] + K[b, 1, 2]).astype(int)
    inside = (ub >= 0) & (ub < scene.width) & (vb >= 0) & (vb < scene.height)
    db = scene.depths[b].double().numpy()[vb[inside], ub[inside]]
    ok = db > 0
    assert ok.sum() > 0.2 * len(z), "too little overlap to judge"
    return float(np.median(np.abs(db[ok] - pb[inside][ok][:, 2])))


def test_livingroom_counts():
    s = load_scene(shared_data("open3d_livingroom1_clean_micro"), max_size=64, with_extras=False)
    assert len(s) == 211 and s.images.shape == (211, 48, 64, 3)
    assert len(s.test_idx) == 27 and len(s.train_idx) == 184


def test_livingroom_depth_and_poses_agree():
    s = load_scene(shared_data("open3d_livingroom1_clean_micro"), max_size=160, stride=5)
    assert len(s) == 43 and s.frame_names[10] == "image/00050.jpg" and s.images.shape[1:] == (120, 160, 3)
    assert any("PrimeSense" in n for n in s.notes)
    assert s.depths.shape == (43, 120, 160) and 0.5 < float(s.depths[s.depths > 0].median()) < 5
    c2w = s.cameras.c2w.double().numpy()
    for a, b in [(0, 10), (10, 30)]:  # 0.7 m / 34 deg and 1.4 m / 54 deg apart
        assert reprojection_error(s, a, b) < 0.05
        # Reading the log as world-to-camera instead must break the agreement (the check can fail).
        assert reprojection_error(s, a, b, np.linalg.inv(c2w)) > 0.2


def test_rgbd_samples():
    s = load_scene(shared_data("open3d_rgbd_samples"))
    assert len(s) == 5 and s.images.shape == (5, 480, 640, 3) and s.notes == []
    assert torch.allclose(s.cameras.K[0], torch.tensor([[525.0, 0, 320.0], [0, 525.0, 240.0], [0, 0, 1]]))
    assert reprojection_error(s, 0, 4) < 0.05


def test_holdout_splits(tmp_path):
    root, *_ = make_rgbd(tmp_path / "seq", n=6)
    assert load_scene(root, holdout="last:2").test_idx == [4, 5]
    s = load_scene(root, holdout="first:1")
    assert s.test_idx == [0] and s.train_idx == [1, 2, 3, 4, 5]
    assert load_scene(root, holdout="every:3").test_idx == [0, 3]
    assert load_scene(root, holdout=" LAST:3 ").train_idx == [0, 1, 2]
    for bad in ("last:0", "middle:3", "last", "last:x", "every:-1"):
        with pytest.raises(ConfigError, match="holdout"):
            load_scene(root, holdout=bad)
    with pytest.raises(ConfigError, match="no training frames"):
        load_scene(root, holdout="last:6")
