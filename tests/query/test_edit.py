"""Edits on small hand-made fields and on the oracle field: partition, recolour, checkpoint round trip (including
resuming training from an edited checkpoint), and deleting an object from renders."""
from __future__ import annotations

import pytest
import torch

from featurefields.errors import ConfigError
from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec, sh0_to_rgb
from featurefields.fields.ply import field_from_ply
from featurefields.query import QueryEngine, Selection, delete, extract, recolour
from featurefields.query.edit import apply_edit, save_edited
from featurefields.train.checkpoint import load_checkpoint


def small_field(n=40, seed=0) -> GaussianField:
    g = torch.Generator().manual_seed(seed)
    layout = FeatureLayout([TeacherSpec("labels", 384)], latent_dim=8)
    f = GaussianField(torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g), torch.full((n, 3), -3.0),
                      layout, sh_degree=1, seed=seed)
    f.replace_params({**{k: v.detach() for k, v in f.params().items()},
                      "shN": torch.randn(n, 3, 3, generator=g), "opacity_logits": torch.randn(n, generator=g)})
    return f


def test_extract_and_delete_partition_the_field():
    f = small_field()
    sel = Selection(torch.arange(40) % 3 == 0)
    a, b = extract(f, sel), delete(f, sel)
    assert len(a) == sel.count and len(b) == 40 - sel.count
    for name in GaussianField.param_names:
        torch.testing.assert_close(getattr(a, name), getattr(f, name)[sel.mask])
        torch.testing.assert_close(getattr(b, name), getattr(f, name)[~sel.mask])
    # decoders are copies: same weights, not shared
    assert torch.equal(a.decoder.heads["labels"].weight, f.decoder.heads["labels"].weight)
    assert a.decoder.heads["labels"].weight is not f.decoder.heads["labels"].weight
    assert len(f) == 40  # the original is untouched


def test_recolour_touches_only_the_selection():
    f = small_field()
    sel = Selection(torch.arange(40) < 10)
    r = recolour(f, sel, (1.0, 0.0, 0.25))
    torch.testing.assert_close(sh0_to_rgb(r.sh0[:10, 0]), torch.tensor([[1.0, 0.0, 0.25]]).expand(10, 3))
    assert float(r.shN.detach()[:10].abs().max()) == 0
    torch.testing.assert_close(r.sh0[10:], f.sh0[10:])
    torch.testing.assert_close(r.shN[10:], f.shN[10:])
    torch.testing.assert_close(r.means, f.means)


def test_edit_errors():
    f = small_field()
    with pytest.raises(ConfigError, match="empty"):
        extract(f, Selection.none(40))
    with pytest.raises(ConfigError, match="empty field"):
        delete(f, Selection.all(40))
    with pytest.raises(ConfigError, match="colour"):
        recolour(f, Selection.all(40), (2.0, 0, 0))
    with pytest.raises(ConfigError, match="41"):
        extract(f, Selection.all(41))
    with pytest.raises(ConfigError, match="unknown edit"):
        apply_edit(f, "explode", Selection.all(40))


def test_edited_checkpoint_resumes_training(tmp_path):
    from tests.conftest import write_tiny_nerfstudio
    from featurefields.train.config import TrainConfig
    from featurefields.train.trainer import Trainer

    scene = write_tiny_nerfstudio(tmp_path / "tiny")
    cfg = TrainConfig(scene=str(scene), out=str(tmp_path / "run"), iterations=4, init_points=300, progress=False,
                      save_every=0, sh_degree=0, teachers=["sift"])  # a cheap teacher: features get moments too
    Trainer(cfg).train()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    field = GaussianField.from_state(state["field"])
    sel = Selection(field.means[:, 0].detach() > field.means[:, 0].detach().median())
    edited, kept = apply_edit(field, "delete", sel)
    save_edited(tmp_path / "edited", state, edited, kept, {"edit": "delete"})
    new = load_checkpoint(tmp_path / "edited" / "checkpoint.pt")
    assert new["field"]["params"]["means"].shape[0] == len(field) - sel.count
    assert new["edits"][-1]["edit"] == "delete" and new["scene"] == state["scene"]
    ply = field_from_ply(tmp_path / "edited" / "field.ply")
    assert torch.equal(ply.means.detach(), edited.means.detach())
    # the Adam moments were sliced like the Gaussians: training continues from the edited field
    cfg2 = TrainConfig(**{**cfg.to_dict(), "out": str(tmp_path / "edited"), "iterations": 6,
                          "lr": cfg.lr, "density": cfg.density})
    trainer = Trainer(cfg2, resume=True)
    assert len(trainer.field) == len(edited)
    trainer.train()
    assert load_checkpoint(tmp_path / "edited" / "checkpoint.pt")["step"] == 6


def test_deleting_an_object_removes_it_and_keeps_the_rest(oracle, tmp_path):
    from featurefields.cli.edit import main as ff_edit
    from featurefields.query.evaluate import evaluate_delete

    with pytest.raises(SystemExit) as e:
        ff_edit([str(oracle.checkpoint), "mug", "--delete", "--out", str(tmp_path / "no_mug")])
    assert e.value.code == 0
    original = QueryEngine.from_checkpoint(oracle.checkpoint)
    edited = QueryEngine.from_checkpoint(tmp_path / "no_mug" / "checkpoint.pt", scene=original.scene)
    assert len(edited.field) == len(original.field) - oracle.count("mug")
    r = evaluate_delete(original, edited, "mug", views="all", out_dir=tmp_path / "no_mug")
    assert r["mask_pixels_original"] > 20
    assert r["mask_pixels_edited"] <= 0.05 * r["mask_pixels_original"]
    assert r["psnr_outside_delta_max_abs"] < 0.5 and r["passed"]
    assert (tmp_path / "no_mug" / "delete_grid.png").is_file()
    # a control: deleting the table instead changes the rest of the image, and the check notices
    sel = original.select("table", negatives="scene", min_opacity=0.0)
    no_table = QueryEngine(delete(original.field, sel), scene=original.scene)
    assert evaluate_delete(original, no_table, "mug", views="all")["psnr_outside_delta_max_abs"] > 0.5
