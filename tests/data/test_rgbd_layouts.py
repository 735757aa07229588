"""The RGB-D layouts robots record: TUM RGB-D (timestamped lists), 7-Scenes and ScanNet (a pose file per frame).
Each fixture is written here with known poses; the loaders must give them back exactly, in a metric frame."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featurefields.data import load_scene
from featurefields.errors import ConfigError, DataError

from .helpers import png, random_image, random_pose


def _quat_xyzw(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat()  # x y z w


def make_tum(root, n=6, w=16, h=12, seed=0, gt_offset=0.004, depth_offset=0.01):
    """rgb/ depth/ at 30 Hz, ground truth at 100 Hz (one exact pose per colour frame, others in between)."""
    rng = np.random.default_rng(seed)
    rgb, dep, gt, poses, depths = [], [], [], [], []
    for i in range(n):
        t = 1305031102.0 + i / 30.0
        png(root / "rgb" / f"{t:.6f}.png", random_image(rng, w, h))
        d = rng.integers(2500, 20000, (h, w)).astype(np.uint16)
        png(root / "depth" / f"{t + depth_offset:.6f}.png", d)
        rgb.append(f"{t:.6f} rgb/{t:.6f}.png")
        dep.append(f"{t + depth_offset:.6f} depth/{t + depth_offset:.6f}.png")
        p = random_pose(rng)
        poses.append(p)
        depths.append(d)
        for dt, pose in ((-gt_offset - 0.006, random_pose(rng)), (gt_offset, p), (gt_offset + 0.01, random_pose(rng))):
            q = _quat_xyzw(pose[:3, :3])
            gt.append(f"{t + dt:.4f} " + " ".join(f"{v:.9f}" for v in [*pose[:3, 3], *q]))
    header = "# timestamp filename\n"
    (root / "rgb.txt").write_text(header + "\n".join(rgb) + "\n")
    (root / "depth.txt").write_text(header + "\n".join(dep) + "\n")
    (root / "groundtruth.txt").write_text("# timestamp tx ty tz qx qy qz qw\n" + "\n".join(gt) + "\n")
    return root, np.stack(poses), np.stack(depths)


def test_tum(tmp_path):
    root, poses, depths = make_tum(tmp_path / "rgbd_dataset_freiburg1_xyz")
    s = load_scene(root, intrinsics="517.3,516.5,318.6,255.3", eval_every=3)
    assert s.frame_info["source"] == "tum" and s.frame_info["metric"]
    assert len(s) == 6 and s.frame_names[0].startswith("rgb/")
    assert np.allclose(s.cameras.c2w.numpy(), poses, atol=1e-6)  # nearest-timestamp pose, kept as given
    assert np.allclose(s.depths.numpy(), depths / 5000.0)  # TUM's depth scale
    assert torch.allclose(s.cameras.K[0], torch.tensor([[517.3, 0, 319.1], [0, 516.5, 255.8], [0, 0, 1]]))
    assert s.test_idx == [0, 3]
    assert load_scene(root, intrinsics="10,10,8,6", stride=2).frame_names == [s.frame_names[i] for i in (0, 2, 4)]
    # TUM's documented defaults are for 640x480 images only
    with pytest.raises(DataError, match="--intrinsics"):
        load_scene(root)
    # no depth within 20 ms: the frame is dropped, with a note
    far, *_ = make_tum(tmp_path / "far", depth_offset=0.5)
    with pytest.raises(DataError, match="no colour frame has a depth image"):
        load_scene(far, intrinsics="10,10,8,6")


def test_tum_bad_lines(tmp_path):
    root, *_ = make_tum(tmp_path / "t")
    gt = root / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    gt.write_text("\n".join(lines[:3] + ["1.0 2.0 3.0"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"groundtruth\.txt line 4: expected 8 columns"):
        load_scene(root, intrinsics="10,10,8,6")
    bad = lines[2].split()
    bad[7] = "2.0"  # quaternion no longer unit
    gt.write_text("\n".join(lines[:2] + [" ".join(bad)] + lines[3:]) + "\n")
    with pytest.raises(DataError, match="quaternion norm"):
        load_scene(root, intrinsics="10,10,8,6")


def make_seven_scenes(root, seqs=(1, 2), n=3, w=640, h=480, seed=0):
    rng = np.random.default_rng(seed)
    poses = []
    for s in seqs:
        d = root / f"seq-{s:02d}"
        for i in range(n):
            png(d / f"frame-{i:06d}.color.png", random_image(rng, w // 40, h // 40).repeat(40, 0).repeat(40, 1))
            depth = np.full((h, w), 1500, np.uint16)
            depth[:40, :40] = 65535  # no reading
            png(d / f"frame-{i:06d}.depth.png", depth)
            p = random_pose(rng)
            np.savetxt(d / f"frame-{i:06d}.pose.txt", p, fmt="%.9f")
            poses.append(p)
    (root / "TrainSplit.txt").write_text("sequence1\n")
    (root / "TestSplit.txt").write_text("sequence2\n")
    return root, np.stack(poses)


def test_seven_scenes(tmp_path):
    root, poses = make_seven_scenes(tmp_path / "chess")
    s = load_scene(root, max_size=64)
    assert s.frame_info["source"] == "7scenes"
    assert s.frame_names[0] == "seq-01/frame-000000.color.png" and len(s) == 6
    assert np.allclose(s.cameras.c2w.numpy(), poses, atol=1e-6)
    assert s.train_idx == [0, 1, 2] and s.test_idx == [3, 4, 5]  # by TrainSplit.txt / TestSplit.txt
    assert any("published" in n for n in s.notes)
    assert torch.allclose(s.cameras.K[0], torch.tensor([[58.5, 0, 32.05], [0, 58.5, 24.05], [0, 0, 1]]))
    assert s.depths[0, 0, 0] == 0 and torch.allclose(s.depths[0, 5, 5], torch.tensor(1.5))
    # a camera-intrinsics.txt beside the sequences wins over the published values; one sequence alone loads too
    np.savetxt(root / "camera-intrinsics.txt", np.array([[500, 0, 319.5], [0, 501, 239.5], [0, 0, 1]]))
    s1 = load_scene(root / "seq-02", max_size=64)
    assert s1.frame_names[0] == "frame-000000.color.png" and np.allclose(s1.cameras.c2w.numpy(), poses[3:], atol=1e-6)
    assert torch.allclose(s1.cameras.K[0], torch.tensor([[50.0, 0, 32.0], [0, 50.1, 24.0], [0, 0, 1]]))
    (root / "seq-01" / "frame-000001.pose.txt").write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"frame-000001\.pose\.txt: pose file must hold 16"):
        load_scene(root)


def make_scannet(root, n=4, w=40, h=30, dw=32, dh=24, seed=0, lost=(2,)):
    rng = np.random.default_rng(seed)
    poses = []
    for i in range(n):
        png(root / "color" / f"{i}.jpg", random_image(rng, w, h))
        png(root / "depth" / f"{i}.png", np.full((dh, dw), 2000 + i, np.uint16))
        p = random_pose(rng)
        if i in lost:
            p = np.full((4, 4), -np.inf)
        else:
            poses.append(p)
        (root / "pose").mkdir(parents=True, exist_ok=True)
        np.savetxt(root / "pose" / f"{i}.txt", p)
    (root / "intrinsic").mkdir(exist_ok=True)
    K = np.eye(4)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = 35.0, 36.0, 19.5, 14.5
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", K)
    return root, np.stack(poses)


def test_scannet(tmp_path):
    root, poses = make_scannet(tmp_path / "scene0000_00")
    s = load_scene(root, eval_every=0)
    assert s.frame_info["source"] == "scannet"
    assert s.frame_names == ["color/0.jpg", "color/1.jpg", "color/3.jpg"]  # frame 2 lost tracking
    assert any("-inf" in n for n in s.notes)
    assert np.allclose(s.cameras.c2w.numpy(), poses, atol=1e-6)
    assert torch.allclose(s.cameras.K[0], torch.tensor([[35.0, 0, 20.0], [0, 36.0, 15.0], [0, 0, 1]]))
    assert s.depths.shape == (3, 30, 40) and torch.allclose(s.depths[2], torch.tensor(2.003))  # resampled
    s2 = load_scene(root, intrinsics="30,30,19.5,14.5", depth_scale=2000.0, eval_every=0)
    assert s2.cameras.K[0, 0, 0] == 30 and torch.allclose(s2.depths[0], torch.tensor(1.0))


def test_rgbd_options_errors(tmp_path):
    root, *_ = make_tum(tmp_path / "t")
    with pytest.raises(ConfigError, match="fx,fy,cx,cy"):
        load_scene(root, intrinsics="1,2,3")
    from .helpers import make_nerfstudio

    ns, *_ = make_nerfstudio(tmp_path / "ns", n=2)
    with pytest.raises(ConfigError, match="RGB-D sequences only"):
        load_scene(ns, intrinsics="1,2,3,4")


@pytest.mark.slow
def test_train_on_tum_end_to_end(tmp_path):
    """A tiny TUM sequence trains: depth loss on (the layout's metric depth), metrics written, frame recorded."""
    import json

    from featurefields.train.config import TrainConfig
    from featurefields.train.trainer import train

    root, *_ = make_tum(tmp_path / "tum", n=6, w=24, h=18)
    (tmp_path / "K.txt").write_text("20 20 11.5 8.5\n")
    cfg = TrainConfig(scene=str(root), out=str(tmp_path / "run"), iterations=30, init_points=300, progress=False,
                      save_every=0, sh_degree=0, intrinsics=str(tmp_path / "K.txt"))
    cfg.density.refine_start = cfg.density.refine_stop = 1000
    metrics = train(cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["world_frame"]["source"] == "tum" and on_disk["world_frame"]["metric"]
    assert np.isfinite(metrics["psnr"]) and metrics["num_test_views"] == 1
