"""End-to-end: a tiny generated tabletop trained for a few steps writes every output, learns, and resumes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featurefields.data import load_scene
from featurefields.fields.ply import field_from_ply
from featurefields.scenegen.tabletop import generate_tabletop
from featurefields.train.checkpoint import load_checkpoint
from featurefields.train.config import TrainConfig
from featurefields.train.trainer import Trainer, train


@pytest.fixture(scope="module")
def tiny_tabletop(tmp_path_factory):
    return generate_tabletop(tmp_path_factory.mktemp("scene") / "tabletop", seed=0, views=9, width=48, height=36,
                             n_points=1500, progress=False)


def small_config(scene, out, **kw) -> TrainConfig:
    cfg = TrainConfig(scene=str(scene), out=str(out), iterations=kw.pop("iterations", 60), init_points=1500,
                      progress=False, save_every=0, sh_degree=1, **kw)
    cfg.density.refine_start, cfg.density.refine_stop, cfg.density.refine_every = 20, 40, 20
    return cfg


@pytest.mark.slow
def test_train_writes_outputs_and_learns(tiny_tabletop, tmp_path):
    cfg = small_config(tiny_tabletop, tmp_path / "run", depth_weight=0.0)  # 60 steps: colour alone, learns faster
    trainer = Trainer(cfg)
    before = trainer.evaluate()
    metrics = trainer.train()
    out = tmp_path / "run"
    for name in ("checkpoint.pt", "field.ply", "metrics.json", "config.json"):
        assert (out / name).is_file(), name
    previews = sorted((out / "previews").glob("*.png"))
    assert len(previews) == len(trainer.scene.test_idx) > 0
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["step"] == 60 and {"psnr", "ssim", "feature_cosine/labels"} <= set(on_disk)
    assert len(on_disk["per_view"]) == len(trainer.scene.test_idx)
    # it learned something on held-out views
    assert metrics["psnr"] > before["psnr"] + 2, (before["psnr"], metrics["psnr"])
    assert metrics["feature_cosine/labels"] > before["feature_cosine/labels"] + 0.2
    # the PLY holds the same Gaussians as the checkpoint
    field = field_from_ply(out / "field.ply")
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert torch.equal(field.means.detach(), ckpt["field"]["params"]["means"])
    assert field.features.shape[1] == 16  # 384-D labels -> a 16-D latent by default


@pytest.mark.slow
def test_resume_continues_where_it_stopped(tiny_tabletop, tmp_path):
    out = tmp_path / "run"
    train(small_config(tiny_tabletop, out, iterations=20))
    first = load_checkpoint(out / "checkpoint.pt")
    assert first["step"] == 20
    metrics = train(small_config(tiny_tabletop, out, iterations=30), resume=True)
    assert metrics["step"] == 30
    # the resumed run started from the saved Gaussians, not a fresh initialisation
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 30


@pytest.mark.parametrize("view_degree", [0, 2])
def test_feature_gradients_do_not_move_geometry_by_default(tiny_tabletop, tmp_path, view_degree):
    """Not through the rasteriser, nor (view-dependent features) through the viewing direction."""
    scene = load_scene(tiny_tabletop)
    for moves in (False, True):
        cfg = small_config(tiny_tabletop, tmp_path / f"g{moves}", feature_moves_geometry=moves, lambda_dssim=0.0,
                           feature_view_degree=view_degree)
        trainer = Trainer(cfg, scene=scene)
        with torch.no_grad():
            trainer.field.features_view.normal_()  # trained coefficients, so that features depend on direction
        out = trainer.render(scene.train_idx[0])
        trainer.field.zero_grad()
        out.features.sum().backward()  # a loss on features alone
        grad = trainer.field.means.grad
        moved = grad is not None and bool(grad.abs().sum() > 0)
        assert moved == moves
        assert trainer.field.features.grad.abs().sum() > 0


def test_metrics_keys_name_metric_and_teacher(tiny_tabletop, tmp_path):
    trainer = Trainer(small_config(tiny_tabletop, tmp_path / "m", iterations=1))
    metrics = trainer.evaluate()
    assert "feature_cosine/labels" in metrics and np.isfinite(metrics["psnr"])


def test_depth_loss_is_on_where_the_scene_has_metric_depth(tiny_tabletop, tmp_path):
    from featurefields.train.config import DEFAULT_DEPTH_WEIGHT
    from tests.conftest import write_tiny_nerfstudio

    scene = load_scene(tiny_tabletop)
    assert scene.depths is not None
    assert Trainer(small_config(tiny_tabletop, tmp_path / "a"), scene=scene).depth_weight == DEFAULT_DEPTH_WEIGHT > 0
    assert Trainer(small_config(tiny_tabletop, tmp_path / "b", depth_weight=0.0), scene=scene).depth_weight == 0
    no_depth = write_tiny_nerfstudio(tmp_path / "s")  # no depth maps: nothing to fit, whatever was asked
    assert Trainer(small_config(no_depth, tmp_path / "c", depth_weight=2.0)).depth_weight == 0
