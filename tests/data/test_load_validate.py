from __future__ import annotations

import numpy as np
import pytest

from featurefields.data.detect import detect_format
from featurefields.data.load import natural_key, resize_nearest, target_size
from featurefields.data.validate import check_counts, check_intrinsics, check_pose, check_size, require_keys
from featurefields.errors import ConfigError, DataError

from .helpers import make_blender, make_nerfstudio, make_rgbd


def test_target_size():
    assert target_size(800, 800) == (800, 800)
    assert target_size(800, 600, downscale=2) == (400, 300)
    assert target_size(800, 600, max_size=100) == (100, 75)
    assert target_size(800, 600, downscale=4, max_size=400) == (200, 150)
    assert target_size(800, 600, downscale=2, max_size=100) == (100, 75)
    assert target_size(640, 480, max_size=1000) == (640, 480)  # max_size never upsamples
    assert target_size(3, 2, downscale=100) == (1, 1)


def test_resize_nearest_samples_pixel_centres():
    a = np.arange(16).reshape(4, 4)
    assert resize_nearest(a, (2, 2)).tolist() == [[5, 7], [13, 15]]  # centres at 1.0 and 3.0 -> pixels 1 and 3
    assert resize_nearest(a, (8, 8))[::2, ::2].tolist() == a.tolist()


def test_natural_key():
    assert sorted(["f10.png", "f2.png", "f1.png"], key=natural_key) == ["f1.png", "f2.png", "f10.png"]


def test_detect_format(tmp_path):
    ns, *_ = make_nerfstudio(tmp_path / "ns", n=1)
    bl, *_ = make_blender(tmp_path / "bl")
    rg, *_ = make_rgbd(tmp_path / "rg", n=1)
    assert detect_format(ns) == ("nerfstudio", ns / "transforms.json")
    assert detect_format(ns / "transforms.json") == ("nerfstudio", ns / "transforms.json")
    assert detect_format(bl) == ("blender", bl)
    assert detect_format(bl / "transforms_train.json") == ("blender", bl)
    assert detect_format(rg) == ("rgbd", rg)
    (rg / "trajectory.log").unlink()
    with pytest.raises(DataError, match="unknown scene format"):
        detect_format(rg)


def test_load_options_are_checked(tmp_path):
    from featurefields.data import load_scene

    ns, *_ = make_nerfstudio(tmp_path / "ns", n=3)
    for kwargs in (dict(max_size=0), dict(eval_every=-1), dict(eval_every=1), dict(background=(2, 0, 0)),
                   dict(downscale=float("nan"))):
        with pytest.raises(ConfigError):
            load_scene(ns, **kwargs)


def test_check_pose():
    m = np.eye(4)
    m[:3, 3] = [1, 2, 3]
    assert np.array_equal(check_pose(m[:3].tolist(), "f"), m)
    r = np.eye(4)
    r[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    r[:3, :3] += 2e-4  # within tolerance
    check_pose(r, "f")
    with pytest.raises(DataError, match="cam7.*not orthonormal"):
        check_pose(np.diag([1.0, 1.0, 1.01, 1.0]), "cam7")
    with pytest.raises(DataError, match="cam7.*det"):
        check_pose(np.diag([-1.0, 1.0, 1.0, 1.0]), "cam7")
    with pytest.raises(DataError, match="cam7.*NaN"):
        check_pose(np.full((4, 4), np.inf), "cam7")
    with pytest.raises(DataError, match="cam7.*bottom row"):
        check_pose([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], "cam7")
    with pytest.raises(DataError, match="cam7.*numeric"):
        check_pose([["a", 0, 0, 0]] * 4, "cam7")


def test_other_checks():
    with pytest.raises(DataError, match="cam1.*fx=0"):
        check_intrinsics(0.0, 1.0, 1.0, 1.0, "cam1")
    with pytest.raises(DataError, match="cam1.*cx is nan"):
        check_intrinsics(1.0, 1.0, float("nan"), 1.0, "cam1")
    with pytest.raises(DataError, match="frame a.png: size 4x3 differs from 8x6 \\(frame b.png\\)"):
        check_size((4, 3), (8, 6), "frame a.png", "frame b.png")
    with pytest.raises(DataError, match="seq.*3 images, 2 poses"):
        check_counts("seq", images=3, poses=2)
    with pytest.raises(DataError, match="t.json frame 2.*'file_path', 'transform_matrix'"):
        require_keys({}, ["file_path", "transform_matrix"], "t.json frame 2")
    with pytest.raises(DataError, match="t.json.*JSON object"):
        require_keys([1], ["frames"], "t.json")


def test_explicit_format_accepts_the_index_file(tmp_path):
    from featurefields.data import load_scene

    bl, *_ = make_blender(tmp_path / "bl")
    rg, *_ = make_rgbd(tmp_path / "rg", n=2, log_in_subfolder=True)
    assert len(load_scene(bl / "transforms_train.json", format="blender")) == 5
    assert len(load_scene(rg / "scene" / "trajectory.log", format="rgbd")) == 2
    assert len(load_scene(rg, format="rgbd")) == 2
