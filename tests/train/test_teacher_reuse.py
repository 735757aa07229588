"""Re-running a training re-uses the teacher cache: the teacher is not called again. Several teachers at once."""
from __future__ import annotations

import pytest

from featurefields.errors import ConfigError

from featurefields.teachers import _REGISTRY as REGISTRY
from featurefields.train.config import TrainConfig
from featurefields.train.trainer import Trainer
from tests.conftest import write_tiny_nerfstudio
from tests.teachers.helpers import CountingTeacher


@pytest.fixture
def counting(monkeypatch):
    made: list[CountingTeacher] = []

    def factory(**options):
        made.append(CountingTeacher(**options))
        return made[-1]

    monkeypatch.setitem(REGISTRY, "counting", factory)
    return made


def test_second_run_reuses_the_cache(tmp_path, counting):
    scene = write_tiny_nerfstudio(tmp_path / "s")
    cache = tmp_path / "cache"
    for run in ("a", "b"):
        cfg = TrainConfig(scene=str(scene), out=str(tmp_path / run), teachers=["counting"], cache_dir=str(cache),
                          iterations=2, init_points=100, progress=False)
        Trainer(cfg).train()
    first, second = counting
    assert first.calls > 0 and second.calls == 0


def test_two_teachers_share_a_latent_with_one_head_each(tmp_path, counting):
    scene = write_tiny_nerfstudio(tmp_path / "s")
    cfg = TrainConfig(scene=str(scene), out=str(tmp_path / "o"), teachers=["labels", "counting"], iterations=3,
                      init_points=100, progress=False)
    trainer = Trainer(cfg)
    layout = trainer.field.layout
    assert [(t.name, t.dim) for t in layout.teachers] == [("labels", 384), ("counting", 5)]
    assert layout.latent_dim == 16 and set(trainer.field.decoder.heads) == {"labels", "counting"}
    metrics = trainer.train()
    assert {"feature_cosine/labels", "feature_cosine/counting"} <= set(metrics)


def test_mask_teacher_trains_a_grouping_head(tmp_path):
    scene = write_tiny_nerfstudio(tmp_path / "s")
    cfg = TrainConfig(scene=str(scene), out=str(tmp_path / "o"), teachers=["segments", "sift"], iterations=4,
                      init_points=100, progress=False)
    trainer = Trainer(cfg)
    assert [(t.name, t.dim) for t in trainer.field.layout.teachers] == [("segments", 16), ("sift", 128)]
    metrics = trainer.train()
    assert "grouping_gap/segments" in metrics and "feature_cosine/sift" in metrics
    assert "feature_cosine/segments" not in metrics
    assert len(list((tmp_path / "o" / "previews").glob("*.png"))) == len(trainer.scene.test_idx)


def test_view_dependent_teacher_gets_view_dependent_features(tmp_path):
    """sift declares itself view-dependent: the field then carries degree-2 SH feature coefficients that training
    moves; --feature-view-degree overrides it, and a resume cannot change it."""
    scene = write_tiny_nerfstudio(tmp_path / "s")
    common = dict(scene=str(scene), teachers=["labels", "sift"], iterations=3, init_points=100, progress=False)
    trainer = Trainer(TrainConfig(out=str(tmp_path / "a"), **common))
    assert trainer.field.layout.view_degree == 2
    assert trainer.field.features_view.shape == (len(trainer.field), 8, trainer.field.layout.width)
    trainer.train()
    assert trainer.field.features_view.abs().sum() > 0
    flat = Trainer(TrainConfig(out=str(tmp_path / "b"), feature_view_degree=0, **common))
    assert flat.field.layout.view_degree == 0 and flat.field.features_view.numel() == 0
    with pytest.raises(ConfigError, match="view-dependent"):
        Trainer(TrainConfig(out=str(tmp_path / "a"), feature_view_degree=1, **common), resume=True)
    resumed = Trainer(TrainConfig(out=str(tmp_path / "a"), **{**common, "iterations": 4}), resume=True)
    assert resumed.field.layout.view_degree == 2
