from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from featurefields.data import load_scene
from featurefields.errors import ConfigError, DataError

from ..conftest import shared_data
from .helpers import FLIP, make_blender, png, write_json


def test_synthetic_blender(tmp_path):
    root, angle, out = make_blender(tmp_path / "lego", n_train=3, n_test=4, test_existing=2)
    s = load_scene(root)
    assert len(s) == 5 and s.train_idx == [0, 1, 2] and s.test_idx == [3, 4]
    assert s.frame_names == ["train/r_0.png", "train/r_1.png", "train/r_2.png", "test/r_0.png", "test/r_1.png"]
    assert s.notes == ["transforms_test.json lists 4 frames, 2 images exist; using those 2"]
    f = 0.5 * 8 / math.tan(angle / 2)
    assert torch.allclose(s.cameras.K[0], torch.tensor([[f, 0, 4.0], [0, f, 3.0], [0, 0, 1]]))
    frames, imgs = out["train"]
    assert np.allclose(s.cameras.c2w[1].numpy(), np.array(frames[1]["transform_matrix"]) @ FLIP, atol=1e-6)
    # RGBA over the white default: alpha 0 -> background, alpha 255 -> the colour, partial alpha -> the blend.
    rgba = imgs[0].astype(np.float64)
    expect = rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255)
    assert np.abs(s.images[0].numpy() - expect).max() <= 0.5 + 1e-9
    with pytest.raises(ConfigError, match="its own train/test split"):
        load_scene(root, holdout="last:1")
    assert s.images[0, 0, 0].tolist() == [255, 255, 255]
    assert s.images[0, 0, 1].tolist() == imgs[0][0, 1, :3].tolist()
    black = load_scene(root, background=(0.0, 0.0, 0.0))
    assert black.images[0, 0, 0].tolist() == [0, 0, 0]
    assert black.depths is None and black.masks is None


def test_blender_val_fallback_and_resize(tmp_path):
    root, angle, out = make_blender(tmp_path / "b", n_train=2, n_test=2, test_existing=None, w=16, h=12)
    (root / "transforms_test.json").rename(root / "transforms_val.json")
    s = load_scene(root, max_size=8)
    assert s.images.shape == (4, 6, 8, 3) and s.test_idx == [2, 3]
    assert any("transforms_val.json" in n for n in s.notes)
    f = 0.5 * 8 / math.tan(angle / 2)
    assert torch.allclose(s.cameras.K[0], torch.tensor([[f, 0, 4.0], [0, f, 3.0], [0, 0, 1]]))


def test_blender_split_without_images_is_an_error(tmp_path):
    root, *_ = make_blender(tmp_path / "b", n_test=3, test_existing=0)
    with pytest.raises(DataError, match=r"transforms_test\.json.*none of the 3"):
        load_scene(root)


def test_blender_corrupt_image_and_bad_pose(tmp_path):
    root, *_ = make_blender(tmp_path / "b")
    (root / "train" / "r_1.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"train/r_1\.png.*corrupt"):
        load_scene(root)
    root, *_ = make_blender(tmp_path / "c")
    meta = json.loads((root / "transforms_train.json").read_text())
    meta["frames"][2]["transform_matrix"][0][0] *= 1.5
    write_json(root / "transforms_train.json", meta)
    with pytest.raises(DataError, match=r"train/r_2\.png.*not orthonormal"):
        load_scene(root)
    meta["camera_angle_x"] = 0.0
    write_json(root / "transforms_train.json", meta)
    with pytest.raises(DataError, match="camera_angle_x"):
        load_scene(root)


def test_blender_mismatched_sizes(tmp_path):
    root, *_ = make_blender(tmp_path / "b")
    png(root / "test" / "r_1.png", np.zeros((6, 9, 4), np.uint8))
    with pytest.raises(DataError, match=r"test/r_1\.png.*9x6.*8x6"):
        load_scene(root)


# ------------------------------------------------------------------------------------------------------------
# The real NeRF-synthetic chair.


@pytest.fixture(scope="module")
def chair():
    return load_scene(shared_data("nerf_synthetic_chair"), max_size=100)


def test_chair_counts_and_note(chair):
    assert len(chair) == 120 and len(chair.train_idx) == 100 and len(chair.test_idx) == 20
    assert chair.images.shape == (120, 100, 100, 3) and (chair.width, chair.height) == (100, 100)
    assert chair.notes == ["transforms_test.json lists 200 frames, 20 images exist; using those 20"]
    assert chair.frame_names[100] == "test/r_0.png"
    assert not any("depth" in n or "normal" in n for n in chair.frame_names)
    assert torch.allclose(chair.cameras.K[:, 0, 0], torch.tensor(138.8889), atol=1e-3)


def test_chair_cameras_look_at_origin(chair):
    c2w = chair.cameras.c2w.double()
    to_origin = -c2w[:, :3, 3] / c2w[:, :3, 3].norm(dim=1, keepdim=True)
    assert (torch.einsum("ni,ni->n", c2w[:, :3, 2], to_origin) > 0.999).all()
    # Image "down" (+y) points roughly along world -z: the chair stands upright in the pictures.
    assert (c2w[:, 2, 1] < 0).all()


def test_chair_matches_tiny_nerf_reference(chair):
    """The classic tiny-NeRF arrays (100x100 on white) are an independent decode of the same train views."""
    ref = np.load(shared_data("nerf_synthetic_chair") / "tiny_chair_100px.npz")
    assert np.allclose(chair.cameras.c2w[:100].numpy(), ref["poses"] @ FLIP, atol=1e-5)
    assert abs(float(ref["focal"]) - float(chair.cameras.K[0, 0, 0])) < 1e-3
    assert np.abs(chair.images[:100].numpy() / 255.0 - ref["images"]).mean() < 0.01
